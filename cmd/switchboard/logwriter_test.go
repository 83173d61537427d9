package main

import (
	"bytes"
	"fmt"
	"strings"
	"sync"
	"testing"
)

// countingWriter records what was written and in how many calls.
type countingWriter struct {
	mu    sync.Mutex
	buf   bytes.Buffer
	calls int
	gate  chan struct{} // when set, each Write waits for a token
}

func (c *countingWriter) Write(p []byte) (int, error) {
	if c.gate != nil {
		<-c.gate
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.calls++
	return c.buf.Write(p)
}

func TestLogWriterKeepsEveryLineInOrder(t *testing.T) {
	cw := &countingWriter{}
	l := newLogWriter(cw)
	l.maxPending = 64 // small: writers must wait for the flusher
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 200 {
				fmt.Fprintf(l, "w%d line %03d\n", w, i)
			}
		}()
	}
	wg.Wait()
	l.Close()
	fmt.Fprintf(l, "after close\n") // written straight through
	lines := strings.Split(strings.TrimSuffix(cw.buf.String(), "\n"), "\n")
	if len(lines) != 8*200+1 || lines[len(lines)-1] != "after close" {
		t.Fatalf("got %d lines, last %q; want %d, last \"after close\"", len(lines), lines[len(lines)-1], 8*200+1)
	}
	next := map[string]int{}
	for _, ln := range lines[:len(lines)-1] {
		var w string
		var i int
		if _, err := fmt.Sscanf(ln, "%s line %d", &w, &i); err != nil {
			t.Fatalf("torn line %q", ln)
		}
		if i != next[w] {
			t.Fatalf("%s: line %d came when %d was due", w, i, next[w])
		}
		next[w]++
	}
}

// Lines written while the flusher is in a write go out together.
func TestLogWriterGroupsLines(t *testing.T) {
	cw := &countingWriter{gate: make(chan struct{})}
	l := newLogWriter(cw)
	fmt.Fprintf(l, "first\n")
	for i := range 50 {
		fmt.Fprintf(l, "queued %d\n", i)
	}
	close(cw.gate) // let every write through
	l.Close()
	if n := strings.Count(cw.buf.String(), "\n"); n != 51 {
		t.Fatalf("%d lines written, want 51", n)
	}
	if cw.calls > 3 {
		t.Errorf("51 lines took %d writes; want them grouped (at most 3)", cw.calls)
	}
}

package main

import (
	"io"
	"sync"
)

// logWriter is group commit for log lines. Write appends the line to a
// buffer and wakes a flusher; lines written while the flusher is in its
// write system call go out together in the next one. At rest every line is
// written at once (there is no timer); under load one system call carries
// many lines (a write per callback line measured 4% of the gateway's CPU).
// Above maxPending buffered bytes Write waits for the flusher: lines are
// never dropped. Close writes what is buffered and makes later writes
// synchronous.
type logWriter struct {
	w          io.Writer
	maxPending int

	mu      sync.Mutex
	drained *sync.Cond // the flusher took the buffer
	buf     []byte
	closed  bool

	kick chan struct{}
	stop chan struct{}
	done chan struct{}
}

func newLogWriter(w io.Writer) *logWriter {
	l := &logWriter{w: w, maxPending: 1 << 20, kick: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
	l.drained = sync.NewCond(&l.mu)
	go l.loop()
	return l
}

func (l *logWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	for len(l.buf) > l.maxPending && !l.closed {
		l.drained.Wait()
	}
	if l.closed {
		defer l.mu.Unlock()
		return l.w.Write(p)
	}
	l.buf = append(l.buf, p...)
	l.mu.Unlock()
	select {
	case l.kick <- struct{}{}:
	default: // the flusher is already awake
	}
	return len(p), nil
}

func (l *logWriter) loop() {
	defer close(l.done)
	var spare []byte
	for {
		select {
		case <-l.kick:
		case <-l.stop:
			return
		}
		l.mu.Lock()
		b := l.buf
		l.buf = spare[:0]
		l.drained.Broadcast()
		l.mu.Unlock()
		if len(b) > 0 {
			_, _ = l.w.Write(b)
		}
		spare = b
	}
}

// Close flushes the buffered lines; later writes go straight to the writer.
func (l *logWriter) Close() {
	close(l.stop)
	<-l.done
	l.mu.Lock()
	defer l.mu.Unlock()
	l.closed = true
	l.drained.Broadcast()
	if len(l.buf) > 0 {
		_, _ = l.w.Write(l.buf)
		l.buf = nil
	}
}

package queue

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestBatcher: concurrent callers each get their own answers (new or
// duplicate), every entry is stored once, and calls share pipelines.
func TestBatcher(t *testing.T) {
	s, rdb, _ := mustStore(t)
	b := &Batcher{Store: s, Window: 2 * time.Millisecond}
	defer b.Close()
	const callers = 64
	var wg sync.WaitGroup
	var fresh, dup atomic.Int64
	for i := range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Every caller sends its own entry twice, in two calls.
			for range 2 {
				e := entry(i, "crm")
				e.DedupKey = fmt.Sprint("caller-", i)
				got, err := b.Enqueue(context.Background(), time.Hour, e)
				if err != nil || len(got) != 1 {
					t.Errorf("caller %d: %v, %v", i, got, err)
					return
				}
				if got[0] {
					fresh.Add(1)
				} else {
					dup.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	if fresh.Load() != callers || dup.Load() != callers {
		t.Errorf("fresh = %d, duplicates = %d, want %d each", fresh.Load(), dup.Load(), callers)
	}
	if n := xlen(t, rdb, streamKey("acme", "crm")); n != callers {
		t.Errorf("stream holds %d entries, want %d", n, callers)
	}
	if p := b.pipelines.Load(); p >= 2*callers {
		t.Errorf("%d calls went out in %d pipelines: nothing was batched", 2*callers, p)
	}
}

func TestBatcherError(t *testing.T) {
	s, _, rs := mustStore(t)
	b := &Batcher{Store: s}
	defer b.Close()
	rs.Kill()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := b.Enqueue(ctx, time.Hour, entry(1, "crm")); err == nil {
		t.Fatal("Enqueue with Redis down succeeded")
	}
}

// BenchmarkEnqueueConcurrent compares direct Enqueue calls with the
// Batcher under 64 concurrent callers (make bench).
func BenchmarkEnqueueConcurrent(b *testing.B) {
	for _, mode := range []string{"direct", "batched"} {
		b.Run(mode, func(b *testing.B) {
			s, _, _ := mustStore(b)
			bt := &Batcher{Store: s}
			defer bt.Close()
			var n atomic.Int64
			b.SetParallelism(32)
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					e := entry(int(n.Add(1)), "crm")
					e.DedupKey = fmt.Sprint("k", n.Load())
					var err error
					if mode == "direct" {
						_, err = s.Enqueue(context.Background(), time.Hour, e)
					} else {
						_, err = bt.Enqueue(context.Background(), time.Hour, e)
					}
					if err != nil {
						b.Fatal(err)
					}
				}
			})
		})
	}
}

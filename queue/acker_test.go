package queue

import (
	"sync"
	"testing"
)

// TestAcker: jobs acknowledged concurrently through the Acker are gone
// from their stream and from the pending list.
func TestAcker(t *testing.T) {
	s, rdb, _ := mustStore(t)
	const n = 200
	for i := range n {
		mustEnqueue(t, s, entry(i, "crm"))
	}
	jobs := mustRead(t, s, "c1", map[string]int{"crm": n})
	if len(jobs) != n {
		t.Fatalf("read %d jobs, want %d", len(jobs), n)
	}
	a := &Acker{Store: s}
	var wg sync.WaitGroup
	for i := range jobs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := a.Ack(ctxT(t), &jobs[i]); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if got := xlen(t, rdb, streamKey(tenant, "crm")); got != 0 {
		t.Errorf("stream holds %d entries after acking all, want 0", got)
	}
	if got := pending(t, rdb, streamKey(tenant, "crm")); got != 0 {
		t.Errorf("%d entries still pending, want 0", got)
	}
}

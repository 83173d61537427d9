package queue

import (
	"fmt"
	"sync"
	"testing"
	"time"
)

// TestAttemptLog: attempts recorded concurrently through the log reach the
// history, all of them, by the time Close returns — also when its buffer
// overflows and Record writes them itself.
func TestAttemptLog(t *testing.T) {
	s, _, _ := mustStore(t)
	ctx := ctxT(t)
	const events, per = 20, 10
	for i := 1; i <= events; i++ {
		mustEnqueue(t, s, historyEntry(i, time.Now(), "", "crm"))
	}
	var errs []error
	var mu sync.Mutex
	log := s.NewAttemptLog(4, func(err error) { mu.Lock(); errs = append(errs, err); mu.Unlock() })
	var wg sync.WaitGroup
	for i := 1; i <= events; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := 1; n <= per; n++ {
				log.Record(tenant, fmt.Sprintf("evt_%04d", i), Attempt{Destination: "crm", Attempt: n, StatusCode: 500, Outcome: "retry"})
			}
		}()
	}
	wg.Wait()
	log.Close()
	if len(errs) > 0 {
		t.Fatalf("errors: %v", errs)
	}
	for i := 1; i <= events; i++ {
		h, ok, err := s.History(ctx, tenant, fmt.Sprintf("evt_%04d", i))
		if err != nil || !ok {
			t.Fatalf("History(evt_%04d) = %v, %v", i, ok, err)
		}
		if len(h.Attempts) != per {
			t.Errorf("evt_%04d has %d attempts, want %d", i, len(h.Attempts), per)
		}
	}
}

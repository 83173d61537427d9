package queue

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/switchboard-gw/switchboard/queue/redistest"
)

const tenant = "acme"

// mustStore starts a redis-server for t and returns a Store on it, a raw
// client for inspection, and the server.
func mustStore(t testing.TB) (*Store, *redis.Client, *redistest.Server) {
	t.Helper()
	srv := redistest.Start(t)
	rdb := srv.Client(t)
	return New(rdb), rdb, srv
}

func ctxT(t testing.TB) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// entry returns an entry of tenant for dests with a unique event id.
func entry(n int, dests ...string) *Entry {
	return &Entry{
		Tenant:       tenant,
		EventID:      fmt.Sprintf("evt_%04d", n),
		Event:        []byte(fmt.Sprintf(`{"id":"evt_%04d"}`, n)),
		Destinations: dests,
		Now:          time.UnixMilli(1_700_000_000_000 + int64(n)),
	}
}

func mustEnqueue(t testing.TB, s *Store, entries ...*Entry) {
	t.Helper()
	fresh, err := s.Enqueue(ctxT(t), time.Hour, entries...)
	if err != nil {
		t.Fatalf("Enqueue: %v", err)
	}
	for i, f := range fresh {
		if !f {
			t.Fatalf("Enqueue: entry %d reported duplicate", i)
		}
	}
}

func mustRead(t testing.TB, s *Store, consumer string, want map[string]int) []Job {
	t.Helper()
	jobs, err := s.Read(ctxT(t), tenant, consumer, want, 0)
	if err != nil {
		t.Fatalf("Read: %v", err)
	}
	return jobs
}

// deliverAll reads and acknowledges every queued job of dests, as
// deliveries do, and returns how many it acknowledged.
func deliverAll(t testing.TB, s *Store, dests ...string) int {
	t.Helper()
	want := map[string]int{}
	for _, d := range dests {
		want[d] = 10_000
	}
	n := 0
	for {
		jobs := mustRead(t, s, "deliverer", want)
		if len(jobs) == 0 {
			return n
		}
		for i := range jobs {
			if err := s.Ack(ctxT(t), &jobs[i]); err != nil {
				t.Fatalf("Ack: %v", err)
			}
			n++
		}
	}
}

func mustStats(t testing.TB, s *Store, dests ...string) map[string]Stats {
	t.Helper()
	st, err := s.Stats(ctxT(t), tenant, dests, time.Now())
	if err != nil {
		t.Fatalf("Stats: %v", err)
	}
	return st
}

func xlen(t testing.TB, rdb *redis.Client, key string) int64 {
	t.Helper()
	n, err := rdb.XLen(ctxT(t), key).Result()
	if err != nil {
		t.Fatalf("XLEN %s: %v", key, err)
	}
	return n
}

// pending is the number of pending entries of key's group, including those
// whose stream entry is gone.
func pending(t testing.TB, rdb *redis.Client, key string) int {
	t.Helper()
	p, err := rdb.XPendingExt(ctxT(t), &redis.XPendingExtArgs{Stream: key, Group: Group, Start: "-", End: "+", Count: 1000}).Result()
	if err != nil {
		t.Fatalf("XPENDING %s: %v", key, err)
	}
	return len(p)
}

func eventIDs(jobs []Job) []string {
	ids := make([]string, len(jobs))
	for i, j := range jobs {
		ids[i] = j.EventID
	}
	slices.Sort(ids)
	return ids
}

// await polls cond until it holds or the deadline passes.
func await(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		<-tick.C
	}
}

// awaitIdle waits until n pending entries of key have been idle for idle.
func awaitIdle(t testing.TB, rdb *redis.Client, key string, idle time.Duration, n int) {
	t.Helper()
	await(t, fmt.Sprintf("%d idle pending entries in %s", n, key), func() bool {
		p, err := rdb.XPendingExt(ctxT(t), &redis.XPendingExtArgs{
			Stream: key, Group: Group, Idle: idle, Start: "-", End: "+", Count: 1000,
		}).Result()
		return err == nil && len(p) >= n
	})
}

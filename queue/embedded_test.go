package queue

import (
	"bytes"
	"context"
	"slices"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// TestEmbeddedCycle runs the Store's whole job cycle against the embedded
// store (miniredis), the one test that does: the same code must work on it
// as on Redis 7. It also covers where miniredis differs from Redis: binary
// bodies (its cjson is not binary safe, so no script uses cjson), pending
// entries whose stream entry is gone (its XAUTOCLAIM keeps them; Reclaim uses
// XPENDING + XCLAIM + XACK), blocking XREADGROUP and NOGROUP recovery.
func TestEmbeddedCycle(t *testing.T) {
	emb, err := StartEmbedded()
	if err != nil {
		t.Fatalf("StartEmbedded: %v", err)
	}
	t.Cleanup(emb.Close)
	rdb := redis.NewClient(&redis.Options{Addr: emb.Addr()})
	t.Cleanup(func() { _ = rdb.Close() })
	s := New(rdb)
	ctx := ctxT(t)
	if err := s.Ping(ctx); err != nil {
		t.Fatalf("Ping: %v", err)
	}

	binary := make([]byte, 256)
	for i := range binary {
		binary[i] = byte(255 - i)
	}
	e := entry(1, "crm", "legacy")
	e.DedupKey = "k1"
	e.Event = binary
	e.Raw, e.RawFor = []byte("raw\x00\xff"), []string{"legacy"}
	fresh, err := s.Enqueue(ctx, time.Hour, e, entry(2, "crm"))
	if err != nil || !slices.Equal(fresh, []bool{true, true}) {
		t.Fatalf("Enqueue = %v, %v; want [true true]", fresh, err)
	}
	if fresh, err := s.Enqueue(ctx, time.Hour, e); err != nil || fresh[0] {
		t.Fatalf("Enqueue duplicate = %v, %v; want [false]", fresh, err)
	}

	// Read with limits, mixed (pipelined) and uniform.
	jobs, err := s.Read(ctx, tenant, "c1", map[string]int{"crm": 1, "legacy": 5}, 0)
	if err != nil || len(jobs) != 2 {
		t.Fatalf("Read = %+v, %v; want one job of crm and one of legacy", jobs, err)
	}
	var crm, legacy Job
	for _, j := range jobs {
		switch j.Destination {
		case "crm":
			crm = j
		case "legacy":
			legacy = j
		}
	}
	if !bytes.Equal(crm.Event, binary) || crm.Raw != nil || crm.EventID != "evt_0001" {
		t.Errorf("crm job = %+v, want the binary event and no raw", crm)
	}
	if !bytes.Equal(legacy.Raw, e.Raw) {
		t.Errorf("legacy raw = %q, want %q", legacy.Raw, e.Raw)
	}

	// Retry, then promote: back with its attempts, bytes intact.
	due := time.Now().Add(-time.Second)
	if err := s.Retry(ctx, &crm, 1, due, "HTTP 502"); err != nil {
		t.Fatalf("Retry: %v", err)
	}
	if n, next, err := s.PromoteNext(ctx, tenant, due.Add(-time.Millisecond), 10); err != nil || n != 0 || next.UnixMilli() != due.UnixMilli() {
		t.Errorf("PromoteNext before due = %d, %v, %v; want 0 moved, next %v", n, next, err, due)
	}
	if n, next, err := s.PromoteNext(ctx, tenant, time.Now(), 10); err != nil || n != 1 || !next.IsZero() {
		t.Fatalf("PromoteNext = %d, %v, %v; want 1 moved, none left", n, next, err)
	}
	jobs, err = s.Read(ctx, tenant, "c1", map[string]int{"crm": 5}, 0)
	if err != nil || len(jobs) != 2 {
		t.Fatalf("Read after promote = %d jobs, %v; want evt_0002 and the promoted evt_0001", len(jobs), err)
	}
	promoted := jobs[1]
	if promoted.EventID != "evt_0001" || promoted.Attempts != 1 || promoted.LastError != "HTTP 502" || !bytes.Equal(promoted.Event, binary) {
		t.Errorf("promoted job = %+v, want evt_0001, attempts 1, the binary event", promoted)
	}
	if err := s.Ack(ctx, &jobs[0]); err != nil {
		t.Fatalf("Ack: %v", err)
	}

	// Dead-letter, list, replay: fresh budget, bytes intact.
	if err := s.DeadLetter(ctx, &promoted, 2, "HTTP 410", time.Now()); err != nil {
		t.Fatalf("DeadLetter: %v", err)
	}
	dead, err := s.DLQList(ctx, tenant, "crm", 10)
	if err != nil || len(dead) != 1 || dead[0].Attempts != 2 || dead[0].LastError != "HTTP 410" || !bytes.Equal(dead[0].Event, binary) {
		t.Fatalf("DLQList = %+v, %v; want the dead letter with its fields", dead, err)
	}
	now := time.Now().Truncate(time.Millisecond)
	if n, err := s.DLQReplay(ctx, tenant, "crm", []string{dead[0].ID}, false, now); err != nil || n != 1 {
		t.Fatalf("DLQReplay = %d, %v; want 1", n, err)
	}
	jobs, err = s.Read(ctx, tenant, "c1", map[string]int{"crm": 5}, 0)
	if err != nil || len(jobs) != 1 || jobs[0].Attempts != 0 || !jobs[0].EnqueuedAt.Equal(now) || !bytes.Equal(jobs[0].Event, binary) {
		t.Fatalf("Read after replay = %+v, %v; want the job with attempts 0, enqueued now", jobs, err)
	}
	replayed := jobs[0]

	// Stats while one job of each destination is in flight.
	st, err := s.Stats(ctx, tenant, []string{"crm", "legacy"}, time.Now())
	if err != nil || st["crm"].InFlight != 1 || st["legacy"].InFlight != 1 || st["crm"].Queued != 0 || st["crm"].Dead != 0 {
		t.Errorf("Stats = %+v, %v; want one in flight each, nothing else", st, err)
	}

	// Release: back at the tail, read at once by another consumer.
	if err := s.Release(ctx, &replayed); err != nil {
		t.Fatalf("Release: %v", err)
	}
	jobs, err = s.Read(ctx, tenant, "c2", map[string]int{"crm": 5}, 0)
	if err != nil || len(jobs) != 1 || jobs[0].EventID != "evt_0001" {
		t.Fatalf("Read after release = %+v, %v; want evt_0001", jobs, err)
	}
	if err := s.Ack(ctx, &jobs[0]); err != nil {
		t.Fatal(err)
	}

	// Reclaim: the legacy job is still pending for c1; a second one loses
	// its stream entry and must be acked away, not returned.
	mustEnqueue(t, s, entry(3, "legacy"))
	gone := mustRead(t, s, "c1", map[string]int{"legacy": 1})[0]
	if err := rdb.XDel(ctx, streamKey(tenant, "legacy"), gone.ID).Err(); err != nil {
		t.Fatal(err)
	}
	const idle = 10 * time.Millisecond
	awaitIdle(t, rdb, streamKey(tenant, "legacy"), idle, 2)
	claimed, err := s.Reclaim(ctx, tenant, "c2", []string{"legacy"}, idle, 10)
	if err != nil || len(claimed) != 1 || claimed[0].ID != legacy.ID {
		t.Fatalf("Reclaim = %+v, %v; want the legacy job only, not the deleted one", claimed, err)
	}
	if p := pending(t, rdb, streamKey(tenant, "legacy")); p != 1 {
		t.Errorf("pending legacy = %d, want 1 (the deleted entry acked away)", p)
	}
	// The stale-ack guard: c1 retries late, nothing happens.
	if err := s.Ack(ctx, &claimed[0]); err != nil {
		t.Fatal(err)
	}
	if err := s.Retry(ctx, &legacy, 1, time.Now(), "late"); err != nil {
		t.Fatal(err)
	}
	if n, err := rdb.ZCard(ctx, retryKey(tenant)).Result(); err != nil || n != 0 {
		t.Errorf("retry set after a stale retry = %d, %v; want 0", n, err)
	}

	// A blocking read wakes up for a job enqueued meanwhile.
	done := make(chan []Job, 1)
	go func() {
		jobs, err := s.Read(context.Background(), tenant, "c1", map[string]int{"crm": 1, "legacy": 1}, 10*time.Second)
		if err != nil {
			t.Errorf("blocking Read: %v", err)
		}
		done <- jobs
	}()
	// miniredis has no CLIENT LIST: enqueue until the read returns, which
	// proves it woke for a job that arrived while it waited or before.
	n := 10
	var woke []Job
	await(t, "the blocking read", func() bool {
		mustEnqueue(t, s, entry(n, "legacy"))
		n++
		select {
		case woke = <-done:
			return true
		default:
			return false
		}
	})
	if len(woke) != 1 || woke[0].Destination != "legacy" {
		t.Errorf("blocking Read = %+v, want one legacy job", woke)
	}

	// Purge and NOGROUP recovery after FLUSHALL.
	if n, err := s.DLQPurge(ctx, tenant, "", nil, true); err != nil || n != 0 {
		t.Errorf("DLQPurge(all) of an empty dlq = %d, %v; want 0", n, err)
	}
	if err := rdb.FlushAll(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	mustEnqueue(t, s, entry(99, "crm"))
	jobs, err = s.Read(ctx, tenant, "c1", map[string]int{"crm": 1}, 0)
	if err != nil || len(jobs) != 1 || jobs[0].EventID != "evt_0099" {
		t.Errorf("Read after FLUSHALL = %+v, %v; want evt_0099", jobs, err)
	}
}

package queue

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

func TestReadWantLimits(t *testing.T) {
	t.Parallel()
	s, rdb, _ := mustStore(t)
	for i := range 5 {
		mustEnqueue(t, s, entry(i, "a", "b", "held"))
	}

	jobs := mustRead(t, s, "c1", map[string]int{"a": 2, "b": 3, "held": 0})
	per := map[string]int{}
	for _, j := range jobs {
		per[j.Destination]++
		if j.Tenant != tenant || j.ID == "" || j.EventID == "" || j.Attempts != 0 {
			t.Errorf("job = %+v, want tenant, id, event id and 0 attempts", j)
		}
	}
	if per["a"] != 2 || per["b"] != 3 || per["held"] != 0 {
		t.Errorf("jobs per destination = %v, want a:2 b:3 held:0", per)
	}
	var ofA []string
	for _, j := range jobs {
		if j.Destination == "a" {
			ofA = append(ofA, j.EventID)
		}
	}
	if !slices.Equal(ofA, []string{"evt_0000", "evt_0001"}) {
		t.Errorf("jobs of a = %v, want the oldest two, evt_0000 and evt_0001", ofA)
	}

	jobs = mustRead(t, s, "c1", map[string]int{"a": 2, "b": 2})
	per = map[string]int{}
	for _, j := range jobs {
		per[j.Destination]++
	}
	if per["a"] != 2 || per["b"] != 2 {
		t.Errorf("uniform read per destination = %v, want a:2 b:2", per)
	}
	st := mustStats(t, s, "a", "b", "held")
	if st["a"].Queued != 1 || st["b"].Queued != 0 || st["held"].Queued != 5 {
		t.Errorf("queued = a:%d b:%d held:%d, want 1 0 5", st["a"].Queued, st["b"].Queued, st["held"].Queued)
	}
	if p := pending(t, rdb, streamKey(tenant, "a")); p != 4 {
		t.Errorf("pending a = %d, want 4", p)
	}
	if jobs := mustRead(t, s, "c1", map[string]int{"b": 5}); len(jobs) != 0 {
		t.Errorf("Read of drained b = %d jobs, want 0", len(jobs))
	}
	if jobs := mustRead(t, s, "c1", nil); jobs != nil {
		t.Errorf("Read of nothing = %v, want nil", jobs)
	}
	if _, err := s.Read(ctxT(t), tenant, "", map[string]int{"a": 1}, 0); err == nil {
		t.Error("Read without consumer name: err = nil, want an error")
	}
}

func TestReadBlocks(t *testing.T) {
	t.Parallel()
	for name, want := range map[string]map[string]int{
		"uniform": {"a": 4, "b": 4},
		"mixed":   {"a": 1, "b": 4},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			s, rdb, _ := mustStore(t)
			ctx := ctxT(t)
			if err := s.EnsureGroups(ctx, tenant, []string{"a", "b"}); err != nil {
				t.Fatal(err)
			}
			const block = 20 * time.Second
			type result struct {
				jobs []Job
				err  error
				took time.Duration
			}
			done := make(chan result, 1)
			go func() {
				start := time.Now()
				jobs, err := s.Read(ctx, tenant, "c1", want, block)
				done <- result{jobs, err, time.Since(start)}
			}()
			// Enqueue once the read is blocked (its consumer shows up in
			// the group only when it reads, so watch the client list).
			await(t, "a blocked XREADGROUP", func() bool { return blockedRead(ctx, rdb) })
			mustEnqueue(t, s, entry(1, "b"))
			r := <-done
			if r.err != nil {
				t.Fatalf("Read: %v", r.err)
			}
			if len(r.jobs) != 1 || r.jobs[0].Destination != "b" {
				t.Fatalf("Read = %+v, want the one job of b", r.jobs)
			}
			if r.took >= block {
				t.Errorf("Read took %v, want it to return when the job came", r.took)
			}
		})
	}
}

// blockedRead reports whether some client of rdb is blocked in XREADGROUP.
func blockedRead(ctx context.Context, rdb *redis.Client) bool {
	list, _ := rdb.ClientList(ctx).Result()
	for _, line := range strings.Split(list, "\n") {
		f := strings.Fields(line)
		if slices.Contains(f, "flags=b") && slices.Contains(f, "cmd=xreadgroup") {
			return true
		}
	}
	return false
}

func TestReadBlockTimesOut(t *testing.T) {
	t.Parallel()
	s, _, _ := mustStore(t)
	start := time.Now()
	jobs, err := s.Read(ctxT(t), tenant, "c1", map[string]int{"a": 1, "b": 2}, 100*time.Millisecond)
	if err != nil || len(jobs) != 0 {
		t.Fatalf("Read on empty streams = %v, %v; want nothing, no error", jobs, err)
	}
	if took := time.Since(start); took < 100*time.Millisecond {
		t.Errorf("Read returned after %v, want it to wait the 100ms block", took)
	}
}

func TestAck(t *testing.T) {
	t.Parallel()
	s, rdb, _ := mustStore(t)
	mustEnqueue(t, s, entry(1, "crm"), entry(2, "crm"))
	jobs := mustRead(t, s, "c1", map[string]int{"crm": 10})
	if len(jobs) != 2 {
		t.Fatalf("Read = %d jobs, want 2", len(jobs))
	}
	if err := s.Ack(ctxT(t), &jobs[0]); err != nil {
		t.Fatalf("Ack: %v", err)
	}
	key := streamKey(tenant, "crm")
	if n, p := xlen(t, rdb, key), pending(t, rdb, key); n != 1 || p != 1 {
		t.Errorf("after one ack: XLEN = %d, pending = %d; want 1, 1", n, p)
	}
	// Acking twice is harmless.
	if err := s.Ack(ctxT(t), &jobs[0]); err != nil {
		t.Fatalf("second Ack: %v", err)
	}
	if err := s.Ack(ctxT(t), &jobs[1]); err != nil {
		t.Fatalf("Ack: %v", err)
	}
	if n, p := xlen(t, rdb, key), pending(t, rdb, key); n != 0 || p != 0 {
		t.Errorf("after acks: XLEN = %d, pending = %d; want 0, 0", n, p)
	}
	if err := s.Ack(ctxT(t), &Job{}); err == nil {
		t.Error("Ack of an empty job: err = nil, want an error")
	}
}

func TestReclaim(t *testing.T) {
	t.Parallel()
	s, rdb, _ := mustStore(t)
	ctx := ctxT(t)
	mustEnqueue(t, s, entry(1, "a"), entry(2, "a"), entry(3, "b"))
	dead := mustRead(t, s, "dead", map[string]int{"a": 10, "b": 10})
	if len(dead) != 3 {
		t.Fatalf("Read = %d jobs, want 3", len(dead))
	}
	// The stream entry of one pending job disappears (trimmed, deleted by
	// hand): Reclaim must drop it, not return it.
	if err := rdb.XDel(ctx, streamKey(tenant, "a"), dead[0].ID).Err(); err != nil {
		t.Fatal(err)
	}

	const idle = 200 * time.Millisecond
	jobs, err := s.Reclaim(ctx, tenant, "alive", []string{"a", "b"}, time.Hour, 10)
	if err != nil || len(jobs) != 0 {
		t.Fatalf("Reclaim before the visibility timeout = %v, %v; want nothing", jobs, err)
	}
	awaitIdle(t, rdb, streamKey(tenant, "a"), idle, 2)
	awaitIdle(t, rdb, streamKey(tenant, "b"), idle, 1)
	jobs, err = s.Reclaim(ctx, tenant, "alive", []string{"a", "b", "never"}, idle, 10)
	if err != nil {
		t.Fatalf("Reclaim: %v", err)
	}
	if got := eventIDs(jobs); !slices.Equal(got, []string{"evt_0002", "evt_0003"}) {
		t.Errorf("reclaimed = %v, want evt_0002, evt_0003 (evt_0001 was deleted)", got)
	}
	if p := pending(t, rdb, streamKey(tenant, "a")); p != 1 {
		t.Errorf("pending a = %d, want 1 (the deleted entry acked away)", p)
	}
	for _, j := range jobs {
		if j.Tenant != tenant || len(j.Event) == 0 {
			t.Errorf("reclaimed job = %+v, want its fields", j)
		}
		if err := s.Ack(ctx, &j); err != nil {
			t.Fatal(err)
		}
	}
	if p := pending(t, rdb, streamKey(tenant, "b")); p != 0 {
		t.Errorf("pending b after ack = %d, want 0", p)
	}

	// count bounds the jobs over all destinations.
	for i := 10; i < 15; i++ {
		mustEnqueue(t, s, entry(i, "a", "b"))
	}
	_ = mustRead(t, s, "dead", map[string]int{"a": 10, "b": 10})
	jobs, err = s.Reclaim(ctx, tenant, "alive", []string{"a", "b"}, 0, 3)
	if err != nil || len(jobs) != 3 {
		t.Errorf("Reclaim count 3 = %d jobs, %v; want 3", len(jobs), err)
	}
}

// TestReclaimCountsLostAttempts: a job reclaimed from a consumer that
// stopped carries the attempts that consumer (and any before it) made
// without recording an outcome, so max_attempts ends a job whose delivery
// keeps killing its instance.
func TestReclaimCountsLostAttempts(t *testing.T) {
	bothStores(t, func(t *testing.T, s *Store, rdb *redis.Client) {
		ctx := ctxT(t)
		mustEnqueue(t, s, entry(1, "a"))
		if jobs := mustRead(t, s, "c1", map[string]int{"a": 1}); len(jobs) != 1 || jobs[0].Attempts != 0 {
			t.Fatalf("Read = %+v, want one job with 0 attempts", jobs)
		}
		for i, consumer := range []string{"c2", "c3"} {
			jobs, err := s.Reclaim(ctx, tenant, consumer, []string{"a"}, 0, 10)
			if err != nil || len(jobs) != 1 {
				t.Fatalf("Reclaim by %s = %v, %v; want the job", consumer, jobs, err)
			}
			if want := i + 1; jobs[0].Attempts != want {
				t.Errorf("Reclaim by %s: attempts = %d, want %d (handed out %d times, no outcome recorded)", consumer, jobs[0].Attempts, want, want)
			}
		}
		// A job with an attempt recorded (retried, promoted) adds its lost
		// ones to it; and the count is not written back into the entry.
		jobs, err := s.Reclaim(ctx, tenant, "c4", []string{"a"}, 0, 10)
		if err != nil || len(jobs) != 1 {
			t.Fatalf("Reclaim by c4 = %v, %v", jobs, err)
		}
		if err := s.Retry(ctx, &jobs[0], 4, time.Now().Add(-time.Second), "boom"); err != nil {
			t.Fatal(err)
		}
		if n, _, err := s.PromoteNext(ctx, tenant, time.Now(), 10); err != nil || n != 1 {
			t.Fatalf("PromoteNext = %d, %v; want 1", n, err)
		}
		if jobs := mustRead(t, s, "c5", map[string]int{"a": 1}); len(jobs) != 1 || jobs[0].Attempts != 4 {
			t.Fatalf("Read after the retry = %+v, want one job with 4 attempts", jobs)
		}
		jobs, err = s.Reclaim(ctx, tenant, "c6", []string{"a"}, 0, 10)
		if err != nil || len(jobs) != 1 || jobs[0].Attempts != 5 {
			t.Fatalf("Reclaim after a recorded attempt = %+v, %v; want 5 attempts", jobs, err)
		}
	})
}

// TestReclaimOrderedReads: a job read for an ordered destination (an
// OrderedConsumer's) and never attempted comes back from a reclaim with no
// attempt counted, however often it was claimed by lease holders.
func TestReclaimOrderedReads(t *testing.T) {
	bothStores(t, func(t *testing.T, s *Store, rdb *redis.Client) {
		ctx := ctxT(t)
		mustEnqueue(t, s, entry(1, "a"))
		_ = mustRead(t, s, OrderedConsumer("c1"), map[string]int{"a": 1})
		if _, err := s.ClaimHeld(ctx, tenant, "a", OrderedConsumer("c2")); err != nil {
			t.Fatal(err)
		}
		jobs, err := s.Reclaim(ctx, tenant, "c3", []string{"a"}, 0, 10)
		if err != nil || len(jobs) != 1 || jobs[0].Attempts != 0 {
			t.Fatalf("Reclaim = %+v, %v; want the job with 0 attempts", jobs, err)
		}
		// c3 dies attempting it: the next reclaim counts that one attempt,
		// not the ordered reads before it.
		jobs, err = s.Reclaim(ctx, tenant, "c4", []string{"a"}, 0, 10)
		if err != nil || len(jobs) != 1 || jobs[0].Attempts != 1 {
			t.Fatalf("second Reclaim = %+v, %v; want the job with 1 attempt", jobs, err)
		}
	})
}

// TestReclaimHeldTwice: a held head (held in place while its destination
// was ordered) keeps its hold's attempts when the instance that reclaimed
// it stops too: due now, the next reclaim counts them and the lost attempt;
// still to wait, it comes again with its attempts and due time (no attempt
// was made), until Unhold once it is in the retry set.
func TestReclaimHeldTwice(t *testing.T) {
	bothStores(t, func(t *testing.T, s *Store, rdb *redis.Client) {
		ctx := ctxT(t)
		mustEnqueue(t, s, entry(1, "a"), entry(2, "b"))
		jobs := mustRead(t, s, OrderedConsumer("c1"), map[string]int{"a": 1, "b": 1})
		later := time.UnixMilli(time.Now().Add(time.Hour).UnixMilli())
		for _, j := range jobs {
			due := time.Now().Add(-time.Second) // a: due now
			if j.Destination == "b" {
				due = later
			}
			if err := s.Hold(ctx, &j, 3, due, "boom"); err != nil {
				t.Fatal(err)
			}
		}
		byDest := func(consumer string) map[string]Job {
			t.Helper()
			got, err := s.Reclaim(ctx, tenant, consumer, []string{"a", "b"}, 0, 10)
			if err != nil {
				t.Fatal(err)
			}
			m := map[string]Job{}
			for _, j := range got {
				m[j.Destination] = j
			}
			return m
		}
		got := byDest("c2")
		if a := got["a"]; a.Attempts != 3 || a.LastError != "boom" {
			t.Fatalf("first Reclaim of a = %+v; want its 3 held attempts", a)
		}
		if b := got["b"]; b.Attempts != 3 || !b.Due.Equal(later) {
			t.Fatalf("first Reclaim of b = %+v; want its 3 held attempts, due %v", b, later)
		}
		for i, consumer := range []string{"c3", "c4"} { // c2, then c3, stop
			got = byDest(consumer)
			if want := 4 + i; got["a"].Attempts != want {
				t.Errorf("Reclaim of a by %s = %+v; want %d attempts (held + lost)", consumer, got["a"], want)
			}
			if b := got["b"]; b.Attempts != 3 || !b.Due.Equal(later) || b.LastError != "boom" {
				t.Errorf("Reclaim of b by %s = %+v; want still its 3 attempts, due %v", consumer, b, later)
			}
		}
		if err := s.Unhold(ctx, tenant, "b", got["b"].ID); err != nil {
			t.Fatal(err)
		}
		if n := rdb.HLen(ctx, holdKey(tenant, "b")).Val(); n != 0 {
			t.Errorf("hold records of b after Unhold = %d, want 0", n)
		}
	})
}

func TestRelease(t *testing.T) {
	t.Parallel()
	s, rdb, _ := mustStore(t)
	ctx := ctxT(t)
	e := entry(1, "crm")
	e.TraceParent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
	mustEnqueue(t, s, e, entry(2, "crm"))
	jobs := mustRead(t, s, "c1", map[string]int{"crm": 2})
	if len(jobs) != 2 {
		t.Fatalf("Read = %d jobs, want 2", len(jobs))
	}
	if err := s.Release(ctx, &jobs[0]); err != nil {
		t.Fatalf("Release: %v", err)
	}
	key := streamKey(tenant, "crm")
	if n, p := xlen(t, rdb, key), pending(t, rdb, key); n != 2 || p != 1 {
		t.Errorf("after release: XLEN = %d, pending = %d; want 2, 1", n, p)
	}
	again := mustRead(t, s, "c2", map[string]int{"crm": 10})
	if len(again) != 1 {
		t.Fatalf("Read after release = %d jobs, want the released one", len(again))
	}
	got, want := again[0], jobs[0]
	if got.ID == want.ID || got.EventID != want.EventID || string(got.Event) != string(want.Event) ||
		got.Attempts != want.Attempts || !got.EnqueuedAt.Equal(want.EnqueuedAt) || got.TraceParent != want.TraceParent {
		t.Errorf("released job = %+v, want %+v under a new id", got, want)
	}
	// Releasing a job that is no longer pending does not put it back.
	if err := s.Release(ctx, &jobs[0]); err != nil {
		t.Fatalf("stale Release: %v", err)
	}
	if n := xlen(t, rdb, key); n != 2 {
		t.Errorf("XLEN after stale release = %d, want 2", n)
	}
}

func TestReadRecoversFromFlushAll(t *testing.T) {
	t.Parallel()
	for name, want := range map[string]map[string]int{
		"uniform": {"a": 2, "b": 2},
		"mixed":   {"a": 1, "b": 2},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			s, rdb, _ := mustStore(t)
			ctx := ctxT(t)
			if err := s.EnsureGroups(ctx, tenant, []string{"a", "b"}); err != nil {
				t.Fatal(err)
			}
			if err := rdb.FlushAll(ctx).Err(); err != nil {
				t.Fatal(err)
			}
			// The stream comes back without its group.
			mustEnqueue(t, s, entry(1, "a"))
			jobs, err := s.Read(ctx, tenant, "c1", want, 0)
			if err != nil {
				t.Fatalf("Read after FLUSHALL: %v", err)
			}
			if len(jobs) != 1 || jobs[0].EventID != "evt_0001" {
				t.Errorf("Read after FLUSHALL = %+v, want evt_0001", jobs)
			}
		})
	}
}

func TestBlockedReadRecoversFromFlushAll(t *testing.T) {
	t.Parallel()
	s, rdb, _ := mustStore(t)
	ctx := ctxT(t)
	if err := s.EnsureGroups(ctx, tenant, []string{"a"}); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	var jobs []Job
	go func() {
		var err error
		jobs, err = s.Read(ctx, tenant, "c1", map[string]int{"a": 1}, 20*time.Second)
		done <- err
	}()
	await(t, "a blocked XREADGROUP", func() bool { return blockedRead(ctx, rdb) })
	// Redis unblocks the read with "UNBLOCKED the stream key no longer
	// exists"; Read re-creates the group and waits again.
	if err := rdb.FlushAll(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	await(t, "the group to be re-created", func() bool {
		groups, _ := rdb.XInfoGroups(ctx, streamKey(tenant, "a")).Result()
		return len(groups) == 1
	})
	mustEnqueue(t, s, entry(1, "a"))
	if err := <-done; err != nil {
		t.Fatalf("Read across FLUSHALL: %v", err)
	}
	if len(jobs) != 1 {
		t.Errorf("Read across FLUSHALL = %d jobs, want 1", len(jobs))
	}
}

func TestReadRecoversFromRestart(t *testing.T) {
	t.Parallel()
	s, _, srv := mustStore(t)
	ctx := ctxT(t)
	want := map[string]int{"a": 5, "b": 5}
	mustEnqueue(t, s, entry(1, "a", "b"))
	if jobs := mustRead(t, s, "c1", want); len(jobs) != 2 {
		t.Fatalf("Read = %d jobs, want 2", len(jobs))
	}

	srv.Kill() // no persistence: streams, groups and scripts are gone
	srv.Start()

	failures := 0
	for range 2 {
		if _, err := s.Read(ctx, tenant, "c1", want, 0); err != nil {
			failures++
			t.Logf("Read after restart: %v", err)
			continue
		}
		break
	}
	if failures > 1 {
		t.Fatalf("Read failed %d times after a restart, want at most once", failures)
	}
	// Every path works again: enqueue (scripts reloaded), read, retry,
	// promote, ack.
	mustEnqueue(t, s, entry(2, "a", "b"))
	jobs := mustRead(t, s, "c1", want)
	if got := eventIDs(jobs); !slices.Equal(got, []string{"evt_0002", "evt_0002"}) {
		t.Fatalf("Read after restart = %v, want evt_0002 for a and b", got)
	}
	if err := s.Retry(ctx, &jobs[0], 1, time.Now(), "503"); err != nil {
		t.Fatalf("Retry after restart: %v", err)
	}
	if n, _, err := s.PromoteNext(ctx, tenant, time.Now(), 10); err != nil || n != 1 {
		t.Fatalf("Promote after restart = %d, %v; want 1", n, err)
	}
	if err := s.Ack(ctx, &jobs[1]); err != nil {
		t.Fatalf("Ack after restart: %v", err)
	}
}

// TestPruneConsumers: consumers that hold no job and have been idle long
// enough go; one holding a job stays (its job must stay claimable), and so
// does the caller. (Redis only: the embedded store, which lives and dies
// with its one process, does not track consumers' idle times.)
func TestPruneConsumers(t *testing.T) {
	t.Parallel()
	s, rdb, _ := mustStore(t)
	ctx := ctxT(t)
	mustEnqueue(t, s, entry(1, "a"), entry(2, "a"), entry(3, "a"))
	for _, c := range []string{"gone", "me"} {
		jobs := mustRead(t, s, c, map[string]int{"a": 1})
		if err := s.Ack(ctx, &jobs[0]); err != nil {
			t.Fatal(err)
		}
	}
	_ = mustRead(t, s, "holding", map[string]int{"a": 1})
	consumers := func() []string {
		cs, err := rdb.XInfoConsumers(ctx, streamKey(tenant, "a"), "sb").Result()
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, c := range cs {
			names = append(names, c.Name)
		}
		slices.Sort(names)
		return names
	}
	if n, err := s.PruneConsumers(ctx, tenant, []string{"a", "none"}, "me", time.Hour); err != nil || n != 0 {
		t.Errorf("PruneConsumers(idle 1h) = %d, %v; want none removed yet", n, err)
	}
	if n, err := s.PruneConsumers(ctx, tenant, []string{"a", "none"}, "me", 0); err != nil || n != 1 {
		t.Errorf("PruneConsumers = %d, %v; want 1", n, err)
	}
	if got := consumers(); !slices.Equal(got, []string{"holding", "me"}) {
		t.Errorf("consumers = %v, want holding, me", got)
	}
}

// TestTouch: touching a job its consumer holds restarts its idle time (a
// reclaim with a visibility timeout passes it by) without counting a
// delivery; a job another consumer took is left alone.
func TestTouch(t *testing.T) {
	bothStores(t, func(t *testing.T, s *Store, rdb *redis.Client) {
		ctx := ctxT(t)
		mustEnqueue(t, s, entry(1, "a"), entry(2, "a"))
		jobs := mustRead(t, s, "c1", map[string]int{"a": 2})
		key := streamKey(tenant, "a")
		for _, j := range jobs { // long idle, as if their attempts ran for an hour
			if err := rdb.Do(ctx, "XCLAIM", key, "sb", "c1", 0, j.ID, "IDLE", 3600000, "RETRYCOUNT", 1, "JUSTID").Err(); err != nil {
				t.Fatal(err)
			}
		}
		if ok, err := s.Touch(ctx, &jobs[0], "c1"); err != nil || !ok {
			t.Fatalf("Touch of c1's job = %v, %v; want true", ok, err)
		}
		if ok, err := s.Touch(ctx, &jobs[1], "c2"); err != nil || ok {
			t.Fatalf("Touch of c1's job by c2 = %v, %v; want false", ok, err)
		}
		got, err := s.Reclaim(ctx, tenant, "c3", []string{"a"}, time.Minute, 10)
		if err != nil || len(got) != 1 || got[0].ID != jobs[1].ID {
			t.Fatalf("Reclaim = %+v, %v; want only the untouched job", got, err)
		}
		if got[0].Attempts != 1 {
			t.Errorf("reclaimed attempts = %d, want 1 (one lost hand-out)", got[0].Attempts)
		}
		// the touched one was not counted as a delivery either
		p, err := rdb.XPendingExt(ctx, &redis.XPendingExtArgs{Stream: key, Group: "sb", Start: jobs[0].ID, End: jobs[0].ID, Count: 1}).Result()
		if err != nil || len(p) != 1 || p[0].Consumer != "c1" || p[0].RetryCount != 1 {
			t.Errorf("touched job pending = %+v, %v; want c1's, delivered once", p, err)
		}
	})
}

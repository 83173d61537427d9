package queue

import (
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"
)

func TestRetryPromote(t *testing.T) {
	t.Parallel()
	s, rdb, _ := mustStore(t)
	ctx := ctxT(t)
	e := entry(1, "crm")
	e.Raw, e.RawFor = []byte("raw body"), []string{"crm"}
	e.TraceParent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
	mustEnqueue(t, s, e)
	job := mustRead(t, s, "c1", map[string]int{"crm": 1})[0]

	if n, next, err := s.PromoteNext(ctx, tenant, time.Now(), 10); err != nil || n != 0 || !next.IsZero() {
		t.Errorf("PromoteNext of an empty retry set = %d, %v, %v; want 0, zero time", n, next, err)
	}
	due := time.UnixMilli(1_800_000_000_123)
	if err := s.Retry(ctx, &job, 1, due, "HTTP 503"); err != nil {
		t.Fatalf("Retry: %v", err)
	}
	key := streamKey(tenant, "crm")
	if n, p := xlen(t, rdb, key), pending(t, rdb, key); n != 0 || p != 0 {
		t.Errorf("after retry: XLEN = %d, pending = %d; want 0, 0", n, p)
	}
	if n, next, err := s.PromoteNext(ctx, tenant, due.Add(-time.Millisecond), 10); err != nil || n != 0 || !next.Equal(due) {
		t.Errorf("PromoteNext before due = %d, %v, %v; want 0 moved, next %v", n, next, err, due)
	}
	if st := mustStats(t, s, "crm")["crm"]; st.Retrying != 1 {
		t.Errorf("Retrying = %d, want 1", st.Retrying)
	}

	if n, _, err := s.PromoteNext(ctx, tenant, due.Add(-time.Millisecond), 10); err != nil || n != 0 {
		t.Fatalf("Promote before due = %d, %v; want 0", n, err)
	}
	if n, _, err := s.PromoteNext(ctx, tenant, due, 10); err != nil || n != 1 {
		t.Fatalf("Promote at due = %d, %v; want 1", n, err)
	}
	if st := mustStats(t, s, "crm")["crm"]; st.Retrying != 0 || st.Queued != 1 {
		t.Errorf("after promote: Retrying = %d, Queued = %d; want 0, 1", st.Retrying, st.Queued)
	}
	back := mustRead(t, s, "c1", map[string]int{"crm": 1})
	if len(back) != 1 {
		t.Fatalf("Read after promote = %d jobs, want 1", len(back))
	}
	got := back[0]
	if got.Attempts != 1 || got.LastError != "HTTP 503" || got.EventID != job.EventID ||
		string(got.Event) != string(job.Event) || string(got.Raw) != "raw body" ||
		!got.EnqueuedAt.Equal(job.EnqueuedAt) || got.TraceParent != job.TraceParent || got.ID == job.ID {
		t.Errorf("promoted job = %+v, want %+v with attempts 1, last error, a new id", got, job)
	}

	// A second round counts on.
	if err := s.Retry(ctx, &got, 2, due, "timeout"); err != nil {
		t.Fatal(err)
	}
	if n, _, err := s.PromoteNext(ctx, tenant, due, 0); err != nil || n != 1 {
		t.Fatalf("Promote = %d, %v; want 1", n, err)
	}
	if again := mustRead(t, s, "c1", map[string]int{"crm": 1}); len(again) != 1 || again[0].Attempts != 2 || again[0].LastError != "timeout" {
		t.Errorf("second promoted job = %+v, want attempts 2, last error timeout", again)
	}
}

func TestStaleAckGuard(t *testing.T) {
	t.Parallel()
	s, rdb, _ := mustStore(t)
	ctx := ctxT(t)
	mustEnqueue(t, s, entry(1, "crm"), entry(2, "crm"))
	slow := mustRead(t, s, "slow", map[string]int{"crm": 2})
	if len(slow) != 2 {
		t.Fatalf("Read = %d jobs, want 2", len(slow))
	}
	// Another instance takes the jobs over (min idle 0: at once) and
	// finishes them: one delivered, one retried.
	taken, err := s.Reclaim(ctx, tenant, "fast", []string{"crm"}, 0, 10)
	if err != nil || len(taken) != 2 {
		t.Fatalf("Reclaim = %d jobs, %v; want 2", len(taken), err)
	}
	if err := s.Ack(ctx, &taken[0]); err != nil {
		t.Fatal(err)
	}
	if err := s.Retry(ctx, &taken[1], 1, time.Now(), "503"); err != nil {
		t.Fatal(err)
	}

	// The slow instance finishes late: nothing of it may count.
	if err := s.Retry(ctx, &slow[0], 1, time.Now(), "timeout"); err != nil {
		t.Fatal(err)
	}
	if err := s.Retry(ctx, &slow[1], 1, time.Now().Add(time.Hour), "timeout"); err != nil {
		t.Fatal(err)
	}
	if err := s.DeadLetter(ctx, &slow[0], 3, "gone", time.Now()); err != nil {
		t.Fatal(err)
	}
	if err := s.Release(ctx, &slow[1]); err != nil {
		t.Fatal(err)
	}
	if n, err := rdb.ZCard(ctx, retryKey(tenant)).Result(); err != nil || n != 1 {
		t.Errorf("retry set size = %d, %v; want 1 (the fast instance's retry only)", n, err)
	}
	if n := xlen(t, rdb, dlqKey(tenant)); n != 0 {
		t.Errorf("dlq length = %d, want 0", n)
	}
	if n := xlen(t, rdb, streamKey(tenant, "crm")); n != 0 {
		t.Errorf("stream length = %d, want 0", n)
	}
	st := mustStats(t, s, "crm")["crm"]
	if st != (Stats{Retrying: 1}) {
		t.Errorf("stats = %+v, want only Retrying 1", st)
	}
	if n, _, err := s.PromoteNext(ctx, tenant, time.Now(), 10); err != nil || n != 1 {
		t.Errorf("Promote = %d, %v; want 1", n, err)
	}
}

func TestPromoteConcurrent(t *testing.T) {
	t.Parallel()
	s, rdb, _ := mustStore(t)
	ctx := ctxT(t)
	const total = 300
	batch := make([]*Entry, total)
	for i := range batch {
		batch[i] = entry(i, "a", "b")
	}
	mustEnqueue(t, s, batch...)
	now := time.Now()
	for {
		jobs := mustRead(t, s, "c1", map[string]int{"a": 100, "b": 100})
		if len(jobs) == 0 {
			break
		}
		for _, j := range jobs {
			if err := s.Retry(ctx, &j, 1, now, "503"); err != nil {
				t.Fatal(err)
			}
		}
	}
	if n, err := rdb.ZCard(ctx, retryKey(tenant)).Result(); err != nil || n != 2*total {
		t.Fatalf("retry set = %d, %v; want %d", n, err, 2*total)
	}

	var wg sync.WaitGroup
	moved := make([]int, 2)
	errs := make([]error, 2)
	for g := range 2 {
		wg.Go(func() {
			for {
				n, _, err := s.PromoteNext(ctx, tenant, now, 7)
				if err != nil {
					errs[g] = err
					return
				}
				moved[g] += n
				if n == 0 {
					return
				}
			}
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatalf("Promote: %v", err)
		}
	}
	if moved[0]+moved[1] != 2*total {
		t.Errorf("moved %d + %d, want %d in all", moved[0], moved[1], 2*total)
	}
	for _, d := range []string{"a", "b"} {
		jobs := mustRead(t, s, "c2", map[string]int{d: 10 * total})
		ids := eventIDs(jobs)
		if len(ids) != total || len(slices.Compact(ids)) != total {
			t.Errorf("%s: %d jobs, %d distinct; want %d, no duplicates", d, len(jobs), len(slices.Compact(ids)), total)
		}
	}
	if st := mustStats(t, s, "a", "b"); st["a"].Retrying != 0 || st["b"].Retrying != 0 {
		t.Errorf("Retrying = %d, %d; want 0, 0", st["a"].Retrying, st["b"].Retrying)
	}
}

func TestStats(t *testing.T) {
	t.Parallel()
	s, _, _ := mustStore(t)
	ctx := ctxT(t)
	for i := range 6 {
		mustEnqueue(t, s, entry(i, "a"))
	}
	mustEnqueue(t, s, entry(10, "b"))
	jobs := mustRead(t, s, "c1", map[string]int{"a": 4})
	if err := s.Retry(ctx, &jobs[0], 1, time.Now().Add(time.Hour), "503"); err != nil {
		t.Fatal(err)
	}
	if err := s.DeadLetter(ctx, &jobs[1], 5, "410", time.Now()); err != nil {
		t.Fatal(err)
	}
	// jobs[2] and jobs[3] in flight, 2 of a queued, 1 of b queued.

	now := time.Now()
	st, err := s.Stats(ctx, tenant, []string{"a", "b", "c"}, now)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]Stats{
		"a": {Queued: 2, InFlight: 2, Retrying: 1, Dead: 1},
		"b": {Queued: 1},
		"c": {},
	}
	for d, w := range want {
		got := st[d]
		oldest := got.Oldest
		got.Oldest = 0
		if got != w {
			t.Errorf("Stats[%s] = %+v, want %+v", d, got, w)
		}
		if d != "c" && (oldest <= 0 || oldest > time.Minute) {
			t.Errorf("Stats[%s].Oldest = %v, want a small positive age", d, oldest)
		}
		if d == "c" && oldest != 0 {
			t.Errorf("Stats[c].Oldest = %v, want 0", oldest)
		}
	}
	if len(st) != 3 {
		t.Errorf("Stats has %d destinations, want 3: %v", len(st), st)
	}
	// Dead letters of a destination not asked for are still reported.
	st, err = s.Stats(ctx, tenant, []string{"b"}, now)
	if err != nil || st["a"].Dead != 1 || st["a"].Retrying != 1 {
		t.Errorf("Stats(b)[a] = %+v, %v; want Dead 1, Retrying 1", st["a"], err)
	}
}

func TestDeadLetterAndDLQ(t *testing.T) {
	t.Parallel()
	s, rdb, _ := mustStore(t)
	ctx := ctxT(t)

	// Three dead letters for a, two for b.
	var entries []*Entry
	for i := range 3 {
		entries = append(entries, entry(i, "a"))
	}
	for i := 3; i < 5; i++ {
		e := entry(i, "b")
		e.Raw, e.RawFor = []byte(fmt.Sprintf("raw %d", i)), []string{"b"}
		entries = append(entries, e)
	}
	mustEnqueue(t, s, entries...)
	failedAt := time.UnixMilli(1_800_000_000_000)
	jobs := mustRead(t, s, "c1", map[string]int{"a": 10, "b": 10})
	for i, j := range jobs {
		if err := s.DeadLetter(ctx, &j, 12, fmt.Sprintf("HTTP 500 (%d)", i), failedAt); err != nil {
			t.Fatal(err)
		}
	}
	if n, p := xlen(t, rdb, streamKey(tenant, "a")), pending(t, rdb, streamKey(tenant, "a")); n != 0 || p != 0 {
		t.Errorf("stream a after dead-letter: XLEN = %d, pending = %d; want 0, 0", n, p)
	}

	all, err := s.DLQList(ctx, tenant, "", 0)
	if err != nil || len(all) != 5 {
		t.Fatalf("DLQList = %d, %v; want 5", len(all), err)
	}
	for i, d := range all {
		j := jobs[i]
		if d.Destination != j.Destination || d.EventID != j.EventID || d.Attempts != 12 ||
			d.LastError != fmt.Sprintf("HTTP 500 (%d)", i) || !d.FailedAt.Equal(failedAt) ||
			string(d.Event) != string(j.Event) || string(d.Raw) != string(j.Raw) ||
			!d.EnqueuedAt.Equal(j.EnqueuedAt) || d.Tenant != tenant || d.ID == "" {
			t.Errorf("dead letter %d = %+v, want the fields of %+v", i, d, j)
		}
	}
	if onlyB, err := s.DLQList(ctx, tenant, "b", 1); err != nil || len(onlyB) != 1 || onlyB[0].EventID != "evt_0003" {
		t.Errorf("DLQList(b, 1) = %+v, %v; want evt_0003", onlyB, err)
	}

	// Replay one by id; an unknown, a malformed and the same id again are skipped.
	now := time.UnixMilli(1_900_000_000_000)
	n, err := s.DLQReplay(ctx, tenant, "", []string{all[0].ID, "1-1", "nonsense", all[0].ID}, false, now)
	if err != nil || n != 1 {
		t.Fatalf("DLQReplay(id) = %d, %v; want 1", n, err)
	}
	replayed := mustRead(t, s, "c1", map[string]int{"a": 10})
	if len(replayed) != 1 {
		t.Fatalf("Read after replay = %d jobs, want 1", len(replayed))
	}
	r := replayed[0]
	if r.EventID != "evt_0000" || r.Attempts != 0 || !r.EnqueuedAt.Equal(now) || r.LastError != "" || string(r.Event) != string(jobs[0].Event) {
		t.Errorf("replayed job = %+v, want evt_0000 with attempts 0, enqueued at %v, no last error", r, now)
	}

	// An id of another destination is not touched with a destination filter.
	if n, err := s.DLQPurge(ctx, tenant, "a", []string{all[3].ID}, false); err != nil || n != 0 {
		t.Errorf("DLQPurge(a, id of b) = %d, %v; want 0", n, err)
	}
	// Nothing selected does nothing.
	if n, err := s.DLQPurge(ctx, tenant, "", nil, false); err != nil || n != 0 {
		t.Errorf("DLQPurge(nothing) = %d, %v; want 0", n, err)
	}
	// An id no entry can have (beyond 64 bits) is skipped, not an error
	// that would leave the others half done.
	if n, err := s.DLQPurge(ctx, tenant, "", []string{"18446744073709551616-0", all[1].ID, "1-18446744073709551616"}, false); err != nil || n != 1 {
		t.Errorf("DLQPurge(id among impossible ids) = %d, %v; want 1", n, err)
	}
	if st := mustStats(t, s, "a", "b"); st["a"].Dead != 1 || st["b"].Dead != 2 {
		t.Errorf("Dead = a:%d b:%d, want 1 2", st["a"].Dead, st["b"].Dead)
	}

	// Replay all of b, then purge the rest.
	if n, err := s.DLQReplay(ctx, tenant, "b", nil, true, now); err != nil || n != 2 {
		t.Errorf("DLQReplay(b, all) = %d, %v; want 2", n, err)
	}
	bJobs := mustRead(t, s, "c1", map[string]int{"b": 10})
	if got := eventIDs(bJobs); !slices.Equal(got, []string{"evt_0003", "evt_0004"}) {
		t.Errorf("replayed b = %v, want evt_0003, evt_0004", got)
	}
	for _, j := range bJobs {
		if string(j.Raw) == "" || j.Attempts != 0 {
			t.Errorf("replayed b job = %+v, want its raw body and 0 attempts", j)
		}
	}
	if n, err := s.DLQPurge(ctx, tenant, "", nil, true); err != nil || n != 1 {
		t.Errorf("DLQPurge(all) = %d, %v; want 1", n, err)
	}
	if left, err := s.DLQList(ctx, tenant, "", 0); err != nil || len(left) != 0 {
		t.Errorf("DLQList after purge = %d, %v; want 0", len(left), err)
	}
	if st := mustStats(t, s, "a", "b"); st["a"].Dead != 0 || st["b"].Dead != 0 {
		t.Errorf("Dead after purge = a:%d b:%d, want 0 0", st["a"].Dead, st["b"].Dead)
	}
}

func TestDLQManyInBatches(t *testing.T) {
	t.Parallel()
	s, _, _ := mustStore(t)
	ctx := ctxT(t)
	const total = 2*dlqBatch + 17
	batch := make([]*Entry, total)
	for i := range batch {
		batch[i] = entry(i, []string{"a", "b"}[i%2])
	}
	mustEnqueue(t, s, batch...)
	jobs := mustRead(t, s, "c1", map[string]int{"a": total, "b": total})
	for _, j := range jobs {
		if err := s.DeadLetter(ctx, &j, 1, "410", time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	list, err := s.DLQList(ctx, tenant, "a", 0)
	if err != nil || len(list) != (total+1)/2 {
		t.Fatalf("DLQList(a) = %d, %v; want %d", len(list), err, (total+1)/2)
	}
	if n, err := s.DLQReplay(ctx, tenant, "a", nil, true, time.Now()); err != nil || n != (total+1)/2 {
		t.Errorf("DLQReplay(a, all) = %d, %v; want %d", n, err, (total+1)/2)
	}
	ids := make([]string, 0, total)
	rest, err := s.DLQList(ctx, tenant, "", 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range rest {
		ids = append(ids, d.ID)
	}
	if n, err := s.DLQPurge(ctx, tenant, "", ids, false); err != nil || n != total/2 {
		t.Errorf("DLQPurge(%d ids) = %d, %v; want %d", len(ids), n, err, total/2)
	}
	st := mustStats(t, s, "a", "b")
	if st["a"].Queued != (total+1)/2 || st["a"].Dead != 0 || st["b"].Dead != 0 {
		t.Errorf("stats = %+v, want a queued %d and no dead letters", st, (total+1)/2)
	}
}

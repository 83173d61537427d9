package queue

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// bothStores runs f against a real redis-server and against the embedded
// store: the history scripts must work on both.
func bothStores(t *testing.T, f func(t *testing.T, s *Store, rdb *redis.Client)) {
	t.Run("redis", func(t *testing.T) {
		t.Parallel()
		s, rdb, _ := mustStore(t)
		f(t, s, rdb)
	})
	t.Run("embedded", func(t *testing.T) {
		t.Parallel()
		emb, err := StartEmbedded()
		if err != nil {
			t.Fatalf("StartEmbedded: %v", err)
		}
		t.Cleanup(emb.Close)
		rdb := redis.NewClient(&redis.Options{Addr: emb.Addr()})
		t.Cleanup(func() { _ = rdb.Close() })
		f(t, New(rdb), rdb)
	})
}

func historyEntry(n int, at time.Time, msg string, dests ...string) *Entry {
	e := entry(n, dests...)
	e.Now = at
	e.History = time.Hour
	e.MessageID = msg
	e.DedupKey = fmt.Sprintf("key-%d", n)
	return e
}

func TestHistoryWrittenWithEnqueue(t *testing.T) {
	t.Parallel()
	bothStores(t, func(t *testing.T, s *Store, rdb *redis.Client) {
		ctx := ctxT(t)
		at := time.Now().Add(-time.Minute).Truncate(time.Millisecond)
		e := historyEntry(1, at, "SM1", "crm", "legacy")
		e.Raw, e.RawFor = []byte("raw\x00body"), []string{"legacy"}
		e.TraceParent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
		dup := historyEntry(2, at, "SM1", "crm", "legacy") // the carrier's retry
		dup.DedupKey = e.DedupKey
		other := historyEntry(3, at.Add(time.Millisecond), "SM1", "crm")
		other.DedupKey = "" // no dedup: always recorded
		fresh, err := s.Enqueue(ctx, time.Hour, e, dup, other)
		if err != nil || !slices.Equal(fresh, []bool{true, false, true}) {
			t.Fatalf("Enqueue = %v, %v; want [true false true]", fresh, err)
		}

		h, ok, err := s.History(ctx, tenant, "evt_0001")
		if err != nil || !ok {
			t.Fatalf("History = %v, %v", ok, err)
		}
		if string(h.Event) != string(e.Event) || !h.ReceivedAt.Equal(at) || !slices.Equal(h.Destinations, []string{"crm", "legacy"}) || len(h.Attempts) != 0 {
			t.Errorf("history = %+v", h)
		}
		if _, ok, _ := s.History(ctx, tenant, "evt_0002"); ok {
			t.Error("the duplicate was recorded in the history")
		}
		if _, ok, _ := s.History(ctx, tenant, "evt_nope"); ok {
			t.Error("an unknown event was found")
		}
		evs, err := s.HistoryByMessage(ctx, tenant, "SM1")
		if err != nil || len(evs) != 2 || evs[0].ID != "evt_0001" || evs[1].ID != "evt_0003" {
			t.Errorf("HistoryByMessage = %+v, %v; want evt_0001, evt_0003", evs, err)
		}
		if evs, _ := s.HistoryByMessage(ctx, tenant, "SM-none"); len(evs) != 0 {
			t.Errorf("HistoryByMessage(unknown) = %+v", evs)
		}
		ttl, err := rdb.PTTL(ctx, historyKey(tenant, "evt_0001")).Result()
		if err != nil || ttl <= 59*time.Minute || ttl > time.Hour {
			t.Errorf("history TTL = %v (%v), want about 1h", ttl, err)
		}
		// The message index: created with its TTL by the first event,
		// appended to (TTL renewed) by the next.
		ttl, err = rdb.PTTL(ctx, messageKey(tenant, "SM1")).Result()
		if err != nil || ttl <= 59*time.Minute || ttl > time.Hour {
			t.Errorf("message index TTL = %v (%v), want about 1h", ttl, err)
		}
		if v, _ := rdb.Get(ctx, messageKey(tenant, "SM1")).Result(); v != "evt_0001 evt_0003 " {
			t.Errorf("message index = %q, want both events", v)
		}
	})
}

// TestHistoryListsAttempted: a destination attempted before the enqueue (a
// pass-through) gets no job, but the history lists it as routed, with the
// raw callback it needs, and Recover re-sends to it — also when it was the
// event's only destination.
func TestHistoryListsAttempted(t *testing.T) {
	t.Parallel()
	bothStores(t, func(t *testing.T, s *Store, rdb *redis.Client) {
		ctx := ctxT(t)
		at := time.Now().Add(-time.Minute).Truncate(time.Millisecond)
		both := historyEntry(1, at, "SM1", "crm")
		both.Attempted = []string{"legacy"}
		both.Raw, both.RawFor = []byte("raw\x00"), []string{"legacy"}
		only := historyEntry(2, at, "SM2")
		only.Attempted = []string{"legacy"}
		mustEnqueue(t, s, both, only)
		if n := xlen(t, rdb, streamKey(tenant, "legacy")); n != 0 {
			t.Errorf("legacy's stream holds %d jobs, want none: its attempt was made", n)
		}
		if n := xlen(t, rdb, streamKey(tenant, "crm")); n != 1 {
			t.Errorf("crm's stream holds %d jobs, want 1", n)
		}
		for id, want := range map[string][]string{"evt_0001": {"crm", "legacy"}, "evt_0002": {"legacy"}} {
			h, ok, err := s.History(ctx, tenant, id)
			if err != nil || !ok || !slices.Equal(h.Destinations, want) {
				t.Errorf("history of %s = %+v, %v, %v; want destinations %v", id, h.Destinations, ok, err, want)
			}
		}
		if evs, err := s.HistoryByMessage(ctx, tenant, "SM2"); err != nil || len(evs) != 1 {
			t.Errorf("HistoryByMessage(SM2) = %d events, %v; want the pass-through-only event", len(evs), err)
		}

		n, err := s.Recover(ctx, tenant, "legacy", at, at, time.Now())
		if err != nil || n != 2 {
			t.Fatalf("Recover legacy = %d, %v; want 2", n, err)
		}
		jobs := mustRead(t, s, "c1", map[string]int{"legacy": 10})
		if got := eventIDs(jobs); !slices.Equal(got, []string{"evt_0001", "evt_0002"}) {
			t.Fatalf("recovered %v, want evt_0001 and evt_0002", got)
		}
		for _, j := range jobs {
			if want := map[string]string{"evt_0001": "raw\x00"}[j.EventID]; string(j.Raw) != want {
				t.Errorf("recovered %s raw = %q, want %q", j.EventID, j.Raw, want)
			}
		}
	})
}

func TestHistoryAttempts(t *testing.T) {
	t.Parallel()
	bothStores(t, func(t *testing.T, s *Store, rdb *redis.Client) {
		ctx := ctxT(t)
		mustEnqueue(t, s, historyEntry(1, time.Now(), "", "crm"))
		at := time.Now().Truncate(time.Millisecond)
		for n := 1; n <= MaxAttemptLog+5; n++ {
			a := Attempt{Time: at, Destination: "crm", Attempt: n, StatusCode: 502, Latency: 1500 * time.Microsecond, Outcome: "retry", Error: "HTTP 502"}
			if err := s.RecordAttempt(ctx, tenant, "evt_0001", a); err != nil {
				t.Fatalf("RecordAttempt: %v", err)
			}
		}
		if err := s.RecordAttempt(ctx, tenant, "evt_gone", Attempt{Destination: "crm"}); err != nil {
			t.Fatalf("RecordAttempt of an unknown event: %v", err)
		}
		if n, _ := rdb.Exists(ctx, attemptsKey(tenant, "evt_gone")).Result(); n != 0 {
			t.Error("an attempt of an event not in the history was kept")
		}
		h, _, err := s.History(ctx, tenant, "evt_0001")
		if err != nil {
			t.Fatal(err)
		}
		if len(h.Attempts) != MaxAttemptLog {
			t.Fatalf("attempts kept = %d, want %d", len(h.Attempts), MaxAttemptLog)
		}
		first := h.Attempts[0]
		want := Attempt{Time: at, Destination: "crm", Attempt: 6, StatusCode: 502, Latency: 1500 * time.Microsecond, Outcome: "retry", Error: "HTTP 502"}
		if !first.Time.Equal(want.Time) || first.Destination != want.Destination || first.Attempt != want.Attempt ||
			first.StatusCode != want.StatusCode || first.Latency != want.Latency || first.Outcome != want.Outcome || first.Error != want.Error {
			t.Errorf("oldest attempt kept = %+v, want %+v", first, want)
		}
		ttl, err := rdb.PTTL(ctx, attemptsKey(tenant, "evt_0001")).Result()
		if err != nil || ttl <= 59*time.Minute || ttl > time.Hour {
			t.Errorf("attempts TTL = %v (%v), want the event's", ttl, err)
		}
		// Recorded as they end: one that started earlier but ended later
		// (another destination's, slower) is still listed by its start.
		mustEnqueue(t, s, historyEntry(2, time.Now(), "", "crm", "app"))
		for _, a := range []Attempt{
			{Time: at.Add(2 * time.Millisecond), Destination: "crm", Attempt: 1, Outcome: "delivered"},
			{Time: at.Add(time.Millisecond), Destination: "app", Attempt: 1, Outcome: "delivered"},
		} {
			if err := s.RecordAttempt(ctx, tenant, "evt_0002", a); err != nil {
				t.Fatal(err)
			}
		}
		h, _, err = s.History(ctx, tenant, "evt_0002")
		if err != nil || len(h.Attempts) != 2 || h.Attempts[0].Destination != "app" || h.Attempts[1].Destination != "crm" {
			t.Errorf("attempts = %+v, %v; want app's then crm's, oldest first", h.Attempts, err)
		}
	})
}

func TestRecover(t *testing.T) {
	t.Parallel()
	s, rdb, _ := mustStore(t)
	ctx := ctxT(t)
	base := time.Now().Add(-30 * time.Minute).Truncate(time.Millisecond)
	// Before the window, 600 in its first millisecond (more than one
	// batch of ties), 3 later in it, one for another destination, one
	// after it.
	var entries []*Entry
	entries = append(entries, historyEntry(1, base.Add(-time.Second), "", "crm"))
	for n := 2; n < 602; n++ {
		entries = append(entries, historyEntry(n, base, "", "crm"))
	}
	for n := 602; n < 605; n++ {
		entries = append(entries, historyEntry(n, base.Add(time.Duration(n)*time.Millisecond), "", "crm", "legacy"))
	}
	entries[len(entries)-1].Raw = []byte("raw")
	entries[len(entries)-1].RawFor = []string{"legacy"}
	entries[len(entries)-1].TraceParent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
	entries = append(entries, historyEntry(605, base.Add(time.Second), "", "legacy"))
	entries = append(entries, historyEntry(606, base.Add(time.Minute), "", "crm"))
	mustEnqueue(t, s, entries...)
	if n := deliverAll(t, s, "crm", "legacy"); n != len(entries)+3 {
		t.Fatalf("delivered %d jobs, want %d", n, len(entries)+3)
	}

	now := time.Now().Truncate(time.Millisecond)
	n, err := s.Recover(ctx, tenant, "crm", base, base.Add(time.Second), now)
	if err != nil || n != 603 {
		t.Fatalf("Recover = %d, %v; want 603", n, err)
	}
	jobs := mustRead(t, s, "c1", map[string]int{"crm": 1000, "legacy": 1000})
	var ids []string
	for _, j := range jobs {
		if j.Destination != "crm" {
			t.Fatalf("job for %s recovered", j.Destination)
		}
		ids = append(ids, j.EventID)
		if j.Attempts != 0 || !j.EnqueuedAt.Equal(now) {
			t.Errorf("job %s: attempts %d, enqueued %v; want 0 and %v", j.EventID, j.Attempts, j.EnqueuedAt, now)
		}
		if j.EventID == "evt_0604" && (j.Raw != nil || j.TraceParent == "") {
			t.Errorf("crm job of evt_0604: raw %q (want none: crm is not raw), traceparent %q", j.Raw, j.TraceParent)
		}
	}
	slices.Sort(ids)
	if len(ids) != 603 || ids[0] != "evt_0002" || ids[602] != "evt_0604" || len(slices.Compact(ids)) != 603 {
		t.Errorf("recovered %d events (%v … %v), want evt_0002 … evt_0604 once each", len(ids), ids[0], ids[len(ids)-1])
	}

	// The raw callback comes back for a destination that needs it.
	n, err = s.Recover(ctx, tenant, "legacy", base, base.Add(time.Second), now)
	if err != nil || n != 4 {
		t.Fatalf("Recover legacy = %d, %v; want 4", n, err)
	}
	for _, j := range mustRead(t, s, "c1", map[string]int{"legacy": 10}) {
		if j.EventID == "evt_0604" && string(j.Raw) != "raw" {
			t.Errorf("legacy job raw = %q, want the raw callback", j.Raw)
		}
	}

	// An expired event is skipped; an empty or reversed window re-sends nothing.
	if err := rdb.Del(ctx, historyKey(tenant, "evt_0606")).Err(); err != nil {
		t.Fatal(err)
	}
	if n, err := s.Recover(ctx, tenant, "crm", base.Add(time.Minute), base.Add(time.Hour), now); err != nil || n != 0 {
		t.Errorf("Recover of an expired event = %d, %v; want 0", n, err)
	}
	if n, _ := s.Recover(ctx, tenant, "crm", base.Add(time.Hour), base, now); n != 0 {
		t.Errorf("Recover of a reversed window = %d, want 0", n)
	}
	// A window from before 1970 starts at the beginning (stream ids are
	// Unix ms), and one that ends before it holds nothing: no error.
	old := time.Date(1960, 1, 1, 0, 0, 0, 0, time.UTC)
	if n, err := s.Recover(ctx, tenant, "crm", old, base.Add(time.Second), now); err != nil || n == 0 {
		t.Errorf("Recover since 1960 = %d, %v; want the window's events", n, err)
	}
	if n, err := s.Recover(ctx, tenant, "crm", old, old.Add(time.Hour), now); err != nil || n != 0 {
		t.Errorf("Recover of a window before 1970 = %d, %v; want 0, nil", n, err)
	}
}

func TestHistoryTrimmedToRetention(t *testing.T) {
	t.Parallel()
	s, rdb, _ := mustStore(t)
	ctx := ctxT(t)
	// The trim is lazy: an arrival millisecond that is a multiple of
	// historyTrimEvery trims, others do not.
	now := time.UnixMilli(time.Now().UnixMilli()/historyTrimEvery*historyTrimEvery + 1)
	old := historyEntry(1, now.Add(-2*time.Hour), "", "crm")
	mustEnqueue(t, s, old, historyEntry(2, now, "", "crm"))
	ids, err := indexIDs(ctx, rdb, "crm")
	if err != nil || !slices.Equal(ids, []string{"evt_0001", "evt_0002"}) {
		t.Errorf("index = %v, %v; want both events before a trim", ids, err)
	}
	mustEnqueue(t, s, historyEntry(3, now.Add(historyTrimEvery*time.Millisecond-time.Millisecond), "", "crm"))
	ids, err = indexIDs(ctx, rdb, "crm")
	if err != nil || !slices.Equal(ids, []string{"evt_0002", "evt_0003"}) {
		t.Errorf("index = %v, %v; want only the events within the retention", ids, err)
	}
}

// indexIDs lists the event ids in dest's history index, oldest first.
func indexIDs(ctx context.Context, rdb *redis.Client, dest string) ([]string, error) {
	msgs, err := rdb.XRange(ctx, destIndexKey(tenant, dest), "-", "+").Result()
	ids := make([]string, 0, len(msgs))
	for _, m := range msgs {
		ids = append(ids, fmt.Sprint(m.Values["i"]))
	}
	return ids, err
}

func TestHistoryAfterScriptFlush(t *testing.T) {
	t.Parallel()
	s, rdb, _ := mustStore(t)
	ctx := ctxT(t)
	mustEnqueue(t, s, historyEntry(1, time.Now(), "SM1", "crm"))
	if err := rdb.ScriptFlush(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	mustEnqueue(t, s, historyEntry(2, time.Now(), "SM1", "crm"))
	evs, err := s.HistoryByMessage(ctx, tenant, "SM1")
	if err != nil || len(evs) != 2 {
		t.Errorf("after SCRIPT FLUSH, history = %d events, %v; want 2", len(evs), err)
	}
}

// TestRecoverEmbedded: the recover script on the embedded store (small:
// gopher-lua is slow under -race; TestRecover covers paging).
func TestRecoverEmbedded(t *testing.T) {
	t.Parallel()
	emb, err := StartEmbedded()
	if err != nil {
		t.Fatalf("StartEmbedded: %v", err)
	}
	t.Cleanup(emb.Close)
	rdb := redis.NewClient(&redis.Options{Addr: emb.Addr()})
	t.Cleanup(func() { _ = rdb.Close() })
	s := New(rdb)
	ctx := ctxT(t)
	base := time.Now().Add(-time.Minute).Truncate(time.Millisecond)
	e := historyEntry(1, base, "", "crm", "legacy")
	e.Raw, e.RawFor = []byte("raw\x00"), []string{"legacy"}
	mustEnqueue(t, s, e, historyEntry(2, base, "", "crm"), historyEntry(3, base.Add(time.Second), "", "crm"))
	if n := deliverAll(t, s, "crm", "legacy"); n != 4 {
		t.Fatalf("delivered %d jobs, want 4", n)
	}
	if n, err := s.Recover(ctx, tenant, "crm", base, base, time.Now()); err != nil || n != 2 {
		t.Fatalf("Recover crm = %d, %v; want 2", n, err)
	}
	if n, err := s.Recover(ctx, tenant, "legacy", base, base.Add(time.Hour), time.Now()); err != nil || n != 1 {
		t.Fatalf("Recover legacy = %d, %v; want 1", n, err)
	}
	jobs := mustRead(t, s, "c1", map[string]int{"crm": 10, "legacy": 10})
	if got := eventIDs(jobs); !slices.Equal(got, []string{"evt_0001", "evt_0001", "evt_0002"}) {
		t.Errorf("recovered %v", got)
	}
	for _, j := range jobs {
		if j.Destination == "legacy" && string(j.Raw) != "raw\x00" {
			t.Errorf("legacy raw = %q", j.Raw)
		}
	}
}

// BenchmarkEnqueueWithHistory is BenchmarkEnqueue with the history write
// that ingress adds (same round trip): compare the two for its cost.
func BenchmarkEnqueueWithHistory(b *testing.B) {
	s, _, _ := mustStore(b)
	ctx := context.Background()
	b.ReportAllocs()
	n := 0
	for b.Loop() {
		e := benchEntry(n)
		e.History, e.MessageID = 72*time.Hour, fmt.Sprintf("SM%032d", n)
		if _, err := s.Enqueue(ctx, time.Hour, e); err != nil {
			b.Fatal(err)
		}
		n++
	}
}

// TestHistoryKeepsBodyOnce: while an event's jobs are queued its record
// holds no body (the jobs do) yet History shows it; whichever way the first
// job ends or moves — delivered, retried, dead-lettered, released, pulled
// and acknowledged, settled in order — the body is copied into the record
// before the job's entry goes, so the history still has it afterwards.
func TestHistoryKeepsBodyOnce(t *testing.T) {
	t.Parallel()
	bothStores(t, func(t *testing.T, s *Store, rdb *redis.Client) {
		ctx := ctxT(t)
		ends := map[string]func(j *Job) error{
			"ack":     func(j *Job) error { return s.Ack(ctx, j) },
			"retry":   func(j *Job) error { return s.Retry(ctx, j, 1, time.Now().Add(time.Hour), "HTTP 500") },
			"dead":    func(j *Job) error { return s.DeadLetter(ctx, j, 1, "HTTP 410", time.Now()) },
			"release": func(j *Job) error { return s.Release(ctx, j) },
			"settle":  func(j *Job) error { return s.Settle(ctx, j, nil) },
		}
		n := 0
		bodies := map[string]string{}
		for name, end := range ends {
			n++
			dest := "d-" + name
			e := historyEntry(n, time.Now(), "", dest)
			bodies[dest] = string(e.Event)
			mustEnqueue(t, s, e)
			rec := historyKey(tenant, e.EventID)
			if has, _ := rdb.HExists(ctx, rec, "b").Result(); has {
				t.Errorf("%s: the record of a queued event holds the body (kept twice)", name)
			}
			h, ok, err := s.History(ctx, tenant, e.EventID)
			if err != nil || !ok || string(h.Event) != string(e.Event) {
				t.Fatalf("%s: History of the queued event = %q, %v, %v; want its body", name, h.Event, ok, err)
			}
			jobs := mustRead(t, s, "c1", map[string]int{dest: 1})
			if len(jobs) != 1 {
				t.Fatalf("%s: read %d jobs", name, len(jobs))
			}
			if err := end(&jobs[0]); err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			if b, _ := rdb.HGet(ctx, rec, "b").Result(); b != string(e.Event) {
				t.Errorf("%s: after the job moved on the record's body = %q, want the event", name, b)
			}
		}

		// A pull hand-out acknowledged.
		e := historyEntry(100, time.Now(), "", "puller")
		mustEnqueue(t, s, e)
		outs, _, err := s.Pull(ctx, &Pull{Tenant: tenant, Destination: "puller", Max: 1, Visibility: time.Minute, MaxAttempts: 5})
		if err != nil || len(outs) != 1 {
			t.Fatalf("Pull = %d, %v", len(outs), err)
		}
		if _, _, err := s.PullAck(ctx, tenant, "puller", []string{outs[0].Receipt}); err != nil {
			t.Fatal(err)
		}
		if b, _ := rdb.HGet(ctx, historyKey(tenant, e.EventID), "b").Result(); b != string(e.Event) {
			t.Errorf("pull ack: the record's body = %q, want the event", b)
		}
		// Recover re-sends a delivered event with its kept body.
		if n, err := s.Recover(ctx, tenant, "d-ack", time.Now().Add(-time.Minute), time.Now(), time.Now()); err != nil || n != 1 {
			t.Fatalf("Recover = %d, %v; want 1", n, err)
		}
		jobs := mustRead(t, s, "c1", map[string]int{"d-ack": 1})
		if len(jobs) != 1 || string(jobs[0].Event) != bodies["d-ack"] {
			t.Errorf("recovered job = %+v, want the event with its body", jobs)
		}
	})
}

// TestHistoryIndexTakesLateArrivals: an event that arrives behind the
// index's last entry (another instance's clock, a drained spool) is still
// indexed — at the time of its enqueue — and recoverable.
func TestHistoryIndexTakesLateArrivals(t *testing.T) {
	t.Parallel()
	bothStores(t, func(t *testing.T, s *Store, rdb *redis.Client) {
		ctx := ctxT(t)
		now := time.Now()
		mustEnqueue(t, s, historyEntry(1, now, "", "crm"))
		mustEnqueue(t, s, historyEntry(2, now.Add(-10*time.Minute), "", "crm"))
		ids, err := indexIDs(ctx, rdb, "crm")
		if err != nil || !slices.Equal(ids, []string{"evt_0001", "evt_0002"}) {
			t.Fatalf("index = %v, %v; want both events", ids, err)
		}
		deliverAll(t, s, "crm")
		if n, err := s.Recover(ctx, tenant, "crm", now.Add(-time.Second), time.Now().Add(time.Second), time.Now()); err != nil || n != 2 {
			t.Errorf("Recover = %d, %v; want 2", n, err)
		}
	})
}

// A live event is indexed at the time of its enqueue; one stored over a
// second after it arrived (a drained spool) at its arrival time, unless
// the index has a later entry already.
func TestHistoryIndexTime(t *testing.T) {
	t.Parallel()
	s, rdb, _ := mustStore(t)
	ctx := ctxT(t)
	hourAgo := time.Now().Add(-time.Hour).Truncate(time.Millisecond)
	mustEnqueue(t, s, historyEntry(1, hourAgo, "", "crm"))
	before := time.Now().UnixMilli()
	mustEnqueue(t, s, historyEntry(2, time.Now().Add(-50*time.Millisecond), "", "crm"))
	mustEnqueue(t, s, historyEntry(3, hourAgo.Add(time.Minute), "", "crm")) // behind entry 2
	after := time.Now().UnixMilli()
	msgs, err := rdb.XRange(ctx, destIndexKey(tenant, "crm"), "-", "+").Result()
	if err != nil || len(msgs) != 3 {
		t.Fatalf("index = %v, %v; want 3 entries", msgs, err)
	}
	ms := func(id string) int64 {
		v, _ := strconv.ParseInt(strings.SplitN(id, "-", 2)[0], 10, 64)
		return v
	}
	if got := ms(msgs[0].ID); got != hourAgo.UnixMilli() {
		t.Errorf("late event indexed at %d, want its arrival %d", got, hourAgo.UnixMilli())
	}
	for i, m := range msgs[1:] {
		if got := ms(m.ID); got < before || got > after {
			t.Errorf("entry %d (%v) indexed at %d, want the enqueue time in [%d, %d]", i+2, m.Values["i"], got, before, after)
		}
	}
}

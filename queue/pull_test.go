package queue

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// eachStore runs f against a real redis-server and against the embedded
// store: pull hand-outs must behave the same on both.
func eachStore(t *testing.T, f func(t *testing.T, s *Store, rdb *redis.Client)) {
	t.Run("redis", func(t *testing.T) {
		s, rdb, _ := mustStore(t)
		f(t, s, rdb)
	})
	t.Run("embedded", func(t *testing.T) {
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

func pullArgs(max int, vis time.Duration, maxAttempts int) *Pull {
	return &Pull{Tenant: tenant, Destination: "inbox", Max: max, Visibility: vis, MaxAttempts: maxAttempts}
}

func mustPull(t *testing.T, s *Store, p *Pull) []Handout {
	t.Helper()
	hs, _, err := s.Pull(ctxT(t), p)
	if err != nil {
		t.Fatalf("Pull: %v", err)
	}
	return hs
}

func handoutIDs(hs []Handout) []string {
	ids := make([]string, len(hs))
	for i, h := range hs {
		ids[i] = h.EventID
	}
	return ids
}

func receipts(hs []Handout) []string {
	rs := make([]string, len(hs))
	for i, h := range hs {
		rs[i] = h.Receipt
	}
	return rs
}

func TestPullHandOutAndAck(t *testing.T) {
	eachStore(t, func(t *testing.T, s *Store, rdb *redis.Client) {
		// Nothing there yet, not even the group: Pull creates it.
		if hs := mustPull(t, s, pullArgs(10, time.Minute, 5)); len(hs) != 0 {
			t.Fatalf("first Pull = %d hand-outs, want 0", len(hs))
		}
		for i := 1; i <= 3; i++ {
			mustEnqueue(t, s, entry(i, "inbox", "crm"))
		}
		hs := mustPull(t, s, pullArgs(2, time.Minute, 5))
		if got := handoutIDs(hs); !slices.Equal(got, []string{"evt_0001", "evt_0002"}) {
			t.Fatalf("Pull max 2 = %v, want the two oldest", got)
		}
		for _, h := range hs {
			if h.Attempt != 1 || h.Destination != "inbox" || !strings.HasPrefix(string(h.Event), `{"id":"evt_`) {
				t.Errorf("hand-out = %+v, want attempt 1 with its event", h)
			}
		}
		rest := mustPull(t, s, pullArgs(10, time.Minute, 5))
		if got := handoutIDs(rest); !slices.Equal(got, []string{"evt_0003"}) {
			t.Fatalf("second Pull = %v, want only evt_0003 (the others are handed out)", got)
		}
		if again := mustPull(t, s, pullArgs(10, time.Minute, 5)); len(again) != 0 {
			t.Fatalf("third Pull = %v, want nothing before the visibility timeout", handoutIDs(again))
		}

		ack := append(receipts(hs), "garbage", hs[0].Receipt, "1-1.1")
		acked, invalid, err := s.PullAck(ctxT(t), tenant, "inbox", ack)
		if err != nil {
			t.Fatalf("PullAck: %v", err)
		}
		if want := []PullOutcome{{hs[0].EventID, 1}, {hs[1].EventID, 1}}; !slices.Equal(acked, want) {
			t.Errorf("acked = %+v, want %+v (event ids, attempt numbers)", acked, want)
		}
		if want := []string{"garbage", hs[0].Receipt, "1-1.1"}; !slices.Equal(invalid, want) {
			t.Errorf("invalid = %v, want %v (malformed, repeated, unknown)", invalid, want)
		}
		if n := xlen(t, rdb, streamKey(tenant, "inbox")); n != 1 {
			t.Errorf("stream length after ack = %d, want 1 (evt_0003)", n)
		}
		if n := xlen(t, rdb, streamKey(tenant, "crm")); n != 3 {
			t.Errorf("crm stream length = %d, want 3: pulling inbox leaves crm alone", n)
		}
		st := mustStats(t, s, "inbox")["inbox"]
		if st.InFlight != 1 || st.Queued != 0 {
			t.Errorf("stats = %+v, want 1 in flight", st)
		}
	})
}

func TestPullVisibilityAttemptsAndDeadLetter(t *testing.T) {
	eachStore(t, func(t *testing.T, s *Store, rdb *redis.Client) {
		const vis = 150 * time.Millisecond
		mustEnqueue(t, s, entry(1, "inbox"))
		first := mustPull(t, s, pullArgs(10, vis, 3))
		if len(first) != 1 || first[0].Attempt != 1 {
			t.Fatalf("first hand-out = %+v", first)
		}
		time.Sleep(vis + 50*time.Millisecond)
		second := mustPull(t, s, pullArgs(10, vis, 3))
		if len(second) != 1 || second[0].Attempt != 2 || second[0].ID != first[0].ID {
			t.Fatalf("second hand-out = %+v, want the same entry, attempt 2", second)
		}
		// The first receipt died with the second hand-out.
		_, invalid, err := s.PullAck(ctxT(t), tenant, "inbox", []string{first[0].Receipt})
		if err != nil || len(invalid) != 1 {
			t.Fatalf("ack of the stale receipt: invalid = %v, %v; want it refused", invalid, err)
		}
		time.Sleep(vis + 50*time.Millisecond)
		third := mustPull(t, s, pullArgs(10, vis, 3))
		if len(third) != 1 || third[0].Attempt != 3 {
			t.Fatalf("third hand-out = %+v, want attempt 3", third)
		}
		time.Sleep(vis + 50*time.Millisecond)
		hs, dead, err := s.Pull(ctxT(t), pullArgs(10, vis, 3))
		if err != nil || len(hs) != 0 || !slices.Equal(dead, []PullOutcome{{"evt_0001", 3}}) {
			t.Fatalf("fourth Pull = %d hand-outs, dead %+v, %v; want the poison event dead-lettered after 3", len(hs), dead, err)
		}
		dl, err := s.DLQList(ctxT(t), tenant, "inbox", 0)
		if err != nil || len(dl) != 1 {
			t.Fatalf("DLQList = %+v, %v", dl, err)
		}
		if d := dl[0]; d.EventID != "evt_0001" || d.Attempts != 3 || !strings.Contains(d.LastError, "3 hand-outs") || string(d.Event) != `{"id":"evt_0001"}` {
			t.Errorf("dead letter = %+v", d)
		}
		if st := mustStats(t, s, "inbox")["inbox"]; st.Dead != 1 || st.InFlight != 0 || st.Queued != 0 {
			t.Errorf("stats = %+v, want 1 dead and nothing else", st)
		}
		// Replayed, it is handed out afresh.
		if n, err := s.DLQReplay(ctxT(t), tenant, "inbox", nil, true, time.Now()); err != nil || n != 1 {
			t.Fatalf("DLQReplay = %d, %v", n, err)
		}
		if hs := mustPull(t, s, pullArgs(10, vis, 3)); len(hs) != 1 || hs[0].Attempt != 1 {
			t.Fatalf("after replay: %+v, want attempt 1", hs)
		}
	})
}

func TestPullCountsStoredAttempts(t *testing.T) {
	s, rdb, _ := mustStore(t)
	// A pass-through that failed leaves attempts a=1 on the job.
	if err := s.EnsureGroups(ctxT(t), tenant, []string{"inbox"}); err != nil {
		t.Fatal(err)
	}
	rdb.XAdd(ctxT(t), &redis.XAddArgs{Stream: streamKey(tenant, "inbox"), Values: []any{fEventID, "evt_x", fBody, "{}", fAttempts, "1", fEnqueued, "1"}})
	hs := mustPull(t, s, pullArgs(1, time.Minute, 5))
	if len(hs) != 1 || hs[0].Attempt != 2 {
		t.Fatalf("hand-out = %+v, want attempt 2", hs)
	}
}

func TestPullSessionCapAndResume(t *testing.T) {
	eachStore(t, func(t *testing.T, s *Store, rdb *redis.Client) {
		for i := 1; i <= 5; i++ {
			mustEnqueue(t, s, entry(i, "inbox"))
		}
		p := pullArgs(10, time.Minute, 5)
		p.Session, p.Unacked = "aaaa", 3
		a := mustPull(t, s, p)
		if got := handoutIDs(a); !slices.Equal(got, []string{"evt_0001", "evt_0002", "evt_0003"}) {
			t.Fatalf("session hand-out = %v, want three (its cap)", got)
		}
		for i, h := range a {
			if h.Seq != int64(i) || !strings.HasSuffix(h.Receipt, fmt.Sprintf(".aaaa.%d", i)) {
				t.Errorf("hand-out %d: seq %d receipt %q", i, h.Seq, h.Receipt)
			}
		}
		p.Seq = 3
		if more := mustPull(t, s, p); len(more) != 0 {
			t.Fatalf("at its cap the session got %v", handoutIDs(more))
		}
		if _, invalid, err := s.PullAck(ctxT(t), tenant, "inbox", []string{a[0].Receipt}); err != nil || len(invalid) != 0 {
			t.Fatalf("ack: %v %v", invalid, err)
		}
		more := mustPull(t, s, p)
		if got := handoutIDs(more); !slices.Equal(got, []string{"evt_0004"}) {
			t.Fatalf("after one ack the session got %v, want evt_0004", got)
		}

		// The connection drops after the client saw evt_0002 (seq 1):
		// evt_0003 and evt_0004 come again at once in the new session; the
		// client keeps evt_0002 and its receipt.
		q := pullArgs(10, time.Minute, 5)
		q.Session, q.Unacked = "bbbb", 3
		r, _, err := s.PullResume(ctxT(t), q, a[1].Receipt)
		if err != nil {
			t.Fatalf("PullResume: %v", err)
		}
		if got := handoutIDs(r); !slices.Equal(got, []string{"evt_0003", "evt_0004"}) {
			t.Fatalf("resumed = %v, want evt_0003 and evt_0004", got)
		}
		if r[0].Attempt != 2 || r[1].Seq != 1 || !strings.Contains(r[1].Receipt, ".bbbb.1") {
			t.Errorf("resumed hand-outs = %+v", r)
		}
		if again, _, err := s.PullResume(ctxT(t), q, a[1].Receipt); err != nil || len(again) != 0 {
			t.Errorf("a second resume from the same receipt = %v, %v; want nothing", handoutIDs(again), err)
		}
		_, invalid, err := s.PullAck(ctxT(t), tenant, "inbox", []string{a[1].Receipt, a[2].Receipt, r[0].Receipt, r[1].Receipt})
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(invalid, []string{a[2].Receipt}) {
			t.Errorf("invalid = %v, want only the old receipt of the re-sent evt_0003", invalid)
		}
		// The new session's log has room again: evt_0005.
		q.Seq = 2
		if got := handoutIDs(mustPull(t, s, q)); !slices.Equal(got, []string{"evt_0005"}) {
			t.Errorf("new session next = %v, want evt_0005", got)
		}
	})
}

func TestReceipt(t *testing.T) {
	for _, s := range []string{"1700000000000-0.1", "1-2.3.abc123.0", "5-5.7.z.99"} {
		r, ok := ParseReceipt(s)
		if !ok || r.String() != s {
			t.Errorf("ParseReceipt(%q) = %+v, %v", s, r, ok)
		}
	}
	for _, s := range []string{"", "x", "1-1", "1-1.0", "1-1.-1", "1-1.1.ABC.1", "1-1.1.abc", "1-1.1.abc.-1", "a-1.1", "1-1.1.abc.1.2",
		// Parts beyond 64 bits: no entry has such an id, and XACK would fail on it.
		"18446744073709551616-0.1", "1-18446744073709551616.1", "+1-1.1"} {
		if r, ok := ParseReceipt(s); ok {
			t.Errorf("ParseReceipt(%q) = %+v, want not a receipt", s, r)
		}
	}
}

// TestPullSweep: an event whose last hand-out expired with no hand-out
// left is dead-lettered without the app pulling again; one with hand-outs
// left, or whose hand-out has not expired, stays.
func TestPullSweep(t *testing.T) {
	bothStores(t, func(t *testing.T, s *Store, rdb *redis.Client) {
		ctx := ctxT(t)
		mustEnqueue(t, s, entry(1, "inbox"), entry(2, "inbox"))
		const vis = 100 * time.Millisecond
		if hs := mustPull(t, s, pullArgs(1, vis, 2)); len(hs) != 1 {
			t.Fatalf("first pull = %v", handoutIDs(hs))
		}
		if dead, err := s.PullSweep(ctx, pullArgs(0, vis, 2)); err != nil || len(dead) != 0 {
			t.Fatalf("sweep before the visibility timeout = %v, %v; want nothing", dead, err)
		}
		time.Sleep(vis + 50*time.Millisecond)
		if dead, err := s.PullSweep(ctx, pullArgs(0, vis, 2)); err != nil || len(dead) != 0 {
			t.Fatalf("sweep with a hand-out left = %v, %v; want nothing", dead, err)
		}
		if hs := mustPull(t, s, pullArgs(1, vis, 2)); len(hs) != 1 || hs[0].EventID != "evt_0001" || hs[0].Attempt != 2 {
			t.Fatalf("second pull = %+v, want evt_0001's attempt 2", hs)
		}
		time.Sleep(vis + 50*time.Millisecond)
		dead, err := s.PullSweep(ctx, pullArgs(0, vis, 2))
		if err != nil || !slices.Equal(dead, []PullOutcome{{"evt_0001", 2}}) {
			t.Fatalf("sweep after the last hand-out expired = %+v, %v; want evt_0001 after 2", dead, err)
		}
		dl, err := s.DLQList(ctx, tenant, "inbox", 0)
		if err != nil || len(dl) != 1 || dl[0].EventID != "evt_0001" || dl[0].Attempts != 2 {
			t.Fatalf("DLQ = %+v, %v", dl, err)
		}
		if hs := mustPull(t, s, pullArgs(5, vis, 2)); len(hs) != 1 || hs[0].EventID != "evt_0002" {
			t.Errorf("then a pull gets %v, want evt_0002 only", handoutIDs(hs))
		}
	})
}

// TestPullSweepPages: spent hand-outs behind more than a page of expired
// ones that still have hand-outs left are swept too.
func TestPullSweepPages(t *testing.T) {
	bothStores(t, func(t *testing.T, s *Store, rdb *redis.Client) {
		ctx := ctxT(t)
		const vis = 50 * time.Millisecond
		var entries []*Entry
		for i := 1; i <= 150; i++ {
			entries = append(entries, entry(i, "inbox"))
		}
		mustEnqueue(t, s, entries...)
		if hs := mustPull(t, s, pullArgs(100, vis, 2)); len(hs) != 100 { // the first 100: 1 hand-out each
			t.Fatalf("pull = %d", len(hs))
		}
		time.Sleep(vis + 20*time.Millisecond)
		// the other 50 are handed out now, and again after they expire:
		// spent, behind the 100
		if hs, _, err := s.Pull(ctx, &Pull{Tenant: tenant, Destination: "inbox", Max: 50, Visibility: time.Hour, MaxAttempts: 2}); err != nil || len(hs) != 50 {
			t.Fatalf("pull of the rest = %d, %v", len(hs), err)
		}
		for i := 101; i <= 150; i++ { // spent: as if handed out twice
			id := rdb.XRange(ctx, streamKey(tenant, "inbox"), "-", "+").Val()[i-1].ID
			if err := rdb.Do(ctx, "XCLAIM", streamKey(tenant, "inbox"), "sb", "pull", 0, id, "RETRYCOUNT", 2, "IDLE", 3600000, "JUSTID").Err(); err != nil {
				t.Fatal(err)
			}
		}
		dead, err := s.PullSweep(ctx, pullArgs(0, vis, 2))
		if err != nil || len(dead) != 50 {
			t.Fatalf("sweep = %d dead, %v; want the 50 spent ones behind the first page", len(dead), err)
		}
	})
}

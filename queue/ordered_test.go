package queue

import (
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

func TestLease(t *testing.T) {
	eachStore(t, func(t *testing.T, s *Store, rdb *redis.Client) {
		ctx := ctxT(t)
		lease := func(consumer string, ttl time.Duration) bool {
			t.Helper()
			ok, err := s.Lease(ctx, tenant, "crm", consumer, ttl)
			if err != nil {
				t.Fatalf("Lease: %v", err)
			}
			return ok
		}
		if !lease("a", time.Minute) || lease("b", time.Minute) || !lease("a", time.Minute) {
			t.Fatal("a takes the lease, b is refused, a renews it")
		}
		if err := s.Unlease(ctx, tenant, "crm", "b"); err != nil || lease("b", time.Minute) {
			t.Fatalf("b's Unlease must not drop a's lease (%v)", err)
		}
		if err := s.Unlease(ctx, tenant, "crm", "a"); err != nil || !lease("b", 150*time.Millisecond) {
			t.Fatalf("after a gives it up, b takes it (%v)", err)
		}
		await(t, "b's lease to expire", func() bool { return lease("a", time.Minute) })
		// Leased: the destinations another consumer holds the lease of.
		got, err := s.Leased(ctx, tenant, []string{"crm", "erp"}, "b")
		if err != nil || len(got) != 1 || !got["crm"] {
			t.Errorf("Leased by b's view = %v, %v; want crm (a holds it)", got, err)
		}
		if got, err := s.Leased(ctx, tenant, []string{"crm", "erp"}, "a"); err != nil || len(got) != 0 {
			t.Errorf("Leased by a's view = %v, %v; want none (its own lease is not another's)", got, err)
		}
	})
}

func TestClaimHeldHoldSettle(t *testing.T) {
	eachStore(t, func(t *testing.T, s *Store, rdb *redis.Client) {
		ctx := ctxT(t)
		if got, err := s.ClaimHeld(ctx, tenant, "crm", "b"); err != nil || len(got) != 0 {
			t.Fatalf("ClaimHeld with no stream = %v, %v", got, err)
		}
		for i := 1; i <= 4; i++ {
			mustEnqueue(t, s, entry(i, "crm"))
		}
		jobs := mustRead(t, s, "a", map[string]int{"crm": 3})
		if len(jobs) != 3 {
			t.Fatalf("read %d", len(jobs))
		}
		due := time.UnixMilli(time.Now().Add(time.Minute).UnixMilli())
		if err := s.Hold(ctx, &jobs[0], 2, due, "HTTP 500|twice"); err != nil {
			t.Fatal(err)
		}
		// The third job's entry vanished (XDEL by hand): it is acked away.
		rdb.XDel(ctx, streamKey(tenant, "crm"), jobs[2].ID)

		// a died; b takes over and claims what a held, oldest first.
		held, err := s.ClaimHeld(ctx, tenant, "crm", "b")
		if err != nil {
			t.Fatal(err)
		}
		if len(held) != 2 || held[0].EventID != "evt_0001" || held[1].EventID != "evt_0002" {
			t.Fatalf("ClaimHeld = %+v, want evt_0001 and evt_0002", held)
		}
		if h := held[0]; h.Attempts != 2 || !h.Due.Equal(due) || h.LastError != "HTTP 500|twice" {
			t.Errorf("held[0] = attempts %d due %v err %q, want the hold record", h.Attempts, h.Due, h.LastError)
		}
		if h := held[1]; h.Attempts != 0 || !h.Due.IsZero() {
			t.Errorf("held[1] = %+v, want no hold", h)
		}
		if n := pending(t, rdb, streamKey(tenant, "crm")); n != 2 {
			t.Errorf("pending = %d, want 2 (the vanished one acked away)", n)
		}
		// New jobs come after the claimed ones.
		if next := mustRead(t, s, "b", map[string]int{"crm": 10}); len(next) != 1 || next[0].EventID != "evt_0004" {
			t.Fatalf("read after claim = %v", eventIDs(next))
		}

		rank := &Rank{MessageID: "SM1", Rank: 4, TTL: time.Hour}
		if err := s.Settle(ctx, &held[0].Job, rank); err != nil {
			t.Fatal(err)
		}
		if err := s.Settle(ctx, &held[1].Job, &Rank{MessageID: "SM1", Rank: 2, TTL: time.Hour}); err != nil {
			t.Fatal(err)
		}
		if v, _ := rdb.Get(ctx, rankKey(tenant, "crm", "SM1")).Result(); v != "4" {
			t.Errorf("rank = %q, want 4 (a lower rank never replaces a higher)", v)
		}
		if n, _ := rdb.HLen(ctx, holdKey(tenant, "crm")).Result(); n != 0 {
			t.Errorf("hold records = %d, want 0 after settling", n)
		}
		if n := xlen(t, rdb, streamKey(tenant, "crm")); n != 1 {
			t.Errorf("stream = %d, want only evt_0004", n)
		}
		if ttl, _ := rdb.PTTL(ctx, rankKey(tenant, "crm", "SM1")).Result(); ttl <= 0 || ttl > time.Hour {
			t.Errorf("rank ttl = %v", ttl)
		}
	})
}

func TestDropStaleAndBuryHeld(t *testing.T) {
	eachStore(t, func(t *testing.T, s *Store, rdb *redis.Client) {
		ctx := ctxT(t)
		for i := 1; i <= 4; i++ {
			mustEnqueue(t, s, entry(i, "crm"))
		}
		jobs := mustRead(t, s, "a", map[string]int{"crm": 4})
		drop := func(j *Job, rank int) bool {
			t.Helper()
			ok, err := s.DropStale(ctx, j, "SM9", rank)
			if err != nil {
				t.Fatal(err)
			}
			return ok
		}
		if drop(&jobs[0], 3) {
			t.Fatal("nothing delivered yet for the message: not stale")
		}
		if err := s.Settle(ctx, &jobs[0], &Rank{MessageID: "SM9", Rank: 4, TTL: time.Hour}); err != nil {
			t.Fatal(err)
		}
		if !drop(&jobs[1], 3) || !drop(&jobs[2], 4) || drop(&jobs[3], 5) {
			t.Fatal("after delivered (4): sent (3) and delivered (4) are stale, read (5) is not")
		}
		got, err := s.StaleDropped(ctx, tenant)
		if err != nil || got["crm"] != 2 {
			t.Fatalf("StaleDropped = %v, %v; want crm: 2", got, err)
		}
		if st, err := s.Stats(ctx, tenant, []string{"crm"}, time.Now()); err != nil || st["crm"].Stale != 2 {
			t.Fatalf("Stats[crm].Stale = %v, %v; want 2", st["crm"].Stale, err)
		}
		if n := pending(t, rdb, streamKey(tenant, "crm")); n != 1 {
			t.Errorf("pending = %d, want 1", n)
		}
		if err := s.Hold(ctx, &jobs[3], 3, time.Now(), "HTTP 502"); err != nil {
			t.Fatal(err)
		}
		if err := s.BuryHeld(ctx, &jobs[3], 4, "HTTP 502", time.Time{}); err != nil {
			t.Fatal(err)
		}
		dl, err := s.DLQList(ctx, tenant, "crm", 0)
		if err != nil || len(dl) != 1 || dl[0].Attempts != 4 || dl[0].EventID != "evt_0004" || dl[0].LastError != "HTTP 502" {
			t.Fatalf("DLQList = %+v, %v", dl, err)
		}
		if n, _ := rdb.HLen(ctx, holdKey(tenant, "crm")).Result(); n != 0 {
			t.Errorf("hold records = %d, want 0", n)
		}
		if st := mustStats(t, s, "crm")["crm"]; st.Dead != 1 || st.InFlight != 0 || st.Queued != 0 {
			t.Errorf("stats = %+v", st)
		}
		// A second dead-letter of the same job does nothing.
		if err := s.BuryHeld(ctx, &jobs[3], 4, "again", time.Time{}); err != nil {
			t.Fatal(err)
		}
		if dl, _ := s.DLQList(ctx, tenant, "", 0); len(dl) != 1 {
			t.Errorf("dead letters = %d, want 1", len(dl))
		}
	})
}

package queue

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// The parts of a message under one reference, on Redis and on the embedded
// store alike.
func TestMessageParts(t *testing.T) {
	bothStores(t, func(t *testing.T, s *Store, _ *redis.Client) {
		t.Run("whole", func(t *testing.T) { testPartsWhole(t, s) })
		t.Run("lease", func(t *testing.T) { testPartsLease(t, s) })
		t.Run("reused reference", func(t *testing.T) { testPartsReusedRef(t, s) })
	})
}

type partsCase struct {
	t      *testing.T
	s      *Store
	member string
	now    time.Time
}

// add adds part n of total with message id id; want: "stored", "dup",
// "whole" or "other".
func (c partsCase) add(n, total int, id, want string) *Parts {
	c.t.Helper()
	p, dup, err := c.s.AddPart(ctxT(c.t), tenant, c.member, n, total, id, []byte("event "+id), c.now.Add(time.Minute), 30*time.Second, time.Hour)
	got := "stored"
	switch {
	case errors.Is(err, ErrOtherMessage):
		got = "other"
	case err != nil:
		c.t.Fatalf("AddPart %d/%d %s: %v", n, total, id, err)
	case p != nil:
		got = "whole"
	case dup:
		got = "dup"
	}
	if got != want {
		c.t.Fatalf("AddPart %d/%d %s = %s, want %s", n, total, id, got, want)
	}
	return p
}

func (c partsCase) due(at time.Time) []string {
	c.t.Helper()
	got, err := c.s.DueParts(ctxT(c.t), tenant, at, 10)
	if err != nil {
		c.t.Fatal(err)
	}
	return got
}

func newPartsCase(t *testing.T, s *Store, ref string) partsCase {
	return partsCase{t: t, s: s, member: PartsMember(ref), now: time.Now()}
}

// Parts wait until every part has come; a part sent again is a duplicate,
// before and after the message was stored.
func testPartsWhole(t *testing.T, s *Store) {
	c := newPartsCase(t, s, "whole "+t.Name())
	c.add(2, 3, "B", "stored")
	c.add(2, 3, "B", "dup")
	if got := c.due(c.now); len(got) != 0 {
		t.Errorf("due before the window = %v, want none", got)
	}
	if got := c.due(c.now.Add(time.Minute)); !slices.Equal(got, []string{c.member}) {
		t.Errorf("due after the window = %v, want [%s]", got, c.member)
	}
	c.add(1, 3, "A", "stored")
	p := c.add(3, 3, "C", "whole")
	if !slices.Equal(p.Numbers(), []int{1, 2, 3}) || p.IDs[3] != "C" || string(p.Events[1]) != "event A" || p.Total != 3 {
		t.Fatalf("whole parts = %+v", p)
	}
	if err := s.FinishParts(ctxT(t), tenant, p, time.Hour, c.now.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if got := c.due(c.now.Add(time.Hour)); len(got) != 0 {
		t.Errorf("due after the message was stored = %v, want none", got)
	}
	c.add(2, 3, "B", "dup") // the carrier sends a part again
	if left, _, _ := s.ClaimParts(ctxT(t), tenant, c.member, time.Millisecond); len(left.Events) != 0 || len(left.Done) != 3 {
		t.Errorf("after the message was stored: %+v, want nothing waiting and 3 done", left)
	}
}

// Whoever stores the waiting parts holds a lease: the sweeper cannot claim
// them meanwhile, a part that comes meanwhile waits, and once the lease
// ends that part is due at once (it finishes the message).
func testPartsLease(t *testing.T, s *Store) {
	c := newPartsCase(t, s, "lease "+t.Name())
	ctx := ctxT(t)
	c.add(1, 3, "A", "stored")
	c.add(2, 3, "B", "stored")
	p, ok, err := s.ClaimParts(ctx, tenant, c.member, 30*time.Second)
	if err != nil || !ok || !slices.Equal(p.Numbers(), []int{1, 2}) {
		t.Fatalf("ClaimParts = %+v, %v, %v; want parts 1 and 2", p, ok, err)
	}
	if _, ok, _ := s.ClaimParts(ctx, tenant, c.member, 30*time.Second); ok {
		t.Error("claimed twice while the lease holds")
	}
	c.add(3, 3, "C", "stored") // whole, but leased: it waits
	later := c.now.Add(time.Hour)
	if err := s.FinishParts(ctx, tenant, p, time.Hour, later); err != nil {
		t.Fatal(err)
	}
	if got := c.due(time.Now().Add(time.Second)); !slices.Equal(got, []string{c.member}) {
		t.Errorf("the part that came during the lease is not due at once: %v", got)
	}
	p, ok, _ = s.ClaimParts(ctx, tenant, c.member, 30*time.Second)
	if !ok || !slices.Equal(p.Numbers(), []int{3}) || len(p.Done) != 2 || !p.Complete() {
		t.Fatalf("second claim = %+v, %v; want part 3 with 1 and 2 done", p, ok)
	}
	if err := s.FinishParts(ctx, tenant, p, time.Hour, later); err != nil {
		t.Fatal(err)
	}
	if got := c.due(later.Add(time.Hour)); len(got) != 0 {
		t.Errorf("due after everything was stored = %v", got)
	}

	// A lease that ends unfinished (the holder died) can be taken again,
	// and the message is due when it ends; the late holder's finish does
	// not end the new holder's lease.
	c2 := newPartsCase(t, s, "lease expired "+t.Name())
	c2.add(1, 2, "X", "stored")
	first, ok, _ := s.ClaimParts(ctx, tenant, c2.member, 20*time.Millisecond)
	if !ok {
		t.Fatal("first claim refused")
	}
	if got := c2.due(time.Now().Add(time.Second)); !slices.Equal(got, []string{c2.member}) {
		t.Errorf("a claimed message is not due when its lease ends: %v", got)
	}
	var second *Parts
	deadline := time.Now().Add(5 * time.Second)
	for second == nil || !ok {
		if time.Now().After(deadline) {
			t.Fatal("the lease never ended")
		}
		second, ok, _ = s.ClaimParts(ctx, tenant, c2.member, time.Minute)
	}
	if len(second.Events) != 1 {
		t.Errorf("claim after the lease ended = %+v; want part 1", second)
	}
	if err := s.FinishParts(ctx, tenant, first, time.Hour, time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := s.ClaimParts(ctx, tenant, c2.member, time.Minute); ok {
		t.Error("the first holder's late finish ended the second holder's lease")
	}
}

// A sender reuses the reference: a part with a number already waiting,
// under another message id, is another message's; after the first message
// was stored, its parts' numbers do not make the second one whole.
func testPartsReusedRef(t *testing.T, s *Store) {
	c := newPartsCase(t, s, "reused "+t.Name())
	ctx := ctxT(t)
	c.add(1, 2, "A1", "stored")
	c.add(1, 2, "B1", "other") // message B's part 1 while A's waits
	c.add(1, 3, "B1", "other") // another total while A's parts wait
	p, ok, _ := s.ClaimParts(ctx, tenant, c.member, 30*time.Second)
	if !ok {
		t.Fatal("claim refused")
	}
	if err := s.FinishParts(ctx, tenant, p, time.Hour, c.now.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	c.add(1, 2, "B1", "stored") // part 1 was done under A1: B starts afresh
	c.add(1, 2, "A1", "dup")    // the carrier sends A's part 1 again: still A's
	c.add(2, 2, "B2", "whole")
}

package queue

import (
	"slices"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// The parts of a message wait, are whole when every number has come (now
// or before), and a part that comes while they are made into an event
// stays for the next round. On Redis and on the embedded store alike.
func TestMessageParts(t *testing.T) {
	emb, err := StartEmbedded()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(emb.Close)
	embedded := redis.NewClient(&redis.Options{Addr: emb.Addr()})
	t.Cleanup(func() { _ = embedded.Close() })
	onRedis, _, _ := mustStore(t)
	for name, s := range map[string]*Store{"redis": onRedis, "embedded": New(embedded)} {
		t.Run(name, func(t *testing.T) { testMessageParts(t, s) })
	}
}

func testMessageParts(t *testing.T, s *Store) {
	ctx := ctxT(t)
	m := PartsMember("+15555550100 +15555550199 7F")
	now := time.Now()
	due := now.Add(time.Minute)

	p, dup, err := s.AddPart(ctx, tenant, m, 2, 3, []byte("two"), due, time.Hour)
	if err != nil || dup || p.Complete() || !slices.Equal(p.Numbers(), []int{2}) || p.Total != 3 {
		t.Fatalf("AddPart 2/3 = %+v, %v, %v; want part 2 stored, not whole", p, dup, err)
	}
	if _, dup, _ := s.AddPart(ctx, tenant, m, 2, 3, []byte("two"), due, time.Hour); !dup {
		t.Error("the same part again is not a duplicate")
	}
	if got, _ := s.DueParts(ctx, tenant, now, 10); len(got) != 0 {
		t.Errorf("DueParts before the window = %v, want none", got)
	}
	if got, _ := s.DueParts(ctx, tenant, due, 10); !slices.Equal(got, []string{m}) {
		t.Errorf("DueParts after the window = %v, want [%s]", got, m)
	}
	if p, _, _ = s.AddPart(ctx, tenant, m, 1, 3, []byte("one"), due, time.Hour); p.Complete() {
		t.Fatal("whole with two parts of three")
	}

	// Parts 1 and 2 are made into an event; part 3 comes meanwhile.
	read, err := s.ReadParts(ctx, tenant, m)
	if err != nil || !slices.Equal(read.Numbers(), []int{1, 2}) || string(read.Events[1]) != "one" {
		t.Fatalf("ReadParts = %+v, %v", read, err)
	}
	if p, _, _ = s.AddPart(ctx, tenant, m, 3, 3, []byte("three"), due, time.Hour); !p.Complete() {
		t.Error("not whole with every part")
	}
	next := now.Add(2 * time.Minute)
	if err := s.FinishParts(ctx, tenant, m, read.Numbers(), time.Hour, next); err != nil {
		t.Fatal(err)
	}
	left, _ := s.ReadParts(ctx, tenant, m)
	if !slices.Equal(left.Numbers(), []int{3}) || !slices.Equal(left.Done, []int{1, 2}) || !left.Complete() {
		t.Errorf("after finishing 1 and 2: %+v, want part 3 left, 1 and 2 done", left)
	}
	if got, _ := s.DueParts(ctx, tenant, next, 10); !slices.Equal(got, []string{m}) {
		t.Errorf("the part left is not due at the next time: %v", got)
	}
	if _, dup, _ := s.AddPart(ctx, tenant, m, 1, 3, []byte("one"), due, time.Hour); !dup {
		t.Error("a part already made into an event is not a duplicate")
	}

	if err := s.FinishParts(ctx, tenant, m, []int{3}, time.Hour, next); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.DueParts(ctx, tenant, next.Add(time.Hour), 10); len(got) != 0 {
		t.Errorf("DueParts after every part was finished = %v, want none", got)
	}
	if last, _ := s.ReadParts(ctx, tenant, m); len(last.Events) != 0 || len(last.Done) != 3 {
		t.Errorf("after the last finish: %+v, want no parts, 3 done", last)
	}
}

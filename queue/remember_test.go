package queue

import (
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// TestNonceClaim: a claim keeps others out until it is confirmed (then the
// key is recorded for its TTL) or given back (then the next claim wins);
// an unclaim never removes a confirmed record.
func TestNonceClaim(t *testing.T) {
	bothStores(t, func(t *testing.T, s *Store, rdb *redis.Client) {
		ctx := ctxT(t)
		if ok, err := s.Claim(ctx, tenant, "n1", time.Minute); err != nil || !ok {
			t.Fatalf("first Claim = %v, %v; want true", ok, err)
		}
		if ok, _ := s.Claim(ctx, tenant, "n1", time.Minute); ok {
			t.Error("a second Claim of a claimed key = true, want false")
		}
		if seen, _ := s.Recorded(ctx, tenant, "n1"); !seen {
			t.Error("Recorded of a claimed key = false, want true")
		}
		if err := s.Unclaim(ctx, tenant, "n1"); err != nil {
			t.Fatal(err)
		}
		if ok, _ := s.Claim(ctx, tenant, "n1", time.Minute); !ok {
			t.Error("Claim after Unclaim = false, want true")
		}
		if err := s.Confirm(ctx, tenant, "n1", time.Hour); err != nil {
			t.Fatal(err)
		}
		if err := s.Unclaim(ctx, tenant, "n1"); err != nil {
			t.Fatal(err)
		}
		if ok, _ := s.Claim(ctx, tenant, "n1", time.Minute); ok {
			t.Error("Claim of a confirmed key (after a stray Unclaim) = true, want false")
		}
		if ttl := rdb.PTTL(ctx, nonceKey(tenant, "n1")).Val(); ttl < 59*time.Minute {
			t.Errorf("a confirmed key's TTL = %v, want its hour", ttl)
		}
		// A claim lapses by itself: its holder may have died.
		if ok, _ := s.Claim(ctx, tenant, "n2", 50*time.Millisecond); !ok {
			t.Fatal("Claim n2 = false")
		}
		deadline := time.Now().Add(5 * time.Second)
		for {
			if ok, _ := s.Claim(ctx, tenant, "n2", time.Minute); ok {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("a claim did not lapse after its hold")
			}
			time.Sleep(10 * time.Millisecond)
		}
	})
}

package queue

import (
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// TestNonceClaim: a claim keeps others out (pending) until it is confirmed
// (then the key is recorded for its TTL) or given back by its own token
// (then the next claim wins); an unclaim never removes a confirmed record
// or another's claim.
func TestNonceClaim(t *testing.T) {
	bothStores(t, func(t *testing.T, s *Store, rdb *redis.Client) {
		ctx := ctxT(t)
		claim := func(key string, hold time.Duration) (ClaimState, string) {
			t.Helper()
			st, tok, err := s.Claim(ctx, tenant, key, hold)
			if err != nil {
				t.Fatal(err)
			}
			return st, tok
		}
		st, tok := claim("n1", time.Minute)
		if st != ClaimTaken || tok == "" {
			t.Fatalf("first Claim = %v %q, want taken with a token", st, tok)
		}
		if st, _ := claim("n1", time.Minute); st != ClaimPending {
			t.Errorf("a second Claim of a claimed key = %v, want pending", st)
		}
		if err := s.Unclaim(ctx, tenant, "n1", "claim:not-mine"); err != nil {
			t.Fatal(err)
		}
		if st, _ := claim("n1", time.Minute); st != ClaimPending {
			t.Errorf("after an Unclaim with another token = %v, want still pending", st)
		}
		if err := s.Unclaim(ctx, tenant, "n1", tok); err != nil {
			t.Fatal(err)
		}
		st, tok = claim("n1", time.Minute)
		if st != ClaimTaken {
			t.Errorf("Claim after Unclaim = %v, want taken", st)
		}
		if err := s.Confirm(ctx, tenant, "n1", time.Hour); err != nil {
			t.Fatal(err)
		}
		if err := s.Unclaim(ctx, tenant, "n1", tok); err != nil {
			t.Fatal(err)
		}
		if st, _ := claim("n1", time.Minute); st != ClaimRecorded {
			t.Errorf("Claim of a confirmed key (after a stray Unclaim) = %v, want recorded", st)
		}
		if v := rdb.Get(ctx, nonceKey(tenant, "n1")).Val(); v != "1" {
			t.Errorf("a confirmed key holds %q, want the record 1", v)
		}
		if ttl := rdb.PTTL(ctx, nonceKey(tenant, "n1")).Val(); ttl < 59*time.Minute {
			t.Errorf("a confirmed key's TTL = %v, want its hour", ttl)
		}
		// Confirm replaces a claim (a spooled callback's, drained).
		claim("n3", time.Minute)
		if err := s.Confirm(ctx, tenant, "n3", time.Hour); err != nil {
			t.Fatal(err)
		}
		if st, _ := claim("n3", time.Minute); st != ClaimRecorded {
			t.Errorf("Claim after Confirm replaced a claim = %v, want recorded", st)
		}
		// A claim lapses by itself: its holder may have died.
		if st, _ := claim("n2", 50*time.Millisecond); st != ClaimTaken {
			t.Fatal("Claim n2 not taken")
		}
		deadline := time.Now().Add(5 * time.Second)
		for {
			if st, _ := claim("n2", time.Minute); st == ClaimTaken {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("a claim did not lapse after its hold")
			}
			time.Sleep(10 * time.Millisecond)
		}
	})
}

// TestNonceClaimSeveral: a key naming several ('\n') is claimed all or
// none, confirmed and given back on each; a replay under any one of them
// finds it.
func TestNonceClaimSeveral(t *testing.T) {
	bothStores(t, func(t *testing.T, s *Store, rdb *redis.Client) {
		ctx := ctxT(t)
		st, tok, err := s.Claim(ctx, tenant, "a\nb", time.Minute)
		if err != nil || st != ClaimTaken {
			t.Fatalf("Claim a+b = %v, %v; want taken", st, err)
		}
		if st, _, _ := s.Claim(ctx, tenant, "b", time.Minute); st != ClaimPending {
			t.Errorf("Claim b while a+b is claimed = %v, want pending", st)
		}
		if st, _, _ := s.Claim(ctx, tenant, "c\na", time.Minute); st != ClaimPending {
			t.Errorf("Claim c+a = %v, want pending", st)
		}
		if n := rdb.Exists(ctx, nonceKey(tenant, "c")).Val(); n != 0 {
			t.Error("a claim that found one key taken took the others")
		}
		if err := s.Unclaim(ctx, tenant, "a\nb", tok); err != nil {
			t.Fatal(err)
		}
		if n := rdb.Exists(ctx, nonceKey(tenant, "a"), nonceKey(tenant, "b")).Val(); n != 0 {
			t.Errorf("after Unclaim, %d of the keys remain", n)
		}
		if _, _, err := s.Claim(ctx, tenant, "a\nb", time.Minute); err != nil {
			t.Fatal(err)
		}
		if err := s.Confirm(ctx, tenant, "a\nb", time.Hour); err != nil {
			t.Fatal(err)
		}
		for _, k := range []string{"a", "b", "b\nz"} {
			if st, _, _ := s.Claim(ctx, tenant, k, time.Minute); st != ClaimRecorded {
				t.Errorf("Claim %q after a+b were confirmed = %v, want recorded", k, st)
			}
		}
	})
}

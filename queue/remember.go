package queue

import (
	"context"
	"math/rand/v2"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// ClaimState is what Claim found.
type ClaimState int

// Claim outcomes.
const (
	ClaimTaken    ClaimState = iota // the key was free; it is claimed now
	ClaimRecorded                   // recorded by Confirm: a replay
	ClaimPending                    // claimed by another, not yet confirmed
)

// Claim takes key for hold unless it is recorded or claimed already, and
// returns the claim's token, for Unclaim. The caller stores what the key
// guards and then records the key for good with Confirm, or gives it back
// with Unclaim. Should the caller die between, the claim lapses after
// hold.
func (s *Store) Claim(ctx context.Context, tenant, key string, hold time.Duration) (ClaimState, string, error) {
	token := claimPrefix + strconv.FormatUint(rand.Uint64(), 36)
	st, err := claimScript.Run(ctx, s.rdb, []string{nonceKey(tenant, key)}, token, max(hold.Milliseconds(), 1)).Int()
	if err != nil {
		return ClaimTaken, "", unavailable("claim", err)
	}
	return ClaimState(st), token, nil
}

// Confirm records key for ttl, claimed or not.
func (s *Store) Confirm(ctx context.Context, tenant, key string, ttl time.Duration) error {
	if ttl <= 0 {
		ttl = 5 * time.Minute
	}
	if err := s.rdb.Set(ctx, nonceKey(tenant, key), "1", ttl).Err(); err != nil {
		return unavailable("confirm", err)
	}
	return nil
}

// Unclaim gives back the claim token took, if it is still that claim (not
// confirmed, not lapsed and taken by another).
func (s *Store) Unclaim(ctx context.Context, tenant, key, token string) error {
	if err := unclaimScript.Run(ctx, s.rdb, []string{nonceKey(tenant, key)}, token).Err(); err != nil && err != redis.Nil {
		return unavailable("unclaim", err)
	}
	return nil
}

// claimPrefix starts a claimed key's value (a token); a recorded one holds "1".
const claimPrefix = "claim:"

// claimScript: KEYS[1] the key. ARGV[1] token, ARGV[2] hold ms. Returns a
// ClaimState.
var claimScript = redis.NewScript(`
local v = redis.call('GET', KEYS[1])
if not v then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 0
end
if string.sub(v, 1, 6) == 'claim:' then return 2 end
return 1
`)

var unclaimScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
`)

func nonceKey(tenant, key string) string { return tenantPrefix(tenant) + "nonce:" + key }

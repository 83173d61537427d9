package queue

import (
	"context"
	"math/rand/v2"
	"strconv"
	"strings"
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
//
// key may name several keys, separated by '\n' (a request that carries
// several nonces, each of which must be fresh): Claim takes all or none
// (recorded if any is, else pending if any is claimed), and Confirm and
// Unclaim act on each.
func (s *Store) Claim(ctx context.Context, tenant, key string, hold time.Duration) (ClaimState, string, error) {
	token := claimPrefix + strconv.FormatUint(rand.Uint64(), 36)
	st, err := claimScript.Run(ctx, s.rdb, nonceKeys(tenant, key), token, max(hold.Milliseconds(), 1)).Int()
	if err != nil {
		return ClaimTaken, "", unavailable("claim", err)
	}
	return ClaimState(st), token, nil
}

// Confirm records key (each of its keys) for ttl, claimed or not.
func (s *Store) Confirm(ctx context.Context, tenant, key string, ttl time.Duration) error {
	if ttl <= 0 {
		ttl = 5 * time.Minute
	}
	if err := confirmScript.Run(ctx, s.rdb, nonceKeys(tenant, key), ttl.Milliseconds()).Err(); err != nil && err != redis.Nil {
		return unavailable("confirm", err)
	}
	return nil
}

// Unclaim gives back the claim token took, if it is still that claim (not
// confirmed, not lapsed and taken by another), on each of key's keys.
func (s *Store) Unclaim(ctx context.Context, tenant, key, token string) error {
	if err := unclaimScript.Run(ctx, s.rdb, nonceKeys(tenant, key), token).Err(); err != nil && err != redis.Nil {
		return unavailable("unclaim", err)
	}
	return nil
}

// claimPrefix starts a claimed key's value (a token); a recorded one holds "1".
const claimPrefix = "claim:"

// claimScript: KEYS the keys. ARGV[1] token, ARGV[2] hold ms. Returns a
// ClaimState.
var claimScript = redis.NewScript(`
local pending = false
for _, k in ipairs(KEYS) do
  local v = redis.call('GET', k)
  if v then
    if string.sub(v, 1, 6) ~= 'claim:' then return 1 end
    pending = true
  end
end
if pending then return 2 end
for _, k in ipairs(KEYS) do redis.call('SET', k, ARGV[1], 'PX', ARGV[2]) end
return 0
`)

// confirmScript: KEYS the keys. ARGV[1] ttl ms.
var confirmScript = redis.NewScript(`
for _, k in ipairs(KEYS) do redis.call('SET', k, '1', 'PX', ARGV[1]) end
return 1
`)

var unclaimScript = redis.NewScript(`
for _, k in ipairs(KEYS) do
  if redis.call('GET', k) == ARGV[1] then redis.call('DEL', k) end
end
return 1
`)

// nonceKeys are the Redis keys of key's keys ('\n'-separated).
func nonceKeys(tenant, key string) []string {
	var keys []string
	for k := range strings.SplitSeq(key, "\n") {
		keys = append(keys, nonceKey(tenant, k))
	}
	return keys
}

func nonceKey(tenant, key string) string { return tenantPrefix(tenant) + "nonce:" + key }

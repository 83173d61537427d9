package queue

import (
	"context"
	"time"

	"github.com/redis/go-redis/v9"
)

// Remember records key for ttl and reports whether it was new: false means
// it was already recorded (a replayed nonce or JWT id). Keys are per tenant.
// Errors wrap switchboard.ErrUnavailable.
func (s *Store) Remember(ctx context.Context, tenant, key string, ttl time.Duration) (bool, error) {
	if ttl <= 0 {
		ttl = 5 * time.Minute
	}
	ok, err := s.rdb.SetNX(ctx, nonceKey(tenant, key), "1", ttl).Result()
	if err != nil {
		return false, unavailable("remember", err)
	}
	return ok, nil
}

// Recorded reports whether key was recorded by Remember (or is claimed)
// and has not expired.
func (s *Store) Recorded(ctx context.Context, tenant, key string) (bool, error) {
	n, err := s.rdb.Exists(ctx, nonceKey(tenant, key)).Result()
	if err != nil {
		return false, unavailable("recorded", err)
	}
	return n == 1, nil
}

// Claim takes key for hold, unless it is recorded or claimed already (then
// false: a replay, or a concurrent request with the same nonce). The
// caller stores what the key guards and then records the key for good
// with Confirm, or gives it back with Unclaim. Should the caller die
// between, the claim lapses after hold, so that the carrier's retry is
// accepted: keep hold shorter than any carrier's first retry.
func (s *Store) Claim(ctx context.Context, tenant, key string, hold time.Duration) (bool, error) {
	ok, err := s.rdb.SetNX(ctx, nonceKey(tenant, key), claimed, hold).Result()
	if err != nil {
		return false, unavailable("claim", err)
	}
	return ok, nil
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

// Unclaim gives back a claim that Confirm has not made a record.
func (s *Store) Unclaim(ctx context.Context, tenant, key string) error {
	if err := unclaimScript.Run(ctx, s.rdb, []string{nonceKey(tenant, key)}, claimed).Err(); err != nil && err != redis.Nil {
		return unavailable("unclaim", err)
	}
	return nil
}

// claimed is a claimed key's value; a recorded one holds "1".
const claimed = "claimed"

var unclaimScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
`)

func nonceKey(tenant, key string) string { return tenantPrefix(tenant) + "nonce:" + key }

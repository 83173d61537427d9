package queue

import (
	"context"
	"time"
)

// Remember records key for ttl and reports whether it was new: false means
// it was already recorded (a replayed nonce or JWT id). Keys are per tenant.
// Errors wrap switchboard.ErrUnavailable.
func (s *Store) Remember(ctx context.Context, tenant, key string, ttl time.Duration) (bool, error) {
	if ttl <= 0 {
		ttl = 5 * time.Minute
	}
	ok, err := s.rdb.SetNX(ctx, tenantPrefix(tenant)+"nonce:"+key, "1", ttl).Result()
	if err != nil {
		return false, unavailable("remember", err)
	}
	return ok, nil
}

// Recorded reports whether key was recorded by Remember and has not expired.
func (s *Store) Recorded(ctx context.Context, tenant, key string) (bool, error) {
	n, err := s.rdb.Exists(ctx, tenantPrefix(tenant)+"nonce:"+key).Result()
	if err != nil {
		return false, unavailable("recorded", err)
	}
	return n == 1, nil
}

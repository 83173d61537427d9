package queue

import (
	"context"
	"time"

	"github.com/redis/go-redis/v9"
)

// Jobs attempted before they were stored: a pass-through forwards a
// callback to its destination while the carrier waits, and only a failed
// attempt is then stored, with its attempt spent — in the retry set or, when
// hopeless, in the dead-letter stream — before the event is enqueued for the
// other destinations. Written first, it is never lost: if the enqueue then
// fails the carrier retries, and the destination may get a second copy.

// scheduleScript adds a job to the retry set.
//
// KEYS[1] retry set, KEYS[2] counters. ARGV[1] due unix ms, ARGV[2] member,
// ARGV[3] destination.
var scheduleScript = redis.NewScript(`
if redis.call('ZADD', KEYS[1], ARGV[1], ARGV[2]) == 1 then
  redis.call('HINCRBY', KEYS[2], 'r:' .. ARGV[3], 1)
end
return 1
`)

// buryScript adds a job to the dead-letter stream.
//
// KEYS[1] dlq, KEYS[2] counters. ARGV[1] destination, ARGV[2..] field/value
// pairs.
var buryScript = redis.NewScript(`
local args = {'XADD', KEYS[1], '*'}
for i = 2, #ARGV do args[#args + 1] = ARGV[i] end
redis.call(unpack(args))
redis.call('HINCRBY', KEYS[2], 'x:' .. ARGV[1], 1)
return 1
`)

// Schedule stores j, a job not in any stream that has had attempts attempts
// (lastErr the last one's error), in the retry set due at due: PromoteNext
// brings it to its destination's stream then. j needs Tenant, Destination,
// EventID, Event and EnqueuedAt (Raw if its destination needs it); its ID
// is ignored. Scheduling the same event for the same destination twice
// keeps one job. Errors wrap switchboard.ErrUnavailable.
func (s *Store) Schedule(ctx context.Context, j *Job, attempts int, due time.Time, lastErr string) error {
	p := *j
	p.ID = "p:" + j.EventID // unique within the destination, like a stream entry id
	if err := p.check("schedule"); err != nil {
		return err
	}
	member := appendNetstring(nil, p.ID)
	member = appendNetstring(member, p.Destination)
	for _, f := range p.fields(nil, attempts, lastErr) {
		switch f := f.(type) {
		case string:
			member = appendNetstring(member, f)
		case []byte:
			member = appendNetstring(member, string(f))
		}
	}
	keys := []string{retryKey(p.Tenant), countsKey(p.Tenant)}
	if err := scheduleScript.Run(ctx, s.rdb, keys, millis(due), member, p.Destination).Err(); err != nil {
		return unavailable("schedule", err)
	}
	return nil
}

// Bury stores j, a job not in any stream (as for Schedule), in the
// dead-letter stream after attempts attempts; lastErr is why it is dead, at
// when it died (zero: now). Errors wrap switchboard.ErrUnavailable.
func (s *Store) Bury(ctx context.Context, j *Job, attempts int, lastErr string, at time.Time) error {
	p := *j
	p.ID = "p:" + j.EventID
	if err := p.check("bury"); err != nil {
		return err
	}
	if at.IsZero() {
		at = time.Now()
	}
	args := []any{p.Destination, fDest, p.Destination, fFailedAt, millis(at)}
	args = p.fields(args, attempts, lastErr)
	if lastErr == "" {
		args = append(args, fLastErr, "")
	}
	keys := []string{dlqKey(p.Tenant), countsKey(p.Tenant)}
	if err := buryScript.Run(ctx, s.rdb, keys, args...).Err(); err != nil {
		return unavailable("bury", err)
	}
	return nil
}

// Seen reports whether an event with dedupKey was stored for tenant within
// the dedup TTL: Enqueue would drop it as a duplicate. Errors wrap
// switchboard.ErrUnavailable.
func (s *Store) Seen(ctx context.Context, tenant, dedupKey string) (bool, error) {
	if dedupKey == "" {
		return false, nil
	}
	n, err := s.rdb.Exists(ctx, seenKey(tenant, dedupKey)).Result()
	if err != nil {
		return false, unavailable("seen", err)
	}
	return n == 1, nil
}

package queue

import (
	"context"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// The outcomes of a delivery. Each moves a job that is pending in its stream
// in one atomic step, and only if it is still pending: when the job was
// reclaimed by another consumer and already finished there, Retry,
// DeadLetter and Release do nothing and return nil, so a job is never
// retried or dead-lettered twice. Errors wrap switchboard.ErrUnavailable.

// Ack removes a delivered job (XACK + XDEL).
func (s *Store) Ack(ctx context.Context, j *Job) error {
	if err := j.check("ack"); err != nil {
		return err
	}
	err := ackScript.Run(ctx, s.rdb, []string{streamKey(j.Tenant, j.Destination)}, j.ID).Err()
	if err != nil {
		return unavailable("ack", err)
	}
	return nil
}

// Retry moves a job to the retry set, due at due (ms precision; a time in
// the past, or zero, is due at once), after attempts attempts in all;
// lastErr is the error of the last one. PromoteNext
// brings it back with Attempts = attempts and LastError = lastErr.
func (s *Store) Retry(ctx context.Context, j *Job, attempts int, due time.Time, lastErr string) error {
	if err := j.check("retry"); err != nil {
		return err
	}
	// The entry id is unique within the destination stream, so uid+dest is
	// unique within the tenant, and a second Retry of the same job would
	// only update its due time.
	fields := j.fields(nil, attempts, lastErr)
	member := appendNetstring(nil, j.ID)
	member = appendNetstring(member, j.Destination)
	for _, f := range fields {
		switch f := f.(type) {
		case string:
			member = appendNetstring(member, f)
		case []byte:
			member = appendNetstring(member, string(f))
		}
	}
	keys := []string{streamKey(j.Tenant, j.Destination), retryKey(j.Tenant), countsKey(j.Tenant)}
	err := retryScript.Run(ctx, s.rdb, keys, j.ID, millis(due), member, j.Destination).Err()
	if err != nil {
		return unavailable("retry", err)
	}
	return nil
}

// appendNetstring appends "<len>:<s>" to b.
func appendNetstring(b []byte, s string) []byte {
	b = strconv.AppendInt(b, int64(len(s)), 10)
	b = append(b, ':')
	return append(b, s...)
}

// DeadLetter moves a job to the tenant's dead-letter stream after attempts
// attempts in all; lastErr is why it is dead, at when it died (zero: now).
// The dead letter keeps the job's fields, so DLQReplay can send it again.
func (s *Store) DeadLetter(ctx context.Context, j *Job, attempts int, lastErr string, at time.Time) error {
	if err := j.check("dead-letter"); err != nil {
		return err
	}
	if at.IsZero() {
		at = time.Now()
	}
	args := make([]any, 0, 24)
	args = append(args, j.ID, j.Destination, fDest, j.Destination, fFailedAt, millis(at))
	args = j.fields(args, attempts, lastErr)
	if lastErr == "" {
		args = append(args, fLastErr, "") // always present in a dead letter
	}
	keys := []string{streamKey(j.Tenant, j.Destination), dlqKey(j.Tenant), countsKey(j.Tenant)}
	if err := deadScript.Run(ctx, s.rdb, keys, args...).Err(); err != nil {
		return unavailable("dead-letter", err)
	}
	return nil
}

// Release gives back a job that was read but not attempted (at shutdown, or
// when its destination became held): it goes to the tail of its stream as a
// new entry, unchanged, so any consumer reads it at once instead of waiting
// for the visibility timeout. j.ID is stale afterwards.
func (s *Store) Release(ctx context.Context, j *Job) error {
	if err := j.check("release"); err != nil {
		return err
	}
	args := make([]any, 0, 16)
	args = append(args, j.ID)
	args = j.fields(args, j.Attempts, j.LastError)
	if err := releaseScript.Run(ctx, s.rdb, []string{streamKey(j.Tenant, j.Destination)}, args...).Err(); err != nil {
		return unavailable("release", err)
	}
	return nil
}

// PromoteNext moves up to limit retries of tenant due at or before now back
// to the tails of their destination streams, and returns how many it moved
// and when the earliest retry left is due (ms precision; the zero time if
// none is), so that the caller can sleep until exactly then. limit <= 0
// means 100. Each call is one atomic script, so instances may run it
// concurrently: a retry is moved exactly once. Call it again while it
// returns limit. Errors wrap switchboard.ErrUnavailable.
func (s *Store) PromoteNext(ctx context.Context, tenant string, now time.Time, limit int) (int, time.Time, error) {
	if limit <= 0 {
		limit = 100
	}
	keys := []string{retryKey(tenant), countsKey(tenant)}
	res, err := promoteScript.Run(ctx, s.rdb, keys, millis(now), strconv.Itoa(limit), streamPrefix(tenant)).Int64Slice()
	if err != nil {
		return 0, time.Time{}, unavailable("promote", err)
	}
	if len(res) != 2 {
		return 0, time.Time{}, unavailable("promote", errUnexpectedReply)
	}
	var next time.Time
	if res[1] >= 0 {
		next = time.UnixMilli(res[1])
	}
	return int(res[0]), next, nil
}

// Touch restarts the idle time of j's pending entry if consumer still
// holds it, so that no instance reclaims it while its attempt runs: an
// attempt may outlast another instance's visibility timeout when their
// delivery timeouts differ (a reload that reached one instance first).
// A job that another consumer holds now is left alone. It reports whether
// j was touched.
func (s *Store) Touch(ctx context.Context, j *Job, consumer string) (bool, error) {
	if err := j.check("touch"); err != nil {
		return false, err
	}
	n, err := touchScript.Run(ctx, s.rdb, []string{streamKey(j.Tenant, j.Destination)}, consumer, j.ID).Int()
	if err != nil {
		return false, unavailable("touch", err)
	}
	return n == 1, nil
}

// touchScript: KEYS[1] the stream; ARGV[1] consumer, ARGV[2] entry id.
var touchScript = redis.NewScript(`
local p = redis.call('XPENDING', KEYS[1], 'sb', ARGV[2], ARGV[2], 1)
if #p == 1 and p[1][2] == ARGV[1] then
  -- RETRYCOUNT as it was: the embedded store's JUSTID would count one
  redis.call('XCLAIM', KEYS[1], 'sb', ARGV[1], 0, ARGV[2], 'RETRYCOUNT', p[1][4], 'JUSTID')
  return 1
end
return 0
`)

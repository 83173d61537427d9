package queue

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Ordered destinations deliver in arrival order, so a failed job is not
// moved to the retry set (it would come back behind later ones): it stays
// pending at its place in the stream, held, and is attempted again there.
// One gateway instance at a time delivers an ordered destination, the one
// that holds its lease; a new holder first claims every pending job of the
// destination, so nothing overtakes it.
//
//	sb:{t}:lease:<dest>         the consumer delivering the ordered destination, with a TTL
//	sb:{t}:hold:<dest>          hash: entry id → "<attempts>|<due unix ms>|<last error>"
//	                            of the held jobs (failed at least once)
//	sb:{t}:rank:<dest>:<msg>    the highest status rank delivered to dest for carrier
//	                            message msg (drop_stale_status), with a TTL
//
// and "s:<dest>" in the counters hash counts stale statuses dropped.

// OrderedConsumer is the consumer name under which consumer reads and
// claims an ordered destination's jobs. Those jobs are held in place and
// claimed again by each new lease holder, so their hand-outs are not
// attempts; Reclaim tells them by this prefix and does not count them as
// attempts lost.
func OrderedConsumer(consumer string) string { return orderedPrefix + consumer }

const orderedPrefix = "ord:"

func leaseKey(tenant, dest string) string { return tenantPrefix(tenant) + "lease:" + dest }

func holdKey(tenant, dest string) string { return tenantPrefix(tenant) + "hold:" + dest }

func rankKey(tenant, dest, msg string) string {
	return tenantPrefix(tenant) + "rank:" + dest + ":" + msg
}

// leaseScript: KEYS[1] lease. ARGV[1] consumer, ARGV[2] ttl ms. Returns 1
// if consumer holds the lease now (taken or renewed), 0 if another does.
var leaseScript = redis.NewScript(`
local v = redis.call('GET', KEYS[1])
if v and v ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
`)

// unleaseScript: KEYS[1] lease. ARGV[1] consumer. Drops the lease if
// consumer holds it.
var unleaseScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 1
`)

// claimHeldScript claims for a consumer the oldest pending jobs of a
// stream, whoever they were pending for, with their hold records.
//
// KEYS[1] stream, KEYS[2] hold hash. ARGV[1] consumer, ARGV[2] count,
// ARGV[3] exclusive start id ('-' for the first batch).
// Returns {{id, fields, hold record or empty}...}, or {'nogroup'}. Pending entries
// whose stream entry is gone are acknowledged away (and their hold
// dropped), and not returned.
var claimHeldScript = redis.NewScript(`
local start = ARGV[3]
if start ~= '-' then start = '(' .. start end
local p = redis.pcall('XPENDING', KEYS[1], 'sb', start, '+', ARGV[2])
if type(p) == 'table' and p.err then
  if string.find(p.err, 'NOGROUP', 1, true) then return {'nogroup'} end
  return p
end
local out = {}
for _, e in ipairs(p) do
  local id = e[1]
  local c = redis.call('XCLAIM', KEYS[1], 'sb', ARGV[1], '0', id)
  if c[1] and c[1][1] then
    out[#out + 1] = {id, c[1][2], redis.call('HGET', KEYS[2], id) or ''}
  else
    redis.call('XACK', KEYS[1], 'sb', id)
    redis.call('HDEL', KEYS[2], id)
  end
end
return out
`)

// holdScript: KEYS[1] hold hash. ARGV[1] entry id, ARGV[2] record.
var holdScript = redis.NewScript(`
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return 1
`)

// settleScript acknowledges a job in place: XACK + XDEL, its hold
// forgotten and, for a status, its rank recorded (never lowered).
//
// KEYS[1] stream, KEYS[2] hold hash, KEYS[3] rank key. ARGV[1] entry id,
// ARGV[2] rank (0: none), ARGV[3] rank ttl ms.
var settleScript = redis.NewScript(luaKeepBody + `
keep_body(KEYS[1], ARGV[1])
redis.call('XACK', KEYS[1], 'sb', ARGV[1])
redis.call('XDEL', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
local r = tonumber(ARGV[2])
if r > 0 then
  local last = tonumber(redis.call('GET', KEYS[3]) or '0') or 0
  redis.call('SET', KEYS[3], tostring(math.max(r, last)), 'PX', ARGV[3])
end
return 1
`)

// buryHeldScript dead-letters a job in place, if it is still pending.
//
// KEYS[1] stream, KEYS[2] dlq, KEYS[3] counters, KEYS[4] hold hash.
// ARGV[1] entry id, ARGV[2] destination, ARGV[3..] dlq field/value pairs.
var buryHeldScript = redis.NewScript(luaKeepBody + `
redis.call('HDEL', KEYS[4], ARGV[1])
if redis.call('XACK', KEYS[1], 'sb', ARGV[1]) == 0 then return 0 end
keep_body(KEYS[1], ARGV[1])
redis.call('XDEL', KEYS[1], ARGV[1])
local args = {'XADD', KEYS[2], '*'}
for i = 3, #ARGV do args[#args + 1] = ARGV[i] end
redis.call(unpack(args))
redis.call('HINCRBY', KEYS[3], 'x:' .. ARGV[2], 1)
return 1
`)

// dropStaleScript drops a status job whose rank is not above the last one
// delivered for its message: XACK + XDEL, hold forgotten, counted.
//
// KEYS[1] stream, KEYS[2] hold hash, KEYS[3] rank key, KEYS[4] counters.
// ARGV[1] entry id, ARGV[2] rank, ARGV[3] destination. Returns 1 if
// dropped.
var dropStaleScript = redis.NewScript(luaKeepBody + `
local last = redis.call('GET', KEYS[3])
if not last or tonumber(ARGV[2]) > (tonumber(last) or 0) then return 0 end
keep_body(KEYS[1], ARGV[1])
redis.call('XACK', KEYS[1], 'sb', ARGV[1])
redis.call('XDEL', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('HINCRBY', KEYS[4], 's:' .. ARGV[3], 1)
return 1
`)

// Lease makes consumer the one instance delivering the ordered destination
// dest of tenant for ttl, or renews its lease; it reports false when
// another consumer holds it. Errors wrap switchboard.ErrUnavailable.
func (s *Store) Lease(ctx context.Context, tenant, dest, consumer string, ttl time.Duration) (bool, error) {
	n, err := leaseScript.Run(ctx, s.rdb, []string{leaseKey(tenant, dest)}, consumer, max(ttl.Milliseconds(), 1)).Int()
	if err != nil {
		return false, unavailable("lease", err)
	}
	return n == 1, nil
}

// Leased reports which of dests (of tenant) a consumer other than self
// holds the ordered lease of now: an instance whose configuration says
// such a destination is unordered (instances disagree while a reload
// reaches them one by one) leaves it to the holder, so that its order is
// kept. Errors wrap switchboard.ErrUnavailable.
func (s *Store) Leased(ctx context.Context, tenant string, dests []string, self string) (map[string]bool, error) {
	if len(dests) == 0 {
		return nil, nil
	}
	keys := make([]string, len(dests))
	for i, d := range dests {
		keys[i] = leaseKey(tenant, d)
	}
	vs, err := s.rdb.MGet(ctx, keys...).Result()
	if err != nil {
		return nil, unavailable("leased", err)
	}
	out := map[string]bool{}
	for i, v := range vs {
		if holder, ok := v.(string); ok && holder != self {
			out[dests[i]] = true
		}
	}
	return out, nil
}

// Unlease gives up consumer's lease on dest (at shutdown), so another
// instance takes over at once. Errors wrap switchboard.ErrUnavailable.
func (s *Store) Unlease(ctx context.Context, tenant, dest, consumer string) error {
	if err := unleaseScript.Run(ctx, s.rdb, []string{leaseKey(tenant, dest)}, consumer).Err(); err != nil {
		return unavailable("unlease", err)
	}
	return nil
}

// HeldJob is a pending job of an ordered destination as ClaimHeld returns
// it: Attempts and LastError include its failed attempts, and Due says when
// it may be attempted again (zero: now).
type HeldJob struct {
	Job
}

// ClaimHeld claims for consumer every job pending in dest's stream,
// whoever it was pending for, oldest first, with its hold (see Hold). The
// holder of an ordered destination's lease calls it when it takes the
// lease, before reading new jobs, so that nothing overtakes them. A stream
// or group that does not exist is created. Errors wrap
// switchboard.ErrUnavailable.
func (s *Store) ClaimHeld(ctx context.Context, tenant, dest, consumer string) ([]HeldJob, error) {
	keys := []string{streamKey(tenant, dest), holdKey(tenant, dest)}
	const batch = 256
	var out []HeldJob
	start := "-"
	for try := 0; ; {
		res, err := claimHeldScript.Run(ctx, s.rdb, keys, consumer, batch, start).Slice()
		if err != nil {
			return out, unavailable("claim held", err)
		}
		if len(res) == 1 && toString(res[0]) == "nogroup" {
			if try++; try > 1 {
				return out, nil
			}
			if err := s.EnsureGroups(ctx, tenant, []string{dest}); err != nil {
				return out, err
			}
			continue
		}
		for _, v := range res {
			e, ok := v.([]any)
			if !ok || len(e) != 3 {
				return out, unavailable("claim held", errUnexpectedReply)
			}
			j, err := jobFromReply(tenant, dest, []any{e[0], e[1]})
			if err != nil {
				return out, unavailable("claim held", err)
			}
			h := HeldJob{Job: j}
			if rec := toString(e[2]); rec != "" {
				h.Attempts, h.Due, h.LastError = parseHold(rec)
			}
			out = append(out, h)
			start = j.ID
		}
		if len(res) < batch {
			return out, nil
		}
	}
}

// Hold keeps a job of an ordered destination pending at its place after a
// failed attempt: attempts made in all, the last one's error, and when to
// attempt it again. ClaimHeld returns that record to a new lease holder.
// Errors wrap switchboard.ErrUnavailable.
func (s *Store) Hold(ctx context.Context, j *Job, attempts int, due time.Time, lastErr string) error {
	if err := j.check("hold"); err != nil {
		return err
	}
	rec := strconv.Itoa(attempts) + "|" + millis(due) + "|" + lastErr
	if err := holdScript.Run(ctx, s.rdb, []string{holdKey(j.Tenant, j.Destination)}, j.ID, rec).Err(); err != nil {
		return unavailable("hold", err)
	}
	return nil
}

// Unhold removes the hold record of the job id of dest, once the job it
// kept (returned by Reclaim with a Due to wait for) is in the retry set.
func (s *Store) Unhold(ctx context.Context, tenant, dest, id string) error {
	if err := s.rdb.HDel(ctx, holdKey(tenant, dest), id).Err(); err != nil {
		return unavailable("unhold", err)
	}
	return nil
}

func parseHold(rec string) (attempts int, due time.Time, lastErr string) {
	a, rest, _ := strings.Cut(rec, "|")
	d, lastErr, _ := strings.Cut(rest, "|")
	attempts, _ = strconv.Atoi(a)
	return attempts, parseMillis(d), lastErr
}

// Rank is the status rank of a delivered status event, recorded for its
// carrier message id (drop_stale_status) for TTL.
type Rank struct {
	MessageID string
	Rank      int
	TTL       time.Duration
}

// Settle acknowledges a delivered job of an ordered (or stale-dropping)
// destination: it removes it like Ack, forgets its hold and, when rank is
// not nil and has a message id and a positive rank, records that rank as
// delivered for the message (a lower one never replaces a higher one).
// Errors wrap switchboard.ErrUnavailable.
func (s *Store) Settle(ctx context.Context, j *Job, rank *Rank) error {
	if err := j.check("settle"); err != nil {
		return err
	}
	r, msg, ttl := 0, "", time.Duration(0)
	if rank != nil && rank.MessageID != "" && rank.Rank > 0 {
		r, msg, ttl = rank.Rank, rank.MessageID, rank.TTL
	}
	keys := []string{streamKey(j.Tenant, j.Destination), holdKey(j.Tenant, j.Destination), rankKey(j.Tenant, j.Destination, msg)}
	if err := settleScript.Run(ctx, s.rdb, keys, j.ID, r, max(ttl.Milliseconds(), 1)).Err(); err != nil {
		return unavailable("settle", err)
	}
	return nil
}

// BuryHeld dead-letters a job of an ordered destination like DeadLetter,
// and forgets its hold. Errors wrap switchboard.ErrUnavailable.
func (s *Store) BuryHeld(ctx context.Context, j *Job, attempts int, lastErr string, at time.Time) error {
	if err := j.check("dead-letter"); err != nil {
		return err
	}
	if at.IsZero() {
		at = time.Now()
	}
	args := []any{j.ID, j.Destination, fDest, j.Destination, fFailedAt, millis(at)}
	args = j.fields(args, attempts, lastErr)
	if lastErr == "" {
		args = append(args, fLastErr, "")
	}
	keys := []string{streamKey(j.Tenant, j.Destination), dlqKey(j.Tenant), countsKey(j.Tenant), holdKey(j.Tenant, j.Destination)}
	if err := buryHeldScript.Run(ctx, s.rdb, keys, args...).Err(); err != nil {
		return unavailable("dead-letter", err)
	}
	return nil
}

// DropStale drops a status job whose rank is not above the highest rank
// already delivered for its message to its destination (drop_stale_status):
// the job is removed undelivered and counted in Stats.Stale. It reports
// whether it dropped the job. Errors wrap switchboard.ErrUnavailable.
func (s *Store) DropStale(ctx context.Context, j *Job, messageID string, rank int) (bool, error) {
	if err := j.check("drop stale"); err != nil {
		return false, err
	}
	if messageID == "" {
		return false, errors.New("queue drop stale: no message id")
	}
	keys := []string{streamKey(j.Tenant, j.Destination), holdKey(j.Tenant, j.Destination),
		rankKey(j.Tenant, j.Destination, messageID), countsKey(j.Tenant)}
	n, err := dropStaleScript.Run(ctx, s.rdb, keys, j.ID, rank, j.Destination).Int()
	if err != nil {
		return false, unavailable("drop stale", err)
	}
	return n == 1, nil
}

// StaleDropped returns how many stale statuses were dropped per
// destination of tenant. Errors wrap switchboard.ErrUnavailable.
func (s *Store) StaleDropped(ctx context.Context, tenant string) (map[string]int64, error) {
	all, err := s.rdb.HGetAll(ctx, countsKey(tenant)).Result()
	if err != nil && !errors.Is(err, redis.Nil) {
		return nil, unavailable("stale dropped", err)
	}
	out := map[string]int64{}
	for f, v := range all {
		if dest, ok := strings.CutPrefix(f, "s:"); ok {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				return nil, unavailable("stale dropped", fmt.Errorf("counter %s: %w", f, err))
			}
			out[dest] = n
		}
	}
	return out, nil
}

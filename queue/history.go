package queue

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Event history: what the admin API shows and what Recover re-sends. Every
// stored event of a tenant is kept for the tenant's retention, beside its
// jobs (which leave Redis once delivered):
//
//	sb:{t}:h:e:<event id>    hash: b body, d routed destinations (space-separated),
//	                         t arrival unix ms, r raw callback and R the destinations
//	                         that need it (only when some do), p traceparent; while
//	                         the event's jobs are all queued, q (the entry id of the
//	                         job for the first destination in d) instead of b: the body is kept
//	                         once, in the jobs, and copied into the record when the
//	                         first job ends or moves (keep_body in scripts.go)
//	sb:{t}:h:a:<event id>    list of the event's delivery attempts (JSON), the
//	                         newest MaxAttemptLog kept
//	sb:{t}:h:m:<hash>        (16 base64url characters of the SHA-256 of the message id)
//	                         the event ids with that carrier message id, each
//	                         followed by a space (a string: a set of one
//	                         member costs Redis 7.0 about 250 bytes)
//	sb:{t}:h:t:<dest>        stream of the event ids routed to dest (field i), entry
//	                         id = the time of the enqueue (for an event stored over a
//	                         second after it arrived, from a spool: its arrival unix ms,
//	                         unless the stream has a later entry already), trimmed
//	                         to the retention now and then (historyTrimEvery); a
//	                         stream packs an entry in ~40 bytes, a sorted set in ~130
//
// enqueueScript writes them with the event's jobs, in the same script run.
//
// Each key expires with the retention, so the history of a tenant is capped
// by time; the attempts of one event are capped by count.

// MaxAttemptLog caps the attempts kept per event; older ones are dropped.
const MaxAttemptLog = 100

func historyKey(tenant, id string) string { return tenantPrefix(tenant) + "h:e:" + id }

func attemptsKey(tenant, id string) string { return tenantPrefix(tenant) + "h:a:" + id }

// messageKey names the index of message id msg by a hash of it: message
// ids run to 40 characters and more, and this key is one per message.
func messageKey(tenant, msg string) string {
	sum := sha256.Sum256([]byte(msg))
	return tenantPrefix(tenant) + "h:m:" + base64.RawURLEncoding.EncodeToString(sum[:12])
}

func destIndexKey(tenant, dest string) string { return tenantPrefix(tenant) + "h:t:" + dest }

// Attempt is one delivery attempt of an event, as kept in its history.
type Attempt struct {
	Time        time.Time
	Destination string
	// Attempt is the attempt's number for this destination, 1 for the
	// first try (a dead-letter replay or a recovery starts again at 1).
	Attempt int
	// StatusCode is the receiver's HTTP status; 0 when none came.
	StatusCode int
	Latency    time.Duration
	// Outcome is what followed: "delivered", "retry" or "dead_letter".
	Outcome string
	Error   string // empty when delivered
}

// attemptRecord is the stored form of an Attempt. Its field names are
// stored data: never rename one.
type attemptRecord struct {
	Time    int64  `json:"t"` // unix ms
	Dest    string `json:"d"`
	Attempt int    `json:"n"`
	Status  int    `json:"s,omitempty"`
	Latency int64  `json:"l"` // microseconds
	Outcome string `json:"o"`
	Error   string `json:"e,omitempty"`
}

// recordAttemptScript appends an attempt to an event's history, if the
// event is still in it; the attempts expire with the event.
//
// KEYS[1] event hash, KEYS[2] attempts list. ARGV[1] attempt, ARGV[2] -cap.
var recordAttemptScript = redis.NewScript(`
local ttl = redis.call('PTTL', KEYS[1])
if ttl == -2 then return 0 end
if redis.call('RPUSH', KEYS[2], ARGV[1]) > -tonumber(ARGV[2]) then
  redis.call('LTRIM', KEYS[2], ARGV[2], -1)
end
if ttl > 0 then redis.call('PEXPIRE', KEYS[2], ttl) end
return 1
`)

// RecordAttempt appends a to the history of event id of tenant (keeping the
// newest MaxAttemptLog). An event no longer in the history is left alone.
// Errors wrap switchboard.ErrUnavailable.
func (s *Store) RecordAttempt(ctx context.Context, tenant, id string, a Attempt) error {
	if a.Time.IsZero() {
		a.Time = time.Now()
	}
	b, err := attemptJSON(a)
	if err != nil {
		return err
	}
	keys := []string{historyKey(tenant, id), attemptsKey(tenant, id)}
	if err := recordAttemptScript.Run(ctx, s.rdb, keys, b, strconv.Itoa(-MaxAttemptLog)).Err(); err != nil {
		return unavailable("record attempt", err)
	}
	return nil
}

// HistoryEvent is one event as kept in the history.
type HistoryEvent struct {
	ID         string
	Event      []byte // the event body (JSON), as delivered
	ReceivedAt time.Time
	// Destinations are the ones the event was routed to.
	Destinations []string
	// Attempts are its delivery attempts, oldest first, to every destination.
	Attempts []Attempt
}

// History returns event id of tenant from its history, and false if the
// event is not (or no longer) there. Errors wrap switchboard.ErrUnavailable.
func (s *Store) History(ctx context.Context, tenant, id string) (HistoryEvent, bool, error) {
	evs, err := s.histories(ctx, tenant, []string{id})
	if err != nil || len(evs) == 0 {
		return HistoryEvent{}, false, err
	}
	return evs[0], true, nil
}

// HistoryByMessage returns the events of tenant with carrier message id
// msg that are still in the history, oldest first. Errors wrap
// switchboard.ErrUnavailable.
func (s *Store) HistoryByMessage(ctx context.Context, tenant, msg string) ([]HistoryEvent, error) {
	if msg == "" {
		return nil, nil
	}
	list, err := s.rdb.Get(ctx, messageKey(tenant, msg)).Result()
	if err != nil && !errors.Is(err, redis.Nil) {
		return nil, unavailable("history by message", err)
	}
	ids := strings.Fields(list)
	slices.Sort(ids) // event ids sort by arrival
	ids = slices.Compact(ids)
	return s.histories(ctx, tenant, ids)
}

// histories reads the events ids of tenant in one round trip, leaving out
// those no longer kept.
func (s *Store) histories(ctx context.Context, tenant string, ids []string) ([]HistoryEvent, error) {
	if len(ids) == 0 {
		return nil, nil
	}
	pipe := s.rdb.Pipeline()
	hs := make([]*redis.SliceCmd, len(ids))
	as := make([]*redis.StringSliceCmd, len(ids))
	for i, id := range ids {
		hs[i] = pipe.HMGet(ctx, historyKey(tenant, id), "b", "d", "t", "q")
		as[i] = pipe.LRange(ctx, attemptsKey(tenant, id), 0, -1)
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return nil, unavailable("history", err)
	}
	// A record whose jobs are all still queued has no body: it is in the
	// job for its first destination (q = that job's entry id).
	queued := map[int]*redis.XMessageSliceCmd{}
	pipe = s.rdb.Pipeline()
	for i, c := range hs {
		if v := c.Val(); len(v) == 4 && v[0] == nil && v[2] != nil && v[3] != nil {
			if dests := strings.Fields(toString(v[1])); len(dests) > 0 {
				id := toString(v[3])
				queued[i] = pipe.XRange(ctx, streamKey(tenant, dests[0]), id, id)
			}
		}
	}
	if len(queued) > 0 {
		if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
			return nil, unavailable("history", err)
		}
	}
	var out []HistoryEvent
	for i, id := range ids {
		v := hs[i].Val()
		if len(v) != 4 || v[2] == nil {
			continue // not (or no longer) kept
		}
		body := toString(v[0])
		if c := queued[i]; v[0] == nil && c != nil {
			if msgs := c.Val(); len(msgs) == 1 {
				body = toString(msgs[0].Values[fBody])
			}
		}
		if body == "" {
			// Its jobs ended by a way that did not keep the body (their
			// stream was deleted by hand): nothing left to show.
			continue
		}
		ev := HistoryEvent{
			ID:           id,
			Event:        []byte(body),
			Destinations: strings.Fields(toString(v[1])),
			ReceivedAt:   parseMillis(toString(v[2])),
		}
		for _, raw := range as[i].Val() {
			var r attemptRecord
			if json.Unmarshal([]byte(raw), &r) != nil {
				continue
			}
			ev.Attempts = append(ev.Attempts, Attempt{
				Time: time.UnixMilli(r.Time), Destination: r.Dest, Attempt: r.Attempt, StatusCode: r.Status,
				Latency: time.Duration(r.Latency) * time.Microsecond, Outcome: r.Outcome, Error: r.Error,
			})
		}
		// Recorded as they end, each with the time it started: attempts
		// to two destinations that overlap end in either order.
		slices.SortStableFunc(ev.Attempts, func(a, b Attempt) int { return a.Time.Compare(b.Time) })
		out = append(out, ev)
	}
	return out, nil
}

// recoverScript re-sends one batch of a destination's history window.
//
// KEYS[1] destination index, KEYS[2] destination stream.
// ARGV[1] first index entry id, ARGV[2] last index entry id, ARGV[3] batch
// size, ARGV[4] event hash key prefix, ARGV[5] destination, ARGV[6] now
// unix ms, ARGV[7] the tenant's key prefix.
//
// Returns {re-sent, entries scanned, id of the last entry scanned}. Events
// whose record has expired are skipped.
var recoverScript = redis.NewScript(`
local r = redis.call('XRANGE', KEYS[1], ARGV[1], ARGV[2], 'COUNT', ARGV[3])
local n, last = 0, ''
for i = 1, #r do
  last = r[i][1]
  local f, id = r[i][2], nil
  for j = 1, #f, 2 do
    if f[j] == 'i' then id = f[j + 1] end
  end
  local h = id and redis.call('HMGET', ARGV[4] .. id, 'b', 'r', 'R', 'p', 'q', 'd') or {}
  if id and not h[1] and h[5] and h[6] then
    -- all its jobs are queued: the body is in the one for its first destination
    local first = string.match(h[6], '^(%S+)')
    local e = first and redis.call('XRANGE', ARGV[7] .. 'd:' .. first, h[5], h[5])
    if e and e[1] then
      local ef = e[1][2]
      for j = 1, #ef, 2 do
        if ef[j] == 'b' then h[1] = ef[j + 1] end
      end
    end
  end
  if h[1] then
    local args = {'XADD', KEYS[2], '*', 'i', id, 'b', h[1]}
    if h[2] and h[3] and string.find(' ' .. h[3] .. ' ', ' ' .. ARGV[5] .. ' ', 1, true) then
      args[#args + 1] = 'r'
      args[#args + 1] = h[2]
    end
    args[#args + 1] = 'a'
    args[#args + 1] = '0'
    args[#args + 1] = 't'
    args[#args + 1] = ARGV[6]
    if h[4] then
      args[#args + 1] = 'p'
      args[#args + 1] = h[4]
    end
    redis.call(unpack(args))
    n = n + 1
  end
end
return {n, #r, last}
`)

// nextStreamID is the stream entry id right after id ("<ms>-<seq>").
func nextStreamID(id string) (string, bool) {
	ms, seq, ok := strings.Cut(id, "-")
	if !ok {
		return "", false
	}
	n, err := strconv.ParseUint(seq, 10, 64)
	if err != nil {
		return "", false
	}
	if n == math.MaxUint64 {
		m, err := strconv.ParseUint(ms, 10, 64)
		if err != nil {
			return "", false
		}
		return strconv.FormatUint(m+1, 10) + "-0", true
	}
	return ms + "-" + strconv.FormatUint(n+1, 10), true
}

// recoverBatch bounds the events one recoverScript call re-sends.
const recoverBatch = 256

// Recover puts every event of tenant that arrived in [since, until] (ms
// precision) and was routed to dest back on dest's stream, as a new job with
// its original event id (the webhook-id), a fresh attempt budget, and
// enqueued-at now so max_age starts again. Only events still in the history
// are re-sent; those delivered meanwhile are re-sent too — that is the
// point. It returns how many it re-sent; errors wrap
// switchboard.ErrUnavailable, the count then saying how many were re-sent
// before.
func (s *Store) Recover(ctx context.Context, tenant, dest string, since, until, now time.Time) (int, error) {
	if !validTenant(tenant) || dest == "" || until.Before(since) || until.UnixMilli() < 0 {
		return 0, nil
	}
	if since.UnixMilli() < 0 {
		since = time.UnixMilli(0) // the index's ids are Unix ms: nothing is older
	}
	keys := []string{destIndexKey(tenant, dest), streamKey(tenant, dest)}
	lo, hi := millis(since)+"-0", millis(until)+"-18446744073709551615"
	total := 0
	for {
		res, err := recoverScript.Run(ctx, s.rdb, keys, lo, hi, recoverBatch,
			tenantPrefix(tenant)+"h:e:", dest, millis(now), tenantPrefix(tenant)).Slice()
		if err != nil {
			return total, unavailable("recover", err)
		}
		if len(res) != 3 {
			return total, unavailable("recover", errUnexpectedReply)
		}
		n, scanned := toInt64(res[0]), toInt64(res[1])
		total += int(n)
		if scanned < recoverBatch {
			return total, nil
		}
		// Resume right after the last index entry scanned.
		next, ok := nextStreamID(toString(res[2]))
		if !ok {
			return total, unavailable("recover", errUnexpectedReply)
		}
		lo = next
	}
}

func attemptJSON(a Attempt) ([]byte, error) {
	return json.Marshal(attemptRecord{
		Time: a.Time.UnixMilli(), Dest: a.Destination, Attempt: a.Attempt, Status: a.StatusCode,
		Latency: a.Latency.Microseconds(), Outcome: a.Outcome, Error: a.Error,
	})
}

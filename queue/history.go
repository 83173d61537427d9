package queue

import (
	"context"
	"encoding/json"
	"errors"
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
//	                         that need it (only when some do), p traceparent
//	sb:{t}:h:a:<event id>    list of the event's delivery attempts (JSON), the
//	                         newest MaxAttemptLog kept
//	sb:{t}:h:m:<message id>  set of event ids with that carrier message id
//	sb:{t}:h:d:<dest>        sorted set of event ids routed to dest, score = arrival
//	                         unix ms, trimmed to the retention now and then
//	                         (historyTrimEvery)
//
// enqueueScript writes them with the event's jobs, in the same script run.
//
// Each key expires with the retention, so the history of a tenant is capped
// by time; the attempts of one event are capped by count.

// MaxAttemptLog caps the attempts kept per event; older ones are dropped.
const MaxAttemptLog = 100

func historyKey(tenant, id string) string { return tenantPrefix(tenant) + "h:e:" + id }

func attemptsKey(tenant, id string) string { return tenantPrefix(tenant) + "h:a:" + id }

func messageKey(tenant, msg string) string { return tenantPrefix(tenant) + "h:m:" + msg }

func destIndexKey(tenant, dest string) string { return tenantPrefix(tenant) + "h:d:" + dest }

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
redis.call('RPUSH', KEYS[2], ARGV[1])
redis.call('LTRIM', KEYS[2], ARGV[2], -1)
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
	ids, err := s.rdb.SMembers(ctx, messageKey(tenant, msg)).Result()
	if err != nil && !errors.Is(err, redis.Nil) {
		return nil, unavailable("history by message", err)
	}
	slices.Sort(ids) // event ids sort by arrival
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
		hs[i] = pipe.HMGet(ctx, historyKey(tenant, id), "b", "d", "t")
		as[i] = pipe.LRange(ctx, attemptsKey(tenant, id), 0, -1)
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return nil, unavailable("history", err)
	}
	var out []HistoryEvent
	for i, id := range ids {
		v := hs[i].Val()
		if len(v) != 3 || v[0] == nil {
			continue
		}
		ev := HistoryEvent{
			ID:           id,
			Event:        []byte(toString(v[0])),
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
		out = append(out, ev)
	}
	return out, nil
}

// recoverScript re-sends one batch of a destination's history window.
//
// KEYS[1] destination index, KEYS[2] destination stream.
// ARGV[1] min score, ARGV[2] offset, ARGV[3] max score, ARGV[4] batch size,
// ARGV[5] event hash key prefix, ARGV[6] destination, ARGV[7] now unix ms.
//
// Returns {re-sent, entries scanned, last score scanned, entries scanned at
// that score}. Events whose hash has expired are skipped.
var recoverScript = redis.NewScript(`
local r = redis.call('ZRANGEBYSCORE', KEYS[1], ARGV[1], ARGV[3], 'WITHSCORES', 'LIMIT', ARGV[2], ARGV[4])
local n, last, ties = 0, '', 0
for i = 1, #r, 2 do
  local id, score = r[i], r[i + 1]
  if score == last then ties = ties + 1 else last, ties = score, 1 end
  local h = redis.call('HMGET', ARGV[5] .. id, 'b', 'r', 'R', 'p')
  if h[1] then
    local args = {'XADD', KEYS[2], '*', 'i', id, 'b', h[1]}
    if h[2] and h[3] and string.find(' ' .. h[3] .. ' ', ' ' .. ARGV[6] .. ' ', 1, true) then
      args[#args + 1] = 'r'
      args[#args + 1] = h[2]
    end
    args[#args + 1] = 'a'
    args[#args + 1] = '0'
    args[#args + 1] = 't'
    args[#args + 1] = ARGV[7]
    if h[4] then
      args[#args + 1] = 'p'
      args[#args + 1] = h[4]
    end
    redis.call(unpack(args))
    n = n + 1
  end
end
return {n, #r / 2, last, ties}
`)

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
	if !validTenant(tenant) || dest == "" || until.Before(since) {
		return 0, nil
	}
	keys := []string{destIndexKey(tenant, dest), streamKey(tenant, dest)}
	lo, hi := millis(since), millis(until)
	offset, total := 0, 0
	for {
		res, err := recoverScript.Run(ctx, s.rdb, keys, lo, offset, hi, recoverBatch,
			tenantPrefix(tenant)+"h:e:", dest, millis(now)).Slice()
		if err != nil {
			return total, unavailable("recover", err)
		}
		if len(res) != 4 {
			return total, unavailable("recover", errUnexpectedReply)
		}
		n, scanned, ties := toInt64(res[0]), toInt64(res[1]), toInt64(res[3])
		total += int(n)
		if scanned < recoverBatch {
			return total, nil
		}
		// Resume after the last entry scanned: at its score, past the
		// entries of that score already seen (they sort by event id, i.e.
		// by arrival, within one millisecond).
		last := toString(res[2])
		if last == lo {
			offset += int(ties)
		} else {
			lo, offset = last, int(ties)
		}
	}
}

func attemptJSON(a Attempt) ([]byte, error) {
	return json.Marshal(attemptRecord{
		Time: a.Time.UnixMilli(), Dest: a.Destination, Attempt: a.Attempt, Status: a.StatusCode,
		Latency: a.Latency.Microseconds(), Outcome: a.Outcome, Error: a.Error,
	})
}

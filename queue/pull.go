package queue

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Pull destinations: their apps fetch events instead of receiving POSTs.
// They use the same stream and consumer group as push destinations; a
// hand-out is a read into the group's pending entries list under the
// consumer PullConsumer, and the entry's delivery count is the number of
// hand-outs. A receipt names the entry and that count, so it is valid until
// the entry is acknowledged or handed out again (XCLAIM raises the count).
//
// An SSE stream (a session) also logs its hand-outs, in order, in
//
//	sb:{t}:pull:<dest>:<session>   sorted set, member "<entry id>|<count>",
//	                               score = the hand-out's sequence number
//
// which expires with the visibility timeout, so that a client that
// reconnects with Last-Event-ID gets the events sent after that one again at
// once, and so that a stream never has more unacknowledged events than its
// cap.

// PullConsumer is the consumer that pull hand-outs are pending for.
const PullConsumer = "pull"

// Pull says what one hand-out gives a pulling app.
type Pull struct {
	Tenant      string
	Destination string
	// Max is the most events handed out by this call (at least 1).
	Max int
	// Visibility is how long a hand-out stays valid: events unacknowledged
	// for this long are handed out again.
	Visibility time.Duration
	// MaxAttempts: an event handed out this many times (counting the
	// stored attempts of a pass-through) and not acknowledged is
	// dead-lettered instead of handed out again.
	MaxAttempts int
	// Session names an SSE stream ("" for a long-poll): its hand-outs are
	// logged under their sequence numbers, starting at Seq, and at most
	// Unacked of them (0: Max) may be unacknowledged at a time.
	Session string
	Seq     int64
	Unacked int
	// Now is the time of the call (zero: time.Now), for dead letters.
	Now time.Time
}

// Handout is one event handed to a pulling app.
type Handout struct {
	Job
	// Receipt acknowledges this hand-out (PullAck).
	Receipt string
	// Attempt is the hand-out's number: 1 for the first.
	Attempt int
	// Seq is the hand-out's sequence number within its session.
	Seq int64
}

// pullCommon: the Lua helpers of the pull scripts. handOut(id, cnt) hands
// the pending entry id, handed out cnt times so far, out again — or
// dead-letters it when that would exceed max attempts — and appends the
// hand-out to out, or {event id, attempts} to dead. Variables set by the
// including script: stream, dlq, counts, dest, now, maxAttempts, errmsg,
// out, dead.
const pullCommon = luaKeepBody + `
local function field(fields, name)
  for i = 1, #fields, 2 do
    if fields[i] == name then return fields[i + 1] end
  end
  return nil
end
local function handOut(id, cnt)
  local r = redis.call('XRANGE', stream, id, id)
  if not r[1] then
    redis.call('XACK', stream, 'sb', id)
    return
  end
  local fields = r[1][2]
  local a = tonumber(field(fields, 'a') or '0') or 0
  if a + cnt >= maxAttempts then
    redis.call('XACK', stream, 'sb', id)
    keep_body(stream, id)
    redis.call('XDEL', stream, id)
    local args = {'XADD', dlq, '*', 'd', dest, 'f', now}
    for i = 1, #fields, 2 do
      if fields[i] ~= 'a' and fields[i] ~= 'e' then
        args[#args + 1] = fields[i]
        args[#args + 1] = fields[i + 1]
      end
    end
    args[#args + 1] = 'a'
    args[#args + 1] = tostring(a + cnt)
    args[#args + 1] = 'e'
    args[#args + 1] = string.format(errmsg, cnt)
    redis.call(unpack(args))
    redis.call('HINCRBY', counts, 'x:' .. dest, 1)
    dead[#dead + 1] = {field(fields, 'i') or '', a + cnt}
    return
  end
  redis.call('XCLAIM', stream, 'sb', 'pull', '0', id, 'RETRYCOUNT', tostring(cnt + 1))
  out[#out + 1] = {id, fields, cnt + 1}
end
local function logOut(log, seq, ttl)
  for i, o in ipairs(out) do
    redis.call('ZADD', log, seq + i - 1, o[1] .. '|' .. o[3])
  end
  if #out > 0 then redis.call('PEXPIRE', log, ttl) end
end
`

// pullScript hands out up to max events: first those whose hand-out
// expired (idle past the visibility timeout), oldest first, then new ones.
//
// KEYS[1] stream, KEYS[2] dlq, KEYS[3] counters, KEYS[4] session log.
// ARGV[1] visibility ms, ARGV[2] max, ARGV[3] max attempts, ARGV[4]
// destination, ARGV[5] now unix ms, ARGV[6] session (empty: none), ARGV[7]
// first sequence number, ARGV[8] unacknowledged cap of the session,
// ARGV[9] dead-letter error format (%d: hand-outs).
//
// Returns {hand-outs {id, fields, count}..., {dead-lettered {event id,
// attempts}...}}, or {'nogroup'} when the stream or group does not exist.
var pullScript = redis.NewScript(`
local stream, dlq, counts, log = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local vis, left, maxAttempts = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local dest, now, session = ARGV[4], ARGV[5], ARGV[6]
local errmsg = ARGV[9]
local out, dead = {}, {}
` + pullCommon + `
local expired = redis.pcall('XPENDING', stream, 'sb', 'IDLE', vis, '-', '+', left)
if type(expired) == 'table' and expired.err then
  if string.find(expired.err, 'NOGROUP', 1, true) then return {'nogroup'} end
  return expired
end
if session ~= '' then
  local live = 0
  for _, m in ipairs(redis.call('ZRANGE', log, 0, -1)) do
    local bar = string.find(m, '|', 1, true)
    local id = string.sub(m, 1, bar - 1)
    local p = redis.call('XPENDING', stream, 'sb', id, id, 1)
    if p[1] and tostring(p[1][4]) == string.sub(m, bar + 1) then
      live = live + 1
    else
      redis.call('ZREM', log, m)
    end
  end
  left = math.min(left, tonumber(ARGV[8]) - live)
end
for _, e in ipairs(expired) do
  if #out >= left then break end
  handOut(e[1], tonumber(e[4]))
end
if #out < left then
  local r = redis.call('XREADGROUP', 'GROUP', 'sb', 'pull', 'COUNT', tostring(left - #out), 'STREAMS', stream, '>')
  if r and r[1] then
    for _, e in ipairs(r[1][2]) do out[#out + 1] = {e[1], e[2], 1} end
  end
end
if session ~= '' then logOut(log, tonumber(ARGV[7]), vis) end
out[#out + 1] = dead
return out
`)

// pullResumeScript hands out again, at once, the events a session handed
// out after a given sequence number that are still unacknowledged and not
// handed out since — what a dropped SSE connection may have lost in
// transit — and logs them in the new session.
//
// KEYS[1] stream, KEYS[2] dlq, KEYS[3] counters, KEYS[4] old session log,
// KEYS[5] new session log. ARGV[1] the last sequence number the client
// got, ARGV[2] max attempts, ARGV[3] destination, ARGV[4] now unix ms,
// ARGV[5] first sequence number of the new session, ARGV[6] log ttl ms,
// ARGV[7] dead-letter error format.
//
// Returns as pullScript.
var pullResumeScript = redis.NewScript(`
local stream, dlq, counts = KEYS[1], KEYS[2], KEYS[3]
local maxAttempts, dest, now, errmsg = tonumber(ARGV[2]), ARGV[3], ARGV[4], ARGV[7]
local out, dead = {}, {}
` + pullCommon + `
local logged = redis.call('ZRANGEBYSCORE', KEYS[4], '(' .. ARGV[1], '+inf')
redis.call('DEL', KEYS[4])
for _, m in ipairs(logged) do
  local bar = string.find(m, '|', 1, true)
  local id, n = string.sub(m, 1, bar - 1), string.sub(m, bar + 1)
  local p = redis.pcall('XPENDING', stream, 'sb', id, id, 1)
  if type(p) == 'table' and p.err == nil and p[1] and tostring(p[1][4]) == n then
    handOut(id, tonumber(n))
  end
end
logOut(KEYS[5], tonumber(ARGV[5]), ARGV[6])
out[#out + 1] = dead
return out
`)

// pullAckScript acknowledges hand-outs whose receipt is still valid.
//
// KEYS[1] stream. ARGV: entry id, count, entry id, count, ...
// Returns, per pair acknowledged, its 1-based position, its event id and
// its hand-out's attempt number.
var pullAckScript = redis.NewScript(luaKeepBody + `
local ok = redis.pcall('XPENDING', KEYS[1], 'sb')
if type(ok) == 'table' and ok.err then return {} end
local acked = {}
for i = 1, #ARGV, 2 do
  local p = redis.call('XPENDING', KEYS[1], 'sb', ARGV[i], ARGV[i], 1)
  if p[1] and tostring(p[1][4]) == ARGV[i + 1] then
    local ev, a = '', 0
    local e = redis.call('XRANGE', KEYS[1], ARGV[i], ARGV[i])
    if e[1] then
      local f = e[1][2]
      for k = 1, #f, 2 do
        if f[k] == 'i' then ev = f[k + 1] elseif f[k] == 'a' then a = tonumber(f[k + 1]) or 0 end
      end
    end
    redis.call('XACK', KEYS[1], 'sb', ARGV[i])
    keep_body(KEYS[1], ARGV[i])
    redis.call('XDEL', KEYS[1], ARGV[i])
    acked[#acked + 1] = {(i + 1) / 2, ev, a + tonumber(ARGV[i + 1])}
  end
end
return acked
`)

// PullOutcome is what became of one hand-out of a pulled event:
// acknowledged (PullAck), or dead-lettered (Pull) after Attempt hand-outs.
type PullOutcome struct {
	EventID string
	Attempt int
}

// pullSweepScript dead-letters the events whose last hand-out expired
// (idle past the visibility timeout) and that may not be handed out again:
// without it, such an event waits for the app's next pull, which a dead
// app never makes.
//
// KEYS[1] stream, KEYS[2] dlq, KEYS[3] counters. ARGV[1] visibility ms,
// ARGV[2] max attempts, ARGV[3] destination, ARGV[4] now unix ms, ARGV[5]
// dead-letter error format, ARGV[6] at most this many looked at, ARGV[7]
// the first entry id to look at.
//
// Returns {the dead-lettered {event id, attempts}..., the last id looked
// at, how many were looked at}.
var pullSweepScript = redis.NewScript(`
local stream, dlq, counts = KEYS[1], KEYS[2], KEYS[3]
local maxAttempts, dest, now, errmsg = tonumber(ARGV[2]), ARGV[3], ARGV[4], ARGV[5]
local out, dead = {}, {}
` + pullCommon + `
local expired = redis.pcall('XPENDING', stream, 'sb', 'IDLE', ARGV[1], ARGV[7], '+', ARGV[6])
if type(expired) ~= 'table' or expired.err then return {{}, '', 0} end
local last = ''
for _, e in ipairs(expired) do
  last = e[1]
  local r = redis.call('XRANGE', stream, e[1], e[1])
  local a = 0
  if r[1] then a = tonumber(field(r[1][2], 'a') or '0') or 0 end
  if not r[1] or a + tonumber(e[4]) >= maxAttempts then handOut(e[1], tonumber(e[4])) end
end
return {dead, last, #expired}
`)

// PullSweep dead-letters the events of p's destination whose last
// hand-out expired and that have had p.MaxAttempts hand-outs, as Pull does
// before it hands out, but without an app asking; it returns them. Errors
// wrap switchboard.ErrUnavailable.
func (s *Store) PullSweep(ctx context.Context, p *Pull) ([]PullOutcome, error) {
	p.Max = max(p.Max, 1)
	if err := p.check(); err != nil {
		return nil, err
	}
	keys := []string{streamKey(p.Tenant, p.Destination), dlqKey(p.Tenant), countsKey(p.Tenant)}
	const page, pages = 100, 50 // an app's expired hand-outs with some left come before
	var dead []PullOutcome
	start := "-"
	for range pages {
		res, err := pullSweepScript.Run(ctx, s.rdb, keys, max(p.Visibility.Milliseconds(), 1), p.MaxAttempts,
			p.Destination, millis(p.now()), PullDeadError, page, start).Slice()
		if err != nil {
			return dead, unavailable("pull sweep", err)
		}
		list, _ := res[0].([]any)
		d, ok := deadFromReply(list)
		if !ok || len(res) != 3 {
			return dead, unavailable("pull sweep", errUnexpectedReply)
		}
		dead = append(dead, d...)
		last := toString(res[1])
		if toInt64(res[2]) < page || last == "" {
			break
		}
		start = nextID(last)
	}
	return dead, nil
}

// nextID is the stream entry id right after id ("<ms>-<seq>").
func nextID(id string) string {
	ms, seq, _ := strings.Cut(id, "-")
	n, err := strconv.ParseUint(seq, 10, 64)
	if err != nil {
		return id
	}
	return ms + "-" + strconv.FormatUint(n+1, 10)
}

// deadFromReply reads the scripts' list of dead-lettered {event id,
// attempts}.
func deadFromReply(v []any) (dead []PullOutcome, ok bool) {
	for _, x := range v {
		e, ok := x.([]any)
		if !ok || len(e) != 2 {
			return nil, false
		}
		dead = append(dead, PullOutcome{EventID: toString(e[0]), Attempt: int(toInt64(e[1]))})
	}
	return dead, true
}

// PullDeadError is the last error of a dead-lettered pull event (%d: its
// hand-outs).
const PullDeadError = "not acknowledged after %d hand-outs (visibility timeout passed each time)"

// PullResumeDeadError is the last error of a pull event dead-lettered when
// a reconnecting stream would have had it sent again past max attempts.
const PullResumeDeadError = "not acknowledged after %d hand-outs (the last sent again when its stream reconnected)"

func sessionKey(tenant, dest, session string) string {
	return tenantPrefix(tenant) + "pull:" + dest + ":" + session
}

// Pull hands out up to p.Max events of a pull destination: events whose
// hand-out expired (handed out again, attempt n+1, or dead-lettered once
// p.MaxAttempts hand-outs went unacknowledged), then new ones. It does not
// wait; it returns no hand-outs when none is available. It also returns the
// events it dead-lettered, each with its hand-outs. Errors wrap
// switchboard.ErrUnavailable.
func (s *Store) Pull(ctx context.Context, p *Pull) ([]Handout, []PullOutcome, error) {
	if err := p.check(); err != nil {
		return nil, nil, err
	}
	unacked := p.Unacked
	if unacked <= 0 {
		unacked = p.Max
	}
	keys := []string{streamKey(p.Tenant, p.Destination), dlqKey(p.Tenant), countsKey(p.Tenant),
		sessionKey(p.Tenant, p.Destination, p.Session)}
	args := []any{max(p.Visibility.Milliseconds(), 1), p.Max, p.MaxAttempts, p.Destination,
		millis(p.now()), p.Session, p.Seq, unacked, PullDeadError}
	for try := 0; ; try++ {
		res, err := pullScript.Run(ctx, s.rdb, keys, args...).Slice()
		if err != nil {
			return nil, nil, unavailable("pull", err)
		}
		if len(res) == 1 && toString(res[0]) == "nogroup" {
			if try > 0 {
				return nil, nil, nil
			}
			if err := s.EnsureGroups(ctx, p.Tenant, []string{p.Destination}); err != nil {
				return nil, nil, err
			}
			continue
		}
		return p.handouts(res)
	}
}

// PullResume hands out again, at once, what the SSE session of
// lastReceipt handed out after it and is neither acknowledged nor handed out
// since, logging it in the session p.Session (from p.Seq on). A receipt
// without a session, or of a session that expired, resumes nothing. Errors
// wrap switchboard.ErrUnavailable.
func (s *Store) PullResume(ctx context.Context, p *Pull, lastReceipt string) ([]Handout, []PullOutcome, error) {
	if err := p.check(); err != nil {
		return nil, nil, err
	}
	r, ok := ParseReceipt(lastReceipt)
	if !ok || r.Session == "" || p.Session == "" {
		return nil, nil, nil
	}
	keys := []string{streamKey(p.Tenant, p.Destination), dlqKey(p.Tenant), countsKey(p.Tenant),
		sessionKey(p.Tenant, p.Destination, r.Session), sessionKey(p.Tenant, p.Destination, p.Session)}
	res, err := pullResumeScript.Run(ctx, s.rdb, keys, r.Seq, p.MaxAttempts, p.Destination,
		millis(p.now()), p.Seq, max(p.Visibility.Milliseconds(), 1), PullResumeDeadError).Slice()
	if err != nil {
		return nil, nil, unavailable("pull resume", err)
	}
	return p.handouts(res)
}

// PullAck acknowledges hand-outs of a pull destination by receipt: their
// events are removed. It returns the receipts that acknowledged nothing:
// malformed, already acknowledged, handed out again since, or
// dead-lettered. Errors wrap switchboard.ErrUnavailable.
func (s *Store) PullAck(ctx context.Context, tenant, dest string, receipts []string) (acked []PullOutcome, invalid []string, err error) {
	args := make([]any, 0, 2*len(receipts))
	valid := make([]string, 0, len(receipts))
	for _, rc := range receipts {
		r, ok := ParseReceipt(rc)
		if !ok {
			invalid = append(invalid, rc)
			continue
		}
		valid = append(valid, rc)
		args = append(args, r.ID, strconv.Itoa(r.Count))
	}
	if len(valid) == 0 {
		return nil, invalid, nil
	}
	res, err := pullAckScript.Run(ctx, s.rdb, []string{streamKey(tenant, dest)}, args...).Slice()
	if err != nil && !errors.Is(err, redis.Nil) {
		return nil, nil, unavailable("pull ack", err)
	}
	done := make(map[int64]bool, len(res))
	for _, v := range res {
		e, ok := v.([]any)
		if !ok || len(e) != 3 {
			return nil, nil, unavailable("pull ack", errUnexpectedReply)
		}
		done[toInt64(e[0])] = true
		acked = append(acked, PullOutcome{EventID: toString(e[1]), Attempt: int(toInt64(e[2]))})
	}
	for i, rc := range valid {
		if !done[int64(i+1)] {
			invalid = append(invalid, rc)
		}
	}
	return acked, invalid, nil
}

func (p *Pull) check() error {
	if !validTenant(p.Tenant) || p.Destination == "" || p.Max < 1 || p.MaxAttempts < 1 || p.Visibility <= 0 {
		return fmt.Errorf("queue pull: tenant, destination, max, max attempts and visibility are required")
	}
	if p.Session != "" && !sessionPattern.MatchString(p.Session) {
		return fmt.Errorf("queue pull: session must be 1-32 lower-case letters and digits")
	}
	return nil
}

func (p *Pull) now() time.Time {
	if p.Now.IsZero() {
		return time.Now()
	}
	return p.Now
}

// handouts parses a pull script's reply.
func (p *Pull) handouts(res []any) ([]Handout, []PullOutcome, error) {
	if len(res) == 0 {
		return nil, nil, unavailable("pull", errUnexpectedReply)
	}
	last, _ := res[len(res)-1].([]any)
	dead, ok := deadFromReply(last)
	if !ok {
		return nil, nil, unavailable("pull", errUnexpectedReply)
	}
	out := make([]Handout, 0, len(res)-1)
	for i, v := range res[:len(res)-1] {
		e, ok := v.([]any)
		if !ok || len(e) != 3 {
			return out, dead, unavailable("pull", errUnexpectedReply)
		}
		j, err := jobFromReply(p.Tenant, p.Destination, []any{e[0], e[1]})
		if err != nil {
			return out, dead, unavailable("pull", err)
		}
		n := int(toInt64(e[2]))
		h := Handout{Job: j, Attempt: j.Attempts + n}
		r := Receipt{ID: j.ID, Count: n}
		if p.Session != "" {
			h.Seq = p.Seq + int64(i)
			r.Session, r.Seq = p.Session, h.Seq
		}
		h.Receipt = r.String()
		out = append(out, h)
	}
	return out, dead, nil
}

// Receipt identifies one hand-out of a pulled event: the stream entry, the
// entry's hand-out count at the time, and for an SSE stream its session
// and sequence number. Its string form is opaque to apps.
type Receipt struct {
	ID      string
	Count   int
	Session string
	Seq     int64
}

// String is the receipt as handed out: "<id>.<count>" or
// "<id>.<count>.<session>.<seq>".
func (r Receipt) String() string {
	s := r.ID + "." + strconv.Itoa(r.Count)
	if r.Session != "" {
		s += "." + r.Session + "." + strconv.FormatInt(r.Seq, 10)
	}
	return s
}

var sessionPattern = regexp.MustCompile(`^[a-z0-9]{1,32}$`)

// ParseReceipt parses a receipt's string form; ok is false if it is not
// one.
func ParseReceipt(s string) (r Receipt, ok bool) {
	parts := strings.Split(s, ".")
	if len(parts) != 2 && len(parts) != 4 {
		return r, false
	}
	if !validStreamID(parts[0]) {
		return r, false
	}
	n, err := strconv.Atoi(parts[1])
	if err != nil || n < 1 {
		return r, false
	}
	r.ID, r.Count = parts[0], n
	if len(parts) == 4 {
		seq, err := strconv.ParseInt(parts[3], 10, 64)
		if err != nil || seq < 0 || !sessionPattern.MatchString(parts[2]) {
			return Receipt{}, false
		}
		r.Session, r.Seq = parts[2], seq
	}
	return r, true
}

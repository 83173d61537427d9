package queue

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Multipart messages: a carrier that delivers a long inbound message in
// parts (Vonage SMS) calls once per part. The parts wait here until all of
// them have come, or until their window has passed; the gateway then
// stores one event made of them (gateway/multipart.go).
//
//	sb:{t}:mp:<hash>   hash per message reference (16 base64url characters of
//	                   the SHA-256 of it): n the number of parts; p<n> the
//	                   event of waiting part n and m<n> its carrier message id;
//	                   done the parts already made into an event (" n:id n:id ")
//	                   of the message under the reference now; seen every part
//	                   stored under it (" n:id "), kept for the dedup TTL so that
//	                   a carrier's retry of a part is a duplicate, even after the
//	                   sender reused the reference; lease ("<end unix ms> <token>")
//	                   while an instance stores the waiting parts as an event
//	sb:{t}:mp          sorted set of those hashes that hold waiting parts,
//	                   scored by when they are due
//
// A part is stored (and the carrier answered) before the message is whole,
// so no part is lost when the rest never comes: it is delivered when due.
// A part is the same part again only with the same number and carrier
// message id: the carrier's reference is a small number that senders reuse,
// so a part of another message may come under it.
//
// Storing the waiting parts as an event takes a lease first (the callback
// that completes the message takes it in AddPart, the sweeper in
// ClaimParts), so that two instances, or a callback and the sweeper, never
// make two different events of one message. A part that comes during the
// lease waits; FinishParts ends the lease and leaves such parts due.

func partsIndex(tenant string) string { return tenantPrefix(tenant) + "mp" }

func partsKey(tenant, member string) string { return partsIndex(tenant) + ":" + member }

// PartsMember names the parts of the messages with the carrier's reference
// ref: it is the member of the tenant's index and the end of its key.
func PartsMember(ref string) string {
	sum := sha256.Sum256([]byte(ref))
	return base64.RawURLEncoding.EncodeToString(sum[:12])
}

// ErrOtherMessage is AddPart's answer when the reference's waiting parts
// belong to another message (the sender reused the reference): store those
// first (ClaimParts), then add the part again.
var ErrOtherMessage = errors.New("the waiting parts under this reference are another message's")

// Parts is what is stored of one message's parts.
type Parts struct {
	Member string
	Total  int
	// Events are the waiting parts' events, IDs their carrier message ids,
	// by part number.
	Events map[int][]byte
	IDs    map[int]string
	// Done are the part numbers already made into an event, with their
	// message ids.
	Done map[int]string
	// Lease is the token of the lease AddPart or ClaimParts took on them.
	Lease string
}

// Numbers are the numbers of the waiting parts, in order.
func (p *Parts) Numbers() []int {
	ns := make([]int, 0, len(p.Events))
	for n := range p.Events {
		ns = append(ns, n)
	}
	slices.Sort(ns)
	return ns
}

// Complete reports whether every part has come: waiting now or made into
// an event before.
func (p *Parts) Complete() bool {
	return p.Total > 0 && len(p.Events)+len(p.Done) >= p.Total
}

// luaParts: helpers of the scripts below. counts gives a message hash's
// waiting and done parts; now_ms is Redis's clock (instances' clocks may
// differ; leases compare against one); lease_end reads the lease field,
// "<end unix ms> <token>".
const luaParts = `
local function counts(h)
  local waiting = 0
  for _, f in ipairs(redis.call('HKEYS', h)) do
    if string.sub(f, 1, 1) == 'm' then waiting = waiting + 1 end
  end
  local done = 0
  for _ in string.gmatch(redis.call('HGET', h, 'done') or '', '%d+:') do done = done + 1 end
  return waiting, done
end
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function lease_end(h)
  local l = redis.call('HGET', h, 'lease')
  if not l then return 0 end
  return tonumber(string.match(l, '^(%d+)')) or 0
end
`

// addPartScript stores one part.
//
// KEYS[1] the message's hash, KEYS[2] the tenant's index.
// ARGV[1] part number, ARGV[2] its event, ARGV[3] the number of parts,
// ARGV[4] due (unix ms), ARGV[5] the member, ARGV[6] the hash's TTL (ms),
// ARGV[7] the part's carrier message id, ARGV[8] the lease's length (ms)
// and ARGV[9] its token, should the message now be whole.
//
// A part is the same part again when its number and message id are in
// seen, which a reused reference does not reset (unlike done, which
// counts towards the message under the reference now).
//
// Returns {'other'} when the waiting parts are another message's (nothing
// stored); else {dup, whole, fields of the hash when whole...}: dup is 1
// for a part stored or made into an event before (a carrier's retry);
// whole is 1 when every part has come and the caller now holds the lease
// (the message is then due when the lease ends, should the caller fail).
var addPartScript = redis.NewScript(luaParts + `
local h, n, id = KEYS[1], ARGV[1], ARGV[7]
local part = ' ' .. n .. ':' .. id .. ' '
local seen = redis.call('HGET', h, 'seen') or ' '
local done = redis.call('HGET', h, 'done') or ' '
local total = redis.call('HGET', h, 'n')
local dup = 0
if string.find(seen, part, 1, true) then
  dup = 1
else
  local waiting = counts(h)
  if redis.call('HEXISTS', h, 'm' .. n) == 1 or (waiting > 0 and total ~= ARGV[3]) then
    return {'other'}
  end
  if (total and total ~= ARGV[3]) or string.find(done, ' ' .. n .. ':', 1, true) then
    redis.call('HDEL', h, 'done') -- the message delivered before was another one
  end
  redis.call('HSET', h, 'p' .. n, ARGV[2], 'm' .. n, id, 'n', ARGV[3], 'seen', seen .. n .. ':' .. id .. ' ')
  if redis.call('PTTL', h) < tonumber(ARGV[6]) then redis.call('PEXPIRE', h, ARGV[6]) end
  redis.call('ZADD', KEYS[2], 'NX', ARGV[4], ARGV[5])
  if redis.call('PTTL', KEYS[2]) < tonumber(ARGV[6]) then redis.call('PEXPIRE', KEYS[2], ARGV[6]) end
end
local waiting, ndone = counts(h)
local now = now_ms()
if waiting == 0 or waiting + ndone < tonumber(ARGV[3]) or lease_end(h) > now then
  return {dup, 0}
end
local until_ms = now + tonumber(ARGV[8])
redis.call('HSET', h, 'lease', until_ms .. ' ' .. ARGV[9])
redis.call('ZADD', KEYS[2], until_ms, ARGV[5])
local r = redis.call('HGETALL', h)
table.insert(r, 1, 1)
table.insert(r, 1, dup)
return r
`)

// claimPartsScript takes the lease on a message's waiting parts.
//
// KEYS[1] the message's hash, KEYS[2] the index. ARGV[1] the lease's
// length (ms), ARGV[2] its token, ARGV[3] the member. Returns the hash's
// fields, or {'leased'} while another holds it. With parts waiting, the
// lease is taken and the message is due when it ends, should the holder
// fail; with none, nothing changes.
var claimPartsScript = redis.NewScript(luaParts + `
local now = now_ms()
if lease_end(KEYS[1]) > now then return {'leased'} end
if counts(KEYS[1]) > 0 then
  local until_ms = now + tonumber(ARGV[1])
  redis.call('HSET', KEYS[1], 'lease', until_ms .. ' ' .. ARGV[2])
  redis.call('ZADD', KEYS[2], until_ms, ARGV[3])
end
return redis.call('HGETALL', KEYS[1])
`)

// finishPartsScript records that parts became an event and ends the lease
// if the caller still holds it (a holder that took too long must not end
// the next one's): their events go, their numbers and ids join done, and
// the message leaves the index unless parts came meanwhile: they are due
// now if they finish the message, else at the later time.
//
// KEYS[1] the message's hash, KEYS[2] the index.
// ARGV[1] the parts made into an event ("n:id n:id"), ARGV[2] TTL (ms) of
// what is left, ARGV[3] the member, ARGV[4] the later due time (unix ms),
// ARGV[5] the caller's lease token.
var finishPartsScript = redis.NewScript(luaParts + `
local h = KEYS[1]
if redis.call('EXISTS', h) == 0 then
  redis.call('ZREM', KEYS[2], ARGV[3])
  return 0
end
local done = redis.call('HGET', h, 'done') or ' '
for n, id in string.gmatch(ARGV[1], '(%d+):(%S+)') do
  if redis.call('HGET', h, 'm' .. n) == id then redis.call('HDEL', h, 'p' .. n, 'm' .. n) end
  if not string.find(done, ' ' .. n .. ':' .. id .. ' ', 1, true) then done = done .. n .. ':' .. id .. ' ' end
end
redis.call('HSET', h, 'done', done)
local lease = redis.call('HGET', h, 'lease')
local mine = lease and string.match(lease, ' (%S+)$') == ARGV[5]
if mine then redis.call('HDEL', h, 'lease') end
if redis.call('PTTL', h) < tonumber(ARGV[2]) then redis.call('PEXPIRE', h, ARGV[2]) end
local waiting, ndone = counts(h)
if waiting == 0 then
  redis.call('ZREM', KEYS[2], ARGV[3])
  return 0
end
if not lease or mine then
  local due = ARGV[4]
  if waiting + ndone >= tonumber(redis.call('HGET', h, 'n') or '0') then due = now_ms() end
  redis.call('ZADD', KEYS[2], due, ARGV[3])
end
return 1
`)

// AddPart stores part number of total of a message under the reference
// named member, with its carrier message id and event. The parts are due
// at due if the others do not come; the hash lives at least keep. It
// returns dup for a part that came before (a carrier's retry), and the
// waiting parts when the message is now whole: the caller then holds the
// lease until lease and must call FinishParts once it stored them (if it
// fails, they are due again when the lease ends). ErrOtherMessage means
// the waiting parts are another message's.
func (s *Store) AddPart(ctx context.Context, tenant, member string, number, total int, id string, event []byte, due time.Time, lease, keep time.Duration) (whole *Parts, dup bool, err error) {
	token := leaseToken()
	v, err := addPartScript.Run(ctx, s.rdb, []string{partsKey(tenant, member), partsIndex(tenant)},
		number, event, total, due.UnixMilli(), member, max(keep.Milliseconds(), 1), id, max(lease.Milliseconds(), 1), token).Slice()
	if err != nil {
		return nil, false, unavailable("store a message part", err)
	}
	if len(v) == 1 && v[0] == "other" {
		return nil, false, ErrOtherMessage
	}
	if len(v) < 2 {
		return nil, false, fmt.Errorf("store a message part: unexpected answer %v", v)
	}
	d, _ := v[0].(int64)
	if w, _ := v[1].(int64); w != 1 {
		return nil, d == 1, nil
	}
	p, err := readParts(member, v[2:])
	if p != nil {
		p.Lease = token
	}
	return p, d == 1, err
}

// leaseToken names one holder of a lease.
func leaseToken() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// ClaimParts takes the lease on the waiting parts of the reference named
// member for lease and returns them (none when nothing waits). ok is false
// while another instance holds the lease.
func (s *Store) ClaimParts(ctx context.Context, tenant, member string, lease time.Duration) (p *Parts, ok bool, err error) {
	token := leaseToken()
	v, err := claimPartsScript.Run(ctx, s.rdb, []string{partsKey(tenant, member), partsIndex(tenant)},
		max(lease.Milliseconds(), 1), token, member).Slice()
	if err != nil {
		return nil, false, unavailable("claim message parts", err)
	}
	if len(v) == 1 && v[0] == "leased" {
		return nil, false, nil
	}
	if p, err = readParts(member, v); err != nil {
		return nil, false, err
	}
	p.Lease = token
	return p, true, nil
}

func readParts(member string, flat []any) (*Parts, error) {
	p := &Parts{Member: member, Events: map[int][]byte{}, IDs: map[int]string{}, Done: map[int]string{}}
	for i := 0; i+1 < len(flat); i += 2 {
		k, _ := flat[i].(string)
		v, _ := flat[i+1].(string)
		switch {
		case k == "n":
			p.Total, _ = strconv.Atoi(v)
		case k == "lease", k == "seen":
		case k == "done":
			for _, f := range strings.Fields(v) {
				ns, id, _ := strings.Cut(f, ":")
				if n, err := strconv.Atoi(ns); err == nil {
					p.Done[n] = id
				}
			}
		case strings.HasPrefix(k, "p"), strings.HasPrefix(k, "m"):
			n, err := strconv.Atoi(k[1:])
			if err != nil {
				return nil, fmt.Errorf("message parts %s: bad field %q", member, k)
			}
			if k[0] == 'p' {
				p.Events[n] = []byte(v)
			} else {
				p.IDs[n] = v
			}
		}
	}
	return p, nil
}

// FinishParts records that the waiting parts of p were made into an event
// and ends p's lease (if it is still p's): they are forgotten, their
// numbers and ids kept for keep (a retry of one is a duplicate). Parts
// that came since are due now if they finish the message, else at later.
func (s *Store) FinishParts(ctx context.Context, tenant string, p *Parts, keep time.Duration, later time.Time) error {
	ns := make([]string, 0, len(p.Events))
	for _, n := range p.Numbers() {
		ns = append(ns, strconv.Itoa(n)+":"+p.IDs[n])
	}
	err := finishPartsScript.Run(ctx, s.rdb, []string{partsKey(tenant, p.Member), partsIndex(tenant)},
		strings.Join(ns, " "), max(keep.Milliseconds(), 1), p.Member, later.UnixMilli(), p.Lease).Err()
	if err != nil {
		return unavailable("finish message parts", err)
	}
	return nil
}

// DueParts returns up to n references of the tenant whose waiting parts
// are due at now.
func (s *Store) DueParts(ctx context.Context, tenant string, now time.Time, n int) ([]string, error) {
	v, err := s.rdb.ZRangeArgs(ctx, redis.ZRangeArgs{Key: partsIndex(tenant), Start: "-inf",
		Stop: strconv.FormatInt(now.UnixMilli(), 10), ByScore: true, Count: int64(n)}).Result()
	if err != nil {
		return nil, unavailable("read due message parts", err)
	}
	return v, nil
}

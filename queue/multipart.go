package queue

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
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
//	sb:{t}:mp:<hash>   hash per message (16 base64url characters of the SHA-256
//	                   of the carrier's reference): p<n> the event of part n,
//	                   n the number of parts, done the part numbers already
//	                   made into an event (" 1 2 3 "), kept for the dedup TTL
//	                   so that a carrier's retry of a part is a duplicate
//	sb:{t}:mp          sorted set of those hashes that hold parts, scored by
//	                   when they are due: the first part's arrival + the window
//
// A part is stored (and the carrier answered) before the message is whole,
// so no part is lost when the rest never comes: it is delivered when due.

func partsIndex(tenant string) string { return tenantPrefix(tenant) + "mp" }

func partsKey(tenant, member string) string { return partsIndex(tenant) + ":" + member }

// PartsMember names the parts of the message with the carrier's reference
// ref: it is the member of the tenant's index and the end of its key.
func PartsMember(ref string) string {
	sum := sha256.Sum256([]byte(ref))
	return base64.RawURLEncoding.EncodeToString(sum[:12])
}

// Parts is what is stored of one message's parts.
type Parts struct {
	Member string
	Total  int
	// Events are the stored parts' events by part number.
	Events map[int][]byte
	// Done are the part numbers already made into an event.
	Done []int
}

// Numbers are the numbers of the stored parts, in order.
func (p *Parts) Numbers() []int {
	ns := make([]int, 0, len(p.Events))
	for n := range p.Events {
		ns = append(ns, n)
	}
	slices.Sort(ns)
	return ns
}

// Complete reports whether every part has come: stored now or made into
// an event before.
func (p *Parts) Complete() bool {
	return p.Total > 0 && len(p.Events)+len(p.Done) >= p.Total
}

// addPartScript stores one part.
//
// KEYS[1] the message's hash, KEYS[2] the tenant's index.
// ARGV[1] part number, ARGV[2] its event, ARGV[3] the number of parts,
// ARGV[4] due (unix ms), ARGV[5] the member, ARGV[6] the hash's TTL (ms).
//
// Returns {dup, fields of the hash...}: dup is 1 when the part was stored
// or made into an event before (a carrier's retry).
var addPartScript = redis.NewScript(`
local f = 'p' .. ARGV[1]
local done = redis.call('HGET', KEYS[1], 'done') or ' '
local dup = 0
if string.find(done, ' ' .. ARGV[1] .. ' ', 1, true) or redis.call('HEXISTS', KEYS[1], f) == 1 then
  dup = 1
else
  redis.call('HSET', KEYS[1], f, ARGV[2], 'n', ARGV[3])
  if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[6]) then redis.call('PEXPIRE', KEYS[1], ARGV[6]) end
  redis.call('ZADD', KEYS[2], 'NX', ARGV[4], ARGV[5])
end
local r = redis.call('HGETALL', KEYS[1])
table.insert(r, 1, dup)
return r
`)

// finishPartsScript records that parts became an event: their events go,
// their numbers join done, and the message leaves the index unless parts
// came meanwhile (they wait for the next due time).
//
// KEYS[1] the message's hash, KEYS[2] the index.
// ARGV[1] the part numbers made into an event (space-separated), ARGV[2]
// TTL (ms) of what is left, ARGV[3] the member, ARGV[4] the next due time
// (unix ms) should parts be left.
var finishPartsScript = redis.NewScript(`
local done = redis.call('HGET', KEYS[1], 'done') or ' '
for n in string.gmatch(ARGV[1], '%d+') do
  redis.call('HDEL', KEYS[1], 'p' .. n)
  if not string.find(done, ' ' .. n .. ' ', 1, true) then done = done .. n .. ' ' end
end
redis.call('HSET', KEYS[1], 'done', done)
if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[2]) then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
for _, f in ipairs(redis.call('HKEYS', KEYS[1])) do
  if string.sub(f, 1, 1) == 'p' then
    redis.call('ZADD', KEYS[2], ARGV[4], ARGV[3])
    return 1
  end
end
redis.call('ZREM', KEYS[2], ARGV[3])
return 0
`)

// AddPart stores part number of total of the message named member, with
// its event. The message is due at due if its other parts do not come;
// the hash lives at least keep. It returns what is stored of the message
// now and whether this part had come before (a carrier's retry).
func (s *Store) AddPart(ctx context.Context, tenant, member string, number, total int, event []byte, due time.Time, keep time.Duration) (*Parts, bool, error) {
	v, err := addPartScript.Run(ctx, s.rdb, []string{partsKey(tenant, member), partsIndex(tenant)},
		number, event, total, due.UnixMilli(), member, max(keep.Milliseconds(), 1)).Slice()
	if err != nil {
		return nil, false, unavailable("store a message part", err)
	}
	if len(v) == 0 {
		return nil, false, fmt.Errorf("store a message part: empty answer")
	}
	dup, _ := v[0].(int64)
	p, err := readParts(member, v[1:])
	return p, dup == 1, err
}

// ReadParts returns what is stored of the message named member; no events
// and no error when nothing is.
func (s *Store) ReadParts(ctx context.Context, tenant, member string) (*Parts, error) {
	v, err := s.rdb.HGetAll(ctx, partsKey(tenant, member)).Result()
	if err != nil {
		return nil, unavailable("read message parts", err)
	}
	flat := make([]any, 0, 2*len(v))
	for k, x := range v {
		flat = append(flat, k, x)
	}
	return readParts(member, flat)
}

func readParts(member string, flat []any) (*Parts, error) {
	p := &Parts{Member: member, Events: map[int][]byte{}}
	for i := 0; i+1 < len(flat); i += 2 {
		k, _ := flat[i].(string)
		v, _ := flat[i+1].(string)
		switch {
		case k == "n":
			p.Total, _ = strconv.Atoi(v)
		case k == "done":
			for _, f := range strings.Fields(v) {
				if n, err := strconv.Atoi(f); err == nil {
					p.Done = append(p.Done, n)
				}
			}
		case strings.HasPrefix(k, "p"):
			n, err := strconv.Atoi(k[1:])
			if err != nil {
				return nil, fmt.Errorf("message parts %s: bad field %q", member, k)
			}
			p.Events[n] = []byte(v)
		}
	}
	slices.Sort(p.Done)
	return p, nil
}

// FinishParts records that the parts numbered numbers of the message named
// member were made into an event: they are forgotten, their numbers kept
// for keep (a retry of one of them is a duplicate). Parts that came since
// they were read stay, due at next.
func (s *Store) FinishParts(ctx context.Context, tenant, member string, numbers []int, keep time.Duration, next time.Time) error {
	ns := make([]string, len(numbers))
	for i, n := range numbers {
		ns[i] = strconv.Itoa(n)
	}
	err := finishPartsScript.Run(ctx, s.rdb, []string{partsKey(tenant, member), partsIndex(tenant)},
		strings.Join(ns, " "), max(keep.Milliseconds(), 1), member, next.UnixMilli()).Err()
	if err != nil {
		return unavailable("finish message parts", err)
	}
	return nil
}

// DueParts returns up to n messages of the tenant whose parts are due at
// now: their other parts did not come within the window.
func (s *Store) DueParts(ctx context.Context, tenant string, now time.Time, n int) ([]string, error) {
	v, err := s.rdb.ZRangeArgs(ctx, redis.ZRangeArgs{Key: partsIndex(tenant), Start: "-inf",
		Stop: strconv.FormatInt(now.UnixMilli(), 10), ByScore: true, Count: int64(n)}).Result()
	if err != nil {
		return nil, unavailable("read due message parts", err)
	}
	return v, nil
}

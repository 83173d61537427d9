package queue

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// Rate is a limit kept in Redis: PerSecond sustained, up to Burst at once.
// PerSecond <= 0 means no limit; Burst < 1 counts as 1.
type Rate struct {
	PerSecond float64
	Burst     int
}

// RateRequest asks for N sends to destination Dest, limited by Rate and by
// the tenant's rate.
type RateRequest struct {
	Dest string
	Rate Rate
	N    int
}

// RateGrant answers one RateRequest.
type RateGrant struct {
	// Delays holds, per granted send, how long to wait before sending it
	// (0: now). It has fewer than N entries when the rest would have had to
	// wait longer than maxWait: those were not granted and spent nothing.
	Delays []time.Duration
	// Next is how long until the destination's next send would be
	// allowed, counting both its own and the tenant's limit (0: now).
	Next time.Duration
}

// ReserveRate reserves sends against the limits of a tenant's
// destinations and the tenant as a whole (tenantRate; PerSecond 0 means
// none), kept in Redis so that they hold in total across every instance
// sharing it. It is GCRA (the generic cell rate algorithm): per limit one
// key holds the theoretical arrival time of the next send, so a limit is a
// single string that expires once its bucket is full again.
//
// Sends are granted round-robin over the requests, so the tenant's limit is
// shared fairly; each is scheduled at the earliest time both its
// destination's and the tenant's limit allow, and none further than maxWait
// ahead. One call is one atomic script using Redis's clock, so instances
// with skewed clocks still agree. tenantNext is how long until the tenant's
// next send would be allowed. Errors wrap switchboard.ErrUnavailable.
func (s *Store) ReserveRate(ctx context.Context, tenant string, tenantRate Rate, reqs []RateRequest, maxWait time.Duration) (grants []RateGrant, tenantNext time.Duration, err error) {
	return s.reserveRate(ctx, tenant, tenantRate, reqs, maxWait, time.Time{})
}

// reserveRate is ReserveRate at the given time; zero means Redis's clock.
func (s *Store) reserveRate(ctx context.Context, tenant string, tenantRate Rate, reqs []RateRequest, maxWait time.Duration, now time.Time) ([]RateGrant, time.Duration, error) {
	if !validTenant(tenant) {
		return nil, 0, fmt.Errorf("queue reserve rate: invalid tenant %q", tenant)
	}
	if len(reqs) == 0 {
		return nil, 0, nil
	}
	keys := make([]string, 0, 1+len(reqs))
	keys = append(keys, tenantRateKey(tenant))
	args := make([]any, 0, 4+3*len(reqs))
	nowArg := ""
	if !now.IsZero() {
		nowArg = strconv.FormatFloat(float64(now.UnixMicro())/1000, 'f', 3, 64)
	}
	ti, tb := interval(tenantRate)
	args = append(args, nowArg, ti, tb, strconv.FormatInt(maxWait.Milliseconds(), 10))
	for _, r := range reqs {
		keys = append(keys, destRateKey(tenant, r.Dest))
		di, db := interval(r.Rate)
		args = append(args, di, db, strconv.Itoa(max(r.N, 0)))
	}
	res, err := reserveRateScript.Run(ctx, s.rdb, keys, args...).Slice()
	if err != nil {
		return nil, 0, unavailable("reserve rate", err)
	}
	if len(res) != 1+2*len(reqs) {
		return nil, 0, fmt.Errorf("queue reserve rate: %w", errUnexpectedReply)
	}
	ms := func(v any) time.Duration {
		n, _ := v.(int64)
		return time.Duration(n) * time.Millisecond
	}
	grants := make([]RateGrant, len(reqs))
	for i := range reqs {
		g := &grants[i]
		g.Next = ms(res[1+2*i])
		ds, _ := res[2+2*i].([]any)
		for _, d := range ds {
			g.Delays = append(g.Delays, ms(d))
		}
	}
	return grants, ms(res[0]), nil
}

// interval returns a rate's emission interval in ms ("0": no limit) and
// its burst, as script arguments.
func interval(r Rate) (string, string) {
	if r.PerSecond <= 0 {
		return "0", "1"
	}
	return strconv.FormatFloat(1000/r.PerSecond, 'f', -1, 64), strconv.Itoa(max(r.Burst, 1))
}

func tenantRateKey(tenant string) string { return tenantPrefix(tenant) + "rate" }

func destRateKey(tenant, dest string) string { return tenantPrefix(tenant) + "rate:" + dest }

// reserveRateScript is GCRA over a tenant limit and several destination
// limits. A limit with emission interval T (ms per send) and burst b lets a
// send go at time s when s >= TAT - (b-1)·T, and then sets
// TAT = max(TAT, s) + T. A missing key is a full bucket (TAT = now).
//
// KEYS[1] the tenant's key; KEYS[1+i] destination i's key.
// ARGV[1] now in ms (empty: Redis TIME), ARGV[2] tenant T ('0' = no limit),
// ARGV[3] tenant burst, ARGV[4] max wait ms; then per destination i:
// ARGV[2+3i] T ('0' = no limit), ARGV[3+3i] burst, ARGV[4+3i] sends wanted.
//
// Returns {tenant next ms, dest 1 next ms, {dest 1 delays ms…}, …}.
var reserveRateScript = redis.NewScript(`
local now
if ARGV[1] == '' then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
else
  now = tonumber(ARGV[1])
end
local maxWait = tonumber(ARGV[4])
local function load(key, T)
  if T <= 0 then return nil end
  local v = redis.call('GET', key)
  if v and tonumber(v) > now then return tonumber(v) end
  return now
end
local tT = tonumber(ARGV[2])
local tTau = (tonumber(ARGV[3]) - 1) * tT
local tTat = load(KEYS[1], tT)
local tChanged = false
local nd = #KEYS - 1
local dT, dTau, dTat, want, delays, open, changed = {}, {}, {}, {}, {}, {}, {}
local rounds = 0
for i = 1, nd do
  local b = 2 + 3 * i
  dT[i] = tonumber(ARGV[b])
  dTau[i] = (tonumber(ARGV[b + 1]) - 1) * dT[i]
  want[i] = tonumber(ARGV[b + 2])
  dTat[i] = load(KEYS[1 + i], dT[i])
  delays[i] = {}
  open[i] = true
  changed[i] = false
  if want[i] > rounds then rounds = want[i] end
end
local function earliest(i)
  local s = now
  if dTat[i] and dTat[i] - dTau[i] > s then s = dTat[i] - dTau[i] end
  if tTat and tTat - tTau > s then s = tTat - tTau end
  return s
end
for r = 1, rounds do
  for i = 1, nd do
    if open[i] and r <= want[i] then
      local s = earliest(i)
      if s - now > maxWait then
        open[i] = false
      else
        if dTat[i] then
          dTat[i] = math.max(dTat[i], s) + dT[i]
          changed[i] = true
        end
        if tTat then
          tTat = math.max(tTat, s) + tT
          tChanged = true
        end
        delays[i][#delays[i] + 1] = math.ceil(s - now)
      end
    end
  end
end
local function save(key, tat)
  redis.call('SET', key, string.format('%.3f', tat), 'PX', math.ceil(tat - now) + 1)
end
if tChanged then save(KEYS[1], tTat) end
local tNext = 0
if tTat and tTat - tTau > now then tNext = math.ceil(tTat - tTau - now) end
local out = {tNext}
for i = 1, nd do
  if changed[i] then save(KEYS[1 + i], dTat[i]) end
  out[#out + 1] = math.ceil(earliest(i) - now)
  out[#out + 1] = delays[i]
end
return out
`)

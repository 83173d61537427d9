package queue

import "github.com/redis/go-redis/v9"

// The Lua scripts. Each is one atomic state change of a job. They run on
// Redis 7 and on the embedded store (gopher-lua, Lua 5.1) alike, so they use
// only Lua 5.1, no cjson (it is not binary safe in the embedded store), and
// pass times as strings (Lua numbers are doubles).
//
// Scripts that move jobs between destinations (promote, dlq replay) build the
// destination stream key from a prefix argument: the destination is only
// known inside the script. The key carries the tenant's hash tag, so it is in
// the slot of the declared keys.

// luaKeepBody is prepended to every script that ends or moves a job. While
// its jobs are queued, an event's history record does not hold the body
// (the job does; see enqueueScript): keep_body copies it from the job's
// stream entry into the record, if the record is still there and lacks it,
// before the entry goes. The record's key is the stream key's tenant prefix
// ("sb:{t}:", same hash slot) + "h:e:" + the event id.
const luaKeepBody = `
local function keep_body(stream, id)
  local e = redis.call('XRANGE', stream, id, id)
  if #e == 0 then return end
  local f, ev, body = e[1][2], nil, nil
  for i = 1, #f, 2 do
    if f[i] == 'i' then ev = f[i + 1] elseif f[i] == 'b' then body = f[i + 1] end
  end
  if not ev or not body then return end
  local h = string.match(stream, '^(.-}:)') .. 'h:e:' .. ev
  if redis.call('HEXISTS', h, 't') == 1 then redis.call('HSETNX', h, 'b', body) end
end
`

// luaCommon is prepended to scripts that need its helpers.
const luaCommon = `
local function decr(h, f)
  if redis.call('HINCRBY', h, f, -1) <= 0 then redis.call('HDEL', h, f) end
end
`

// enqueueScript stores one event for several destinations and, when asked,
// records it in the tenant's history (history.go): one script call per
// event, so a callback costs Redis one script run whatever it fans out to.
//
// KEYS: the seen key (only when ARGV[1] is not empty), then the ARGV[6+n]
// destination streams, then — with a history — the event hash, the message
// index (if ARGV[7+n] is '1') and the destination indexes.
//
// ARGV[1] dedup TTL in ms, empty = no dedup
// ARGV[2] one '1' or '0' per stream: does it get the raw field
// ARGV[3] n, the number of field/value arguments that follow (the first
// four are 'i', the event id, 'b', the body)
// ARGV[4 .. 3+n] fields common to every stream
// ARGV[4+n] the raw callback, or empty
// ARGV[5+n] history retention in ms, empty = no history
// ARGV[6+n] the number of streams
// ARGV[7+n] '1' if the message index is given
// ARGV[8+n] routed destinations (space-separated)
// ARGV[9+n] those of them that want the raw callback
// ARGV[10+n] traceparent or empty
// ARGV[11+n] arrival unix ms
// ARGV[12+n] '1' to trim the destination indexes to ARGV[13+n] (unix ms;
// older entries go)
// ARGV[14+n] '1' to keep the body in the history record now
// ARGV[15+n] arrival unix ms as the destination indexes' entry id, for an
// event stored long after it arrived; empty: the time of the enqueue
//
// Returns 1 if stored, 0 if a duplicate (nothing written). The seen key is
// claimed first (SET NX, value "1": the key is the marker); should an XADD
// fail, it is released again, so a carrier's retry is stored rather than
// taken for a duplicate.
//
// The history record keeps the body only once: while the event's jobs are
// queued it holds 'q', the entry id of its job for the first destination
// in 'd', and the body stays in the jobs; the first job to end or move
// copies it into the record (keep_body). With no job (a pass-through
// attempt made already), the body is kept at once.
var enqueueScript = redis.NewScript(`
local first = 1
local id = ARGV[5]
if ARGV[1] ~= '' then
  if not redis.call('SET', KEYS[1], '1', 'NX', 'PX', ARGV[1]) then return 0 end
  first = 2
end
local n = tonumber(ARGV[3])
local streams = tonumber(ARGV[6 + n])
local plain = {'XADD', '', '*'}
for i = 1, n do plain[#plain + 1] = ARGV[3 + i] end
local raw = nil
local q = nil
for s = 1, streams do
  local args = plain
  if string.sub(ARGV[2], s, s) == '1' then
    if raw == nil then
      raw = {}
      for i = 1, #plain do raw[i] = plain[i] end
      raw[#raw + 1] = 'r'
      raw[#raw + 1] = ARGV[4 + n]
    end
    args = raw
  end
  args[2] = KEYS[first + s - 1]
  local r = redis.pcall(unpack(args))
  if type(r) == 'table' and r.err then
    if first == 2 then redis.call('DEL', KEYS[1]) end
    return r
  end
  if q == nil then q = r end
end
local ret = ARGV[5 + n]
if ret == '' then return 1 end
local k = first + streams
local h = KEYS[k]
local hs = {'HSET', h, 'd', ARGV[8 + n], 't', ARGV[11 + n]}
if ARGV[14 + n] == '1' or q == nil then
  hs[#hs + 1] = 'b'
  hs[#hs + 1] = ARGV[7]
else
  hs[#hs + 1] = 'q'
  hs[#hs + 1] = q
end
if ARGV[9 + n] ~= '' then
  hs[#hs + 1] = 'r'
  hs[#hs + 1] = ARGV[4 + n]
  hs[#hs + 1] = 'R'
  hs[#hs + 1] = ARGV[9 + n]
end
if ARGV[10 + n] ~= '' then
  hs[#hs + 1] = 'p'
  hs[#hs + 1] = ARGV[10 + n]
end
redis.call(unpack(hs))
redis.call('PEXPIRE', h, ret)
k = k + 1
if ARGV[7 + n] == '1' then
  -- a message's first event creates its index with the TTL in one call
  if not redis.call('SET', KEYS[k], id .. ' ', 'NX', 'PX', ret) then
    redis.call('APPEND', KEYS[k], id .. ' ')
    redis.call('PEXPIRE', KEYS[k], ret)
  end
  k = k + 1
end
for i = k, #KEYS do
  -- The entry's id is the time of the enqueue; for an event stored long
  -- after it arrived (a drained spool) its arrival time, unless an entry
  -- of a later time is there already: then the time of the enqueue.
  if ARGV[15 + n] == '' then
    redis.call('XADD', KEYS[i], '*', 'i', id)
  else
    local r = redis.pcall('XADD', KEYS[i], ARGV[15 + n] .. '-*', 'i', id)
    if type(r) == 'table' and r.err then redis.call('XADD', KEYS[i], '*', 'i', id) end
  end
  if ARGV[12 + n] == '1' then redis.call('XTRIM', KEYS[i], 'MINID', ARGV[13 + n]) end
  redis.call('PEXPIRE', KEYS[i], ret)
end
return 1
`)

// ackScript: KEYS[1] stream; ARGV[1] entry id.
var ackScript = redis.NewScript(luaKeepBody + `
keep_body(KEYS[1], ARGV[1])
local n = redis.call('XACK', KEYS[1], 'sb', ARGV[1])
redis.call('XDEL', KEYS[1], ARGV[1])
return n
`)

// retryScript moves a pending job to the retry set, if it is still pending.
//
// KEYS[1] stream, KEYS[2] retry set, KEYS[3] counters.
// ARGV[1] entry id, ARGV[2] due unix ms, ARGV[3] member, ARGV[4] destination.
var retryScript = redis.NewScript(luaKeepBody + `
if redis.call('XACK', KEYS[1], 'sb', ARGV[1]) == 0 then return 0 end
keep_body(KEYS[1], ARGV[1])
redis.call('XDEL', KEYS[1], ARGV[1])
if redis.call('ZADD', KEYS[2], ARGV[2], ARGV[3]) == 1 then
  redis.call('HINCRBY', KEYS[3], 'r:' .. ARGV[4], 1)
end
return 1
`)

// deadScript moves a pending job to the dead-letter stream, if it is still
// pending.
//
// KEYS[1] stream, KEYS[2] dlq, KEYS[3] counters.
// ARGV[1] entry id, ARGV[2] destination, ARGV[3..] dlq field/value pairs.
var deadScript = redis.NewScript(luaKeepBody + `
if redis.call('XACK', KEYS[1], 'sb', ARGV[1]) == 0 then return 0 end
keep_body(KEYS[1], ARGV[1])
redis.call('XDEL', KEYS[1], ARGV[1])
local args = {'XADD', KEYS[2], '*'}
for i = 3, #ARGV do args[#args + 1] = ARGV[i] end
redis.call(unpack(args))
redis.call('HINCRBY', KEYS[3], 'x:' .. ARGV[2], 1)
return 1
`)

// releaseScript puts a pending job back at the tail of its stream, new to the
// group, if it is still pending.
//
// KEYS[1] stream. ARGV[1] entry id, ARGV[2..] field/value pairs.
var releaseScript = redis.NewScript(luaKeepBody + `
if redis.call('XACK', KEYS[1], 'sb', ARGV[1]) == 0 then return 0 end
keep_body(KEYS[1], ARGV[1])
redis.call('XDEL', KEYS[1], ARGV[1])
local args = {'XADD', KEYS[1], '*'}
for i = 2, #ARGV do args[#args + 1] = ARGV[i] end
redis.call(unpack(args))
return 1
`)

// promoteScript moves due retries back to their streams.
//
// KEYS[1] retry set, KEYS[2] counters.
// ARGV[1] now unix ms, ARGV[2] limit, ARGV[3] stream key prefix.
//
// A member is a list of netstrings ("<len>:<bytes>"): a unique id, the
// destination, then the stream's field/value pairs.
//
// Returns {moved, the score (due unix ms) of the earliest retry left, or
// -1 if none}.
var promoteScript = redis.NewScript(luaCommon + `
local function decode(s)
  local out, pos = {}, 1
  while pos <= #s do
    local c = string.find(s, ':', pos, true)
    if c == nil then return nil end
    local n = tonumber(string.sub(s, pos, c - 1))
    if n == nil or c + n > #s then return nil end
    out[#out + 1] = string.sub(s, c + 1, c + n)
    pos = c + n + 1
  end
  return out
end
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', '0', ARGV[2])
for _, m in ipairs(due) do
  local p = decode(m)
  if p == nil or #p < 2 or #p % 2 ~= 0 then
    return redis.error_reply('malformed retry member in ' .. KEYS[1])
  end
  local args = {'XADD', ARGV[3] .. p[2], '*'}
  for i = 3, #p do args[#args + 1] = p[i] end
  redis.call(unpack(args))
  redis.call('ZREM', KEYS[1], m)
  decr(KEYS[2], 'r:' .. p[2])
end
local nx = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
if #nx == 0 then return {#due, -1} end
return {#due, tonumber(nx[2])}
`)

// reclaimScript claims jobs pending longer than min-idle, oldest first.
//
// KEYS: the destination streams, then as many hold hashes (ordered.go), in
// the same order. ARGV[1] consumer, ARGV[2] min idle ms, ARGV[3] count
// (over all streams), ARGV[4] now (unix ms).
//
// XPENDING + XCLAIM rather than XAUTOCLAIM: the embedded store's XAUTOCLAIM
// neither reports nor drops pending entries whose stream entry was deleted.
// Both stores' XCLAIM leave such entries out of the reply; they are XACKed
// away here (a no-op where Redis 7's XCLAIM already dropped them). A stream
// or group that is gone has nothing to reclaim.
//
// Each time a pending entry was handed out (read, or claimed before) is an
// attempt whose outcome was never recorded: the instance making it
// stopped. The entries returned count those in their attempts field ('a'),
// so that max_attempts counts them too; the stored entry is unchanged, and
// its delivery counter keeps the count for a later claim. A job an ordered
// destination held in place (it was ordered until a reload) counts the
// attempts of its hold record instead, with its last error and when its
// next attempt is due ('w'), and the record goes (the delivery counter then carries its count, less the entry's own,
// for a later claim); one it read but never attempted (pending for an
// "ord:" consumer, OrderedConsumer) counts none.
//
// Returns {key, entries, key, entries, ...} for streams with claimed jobs.
var reclaimScript = redis.NewScript(`
local out = {}
local left = tonumber(ARGV[3])
local n = #KEYS / 2
local function set(f, name, value)
  for i = 1, #f, 2 do
    if f[i] == name then
      f[i + 1] = value
      return
    end
  end
  f[#f + 1] = name
  f[#f + 1] = value
end
for k = 1, n do
  local key, holds = KEYS[k], KEYS[n + k]
  if left <= 0 then break end
  local p = redis.pcall('XPENDING', key, 'sb', 'IDLE', ARGV[2], '-', '+', left)
  if type(p) == 'table' and p.err == nil and #p > 0 then
    local ids, lost, fresh = {}, {}, {}
    for i, e in ipairs(p) do
      ids[i] = e[1]
      lost[e[1]] = tonumber(e[4]) or 1
      -- read for an ordered destination: held in place, not attempts
      if string.sub(e[2], 1, 4) == 'ord:' then lost[e[1]] = 0 end
    end
    local claimed = redis.call('XCLAIM', key, 'sb', ARGV[1], ARGV[2], unpack(ids))
    local got, live = {}, {}
    for _, e in ipairs(claimed) do
      if e and e[1] then
        got[e[1]] = true
        local f = e[2]
        local hold = redis.call('HGET', holds, e[1])
        if hold then
          local a, rest = string.match(hold, '^([^|]*)|(.*)$')
          local due, err = string.match(rest or '', '^([^|]*)|(.*)$')
          local stored = 0
          for i = 1, #f, 2 do
            if f[i] == 'a' then stored = tonumber(f[i + 1]) or 0 end
          end
          set(f, 'a', a or '0')
          if err and err ~= '' then set(f, 'e', err) end
          if due and due ~= '' and due ~= '0' then set(f, 'w', due) end
          -- A job still to wait keeps its record until it moves to the
          -- retry set (Unhold): should that fail, the next claim finds it.
          if (tonumber(due) or 0) <= tonumber(ARGV[4]) then redis.call('HDEL', holds, e[1]) end
          -- the record goes: should this claim be lost too, the next one
          -- counts the stored attempts plus this counter
          fresh[#fresh + 1] = {e[1], math.max(1, (tonumber(a) or 0) + 1 - stored)}
        elseif lost[e[1]] == 0 then
          fresh[#fresh + 1] = {e[1], 1}
        else
          local a = 0
          for i = 1, #f, 2 do
            if f[i] == 'a' then a = tonumber(f[i + 1]) or 0 end
          end
          set(f, 'a', tostring(a + lost[e[1]]))
        end
        live[#live + 1] = e
      end
    end
    for _, id in ipairs(ids) do
      if not got[id] then redis.call('XACK', key, 'sb', id) end
    end
    -- Counted afresh from here: this claim is the one hand-out (the
    -- earlier ones were ordered reads, or are in the attempts given), on
    -- top of a held job's attempts, which its stream entry lacks.
    for _, fc in ipairs(fresh) do
      redis.call('XCLAIM', key, 'sb', ARGV[1], 0, fc[1], 'RETRYCOUNT', fc[2], 'JUSTID')
    end
    if #live > 0 then
      out[#out + 1] = key
      out[#out + 1] = live
      left = left - #live
    end
  end
end
return out
`)

// statsScript reads queue numbers in one consistent step.
//
// KEYS[1] counters, KEYS[2..] destination streams.
// Returns {counters HGETALL, {xlen, pending, first id or empty} per stream...}.
var statsScript = redis.NewScript(`
local out = {redis.call('HGETALL', KEYS[1])}
for i = 2, #KEYS do
  local n = redis.call('XLEN', KEYS[i])
  local pend = 0
  local first = ''
  if n > 0 then
    local p = redis.pcall('XPENDING', KEYS[i], 'sb')
    if type(p) == 'table' and p.err == nil and p[1] then pend = p[1] end
    local r = redis.call('XRANGE', KEYS[i], '-', '+', 'COUNT', '1')
    if r[1] then first = r[1][1] end
  end
  out[#out + 1] = {n, pend, first}
end
return out
`)

// dlqActLua is the per-entry action of the dead-letter scripts: replay moves
// the entry to its destination stream with a fresh attempt budget, purge
// drops it. It returns 1 if the entry was acted on. A destination filter
// (empty = any) guards against acting on another destination's entry.
//
// Variables set by the including script: dlq, counts, mode, dest, now, prefix.
const dlqActLua = luaCommon + `
local dlq, counts = KEYS[1], KEYS[2]
local mode, dest, now, prefix = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local keep = {i = true, b = true, r = true, p = true}
local function act(id, fields)
  local d = nil
  for i = 1, #fields, 2 do
    if fields[i] == 'd' then d = fields[i + 1] end
  end
  if d == nil or (dest ~= '' and d ~= dest) then return 0 end
  if mode == 'replay' then
    local args = {'XADD', prefix .. d, '*'}
    for i = 1, #fields, 2 do
      if keep[fields[i]] then
        args[#args + 1] = fields[i]
        args[#args + 1] = fields[i + 1]
      end
    end
    args[#args + 1] = 'a'
    args[#args + 1] = '0'
    args[#args + 1] = 't'
    args[#args + 1] = now
    redis.call(unpack(args))
  end
  redis.call('XDEL', dlq, id)
  decr(counts, 'x:' .. d)
  return 1
end
`

// dlqIDsScript acts on dead letters by id; ids already gone are skipped.
//
// KEYS[1] dlq, KEYS[2] counters. ARGV[1] 'replay' or 'purge', ARGV[2]
// destination filter, ARGV[3] now unix ms, ARGV[4] stream key prefix,
// ARGV[5..] ids. Returns how many were acted on.
var dlqIDsScript = redis.NewScript(dlqActLua + `
local n = 0
for i = 5, #ARGV do
  local r = redis.call('XRANGE', dlq, ARGV[i], ARGV[i])
  if r[1] then n = n + act(r[1][1], r[1][2]) end
end
return n
`)

// dlqRangeScript acts on one batch of dead letters in id order.
//
// KEYS and ARGV[1..4] as dlqIDsScript; ARGV[5] start (inclusive id, '-',
// or '(' id for exclusive), ARGV[6] end id (inclusive), ARGV[7] batch size.
// Returns {acted, last id scanned, or empty when the range is exhausted}.
var dlqRangeScript = redis.NewScript(dlqActLua + `
local r = redis.call('XRANGE', dlq, ARGV[5], ARGV[6], 'COUNT', ARGV[7])
local n = 0
for _, e in ipairs(r) do n = n + act(e[1], e[2]) end
local last = ''
if #r >= tonumber(ARGV[7]) then last = r[#r][1] end
return {n, last}
`)

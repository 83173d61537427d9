package queue

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// EnsureGroups creates the consumer group of each destination stream (and
// the stream if missing), reading from the start of the stream. Groups that
// exist are left alone. Read and Reclaim call it themselves when a group is
// missing; calling it at startup saves that detour.
func (s *Store) EnsureGroups(ctx context.Context, tenant string, dests []string) error {
	if len(dests) == 0 {
		return nil
	}
	pipe := s.rdb.Pipeline()
	cmds := make([]*redis.StatusCmd, len(dests))
	for i, d := range dests {
		cmds[i] = pipe.XGroupCreateMkStream(ctx, streamKey(tenant, d), Group, "0")
	}
	_, _ = pipe.Exec(ctx)
	for _, c := range cmds {
		if err := c.Err(); err != nil && !strings.HasPrefix(err.Error(), "BUSYGROUP") {
			return unavailable("ensure groups", err)
		}
	}
	return nil
}

// Read hands consumer up to want[dest] new jobs of each destination of
// tenant. Destinations with want <= 0 are not read (a held destination).
// The jobs are pending for consumer until Ack, Retry, DeadLetter or Release;
// if consumer dies, Reclaim hands them to another consumer after its
// visibility timeout. consumer names one dispatcher instance; keep it stable
// across restarts of that instance (e.g. the host name) so the group does not
// collect abandoned consumers.
//
// If no job is available, Read waits up to block for one (block <= 0: it
// does not wait); it returns no jobs and no error when the wait ends empty.
// The wait is not cut short by ctx unless the redis.Client has
// ContextTimeoutEnabled, so keep block short (a few seconds).
//
// When every destination wants the same number, Read is one XREADGROUP over
// all streams. Otherwise it pipelines one non-blocking XREADGROUP per
// destination (one round trip) and, if all came back empty and block > 0,
// waits in one XREADGROUP with COUNT min(want) — so no destination ever gets
// more than it wants.
//
// If a stream or group is gone (FLUSHALL, Redis restarted without
// persistence), Read re-creates the groups and retries once. On any other
// failure it returns an error wrapping switchboard.ErrUnavailable, together
// with the jobs it did read before the failure: they are pending for consumer
// and should be delivered (or are reclaimed later).
func (s *Store) Read(ctx context.Context, tenant, consumer string, want map[string]int, block time.Duration) ([]Job, error) {
	if consumer == "" {
		return nil, errors.New("queue read: empty consumer name")
	}
	dests := make([]string, 0, len(want))
	uniform, least := true, 0
	for d, n := range want {
		if n <= 0 {
			continue
		}
		if len(dests) > 0 && n != least {
			uniform = false
		}
		if len(dests) == 0 || n < least {
			least = n
		}
		dests = append(dests, d)
	}
	if len(dests) == 0 {
		return nil, nil
	}
	slices.Sort(dests) // deterministic order of streams in the command

	if uniform {
		return s.readOnce(ctx, tenant, consumer, dests, least, block)
	}
	jobs, err := s.readEach(ctx, tenant, consumer, dests, want)
	if err != nil || len(jobs) > 0 || block <= 0 {
		return jobs, err
	}
	return s.readOnce(ctx, tenant, consumer, dests, least, block)
}

// readOnce reads up to count jobs of each of dests in one XREADGROUP.
func (s *Store) readOnce(ctx context.Context, tenant, consumer string, dests []string, count int, block time.Duration) ([]Job, error) {
	streams := make([]string, 2*len(dests))
	for i, d := range dests {
		streams[i] = streamKey(tenant, d)
		streams[len(dests)+i] = ">"
	}
	args := &redis.XReadGroupArgs{Group: Group, Consumer: consumer, Streams: streams, Count: int64(count), Block: -1}
	if block > 0 {
		args.Block = max(block, time.Millisecond)
	}
	for try := 0; ; try++ {
		res, err := s.rdb.XReadGroup(ctx, args).Result()
		if errors.Is(err, redis.Nil) {
			return nil, nil
		}
		if err == nil {
			return appendStreams(nil, tenant, res), nil
		}
		if try > 0 || !isNoGroup(err) {
			return nil, unavailable("read", err)
		}
		if err := s.EnsureGroups(ctx, tenant, dests); err != nil {
			return nil, err
		}
	}
}

// readEach reads up to want[d] jobs of each of dests without blocking, one
// XREADGROUP per destination in one pipeline.
func (s *Store) readEach(ctx context.Context, tenant, consumer string, dests []string, want map[string]int) ([]Job, error) {
	var jobs []Job
	for try := 0; ; try++ {
		pipe := s.rdb.Pipeline()
		cmds := make([]*redis.XStreamSliceCmd, len(dests))
		for i, d := range dests {
			cmds[i] = pipe.XReadGroup(ctx, &redis.XReadGroupArgs{
				Group: Group, Consumer: consumer, Streams: []string{streamKey(tenant, d), ">"},
				Count: int64(want[d]), Block: -1,
			})
		}
		_, _ = pipe.Exec(ctx)
		var lost []string
		var failed error
		for i, c := range cmds {
			res, err := c.Result()
			switch {
			case err == nil:
				jobs = appendStreams(jobs, tenant, res)
			case errors.Is(err, redis.Nil):
			case isNoGroup(err) && try == 0:
				lost = append(lost, dests[i])
			case failed == nil:
				failed = err
			}
		}
		if failed != nil {
			return jobs, unavailable("read", failed)
		}
		if len(lost) == 0 {
			return jobs, nil
		}
		if err := s.EnsureGroups(ctx, tenant, lost); err != nil {
			return jobs, err
		}
		dests = lost // only those: the others' jobs are already ours
	}
}

func appendStreams(jobs []Job, tenant string, res []redis.XStream) []Job {
	prefix := streamPrefix(tenant)
	for _, st := range res {
		dest := strings.TrimPrefix(st.Stream, prefix)
		for _, m := range st.Messages {
			jobs = append(jobs, jobFromMessage(tenant, dest, m))
		}
	}
	return jobs
}

// Reclaim claims for consumer up to count jobs (over all dests, oldest
// pending first per destination) that have been pending longer than minIdle,
// typically because the consumer that read them died. minIdle is the
// visibility timeout: keep it well above the delivery timeout, or jobs still
// being delivered are delivered twice. count <= 0 means 100.
//
// Pending entries whose stream entry no longer exists are acknowledged away
// and not returned. A destination whose stream or group is gone has nothing
// to reclaim. Errors wrap switchboard.ErrUnavailable.
func (s *Store) Reclaim(ctx context.Context, tenant, consumer string, dests []string, minIdle time.Duration, count int) ([]Job, error) {
	if len(dests) == 0 {
		return nil, nil
	}
	if consumer == "" {
		return nil, errors.New("queue reclaim: empty consumer name")
	}
	if count <= 0 {
		count = 100
	}
	keys := make([]string, 2*len(dests))
	for i, d := range dests {
		keys[i], keys[len(dests)+i] = streamKey(tenant, d), holdKey(tenant, d)
	}
	res, err := reclaimScript.Run(ctx, s.rdb, keys, consumer, minIdle.Milliseconds(), count, time.Now().UnixMilli()).Slice()
	if err != nil {
		return nil, unavailable("reclaim", err)
	}
	prefix := streamPrefix(tenant)
	var jobs []Job
	for i := 0; i+1 < len(res); i += 2 {
		key, _ := res[i].(string)
		entries, _ := res[i+1].([]any)
		dest := strings.TrimPrefix(key, prefix)
		for _, e := range entries {
			j, err := jobFromReply(tenant, dest, e)
			if err != nil {
				return jobs, fmt.Errorf("queue reclaim: %w", err)
			}
			jobs = append(jobs, j)
		}
	}
	return jobs, nil
}

// jobFromReply parses a stream entry {id, {field, value, ...}} returned by a
// script.
func jobFromReply(tenant, dest string, v any) (Job, error) {
	id, fields, err := entryFromReply(v)
	if err != nil {
		return Job{}, err
	}
	j := Job{ID: id, Tenant: tenant, Destination: dest}
	for i := 0; i+1 < len(fields); i += 2 {
		j.setField(fields[i], fields[i+1])
	}
	return j, nil
}

func entryFromReply(v any) (string, []string, error) {
	e, ok := v.([]any)
	if !ok || len(e) != 2 {
		return "", nil, fmt.Errorf("unexpected stream entry %T", v)
	}
	id, ok := e[0].(string)
	if !ok {
		return "", nil, fmt.Errorf("unexpected stream entry id %T", e[0])
	}
	raw, _ := e[1].([]any)
	fields := make([]string, len(raw))
	for i, f := range raw {
		fields[i] = toString(f)
	}
	return id, fields, nil
}

func toString(v any) string {
	switch v := v.(type) {
	case string:
		return v
	case []byte:
		return string(v)
	case int64:
		return strconv.FormatInt(v, 10)
	case nil:
		return ""
	default:
		return fmt.Sprint(v)
	}
}

// pruneScript removes from the destination streams' group the consumers
// that hold no job and have been idle for a while: gateway processes that
// are gone (each process reads under a name of its own, so every restart
// leaves one behind). The check and the removal are one step, so a job a
// consumer took meanwhile is never dropped with it; a live consumer
// removed this way is made again by its next read.
//
// KEYS: the destination streams. ARGV[1] min idle ms, ARGV[2] a consumer
// to keep (the caller). Returns how many were removed.
var pruneScript = redis.NewScript(`
local n = 0
for _, key in ipairs(KEYS) do
  local cs = redis.pcall('XINFO', 'CONSUMERS', key, 'sb')
  if type(cs) == 'table' and cs.err == nil then
    for _, c in ipairs(cs) do
      local name, pending, idle
      for i = 1, #c, 2 do
        if c[i] == 'name' then name = c[i + 1]
        elseif c[i] == 'pending' then pending = tonumber(c[i + 1])
        elseif c[i] == 'idle' then idle = tonumber(c[i + 1]) end
      end
      if name and name ~= ARGV[2] and pending == 0 and idle and idle >= tonumber(ARGV[1]) then
        redis.call('XGROUP', 'DELCONSUMER', key, 'sb', name)
        n = n + 1
      end
    end
  end
end
return n
`)

// PruneConsumers removes, from dests' consumer group, the consumers other
// than keep that hold no job and have been idle for at least minIdle (see
// pruneScript), and returns how many. Errors wrap switchboard.ErrUnavailable.
func (s *Store) PruneConsumers(ctx context.Context, tenant string, dests []string, keep string, minIdle time.Duration) (int, error) {
	if len(dests) == 0 {
		return 0, nil
	}
	keys := make([]string, len(dests))
	for i, d := range dests {
		keys[i] = streamKey(tenant, d)
	}
	n, err := pruneScript.Run(ctx, s.rdb, keys, minIdle.Milliseconds(), keep).Int()
	if err != nil {
		return 0, unavailable("prune consumers", err)
	}
	return n, nil
}

package queue

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// Entry is one event to enqueue for some destinations of one tenant.
type Entry struct {
	Tenant string
	// DedupKey identifies the event for deduplication of carrier retries;
	// empty means no deduplication.
	DedupKey string
	EventID  string
	Event    []byte // the event body (JSON), delivered as is
	// Raw is the raw callback. It is stored only for the destinations listed
	// in RawFor, and only if not empty.
	Raw    []byte
	RawFor []string
	// Destinations each get one job; list each destination once. An entry
	// without destinations (or Attempted) only records its dedup key.
	Destinations []string
	// Attempted are destinations the event is routed to whose first attempt
	// was made before the enqueue (a pass-through): they get no job here —
	// the attempt delivered the event, or its failure is already in the
	// retry set or dead-letter stream — but the history records them as
	// routed (with Raw, if in RawFor), so Recover re-sends to them. Do not
	// list one in Destinations too.
	Attempted   []string
	TraceParent string    // W3C traceparent; empty if none
	Now         time.Time // when the event arrived; zero means time.Now()
	// History, when positive, also keeps the event in the tenant's history
	// (see history.go) for that long, in the same round trip; a duplicate is
	// not recorded.
	History time.Duration
	// MessageID is the carrier's message id, indexed in the history.
	MessageID string
}

// Enqueue stores each entry atomically (dedup check, one XADD per
// destination, dedup key set with TTL ttl) and all entries in one pipelined
// round trip. ttl <= 0 means DefaultDedupTTL.
//
// It returns, per entry, whether it was new; false means a duplicate of an
// entry with the same DedupKey within ttl, and nothing was written for it.
//
// If Redis fails, the error wraps switchboard.ErrUnavailable and some entries
// may have been stored; a carrier retry of those is caught by their dedup
// key. An entry without tenant or event id, with braces in its tenant (they
// would break the key's hash tag) or with an empty destination is an error,
// and nothing of the call is written.
func (s *Store) Enqueue(ctx context.Context, ttl time.Duration, entries ...*Entry) ([]bool, error) {
	if ttl <= 0 {
		ttl = DefaultDedupTTL
	}
	ttlMS := strconv.FormatInt(max(ttl.Milliseconds(), 1), 10)
	type call struct {
		script *redis.Script
		keys   []string
		args   []any
		entry  int  // index of the entry
		hist   bool // a history write, which follows its entry's enqueue
	}
	calls := make([]call, 0, len(entries))
	for i, e := range entries {
		if e == nil || !validTenant(e.Tenant) || e.EventID == "" {
			return nil, fmt.Errorf("queue enqueue: entry %d: a tenant (without braces) and an event id are required", i)
		}
		if slices.Contains(e.Destinations, "") || slices.Contains(e.Attempted, "") {
			return nil, fmt.Errorf("queue enqueue: entry %d: empty destination", i)
		}
		keys, args := enqueueArgs(e, ttlMS)
		calls = append(calls, call{enqueueScript, keys, args, i, false})
		if e.History > 0 && len(e.Destinations)+len(e.Attempted) > 0 {
			keys, args := historyArgs(e)
			calls = append(calls, call{historyScript, keys, args, i, true})
		}
	}

	cmds := make([]*redis.Cmd, len(calls))
	run := func(idx []int, eval bool) error {
		pipe := s.rdb.Pipeline()
		for _, i := range idx {
			c := calls[i]
			if eval {
				cmds[i] = c.script.Eval(ctx, pipe, c.keys, c.args...)
			} else {
				cmds[i] = c.script.EvalSha(ctx, pipe, c.keys, c.args...)
			}
		}
		_, err := pipe.Exec(ctx)
		return err
	}
	all := make([]int, len(calls))
	for i := range all {
		all[i] = i
	}
	if err := run(all, false); err != nil {
		// The script cache is empty after a restart or SCRIPT FLUSH: send
		// the source to those that missed it (EVAL caches it again). A
		// history write goes again with its enqueue, which it must follow.
		var again []int
		for i, c := range cmds {
			if isNoScript(c.Err()) || (calls[i].hist && len(again) > 0 && calls[again[len(again)-1]].entry == calls[i].entry) {
				again = append(again, i)
			}
		}
		if len(again) > 0 {
			_ = run(again, true)
		}
	}

	// Only the enqueues decide: an event is stored even if its history
	// write failed (the history is for operators; it must not cost a
	// carrier a 503).
	fresh := make([]bool, len(entries))
	for i, c := range cmds {
		if calls[i].hist {
			continue
		}
		n, err := c.Int()
		if err != nil {
			return nil, unavailable("enqueue", err)
		}
		fresh[calls[i].entry] = n == 1
	}
	return fresh, nil
}

// enqueueArgs builds the KEYS and ARGV of enqueueScript for e.
func enqueueArgs(e *Entry, ttlMS string) ([]string, []any) {
	now := e.Now
	if now.IsZero() {
		now = time.Now()
	}
	keys := make([]string, 0, len(e.Destinations)+1)
	dedupTTL := ""
	if e.DedupKey != "" {
		keys = append(keys, seenKey(e.Tenant, e.DedupKey))
		dedupTTL = ttlMS
	}
	mask := make([]byte, len(e.Destinations))
	anyRaw := false
	prefix := streamPrefix(e.Tenant)
	for i, d := range e.Destinations {
		keys = append(keys, prefix+d)
		mask[i] = '0'
		if len(e.Raw) > 0 && slices.Contains(e.RawFor, d) {
			mask[i] = '1'
			anyRaw = true
		}
	}
	args := make([]any, 3, 16)
	args[0], args[1] = dedupTTL, mask
	args = append(args, fEventID, e.EventID, fBody, e.Event, fAttempts, "0", fEnqueued, millis(now))
	if e.TraceParent != "" {
		args = append(args, fTrace, e.TraceParent)
	}
	args[2] = strconv.Itoa(len(args) - 3)
	if anyRaw {
		args = append(args, e.Raw)
	}
	return keys, args
}

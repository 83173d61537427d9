package queue

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
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
		keys []string
		args []any
	}
	calls := make([]call, len(entries))
	for i, e := range entries {
		if e == nil || !validTenant(e.Tenant) || e.EventID == "" {
			return nil, fmt.Errorf("queue enqueue: entry %d: a tenant (without braces) and an event id are required", i)
		}
		if slices.Contains(e.Destinations, "") || slices.Contains(e.Attempted, "") {
			return nil, fmt.Errorf("queue enqueue: entry %d: empty destination", i)
		}
		calls[i].keys, calls[i].args = enqueueArgs(e, ttlMS)
	}

	cmds := make([]*redis.Cmd, len(calls))
	run := func(idx []int, eval bool) error {
		pipe := s.rdb.Pipeline()
		for _, i := range idx {
			c := calls[i]
			if eval {
				cmds[i] = enqueueScript.Eval(ctx, pipe, c.keys, c.args...)
			} else {
				cmds[i] = enqueueScript.EvalSha(ctx, pipe, c.keys, c.args...)
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
		// the source to those that missed it (EVAL caches it again).
		var again []int
		for i, c := range cmds {
			if isNoScript(c.Err()) {
				again = append(again, i)
			}
		}
		if len(again) > 0 {
			_ = run(again, true)
		}
	}
	fresh := make([]bool, len(entries))
	for i, c := range cmds {
		n, err := c.Int()
		if err != nil {
			return nil, unavailable("enqueue", err)
		}
		fresh[i] = n == 1
	}
	return fresh, nil
}

// historyTrimEvery: one enqueue in this many (by arrival millisecond)
// also trims the destination indexes of entries older than the retention.
// Readers filter by time and skip expired events, so a lazy trim only
// bounds the indexes' size; trimming on every write cost a Redis call per
// destination per event.
const historyTrimEvery = 16

// indexLate: an event stored this long after it arrived (a drained spool)
// is put in the destination indexes under its arrival time, where recover
// looks for it; a live one under the time of the enqueue, a few ms later.
// (Every live event under its arrival time made about half the index XADDs
// fail and run again: concurrent callbacks reach Redis out of order.)
const indexLate = time.Second

// enqueueArgs builds the KEYS and ARGV of enqueueScript for e.
func enqueueArgs(e *Entry, ttlMS string) ([]string, []any) {
	now := e.Now
	if now.IsZero() {
		now = time.Now()
	}
	history := e.History > 0 && len(e.Destinations)+len(e.Attempted) > 0
	routed := e.Destinations // with those attempted before the enqueue
	if len(e.Attempted) > 0 {
		routed = append(slices.Clip(e.Destinations), e.Attempted...)
	}
	keys := make([]string, 0, len(e.Destinations)+len(routed)+3)
	dedupTTL := ""
	if e.DedupKey != "" {
		keys = append(keys, seenKey(e.Tenant, e.DedupKey))
		dedupTTL = ttlMS
	}
	mask := make([]byte, len(e.Destinations))
	prefix := streamPrefix(e.Tenant)
	for i, d := range e.Destinations {
		keys = append(keys, prefix+d)
		mask[i] = '0'
		if len(e.Raw) > 0 && slices.Contains(e.RawFor, d) {
			mask[i] = '1'
		}
	}
	args := make([]any, 3, 26)
	args[0], args[1] = dedupTTL, mask
	args = append(args, fEventID, e.EventID, fBody, e.Event, fAttempts, "0", fEnqueued, millis(now))
	if e.TraceParent != "" {
		args = append(args, fTrace, e.TraceParent)
	}
	args[2] = strconv.Itoa(len(args) - 3)
	var rawFor []string // routed destinations that want the raw callback
	if len(e.Raw) > 0 {
		for _, d := range routed {
			if slices.Contains(e.RawFor, d) {
				rawFor = append(rawFor, d)
			}
		}
	}
	var raw []byte
	if len(rawFor) > 0 {
		raw = e.Raw
	}
	if !history {
		return keys, append(args, raw, "", strconv.Itoa(len(e.Destinations)))
	}
	keys = append(keys, historyKey(e.Tenant, e.EventID))
	hasMsg := "0"
	if e.MessageID != "" {
		keys = append(keys, messageKey(e.Tenant, e.MessageID))
		hasMsg = "1"
	}
	for _, d := range routed {
		keys = append(keys, destIndexKey(e.Tenant, d))
	}
	ret := max(e.History.Milliseconds(), 1)
	trim := "0"
	if now.UnixMilli()%historyTrimEvery == 0 {
		trim = "1"
	}
	bodyNow := "0" // the body goes into the record when a job ends (keep_body)
	if len(e.Attempted) > 0 {
		bodyNow = "1" // an attempted destination has no job to bring it
	}
	indexID := "" // a live event: the time of the enqueue, within ms of its arrival
	if time.Since(now) > indexLate {
		indexID = millis(now)
	}
	args = append(args, raw, strconv.FormatInt(ret, 10), strconv.Itoa(len(e.Destinations)), hasMsg,
		strings.Join(routed, " "), strings.Join(rawFor, " "), e.TraceParent, millis(now),
		trim, strconv.FormatInt(now.UnixMilli()-ret, 10), bodyNow, indexID)
	return keys, args
}

package queue

import (
	"context"
	"strconv"
	"strings"
	"time"
)

// Stats are the queue numbers of one destination.
type Stats struct {
	// Queued counts jobs in the stream not yet handed to any consumer.
	Queued int64
	// InFlight counts jobs handed to a consumer and not yet acknowledged,
	// retried, dead-lettered or released: being delivered, or left behind
	// by a dead consumer until Reclaim.
	InFlight int64
	// Retrying counts jobs in the retry set waiting for their next attempt.
	Retrying int64
	// Dead counts jobs in the dead-letter stream.
	Dead int64
	// Oldest is how long the oldest job now in the stream (queued or in
	// flight) has been there — the delivery lag; 0 if the stream is empty.
	// It counts from the job's latest arrival in the stream (enqueue,
	// promotion from the retry set, release, replay), not from the event's
	// arrival at the gateway.
	Oldest time.Duration
	// Stale counts the status jobs dropped undelivered because they were
	// stale (drop_stale_status, see DropStale): a running total since the
	// tenant's counters began, never decreasing.
	Stale int64
}

// Stats returns the numbers of each of dests of tenant at now, read in one
// atomic script call. Every destination of dests is in the map; Retrying,
// Dead and Stale are also reported for destinations not in dests that have
// any.
// Errors wrap switchboard.ErrUnavailable.
func (s *Store) Stats(ctx context.Context, tenant string, dests []string, now time.Time) (map[string]Stats, error) {
	keys := make([]string, 0, len(dests)+1)
	keys = append(keys, countsKey(tenant))
	for _, d := range dests {
		keys = append(keys, streamKey(tenant, d))
	}
	res, err := statsScript.Run(ctx, s.rdb, keys).Slice()
	if err != nil {
		return nil, unavailable("stats", err)
	}
	if len(res) != len(dests)+1 {
		return nil, unavailable("stats", errUnexpectedReply)
	}
	out := make(map[string]Stats, len(dests))
	for i, d := range dests {
		row, _ := res[i+1].([]any)
		if len(row) != 3 {
			return nil, unavailable("stats", errUnexpectedReply)
		}
		length, _ := row[0].(int64)
		pending, _ := row[1].(int64)
		st := Stats{InFlight: pending, Queued: max(length-pending, 0)}
		if first := toString(row[2]); first != "" {
			st.Oldest = max(now.Sub(idTime(first)), 0)
		}
		out[d] = st
	}
	// HGETALL comes back as a flat list, or as a map under RESP3.
	add := func(field string, n int64) {
		kind, dest, ok := strings.Cut(field, ":")
		if !ok || n <= 0 {
			return
		}
		st := out[dest]
		switch kind {
		case "r":
			st.Retrying = n
		case "x":
			st.Dead = n
		case "s":
			st.Stale = n
		default:
			return
		}
		out[dest] = st
	}
	switch counts := res[0].(type) {
	case []any:
		for i := 0; i+1 < len(counts); i += 2 {
			add(toString(counts[i]), toInt64(counts[i+1]))
		}
	case map[any]any:
		for k, v := range counts {
			add(toString(k), toInt64(v))
		}
	}
	return out, nil
}

func toInt64(v any) int64 {
	if n, ok := v.(int64); ok {
		return n
	}
	n, _ := strconv.ParseInt(toString(v), 10, 64)
	return n
}

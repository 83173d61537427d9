package queue

import (
	"context"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// DeadLetter is a job that will not be delivered again unless replayed.
type DeadLetter struct {
	ID          string // the dead-letter entry id, what DLQReplay and DLQPurge take
	Tenant      string
	Destination string
	EventID     string
	Attempts    int // attempts made in all
	LastError   string
	FailedAt    time.Time // when it was dead-lettered, ms precision
	// The job as it was, for inspection; a replay sends these.
	Event       []byte
	Raw         []byte // nil unless the destination needs the raw callback
	EnqueuedAt  time.Time
	TraceParent string
}

// dlqBatch bounds the entries one dead-letter script call touches, so a
// large dead-letter stream never blocks Redis for long.
const dlqBatch = 256

// DLQList returns up to limit dead letters of tenant, oldest first, of
// destination dest ("" = all). limit <= 0 means no limit. Errors wrap
// switchboard.ErrUnavailable.
func (s *Store) DLQList(ctx context.Context, tenant, dest string, limit int) ([]DeadLetter, error) {
	var out []DeadLetter
	start := "-"
	for {
		page, err := s.rdb.XRangeN(ctx, dlqKey(tenant), start, "+", dlqBatch).Result()
		if err != nil {
			return nil, unavailable("dlq list", err)
		}
		for _, m := range page {
			d := deadLetterFromMessage(tenant, m)
			if dest != "" && d.Destination != dest {
				continue
			}
			out = append(out, d)
			if limit > 0 && len(out) == limit {
				return out, nil
			}
		}
		if len(page) < dlqBatch {
			return out, nil
		}
		start = "(" + page[len(page)-1].ID
	}
}

func deadLetterFromMessage(tenant string, m redis.XMessage) DeadLetter {
	d := DeadLetter{ID: m.ID, Tenant: tenant}
	for f, v := range m.Values {
		s, _ := v.(string)
		switch f {
		case fDest:
			d.Destination = s
		case fEventID:
			d.EventID = s
		case fAttempts:
			d.Attempts, _ = strconv.Atoi(s)
		case fLastErr:
			d.LastError = s
		case fFailedAt:
			d.FailedAt = parseMillis(s)
		case fBody:
			d.Event = []byte(s)
		case fRaw:
			d.Raw = []byte(s)
		case fEnqueued:
			d.EnqueuedAt = parseMillis(s)
		case fTrace:
			d.TraceParent = s
		}
	}
	return d
}

// DLQReplay moves dead letters of tenant back to their destination streams
// with a fresh attempt budget: attempts 0 and enqueued-at now, so max_age
// starts again. It selects the dead letters with the given ids, or, when ids
// is empty and all is true, every dead letter; either way only those of
// destination dest if dest is not "". Ids that are gone (or never were) are
// skipped. Each dead letter moves atomically; it returns how many moved.
// Nothing selected (no ids, all false) moves nothing. Errors wrap
// switchboard.ErrUnavailable; the count then says how many moved before.
func (s *Store) DLQReplay(ctx context.Context, tenant, dest string, ids []string, all bool, now time.Time) (int, error) {
	return s.dlqAct(ctx, "replay", tenant, dest, ids, all, now)
}

// DLQPurge deletes dead letters of tenant, selected as in DLQReplay, and
// returns how many it deleted. Errors wrap switchboard.ErrUnavailable.
func (s *Store) DLQPurge(ctx context.Context, tenant, dest string, ids []string, all bool) (int, error) {
	return s.dlqAct(ctx, "purge", tenant, dest, ids, all, time.Now())
}

// validStreamID reports whether id is a complete stream entry id, "<ms>-<seq>"
// with both parts unsigned 64-bit numbers; others cannot name an entry and
// would make XRANGE (or XACK) fail.
func validStreamID(id string) bool {
	ms, seq, ok := strings.Cut(id, "-")
	if !ok || ms == "" || seq == "" || ms[0] == '+' || seq[0] == '+' {
		return false
	}
	_, err1 := strconv.ParseUint(ms, 10, 64)
	_, err2 := strconv.ParseUint(seq, 10, 64)
	return err1 == nil && err2 == nil
}

func (s *Store) dlqAct(ctx context.Context, mode, tenant, dest string, ids []string, all bool, now time.Time) (int, error) {
	keys := []string{dlqKey(tenant), countsKey(tenant)}
	head := []any{mode, dest, millis(now), streamPrefix(tenant)}
	op := "dlq " + mode
	total := 0
	if len(ids) > 0 {
		for len(ids) > 0 {
			batch := ids[:min(len(ids), dlqBatch)]
			ids = ids[len(batch):]
			args := append([]any(nil), head...)
			for _, id := range batch {
				if validStreamID(id) {
					args = append(args, id)
				}
			}
			if len(args) == len(head) {
				continue
			}
			n, err := dlqIDsScript.Run(ctx, s.rdb, keys, args...).Int()
			if err != nil {
				return total, unavailable(op, err)
			}
			total += n
		}
		return total, nil
	}
	if !all {
		return 0, nil
	}
	// Stop at the newest dead letter of now: the ones that die meanwhile are
	// not part of "all", and the loop ends even if jobs keep dying.
	last, err := s.rdb.XRevRangeN(ctx, dlqKey(tenant), "+", "-", 1).Result()
	if err != nil {
		return 0, unavailable(op, err)
	}
	if len(last) == 0 {
		return 0, nil
	}
	start := "-"
	for {
		args := append(append([]any(nil), head...), start, last[0].ID, dlqBatch)
		res, err := dlqRangeScript.Run(ctx, s.rdb, keys, args...).Slice()
		if err != nil {
			return total, unavailable(op, err)
		}
		if len(res) != 2 {
			return total, unavailable(op, errUnexpectedReply)
		}
		n, _ := res[0].(int64)
		total += int(n)
		next := toString(res[1])
		if next == "" {
			return total, nil
		}
		start = "(" + next
	}
}

// Package queue keeps Switchboard's jobs in Redis: it enqueues events for
// their destinations, hands them to dispatchers through consumer groups, and
// moves them between the destination streams, the retry set and the
// dead-letter stream, each move one atomic Lua script. It also runs an
// embedded, non-durable store for trying Switchboard out.
//
// Keys of tenant t all carry the hash tag {t}, so one tenant lives in one
// Redis Cluster slot:
//
//	sb:{t}:d:<dest>     stream per destination, consumer group "sb"
//	sb:{t}:retry        sorted set of jobs waiting for their next attempt, score = due unix ms
//	sb:{t}:dlq          stream of dead jobs
//	sb:{t}:seen:<hash>  dedup marker with a TTL; <hash> is 22 base64url
//	                    characters of the SHA-256 of the dedup key (which
//	                    holds a message id and a phone number: shorter, and
//	                    no number in a key name)
//	sb:{t}:nonce:<key>  a nonce or JWT id: "1" recorded (Confirm) or "claim:<token>" (Claim), with a TTL
//	sb:{t}:rate         the tenant's delivery_rate, GCRA arrival time in ms (ReserveRate)
//	sb:{t}:rate:<dest>  a destination's rate, likewise
//	sb:{t}:counts       hash of per-destination counters for Stats:
//	                    "r:<dest>" jobs in the retry set, "x:<dest>" jobs in the dlq,
//	                    "s:<dest>" stale statuses dropped (StaleDropped)
//	sb:{t}:h:…          the event history: events, their attempts, indexes by
//	                    message id and by destination (see history.go)
//	sb:{t}:pull:…       hand-out logs of pull destinations' SSE streams (see pull.go)
//	sb:{t}:lease:<dest>, sb:{t}:hold:<dest>, sb:{t}:rank:<dest>:<msg>
//	                    ordered destinations' lease, jobs held in place, and
//	                    delivered status ranks (see ordered.go)
//
// A job is always in exactly one place: a destination stream (pending or
// not), the retry set, or the dead-letter stream.
package queue

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	switchboard "github.com/switchboard-gw/switchboard"
)

// Group is the consumer group every destination stream is read through.
const Group = "sb"

// DefaultDedupTTL is how long a dedup key is remembered when Enqueue is given
// no positive TTL.
const DefaultDedupTTL = 24 * time.Hour

// Field names of stream entries, retry-set members and dead letters. They are
// short because every job carries them; they are stored data, so never
// rename one.
const (
	fEventID  = "i" // event id
	fBody     = "b" // event body (JSON), what gets delivered
	fRaw      = "r" // raw callback, only for destinations that need it
	fAttempts = "a" // attempts already made
	fEnqueued = "t" // enqueued-at, unix ms: when the event arrived
	fTrace    = "p" // W3C traceparent
	fLastErr  = "e" // error of the last attempt
	fDest     = "d" // destination (dead letters only)
	fFailedAt = "f" // dead-lettered at, unix ms (dead letters only)
	fDue      = "w" // not before, unix ms (reclaimed held jobs only)
)

// Store is the Redis side of Switchboard. It is safe for concurrent use,
// also by several gateway instances sharing one Redis.
type Store struct {
	rdb *redis.Client
}

// New returns a Store using rdb. It does not talk to Redis: the Lua scripts
// are sent with EVALSHA and loaded on NOSCRIPT (after a Redis restart too).
func New(rdb *redis.Client) *Store {
	return &Store{rdb: rdb}
}

// Ping checks that Redis answers. It returns an error wrapping
// switchboard.ErrUnavailable if it does not.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.rdb.Ping(ctx).Err(); err != nil {
		return unavailable("ping", err)
	}
	return nil
}

// Job is one event waiting for one destination, as read from its stream.
type Job struct {
	// ID is the stream entry id; it changes when the job moves (retry,
	// release), while EventID stays.
	ID          string
	Tenant      string
	Destination string
	EventID     string
	Event       []byte // the event body (JSON)
	Raw         []byte // the raw callback; nil unless the destination needs it
	// Attempts is the number of delivery attempts made before this one.
	Attempts int
	// EnqueuedAt is when the event arrived (ms precision); max_age counts
	// from it. A dead-letter replay resets it.
	EnqueuedAt  time.Time
	TraceParent string // empty if none
	LastError   string // error of the previous attempt; empty on the first
	// Due, when not zero, is when the next attempt was due: set by Reclaim
	// for a job held in place (by an ordered destination) while it waited
	// for its retry, which must still wait (Retry) if that is to come.
	Due time.Time
}

// fields returns j's stream fields with attempts and lastErr, appended to
// args, ready for XADD.
func (j *Job) fields(args []any, attempts int, lastErr string) []any {
	args = append(args, fEventID, j.EventID, fBody, j.Event)
	if len(j.Raw) > 0 {
		args = append(args, fRaw, j.Raw)
	}
	args = append(args, fAttempts, strconv.Itoa(attempts), fEnqueued, strconv.FormatInt(j.EnqueuedAt.UnixMilli(), 10))
	if j.TraceParent != "" {
		args = append(args, fTrace, j.TraceParent)
	}
	if lastErr != "" {
		args = append(args, fLastErr, lastErr)
	}
	return args
}

func (j *Job) check(op string) error {
	if j == nil || j.Tenant == "" || j.Destination == "" || j.ID == "" {
		return fmt.Errorf("queue %s: job without tenant, destination or id", op)
	}
	return nil
}

// setField sets one stored field on j; unknown fields are ignored so older
// code can read entries written by newer code.
func (j *Job) setField(f, v string) {
	switch f {
	case fEventID:
		j.EventID = v
	case fBody:
		j.Event = []byte(v)
	case fRaw:
		j.Raw = []byte(v)
	case fAttempts:
		j.Attempts, _ = strconv.Atoi(v)
	case fEnqueued:
		j.EnqueuedAt = parseMillis(v)
	case fTrace:
		j.TraceParent = v
	case fLastErr:
		j.LastError = v
	case fDue:
		j.Due = parseMillis(v)
	}
}

func jobFromMessage(tenant, dest string, m redis.XMessage) Job {
	j := Job{ID: m.ID, Tenant: tenant, Destination: dest}
	for f, v := range m.Values {
		s, _ := v.(string)
		j.setField(f, s)
	}
	return j
}

func parseMillis(v string) time.Time {
	ms, err := strconv.ParseInt(v, 10, 64)
	if err != nil || ms <= 0 {
		return time.Time{}
	}
	return time.UnixMilli(ms)
}

// idTime is the time encoded in a stream entry id ("<ms>-<seq>").
func idTime(id string) time.Time {
	ms, _, _ := strings.Cut(id, "-")
	return parseMillis(ms)
}

// validTenant reports whether tenant can be a key's hash tag.
func validTenant(tenant string) bool {
	return tenant != "" && !strings.ContainsAny(tenant, "{}")
}

func tenantPrefix(tenant string) string { return "sb:{" + tenant + "}:" }

func streamPrefix(tenant string) string { return tenantPrefix(tenant) + "d:" }

func streamKey(tenant, dest string) string { return streamPrefix(tenant) + dest }

func retryKey(tenant string) string { return tenantPrefix(tenant) + "retry" }

func dlqKey(tenant string) string { return tenantPrefix(tenant) + "dlq" }

func seenKey(tenant, key string) string {
	sum := sha256.Sum256([]byte(key))
	return tenantPrefix(tenant) + "seen:" + base64.RawURLEncoding.EncodeToString(sum[:16])
}

func countsKey(tenant string) string { return tenantPrefix(tenant) + "counts" }

// unavailable wraps a Redis failure so callers can map it to 503.
func unavailable(op string, err error) error {
	return fmt.Errorf("queue %s: %w: %w", op, switchboard.ErrUnavailable, err)
}

// isNoGroup reports whether err says the stream or its consumer group is
// gone, e.g. after FLUSHALL or a restart without persistence. Redis 7 also
// unblocks a blocked XREADGROUP with an UNBLOCKED error when its stream is
// deleted.
func isNoGroup(err error) bool {
	var re redis.Error
	if !errors.As(err, &re) {
		return false
	}
	msg := re.Error()
	return strings.HasPrefix(msg, "NOGROUP") || strings.HasPrefix(msg, "UNBLOCKED")
}

// errUnexpectedReply: a script answered in a shape this code does not know.
var errUnexpectedReply = errors.New("unexpected reply from redis")

func isNoScript(err error) bool {
	return err != nil && strings.HasPrefix(err.Error(), "NOSCRIPT")
}

func millis(t time.Time) string { return strconv.FormatInt(t.UnixMilli(), 10) }

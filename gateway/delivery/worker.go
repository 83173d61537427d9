// Package delivery is the dispatcher: it reads jobs from Redis for the
// destinations whose gate is open, signs and POSTs them, classifies the
// outcome and carries out the decision (ack, retry later, dead-letter).
package delivery

import (
	"cmp"
	"context"
	"errors"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"reflect"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sony/gobreaker/v2"
	"golang.org/x/time/rate"

	switchboard "github.com/switchboard-gw/switchboard"
	"github.com/switchboard-gw/switchboard/policy"
	"github.com/switchboard-gw/switchboard/queue"
)

// UserAgent is sent with every delivery.
var UserAgent = "Switchboard/dev"

// Worker delivers one tenant's jobs. One blocking read serves all of the
// tenant's destinations, so a thousand destinations need neither a
// goroutine nor a Redis connection each; each job then runs in its own
// goroutine, bounded per destination by max_in_flight.
type Worker struct {
	Store *queue.Store
	// Tenant is the configuration the worker starts with; Update replaces
	// it while running.
	Tenant *policy.Tenant
	Client *http.Client
	// Consumer names this instance in the consumer group.
	Consumer string
	Log      *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Acker, when not nil, acknowledges delivered jobs in shared pipelines;
	// nil acknowledges each on its own.
	Acker *queue.Acker
	// Observe, when not nil, is called after every attempt, and for a job
	// dead-lettered because its attempts were lost (buryLost) with the last
	// of them: Result Lost, j.Attempts+1 its number, no latency.
	Observe func(dest string, j *queue.Job, o Outcome, d Decision, latency time.Duration)
	// RateLimited, when not nil, is called each time a destination's jobs
	// wait because its rate limit, or the tenant's delivery_rate, is
	// spent: jobs read that wait for their slot (once per batch), or jobs
	// found by the first read after such a hold held the destination
	// unread (once per hold). A hold that no job waited out is no wait.
	RateLimited func(dest string)
	// RateScope is where rate limits are kept: policy.RateScopeRedis (in
	// total across instances, one script call per batch of jobs read) or
	// policy.RateScopeLocal ("" means local: in this process).
	RateScope string
	// ReadSlots, when not nil, bounds how many workers of the process wait
	// in a blocking read at once (each holds a Redis connection while it
	// waits): a worker that finds none free reads without waiting and then
	// waits for Wake or readBlock. Nil: every read may block.
	ReadSlots chan struct{}

	once    sync.Once
	id      string
	st      atomic.Pointer[state]
	wake    chan struct{}
	retried chan struct{} // a retry was scheduled: maintain plans its wake again
	running sync.WaitGroup
	// heldUntil (unix ns) is when the tenant's delivery_rate next allows a
	// send, as the Redis limiter last said: no read before it.
	heldUntil atomic.Int64
	// ord delivers the ordered destinations (ordered.go).
	ord ordered
	// promoteEvery and orderedEvery replace promoteEvery and orderedTick
	// when set (tests: a retry must leave when due, not at a tick).
	promoteEvery, orderedEvery time.Duration
	// pruneEvery and pruneIdle replace pruneEvery and consumerIdle when
	// set (tests).
	pruneEvery, pruneIdle time.Duration
	// touchEvery and visibility replace touchEvery and the visibility
	// timeout of reclaims when set (tests).
	touchEvery, visibility time.Duration
}

// state is the worker's configuration and runtime state; Update swaps it
// whole, so a reader sees one or the other.
type state struct {
	tenant *policy.Tenant
	dests  map[string]*target
	// limiter is the tenant's delivery_rate in this process (local scope).
	limiter *rate.Limiter
}

// target is a destination's runtime state: its slots, limiter and breaker.
type target struct {
	id      string
	cfg     *policy.Destination
	secrets [][]byte
	slots   chan struct{}
	limiter *rate.Limiter // local scope; nil: no rate
	breaker *gobreaker.TwoStepCircuitBreaker[struct{}]
	// heldUntil (unix ns) is when the destination's rate next allows a
	// send, as the Redis limiter last said (redis scope).
	heldUntil atomic.Int64
	// rateHeld: a rate limit held it unread since its last read
	// (noteRate, noteRead).
	rateHeld bool
	// lease says, for a destination configured unordered here, whether
	// another instance holds its ordered lease (checkLeases): leaseUnknown
	// until first checked, then leaseFree or leaseElsewhere. It is read
	// and reclaimed here only when leaseFree.
	lease atomic.Int32
}

// The states of target.lease.
const (
	leaseUnknown int32 = iota
	leaseFree
	leaseElsewhere
)

func (w *Worker) now() time.Time {
	if w.Now != nil {
		return w.Now()
	}
	return time.Now()
}

func (w *Worker) init() {
	w.once.Do(func() {
		w.id = w.Tenant.ID
		w.wake = make(chan struct{}, 1)
		w.retried = make(chan struct{}, 1)
		w.st.Store(w.build(w.Tenant, nil))
	})
}

// build makes the state for tenant t, keeping from old (nil: none) the
// runtime state of every destination whose settings did not change, and
// the tenant limiter if delivery_rate did not.
func (w *Worker) build(t *policy.Tenant, old *state) *state {
	st := &state{tenant: t, dests: make(map[string]*target, len(t.Destinations))}
	if old != nil && old.tenant.DeliveryRate == t.DeliveryRate {
		st.limiter = old.limiter
	} else if !t.DeliveryRate.Unlimited() {
		st.limiter = rate.NewLimiter(rate.Limit(t.DeliveryRate.PerSecond), t.DeliveryRate.Burst)
	}
	for id, d := range t.Destinations {
		if d.IsPull() {
			continue // its app fetches its jobs (gateway/pull.go)
		}
		var prev *target
		if old != nil {
			if prev = old.dests[id]; prev != nil && reflect.DeepEqual(prev.cfg, d) {
				st.dests[id] = prev
				continue
			}
		}
		t := w.newTarget(id, d)
		if prev != nil && !prev.cfg.Ordered && !d.Ordered {
			t.lease.Store(prev.lease.Load()) // unordered before too: what was known holds
		}
		st.dests[id] = t
	}
	return st
}

// Update makes the worker follow t (the same tenant, reloaded) from its
// next read on. A destination whose settings did not change keeps its
// limiter, breaker and attempts in flight; a changed one starts afresh; a
// removed one is no longer read, and its jobs stay in Redis. Attempts in
// flight finish with the settings they started with.
func (w *Worker) Update(t *policy.Tenant) {
	w.init()
	w.st.Store(w.build(t, w.st.Load()))
	w.Wake()
}

func (w *Worker) newTarget(id string, d *policy.Destination) *target {
	t := &target{id: id, cfg: d, slots: make(chan struct{}, d.MaxInFlight), secrets: Secrets(d)}
	if !d.Rate.Unlimited() {
		t.limiter = rate.NewLimiter(rate.Limit(d.Rate.PerSecond), d.Rate.Burst)
	}
	tenant := w.id
	t.breaker = newBreaker(id, d.Breaker, func(from, to gobreaker.State) {
		w.Log.Warn("breaker state changed", "tenant", tenant, "destination", id,
			"from", from.String(), "to", to.String())
	})
	return t
}

// newBreaker is a destination's circuit breaker. While closed it counts
// over a rolling window of b.Interval in ten buckets, and trips once
// requests >= min_requests and failures/requests >= failure_ratio; it then
// stays open for open_for, and half-open lets probes attempts through: all
// must succeed to close it, one failure opens it again. The two-step form
// lets the worker ask before reading and report after the attempt.
func newBreaker(id string, b policy.Breaker, changed func(from, to gobreaker.State)) *gobreaker.TwoStepCircuitBreaker[struct{}] {
	return gobreaker.NewTwoStepCircuitBreaker[struct{}](gobreaker.Settings{
		Name:         id,
		MaxRequests:  uint32(max(b.Probes, 1)),
		Interval:     b.Interval.D(),
		BucketPeriod: b.Interval.D() / 10,
		Timeout:      b.OpenFor.D(),
		ReadyToTrip: func(c gobreaker.Counts) bool {
			return int(c.Requests) >= b.MinRequests &&
				float64(c.TotalFailures)/float64(c.Requests) >= b.FailureRatio
		},
		OnStateChange: func(_ string, from, to gobreaker.State) { changed(from, to) },
	})
}

// BreakerState reports a destination's breaker state ("closed", "open",
// "half-open"), or "" for an unknown destination.
func (w *Worker) BreakerState(dest string) string {
	w.init()
	if t, ok := w.st.Load().dests[dest]; ok {
		return t.breaker.State().String()
	}
	return ""
}

// Wake makes the worker read again now: the caller has just enqueued.
func (w *Worker) Wake() {
	w.init()
	select {
	case w.wake <- struct{}{}:
	default:
	}
	w.ord.poke()
}

// readBlock bounds one blocking read, so that a destination whose gate has
// just opened is read from again soon even when nothing new arrives.
const readBlock = 100 * time.Millisecond

// Run reads and delivers until ctx is done, then waits for the attempts in
// flight to finish (each bounded by its destination's timeout) and records
// their outcomes. It returns nil on a clean stop.
func (w *Worker) Run(ctx context.Context) error {
	w.init()
	// Before the first read: is any destination delivered in order by
	// another instance (checkLeases)? maintain checks again every second.
	_ = w.checkLeases(ctx, w.st.Load())
	w.running.Add(1)
	go func() {
		defer w.running.Done()
		w.maintain(ctx)
	}()
	w.running.Add(1)
	go func() {
		defer w.running.Done()
		w.runOrdered(ctx) // ordered.go
	}()
	var fails int
	for ctx.Err() == nil {
		st := w.st.Load()
		want := w.gates(st)
		if len(want) == 0 {
			w.idle(ctx)
			continue
		}
		block := readBlock
		if w.ReadSlots != nil {
			select {
			case w.ReadSlots <- struct{}{}:
			default:
				block = 0
			}
		}
		jobs, err := w.Store.Read(ctx, w.id, w.Consumer, want, block)
		if block > 0 && w.ReadSlots != nil {
			<-w.ReadSlots
		}
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			fails++
			w.Log.Warn("read jobs failed; retrying", "tenant", w.id, "err", err)
			pause(ctx, fails)
			continue
		}
		fails = 0
		reported := w.noteRead(st, want, jobs)
		// A reload during the read: follow the configuration now in force
		// (a job of a destination removed meanwhile goes back to Redis).
		w.dispatch(ctx, w.st.Load(), jobs, reported)
		if block == 0 && len(jobs) == 0 {
			w.idle(ctx)
		}
	}
	w.running.Wait()
	return nil
}

// idle waits for Wake, ctx or readBlock.
func (w *Worker) idle(ctx context.Context) {
	t := time.NewTimer(readBlock)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-w.wake:
	case <-t.C:
	}
}

// pause waits a bounded exponential backoff (100ms doubling to 5s) while the
// store is away, so the worker resumes by itself when it returns.
func pause(ctx context.Context, fails int) {
	d := 100 * time.Millisecond << min(fails-1, 6)
	d = min(d, 5*time.Second)
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// start runs one job in its own goroutine after delay (its rate slot),
// holding one of its destination's slots meanwhile. If ctx ends during the
// delay the job goes back to its stream untouched. It never waits for a
// slot: gates read no more than the free slots, and a reclaimed job that
// finds none goes back to its stream.
func (w *Worker) start(ctx context.Context, t *target, j *queue.Job, delay time.Duration) {
	select {
	case t.slots <- struct{}{}:
	default:
		w.release(j, "no free slot")
		return
	}
	w.running.Add(1)
	go func() {
		defer w.running.Done()
		defer func() { <-t.slots; w.Wake() }()
		defer w.keepClaimed(j)()
		if delay > 0 {
			tm := time.NewTimer(delay)
			select {
			case <-tm.C:
			case <-ctx.Done():
				tm.Stop()
				w.release(j, "stopping")
				return
			}
		}
		w.deliver(t, j)
	}()
}

// touchEvery is how often a job whose attempt is still running is touched
// (queue.Store.Touch): well within the shortest visibility timeout any
// instance can have (twice a delivery timeout plus 5 s), so that none
// reclaims it, whatever its own timeouts after a reload.
const touchEvery = 2 * time.Second

// keepClaimed touches j every touchEvery until the returned stop is
// called. Most attempts end long before the first touch.
func (w *Worker) keepClaimed(job *queue.Job) (stop func()) {
	j := *job // the attempt may move the job (a new ID) meanwhile
	var mu sync.Mutex
	stopped := false
	var tm *time.Timer
	mu.Lock()
	defer mu.Unlock()
	every := cmp.Or(w.touchEvery, touchEvery)
	tm = time.AfterFunc(every, func() {
		ctx, cancel := context.WithTimeout(context.Background(), every)
		defer cancel()
		if _, err := w.Store.Touch(ctx, &j, w.Consumer); err != nil {
			w.Log.Warn("keeping a running attempt's job claimed failed", "tenant", w.id,
				"destination", j.Destination, "event_id", j.EventID, "err", err)
		}
		mu.Lock()
		defer mu.Unlock()
		if !stopped {
			tm.Reset(every)
		}
	})
	return func() {
		mu.Lock()
		defer mu.Unlock()
		stopped = true
		tm.Stop()
	}
}

// release hands a job back to its stream without counting an attempt.
func (w *Worker) release(j *queue.Job, why string) {
	if err := w.Store.Release(context.Background(), j); err != nil {
		w.Log.Warn("release job failed; it will be reclaimed", "tenant", w.id, "destination", j.Destination,
			"event_id", j.EventID, "reason", why, "err", err)
	}
}

// deliver makes one attempt and records its outcome. It does not use the
// worker's context: an attempt in flight at shutdown is finished (bounded by
// the destination's timeout) and its outcome recorded, so none is lost.
func (w *Worker) deliver(t *target, j *queue.Job) {
	ctx := context.Background()
	if w.dropStale(t, j) { // drop_stale_status (ordered.go)
		return
	}
	if j.Attempts >= t.cfg.Retry.MaxAttempts {
		w.buryLost(ctx, j)
		return
	}
	done, err := t.breaker.Allow()
	if err != nil {
		// Opened since we read: hand the job back untouched.
		w.release(j, "breaker "+t.breaker.State().String())
		return
	}
	attempt, o, d, latency, now := w.attempt(ctx, t, j, done)
	var serr error
	switch d.Action {
	case Ack:
		serr = w.ack(ctx, t, j) // records the status rank for drop_stale_status
	case RetryLater:
		if serr = w.Store.Retry(ctx, j, attempt, d.At, o.Err); serr == nil {
			select { // maintain promotes it when due, not at its next tick
			case w.retried <- struct{}{}:
			default:
			}
		}
	case DeadLetter:
		serr = w.Store.DeadLetter(ctx, j, attempt, o.Err, now)
	}
	level := slog.LevelInfo
	if o.Result != Delivered {
		level = slog.LevelWarn
	}
	w.Log.Log(ctx, level, "delivery attempt", "tenant", w.id, "destination", j.Destination,
		"event_id", j.EventID, "attempt", attempt, "status", o.Status, "latency_ms", latency.Milliseconds(),
		"outcome", actionName(d.Action), "error", o.Err)
	if serr != nil {
		// The job stays pending and is reclaimed after the visibility
		// timeout: delivered at least once, never lost.
		w.Log.Error("recording delivery outcome failed; the job will be reclaimed", "tenant", w.id,
			"destination", j.Destination, "event_id", j.EventID, "err", serr)
	}
	if w.Observe != nil {
		w.Observe(j.Destination, j, o, d, latency)
	}
}

func actionName(a Action) string {
	switch a {
	case Ack:
		return "delivered"
	case RetryLater:
		return "retry"
	}
	return "dead_letter"
}

// lostAttempts is the last_error of a job dead-lettered because its
// attempts were spent by instances that stopped while making them.
const lostAttempts = "max_attempts spent: the instances delivering it stopped before recording an outcome"

// buryLost dead-letters a reclaimed job without an attempt: its attempts
// (counted by queue.Reclaim) include those of instances that stopped
// mid-attempt, and they spend max_attempts like any other. An event whose
// delivery kills its instance ends here instead of going round forever.
func (w *Worker) buryLost(ctx context.Context, j *queue.Job) {
	err := w.Store.DeadLetter(ctx, j, j.Attempts, lostAttempts, w.now())
	w.Log.Warn("job dead-lettered: max_attempts spent on attempts that never recorded an outcome",
		"tenant", w.id, "destination", j.Destination, "event_id", j.EventID, "attempts", j.Attempts)
	if err != nil {
		w.Log.Error("recording delivery outcome failed; the job will be reclaimed", "tenant", w.id,
			"destination", j.Destination, "event_id", j.EventID, "err", err)
		return
	}
	if w.Observe != nil && j.Attempts > 0 {
		last := *j
		last.Attempts-- // the last lost attempt is the one reported
		w.Observe(j.Destination, &last, Outcome{Result: Lost, Err: lostAttempts}, Decision{Action: DeadLetter}, 0)
	}
}

// attempt makes one attempt of j (the breaker already allowed it and
// done reports to it) and decides what follows.
func (w *Worker) attempt(ctx context.Context, t *target, j *queue.Job, done func(error)) (attempt int, o Outcome, d Decision, latency time.Duration, now time.Time) {
	attempt = j.Attempts + 1
	start := w.now()
	o = w.post(ctx, t, j, attempt)
	latency = w.now().Sub(start)
	if o.Healthy {
		done(nil)
	} else {
		done(errUnhealthy)
	}
	now = w.now()
	return attempt, o, Next(o, attempt, t.cfg.Retry, j.EnqueuedAt, now, rand.Float64), latency, now
}

// post sends one signed attempt.
func (w *Worker) post(ctx context.Context, t *target, j *queue.Job, attempt int) Outcome {
	ctx, cancel := context.WithTimeout(ctx, t.cfg.Timeout.D())
	defer cancel()
	now := w.now()
	req, err := NewRequest(ctx, t.cfg, t.secrets, j, attempt, now) // request.go
	if err != nil {
		return Outcome{Result: Gone, Err: err.Error()}
	}
	resp, err := w.Client.Do(req)
	if err != nil {
		return Classify(nil, err, now)
	}
	// Read a bounded amount so the connection can be reused.
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, MaxResponseBytes))
	resp.Body.Close()
	return Classify(resp, nil, w.now())
}

// render builds the body for the destination's format.
func render(d *policy.Destination, j *queue.Job) (body []byte, contentType string, extra map[string]string, err error) {
	switch d.Format {
	case policy.FormatRaw:
		var raw switchboard.Raw
		if err := jsonUnmarshal(j.Raw, &raw); err != nil {
			return nil, "", nil, err
		}
		ct := raw.ContentType
		if ct == "" {
			ct = "application/octet-stream"
		}
		b := raw.Body
		if raw.Method == http.MethodGet {
			b = []byte(raw.Query)
			ct = "application/x-www-form-urlencoded"
		}
		return b, ct, nil, nil
	case policy.FormatTwilio:
		return renderTwilio(d, j)
	}
	return j.Event, "application/json", nil, nil
}

var (
	errNoRaw     = errors.New("the raw callback was not stored with this job")
	errUnhealthy = errors.New("5xx, timeout or connection error")
)

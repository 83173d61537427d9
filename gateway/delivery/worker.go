// Package delivery is the dispatcher: it reads jobs from Redis for the
// destinations whose gate is open, signs and POSTs them, classifies the
// outcome and carries out the decision (ack, retry later, dead-letter).
package delivery

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/sony/gobreaker/v2"
	"golang.org/x/time/rate"

	switchboard "github.com/switchboard-gw/switchboard"
	"github.com/switchboard-gw/switchboard/gateway/webhook"
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
	Store  *queue.Store
	Tenant *policy.Tenant
	Client *http.Client
	// Consumer names this instance in the consumer group.
	Consumer string
	Log      *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Observe, when not nil, is called after every attempt.
	Observe func(dest string, j *queue.Job, o Outcome, d Decision, latency time.Duration)

	once    sync.Once
	dests   map[string]*target
	wake    chan struct{}
	running sync.WaitGroup
	tenant  *rate.Limiter
}

// target is a destination's runtime state: its slots, limiter and breaker.
type target struct {
	cfg     *policy.Destination
	secrets [][]byte
	slots   chan struct{}
	limiter *rate.Limiter
	breaker *gobreaker.TwoStepCircuitBreaker[struct{}]
}

func (w *Worker) now() time.Time {
	if w.Now != nil {
		return w.Now()
	}
	return time.Now()
}

func (w *Worker) init() {
	w.once.Do(func() {
		w.wake = make(chan struct{}, 1)
		w.dests = map[string]*target{}
		if !w.Tenant.DeliveryRate.Unlimited() {
			w.tenant = rate.NewLimiter(rate.Limit(w.Tenant.DeliveryRate.PerSecond), w.Tenant.DeliveryRate.Burst)
		}
		for id, d := range w.Tenant.Destinations {
			w.dests[id] = w.newTarget(id, d)
		}
	})
}

func (w *Worker) newTarget(id string, d *policy.Destination) *target {
	t := &target{cfg: d, slots: make(chan struct{}, d.MaxInFlight)}
	for _, s := range d.Secret {
		key, _ := policy.ParseSecret(s) // validated by policy.Load
		t.secrets = append(t.secrets, key)
	}
	if !d.Rate.Unlimited() {
		t.limiter = rate.NewLimiter(rate.Limit(d.Rate.PerSecond), d.Rate.Burst)
	}
	b := d.Breaker
	log := w.Log
	t.breaker = gobreaker.NewTwoStepCircuitBreaker[struct{}](gobreaker.Settings{
		Name:        id,
		MaxRequests: uint32(b.Probes),
		Interval:    b.Interval.D(),
		Timeout:     b.OpenFor.D(),
		ReadyToTrip: func(c gobreaker.Counts) bool {
			return int(c.Requests) >= b.MinRequests &&
				float64(c.TotalFailures)/float64(c.Requests) >= b.FailureRatio
		},
		OnStateChange: func(name string, from, to gobreaker.State) {
			log.Warn("breaker state changed", "tenant", w.Tenant.ID, "destination", name,
				"from", from.String(), "to", to.String())
		},
	})
	return t
}

// BreakerState reports a destination's breaker state ("closed", "open",
// "half-open"), or "" for an unknown destination.
func (w *Worker) BreakerState(dest string) string {
	w.init()
	if t, ok := w.dests[dest]; ok {
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
}

// readBlock bounds one blocking read, so that a destination whose gate has
// just opened is read from again soon even when nothing new arrives.
const readBlock = 100 * time.Millisecond

// Run reads and delivers until ctx is done, then waits for the attempts in
// flight to finish (each bounded by its destination's timeout) and records
// their outcomes. It returns nil on a clean stop.
func (w *Worker) Run(ctx context.Context) error {
	w.init()
	w.running.Add(1)
	go func() {
		defer w.running.Done()
		w.maintain(ctx)
	}()
	var fails int
	for ctx.Err() == nil {
		want := w.gates()
		if len(want) == 0 {
			select {
			case <-ctx.Done():
			case <-w.wake:
			case <-time.After(readBlock):
			}
			continue
		}
		jobs, err := w.Store.Read(ctx, w.Tenant.ID, w.Consumer, want, readBlock)
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			fails++
			w.Log.Warn("read jobs failed; retrying", "tenant", w.Tenant.ID, "err", err)
			pause(ctx, fails)
			continue
		}
		fails = 0
		for i := range jobs {
			w.start(&jobs[i])
		}
	}
	w.running.Wait()
	return nil
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

// gates returns, per destination that may be read from, how many jobs to
// read: its free slots, no more than its rate allows, none while its breaker
// is open. Held jobs stay in Redis; no attempt is counted for them.
func (w *Worker) gates() map[string]int {
	now := w.now()
	want := map[string]int{}
	tenantTokens := -1
	if w.tenant != nil {
		tenantTokens = int(w.tenant.TokensAt(now))
		if tenantTokens < 1 {
			return want
		}
	}
	for id, t := range w.dests {
		n := cap(t.slots) - len(t.slots)
		if n <= 0 || t.breaker.State() == gobreaker.StateOpen {
			continue
		}
		if t.breaker.State() == gobreaker.StateHalfOpen {
			n = min(n, int(t.cfg.Breaker.Probes))
		}
		if t.limiter != nil {
			n = min(n, int(t.limiter.TokensAt(now)))
		}
		if tenantTokens >= 0 {
			n = min(n, tenantTokens)
		}
		if n > 0 {
			want[id] = n
		}
	}
	return want
}

func (w *Worker) start(j *queue.Job) {
	t, ok := w.dests[j.Destination]
	if !ok {
		// A destination removed from the config: its jobs stay in Redis.
		return
	}
	now := w.now()
	if t.limiter != nil {
		t.limiter.ReserveN(now, 1)
	}
	if w.tenant != nil {
		w.tenant.ReserveN(now, 1)
	}
	t.slots <- struct{}{}
	w.running.Add(1)
	go func() {
		defer w.running.Done()
		defer func() { <-t.slots; w.Wake() }()
		w.deliver(t, j)
	}()
}

// deliver makes one attempt and records its outcome. It does not use the
// worker's context: an attempt in flight at shutdown is finished (bounded by
// the destination's timeout) and its outcome recorded, so none is lost.
func (w *Worker) deliver(t *target, j *queue.Job) {
	ctx := context.Background()
	done, err := t.breaker.Allow()
	if err != nil {
		// Opened since we read: hand the job back untouched.
		if err := w.Store.Release(ctx, j); err != nil {
			w.Log.Warn("release job failed; it will be reclaimed", "tenant", w.Tenant.ID, "destination", j.Destination, "event_id", j.EventID, "err", err)
		}
		return
	}
	attempt := j.Attempts + 1
	start := w.now()
	o := w.post(ctx, t, j, attempt)
	latency := w.now().Sub(start)
	if o.Healthy {
		done(nil)
	} else {
		done(errUnhealthy)
	}

	now := w.now()
	d := Next(o, attempt, t.cfg.Retry, j.EnqueuedAt, now, rand.Float64)
	var serr error
	switch d.Action {
	case Ack:
		serr = w.Store.Ack(ctx, j)
	case RetryLater:
		serr = w.Store.Retry(ctx, j, attempt, d.At, o.Err)
	case DeadLetter:
		serr = w.Store.DeadLetter(ctx, j, attempt, o.Err, now)
	}
	level := slog.LevelInfo
	if o.Result != Delivered {
		level = slog.LevelWarn
	}
	w.Log.Log(ctx, level, "delivery attempt", "tenant", w.Tenant.ID, "destination", j.Destination,
		"event_id", j.EventID, "attempt", attempt, "status", o.Status, "latency_ms", latency.Milliseconds(),
		"outcome", actionName(d.Action), "error", o.Err)
	if serr != nil {
		// The job stays pending and is reclaimed after the visibility
		// timeout: delivered at least once, never lost.
		w.Log.Error("recording delivery outcome failed; the job will be reclaimed", "tenant", w.Tenant.ID,
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

// post sends one signed attempt.
func (w *Worker) post(ctx context.Context, t *target, j *queue.Job, attempt int) Outcome {
	ctx, cancel := context.WithTimeout(ctx, t.cfg.Timeout.D())
	defer cancel()
	body, contentType, extra, err := render(t.cfg, j)
	if err != nil {
		return Outcome{Result: Gone, Err: "cannot render event: " + err.Error()}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, t.cfg.URL, bytes.NewReader(body))
	if err != nil {
		return Outcome{Result: Gone, Err: "bad destination URL: " + err.Error()}
	}
	now := w.now()
	h := req.Header
	h.Set("Content-Type", contentType)
	h.Set("User-Agent", UserAgent)
	h.Set(webhook.HeaderID, j.EventID)
	h.Set(webhook.HeaderTimestamp, strconv.FormatInt(now.Unix(), 10))
	h.Set(webhook.HeaderSignature, webhook.Sign(t.secrets, j.EventID, now, body))
	h.Set("Switchboard-Attempt", strconv.Itoa(attempt))
	if j.TraceParent != "" {
		h.Set("traceparent", j.TraceParent)
	}
	for k, v := range extra {
		h.Set(k, v)
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

package gateway

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/http/httputil"
	"slices"
	"sync"
	"time"

	switchboard "github.com/switchboard-gw/switchboard"
	"github.com/switchboard-gw/switchboard/gateway/carrier"
	"github.com/switchboard-gw/switchboard/gateway/delivery"
	"github.com/switchboard-gw/switchboard/policy"
	"github.com/switchboard-gw/switchboard/queue"
)

// Pass-through: a source with passthrough: {destination: D, timeout: T}
// forwards each callback, while the carrier waits, to D — in D's format,
// signed like any delivery, through httputil.ReverseProxy — and gives the
// carrier D's answer (a TwiML <Message>, say) when it is a 2xx within T.
// That counts as D's delivery, attempt 1. Any other answer, a timeout or
// D's open breaker gives the carrier its usual acknowledgement, and D gets
// the event from the queue like any destination: attempt 1 spent (in the
// retry set, due after its backoff; with the breaker open the attempt is
// not made, but spent all the same, as DESIGN has it). Either way the
// event is stored and routed to the other destinations as usual, and D
// gets it once. A callback that holds several events (or none) is not
// passed through: its events are queued for D.

// passState is the pass-through's runtime. The zero value is ready.
type passState struct {
	once sync.Once
	// transport carries the forwarded requests; nil: the delivery client's
	// (with its private-network guard), made at first use.
	transport http.RoundTripper
	// allow, when set, asks the destination's breaker for an attempt and
	// reports it (delivery.Worker.Passthrough); nil: no breaker.
	allow func(tenant, dest string) (delivery.PassthroughDone, bool)
}

func (p *passState) roundTripper(allowPrivate bool) http.RoundTripper {
	p.once.Do(func() {
		if p.transport == nil {
			p.transport = delivery.NewClient(allowPrivate).Transport
		}
	})
	return p.transport
}

// passthroughBreaker is the Gateway's pass.allow in a Server: tenant's
// worker holds the breakers.
func (s *Server) passthroughBreaker(tid, dest string) (delivery.PassthroughDone, bool) {
	if w := s.worker(tid); w != nil {
		return w.Passthrough(dest)
	}
	return nil, false
}

// withPassthrough adds s's pass-through destination to the routed
// destinations: it takes every callback of its source.
func (s *source) withPassthrough(dests []string) []string {
	if pt := s.cfg.Passthrough; pt != nil && !slices.Contains(dests, pt.Destination) {
		dests = append(dests, pt.Destination)
	}
	return dests
}

// passAnswer is the app's 2xx answer, to be given to the carrier once the
// event is stored.
type passAnswer struct {
	status int
	header http.Header
	body   []byte
}

// answered reports whether the app's answer goes to the carrier.
func (a *passAnswer) answered() bool { return a != nil }

// reply puts the app's headers on h and returns its status and body.
func (a *passAnswer) reply(h http.Header) carrier.Response {
	for k, v := range a.header {
		if k != "Content-Length" {
			h[k] = v
		}
	}
	ct := a.header.Get("Content-Type")
	if ct == "" {
		h["Content-Type"] = nil // as the app gave it: no type, and none sniffed
	}
	return carrier.Response{Status: a.status, ContentType: ct, Body: a.body}
}

// passthrough makes the pass-through attempt for a callback whose events
// were routed into entries (the pass-through destination among them, see
// withPassthrough). It moves that destination from the event entry's
// Destinations to its Attempted: the attempt delivered it, or its failure
// is stored now (retry set or dead-letter stream, attempt 1 spent), so it
// gets no job, but the history lists it and recover re-sends to it. It
// returns the app's answer when the carrier should get it, nil when the
// carrier gets its usual acknowledgement. An error means the store is
// unavailable: answer 503.
//
// report, never nil, must be called once the entries' enqueue is over
// (whatever its result): it completes the breaker's step and reports the
// attempt to the worker's Observe hook (metrics, trace, history), whose
// history record is dropped unless the event's history was written first.
func (g *Gateway) passthrough(r *http.Request, logger func() *slog.Logger, t *tenant, s *source, events []switchboard.Event, entries []*queue.Entry, start time.Time) (ans *passAnswer, report func(), err error) {
	report = func() {}
	pt := s.cfg.Passthrough
	if pt == nil {
		return nil, report, nil
	}
	tid, dest := t.cfg.ID, pt.Destination
	log := logger().With("destination", dest, "passthrough", true)
	if len(events) != 1 {
		if len(events) > 1 {
			log.Info("pass-through skipped: the callback holds several events; they are queued for the destination")
		}
		return nil, report, nil
	}
	var entry *queue.Entry
	for _, e := range entries {
		if e.EventID == events[0].ID && slices.Contains(e.Destinations, dest) {
			entry = e
		}
	}
	d := t.cfg.Destinations[dest]
	if entry == nil || d == nil || d.IsPull() {
		return nil, report, nil
	}
	ctx := r.Context()
	if dup, err := g.store.Seen(ctx, tid, entry.DedupKey); err != nil || dup {
		return nil, report, err // a carrier's retry: the app had it (or has it queued)
	}
	var done delivery.PassthroughDone
	allowed := true
	if g.pass.allow != nil {
		done, allowed = g.pass.allow(tid, dest)
	}

	job := &queue.Job{Tenant: tid, Destination: dest, EventID: entry.EventID, Event: entry.Event,
		EnqueuedAt: start, TraceParent: entry.TraceParent}
	if slices.Contains(entry.RawFor, dest) {
		job.Raw = entry.Raw
	}
	var o delivery.Outcome
	var latency time.Duration
	if allowed {
		ans, o, latency = g.forward(ctx, d, job, passDeadline(start, pt.Timeout.D(), s.cfg.Carrier))
	} else {
		// An open breaker spends attempt 1 as a failure would (DESIGN):
		// the event waits in the retry set for its backoff.
		log.Warn("pass-through skipped: the destination's breaker is open", "event_id", entry.EventID)
		o = delivery.Outcome{Result: delivery.Failed, Err: "not attempted: the destination's circuit breaker is open"}
	}
	now := g.now()
	dec := delivery.Decision{Action: delivery.Ack}
	if o.Result != delivery.Delivered {
		dec = delivery.Next(o, 1, d.Retry, start, now, rand.Float64)
	}
	if done != nil {
		report = func() { done(job, o, dec, latency) }
	}

	// The destination gets the event once: by this attempt, or from the
	// retry set (or dead-letter stream), never also from its stream. It
	// stays routed in the history (with the raw callback, when its format
	// needs it), so that recover re-sends to it.
	entry.Destinations = slices.DeleteFunc(slices.Clone(entry.Destinations), func(s string) bool { return s == dest })
	entry.Attempted = append(slices.Clip(entry.Attempted), dest)
	switch dec.Action {
	case delivery.RetryLater:
		err = g.store.Schedule(ctx, job, 1, dec.At, o.Err)
	case delivery.DeadLetter:
		err = g.store.Bury(ctx, job, 1, o.Err, now)
	}
	level := slog.LevelInfo
	if o.Result != delivery.Delivered {
		level = slog.LevelWarn
	}
	outcome := map[delivery.Action]string{delivery.Ack: "delivered", delivery.RetryLater: "retry", delivery.DeadLetter: "dead_letter"}[dec.Action]
	log.Log(ctx, level, "delivery attempt", "event_id", job.EventID, "attempt", 1, "status", o.Status,
		"latency_ms", latency.Milliseconds(), "outcome", outcome, "error", o.Err)
	if err != nil {
		return nil, report, err
	}
	if dec.Action != delivery.Ack {
		return nil, report, nil
	}
	return ans, report, nil
}

var (
	errNotDelivered = errors.New("the app did not answer 2xx")
	errAnswerSize   = errors.New("the app's answer is too large")
)

// forward sends attempt 1 of j to push destination d through a reverse
// proxy and waits for the answer until deadline. It returns the answer when
// it is a 2xx (read whole, at most delivery.MaxResponseBytes), the
// attempt's outcome and how long it took. The carrier leaving does not cut
// the attempt short: its outcome is recorded all the same.
func (g *Gateway) forward(ctx context.Context, d *policy.Destination, j *queue.Job, deadline time.Time) (*passAnswer, delivery.Outcome, time.Duration) {
	ctx, cancel := context.WithDeadline(context.WithoutCancel(ctx), deadline)
	defer cancel()
	sent := g.now()
	req, err := delivery.NewRequest(ctx, d, delivery.Secrets(d), j, 1, sent)
	if err != nil {
		return nil, delivery.Outcome{Result: delivery.Gone, Err: err.Error()}, 0
	}
	var (
		o          delivery.Outcome
		classified bool
		failed     bool
	)
	rec := &answerRecorder{header: http.Header{}}
	proxy := &httputil.ReverseProxy{
		Rewrite:   func(pr *httputil.ProxyRequest) { pr.Out.Host = "" }, // Host from d's URL
		Transport: g.pass.roundTripper(g.config().Delivery.AllowPrivateNetworks),
		ModifyResponse: func(resp *http.Response) error {
			classified = true
			o = delivery.Classify(resp, nil, g.now())
			if o.Result != delivery.Delivered {
				return errNotDelivered
			}
			body, err := io.ReadAll(io.LimitReader(resp.Body, delivery.MaxResponseBytes+1))
			if err != nil {
				o = delivery.Classify(nil, err, g.now())
				return err
			}
			if len(body) > delivery.MaxResponseBytes {
				o = delivery.Outcome{Result: delivery.Failed, Status: resp.StatusCode, Healthy: true,
					Err: "the answer is larger than 64 KiB; the carrier got the usual acknowledgement"}
				return errAnswerSize
			}
			resp.Body = io.NopCloser(bytes.NewReader(body))
			return nil
		},
		ErrorHandler: func(_ http.ResponseWriter, _ *http.Request, err error) {
			failed = true
			if !classified {
				o = delivery.Classify(nil, err, g.now())
			}
		},
	}
	proxy.ServeHTTP(rec, req)
	latency := g.now().Sub(sent)
	if failed || o.Result != delivery.Delivered {
		return nil, o, latency
	}
	return &passAnswer{status: rec.code, header: rec.header, body: rec.body.Bytes()}, o, latency
}

// answerRecorder keeps what the reverse proxy writes, so that the app's
// answer reaches the carrier only once the event is stored.
type answerRecorder struct {
	header http.Header
	code   int
	body   bytes.Buffer
}

func (a *answerRecorder) Header() http.Header { return a.header }

func (a *answerRecorder) WriteHeader(code int) {
	if a.code == 0 && code >= 200 { // 1xx are informational
		a.code = code
	}
}

func (a *answerRecorder) Write(b []byte) (int, error) {
	if a.code == 0 {
		a.code = http.StatusOK
	}
	return a.body.Write(b)
}

// Flush lets the proxy flush streamed answers; everything is kept anyway.
func (a *answerRecorder) Flush() {}

// passAnswerMargin is kept free before the carrier's deadline to store the
// event and answer, whatever the pass-through timeout.
const passAnswerMargin = 250 * time.Millisecond

// passDeadline is when the app's answer must have come: after timeout, but
// no later than passAnswerMargin before the carrier gives up, so that the
// carrier never waits past its own deadline (a timeout check accepts up to
// just below it).
func passDeadline(start time.Time, timeout time.Duration, carrier string) time.Time {
	return start.Add(min(timeout, policy.CarrierDeadline(carrier)-passAnswerMargin))
}

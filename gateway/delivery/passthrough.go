package delivery

import (
	"time"

	"github.com/switchboard-gw/switchboard/queue"
)

// PassthroughDone reports the outcome of an attempt made outside the worker.
type PassthroughDone func(j *queue.Job, o Outcome, d Decision, latency time.Duration)

// Passthrough asks dest's breaker for one attempt made outside the worker:
// a pass-through, which the ingress makes while the carrier waits. ok is
// false while the breaker is open (or half-open with its probes taken), or
// when dest is not one of the tenant's push destinations: then no attempt
// may be made. Otherwise done must be called once with the attempt's
// outcome and decision: it counts the outcome in the breaker (5xx, timeouts
// and connection errors against it) and reports the attempt to Observe,
// like any attempt of the worker. With the breaker open, done (when not
// nil) reports the attempt spent without being made, to Observe only.
func (w *Worker) Passthrough(dest string) (done PassthroughDone, ok bool) {
	w.init()
	t := w.st.Load().dests[dest]
	if t == nil {
		return nil, false
	}
	allow, err := t.breaker.Allow()
	if err != nil {
		// The breaker is open: no attempt may be made, but attempt 1 is
		// spent all the same (DESIGN), so done reports it to Observe (the
		// event's history lists it), without a step of the breaker.
		return func(j *queue.Job, o Outcome, d Decision, latency time.Duration) {
			if w.Observe != nil {
				w.Observe(dest, j, o, d, latency)
			}
		}, false
	}
	return func(j *queue.Job, o Outcome, d Decision, latency time.Duration) {
		if o.Healthy {
			allow(nil)
		} else {
			allow(errUnhealthy)
		}
		if w.Observe != nil {
			w.Observe(dest, j, o, d, latency)
		}
	}, true
}

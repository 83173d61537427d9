package delivery

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/switchboard-gw/switchboard/policy"
)

// Result is what one delivery attempt came to.
type Result int

// Attempt results.
const (
	Delivered Result = iota // 2xx
	Failed                  // worth retrying
	Gone                    // 410: dead-letter at once
	// Lost: made by an instance that stopped before recording what came
	// of it; known only by the count queue.Reclaim keeps (Worker.buryLost).
	Lost
)

// Outcome classifies one attempt.
type Outcome struct {
	Result Result
	// Status is the HTTP status code, 0 when no response came.
	Status int
	// RetryAfter is the receiver's Retry-After (429, 503), 0 if none.
	RetryAfter time.Duration
	// Healthy is false when the attempt counts against the breaker: 5xx,
	// timeouts and connection errors. A 4xx comes from a live receiver.
	Healthy bool
	// Err says what went wrong, for the dead-letter entry and the log.
	Err string
}

// Classify turns an HTTP response or transport error into an Outcome. resp
// may be nil when err is not.
func Classify(resp *http.Response, err error, now time.Time) Outcome {
	if err != nil {
		return Outcome{Result: Failed, Healthy: false, Err: describe(err)}
	}
	code := resp.StatusCode
	o := Outcome{Status: code, Healthy: code < 500}
	switch {
	case code >= 200 && code < 300:
		o.Result = Delivered
	case code >= 300 && code < 400:
		o.Result = Failed
		o.Err = fmt.Sprintf("HTTP %d: redirects are not followed", code)
	case code == http.StatusGone:
		o.Result = Gone
		o.Err = "HTTP 410: the receiver says this endpoint is gone"
	default:
		o.Result = Failed
		o.Err = fmt.Sprintf("HTTP %d", code)
		if code == http.StatusTooManyRequests || code == http.StatusServiceUnavailable {
			o.RetryAfter = retryAfter(resp.Header.Get("Retry-After"), now)
		}
	}
	return o
}

// retryAfter parses delay-seconds or an HTTP date; 0 when absent or bad.
func retryAfter(v string, now time.Time) time.Duration {
	if v == "" {
		return 0
	}
	if s, err := strconv.Atoi(v); err == nil {
		if s < 0 {
			return 0
		}
		return time.Duration(s) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}

func describe(err error) string {
	var ne net.Error
	switch {
	case errors.Is(err, errBlockedAddress):
		var be *blockedError
		if errors.As(err, &be) {
			return be.Error()
		}
		return err.Error()
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return "timeout: no response within the delivery timeout"
	}
	var oe *net.OpError
	if errors.As(err, &oe) {
		return "connection error: " + oe.Err.Error()
	}
	return "request error: " + err.Error()
}

// Action is what to do with a job after an attempt.
type Action int

// Actions.
const (
	Ack Action = iota
	RetryLater
	DeadLetter
)

// Decision is the next step for a job.
type Decision struct {
	Action Action
	// At is when to retry (RetryLater only).
	At time.Time
}

// Next decides what follows an attempt: the attempt-th (1 = the first try)
// of a job whose event arrived at arrived. 2xx acks; 410 dead-letters; a job
// that has had max_attempts attempts, or whose event is older than max_age,
// is dead-lettered; otherwise it retries after Retry-After (capped at
// retry.max) or the backoff — unless that retry would come once max_age
// has passed: no attempt is made then, so the job is dead-lettered now.
// rnd is the jitter source (nil: none).
func Next(o Outcome, attempt int, r policy.Retry, arrived, now time.Time, rnd func() float64) Decision {
	switch o.Result {
	case Delivered:
		return Decision{Action: Ack}
	case Gone:
		return Decision{Action: DeadLetter}
	}
	deadline := arrived.Add(r.MaxAge.D())
	if attempt >= r.MaxAttempts || !now.Before(deadline) {
		return Decision{Action: DeadLetter}
	}
	wait := r.Backoff(attempt, rnd)
	if o.RetryAfter > 0 {
		wait = min(o.RetryAfter, r.Max.D())
	}
	if at := now.Add(wait); at.Before(deadline) {
		return Decision{Action: RetryLater, At: at}
	}
	return Decision{Action: DeadLetter}
}

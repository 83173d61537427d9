package delivery

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/switchboard-gw/switchboard/policy"
)

func resp(code int, hdr ...string) *http.Response {
	r := &http.Response{StatusCode: code, Header: http.Header{}}
	for i := 0; i+1 < len(hdr); i += 2 {
		r.Header.Set(hdr[i], hdr[i+1])
	}
	return r
}

func TestClassifyAndNext(t *testing.T) {
	now := time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)
	retry := policy.Retry{
		Initial: policy.Duration(time.Second), Max: policy.Duration(time.Minute),
		MaxAttempts: 4, MaxAge: policy.Duration(time.Hour),
	}
	timeout := &net.OpError{Op: "dial", Err: timeoutErr{}}
	refused := &net.OpError{Op: "dial", Net: "tcp", Err: errors.New("connection refused")}
	blocked := &net.OpError{Op: "dial", Err: &blockedError{addr: netip.MustParseAddr("10.0.0.1")}}
	fresh := now.Add(-time.Minute)
	for _, tc := range []struct {
		name      string
		resp      *http.Response
		err       error
		attempt   int
		arrived   time.Time
		action    Action
		wait      [2]time.Duration // bounds of At-now when retrying
		healthy   bool
		errSubstr string
	}{
		{"200", resp(200), nil, 1, fresh, Ack, [2]time.Duration{}, true, ""},
		{"204", resp(204), nil, 3, fresh, Ack, [2]time.Duration{}, true, ""},
		{"299", resp(299), nil, 1, fresh, Ack, [2]time.Duration{}, true, ""},
		{"2xx on the last attempt", resp(200), nil, 4, fresh, Ack, [2]time.Duration{}, true, ""},
		{"301 fails", resp(301, "Location", "https://elsewhere"), nil, 1, fresh, RetryLater, [2]time.Duration{500 * time.Millisecond, time.Second}, true, "redirects are not followed"},
		{"302 fails", resp(302), nil, 2, fresh, RetryLater, [2]time.Duration{time.Second, 2 * time.Second}, true, "HTTP 302"},
		{"400 retries, breaker healthy", resp(400), nil, 1, fresh, RetryLater, [2]time.Duration{500 * time.Millisecond, time.Second}, true, "HTTP 400"},
		{"404 retries", resp(404), nil, 3, fresh, RetryLater, [2]time.Duration{2 * time.Second, 4 * time.Second}, true, "HTTP 404"},
		{"410 dead at once", resp(410), nil, 1, fresh, DeadLetter, [2]time.Duration{}, true, "gone"},
		{"429 with Retry-After", resp(429, "Retry-After", "7"), nil, 1, fresh, RetryLater, [2]time.Duration{7 * time.Second, 7 * time.Second}, true, "HTTP 429"},
		{"429 Retry-After capped at max", resp(429, "Retry-After", "3600"), nil, 1, fresh, RetryLater, [2]time.Duration{time.Minute, time.Minute}, true, "HTTP 429"},
		{"429 without Retry-After backs off", resp(429), nil, 2, fresh, RetryLater, [2]time.Duration{time.Second, 2 * time.Second}, true, ""},
		{"503 Retry-After date", resp(503, "Retry-After", now.Add(30*time.Second).Format(http.TimeFormat)), nil, 1, fresh, RetryLater, [2]time.Duration{30 * time.Second, 30 * time.Second}, false, "HTTP 503"},
		{"503 bad Retry-After", resp(503, "Retry-After", "soon"), nil, 1, fresh, RetryLater, [2]time.Duration{500 * time.Millisecond, time.Second}, false, ""},
		{"500 retries, breaker failure", resp(500), nil, 1, fresh, RetryLater, [2]time.Duration{500 * time.Millisecond, time.Second}, false, "HTTP 500"},
		{"502", resp(502), nil, 2, fresh, RetryLater, [2]time.Duration{time.Second, 2 * time.Second}, false, ""},
		{"500 on the last attempt dead-letters", resp(500), nil, 4, fresh, DeadLetter, [2]time.Duration{}, false, ""},
		{"500 past max_attempts", resp(500), nil, 9, fresh, DeadLetter, [2]time.Duration{}, false, ""},
		{"429 on the last attempt dead-letters", resp(429, "Retry-After", "1"), nil, 4, fresh, DeadLetter, [2]time.Duration{}, true, ""},
		{"max_age passed", resp(500), nil, 1, now.Add(-time.Hour), DeadLetter, [2]time.Duration{}, false, ""},
		{"just under max_age", resp(500), nil, 1, now.Add(-time.Hour + 1001*time.Millisecond), RetryLater, [2]time.Duration{500 * time.Millisecond, time.Second}, false, ""},
		{"the retry would come after max_age", resp(500), nil, 1, now.Add(-time.Hour + 400*time.Millisecond), DeadLetter, [2]time.Duration{}, false, ""},
		{"Retry-After beyond max_age", resp(503, "Retry-After", "30"), nil, 1, now.Add(-time.Hour + 10*time.Second), DeadLetter, [2]time.Duration{}, false, ""},
		{"timeout", nil, timeout, 1, fresh, RetryLater, [2]time.Duration{500 * time.Millisecond, time.Second}, false, "timeout"},
		{"deadline", nil, context.DeadlineExceeded, 1, fresh, RetryLater, [2]time.Duration{500 * time.Millisecond, time.Second}, false, "timeout"},
		{"refused", nil, refused, 3, fresh, RetryLater, [2]time.Duration{2 * time.Second, 4 * time.Second}, false, "connection error"},
		{"private address refused", nil, blocked, 1, fresh, RetryLater, [2]time.Duration{500 * time.Millisecond, time.Second}, false, "allow_private_networks"},
		{"backoff capped at max", resp(500), nil, 3, fresh, RetryLater, [2]time.Duration{2 * time.Second, 4 * time.Second}, false, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := Classify(tc.resp, tc.err, now)
			if o.Healthy != tc.healthy {
				t.Errorf("healthy = %v, want %v", o.Healthy, tc.healthy)
			}
			if !strings.Contains(o.Err, tc.errSubstr) {
				t.Errorf("err = %q, want it to contain %q", o.Err, tc.errSubstr)
			}
			for _, rnd := range []func() float64{func() float64 { return 0 }, func() float64 { return 0.9999999 }} {
				d := Next(o, tc.attempt, retry, tc.arrived, now, rnd)
				if d.Action != tc.action {
					t.Fatalf("action = %v, want %v", d.Action, tc.action)
				}
				if d.Action == RetryLater {
					wait := d.At.Sub(now)
					if wait < tc.wait[0] || wait > tc.wait[1] {
						t.Errorf("wait = %v, want within [%v, %v]", wait, tc.wait[0], tc.wait[1])
					}
				}
			}
		})
	}
}

func TestBackoffCappedAtMax(t *testing.T) {
	r := policy.Retry{Initial: policy.Duration(time.Second), Max: policy.Duration(5 * time.Second), MaxAttempts: 50, MaxAge: policy.Duration(time.Hour)}
	now := time.Now()
	d := Next(Outcome{Result: Failed}, 20, r, now, now, func() float64 { return 0.9999 })
	if w := d.At.Sub(now); w > 5*time.Second || w < 2500*time.Millisecond {
		t.Errorf("20th retry waits %v, want within [2.5s, 5s]", w)
	}
}

type timeoutErr struct{}

func (timeoutErr) Error() string   { return "i/o timeout" }
func (timeoutErr) Timeout() bool   { return true }
func (timeoutErr) Temporary() bool { return true }

func TestBlocked(t *testing.T) {
	for _, s := range []string{"127.0.0.1", "10.1.2.3", "172.16.0.1", "192.168.1.1", "169.254.169.254",
		"::1", "fd00:ec2::254", "fe80::1", "::ffff:127.0.0.1", "0.0.0.0", "100.64.0.1", "::"} {
		if !Blocked(netip.MustParseAddr(s)) {
			t.Errorf("Blocked(%s) = false, want true", s)
		}
	}
	for _, s := range []string{"8.8.8.8", "1.1.1.1", "2606:4700::1111", "93.184.216.34"} {
		if Blocked(netip.MustParseAddr(s)) {
			t.Errorf("Blocked(%s) = true, want false", s)
		}
	}
}

func TestClientRefusesPrivateAtDial(t *testing.T) {
	// A name that resolves to loopback is refused on the resolved address.
	c := NewClient(false)
	req, _ := http.NewRequest(http.MethodPost, "http://localhost:1/x", nil)
	_, err := c.Do(req)
	if err == nil || !errors.Is(err, errBlockedAddress) {
		t.Fatalf("err = %v, want the private-address refusal", err)
	}
	o := Classify(nil, err, time.Now())
	if !strings.Contains(o.Err, "allow_private_networks") {
		t.Errorf("outcome error = %q, want it to name allow_private_networks", o.Err)
	}
}

package test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/switchboard-gw/switchboard/gateway/carrier"
	"github.com/switchboard-gw/switchboard/queue"
	"github.com/switchboard-gw/switchboard/queue/redistest"
)

// TestSSRFGuard: with allow_private_networks false (the default), a
// delivery to loopback, RFC 1918, link-local/metadata or IPv6 loopback/ULA
// addresses — by IP or by a name resolving to one — is refused at dial time:
// no connection is made and the attempt fails with a clear error.
func TestSSRFGuard(t *testing.T) {
	rs := redistest.Start(t)
	var hits atomic.Int64
	local := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hits.Add(1) }))
	defer local.Close()
	port := local.URL[strings.LastIndex(local.URL, ":")+1:]
	targets := map[string]string{
		"loopback":  local.URL,
		"localhost": "http://localhost:" + port,
		"ipv6":      "http://[::1]:" + port,
		"rfc1918":   "http://10.0.0.1:" + port,
		"metadata":  "http://169.254.169.254/latest/meta-data/",
		"ula":       "http://[fd00:ec2::254]/",
	}
	var dests, names strings.Builder
	for name, u := range targets {
		fmt.Fprintf(&dests, "      %s: {url: %q, secret: %s}\n", name, u, demoSecret)
		names.WriteString(name + ", ")
	}
	cfg := fmt.Sprintf(`
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0"}
redis: {url: %q}
delivery:
  timeout: 2s
  retry: {initial: 50ms, max: 100ms, max_attempts: 1}
tenants:
  acme:
    sources:
      tw: {carrier: twilio, secret: %s}
    destinations:
%s    routes:
      - to: [%s]
`, rs.URL(), twilioToken, dests.String(), strings.TrimSuffix(names.String(), ", "))
	g := startGateway(t, cfg)
	if code := send(t, g.hookURL("acme", "tw"), "inbound", carrier.SimMessage{Text: "ssrf"}, nil); code != http.StatusOK {
		t.Fatalf("callback answered %d", code)
	}
	store := queue.New(rs.Client(t))
	var dead []queue.DeadLetter
	waitFor(t, 20*time.Second, "every private destination to be dead-lettered", func() bool {
		var err error
		dead, err = store.DLQList(context.Background(), "acme", "", 0)
		return err == nil && len(dead) == len(targets)
	})
	for _, d := range dead {
		if !strings.Contains(d.LastError, "allow_private_networks") {
			t.Errorf("%s: last error %q does not say the address was refused", d.Destination, d.LastError)
		}
	}
	if n := hits.Load(); n != 0 {
		t.Errorf("the loopback receiver got %d requests: the guard let them through", n)
	}
}

// TestRedirectsAndBigAnswers: redirects are not followed (a 3xx is a failed
// attempt), and an endless response body does not hold the attempt.
func TestRedirectsAndBigAnswers(t *testing.T) {
	rs := redistest.Start(t)
	var followed atomic.Int64
	elsewhere := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { followed.Add(1) }))
	defer elsewhere.Close()
	redirect := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, elsewhere.URL, http.StatusTemporaryRedirect)
	}))
	defer redirect.Close()
	endless := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusOK)
		chunk := []byte(strings.Repeat("x", 32<<10))
		for r.Context().Err() == nil {
			if _, err := w.Write(chunk); err != nil {
				return
			}
		}
	}))
	defer endless.Close()
	cfg := fmt.Sprintf(`
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0"}
redis: {url: %q}
delivery:
  allow_private_networks: true
  timeout: 5s
  retry: {initial: 50ms, max: 100ms, max_attempts: 2}
tenants:
  acme:
    sources:
      tw: {carrier: twilio, secret: %s}
    destinations:
      redirect: {url: %q, secret: %s}
      endless: {url: %q, secret: %s}
    routes:
      - to: [redirect, endless]
`, rs.URL(), twilioToken, redirect.URL, demoSecret, endless.URL, demoSecret)
	g := startGateway(t, cfg)
	start := time.Now()
	if code := send(t, g.hookURL("acme", "tw"), "inbound", carrier.SimMessage{Text: "redirect"}, nil); code != http.StatusOK {
		t.Fatalf("callback answered %d", code)
	}
	store := queue.New(rs.Client(t))
	var dead []queue.DeadLetter
	waitFor(t, 20*time.Second, "the redirected delivery to be dead-lettered", func() bool {
		dead, _ = store.DLQList(context.Background(), "acme", "redirect", 0)
		return len(dead) == 1
	})
	if !strings.Contains(dead[0].LastError, "redirects are not followed") {
		t.Errorf("last error = %q, want the redirect refusal", dead[0].LastError)
	}
	if n := followed.Load(); n != 0 {
		t.Errorf("the redirect target got %d requests", n)
	}
	waitFor(t, 20*time.Second, "the endless answer to count as delivered", func() bool {
		st, err := store.Stats(context.Background(), "acme", []string{"endless"}, time.Now())
		s := st["endless"]
		return err == nil && s.Queued == 0 && s.InFlight == 0 && s.Retrying == 0 && s.Dead == 0
	})
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("the endless answer held the attempt for %v, past the 5s timeout", took)
	}
}

package test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	switchboard "github.com/switchboard-gw/switchboard"
	"github.com/switchboard-gw/switchboard/gateway/carrier"
	"github.com/switchboard-gw/switchboard/queue/redistest"
)

// backboneConfig has one Twilio source and destinations with short
// retries: ok (max_in_flight 1, so its deliveries are FIFO), flaky and dead.
func backboneConfig(redisURL, okURL, flakyURL, deadURL string) string {
	return fmt.Sprintf(`
server:
  listen: "127.0.0.1:0"
  admin_listen: "127.0.0.1:0"
redis:
  url: %q
delivery:
  allow_private_networks: true
  timeout: 2s
  retry: {initial: 100ms, max: 400ms, max_attempts: 3, max_age: 1h}
tenants:
  acme:
    sources:
      tw:
        carrier: twilio
        secret: %s
    destinations:
      ok:
        url: %q
        secret: %s
        max_in_flight: 1
      flaky:
        url: %q
        secret: %s
        retry: {max_attempts: 5}
      dead:
        url: %q
        secret: %s
    routes:
      - match: {types: [message.status]}
        to: [flaky, dead]
      - to: [ok]
`, redisURL, twilioToken, okURL, demoSecret, flakyURL, demoSecret, deadURL, demoSecret)
}

// send posts a signed Twilio callback and returns the status code.
func send(t *testing.T, url, kind string, m carrier.SimMessage, mutate func(*http.Request)) int {
	t.Helper()
	req, err := carrier.Simulate(carrier.Config{Carrier: "twilio", Secret: twilioToken}, kind, m, url, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if mutate != nil {
		mutate(req)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

func event(t *testing.T, dv delivery) switchboard.Event {
	t.Helper()
	var e switchboard.Event
	if err := json.Unmarshal(dv.Body, &e); err != nil {
		t.Fatalf("delivery body is not an event: %v: %s", err, dv.Body)
	}
	return e
}

func TestBackbone(t *testing.T) {
	rs := redistest.Start(t)
	ok := newDestination(t, nil)
	var flakyFails atomic.Int32
	flakyFails.Store(2)
	flaky := newDestination(t, func(n int, d delivery) int {
		if flakyFails.Add(-1) >= 0 {
			return http.StatusInternalServerError
		}
		return http.StatusOK
	})
	var deadUp atomic.Bool
	dead := newDestination(t, func(n int, d delivery) int {
		if deadUp.Load() {
			return http.StatusOK
		}
		return http.StatusBadGateway
	})
	g := startGateway(t, backboneConfig(rs.URL(), ok.URL, flaky.URL, dead.URL))
	url := g.hookURL("acme", "tw")

	t.Run("inbound is delivered signed", func(t *testing.T) {
		code := send(t, url, "inbound", carrier.SimMessage{From: "+15555550100", To: "+15555550199", Text: "hello", MessageID: "SM00000000000000000000000000000a01"}, nil)
		if code != http.StatusOK {
			t.Fatalf("callback answered %d, want 200", code)
		}
		dv := ok.next(t, 10*time.Second)
		verify(t, dv)
		e := event(t, dv)
		if e.Type != switchboard.TypeReceived || e.Data.Text != "hello" || e.Data.From != "+15555550100" || e.Tenant != "acme" || e.Source != "tw" || e.Carrier != "twilio" {
			t.Errorf("event = %+v", e)
		}
		if dv.Header.Get("webhook-id") != e.ID || !strings.HasPrefix(e.ID, "evt_") {
			t.Errorf("webhook-id = %q, event id = %q", dv.Header.Get("webhook-id"), e.ID)
		}
	})

	t.Run("a repeated callback is delivered once", func(t *testing.T) {
		m := carrier.SimMessage{From: "+15555550100", To: "+15555550199", Text: "dup", MessageID: "SM00000000000000000000000000000a02"}
		for range 2 {
			if code := send(t, url, "inbound", m, nil); code != http.StatusOK {
				t.Fatalf("callback answered %d, want 200", code)
			}
		}
		// ok delivers one at a time in order: once the marker arrives, a
		// duplicate would have arrived before it.
		marker := carrier.SimMessage{From: "+15555550100", To: "+15555550199", Text: "marker", MessageID: "SM00000000000000000000000000000a03"}
		send(t, url, "inbound", marker, nil)
		first := event(t, ok.next(t, 10*time.Second))
		second := event(t, ok.next(t, 10*time.Second))
		if first.Data.Text != "dup" || second.Data.Text != "marker" {
			t.Errorf("deliveries = %q then %q, want dup then marker", first.Data.Text, second.Data.Text)
		}
	})

	t.Run("a forged callback is refused and never delivered", func(t *testing.T) {
		forged := carrier.SimMessage{From: "+15555550100", To: "+15555550199", Text: "forged", MessageID: "SM00000000000000000000000000000a04"}
		code := send(t, url, "inbound", forged, func(r *http.Request) {
			body, _ := io.ReadAll(r.Body)
			body = bytes.Replace(body, []byte("forged"), []byte("f0rged"), 1)
			r.Body = io.NopCloser(bytes.NewReader(body))
		})
		if code != http.StatusUnauthorized {
			t.Fatalf("forged callback answered %d, want 401", code)
		}
		code = send(t, url, "inbound", forged, func(r *http.Request) { r.Header.Del("X-Twilio-Signature") })
		if code != http.StatusUnauthorized {
			t.Fatalf("unsigned callback answered %d, want 401", code)
		}
		send(t, url, "inbound", carrier.SimMessage{From: "+15555550100", To: "+15555550199", Text: "after-forged", MessageID: "SM00000000000000000000000000000a05"}, nil)
		if e := event(t, ok.next(t, 10*time.Second)); e.Data.Text != "after-forged" {
			t.Errorf("delivered %q, want the genuine callback after the forged ones", e.Data.Text)
		}
	})

	t.Run("retries keep webhook-id; dead-letter after max_attempts; replay", func(t *testing.T) {
		m := carrier.SimMessage{From: "+15555550199", To: "+15555550100", Status: "delivered", MessageID: "SM00000000000000000000000000000b01"}
		if code := send(t, url, "status", m, nil); code != http.StatusOK {
			t.Fatalf("status callback answered %d, want 200", code)
		}
		var ids []string
		for range 3 {
			dv := flaky.next(t, 10*time.Second)
			verify(t, dv)
			ids = append(ids, dv.Header.Get("webhook-id"))
		}
		if ids[0] == "" || ids[0] != ids[1] || ids[1] != ids[2] {
			t.Errorf("webhook-id across retries = %v, want one id", ids)
		}
		if e := event(t, flaky.deliveries()[2]); e.Data.Status != "delivered" || e.Type != switchboard.TypeStatus {
			t.Errorf("status event = %+v", e)
		}
		// dead fails every time: three attempts, then the dead-letter stream.
		for range 3 {
			dead.next(t, 10*time.Second)
		}
		var entries []map[string]any
		waitFor(t, 10*time.Second, "the dead letter", func() bool {
			out, errOut, code := runCLI(t, "dlq", "list", "--config", g.configFile, "--tenant", "acme", "--destination", "dead")
			if code != 0 {
				t.Fatalf("dlq list exit %d: %s", code, errOut)
			}
			entries = jsonLines(t, out)
			return len(entries) == 1
		})
		e := entries[0]
		if e["destination"] != "dead" || e["attempts"] != float64(3) || e["event_id"] != ids[0] || !strings.Contains(e["last_error"].(string), "502") {
			t.Errorf("dead letter = %v", e)
		}
		if _, err := time.Parse(time.RFC3339, e["failed_at"].(string)); err != nil || !strings.HasSuffix(e["failed_at"].(string), "Z") {
			t.Errorf("failed_at = %v, want RFC 3339 UTC", e["failed_at"])
		}
		select {
		case dv := <-dead.received:
			t.Fatalf("a fourth attempt was made: %s", dv.Header.Get("webhook-id"))
		default:
		}

		deadUp.Store(true)
		out, errOut, code := runCLI(t, "dlq", "replay", "--config", g.configFile, "--tenant", "acme", "--id", e["id"].(string))
		if code != 0 || !strings.Contains(out, "replayed 1") {
			t.Fatalf("dlq replay: exit %d, %q %q", code, out, errOut)
		}
		dv := dead.next(t, 10*time.Second)
		verify(t, dv)
		if dv.Header.Get("webhook-id") != ids[0] {
			t.Errorf("replayed webhook-id = %q, want %q", dv.Header.Get("webhook-id"), ids[0])
		}
		waitFor(t, 10*time.Second, "the dead-letter stream to empty", func() bool {
			out, _, _ := runCLI(t, "dlq", "list", "--config", g.configFile, "--tenant", "acme")
			return strings.TrimSpace(out) == ""
		})
	})

	t.Run("dlq purge", func(t *testing.T) {
		deadUp.Store(false)
		send(t, url, "status", carrier.SimMessage{From: "+15555550199", To: "+15555550100", Status: "failed", MessageID: "SM00000000000000000000000000000b02"}, nil)
		waitFor(t, 15*time.Second, "a dead letter", func() bool {
			out, _, _ := runCLI(t, "dlq", "list", "--config", g.configFile, "--tenant", "acme", "--destination", "dead")
			return len(jsonLines(t, out)) == 1
		})
		out, errOut, code := runCLI(t, "dlq", "purge", "--config", g.configFile, "--tenant", "acme", "--all")
		if code != 0 || !strings.Contains(out, "purged 1") {
			t.Fatalf("dlq purge: exit %d, %q %q", code, out, errOut)
		}
		out, _, _ = runCLI(t, "dlq", "list", "--config", g.configFile, "--tenant", "acme")
		if strings.TrimSpace(out) != "" {
			t.Errorf("after purge, dlq list = %q", out)
		}
	})

	t.Run("a Redis restart without persistence does not wedge delivery", func(t *testing.T) {
		rs.Kill()
		waitFor(t, 10*time.Second, "/readyz to report Redis down", func() bool {
			resp, err := http.Get("http://" + g.Admin + "/readyz")
			if err != nil {
				return false
			}
			resp.Body.Close()
			return resp.StatusCode == http.StatusServiceUnavailable
		})
		code := send(t, url, "inbound", carrier.SimMessage{From: "+15555550100", To: "+15555550199", Text: "while down", MessageID: "SM00000000000000000000000000000c01"}, nil)
		if code != http.StatusServiceUnavailable {
			t.Errorf("callback while Redis is down answered %d, want 503", code)
		}
		rs.Start()
		waitFor(t, 10*time.Second, "/readyz to recover", func() bool {
			resp, err := http.Get("http://" + g.Admin + "/readyz")
			if err != nil {
				return false
			}
			resp.Body.Close()
			return resp.StatusCode == http.StatusOK
		})
		if code := send(t, url, "inbound", carrier.SimMessage{From: "+15555550100", To: "+15555550199", Text: "after restart", MessageID: "SM00000000000000000000000000000c02"}, nil); code != http.StatusOK {
			t.Fatalf("callback after restart answered %d, want 200", code)
		}
		if e := event(t, ok.next(t, 15*time.Second)); e.Data.Text != "after restart" {
			t.Errorf("delivered %q, want the callback sent after the restart", e.Data.Text)
		}
		// The outage is in the structured log: go-redis's own messages too.
		redisLines := 0
		for _, l := range strings.Split(strings.TrimSpace(g.log.String()), "\n") {
			var m map[string]any
			if err := json.Unmarshal([]byte(l), &m); err != nil {
				t.Errorf("a log line is not JSON: %q", l)
			} else if m["msg"] == "redis client" {
				redisLines++
			}
		}
		if redisLines == 0 {
			t.Errorf("no go-redis message reached the log during the outage")
		}
	})

	t.Run("SIGTERM stops cleanly", func(t *testing.T) {
		err, took := g.stop()
		if err != nil {
			t.Errorf("exit: %v, want 0", err)
		}
		if took > 2*time.Second+5*time.Second {
			t.Errorf("stopping took %v, want within the delivery timeout plus a few seconds", took)
		}
	})
}

// TestShutdownFinishesInFlight: SIGTERM while a delivery is in flight lets
// it finish and records its outcome; nothing is left in Redis to redo.
func TestShutdownFinishesInFlight(t *testing.T) {
	rs := redistest.Start(t)
	release := make(chan struct{})
	slow := newDestination(t, func(n int, d delivery) int {
		<-release
		return http.StatusOK
	})
	cfg := fmt.Sprintf(`
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0"}
redis: {url: %q}
delivery: {allow_private_networks: true, timeout: 5s}
tenants:
  acme:
    sources:
      tw: {carrier: twilio, secret: %s}
    destinations:
      slow: {url: %q, secret: %s}
    routes:
      - to: [slow]
`, rs.URL(), twilioToken, slow.URL, demoSecret)
	g := startGateway(t, cfg)
	started := make(chan struct{})
	slow.respond = func(n int, d delivery) int {
		close(started)
		<-release
		return http.StatusOK
	}
	if code := send(t, g.hookURL("acme", "tw"), "inbound", carrier.SimMessage{Text: "in flight"}, nil); code != http.StatusOK {
		t.Fatalf("callback answered %d", code)
	}
	<-started
	done := make(chan error, 1)
	var took time.Duration
	go func() { err, d := g.stop(); took = d; done <- err }()
	// The gateway must wait for the attempt rather than exit under it.
	waitFor(t, 5*time.Second, "the gateway to log its shutdown", func() bool {
		return strings.Contains(g.log.String(), "shutting down")
	})
	select {
	case err := <-done:
		t.Fatalf("gateway exited (%v) with a delivery still in flight", err)
	default:
	}
	close(release)
	if err := <-done; err != nil {
		t.Errorf("exit: %v, want 0", err)
	}
	if took > 5*time.Second+5*time.Second {
		t.Errorf("stopping took %v, want within the delivery timeout plus a few seconds", took)
	}
	rdb := rs.Client(t)
	ctx := t.Context()
	if n, _ := rdb.XLen(ctx, "sb:{acme}:d:slow").Result(); n != 0 {
		t.Errorf("stream still holds %d jobs after a delivered attempt: its outcome was not recorded", n)
	}
	if n, _ := rdb.ZCard(ctx, "sb:{acme}:retry").Result(); n != 0 {
		t.Errorf("retry set holds %d jobs, want 0", n)
	}
}

// dlq list prints every dead letter unless --limit says otherwise (it
// stopped at 1,000 without a word).
func TestDLQListEverything(t *testing.T) {
	rs := redistest.Start(t)
	rdb := rs.Client(t)
	ctx := context.Background()
	const n = 1005
	pipe := rdb.Pipeline()
	for i := range n {
		pipe.XAdd(ctx, &redis.XAddArgs{Stream: "sb:{acme}:dlq", Values: []any{
			"i", fmt.Sprintf("evt_%04d", i), "b", "{}", "a", "5", "t", "1700000000000",
			"e", "HTTP 500", "d", "crm", "f", "1700000001000"}})
	}
	if _, err := pipe.Exec(ctx); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(t.TempDir(), "sb.yaml")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf(`redis: {url: %q}
tenants:
  acme:
    sources: {tw: {carrier: twilio, secret: x}}
    destinations: {crm: {url: "https://crm.example.com/in", secret: %s}}
    routes: [{to: [crm]}]
`, rs.URL(), demoSecret)), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		want int
	}{{nil, n}, {[]string{"--limit", "3"}, 3}} {
		out, errOut, code := runCLI(t, append([]string{"dlq", "list", "--config", cfg, "--tenant", "acme"}, tc.args...)...)
		if code != 0 {
			t.Fatalf("dlq list %v: exit %d: %s", tc.args, code, errOut)
		}
		if got := strings.Count(out, "\n"); got != tc.want {
			t.Errorf("dlq list %v printed %d lines, want %d", tc.args, got, tc.want)
		}
	}
}

package test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/switchboard-gw/switchboard/gateway/carrier"
	"github.com/switchboard-gw/switchboard/queue/redistest"
)

const (
	operateRootToken = "op-root-admin-token-5f0c1e"
	operateAcmeToken = "op-acme-admin-token-9a7b3d"
)

// adminCLI runs `switchboard admin ARGS --server ADMIN` with tok in
// SWITCHBOARD_ADMIN_TOKEN (none when empty).
func adminCLI(t *testing.T, g *gatewayProc, tok string, args ...string) (string, string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	args = append(append([]string{"admin"}, args...), "--server", g.Admin)
	cmd := exec.CommandContext(ctx, binary, args...)
	// atexit_sleep_ms=0: the race runtime otherwise waits 1s before a
	// successful exit.
	cmd.Env = append(os.Environ(), "SWITCHBOARD_ADMIN_TOKEN="+tok, "GORACE=atexit_sleep_ms=0")
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("run %v: %v", args, err)
	}
	return out.String(), errb.String(), code
}

// mustAdminCLI runs adminCLI with the root token and fails unless it exits 0.
func mustAdminCLI(t *testing.T, g *gatewayProc, args ...string) string {
	t.Helper()
	out, errOut, code := adminCLI(t, g, operateRootToken, args...)
	if code != 0 {
		t.Fatalf("switchboard admin %v: exit %d: %s%s", args, code, out, errOut)
	}
	return out
}

// adminGet decodes a 200 answer of the admin API (root token) into out.
func adminGet(t *testing.T, g *gatewayProc, path string, out any) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, "http://"+g.Admin+path, nil)
	req.Header.Set("Authorization", "Bearer "+operateRootToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s = %d", path, resp.StatusCode)
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
}

// scrape reads /metrics into series → value ("name{labels}" as exposed).
func scrape(t *testing.T, g *gatewayProc) map[string]float64 {
	t.Helper()
	resp, err := http.Get("http://" + g.Admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("/metrics = %d, want 200 without a token", resp.StatusCode)
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err == nil {
			out[line[:i]] = v
		}
	}
	return out
}

// TestOperate runs the gateway binary end to end and operates it only
// through `switchboard admin` and /metrics: dead letters, history, recovery,
// metrics that move, and logs that hold no secret, number or message text.
func TestOperate(t *testing.T) {
	rs := redistest.Start(t)
	ok := newDestination(t, nil)
	var flakyUp atomic.Bool
	flaky := newDestination(t, func(n int, d delivery) int {
		if flakyUp.Load() {
			return http.StatusOK
		}
		return http.StatusInternalServerError
	})
	g := startGateway(t, fmt.Sprintf(`
server:
  listen: "127.0.0.1:0"
  admin_listen: "127.0.0.1:0"
  admin_token: %s
redis: {url: %q}
delivery:
  allow_private_networks: true
  timeout: 2s
  retry: {initial: 50ms, max: 100ms, max_attempts: 2, max_age: 1h}
history: {retention: 1h}
tenants:
  acme:
    admin_token: %s
    sources:
      tw: {carrier: twilio, secret: %s}
    destinations:
      ok: {url: %q, secret: %s}
      flaky: {url: %q, secret: %s}
    routes:
      - match: {types: [message.received]}
        to: [ok, flaky]
        continue: false
      - to: [ok]
`, operateRootToken, rs.URL(), operateAcmeToken, twilioToken, ok.URL, demoSecret, flaky.URL, demoSecret))
	url := g.hookURL("acme", "tw")
	before := scrape(t, g)
	t0 := time.Now().UTC()
	// A fresh gateway already lists every series DESIGN names, at zero.
	for _, series := range []string{
		`switchboard_ingress_requests_total{carrier="twilio",code="200",source="tw",tenant="acme"}`,
		`switchboard_verification_failures_total{reason="bad_signature",source="tw",tenant="acme"}`,
		`switchboard_deliveries_total{destination="ok",outcome="delivered",tenant="acme"}`,
		`switchboard_delivery_duration_seconds_count{destination="ok",tenant="acme"}`,
		`switchboard_queue_depth{destination="ok",tenant="acme"}`,
		`switchboard_dlq_depth{destination="ok",tenant="acme"}`,
		`switchboard_breaker_state{destination="ok",tenant="acme"}`,
		`switchboard_dedup_hits_total{source="tw",tenant="acme"}`,
	} {
		if v, ok := before[series]; !ok || v != 0 {
			t.Errorf("fresh /metrics: %s = %v (listed: %v), want 0", series, v, ok)
		}
	}

	const text = "the rendezvous is at the old mill"
	inbound := carrier.SimMessage{From: "+15555550123", To: "+15555550188", Text: text, MessageID: "SM000000000000000000000000000e0001"}
	status := carrier.SimMessage{From: "+15555550188", To: "+15555550123", Status: "delivered", MessageID: "SM000000000000000000000000000e0002"}
	if code := send(t, url, "inbound", inbound, nil); code != 200 {
		t.Fatalf("inbound answered %d", code)
	}
	if code := send(t, url, "inbound", inbound, nil); code != 200 { // the carrier's retry
		t.Fatalf("repeated inbound answered %d", code)
	}
	if code := send(t, url, "inbound", inbound, func(r *http.Request) { r.Header.Set("X-Twilio-Signature", "Zm9yZ2Vk") }); code != 401 {
		t.Fatalf("forged inbound answered %d, want 401", code)
	}
	if code := send(t, url, "status", status, nil); code != 200 {
		t.Fatalf("status answered %d", code)
	}
	first := ok.next(t, 10*time.Second)
	second := ok.next(t, 10*time.Second)
	okIDs := map[string]bool{first.Header.Get("webhook-id"): true, second.Header.Get("webhook-id"): true}

	// Waits poll the API directly; each CLI run starts a process (slow
	// under -race), so the CLI runs once per command, concurrently where
	// the commands only read.
	var dead []map[string]any
	waitFor(t, 10*time.Second, "the dead letter", func() bool {
		var out struct {
			Entries []map[string]any `json:"entries"`
		}
		adminGet(t, g, "/admin/v1/tenants/acme/dlq", &out)
		dead = out.Entries
		return len(dead) == 1
	})
	eventID, _ := dead[0]["event_id"].(string)
	waitFor(t, 10*time.Second, "three attempts in the history", func() bool {
		var ev struct {
			Attempts []any `json:"attempts"`
		}
		adminGet(t, g, "/admin/v1/tenants/acme/events/"+eventID, &ev)
		return len(ev.Attempts) == 3
	})
	mid := scrape(t, g)

	t.Run("read", func(t *testing.T) {
		cli := func(name string, check func(t *testing.T, out, errOut string, code int), tok string, args ...string) {
			t.Run(name, func(t *testing.T) {
				t.Parallel()
				out, errOut, code := adminCLI(t, g, tok, args...)
				check(t, out, errOut, code)
			})
		}
		succeeds := func(check func(t *testing.T, out string)) func(t *testing.T, out, errOut string, code int) {
			return func(t *testing.T, out, errOut string, code int) {
				if code != 0 {
					t.Fatalf("exit %d: %s%s", code, out, errOut)
				}
				check(t, out)
			}
		}
		cli("dlq list", succeeds(func(t *testing.T, out string) {
			lines := jsonLines(t, out)
			if len(lines) != 1 || lines[0]["destination"] != "flaky" || lines[0]["attempts"] != float64(2) || !okIDs[eventID] ||
				lines[0]["event_id"] != eventID || lines[0]["id"] != dead[0]["id"] || !strings.HasSuffix(lines[0]["failed_at"].(string), "Z") {
				t.Errorf("dlq list = %v", lines)
			}
		}), operateRootToken, "dlq", "list", "--tenant", "acme", "--destination", "flaky")
		cli("tenants", succeeds(func(t *testing.T, out string) {
			if lines := jsonLines(t, out); len(lines) != 1 || lines[0]["id"] != "acme" {
				t.Errorf("tenants = %v", lines)
			}
		}), operateRootToken, "tenants")
		cli("tenants table", succeeds(func(t *testing.T, out string) {
			if !strings.Contains(out, "TENANT") || !strings.Contains(out, "tw(twilio)") {
				t.Errorf("tenants table = %q", out)
			}
		}), operateRootToken, "tenants", "--output", "table")
		cli("stats", succeeds(func(t *testing.T, out string) {
			st := jsonLines(t, out)
			if len(st) != 2 || st[0]["destination"] != "flaky" || st[0]["dead"] != float64(1) || st[0]["breaker"] != "closed" || st[1]["destination"] != "ok" {
				t.Errorf("stats = %v", st)
			}
		}), operateAcmeToken, "stats", "--tenant", "acme")
		cli("stats table", succeeds(func(t *testing.T, out string) {
			if !strings.Contains(out, "IN_FLIGHT") || !strings.Contains(out, "unlimited") {
				t.Errorf("stats table = %q", out)
			}
		}), operateRootToken, "stats", "--tenant", "acme", "--output", "table")
		cli("events get", succeeds(func(t *testing.T, out string) {
			lines := jsonLines(t, out)
			if len(lines) != 1 || lines[0]["id"] != eventID || len(lines[0]["attempts"].([]any)) != 3 {
				t.Errorf("events get = %v", lines)
			}
			if e, _ := lines[0]["event"].(map[string]any); e["id"] != eventID {
				t.Errorf("event = %v", lines[0]["event"])
			}
		}), operateRootToken, "events", "get", "--tenant", "acme", "--id", eventID)
		cli("events get table", succeeds(func(t *testing.T, out string) {
			if !strings.Contains(out, "dead_letter") || !strings.Contains(out, "LATENCY_MS") || strings.Contains(out, text) {
				t.Errorf("events table = %q (no message text expected)", out)
			}
		}), operateRootToken, "events", "get", "--tenant", "acme", "--id", eventID, "--output", "table")
		cli("events find", succeeds(func(t *testing.T, out string) {
			if found := jsonLines(t, out); len(found) != 1 || found[0]["id"] != eventID {
				t.Errorf("events find = %v, want the one stored event (the retry was a duplicate)", found)
			}
		}), operateRootToken, "events", "find", "--tenant", "acme", "--message-id", inbound.MessageID)
		cli("unknown event", func(t *testing.T, out, errOut string, code int) {
			if code != 1 || !strings.Contains(errOut, "404") {
				t.Errorf("exit %d, %q; want 1 and 404", code, errOut)
			}
		}, operateRootToken, "events", "get", "--tenant", "acme", "--id", "evt_none")
		cli("no token", func(t *testing.T, out, errOut string, code int) {
			if code != 2 || !strings.Contains(errOut, "SWITCHBOARD_ADMIN_TOKEN") {
				t.Errorf("exit %d %q, want 2 naming SWITCHBOARD_ADMIN_TOKEN", code, errOut)
			}
		}, "", "tenants")
		cli("limit out of range", func(t *testing.T, out, errOut string, code int) {
			if code != 2 || !strings.Contains(errOut, "--limit must be from 1 to 10000") {
				t.Errorf("exit %d %q, want 2 and the range", code, errOut)
			}
		}, operateRootToken, "dlq", "list", "--tenant", "acme", "--limit", "0")
		cli("wrong token", func(t *testing.T, out, errOut string, code int) {
			if code != 1 || !strings.Contains(errOut, "401") {
				t.Errorf("exit %d %q, want 1 and 401", code, errOut)
			}
		}, "wrong", "tenants")
	})

	t.Run("replay and purge", func(t *testing.T) {
		flakyUp.Store(true)
		out := mustAdminCLI(t, g, "dlq", "replay", "--tenant", "acme", "--id", dead[0]["id"].(string))
		if strings.TrimSpace(out) != `{"replayed":1}` {
			t.Errorf("replay printed %q", out)
		}
		dv := flaky.next(t, 10*time.Second) // first attempt, then the retry: 500s
		dv = flaky.next(t, 10*time.Second)
		dv = flaky.next(t, 10*time.Second)
		if dv.Header.Get("webhook-id") != eventID || dv.Header.Get("Switchboard-Attempt") != "1" {
			t.Errorf("replayed delivery: webhook-id %q attempt %q, want %q attempt 1", dv.Header.Get("webhook-id"), dv.Header.Get("Switchboard-Attempt"), eventID)
		}
		if out := mustAdminCLI(t, g, "dlq", "purge", "--tenant", "acme", "--all", "--output", "table"); strings.TrimSpace(out) != "purged 0" {
			t.Errorf("purge printed %q", out)
		}
	})

	t.Run("recover", func(t *testing.T) {
		out := mustAdminCLI(t, g, "recover", "--tenant", "acme", "--destination", "ok", "--since", t0.Format(time.RFC3339Nano))
		if strings.TrimSpace(out) != `{"replayed":2}` {
			t.Fatalf("recover printed %q, want 2 replayed", out)
		}
		for range 2 {
			dv := ok.next(t, 10*time.Second)
			if !okIDs[dv.Header.Get("webhook-id")] {
				t.Errorf("recovered webhook-id %q is not one of the originals %v", dv.Header.Get("webhook-id"), okIDs)
			}
		}
	})

	t.Run("metrics move", func(t *testing.T) {
		// A delivery's metrics move just after the destination answered:
		// await the last ones before comparing.
		var after map[string]float64
		waitFor(t, 10*time.Second, "the last deliveries to be counted", func() bool {
			after = scrape(t, g)
			k := `switchboard_deliveries_total{destination="ok",outcome="delivered",tenant="acme"}`
			f := `switchboard_delivery_duration_seconds_count{destination="flaky",tenant="acme"}`
			return after[k]-before[k] >= 4 && after[f]-before[f] >= 3
		})
		delta := func(series string) float64 { return after[series] - before[series] }
		for series, want := range map[string]float64{
			`switchboard_ingress_requests_total{carrier="twilio",code="200",source="tw",tenant="acme"}`: 3,
			`switchboard_ingress_requests_total{carrier="twilio",code="401",source="tw",tenant="acme"}`: 1,
			`switchboard_verification_failures_total{reason="bad_signature",source="tw",tenant="acme"}`: 1,
			`switchboard_dedup_hits_total{source="tw",tenant="acme"}`:                                   1,
			`switchboard_enqueue_duration_seconds_count{tenant="acme"}`:                                 3,
			`switchboard_deliveries_total{destination="ok",outcome="delivered",tenant="acme"}`:          4,
			`switchboard_deliveries_total{destination="flaky",outcome="retry",tenant="acme"}`:           1,
			`switchboard_deliveries_total{destination="flaky",outcome="dead_letter",tenant="acme"}`:     1,
			`switchboard_deliveries_total{destination="flaky",outcome="delivered",tenant="acme"}`:       1,
			`switchboard_retries_total{destination="flaky",tenant="acme"}`:                              1,
			`switchboard_delivery_duration_seconds_count{destination="flaky",tenant="acme"}`:            3,
			`switchboard_dlq_depth{destination="flaky",tenant="acme"}`:                                  0,
			`switchboard_queue_depth{destination="ok",tenant="acme"}`:                                   0,
		} {
			if got := delta(series); got != want {
				t.Errorf("%s moved by %v, want %v", series, got, want)
			}
		}
		if v := mid[`switchboard_dlq_depth{destination="flaky",tenant="acme"}`]; v != 1 {
			t.Errorf("dlq depth while the dead letter waited = %v, want 1", v)
		}
		for _, s := range []string{`switchboard_breaker_state{destination="flaky",tenant="acme"}`, `switchboard_queue_oldest_age_seconds{destination="ok",tenant="acme"}`, `switchboard_store_up`} {
			if _, ok := after[s]; !ok {
				t.Errorf("/metrics lacks %s", s)
			}
		}
	})

	t.Run("logs hold no secret, number or message text", func(t *testing.T) {
		if err, _ := g.stop(); err != nil {
			t.Errorf("stop: %v", err)
		}
		logs := g.log.String()
		for _, s := range []string{twilioToken, demoSecret, operateRootToken, operateAcmeToken,
			"+15555550123", "+15555550188", "15555550123", "15555550188", text, "rendezvous"} {
			if strings.Contains(logs, s) {
				t.Errorf("the log holds %q", s)
			}
		}
		callbacks, attempts := 0, 0
		sc := bufio.NewScanner(strings.NewReader(logs))
		for sc.Scan() {
			var m map[string]any
			if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
				t.Errorf("not a JSON log line: %q", sc.Text())
				continue
			}
			switch m["msg"] {
			case "callback":
				callbacks++
			case "delivery attempt":
				attempts++
			}
		}
		if callbacks != 3 || attempts != 7 {
			t.Errorf("log has %d callback lines and %d attempt lines, want 3 and 7", callbacks, attempts)
		}
	})
}

// TestLogLevelWarn: serve --log-level warn leaves out the line per callback
// and per delivery attempt (and every other info line), and still logs a
// refused callback.
func TestLogLevelWarn(t *testing.T) {
	rs := redistest.Start(t)
	dest := newDestination(t, nil)
	ports := make([]string, 2)
	for i := range ports {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ports[i] = l.Addr().String()
		l.Close()
	}
	file := filepath.Join(t.TempDir(), "switchboard.yaml")
	cfg := fmt.Sprintf(`
server: {listen: %q, admin_listen: %q}
redis: {url: %q}
delivery: {allow_private_networks: true}
tenants:
  acme:
    sources: {tw: {carrier: twilio, secret: %s}}
    destinations: {app: {url: %q, secret: %s}}
    routes: [{to: [app]}]
`, ports[0], ports[1], rs.URL(), twilioToken, dest.URL, demoSecret)
	if err := os.WriteFile(file, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	logs := newLogBuffer()
	cmd := exec.Command(binary, "serve", "--config", file, "--log-level", "warn")
	cmd.Env = raceEnv()
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	waitFor(t, 20*time.Second, "the gateway to be ready", func() bool {
		resp, err := http.Get("http://" + ports[0] + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	url := "http://" + ports[0] + "/hooks/acme/tw"
	m := carrier.SimMessage{From: "+15555550123", To: "+15555550188", Text: "hi", MessageID: "SM000000000000000000000000000f0001"}
	if code := send(t, url, "inbound", m, nil); code != http.StatusOK {
		t.Fatalf("inbound answered %d", code)
	}
	dest.next(t, 10*time.Second)
	if code := send(t, url, "inbound", m, func(r *http.Request) { r.Header.Set("X-Twilio-Signature", "Zm9yZ2Vk") }); code != http.StatusUnauthorized {
		t.Fatalf("forged inbound answered %d, want 401", code)
	}
	waitFor(t, 10*time.Second, "the refusal's log line", func() bool {
		return strings.Contains(logs.String(), `"msg":"callback refused"`)
	})
	_ = cmd.Process.Signal(syscall.SIGTERM) // flushes the log
	_ = cmd.Wait()
	for _, line := range jsonLines(t, logs.String()) {
		if line["level"] == "INFO" || line["level"] == "DEBUG" {
			t.Errorf("--log-level warn logged: %v", line)
		}
	}
}

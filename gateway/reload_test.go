package gateway

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/switchboard-gw/switchboard/gateway/carrier"
	"github.com/switchboard-gw/switchboard/gateway/delivery"
	"github.com/switchboard-gw/switchboard/policy"
	"github.com/switchboard-gw/switchboard/queue"
	"github.com/switchboard-gw/switchboard/queue/redistest"
)

const whsec = "whsec_c3dpdGNoYm9hcmQtZGVtby1zZWNyZXQta2V5LTAwMDE="

// testServer is an in-process Server on 127.0.0.1:0 against a real Redis.
type testServer struct {
	*Server
	file string
	log  *syncWriter
}

// mustServer writes body to a config file, starts a Server on it and
// serves until the test ends.
func mustServer(t *testing.T, body string) *testServer {
	t.Helper()
	file := filepath.Join(t.TempDir(), "sb.yaml")
	writeConfig(t, file, body)
	cfg, err := policy.Load(file)
	if err != nil {
		t.Fatal(err)
	}
	logs := &syncWriter{}
	s, err := Start(cfg, slog.New(slog.NewJSONHandler(logs, nil)), Options{Consumer: "test"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = s.Serve(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return &testServer{Server: s, file: file, log: logs}
}

func writeConfig(t *testing.T, file, body string) {
	t.Helper()
	if err := os.WriteFile(file, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
}

// postTwilio sends a signed Twilio callback to the server and returns the
// status code and Retry-After.
func postTwilio(t *testing.T, addr, tenant, source string, form url.Values, sign bool) (int, string) {
	t.Helper()
	u := "http://" + addr + "/hooks/" + tenant + "/" + source
	req, _ := http.NewRequest(http.MethodPost, u, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	sig := "AAAAAAAAAAAAAAAAAAAAAAAAAAA="
	if sign {
		sig = carrier.TwilioSignature(token, u, form)
	}
	req.Header.Set("X-Twilio-Signature", sig)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, resp.Header.Get("Retry-After")
}

func statusForm(sid string) url.Values {
	return url.Values{"MessageSid": {sid}, "MessageStatus": {"delivered"}, "From": {"+15555550199"}, "To": {"+15555550100"}}
}

func serverConfig(redisURL, tenants string) string {
	return fmt.Sprintf(`server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0"}
redis: {url: %q}
delivery: {allow_private_networks: true}
tenants:
%s`, redisURL, tenants)
}

// TestIngressRate: past ingress_rate a carrier gets 429 with Retry-After in
// whole seconds until a token is free, before verification (a forgery
// gets 429 too) and after the tenant and source are known (404 first).
// Another tenant is not limited by it.
func TestIngressRate(t *testing.T) {
	rs := redistest.Start(t)
	s := mustServer(t, serverConfig(rs.URL(), fmt.Sprintf(`  acme:
    ingress_rate: {per_second: 0.5, burst: 2}
    sources:
      tw: {carrier: twilio, secret: %s}
    destinations:
      app: {url: "https://app.example.com", secret: %s}
    routes: [{to: [app]}]
  other:
    sources:
      tw: {carrier: twilio, secret: %s}
`, token, whsec, token)))
	for i := range 2 {
		if code, _ := postTwilio(t, s.IngressAddr, "acme", "tw", inboundForm(fmt.Sprintf("SM%d", i)), true); code != http.StatusOK {
			t.Fatalf("callback %d within the burst: %d, want 200", i+1, code)
		}
	}
	code, after := postTwilio(t, s.IngressAddr, "acme", "tw", inboundForm("SM3"), true)
	if code != http.StatusTooManyRequests || after != "2" {
		t.Errorf("past the burst: %d Retry-After=%q, want 429 and 2 (seconds until a token at 0.5/s)", code, after)
	}
	if code, _ := postTwilio(t, s.IngressAddr, "acme", "tw", inboundForm("SM4"), false); code != http.StatusTooManyRequests {
		t.Errorf("a forged callback past the limit: %d, want 429 (the limit comes before verification)", code)
	}
	if code, _ := postTwilio(t, s.IngressAddr, "acme", "nope", inboundForm("SM5"), true); code != http.StatusNotFound {
		t.Errorf("an unknown source past the limit: %d, want 404", code)
	}
	if code, _ := postTwilio(t, s.IngressAddr, "other", "tw", inboundForm("SM6"), true); code != http.StatusOK {
		t.Errorf("another tenant: %d, want 200", code)
	}
	if strings.Contains(s.log.String(), `"reason":"verification failed"`) {
		t.Error("a limited callback was verified")
	}
}

// TestReload: a reload swaps ingress and delivery together; a tenant whose
// ingress_rate did not change keeps its spent tokens; a bad file keeps
// the running configuration and logs why; an unrouted event is counted.
func TestReload(t *testing.T) {
	rs := redistest.Start(t)
	v1 := fmt.Sprintf(`  acme:
    ingress_rate: {per_second: 0.01, burst: 1}
    sources:
      tw: {carrier: twilio, secret: %s}
    destinations:
      app: {url: "http://127.0.0.1:1/", secret: %s}
    routes:
      - match: {types: [message.received]}
        to: [app]
`, token, whsec)
	s := mustServer(t, serverConfig(rs.URL(), v1))
	if code, _ := postTwilio(t, s.IngressAddr, "acme", "tw", inboundForm("SM1"), true); code != http.StatusOK {
		t.Fatalf("first callback: %d", code)
	}
	if code, _ := postTwilio(t, s.IngressAddr, "acme", "tw", inboundForm("SM2"), true); code != http.StatusTooManyRequests {
		t.Fatalf("second callback: %d, want 429", code)
	}

	// A bad file: nothing changes, the log says where.
	writeConfig(t, s.file, serverConfig(rs.URL(), v1+"      - when: event.nope(\n        to: [app]\n"))
	if err := s.ReloadFile(s.file); err == nil {
		t.Fatal("ReloadFile accepted a bad file")
	}
	if !strings.Contains(s.log.String(), "configuration reload failed; keeping the running configuration") ||
		!strings.Contains(s.log.String(), s.file+":14: tenants.acme.routes[1].when:") {
		t.Errorf("the log does not say why the reload failed:\n%s", s.log.String())
	}

	// Same ingress_rate, a new source, a new tenant, status events routed.
	v2 := strings.Replace(v1, "      tw: {carrier", "      tw2: {carrier: twilio, secret: "+token+"}\n      tw: {carrier", 1)
	v2 = strings.Replace(v2, "types: [message.received]", "types: [message.status]", 1)
	v2 += fmt.Sprintf("  globex:\n    sources:\n      tw: {carrier: twilio, secret: %s}\n", token)
	writeConfig(t, s.file, serverConfig(rs.URL(), v2))
	if err := s.ReloadFile(s.file); err != nil {
		t.Fatalf("ReloadFile: %v", err)
	}
	if code, _ := postTwilio(t, s.IngressAddr, "acme", "tw2", statusForm("SM3"), true); code != http.StatusTooManyRequests {
		t.Errorf("after a reload with the same ingress_rate: %d, want 429 (the spent token stays spent)", code)
	}
	if code, _ := postTwilio(t, s.IngressAddr, "globex", "tw", statusForm("SM4"), true); code != http.StatusOK {
		t.Errorf("a tenant added by the reload: %d, want 200", code)
	}
	if s.worker("globex") == nil {
		t.Error("no delivery worker for the added tenant")
	}

	// A changed ingress_rate starts afresh; the new routes apply.
	// (rate_scope needs a restart: the reload says so and goes on.)
	v3 := strings.Replace(v2, "per_second: 0.01, burst: 1", "per_second: 0.01, burst: 2", 1)
	writeConfig(t, s.file, strings.Replace(serverConfig(rs.URL(), v3), "delivery: {", "delivery: {rate_scope: local, ", 1))
	if err := s.ReloadFile(s.file); err != nil {
		t.Fatalf("ReloadFile: %v", err)
	}
	if !strings.Contains(s.log.String(), `"msg":"configuration reload: this setting changes only on restart; keeping the running value","key":"delivery.rate_scope"`) {
		t.Errorf("no warning that rate_scope needs a restart:\n%s", grepLines(s.log.String(), "restart"))
	}
	// A job is in its stream or (after a failed attempt) in the retry set.
	// Both counted in one transaction: a retry moving between them while
	// they are read would be counted twice or not at all.
	jobs := func() int64 {
		ctx := context.Background()
		var n, r *redis.IntCmd
		if _, err := s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
			n, r = p.XLen(ctx, "sb:{acme}:d:app"), p.ZCard(ctx, "sb:{acme}:retry")
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		return n.Val() + r.Val()
	}
	before := jobs()
	if code, _ := postTwilio(t, s.IngressAddr, "acme", "tw2", statusForm("SM5"), true); code != http.StatusOK {
		t.Errorf("after a reload that changed ingress_rate: %d, want 200", code)
	}
	if n := jobs(); n != before+1 {
		t.Errorf("%d jobs stored, want %d: the reloaded route takes status events", n, before+1)
	}
	if code, _ := postTwilio(t, s.IngressAddr, "acme", "tw2", inboundForm("SM6"), true); code != http.StatusOK {
		t.Errorf("an unrouted callback: %d, want 200", code)
	}
	resp, err := http.Get("http://" + s.AdminAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(metrics), `switchboard_unrouted_events_total{source="tw2",tenant="acme"} 1`) {
		t.Errorf("/metrics does not count the unrouted event:\n%s", grepLines(string(metrics), "unrouted"))
	}
	if !strings.Contains(string(metrics), `tenant="globex"`) {
		t.Errorf("/metrics has no series of tenant globex, which had a callback:\n%s", grepLines(string(metrics), "ingress"))
	}

	// Removing a tenant stops its worker and its ingress.
	writeConfig(t, s.file, serverConfig(rs.URL(), v1))
	if err := s.ReloadFile(s.file); err != nil {
		t.Fatalf("ReloadFile: %v", err)
	}
	if code, _ := postTwilio(t, s.IngressAddr, "globex", "tw", statusForm("SM7"), true); code != http.StatusNotFound {
		t.Errorf("a removed tenant: %d, want 404", code)
	}
	if s.worker("globex") != nil {
		t.Error("the removed tenant still has a worker")
	}
	resp, err = http.Get("http://" + s.AdminAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if l := grepLines(string(metrics), `tenant="globex"`); l != "" {
		t.Errorf("/metrics still has the removed tenant's series:\n%s", l)
	}
	if !strings.Contains(s.log.String(), `"removed":["acme/sources.tw2","globex"]`) {
		t.Errorf("the reload log does not list what was removed:\n%s", grepLines(s.log.String(), "reloaded"))
	}
}

func grepLines(s, word string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, word) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// TestWatchTenantsDir: with Watch running, a change to a tenants_dir file
// is reloaded without a signal, and a broken one is reported and ignored.
func TestWatchTenantsDir(t *testing.T) {
	rs := redistest.Start(t)
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "tenants"), 0o755); err != nil {
		t.Fatal(err)
	}
	tenantFile := filepath.Join(dir, "tenants", "acme.yaml")
	writeConfig(t, tenantFile, fmt.Sprintf("sources:\n  tw: {carrier: twilio, secret: %s}\n", token))
	file := filepath.Join(dir, "sb.yaml")
	writeConfig(t, file, fmt.Sprintf(`server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0"}
redis: {url: %q}
tenants_dir: tenants
`, rs.URL()))
	cfg, err := policy.Load(file)
	if err != nil {
		t.Fatal(err)
	}
	logs := &syncWriter{}
	s, err := Start(cfg, slog.New(slog.NewJSONHandler(logs, nil)), Options{Consumer: "test"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = s.Serve(ctx); close(done) }()
	go s.Watch(ctx, file, 20*time.Millisecond)
	t.Cleanup(func() { cancel(); <-done })

	if code, _ := postTwilio(t, s.IngressAddr, "acme", "tw2", statusForm("SM1"), true); code != http.StatusNotFound {
		t.Fatalf("source not yet configured: %d, want 404", code)
	}
	writeConfig(t, tenantFile, fmt.Sprintf("sources:\n  tw: {carrier: twilio, secret: %s}\n  tw2: {carrier: twilio, secret: %s}\n", token, token))
	deadline := time.Now().Add(5 * time.Second)
	for {
		code, _ := postTwilio(t, s.IngressAddr, "acme", "tw2", statusForm("SM1"), true)
		if code == http.StatusOK {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the tenant file's change was not reloaded within 5s (last answer %d):\n%s", code, logs.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	// A broken tenant file keeps the running configuration.
	writeConfig(t, tenantFile, "sources: [\n")
	deadline = time.Now().Add(5 * time.Second)
	for !strings.Contains(logs.String(), "configuration reload failed") {
		if time.Now().After(deadline) {
			t.Fatal("the broken tenant file was not noticed within 5s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if !strings.Contains(logs.String(), tenantFile+":") {
		t.Errorf("the failure does not name the tenant file:\n%s", grepLines(logs.String(), "reload failed"))
	}
	if code, _ := postTwilio(t, s.IngressAddr, "acme", "tw2", statusForm("SM2"), true); code != http.StatusOK {
		t.Errorf("after a failed reload: %d, want 200 from the running configuration", code)
	}
}

// The reload log names what changed: sources, routes, tenant settings and
// top-level sections as well as destinations; moving lines changes nothing.
func TestReloadChanges(t *testing.T) {
	load := func(text string) *policy.Config { return loadConfig(t, text) }
	const base = `server: {trusted_proxies: [10.0.0.0/8]}
tenants:
  acme:
    sources:
      tw: {carrier: twilio, secret: one}
      sn: {carrier: sinch, secret: s}
    destinations:
      crm: {url: "https://crm.example.com/", secret: whsec_c3dpdGNoYm9hcmQtZGVtby1zZWNyZXQta2V5LTAwMDE=}
    routes:
      - to: [crm]
`
	old := load(base)
	if got := changes(old, load("\n\n"+base)); !strings.HasSuffix(fmt.Sprint(got), "added [] removed [] changed []]") {
		t.Errorf("lines moved: %v, want nothing changed", got)
	}
	now := load(strings.NewReplacer(
		"10.0.0.0/8", "10.0.0.0/16",
		"secret: one", "secret: two",
		"      sn: {carrier: sinch, secret: s}\n", "      pl: {carrier: plivo, secret: p}\n",
		"      - to: [crm]", "      - to: [crm]\n        match: {types: [message.received]}",
	).Replace(base))
	got := fmt.Sprint(changes(old, now))
	for _, want := range []string{"added [acme/sources.pl]", "removed [acme/sources.sn]", "changed [acme/routes acme/sources.tw server]"} {
		if !strings.Contains(got, want) {
			t.Errorf("changes = %s, want %q", got, want)
		}
	}
}

// A reload that removes every admin token says the admin API is off, and
// one that adds a token says it is on.
func TestReloadAdminOnOff(t *testing.T) {
	rs := redistest.Start(t)
	tenants := fmt.Sprintf(`  acme:
    sources:
      tw: {carrier: twilio, secret: %s}
    destinations:
      app: {url: "http://127.0.0.1:1/", secret: %s}
    routes:
      - to: [app]
`, token, whsec)
	withToken := strings.Replace(serverConfig(rs.URL(), tenants), `admin_listen: "127.0.0.1:0"}`, `admin_listen: "127.0.0.1:0", admin_token: admin-token-0123456789abcdef}`, 1)
	s := mustServer(t, withToken)
	writeConfig(t, s.file, serverConfig(rs.URL(), tenants))
	if err := s.ReloadFile(s.file); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(s.log.String(), "the admin API is off: the reload removed every admin token") {
		t.Errorf("no line says the admin API is off:\n%s", s.log.String())
	}
	writeConfig(t, s.file, withToken)
	if err := s.ReloadFile(s.file); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(s.log.String(), "the admin API is on") {
		t.Errorf("no line says the admin API is on:\n%s", s.log.String())
	}
}

// TestMetricsAfterRemoval: an attempt that ends after a reload removed its
// tenant adds no series back; a destination no longer configured shows its
// dead letters and retries, and no queue depth (its stream is not read: 0
// would be a guess).
func TestMetricsAfterRemoval(t *testing.T) {
	rs := redistest.Start(t)
	tenants := func(dests string) string {
		return fmt.Sprintf(`  acme:
    destinations:
%s  globex:
    destinations:
      app: {url: "https://app.example.com", secret: %s}
`, dests, whsec)
	}
	s := mustServer(t, serverConfig(rs.URL(), tenants(fmt.Sprintf(`      app: {url: "https://app.example.com", secret: %s}
      old: {url: "https://old.example.com", secret: %s}
`, whsec, whsec))))
	ctx := context.Background()
	if err := s.rdb.HIncrBy(ctx, "sb:{acme}:counts", "x:old", 2).Err(); err != nil { // two dead letters of old
		t.Fatal(err)
	}
	observe := s.observe("globex")
	writeConfig(t, s.file, serverConfig(rs.URL(), fmt.Sprintf(`  acme:
    destinations:
      app: {url: "https://app.example.com", secret: %s}
`, whsec)))
	if err := s.ReloadFile(s.file); err != nil {
		t.Fatal(err)
	}
	// globex's attempt in flight at the reload ends now
	observe("app", &queue.Job{EventID: "evt_1"}, delivery.Outcome{Status: 200}, delivery.Decision{Action: delivery.Ack}, time.Millisecond)
	resp, err := http.Get("http://" + s.AdminAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if l := grepLines(string(metrics), `tenant="globex"`); l != "" {
		t.Errorf("an attempt that ended after its tenant was removed brought series back:\n%s", l)
	}
	if !strings.Contains(string(metrics), `switchboard_dlq_depth{destination="old",tenant="acme"} 2`) {
		t.Errorf("/metrics lacks the removed destination's dead letters:\n%s", grepLines(string(metrics), `"old"`))
	}
	for _, name := range []string{"switchboard_queue_depth", "switchboard_queue_in_flight", "switchboard_queue_oldest_age_seconds"} {
		if strings.Contains(string(metrics), name+`{destination="old"`) {
			t.Errorf("%s of a destination no longer read:\n%s", name, grepLines(string(metrics), `"old"`))
		}
	}
}

// TestRemovedTenantSeriesGoAfterItsAttempts: a series of a removed tenant
// written after the reload dropped them (an attempt in flight that ended
// between its check and its write) goes once the tenant's last attempt has
// ended.
func TestRemovedTenantSeriesGoAfterItsAttempts(t *testing.T) {
	rs := redistest.Start(t)
	release := make(chan struct{})
	var got atomic.Bool
	slow := newRecorder(t, func() int { got.Store(true); <-release; return http.StatusOK })
	globex := fmt.Sprintf(`  globex:
    sources:
      tw: {carrier: twilio, secret: %s}
    destinations:
      app: {url: %q, secret: %s}
    routes: [{to: [app]}]
`, token, slow.URL, whsec)
	acme := fmt.Sprintf(`  acme:
    destinations:
      app: {url: "https://app.example.com", secret: %s}
`, whsec)
	s := mustServer(t, serverConfig(rs.URL(), acme+globex))
	if code, _ := postTwilio(t, s.IngressAddr, "globex", "tw", statusForm("SM1"), true); code != http.StatusOK {
		t.Fatalf("callback = %d", code)
	}
	waitUntil(t, "the attempt in flight", got.Load)
	writeConfig(t, s.file, serverConfig(rs.URL(), acme))
	if err := s.ReloadFile(s.file); err != nil {
		t.Fatal(err)
	}
	s.metrics.attempt("globex", "app", 1, "delivered", time.Millisecond) // the late write
	globexSeries := func() string {
		resp, err := http.Get("http://" + s.AdminAddr + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return grepLines(string(b), `tenant="globex"`)
	}
	if globexSeries() == "" {
		t.Fatal("the late write left no series: the test shows nothing")
	}
	close(release)
	waitUntil(t, "the removed tenant's series to go", func() bool { return globexSeries() == "" })
}

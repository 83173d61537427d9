package gateway

import (
	"bufio"
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	switchboard "github.com/switchboard-gw/switchboard"
	"github.com/switchboard-gw/switchboard/gateway/carrier"
	"github.com/switchboard-gw/switchboard/policy"
	"github.com/switchboard-gw/switchboard/queue"
	"github.com/switchboard-gw/switchboard/queue/redistest"
)

const token = "test_auth_token_0123456789abcdef"

type fixture struct {
	srv *httptest.Server
	rdb *redis.Client
	rs  *redistest.Server
	log *syncWriter
}

func mustGateway(t *testing.T, serverYAML string) *fixture {
	t.Helper()
	rs := redistest.Start(t)
	cfgText := "server:\n" + serverYAML + `
  max_body_bytes: 2048
redis:
  url: ` + rs.URL() + `
tenants:
  acme:
    sources:
      tw: {carrier: twilio, secret: ` + token + `}
      sn: {carrier: sinch, secret: sinch-secret}
    destinations:
      app: {url: "https://app.example.com/in", secret: whsec_c3dpdGNoYm9hcmQtZGVtby1zZWNyZXQta2V5LTAwMDE=}
    routes:
      - match: {types: [message.received]}
        to: [app]
`
	_, srv, rdb, logs := serveGateway(t, rs, cfgText)
	return &fixture{srv: srv, rdb: rdb, rs: rs, log: logs}
}

// sendSimulated sends the callback carrier.Simulate builds for cfg, kind
// and m to target and fails the test unless it is answered 200.
func sendSimulated(t *testing.T, cfg carrier.Config, kind string, m carrier.SimMessage, target string) {
	t.Helper()
	req, err := carrier.Simulate(cfg, kind, m, target, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("%s %s callback answered %d, want 200", cfg.Carrier, kind, resp.StatusCode)
	}
}

// serveGateway builds a gateway of cfgText on rs and serves its ingress
// from an httptest server; the log goes to the returned writer.
func serveGateway(t *testing.T, rs *redistest.Server, cfgText string) (*Gateway, *httptest.Server, *redis.Client, *syncWriter) {
	t.Helper()
	cfg := loadConfig(t, cfgText)
	rdb := rs.Client(t)
	logs := &syncWriter{}
	g, err := New(cfg, queue.New(rdb), slog.New(slog.NewJSONHandler(logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(g.Handler())
	t.Cleanup(srv.Close)
	return g, srv, rdb, logs
}

// loadConfig writes text to a config file and loads it.
func loadConfig(t *testing.T, text string) *policy.Config {
	t.Helper()
	file := filepath.Join(t.TempDir(), "sb.yaml")
	if err := os.WriteFile(file, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := policy.Load(file)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

type syncWriter struct {
	mu sync.Mutex
	b  strings.Builder
}

func (w *syncWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

func (w *syncWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.String()
}

func inboundForm(sid string) url.Values {
	return url.Values{
		"MessageSid": {sid}, "SmsSid": {sid}, "AccountSid": {"AC00000000000000000000000000000001"},
		"From": {"+15555550100"}, "To": {"+15555550199"}, "Body": {"hi"}, "NumMedia": {"0"}, "SmsStatus": {"received"},
	}
}

// post sends a form signed for signURL to the test server at path.
func (f *fixture) post(t *testing.T, path, signURL string, form url.Values, hdr map[string]string) (*http.Response, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, f.srv.URL+path, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("X-Twilio-Signature", carrier.TwilioSignature(token, signURL, form))
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, string(b)
}

func (f *fixture) queued(t *testing.T) int64 {
	t.Helper()
	n, err := f.rdb.XLen(context.Background(), "sb:{acme}:d:app").Result()
	if err != nil && err != redis.Nil {
		t.Fatal(err)
	}
	return n
}

func TestIngressAnswers(t *testing.T) {
	f := mustGateway(t, `  listen: ":0"`)
	self := f.srv.URL + "/hooks/acme/tw"

	resp, body := f.post(t, "/hooks/acme/tw", self, inboundForm("SM1"), nil)
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/xml" || !strings.Contains(body, "<Response/>") {
		t.Fatalf("stored callback: %d %q %q, want 200 text/xml empty TwiML", resp.StatusCode, resp.Header.Get("Content-Type"), body)
	}
	if n := f.queued(t); n != 1 {
		t.Fatalf("queued = %d, want 1", n)
	}

	status := url.Values{"MessageSid": {"SM2"}, "MessageStatus": {"delivered"}, "From": {"+15555550199"}, "To": {"+15555550100"}}
	resp, body = f.post(t, "/hooks/acme/tw", self, status, nil)
	if resp.StatusCode != 200 || body != "" {
		t.Errorf("status callback: %d %q, want empty 200", resp.StatusCode, body)
	}
	if n := f.queued(t); n != 1 {
		t.Errorf("queued = %d, want 1: no route takes status events, so nothing is stored", n)
	}

	for _, tc := range []struct {
		name string
		path string
		sign string
		form url.Values
		hdr  map[string]string
		code int
	}{
		{"unknown tenant", "/hooks/nobody/tw", f.srv.URL + "/hooks/nobody/tw", inboundForm("SM3"), nil, 404},
		{"unknown source", "/hooks/acme/nope", f.srv.URL + "/hooks/acme/nope", inboundForm("SM3"), nil, 404},
		{"signed for another URL", "/hooks/acme/tw", "https://elsewhere.example.com/hooks/acme/tw", inboundForm("SM3"), nil, 401},
		{"wrong signature", "/hooks/acme/tw", self, inboundForm("SM3"), map[string]string{"X-Twilio-Signature": "AAAAAAAAAAAAAAAAAAAAAAAAAAA="}, 401},
		{"too large", "/hooks/acme/tw", self, url.Values{"MessageSid": {"SM3"}, "Body": {strings.Repeat("x", 4096)}}, nil, 413},
		{"unparseable", "/hooks/acme/tw", self, url.Values{"Body": {"no sid"}}, nil, 400},
		{"forwarded headers from an untrusted peer", "/hooks/acme/tw", "https://hooks.example.com/hooks/acme/tw", inboundForm("SM3"),
			map[string]string{"X-Forwarded-Proto": "https", "X-Forwarded-Host": "hooks.example.com"}, 401},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, _ := f.post(t, tc.path, tc.sign, tc.form, tc.hdr)
			if resp.StatusCode != tc.code {
				t.Errorf("status = %d, want %d", resp.StatusCode, tc.code)
			}
			if n := f.queued(t); n != 1 {
				t.Errorf("queued = %d, want 1: a refused callback must store nothing", n)
			}
		})
	}
	if !strings.Contains(f.log.String(), `"url":"https://hooks.example.com/hooks/acme/tw"`) &&
		!strings.Contains(f.log.String(), f.srv.URL+"/hooks/acme/tw") {
		t.Errorf("a verification failure's log does not name the URL used:\n%s", f.log.String())
	}
	if strings.Contains(f.log.String(), token) {
		t.Error("the log contains the auth token")
	}

	// Redis down: 503 with Retry-After, never 200.
	f.rs.Kill()
	resp, _ = f.post(t, "/hooks/acme/tw", self, inboundForm("SM9"), nil)
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
		t.Errorf("with Redis down: %d Retry-After=%q, want 503 with Retry-After", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	r, err := http.Get(f.srv.URL + "/readyz")
	if err != nil || r.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("/readyz with Redis down = %v %v, want 503", r.StatusCode, err)
	}
	r, err = http.Get(f.srv.URL + "/healthz")
	if err != nil || r.StatusCode != http.StatusOK {
		t.Errorf("/healthz = %v %v, want 200", r.StatusCode, err)
	}
}

// TestIngressRefusesDeclaredLength: a body whose Content-Length is over
// server.max_body_bytes gets 413 at once, not after the client has sent it
// (or after the read timeout, when the client waits for an answer first).
func TestIngressRefusesDeclaredLength(t *testing.T) {
	f := mustGateway(t, `  listen: ":0"`)
	conn, err := net.Dial("tcp", strings.TrimPrefix(f.srv.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	// max_body_bytes is 2048 in the fixture; 10 of the 100000 bytes come.
	if _, err := io.WriteString(conn, "POST /hooks/acme/tw HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n"+
		"Content-Length: 100000\r\n\r\nMessageSid"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("no answer before the body was sent: %v", err)
	}
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Errorf("status = %d, want 413", resp.StatusCode)
	}
	if n := f.queued(t); n != 0 {
		t.Errorf("queued = %d, want 0", n)
	}
}

func TestPublicBaseURL(t *testing.T) {
	f := mustGateway(t, `  listen: ":0"
  public_base_url: "https://hooks.example.com/"`)
	signed := "https://hooks.example.com/hooks/acme/tw?a=1&b=%27x%27"
	resp, _ := f.post(t, "/hooks/acme/tw?a=1&b=%27x%27", signed, inboundForm("SM1"), nil)
	if resp.StatusCode != 200 {
		t.Errorf("signed for public_base_url + path + query: %d, want 200", resp.StatusCode)
	}
	resp, _ = f.post(t, "/hooks/acme/tw?a=1&b=%27x%27", f.srv.URL+"/hooks/acme/tw?a=1&b=%27x%27", inboundForm("SM2"), nil)
	if resp.StatusCode != 401 {
		t.Errorf("signed for the request's own URL while public_base_url is set: %d, want 401", resp.StatusCode)
	}
}

// TestPublicURL: the URL a URL-signed carrier signed, rebuilt from the
// request: forwarded scheme, host and port only from trusted proxies, the
// scheme's default port left out, the path and query as sent, also from a
// request line in absolute form.
func TestPublicURL(t *testing.T) {
	rt := &routing{cfg: &policy.Config{}, trusted: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}}
	for _, c := range []struct {
		name, peer, host, uri string
		hdr                   map[string]string
		want                  string
	}{
		{"direct", "203.0.113.5:1234", "gw.example.com", "/hooks/a/b?x=%2F", nil, "http://gw.example.com/hooks/a/b?x=%2F"},
		{"direct, default port", "203.0.113.5:1234", "gw.example.com:80", "/h", nil, "http://gw.example.com/h"},
		{"direct, other port", "203.0.113.5:1234", "gw.example.com:8080", "/h", nil, "http://gw.example.com:8080/h"},
		{"untrusted forwarding ignored", "203.0.113.5:1234", "gw", "/h",
			map[string]string{"X-Forwarded-Proto": "https", "X-Forwarded-Host": "evil.example.com", "X-Forwarded-Port": "8443"}, "http://gw/h"},
		{"trusted proto and host", "10.1.2.3:1234", "internal:8080", "/h",
			map[string]string{"X-Forwarded-Proto": "https", "X-Forwarded-Host": "hooks.example.com"}, "https://hooks.example.com/h"},
		{"trusted port", "10.1.2.3:1234", "hooks.example.com", "/h",
			map[string]string{"X-Forwarded-Proto": "https", "X-Forwarded-Port": "8443"}, "https://hooks.example.com:8443/h"},
		{"trusted default port", "10.1.2.3:1234", "hooks.example.com", "/h",
			map[string]string{"X-Forwarded-Proto": "https", "X-Forwarded-Port": "443"}, "https://hooks.example.com/h"},
		{"host with its port wins over X-Forwarded-Port", "10.1.2.3:1234", "internal", "/h",
			map[string]string{"X-Forwarded-Proto": "https", "X-Forwarded-Host": "hooks.example.com:9443", "X-Forwarded-Port": "8443"}, "https://hooks.example.com:9443/h"},
		{"proxy's $host:$server_port", "10.1.2.3:1234", "hooks.example.com:443", "/h",
			map[string]string{"X-Forwarded-Proto": "https"}, "https://hooks.example.com/h"},
		{"bad port ignored", "10.1.2.3:1234", "hooks.example.com", "/h",
			map[string]string{"X-Forwarded-Port": "80x"}, "http://hooks.example.com/h"},
		{"IPv6 default port", "10.1.2.3:1234", "[2001:db8::1]:80", "/h", nil, "http://[2001:db8::1]/h"},
		{"absolute form", "203.0.113.5:1234", "gw.example.com", "http://gw.example.com/hooks/a/b?x=1", nil, "http://gw.example.com/hooks/a/b?x=1"},
		{"absolute form, query only", "203.0.113.5:1234", "gw.example.com", "http://gw.example.com?x=1", nil, "http://gw.example.com/?x=1"},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodPost, "http://placeholder/", nil)
			r.RemoteAddr, r.Host, r.RequestURI = c.peer, c.host, c.uri
			for k, v := range c.hdr {
				r.Header.Set(k, v)
			}
			if got := rt.publicURL(r); got != c.want {
				t.Errorf("publicURL = %q, want %q", got, c.want)
			}
		})
	}
}

// TestAbsoluteFormRequest: a callback whose request line carries the full
// URL verifies against that URL.
func TestAbsoluteFormRequest(t *testing.T) {
	f := mustGateway(t, `  listen: ":0"`)
	self := f.srv.URL + "/hooks/acme/tw"
	form := inboundForm("SM1")
	req, _ := http.NewRequest(http.MethodPost, self, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("X-Twilio-Signature", carrier.TwilioSignature(token, self, form))
	conn, err := net.Dial("tcp", strings.TrimPrefix(f.srv.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	if err := req.WriteProxy(conn); err != nil { // the request line in absolute form
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Errorf("absolute-form request: %d, want 200", resp.StatusCode)
	}
}

func TestTrustedProxies(t *testing.T) {
	f := mustGateway(t, `  listen: ":0"
  trusted_proxies: ["127.0.0.0/8"]`)
	hdr := map[string]string{"X-Forwarded-Proto": "https", "X-Forwarded-Host": "hooks.example.com"}
	resp, _ := f.post(t, "/hooks/acme/tw", "https://hooks.example.com/hooks/acme/tw", inboundForm("SM1"), hdr)
	if resp.StatusCode != 200 {
		t.Errorf("forwarded by a trusted proxy: %d, want 200", resp.StatusCode)
	}
}

// replayable captures a simulated callback so it can be sent again byte
// for byte.
func replayable(t *testing.T, cfg carrier.Config, target string) func() int {
	t.Helper()
	send, _ := replayableWith(t, cfg, target)
	return func() int { return send().StatusCode }
}

// replayableWith is replayable giving the whole answer, and the headers
// the callback carries (its signature, its nonce).
func replayableWith(t *testing.T, cfg carrier.Config, target string) (send func() *http.Response, hdr http.Header) {
	t.Helper()
	req, err := carrier.Simulate(cfg, "inbound", carrier.SimMessage{Text: "nonce"}, target, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(req.Body)
	return func() *http.Response {
		r, _ := http.NewRequest(req.Method, target, bytes.NewReader(body))
		r.Header = req.Header.Clone()
		resp, err := http.DefaultClient.Do(r)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}, req.Header
}

func TestNonceRecordedOnlyOnceStored(t *testing.T) {
	f := mustGateway(t, `  listen: ":0"`)
	target := f.srv.URL + "/hooks/acme/sn"
	cfg := carrier.Config{Carrier: "sinch", Secret: "sinch-secret"}

	send := replayable(t, cfg, target)
	if code := send(); code != http.StatusOK {
		t.Fatalf("first send = %d, want 200", code)
	}
	if code := send(); code != http.StatusUnauthorized {
		t.Errorf("replayed nonce = %d, want 401", code)
	}

	send = replayable(t, cfg, target)
	f.rs.Kill()
	if code := send(); code != http.StatusServiceUnavailable {
		t.Fatalf("with Redis down = %d, want 503", code)
	}
	f.rs.Start()
	var code int
	for range 50 { // the client redials after the restart
		if code = send(); code != http.StatusServiceUnavailable {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if code != http.StatusOK {
		t.Errorf("the carrier's retry after a 503 = %d, want 200: the nonce must not be burnt by a refused callback", code)
	}
}

// TestNonceConcurrentReplays: requests with one nonce sent at once are
// not all taken for new: one is stored; the others are replays (401) or,
// while the first is being stored, told to try again (503). The nonce is
// claimed before the events are stored, not only recorded after.
func TestNonceConcurrentReplays(t *testing.T) {
	f := mustGateway(t, `  listen: ":0"`)
	send := replayable(t, carrier.Config{Carrier: "sinch", Secret: "sinch-secret"}, f.srv.URL+"/hooks/acme/sn")
	const n = 16
	codes := make(chan int, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			codes <- send()
		}()
	}
	close(start)
	wg.Wait()
	close(codes)
	got := map[int]int{}
	for c := range codes {
		got[c]++
	}
	if got[http.StatusOK] != 1 || got[http.StatusUnauthorized]+got[http.StatusServiceUnavailable] != n-1 {
		t.Errorf("answers = %v, want one 200 and %d 401s or 503s", got, n-1)
	}
	if code := send(); code != http.StatusUnauthorized {
		t.Errorf("a replay once it is stored = %d, want 401", code)
	}
}

// TestNoncePendingClaim: a request whose nonce another request has claimed
// (and not yet stored) is told to try again, 503 with Retry-After, not
// refused as a replay; once the claim is given back it is accepted.
func TestNoncePendingClaim(t *testing.T) {
	f := mustGateway(t, `  listen: ":0"`)
	send, hdr := replayableWith(t, carrier.Config{Carrier: "sinch", Secret: "sinch-secret"}, f.srv.URL+"/hooks/acme/sn")
	key := "sn:" + hdr.Get("X-Sinch-Webhook-Signature-Nonce")
	store := queue.New(f.rdb)
	_, token, err := store.Claim(context.Background(), "acme", key, time.Minute)
	if err != nil || token == "" {
		t.Fatalf("Claim = %q, %v", token, err)
	}
	if resp := send(); resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
		t.Errorf("with the nonce claimed by another request: %d Retry-After %q, want 503 with Retry-After", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	if err := store.Unclaim(context.Background(), "acme", key, token); err != nil {
		t.Fatal(err)
	}
	if resp := send(); resp.StatusCode != http.StatusOK {
		t.Errorf("once the claim is given back: %d, want 200", resp.StatusCode)
	}
}

// A refused GET callback's log line names the URL that was verified, its
// query in the order sent, without the message text, URL tokens or full
// phone numbers — in the url attribute and in the verifier's error alike.
func TestRefusedCallbackLogRedacted(t *testing.T) {
	f := mustGateway(t, `  listen: "127.0.0.1:0"`)
	query := "MessageSid=SM1&From=%2B15555550100&To=%2B15555550199&Body=secret+words&token=tok3n-value"
	req, _ := http.NewRequest(http.MethodGet, f.srv.URL+"/hooks/acme/tw?"+query, nil)
	req.Header.Set("X-Twilio-Signature", "AAAAAAAAAAAAAAAAAAAAAAAAAAA=")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("status %d, want 401", resp.StatusCode)
	}
	logs := f.log.String()
	for _, leak := range []string{"15555550100", "15555550199", "secret+words", "secret words", "tok3n-value"} {
		if strings.Contains(logs, leak) {
			t.Errorf("log holds %q:\n%s", leak, logs)
		}
	}
	want := "/hooks/acme/tw?MessageSid=SM1&From=%2B1555***0100&To=%2B1555***0199&Body=REDACTED&token=REDACTED"
	if strings.Count(logs, want) < 2 { // the url attribute and the error's text
		t.Errorf("log does not name the verified URL as %q twice:\n%s", want, logs)
	}
}

func TestRedactURLsIn(t *testing.T) {
	in := `verify twilio: signature does not match URL "https://h/x?Body=hi&a=1" (nor "https://h:443/x?Body=hi&a=1")`
	want := `verify twilio: signature does not match URL "https://h/x?Body=REDACTED&a=1" (nor "https://h:443/x?Body=REDACTED&a=1")`
	if got := redactURLsIn(in); got != want {
		t.Errorf("redactURLsIn:\n got %s\nwant %s", got, want)
	}
	// A quote inside the URL (escaped by %q) does not end it early.
	in = fmt.Sprintf("URL %q then", `https://h/x?a="b"&Body=hi`)
	if got, want := redactURLsIn(in), `URL "https://h/x?a=\"b\"&Body=REDACTED" then`; got != want {
		t.Errorf("redactURLsIn:\n got %s\nwant %s", got, want)
	}
	if got := redactURLsIn(`no url "here"`); got != `no url "here"` {
		t.Errorf("redactURLsIn changed text without a URL: %s", got)
	}
}

func TestFailureReason(t *testing.T) {
	vm, err := carrier.New(carrier.Config{Carrier: "vonage-messages", Secret: "s"})
	if err != nil {
		t.Fatal(err)
	}
	_, unsigned := vm.Verify(&carrier.Request{Method: http.MethodPost, URL: "https://h/x", Header: http.Header{}, Now: time.Now()})
	for _, tc := range []struct {
		err  error
		want string
	}{
		{unsigned, "unsigned"},
		{fmt.Errorf("verify aws-sns: cannot fetch the signing certificate: %w", switchboard.ErrUnavailable), "unverifiable"},
		{fmt.Errorf("verify twilio: signature does not match: %w", switchboard.ErrBadSignature), "bad_signature"},
		{errors.New("replayed nonce"), "replayed"},
	} {
		if got := failureReason(tc.err); got != tc.want {
			t.Errorf("failureReason(%v) = %q, want %q", tc.err, got, tc.want)
		}
	}
	if strings.Contains(unsigned.Error(), "store unavailable") {
		t.Errorf("an unsigned callback's error blames the store: %v", unsigned)
	}
}

func TestRedactURL(t *testing.T) {
	for in, want := range map[string]string{
		"https://h/x?auth=s3cr3t&pass=hunter2&pwd=x&id=7": "https://h/x?auth=REDACTED&pass=REDACTED&pwd=REDACTED&id=7",
		"https://h/x?type=binary&data=00ff&udh=0500&n=1":  "https://h/x?type=binary&data=REDACTED&udh=REDACTED&n=1",
		"https://h/hooks/a/b":                             "https://h/hooks/a/b",
		// ';' separates pairs for some parsers: a token after one is kept out too.
		"https://h/x?x=1;token=s3cr3t&b=2;Body=hi": "https://h/x?x=1;token=REDACTED&b=2;Body=REDACTED",
	} {
		if got := redactURL(in); got != want {
			t.Errorf("redactURL(%s) = %s, want %s", in, got, want)
		}
	}
}

// Behind trusted proxies the client address is the nearest untrusted one
// in X-Forwarded-For; from anyone else the header is not believed.
func TestClientAddr(t *testing.T) {
	rt := &routing{}
	for _, c := range []string{"10.0.0.0/8", "127.0.0.1/32"} {
		rt.trusted = append(rt.trusted, netip.MustParsePrefix(c))
	}
	for _, tc := range []struct{ peer, xff, want string }{
		{"203.0.113.9:4000", "198.51.100.7", "203.0.113.9"},                   // untrusted peer: the header is ignored
		{"127.0.0.1:4000", "198.51.100.7", "198.51.100.7"},                    // one trusted proxy
		{"127.0.0.1:4000", "6.6.6.6, 198.51.100.7, 10.1.2.3", "198.51.100.7"}, // a spoofed first entry stays unbelieved
		{"127.0.0.1:4000", "", "127.0.0.1"},                                   // no header
		{"127.0.0.1:4000", "10.1.1.1", "10.1.1.1"},                            // all trusted: the farthest
		{"127.0.0.1:4000", "198.51.100.7, not-an-ip, 10.9.9.9", "10.9.9.9"},   // the walk stops at garbage
		{"[::ffff:127.0.0.1]:4000", "[2001:db8::1]", "127.0.0.1"},             // a bracketed entry is garbage
		{"127.0.0.1:4000", "2001:db8::1", "2001:db8::1"},
	} {
		r := httptest.NewRequest("POST", "/hooks/a/b", nil)
		r.RemoteAddr = tc.peer
		if tc.xff != "" {
			r.Header.Set("X-Forwarded-For", tc.xff)
		}
		if got := rt.clientAddr(r).String(); got != tc.want {
			t.Errorf("peer %s, X-Forwarded-For %q: %s, want %s", tc.peer, tc.xff, got, tc.want)
		}
	}
}

// An allow-list behind a trusted proxy checks the client the proxy saw.
func TestAllowedIPsBehindProxy(t *testing.T) {
	rs := redistest.Start(t)
	at := carrier.Config{Carrier: "africastalking", URLToken: "at-url-token-0123456789"}
	for _, tc := range []struct {
		trusted, xff string
		want         int
	}{
		{`["127.0.0.0/8"]`, "198.51.100.7", http.StatusOK},
		{`["127.0.0.0/8"]`, "203.0.113.9", http.StatusUnauthorized},
		{`[]`, "198.51.100.7", http.StatusUnauthorized}, // the peer is 127.0.0.1; the header is not believed
	} {
		_, srv, _, _ := serveGateway(t, rs, `
server: {trusted_proxies: `+tc.trusted+`}
redis: {url: `+rs.URL()+`}
tenants:
  acme:
    sources:
      at: {carrier: africastalking, url_token: at-url-token-0123456789, allowed_ips: [198.51.100.0/24]}
    destinations:
      app: {url: "https://app.example.com/in", secret: whsec_c3dpdGNoYm9hcmQtZGVtby1zZWNyZXQta2V5LTAwMDE=}
    routes:
      - to: [app]
`)
		req, err := carrier.Simulate(at, "inbound", carrier.SimMessage{}, srv.URL+"/hooks/acme/at?token=at-url-token-0123456789", time.Now())
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("X-Forwarded-For", tc.xff)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.want {
			t.Errorf("trusted_proxies %s, X-Forwarded-For %s: %d, want %d", tc.trusted, tc.xff, resp.StatusCode, tc.want)
		}
	}
}

// A Plivo callback carrying both V2 and V3 signatures is stored once; the
// same request replayed without either family's headers is a replay (401)
// — without V3 with another body (V2 does not cover it), without V2 with
// its parameters re-cut (V3 joins them as k1v1k2v2) so that the message id
// differs and dedup would not catch it.
func TestPlivoBothNoncesRemembered(t *testing.T) {
	rs := redistest.Start(t)
	_, srv, rdb, _ := serveGateway(t, rs, `server:
  listen: ":0"
redis:
  url: `+rs.URL()+`
tenants:
  acme:
    sources:
      pl: {carrier: plivo, secret: plivo-token}
    destinations:
      app: {url: "https://app.example.com/in", secret: whsec_c3dpdGNoYm9hcmQtZGVtby1zZWNyZXQta2V5LTAwMDE=}
    routes:
      - to: [app]
`)
	target := srv.URL + "/hooks/acme/pl"
	sign := func(s string) string {
		m := hmac.New(sha256.New, []byte("plivo-token"))
		m.Write([]byte(s))
		return base64.StdEncoding.EncodeToString(m.Sum(nil))
	}
	const v2n, v3n = "11111111111111111111", "22222222222222222222"
	send := func(body, signed string, v2, v3 bool) int {
		req, _ := http.NewRequest("POST", target, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		if v3 {
			req.Header.Set("X-Plivo-Signature-V3-Nonce", v3n)
			req.Header.Set("X-Plivo-Signature-V3", sign(target+"?"+signed+"."+v3n))
		}
		if v2 {
			req.Header.Set("X-Plivo-Signature-V2-Nonce", v2n)
			req.Header.Set("X-Plivo-Signature-V2", sign(target+v2n))
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	signed := "From15555550100MessageUUIDabcTexthiTo15555550199Typesms"
	if c := send("From=15555550100&MessageUUID=abc&Text=hi&To=15555550199&Type=sms", signed, true, true); c != http.StatusOK {
		t.Fatalf("genuine = %d, want 200", c)
	}
	if c := send("From=15555550100&MessageUUID=abcTexthi&To=15555550199&Type=sms", signed, false, true); c != http.StatusUnauthorized {
		t.Errorf("replay without its V2 headers, parameters re-cut = %d, want 401", c)
	}
	if c := send("From=15555550100&MessageUUID=forged&Text=wire+the+money&To=15555550199&Type=sms", "", true, false); c != http.StatusUnauthorized {
		t.Errorf("replay without its V3 headers, another body = %d, want 401", c)
	}
	if n, _ := rdb.XLen(t.Context(), "sb:{acme}:d:app").Result(); n != 1 {
		t.Errorf("jobs queued = %d, want the genuine one only", n)
	}
}

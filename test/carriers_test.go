package test

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	switchboard "github.com/switchboard-gw/switchboard"
	"github.com/switchboard-gw/switchboard/gateway/carrier"
	"github.com/switchboard-gw/switchboard/queue/redistest"
)

// carrierCase is one source of the all-carriers test: its YAML and the
// credentials simulate signs with.
type carrierCase struct {
	source, yaml string
	sim          carrier.Config
	query        string // appended to the hook URL (Africa's Talking's token)
}

func carrierCases(t *testing.T) []carrierCase {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	pubB64, privB64 := base64.StdEncoding.EncodeToString(pub), base64.StdEncoding.EncodeToString(priv)
	return []carrierCase{
		{"twilio", "carrier: twilio\n        secret: tw-token", carrier.Config{Carrier: "twilio", Secret: "tw-token"}, ""},
		{"vonage-sms", "carrier: vonage-sms\n        secret: vonage-sig-secret\n        signature_method: sha256", carrier.Config{Carrier: "vonage-sms", Secret: "vonage-sig-secret", SignatureMethod: "sha256"}, ""},
		{"vonage-messages", "carrier: vonage-messages\n        secret: vonage-msg-secret-0123456789abcdef", carrier.Config{Carrier: "vonage-messages", Secret: "vonage-msg-secret-0123456789abcdef"}, ""},
		{"telnyx", "carrier: telnyx\n        public_key: " + pubB64, carrier.Config{Carrier: "telnyx", PrivateKey: privB64}, ""},
		{"plivo", "carrier: plivo\n        secret: plivo-token", carrier.Config{Carrier: "plivo", Secret: "plivo-token"}, ""},
		{"sinch", "carrier: sinch\n        secret: sinch-secret", carrier.Config{Carrier: "sinch", Secret: "sinch-secret"}, ""},
		{"bandwidth", "carrier: bandwidth\n        username: bw-user\n        password: bw-pass", carrier.Config{Carrier: "bandwidth", Username: "bw-user", Password: "bw-pass"}, ""},
		{"messagebird", "carrier: messagebird\n        secret: mb-signing-key", carrier.Config{Carrier: "messagebird", Secret: "mb-signing-key"}, ""},
		{"bird", "carrier: bird\n        secret: bird-signing-key", carrier.Config{Carrier: "bird", Secret: "bird-signing-key"}, ""},
		{"infobip", "carrier: infobip\n        username: ib-user\n        password: ib-pass", carrier.Config{Carrier: "infobip", Username: "ib-user", Password: "ib-pass"}, ""},
		{"africastalking", "carrier: africastalking\n        url_token: at-url-token-0123456789", carrier.Config{Carrier: "africastalking", URLToken: "at-url-token-0123456789"}, "?token=at-url-token-0123456789"},
		{"standard-webhooks", "carrier: standard-webhooks\n        secret: " + demoSecret, carrier.Config{Carrier: "standard-webhooks", Secret: demoSecret}, ""},
		{"hmac", "carrier: hmac\n        secret: hub-secret\n        header: X-Hub-Signature-256\n        algorithm: sha256\n        encoding: hex\n        prefix: \"sha256=\"", carrier.Config{Carrier: "hmac", Secret: "hub-secret", Header: "X-Hub-Signature-256", Algorithm: "sha256", Encoding: "hex", Prefix: "sha256="}, ""},
		{"basic", "carrier: basic\n        username: b-user\n        password: b-pass", carrier.Config{Carrier: "basic", Username: "b-user", Password: "b-pass"}, ""},
	}
}

// TestEveryCarrier posts each carrier's simulated inbound and status
// callbacks through the real gateway and Redis, and checks the three output
// formats: the normalized event, the raw callback byte for byte, and the
// Twilio form signed so Twilio's own validation accepts it.
func TestEveryCarrier(t *testing.T) {
	rs := redistest.Start(t)
	norm := newDestination(t, nil)
	raw := newDestination(t, nil)
	legacy := newDestination(t, nil)
	cases := carrierCases(t)
	var sources strings.Builder
	for _, c := range cases {
		fmt.Fprintf(&sources, "      %s:\n        %s\n", c.source, c.yaml)
	}
	cfg := fmt.Sprintf(`
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0"}
redis: {url: %q}
delivery: {allow_private_networks: true, timeout: 5s}
tenants:
  acme:
    sources:
%s    destinations:
      norm: {url: %q, secret: %s}
      raw: {url: %q, secret: %s, format: raw}
      legacy: {url: %q, secret: %s, format: twilio, twilio_auth_token: legacy-app-token}
    routes:
      - to: [norm, raw, legacy]
`, rs.URL(), sources.String(), norm.URL, demoSecret, raw.URL, demoSecret, legacy.URL+"/sms?app=1", demoSecret)
	g := startGateway(t, cfg)

	type sent struct {
		carrier, kind string
		body          []byte
		contentType   string
	}
	var all []sent
	for _, c := range cases {
		for _, kind := range []string{"inbound", "status"} {
			target := g.hookURL("acme", c.source) + c.query
			req, err := carrier.Simulate(c.sim, kind, carrier.SimMessage{Text: "hello " + c.source, Status: "delivered"}, target, time.Now())
			if err != nil {
				t.Fatalf("%s %s: %v", c.source, kind, err)
			}
			var body []byte
			if req.Body != nil {
				body, _ = io.ReadAll(req.Body)
				req.Body = io.NopCloser(bytes.NewReader(body))
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			answer, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode/100 != 2 {
				t.Errorf("%s %s: answered %d %s, want 2xx", c.source, kind, resp.StatusCode, answer)
				continue
			}
			all = append(all, sent{c.source, kind, body, req.Header.Get("Content-Type")})
		}
	}

	// Normalized: every carrier's inbound and status arrive, signed.
	want := map[string]bool{}
	for _, s := range all {
		typ := switchboard.TypeReceived
		if s.kind == "status" {
			typ = switchboard.TypeStatus
		}
		want[s.carrier+" "+typ] = true
	}
	got := map[string]switchboard.Event{}
	var mu sync.Mutex
	waitFor(t, 20*time.Second, "every carrier's events at the normalized destination", func() bool {
		mu.Lock()
		defer mu.Unlock()
		for _, dv := range norm.deliveries() {
			e := event(t, dv)
			got[e.Source+" "+e.Type] = e
		}
		for k := range want {
			if _, ok := got[k]; !ok {
				return false
			}
		}
		return true
	})
	for k, e := range got {
		if e.Carrier != e.Source {
			t.Errorf("%s: carrier = %q", k, e.Carrier)
		}
		if e.Data.MessageID == "" {
			t.Errorf("%s: no message_id", k)
		}
		switch e.Type {
		case switchboard.TypeReceived:
			if e.Data.Text != "hello "+e.Source || e.Data.From != "+15555550100" {
				t.Errorf("%s: text %q from %q, want hello %s from +15555550100", k, e.Data.Text, e.Data.From, e.Source)
			}
		case switchboard.TypeStatus:
			if e.Data.Status != switchboard.StatusDelivered || e.Data.CarrierStatus == "" {
				t.Errorf("%s: status %q (carrier %q), want delivered", k, e.Data.Status, e.Data.CarrierStatus)
			}
			if e.Data.To != "+15555550100" {
				t.Errorf("%s: to = %q, want the recipient +15555550100", k, e.Data.To)
			}
		}
	}
	for _, dv := range norm.deliveries() {
		verify(t, dv)
	}

	// Raw: one delivery per callback received, its body as sent.
	waitFor(t, 20*time.Second, "a raw delivery per callback", func() bool { return len(raw.deliveries()) >= len(all) })
	rawBodies := map[string]bool{}
	for _, dv := range raw.deliveries() {
		verify(t, dv)
		rawBodies[string(dv.Body)] = true
	}
	if n := len(raw.deliveries()); n != len(all) {
		t.Errorf("raw destination got %d deliveries for %d callbacks", n, len(all))
	}
	for _, s := range all {
		if len(s.body) > 0 && !rawBodies[string(s.body)] {
			t.Errorf("%s %s: the raw destination never got the callback's body", s.carrier, s.kind)
		}
	}

	// Twilio format: form fields with an X-Twilio-Signature that Twilio's
	// validation (our verifier reproduces its SDK vectors) accepts.
	tw, err := carrier.New(carrier.Config{Carrier: "twilio", Secret: "legacy-app-token"})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, "twilio-format deliveries", func() bool { return len(legacy.deliveries()) >= len(got) })
	for _, dv := range legacy.deliveries() {
		req := &carrier.Request{Method: http.MethodPost, URL: legacy.URL + "/sms?app=1", Header: dv.Header, Body: dv.Body, Now: time.Now()}
		if _, err := tw.Verify(req); err != nil {
			t.Errorf("twilio-format delivery does not verify with the app's auth token: %v", err)
			continue
		}
		f, err := url.ParseQuery(string(dv.Body))
		if err != nil || f.Get("MessageSid") == "" || f.Get("AccountSid") != "AC"+strings.Repeat("0", 32) {
			t.Errorf("twilio-format body = %s", dv.Body)
		}
		if f.Get("SmsStatus") != "received" && f.Get("MessageStatus") != "delivered" {
			t.Errorf("twilio-format status fields: %s", dv.Body)
		}
	}
}

// TestVonageMultipart sends a three-part Vonage SMS with the CLI, parts out
// of order: the normalized destination gets one event with the whole text,
// the raw destination each callback.
func TestVonageMultipart(t *testing.T) {
	rs := redistest.Start(t)
	norm := newDestination(t, nil)
	raw := newDestination(t, nil)
	g := startGateway(t, fmt.Sprintf(`
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0"}
redis: {url: %q}
delivery: {allow_private_networks: true, timeout: 5s}
tenants:
  acme:
    sources:
      vn: {carrier: vonage-sms, secret: vonage-sig-secret, signature_method: sha256}
      quick: {carrier: vonage-sms, secret: vonage-sig-secret, signature_method: sha256, reassembly_window: 1s}
    destinations:
      norm: {url: %q, secret: %s}
      raw: {url: %q, secret: %s, format: raw}
    routes:
      - to: [norm, raw]
`, rs.URL(), norm.URL, demoSecret, raw.URL, demoSecret))
	for _, p := range []struct{ part, text string }{{"2/3", "the middle, "}, {"3/3", "the end."}, {"1/3", "The start, "}} {
		out, errOut, code := runCLI(t, "simulate", "--url", g.hookURL("acme", "vn"), "--carrier", "vonage-sms",
			"--secret", "vonage-sig-secret", "--signature-method", "sha256", "--part", p.part, "--part-ref", "A7", "--text", p.text)
		if code != 0 {
			t.Fatalf("simulate --part %s: exit %d\n%s%s", p.part, code, out, errOut)
		}
	}
	e := event(t, norm.next(t, 10*time.Second))
	if e.Data.Text != "The start, the middle, the end." || e.Data.Segments != 3 {
		t.Errorf("joined event: text %q, segments %d; want the three parts in order, segments 3", e.Data.Text, e.Data.Segments)
	}
	waitFor(t, 10*time.Second, "three raw callbacks", func() bool { return len(raw.deliveries()) == 3 })
	if n := len(norm.deliveries()); n != 1 {
		t.Errorf("normalized destination got %d deliveries, want 1", n)
	}
	m := scrape(t, g)
	if v := m[`switchboard_multipart_messages_total{outcome="whole",source="vn",tenant="acme"}`]; v != 1 {
		t.Errorf("multipart messages stored whole = %v, want 1", v)
	}
	if v, ok := m[`switchboard_multipart_messages_total{outcome="incomplete",source="vn",tenant="acme"}`]; !ok || v != 0 {
		t.Errorf("multipart messages stored incomplete = %v (listed: %v), want 0", v, ok)
	}

	// A message whose second part never comes is delivered after the
	// source's window with the part that came, and counted incomplete.
	if out, errOut, code := runCLI(t, "simulate", "--url", g.hookURL("acme", "quick"), "--carrier", "vonage-sms",
		"--secret", "vonage-sig-secret", "--signature-method", "sha256", "--part", "1/2", "--part-ref", "B8", "--text", "Half a "); code != 0 {
		t.Fatalf("simulate: exit %d\n%s%s", code, out, errOut)
	}
	if e := event(t, norm.next(t, 10*time.Second)); e.Data.Text != "Half a " || e.Data.Segments != 2 {
		t.Errorf("incomplete message: text %q, segments %d; want the part that came, segments 2", e.Data.Text, e.Data.Segments)
	}
	waitFor(t, 5*time.Second, "the incomplete message counted", func() bool {
		return scrape(t, g)[`switchboard_multipart_messages_total{outcome="incomplete",source="quick",tenant="acme"}`] == 1
	})
}

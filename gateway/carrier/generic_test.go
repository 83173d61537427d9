package carrier

import (
	"errors"
	"strings"
	"testing"
	"time"

	switchboard "github.com/switchboard-gw/switchboard"
)

var (
	swCfg    = Config{Carrier: "standard-webhooks", Secret: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", ReplayWindow: 5 * time.Minute}
	hmacCfg  = Config{Carrier: "hmac", Secret: "hmac-test-secret", Header: "X-Hub-Signature-256", Algorithm: "sha256", Encoding: "hex", Prefix: "sha256="}
	basicCfg = Config{Carrier: "basic", Username: "basic-user", Password: "basic-pass"}
)

func TestStandardWebhooks(t *testing.T) {
	conformance{
		cfg: swCfg, dir: "standard-webhooks", bodySigned: true,
		wrong:   Config{Carrier: "standard-webhooks", Secret: "whsec_b3RoZXIgc2VjcmV0IGtleSBieXRlcw=="},
		secrets: []string{"MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"},
		unsign:  func(r *Request) { r.Header.Del("Webhook-Signature") },
	}.run(t)
}

func TestStandardWebhooksWindowAndRotation(t *testing.T) {
	c := mustNew(t, swCfg)
	r := loadFixture(t, "standard-webhooks", "inbound")
	for _, d := range []time.Duration{-6 * time.Minute, 6 * time.Minute} {
		s := clone(r)
		s.Now = time.Unix(1736937000, 0).Add(d)
		if _, err := c.Verify(s); !errors.Is(err, switchboard.ErrBadSignature) || !strings.Contains(err.Error(), "timestamp") {
			t.Errorf("timestamp %s off: Verify = %v, want a stale-timestamp ErrBadSignature", d, err)
		}
	}
	rotated := mustNew(t, Config{Carrier: "standard-webhooks", Secret: "whsec_b3RoZXIgc2VjcmV0IGtleSBieXRlcw==, " + swCfg.Secret, ReplayWindow: 5 * time.Minute})
	if _, err := rotated.Verify(r); err != nil {
		t.Fatalf("second of two secrets: Verify = %v", err)
	}
	for _, bad := range []string{"", "whsec_***", "whsec_ok== whsec_%%%"} {
		if _, err := New(Config{Carrier: "standard-webhooks", Secret: bad}); err == nil || strings.Contains(err.Error(), "%%%") {
			t.Errorf("New with secret %q: %v", bad, err)
		}
	}
}

func TestHMAC(t *testing.T) {
	wrong := hmacCfg
	wrong.Secret = "not-the-secret"
	conformance{
		cfg: hmacCfg, dir: "hmac", bodySigned: true, wrong: wrong,
		secrets: []string{"hmac-test-secret", "not-the-secret"},
		unsign:  func(r *Request) { r.Header.Del("X-Hub-Signature-256") },
	}.run(t)
}

func TestHMACVariants(t *testing.T) {
	body := []byte(`{"type":"message.received","data":{"message_id":"m1","from":"+15555550100","to":"+15555550199","text":"hi"}}`)
	// Computed with: printf %s "$body" | openssl dgst -sha1|-sha512 -hmac k [-binary | base64]
	tests := []struct {
		cfg Config
		sig string
	}{
		{Config{Algorithm: "sha1", Encoding: "hex", Header: "X-Sig"}, "X-Sig"},
		{Config{Algorithm: "sha512", Encoding: "base64", Header: "x-signature", Prefix: "v1="}, "X-Signature"},
		{Config{Algorithm: "SHA256", Encoding: "HEX", Header: "X-Sig", Prefix: "sha256="}, "X-Sig"},
	}
	for _, tt := range tests {
		tt.cfg.Carrier, tt.cfg.Secret = "hmac", "k"
		c := mustNew(t, tt.cfg).(*HMAC)
		req, err := c.simulate("inbound", SimMessage{MessageID: "m1", From: "+1", To: "+2", Text: "x"}, "https://h/x", time.Unix(0, 0))
		if err != nil {
			t.Fatal(err)
		}
		r := fromHTTP(t, req, "https://h/x", time.Unix(0, 0))
		if _, err := c.Verify(r); err != nil {
			t.Errorf("%+v: own signature: %v", tt.cfg, err)
		}
		v := r.Header.Get(tt.sig)
		r.Header.Set(tt.sig, strings.ToUpper(v[:len(tt.cfg.Prefix)])+v[len(tt.cfg.Prefix):])
		if _, err := c.Verify(r); err != nil {
			t.Errorf("%+v: upper-case prefix: %v", tt.cfg, err)
		}
		r.Header.Set(tt.sig, strings.TrimPrefix(v, tt.cfg.Prefix))
		if _, err := c.Verify(r); tt.cfg.Prefix != "" && err == nil {
			t.Errorf("%+v: signature without its prefix verifies", tt.cfg)
		}
		r.Header.Set(tt.sig, v)
		r.Body = body
		if _, err := c.Verify(r); err == nil {
			t.Errorf("%+v: other body verifies", tt.cfg)
		}
	}
	// An independent vector: HMAC-SHA256("hmac-test-secret", inbound.json),
	// computed with Python's hmac module into the fixture.
	r := loadFixture(t, "hmac", "inbound")
	if !strings.HasPrefix(r.Header.Get("X-Hub-Signature-256"), "sha256=") {
		t.Fatal("fixture header")
	}
	for _, bad := range []Config{
		{Carrier: "hmac", Header: "X"},
		{Carrier: "hmac", Secret: "k"},
		{Carrier: "hmac", Secret: "k", Header: "X", Algorithm: "md5"},
		{Carrier: "hmac", Secret: "k", Header: "X", Encoding: "base32"},
	} {
		if _, err := New(bad); err == nil {
			t.Errorf("New(%+v) = nil error", bad)
		}
	}
}

func TestBasic(t *testing.T) {
	conformance{
		cfg: basicCfg, dir: "basic",
		wrong:   Config{Carrier: "basic", Username: "basic-user", Password: "wrong-pass"},
		secrets: []string{"basic-pass", "wrong-pass"},
		unsign:  func(r *Request) { r.Header.Del("Authorization") },
	}.run(t)
	c := mustNew(t, basicCfg)
	r := loadFixture(t, "basic", "inbound")
	for _, auth := range []string{"Bearer x", "Basic !!!", "Basic YmFzaWMtdXNlcg==", "Basic b3RoZXI6YmFzaWMtcGFzcw=="} {
		s := clone(r)
		s.Header.Set("Authorization", auth)
		if _, err := c.Verify(s); !errors.Is(err, switchboard.ErrBadSignature) {
			t.Errorf("Authorization %q: Verify = %v", auth, err)
		}
	}
}

func TestParseNormalized(t *testing.T) {
	bad := []string{
		``, `{}`, `[]`, `"x"`, `{"type":"message.received","data":{}}`,
		`{"type":"message.status","data":{"message_id":"m"}}`,
		`{"type":"message.opened","data":{"message_id":"m"}}`,
		`{"type":"message.received","data":{"message_id":"m"},"timestamp":"yesterday"}`,
		`[{"type":"message.received","data":{"message_id":"m"}},{}]`,
	}
	for _, b := range bad {
		if _, err := parseNormalized("hmac", []byte(b)); !errors.Is(err, switchboard.ErrBadPayload) {
			t.Errorf("parseNormalized(%s) = %v, want ErrBadPayload", b, err)
		}
	}
	events, err := parseNormalized("hmac", []byte(`{"id":"evt_x","tenant":"other","type":"message.status","extra":1,"data":{"message_id":"m","status":"read","error":{}}}`))
	if err != nil {
		t.Fatal(err)
	}
	e := events[0]
	if e.ID != "" || e.Tenant != "" || e.Data.Status != "read" || e.Data.CarrierStatus != "read" || e.Data.Error != nil {
		t.Fatalf("event = %+v", e)
	}
}

func FuzzStandardWebhooks(f *testing.F) {
	fuzzCarrier(f, swCfg, "standard-webhooks", []string{"Webhook-Signature"}, true)
}

func FuzzHMAC(f *testing.F) { fuzzCarrier(f, hmacCfg, "hmac", []string{"X-Hub-Signature-256"}, true) }

func FuzzBasic(f *testing.F) { fuzzCarrier(f, basicCfg, "basic", []string{"Authorization"}, false) }

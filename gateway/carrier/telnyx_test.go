package carrier

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"strings"
	"testing"
	"time"

	switchboard "github.com/switchboard-gw/switchboard"
)

const telnyxPub = "mBha1BfkFO3pomh9biwRPgzedd92zVerUPWDMsKHbHw="

var telnyxCfg = Config{Carrier: "telnyx", PublicKey: telnyxPub, ReplayWindow: 5 * time.Minute}

// telnyxSeed is the fixtures' test seed: SHA-256("telnyx-test-seed").
func telnyxSeed() []byte {
	s := sha256.Sum256([]byte("telnyx-test-seed"))
	return s[:]
}

func TestTelnyx(t *testing.T) {
	other := ed25519.NewKeyFromSeed(make([]byte, 32)).Public().(ed25519.PublicKey)
	sim := Config{Carrier: "telnyx", PrivateKey: base64.StdEncoding.EncodeToString(telnyxSeed())}
	conformance{
		cfg: telnyxCfg, dir: "telnyx", bodySigned: true, simCfg: &sim,
		wrong:  Config{Carrier: "telnyx", PublicKey: base64.StdEncoding.EncodeToString(other)},
		unsign: func(r *Request) { r.Header.Del("Telnyx-Signature-Ed25519") },
	}.run(t)
}

func TestTelnyxVectors(t *testing.T) {
	seed := telnyxSeed()
	if hex.EncodeToString(seed) != "b2f3712c18e4c0728b129e1ab5f923b8bf5b65da7baebe207ba74169ab1477ad" {
		t.Fatalf("seed = %x", seed)
	}
	priv := ed25519.NewKeyFromSeed(seed)
	if got := base64.StdEncoding.EncodeToString(priv.Public().(ed25519.PublicKey)); got != telnyxPub {
		t.Fatalf("public key = %s, want %s", got, telnyxPub)
	}
	for kind, want := range map[string]string{
		"inbound": "9B40k8XLTSPanVtUJTRATPJcwfow3SSah7WrJamFOzCus+mloTBTHLsObGnR1ehZlnQqnv36Uu0H+rA1yO84Ag==",
		"status":  "hrN/p+mQj2XeoNkQLRRl180e/Fh0MkiWCacZbO25MGdWc+zAHTFawcFra74T2eWwTy9DeiTLH+QvXgC66Qw1Dw==",
	} {
		r := loadFixture(t, "telnyx", kind)
		ts := r.Header.Get("Telnyx-Timestamp")
		if got := base64.StdEncoding.EncodeToString(ed25519.Sign(priv, append([]byte(ts+"|"), r.Body...))); got != want || r.Header.Get("Telnyx-Signature-Ed25519") != want {
			t.Errorf("%s: signature = %s, want %s", kind, got, want)
		}
	}
	// A simulator signs with the seed or the 64-byte key; either verifies.
	for _, key := range [][]byte{seed, priv} {
		sim := mustNew(t, Config{Carrier: "telnyx", PrivateKey: base64.StdEncoding.EncodeToString(key), ReplayWindow: 5 * time.Minute})
		if _, err := sim.Verify(loadFixture(t, "telnyx", "inbound")); err != nil {
			t.Errorf("Verify by a %d-byte private key's simulator: %v", len(key), err)
		}
	}
	for bad, want := range map[string]string{
		"":   "public_key is 0 bytes",
		"!!": "public_key is not base64",
		base64.StdEncoding.EncodeToString(make([]byte, 31)): "public_key is 31 bytes",
		// A private key in public_key is refused, not quietly used.
		base64.StdEncoding.EncodeToString(priv): "an Ed25519 private key",
	} {
		if _, err := New(Config{Carrier: "telnyx", PublicKey: bad}); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("New(public_key %q) = %v, want an error with %q", bad, err, want)
		}
	}
	for bad, want := range map[string]string{
		"!!": "the private key is not base64",
		base64.StdEncoding.EncodeToString(make([]byte, 31)): "the private key is 31 bytes",
	} {
		if _, err := New(Config{Carrier: "telnyx", PrivateKey: bad}); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("New(private key %q) = %v, want an error with %q", bad, err, want)
		}
	}
	// A verifier has no key to simulate with.
	if _, err := Simulate(telnyxCfg, simInbound, SimMessage{}, "http://x/h", time.Now()); err == nil || !strings.Contains(err.Error(), "needs the private key") {
		t.Errorf("Simulate with only the public key = %v, want 'needs the private key'", err)
	}
	if _, err := mustNew(t, telnyxCfg).(simulator).simulate(simInbound, SimMessage{}, "http://x/h", time.Now()); err == nil || !strings.Contains(err.Error(), "needs the private key") {
		t.Errorf("simulate by a verifier = %v, want 'needs the private key'", err)
	}
}

func TestTelnyxRejects(t *testing.T) {
	c := mustNew(t, telnyxCfg)
	r := loadFixture(t, "telnyx", "status")
	tests := []struct {
		name   string
		change func(r *Request)
		substr string
	}{
		{"stale", func(r *Request) { r.Now = time.Unix(1736937065+301, 0) }, "window"},
		{"future", func(r *Request) { r.Now = time.Unix(1736937065-301, 0) }, "window"},
		{"other timestamp", func(r *Request) { r.Header.Set("Telnyx-Timestamp", "1736937066") }, "does not verify"},
		{"no timestamp", func(r *Request) { r.Header.Del("Telnyx-Timestamp") }, "missing"},
		{"short signature", func(r *Request) { r.Header.Set("Telnyx-Signature-Ed25519", "AAAA") }, "not a base64"},
	}
	for _, tt := range tests {
		s := clone(r)
		tt.change(s)
		if _, err := c.Verify(s); !errors.Is(err, switchboard.ErrBadSignature) || !strings.Contains(err.Error(), tt.substr) {
			t.Errorf("%s: Verify = %v, want ErrBadSignature mentioning %q", tt.name, err, tt.substr)
		}
	}
}

func TestTelnyxParse(t *testing.T) {
	c := mustNew(t, telnyxCfg)
	body := `{"data":{"event_type":"message.finalized","id":"e1","occurred_at":"2025-01-15T10:31:05.123+00:00","payload":{"id":"m1","from":{"phone_number":"+15555550199"},"parts":2,` +
		`"to":[{"phone_number":"+15555550100","status":"delivered"},{"phone_number":"+15555550101","status":"delivery_failed"},{"phone_number":"+15555550102","status":"delivery_unconfirmed"},{"phone_number":"+15555550103","status":"teleported"}],` +
		`"errors":[{"code":"40008","title":"Undeliverable","detail":"The destination is unreachable."}]}}}`
	events, err := c.Parse(&Request{Body: []byte(body)})
	if err != nil || len(events) != 4 {
		t.Fatalf("Parse = %d events, %v", len(events), err)
	}
	want := [][2]string{{"+15555550100", "delivered"}, {"+15555550101", "undelivered"}, {"+15555550102", "sent"}, {"+15555550103", "unknown"}}
	for i, e := range events {
		if e.Data.To != want[i][0] || e.Data.Status != want[i][1] || e.Data.MessageID != "m1" || e.Data.Segments != 2 {
			t.Errorf("event %d = %+v, want to %s status %s", i, e.Data, want[i][0], want[i][1])
		}
		// The message's errors go to the recipients it did not reach.
		failed := want[i][1] == "undelivered" || want[i][1] == "unknown"
		if hasErr := e.Data.Error != nil && e.Data.Error.Code == "40008"; hasErr != failed {
			t.Errorf("event %d (%s) error = %+v, want one: %v", i, want[i][1], e.Data.Error, failed)
		}
	}
	if events, err := c.Parse(&Request{Body: []byte(`{"data":{"event_type":"number_order.complete","payload":{}}}`)}); err != nil || len(events) != 0 {
		t.Errorf("other event type: Parse = %v, %v; want no events", events, err)
	}
	for _, bad := range []string{``, `[]`, `null`, `{}`, `{"data":{"event_type":"message.sent","payload":{"id":"m","to":[]}}}`, `{"data":{"event_type":"message.received","payload":{}}}`,
		// A status event must carry a status: a null recipient has none.
		`{"data":{"event_type":"message.finalized","id":"x","payload":{"id":"tq2","from":null,"to":[null]}}}`} {
		if _, err := c.Parse(&Request{Body: []byte(bad)}); !errors.Is(err, switchboard.ErrBadPayload) {
			t.Errorf("Parse(%s) = %v, want ErrBadPayload", bad, err)
		}
	}
}

func FuzzTelnyx(f *testing.F) {
	fuzzCarrier(f, telnyxCfg, "telnyx", []string{"Telnyx-Signature-Ed25519"}, true)
}

func BenchmarkTelnyxVerify(b *testing.B) {
	c := mustNew(b, telnyxCfg)
	r := loadFixture(b, "telnyx", "inbound")
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.Verify(r); err != nil {
			b.Fatal(err)
		}
	}
}

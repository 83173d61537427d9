package carrier

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	switchboard "github.com/switchboard-gw/switchboard"
)

var messageBirdCfg = Config{Carrier: "messagebird", Secret: "mb-test-signing-key", ReplayWindow: 5 * time.Minute}

func TestMessageBird(t *testing.T) {
	conformance{
		cfg: messageBirdCfg, dir: "messagebird", bodySigned: true,
		wrong:   Config{Carrier: "messagebird", Secret: "another-signing-key"},
		secrets: []string{"mb-test-signing-key", "another-signing-key"},
		unsign:  func(r *Request) { r.Header.Del("MessageBird-Signature-JWT") },
	}.run(t)
}

func TestMessageBirdVectors(t *testing.T) {
	c := mustNew(t, messageBirdCfg)
	r := loadFixture(t, "messagebird", "dlr")
	sum := sha256.Sum256([]byte(r.URL))
	if hex.EncodeToString(sum[:]) != "32c50e1f41d384f2e6df1a5981f2c72cbdcd1de9bbea6e9f1835bd5d8f9448ad" {
		t.Fatalf("url_hash of %s = %x", r.URL, sum)
	}
	if !strings.HasSuffix(r.Header.Get("MessageBird-Signature-JWT"), ".NnpcqdvfXNoxgHYWdhCh4IMaFoVxzKafHfBjQD71SU0") {
		t.Fatal("fixture token")
	}
	proof, err := c.Verify(r)
	// exp 1736937125 + 1 s skew, now 1736937095: 31 s left, +1 s margin.
	if err != nil || proof.Nonce != "7c9e6679-7425-40de-944b-e07fc1f90ae7" || proof.TTL != 32*time.Second {
		t.Fatalf("Verify = %+v, %v", proof, err)
	}
	tests := []struct {
		name   string
		change func(*Request)
		substr string
	}{
		{"before nbf", func(r *Request) { r.Now = time.Unix(1736937065-2, 0) }, "not valid before"},
		{"after exp", func(r *Request) { r.Now = time.Unix(1736937125+2, 0) }, "expired"},
		{"query reordered", func(r *Request) {
			r.URL = strings.Replace(r.URL, "id=d5f7e1a0a7c14b0b8f2a3c4d5e6f7a8b&reference=order-42", "reference=order-42&id=d5f7e1a0a7c14b0b8f2a3c4d5e6f7a8b", 1)
		}, "url_hash"},
		{"status changed", func(r *Request) { r.URL = strings.Replace(r.URL, "status=delivered", "status=delivery_failed", 1) }, "url_hash"},
		{"body added", func(r *Request) { r.Body = []byte("x") }, "payload_hash"},
	}
	for _, tt := range tests {
		s := clone(r)
		tt.change(s)
		if _, err := c.Verify(s); !errors.Is(err, switchboard.ErrBadSignature) || !strings.Contains(err.Error(), tt.substr) {
			t.Errorf("%s: Verify = %v, want ErrBadSignature mentioning %q", tt.name, err, tt.substr)
		}
	}
	// The skew of 1 s is allowed on both sides.
	for _, at := range []int64{1736937065 - 1, 1736937125 + 1} {
		s := clone(r)
		s.Now = time.Unix(at, 0)
		if _, err := c.Verify(s); err != nil {
			t.Errorf("at %d: %v", at, err)
		}
	}
}

// Tokens from MessageBird's Go SDK (signature_jwt/testdata/reference.json).
func TestMessageBirdSDKReference(t *testing.T) {
	c := mustNew(t, Config{Carrier: "messagebird", Secret: "36efdd1aace2e26cd490f0d951138253bef2f7c6d34d18981da781555cc4cebb"})
	at, _ := time.Parse(time.RFC3339, "2021-07-05T12:00:00+02:00")
	tests := []struct {
		name, url, payload, token, reason string
	}{
		{"no params, GET", "https://example.com/", "", "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJpc3MiOiJNZXNzYWdlQmlyZCIsIm5iZiI6MTYyNTQ3OTIwMCwiZXhwIjoxNjI1NDc5MjYwLCJqdGkiOiI1OWEyNDRkYy1lOWFkLTRlMjMtOTc3OC0zNzFmYWEyMzhmNzIiLCJ1cmxfaGFzaCI6IjBmMTE1ZGIwNjJiN2MwZGQwMzBiMTY4NzhjOTlkZWE1YzM1NGI0OWRjMzdiMzhlYjg4NDYxNzljNzc4M2U5ZDcifQ.6Fp0rVOsRr1fj9S2GidXAfkmPVofKr8_RTffC6G6r2E", ""},
		{"params, GET", "https://example.com/path?bar=1&foo=2", "", "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJpc3MiOiJNZXNzYWdlQmlyZCIsIm5iZiI6MTYyNTQ3OTIwMCwiZXhwIjoxNjI1NDc5MjYwLCJqdGkiOiJjOTQ2YWY3Ny1lMTgyLTRlYWEtYjJmZi0xYTU0NWI1ZTk5MWEiLCJ1cmxfaGFzaCI6IjQxZjA1ZjBkZGQwYTIyYWIyMDlhYzQ2ZjQ3YzQ1NzJkOWNlZmEyNTdlZDc0YjI0MDA0YmFlNzUzZWNlNmMyNjAifQ.huo2ou6JDoDc7sV25d75UMWeYhBeavQlLsqIibSZuac", ""},
		{"params and payload, POST", "https://example.com/path?bar=1&foo=2", "Hello, World!", "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJpc3MiOiJNZXNzYWdlQmlyZCIsIm5iZiI6MTYyNTQ3OTIwMCwiZXhwIjoxNjI1NDc5MjYwLCJqdGkiOiI5M2U1NTAwNi1hMGU4LTQ1MjYtYTE5MC1mYTVmZjAwZWExMTYiLCJ1cmxfaGFzaCI6IjQxZjA1ZjBkZGQwYTIyYWIyMDlhYzQ2ZjQ3YzQ1NzJkOWNlZmEyNTdlZDc0YjI0MDA0YmFlNzUzZWNlNmMyNjAiLCJwYXlsb2FkX2hhc2giOiJkZmZkNjAyMWJiMmJkNWIwYWY2NzYyOTA4MDllYzNhNTMxOTFkZDgxYzdmNzBhNGIyODY4OGEzNjIxODI5ODZmIn0._H--TOuYFLpeEH39-rg5E3IHVkjHozBcaKVWPRC5m9I", ""},
		{"nbf in the future", "https://example.com/", "", "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJpc3MiOiJNZXNzYWdlQmlyZCIsIm5iZiI6MTYyNTQ4MjgwMCwiZXhwIjoxNjI1NDgyODYwLCJqdGkiOiJmOWY4YzM4Mi0yNDQ5LTQzMTEtYjcyYi0xZGY3MTY4NzkzMWUiLCJ1cmxfaGFzaCI6IjBmMTE1ZGIwNjJiN2MwZGQwMzBiMTY4NzhjOTlkZWE1YzM1NGI0OWRjMzdiMzhlYjg4NDYxNzljNzc4M2U5ZDcifQ.ZELgDFNGhjZH9CffQKcq3sytBe2I0KciLxpBhcfstHQ", "not valid before"},
		{"expired", "https://example.com/", "", "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJpc3MiOiJNZXNzYWdlQmlyZCIsIm5iZiI6MTYyNTQ3NTYwMCwiZXhwIjoxNjI1NDc1NjYwLCJqdGkiOiI1ZjAyZjUyMi02MDMwLTQ2YzgtYjVhMy0wMTI0NjQ3OGQ4YmMiLCJ1cmxfaGFzaCI6IjBmMTE1ZGIwNjJiN2MwZGQwMzBiMTY4NzhjOTlkZWE1YzM1NGI0OWRjMzdiMzhlYjg4NDYxNzljNzc4M2U5ZDcifQ.45MSST3B_2PsjNUeiuW54_vUQgVw4rBXrdWrOUEz3lM", "expired"},
		{"params sorted differently", "https://example.com/path?foo=1&bar=2", "", "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJpc3MiOiJNZXNzYWdlQmlyZCIsIm5iZiI6MTYyNTQ3OTIwMCwiZXhwIjoxNjI1NDc5MjYwLCJqdGkiOiJhNzVjOTA5Ni1lODIzLTQ0MmItODVmMi03ZDNjOWQ5YjcyNmIiLCJ1cmxfaGFzaCI6IjZhMDIyZDgzNGMxODMzMGJhYWQ4YTJiZDYxMzUxNzNlZDIxNjEwYTQ1NDUxNmJlMGRmM2YxY2MwMTUxNjEwZWEifQ.z6Sw1XQIM0wuEQGBhXBdawDIIrtMg2XnmA_bpDq53pE", "url_hash"},
		{"payload does not match", "https://example.com/", "Hello, World!", "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJpc3MiOiJNZXNzYWdlQmlyZCIsIm5iZiI6MTYyNTQ3OTIwMCwiZXhwIjoxNjI1NDc5MjYwLCJqdGkiOiIxNDUwMTUzMi05NmYyLTQ2ODQtOTgzMi02OGYwOTUxYWUzNDIiLCJ1cmxfaGFzaCI6IjBmMTE1ZGIwNjJiN2MwZGQwMzBiMTY4NzhjOTlkZWE1YzM1NGI0OWRjMzdiMzhlYjg4NDYxNzljNzc4M2U5ZDciLCJwYXlsb2FkX2hhc2giOiJmYjYyZjAyYWNkYTdkNzQxNzdhNzAxYTFjZTAwNmU2YmFjZDkwYzdkNGQ3YWI0ODE2OTJjMWRhNDdjODEwNzZiIn0.m79RCwO6dGa9pvzsQypkVuXQ6eM0CkRl6_U7MfWg6TM", "payload_hash"},
	}
	for _, tt := range tests {
		r := &Request{Method: "POST", URL: tt.url, Body: []byte(tt.payload), Now: at, Header: http.Header{"Messagebird-Signature-Jwt": {tt.token}}}
		_, err := c.Verify(r)
		if tt.reason == "" && err != nil {
			t.Errorf("%s: Verify = %v", tt.name, err)
		}
		if tt.reason != "" && (!errors.Is(err, switchboard.ErrBadSignature) || !strings.Contains(err.Error(), tt.reason)) {
			t.Errorf("%s: Verify = %v, want %q", tt.name, err, tt.reason)
		}
	}
}

// The deprecated scheme, with the vector of MessageBird's Go SDK.
func TestMessageBirdLegacy(t *testing.T) {
	c := mustNew(t, Config{Carrier: "messagebird", Secret: "other-secret", ReplayWindow: 5 * time.Minute})
	r := &Request{
		Method: "POST", URL: "https://h/x?def=bar&abc=foo", RawQuery: "def=bar&abc=foo", Body: []byte(`{"a key":"some value"}`), Now: time.Unix(1544544948, 0),
		Header: http.Header{"Messagebird-Signature": {"orb0adPhRCYND1WCAvPBr+qjm4STGtyvNDIDNBZ4Ir4="}, "Messagebird-Request-Timestamp": {"1544544948"}},
	}
	if _, err := c.Verify(r); err != nil {
		t.Fatalf("Verify: %v", err)
	}
	for name, change := range map[string]func(*Request){
		"stale":      func(r *Request) { r.Now = time.Unix(1544544948+301, 0) },
		"body":       func(r *Request) { r.Body = []byte(`{"a key":"other value"}`) },
		"query":      func(r *Request) { r.RawQuery = "def=baz&abc=foo" },
		"no ts":      func(r *Request) { r.Header.Del("Messagebird-Request-Timestamp") },
		"other time": func(r *Request) { r.Header.Set("Messagebird-Request-Timestamp", "1544544949") },
	} {
		s := clone(r)
		change(s)
		if _, err := c.Verify(s); !errors.Is(err, switchboard.ErrBadSignature) {
			t.Errorf("%s: Verify = %v, want ErrBadSignature", name, err)
		}
	}
}

func TestMessageBirdParse(t *testing.T) {
	c := mustNew(t, messageBirdCfg)
	events, err := c.Parse(&Request{Method: "POST", Header: http.Header{"Content-Type": {"application/x-www-form-urlencoded"}},
		Body: []byte("mid=m1&shortcode=1008&originator=31612345678&message=STOP&receive_datetime=20250115103000&mediaUrls=https%3A%2F%2Fm%2F1&mediaUrls=https%3A%2F%2Fm%2F2")})
	if err != nil {
		t.Fatal(err)
	}
	d := events[0].Data
	if d.MessageID != "m1" || d.To != "1008" || d.From != "+31612345678" || d.Text != "STOP" || len(d.Media) != 2 || d.OccurredAt == nil || d.OccurredAt.Unix() != 1736937000 {
		t.Errorf("short-code inbound = %+v", d)
	}
	events, err = c.Parse(&Request{Method: "GET", RawQuery: "id=x&recipient=31612345678&status=delivery_failed&statusErrorCode=103&statusReason=stopped"})
	if err != nil || events[0].Data.Status != "undelivered" || events[0].Data.Error == nil || events[0].Data.Error.Code != "103" || events[0].Data.Error.Message != "stopped" {
		t.Errorf("failed DLR = %+v, %v", events, err)
	}
	if _, err := c.Parse(&Request{Method: "GET", RawQuery: "recipient=1"}); !errors.Is(err, switchboard.ErrBadPayload) {
		t.Errorf("no id: %v", err)
	}
}

func FuzzMessageBird(f *testing.F) {
	fuzzCarrier(f, messageBirdCfg, "messagebird", []string{"Messagebird-Signature-Jwt"}, true)
}

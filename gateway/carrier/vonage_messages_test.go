package carrier

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"strings"
	"testing"
	"time"

	switchboard "github.com/switchboard-gw/switchboard"
)

var vonageMessagesCfg = Config{Carrier: "vonage-messages", Secret: "vonage-test-signature-secret", ReplayWindow: 5 * time.Minute}

func TestVonageMessages(t *testing.T) {
	conformance{
		cfg: vonageMessagesCfg, dir: "vonage-messages", bodySigned: true,
		wrong:       Config{Carrier: "vonage-messages", Secret: "another-signature-secret"},
		secrets:     []string{"vonage-test-signature-secret", "another-signature-secret"},
		unsign:      func(r *Request) { r.Header.Del("Authorization") },
		unsignedErr: switchboard.ErrUnavailable,
	}.run(t)
}

func vonageToken(t *testing.T, claims map[string]any) string {
	t.Helper()
	tok, err := signJWT([]byte("vonage-test-signature-secret"), claims)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func TestVonageMessagesVectors(t *testing.T) {
	c := mustNew(t, vonageMessagesCfg)
	in := loadFixture(t, "vonage-messages", "inbound")
	st := loadFixture(t, "vonage-messages", "status")
	for _, tt := range []struct {
		r           *Request
		sigSeg, jti string
		hash        string
		proofTTL    time.Duration
	}{
		{in, "DmYL_HCsz0YIOeKO0Nf9OKy1yc0hdbB2TBxaIJRp1Yc", "0d9b8f7e-6a5c-4b3d-9e2f-1a0b9c8d7e6f", "adb5f79bed7e1f663ec95d164afc1bc2f7ce9b5a1a8676789a1b38529f26f5dd", 4*time.Minute + 31*time.Second},
		{st, "wSf_wuWWJmYga9qwzXCbd5ztvkDfNNxfb2Me8LiySjQ", "1e0f9a8b-7c6d-4e5f-8a3b-2c1d0e9f8a7b", "13fd3453e49d82d9a1a77748d7f53ba13a2451b1d02c5058d595ceff71f6c029", 4*time.Minute + 31*time.Second},
	} {
		if !strings.HasSuffix(tt.r.Header.Get("Authorization"), "."+tt.sigSeg) {
			t.Fatalf("fixture token does not end with %s", tt.sigSeg)
		}
		if sum := sha256.Sum256(tt.r.Body); hex.EncodeToString(sum[:]) != tt.hash {
			t.Fatalf("payload hash of fixture = %x, want %s", sum, tt.hash)
		}
		proof, err := c.Verify(tt.r)
		if err != nil {
			t.Fatalf("Verify: %v", err)
		}
		if proof.Nonce != tt.jti || proof.TTL != tt.proofTTL {
			t.Fatalf("proof = %+v, want jti %s ttl %s", proof, tt.jti, tt.proofTTL)
		}
	}
}

func TestVonageMessagesRejects(t *testing.T) {
	c := mustNew(t, vonageMessagesCfg)
	in := loadFixture(t, "vonage-messages", "inbound")
	sum := sha256.Sum256(in.Body)
	hash := hex.EncodeToString(sum[:])
	good := map[string]any{"iat": 1736937000, "jti": "j1", "iss": "Vonage", "payload_hash": hash, "api_key": "abcd1234"}
	with := func(k string, v any) map[string]any {
		m := map[string]any{}
		for a, b := range good {
			m[a] = b
		}
		if v == nil {
			delete(m, k)
		} else {
			m[k] = v
		}
		return m
	}
	none := jwtBase64.EncodeToString([]byte(`{"alg":"none","typ":"JWT"}`)) + "." + jwtBase64.EncodeToString([]byte(`{"iat":1736937000,"iss":"Vonage","payload_hash":"`+hash+`"}`)) + "."
	hs512 := jwtBase64.EncodeToString([]byte(`{"alg":"HS512"}`)) + "." + strings.Split(vonageToken(t, good), ".")[1] + ".AAAA"
	tests := []struct {
		name, auth, substr string
		now                int64
	}{
		{"own token verifies", "Bearer " + vonageToken(t, good), "", 1736937030},
		{"lower-case bearer", "bearer " + vonageToken(t, good), "", 1736937030},
		{"issuer", "Bearer " + vonageToken(t, with("iss", "Nexmo")), "issuer", 1736937030},
		{"no payload_hash", "Bearer " + vonageToken(t, with("payload_hash", nil)), "payload_hash", 1736937030},
		{"other payload_hash", "Bearer " + vonageToken(t, with("payload_hash", strings.Repeat("0", 64))), "payload_hash", 1736937030},
		{"no iat", "Bearer " + vonageToken(t, with("iat", nil)), "iat", 1736937030},
		{"stale iat", "Bearer " + vonageToken(t, good), "window", 1736937000 + 301},
		{"future iat", "Bearer " + vonageToken(t, good), "window", 1736937000 - 301},
		{"alg none", "Bearer " + none, "algorithm", 1736937030},
		{"alg HS512", "Bearer " + hs512, "algorithm", 1736937030},
		{"garbage", "Bearer a.b", "compact", 1736937030},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := clone(in)
			r.Header.Set("Authorization", tt.auth)
			r.Now = time.Unix(tt.now, 0)
			_, err := c.Verify(r)
			if tt.substr == "" {
				if err != nil {
					t.Fatalf("Verify = %v", err)
				}
				return
			}
			if !errors.Is(err, switchboard.ErrBadSignature) || !strings.Contains(err.Error(), tt.substr) {
				t.Fatalf("Verify = %v, want ErrBadSignature mentioning %q", err, tt.substr)
			}
		})
	}
	for _, auth := range []string{"", "Basic dTpw", "Bearer "} {
		r := clone(in)
		r.Header.Set("Authorization", auth)
		if _, err := c.Verify(r); !errors.Is(err, switchboard.ErrUnavailable) || errors.Is(err, switchboard.ErrBadSignature) {
			t.Errorf("Authorization %q: Verify = %v, want ErrUnavailable (503, Vonage retries signed)", auth, err)
		}
	}
}

func TestVonageMessagesParse(t *testing.T) {
	c := mustNew(t, vonageMessagesCfg)
	parse := func(body string) switchboard.Event {
		t.Helper()
		events, err := c.Parse(&Request{Method: "POST", Body: []byte(body)})
		if err != nil || len(events) != 1 {
			t.Fatalf("Parse(%s) = %v, %v", body, events, err)
		}
		return events[0]
	}
	// v1 status with an error whose title is a number (as in the Java SDK's test).
	e := parse(`{"message_uuid":"u1","to":"447700900000","from":"447700900001","timestamp":"2020-01-01T14:00:00.000Z","status":"rejected","channel":"sms","error":{"type":"https://developer.nexmo.com/api-errors/messages-olympus#1000","title":1000,"detail":"Throttled","instance":"i"},"sms":{"count_total":"3"}}`)
	if e.Type != switchboard.TypeStatus || e.Data.Status != "failed" || e.Data.CarrierStatus != "rejected" || e.Data.Error == nil || e.Data.Error.Code != "1000" || e.Data.Error.Message != "Throttled" || e.Data.Segments != 3 || e.Data.From != "+447700900001" || e.Data.To != "+447700900000" {
		t.Fatalf("v1 status = %+v", e)
	}
	if e = parse(`{"message_uuid":"u1","to":"1","from":"2","status":"undeliverable","error":{"type":"https://x#1340"}}`); e.Data.Status != "failed" || e.Data.Error.Code != "1340" {
		t.Fatalf("undeliverable = %+v", e.Data)
	}
	if e = parse(`{"message_uuid":"u1","status":"whatever"}`); e.Data.Status != "unknown" || e.Data.CarrierStatus != "whatever" {
		t.Fatalf("unknown status = %+v", e.Data)
	}
	// v0.1 inbound and status.
	e = parse(`{"message_uuid":"u2","from":{"type":"sms","number":"447700900001"},"to":{"type":"sms","number":"447700900000"},"message":{"content":{"type":"text","text":"Hello"},"sms":{"num_messages":"2"}},"timestamp":"2020-01-01T14:00:00.000Z"}`)
	if e.Type != switchboard.TypeReceived || e.Data.Text != "Hello" || e.Data.Segments != 2 || e.Data.From != "+447700900001" {
		t.Fatalf("v0.1 inbound = %+v", e)
	}
	e = parse(`{"message_uuid":"u3","to":{"type":"sms","number":"447700900000"},"from":{"type":"sms","id":"MyBrand"},"status":"rejected","error":{"code":1300,"reason":"Not part of the provider network"}}`)
	if e.Data.From != "MyBrand" || e.Data.Error.Code != "1300" || e.Data.Error.Message != "Not part of the provider network" {
		t.Fatalf("v0.1 status = %+v", e.Data)
	}
	// MMS: one attachment as a member named by message_type, several as content[].
	e = parse(`{"message_uuid":"u4","channel":"mms","message_type":"image","from":"15555550100","to":"15555550199","image":{"url":"https://x/1.jpg","caption":"look"}}`)
	if len(e.Data.Media) != 1 || e.Data.Media[0].URL != "https://x/1.jpg" || e.Data.Text != "look" {
		t.Fatalf("MMS image = %+v", e.Data)
	}
	e = parse(`{"message_uuid":"u5","channel":"mms","message_type":"content","from":"15555550100","to":"15555550199","content":[{"type":"image","url":"https://x/1.jpg"},{"type":"video","url":"https://x/2.mp4","caption":"c"}]}`)
	if len(e.Data.Media) != 2 || e.Data.Media[1].URL != "https://x/2.mp4" {
		t.Fatalf("MMS content = %+v", e.Data)
	}
	for _, bad := range []string{``, `[]`, `{"to":"1"}`, `{"message_uuid":"u","from":[1]}`} {
		if _, err := c.Parse(&Request{Body: []byte(bad)}); !errors.Is(err, switchboard.ErrBadPayload) {
			t.Errorf("Parse(%s) = %v, want ErrBadPayload", bad, err)
		}
	}
}

func FuzzVonageMessages(f *testing.F) {
	fuzzCarrier(f, vonageMessagesCfg, "vonage-messages", []string{"Authorization"}, true)
}

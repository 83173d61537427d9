package carrier

import (
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	switchboard "github.com/switchboard-gw/switchboard"
)

var sinchCfg = Config{Carrier: "sinch", Secret: "sinch-test-webhook-secret", ReplayWindow: 5 * time.Minute}

func TestSinch(t *testing.T) {
	conformance{
		cfg: sinchCfg, dir: "sinch", bodySigned: true,
		wrong:   Config{Carrier: "sinch", Secret: "another-webhook-secret"},
		secrets: []string{"sinch-test-webhook-secret", "another-webhook-secret"},
		unsign:  func(r *Request) { r.Header.Del("X-Sinch-Webhook-Signature") },
	}.run(t)
}

func TestSinchVectors(t *testing.T) {
	c := mustNew(t, sinchCfg)
	for kind, want := range map[string][2]string{
		"inbound": {"uX0JfgBdU1iwI8z+wkxp73povG9kojTy0d2w9LGIFWo=", "01JHGQ8Z9A0000000000000009"},
		"dlr":     {"zMmQdqF5UDXJrIHiyiXw0Fix7eqUDldosLExS9s9K/4=", "01JHGQ9C3D0000000000000003"},
	} {
		r := loadFixture(t, "sinch", kind)
		if r.Header.Get("X-Sinch-Webhook-Signature") != want[0] {
			t.Fatalf("%s: fixture signature", kind)
		}
		proof, err := c.Verify(r)
		if err != nil || proof.Nonce != want[1] || proof.TTL != 4*time.Minute+31*time.Second {
			t.Errorf("%s: Verify = %+v, %v", kind, proof, err)
		}
	}
	// The Sinch SDKs' own vectors (Node SMS webhook test; .NET HMAC test).
	for _, v := range []struct{ secret, body, sig string }{
		{"SMSWebhooksSecret", `{"at":"2025-01-13T09:22:40.914Z","batch_id":"01JHFFHQ0P99JPPNQPJDV7JTBP","client_reference":"a client reference","code":0,"operator_status_at":"2025-01-13T09:22:00Z","recipient":"33662162466","status":"Delivered","type":"recipient_delivery_report_sms"}`, "ZoHei66PPN/kZjw7hFVfGhJOnml3iGNCMWoyQVcE5o0="},
		{"my_secret_key", `{"event":"test"}`, "ehhrg9MUuhpJUCo2drsI3zoqWViaojp8d6RahfBY3cg="},
	} {
		r := &Request{Method: "POST", Body: []byte(v.body), Now: time.Unix(1736760161, 0), Header: http.Header{
			"X-Sinch-Webhook-Signature": {v.sig}, "X-Sinch-Webhook-Signature-Algorithm": {"HmacSHA256"},
			"X-Sinch-Webhook-Signature-Nonce": {"01JHFFHWYY7HSS4FWTMDTQEK8V"}, "X-Sinch-Webhook-Signature-Timestamp": {"1736760161"},
		}}
		if _, err := mustNew(t, Config{Carrier: "sinch", Secret: v.secret, ReplayWindow: 5 * time.Minute}).Verify(r); err != nil {
			t.Errorf("SDK vector %s: %v", v.sig, err)
		}
	}
}

func TestSinchRejects(t *testing.T) {
	c := mustNew(t, sinchCfg)
	r := loadFixture(t, "sinch", "dlr")
	tests := []struct {
		name   string
		change func(*Request)
		substr string
	}{
		{"stale", func(r *Request) { r.Now = time.Unix(1736937065+301, 0) }, "window"},
		{"other nonce", func(r *Request) { r.Header.Set("X-Sinch-Webhook-Signature-Nonce", "01JHGQ9C3D0000000000000004") }, "does not match"},
		{"other timestamp", func(r *Request) { r.Header.Set("X-Sinch-Webhook-Signature-Timestamp", "1736937066") }, "does not match"},
		{"other algorithm", func(r *Request) { r.Header.Set("X-Sinch-Webhook-Signature-Algorithm", "HmacSHA1") }, "algorithm"},
		{"no nonce", func(r *Request) { r.Header.Del("X-Sinch-Webhook-Signature-Nonce") }, "missing"},
	}
	for _, tt := range tests {
		s := clone(r)
		tt.change(s)
		if _, err := c.Verify(s); !errors.Is(err, switchboard.ErrBadSignature) || !strings.Contains(err.Error(), tt.substr) {
			t.Errorf("%s: Verify = %v, want ErrBadSignature mentioning %q", tt.name, err, tt.substr)
		}
	}
}

func TestSinchParse(t *testing.T) {
	c := mustNew(t, sinchCfg)
	parse := func(body string) []switchboard.Event {
		t.Helper()
		events, err := c.Parse(&Request{Body: []byte(body)})
		if err != nil {
			t.Fatalf("Parse(%s): %v", body, err)
		}
		return events
	}
	e := parse(`{"type":"mo_media","id":"m1","from":"15555550100","to":"15555550199","body":{"subject":"s","message":"look","media":[{"url":"https://x/1.jpg","mimeType":"image/jpeg","code":0,"status":"Uploaded"}]}}`)
	if d := e[0].Data; d.Text != "look" || len(d.Media) != 1 || d.Media[0].ContentType != "image/jpeg" {
		t.Errorf("mo_media = %+v", d)
	}
	e = parse(`{"type":"recipient_delivery_report_sms","batch_id":"b1","recipient":"15555550100","status":"Failed","code":402,"number_of_message_parts":2}`)
	if d := e[0].Data; d.Status != "undelivered" || d.CarrierStatus != "Failed" || d.Error == nil || d.Error.Code != "402" || d.Segments != 2 {
		t.Errorf("failed report = %+v", d)
	}
	e = parse(`{"type":"delivery_report_sms","batch_id":"b2","statuses":[{"code":0,"status":"Delivered","count":2,"recipients":["15555550100","15555550101"]},{"code":406,"status":"Expired","count":1}],"total_message_count":3}`)
	if len(e) != 3 || e[1].Data.To != "+15555550101" || e[2].Data.To != "" || e[2].Data.Status != "undelivered" || e[2].Data.Error.Code != "406" {
		t.Errorf("batch report = %+v", e)
	}
	if e := parse(`{"type":"something_else"}`); len(e) != 0 {
		t.Errorf("other type = %+v, want no events", e)
	}
	for _, bad := range []string{``, `[]`, `null`, `{}`, `{"type":"mo_text"}`, `{"type":"recipient_delivery_report_sms"}`} {
		if _, err := c.Parse(&Request{Body: []byte(bad)}); !errors.Is(err, switchboard.ErrBadPayload) {
			t.Errorf("Parse(%s) = %v, want ErrBadPayload", bad, err)
		}
	}
}

func FuzzSinch(f *testing.F) {
	fuzzCarrier(f, sinchCfg, "sinch", []string{"X-Sinch-Webhook-Signature"}, true)
}

package carrier

import (
	"errors"
	"strings"
	"testing"
	"time"

	switchboard "github.com/switchboard-gw/switchboard"
)

var birdCfg = Config{Carrier: "bird", Secret: "bird-test-signing-key", ReplayWindow: 5 * time.Minute}

func TestBird(t *testing.T) {
	conformance{
		cfg: birdCfg, dir: "bird", bodySigned: true,
		wrong:   Config{Carrier: "bird", Secret: "another-signing-key"},
		secrets: []string{"bird-test-signing-key", "another-signing-key"},
		unsign:  func(r *Request) { r.Header.Del("Messagebird-Signature") },
	}.run(t)
}

func TestBirdVectors(t *testing.T) {
	c := mustNew(t, birdCfg).(*Bird)
	for kind, want := range map[string]string{
		"inbound": "x5uIjevpSvHez10UrclY6K6zPfuXxW/3zDNZNHgyx2s=",
		"status":  "wDCUR8kN/XaTWEaPIaWxwkNX/nWal3VNK2FMGz8yuQY=",
	} {
		r := loadFixture(t, "bird", kind)
		if r.URL != "https://hooks.example.com/bird/webhook" {
			t.Fatalf("fixture URL %s", r.URL)
		}
		if got := strictBase64.EncodeToString(c.mac(r.Header.Get("Messagebird-Request-Timestamp"), r.URL, r.Body)); got != want {
			t.Errorf("%s: MAC = %s, want %s", kind, got, want)
		}
	}
	r := loadFixture(t, "bird", "status")
	for name, change := range map[string]func(*Request){
		"stale":     func(r *Request) { r.Now = time.Unix(1736937065+301, 0) },
		"early":     func(r *Request) { r.Now = time.Unix(1736937065-301, 0) },
		"other URL": func(r *Request) { r.URL = "https://hooks.example.com/bird/webhook?x=1" },
		"other ts":  func(r *Request) { r.Header.Set("Messagebird-Request-Timestamp", "1736937066") },
	} {
		s := clone(r)
		change(s)
		if _, err := c.Verify(s); !errors.Is(err, switchboard.ErrBadSignature) {
			t.Errorf("%s: Verify = %v, want ErrBadSignature", name, err)
		}
	}
	s := clone(r)
	s.URL = "https://hooks.example.com/bird/other"
	if _, err := c.Verify(s); err == nil || !strings.Contains(err.Error(), `"https://hooks.example.com/bird/other"`) {
		t.Errorf("URL mismatch error %v does not name the URL", err)
	}
}

func TestBirdParse(t *testing.T) {
	c := mustNew(t, birdCfg)
	events, err := c.Parse(&Request{Body: []byte(`{"service":"channels","event":"sms.outbound","payload":{"id":"m1","sender":{"connector":{"identifierValue":"+15555550199"}},"receiver":{"contacts":[{"identifierValue":"15555550100"}]},"status":"delivery_failed","reason":"unreachable"}}`)})
	if err != nil || len(events) != 1 {
		t.Fatalf("Parse = %v, %v", events, err)
	}
	if d := events[0].Data; d.Status != "undelivered" || d.To != "+15555550100" || d.Error == nil || d.Error.Message != "unreachable" {
		t.Errorf("failed = %+v", d)
	}
	events, err = c.Parse(&Request{Body: []byte(`{"service":"channels","event":"sms.inbound","payload":{"id":"m2","sender":{"contact":{"identifierValue":"+15555550100"}},"receiver":{"connector":{"identifierValue":"+15555550199"}},"body":{"type":"image","image":{"text":"look","images":[{"mediaUrl":"https://m/1.jpg","altText":"x"}]}}}}`)})
	if err != nil || len(events[0].Data.Media) != 1 || events[0].Data.Text != "look" {
		t.Errorf("image inbound = %+v, %v", events, err)
	}
	if events, err := c.Parse(&Request{Body: []byte(`{"service":"channels","event":"conversation.created","payload":{}}`)}); err != nil || len(events) != 0 {
		t.Errorf("other event = %v, %v", events, err)
	}
	for _, bad := range []string{``, `[]`, `null`, `{}`, `{"event":"sms.inbound","payload":{}}`} {
		if _, err := c.Parse(&Request{Body: []byte(bad)}); !errors.Is(err, switchboard.ErrBadPayload) {
			t.Errorf("Parse(%s) = %v", bad, err)
		}
	}
}

func FuzzBird(f *testing.F) { fuzzCarrier(f, birdCfg, "bird", []string{"Messagebird-Signature"}, true) }

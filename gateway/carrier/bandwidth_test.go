package carrier

import (
	"errors"
	"testing"

	switchboard "github.com/switchboard-gw/switchboard"
)

var bandwidthCfg = Config{Carrier: "bandwidth", Username: "bw-webhook-user", Password: "bw-webhook-pass"}

func TestBandwidth(t *testing.T) {
	conformance{
		cfg: bandwidthCfg, dir: "bandwidth",
		wrong:   Config{Carrier: "bandwidth", Username: "bw-webhook-user", Password: "not-the-pass"},
		secrets: []string{"bw-webhook-pass", "not-the-pass"},
		unsign:  func(r *Request) { r.Header.Del("Authorization") },
	}.run(t)
}

func TestBandwidthVector(t *testing.T) {
	r := loadFixture(t, "bandwidth", "inbound")
	if got := r.Header.Get("Authorization"); got != "Basic Ynctd2ViaG9vay11c2VyOmJ3LXdlYmhvb2stcGFzcw==" {
		t.Fatalf("fixture Authorization = %q", got)
	}
	if _, err := mustNew(t, Config{Carrier: "bandwidth", Username: "bw-webhook-userX", Password: "bw-webhook-pass"}).Verify(r); !errors.Is(err, switchboard.ErrBadSignature) {
		t.Fatalf("wrong user: Verify = %v", err)
	}
}

func TestBandwidthParseArray(t *testing.T) {
	c := mustNew(t, bandwidthCfg)
	body := `[{"type":"message-delivered","time":"2025-01-15T10:31:05.456Z","to":"+15555550100","message":{"id":"m1","from":"+15555550199","to":["+15555550100","+15555550101"]}},` +
		`{"type":"message-failed","time":"2025-01-15T10:31:05.456Z","to":"+15555550101","errorCode":4720,"description":"rejected-unallocated-to-number","message":{"id":"m1","from":"+15555550199"}},` +
		`{"type":"suggestion-response","message":{"id":"m2"}},` +
		`{"type":"message-teleported","to":"+15555550100","message":{"id":"m1"}}]`
	events, err := c.Parse(&Request{Body: []byte(body)})
	if err != nil || len(events) != 3 {
		t.Fatalf("Parse = %d events, %v", len(events), err)
	}
	if d := events[1].Data; d.To != "+15555550101" || d.Status != "failed" || d.Error == nil || d.Error.Code != "4720" || d.Error.Message != "rejected-unallocated-to-number" {
		t.Errorf("failed = %+v", d)
	}
	if d := events[2].Data; d.Status != "unknown" || d.CarrierStatus != "message-teleported" {
		t.Errorf("unknown type = %+v", d)
	}
	for _, bad := range []string{``, `{}`, `null`, `[null]`, `[{"type":"message-sent","message":{}}]`} {
		if _, err := c.Parse(&Request{Body: []byte(bad)}); !errors.Is(err, switchboard.ErrBadPayload) {
			t.Errorf("Parse(%s) = %v, want ErrBadPayload", bad, err)
		}
	}
	if events, err := c.Parse(&Request{Body: []byte(`[]`)}); err != nil || len(events) != 0 {
		t.Errorf("empty array: %v, %v", events, err)
	}
}

func FuzzBandwidth(f *testing.F) {
	fuzzCarrier(f, bandwidthCfg, "bandwidth", []string{"Authorization"}, false)
}

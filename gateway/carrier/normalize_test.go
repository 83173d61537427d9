package carrier

import (
	"strings"
	"testing"
	"time"
)

// Edge cases of the normalized event, each from the carrier's own
// documented fields (shared/carriers): an error only on a failure, a
// callback with nothing to report, times whose zone a form decoding
// mangled or that carry an offset.
func TestNormalizeEdges(t *testing.T) {
	parse := func(t *testing.T, carrier, fixture string, change func(*Request)) []string {
		t.Helper()
		cfg := map[string]Config{"bird": birdCfg, "telnyx": telnyxCfg, "messagebird": messageBirdCfg, "plivo": plivoCfg}[carrier]
		r := loadFixture(t, carrier, fixture)
		change(r)
		events, err := mustNew(t, cfg).Parse(r)
		if err != nil {
			t.Fatalf("Parse: %v", err)
		}
		var out []string
		for _, e := range events {
			s := e.Data.Status
			if e.Data.Error != nil {
				s += " error=" + e.Data.Error.Message
			}
			if e.Data.OccurredAt != nil {
				s += " at=" + e.Data.OccurredAt.UTC().Format(time.RFC3339)
			}
			out = append(out, s)
		}
		return out
	}
	body := func(old, new string) func(*Request) {
		return func(r *Request) {
			if !strings.Contains(string(r.Body)+r.URL, old) {
				t.Fatalf("fixture lacks %q", old)
			}
			r.Body = []byte(strings.Replace(string(r.Body), old, new, 1))
			r.URL = strings.Replace(r.URL, old, new, 1)
			r.RawQuery = strings.Replace(r.RawQuery, old, new, 1)
		}
	}
	for _, tc := range []struct {
		name, carrier, fixture string
		change                 func(*Request)
		want                   string
	}{
		{"bird: a reason on a delivered message is no error", "bird", "status",
			body(`"reason":""`, `"reason":"Delivered to handset"`), "delivered at=2025-01-15T10:31:05Z"},
		{"bird: a reason on a failed one is its error", "bird", "status",
			body(`"status":"delivered","reason":""`, `"status":"delivery_failed","reason":"Number unreachable"`), "undelivered error=Number unreachable at=2025-01-15T10:31:05Z"},
		{"telnyx: bookkeeping recipients only: nothing to report", "telnyx", "status",
			body(`"status":"delivered"`, `"status":"webhook_delivered"`), ""},
		{"messagebird: a zone's '+' left unencoded", "messagebird", "dlr",
			body(`statusDatetime=2025-01-15T10%3A31%3A05%2B00%3A00`, `statusDatetime=2025-01-15T10%3A31%3A05+01%3A00`), "delivered at=2025-01-15T09:31:05Z"},
		{"plivo: a time with an offset", "plivo", "status",
			body(`DeliveryReportTime=2025-01-15+10%3A31%3A05.000000`, `DeliveryReportTime=2025-01-15+10%3A31%3A05%2B02%3A00`), "delivered at=2025-01-15T08:31:05Z"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := strings.Join(parse(t, tc.carrier, tc.fixture, tc.change), "; "); got != tc.want {
				t.Errorf("events = %q, want %q", got, tc.want)
			}
		})
	}
}

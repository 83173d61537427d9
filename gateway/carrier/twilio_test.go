package carrier

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha1"
	"encoding/base64"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	switchboard "github.com/switchboard-gw/switchboard"
)

const twilioToken = "test_auth_token_0123456789abcdef"

var twilioCfg = Config{Carrier: "twilio", Secret: twilioToken}

func TestTwilioGolden(t *testing.T) { testGolden(t, "twilio", twilioCfg) }

// recorder is a hash.Hash that keeps what was written, to see the string
// that is signed.
type recorder struct{ bytes.Buffer }

func (r *recorder) Sum(b []byte) []byte { return append(b, r.Bytes()...) }
func (r *recorder) Size() int           { return 0 }
func (r *recorder) BlockSize() int      { return 1 }

func TestTwilioStringToSign(t *testing.T) {
	tests := []struct{ kind, url, want string }{
		{"inbound", "https://hooks.example.com/twilio/sms", "https://hooks.example.com/twilio/smsAccountSidAC00000000000000000000000000000001ApiVersion2010-04-01BodyIs 2+2=4? Yes & caféFrom+15555550100FromCityFromCountryUSFromStateCAFromZipMediaContentType0image/jpegMediaUrl0https://api.twilio.com/2010-04-01/Accounts/AC00000000000000000000000000000001/Messages/MM00000000000000000000000000000001/Media/ME00000000000000000000000000000001MessageSidMM00000000000000000000000000000001MessagingServiceSidMG00000000000000000000000000000001NumMedia1NumSegments1SmsMessageSidMM00000000000000000000000000000001SmsSidMM00000000000000000000000000000001SmsStatusreceivedTo+15555550199ToCityToCountryUSToStateCAToZip"},
		{"status", "https://hooks.example.com/twilio/status?tenant=acme", "https://hooks.example.com/twilio/status?tenant=acmeAccountSidAC00000000000000000000000000000001ApiVersion2010-04-01ErrorCode30003From+15555550199MessageSidSM00000000000000000000000000000002MessageStatusundeliveredMessagingServiceSidMG00000000000000000000000000000001RawDlrDoneDate2501151031SmsSidSM00000000000000000000000000000002SmsStatusundeliveredTo+15555550100"},
	}
	for _, tt := range tests {
		r := loadFixture(t, "twilio", tt.kind)
		form, err := url.ParseQuery(string(r.Body))
		if err != nil {
			t.Fatal(err)
		}
		if got := string(twilioMAC(&recorder{}, nil, tt.url, form)); got != tt.want {
			t.Errorf("%s: signed string =\n%s\nwant\n%s", tt.kind, got, tt.want)
		}
	}
}

func twilioSign(token, u string, form url.Values) string { return TwilioSignature(token, u, form) }

func TestTwilioVectors(t *testing.T) {
	c := mustNew(t, twilioCfg)
	inbound := loadFixture(t, "twilio", "inbound")
	status := loadFixture(t, "twilio", "status")
	jsonReq := &Request{
		Method: http.MethodPost,
		URL:    "https://hooks.example.com/twilio/json?bodySHA256=ac573c7a795678c01cdb066749c3a87ce5950a28bcd25298fb4694866599491f",
		Header: http.Header{"Content-Type": {"application/json"}, "X-Twilio-Signature": {"bVdXfWm/OTg41SJ2TKr2y6CtPK0="}},
		Body:   []byte(`{"MessageSid":"SM00000000000000000000000000000002","MessageStatus":"delivered"}`),
	}
	with := func(r *Request, u, sig string) *Request {
		r = clone(r)
		if u != "" {
			r.URL = u
		}
		if sig != "" {
			r.Header.Set("X-Twilio-Signature", sig)
		}
		return r
	}
	tests := []struct {
		name string
		r    *Request
	}{
		{"inbound 2uahUCz0", inbound},
		{"inbound signed with :443", with(inbound, "https://hooks.example.com:443/twilio/sms", "eMlESkiL2IPcor8qwwh+Zg+vRZE=")},
		{"signed with :443, gateway sees no port", with(inbound, "", "eMlESkiL2IPcor8qwwh+Zg+vRZE=")},
		{"signed without port, gateway sees :443", with(inbound, "https://hooks.example.com:443/twilio/sms", "")},
		{"fragment stripped", with(inbound, "https://hooks.example.com/twilio/sms#rc=3&rp=5xx", "")},
		{"status ?tenant=acme", status},
		{"json bodySHA256", jsonReq},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := c.Verify(tt.r); err != nil {
				t.Fatalf("Verify: %v", err)
			}
		})
	}
	if got := inbound.Header.Get("X-Twilio-Signature"); got != "2uahUCz0QYwDcwsXLwclNw1Bct8=" {
		t.Fatalf("fixture signature = %q", got)
	}
	if got := status.Header.Get("X-Twilio-Signature"); got != "dhLTWpaFJSQFRdgn8DWXmVQDbG4=" {
		t.Fatalf("fixture signature = %q", got)
	}
}

func TestTwilioSDKCrossCheck(t *testing.T) {
	form := url.Values{
		"Digits": {"1234"}, "CallSid": {"CA1234567890ABCDE"}, "To": {"+18005551212"},
		"Caller": {"+14158675309"}, "From": {"+14158675309"}, "ReasonConferenceEnded": {"test"}, "Reason": {"Participant"},
	}
	const u = "https://mycompany.com/myapp.php?foo=1&bar=2"
	if got := twilioSign("12345", u, form); got != "vOEb5UThFn24KEfnOFLQY2AE5FY=" {
		t.Fatalf("signature = %q, want vOEb5UThFn24KEfnOFLQY2AE5FY=", got)
	}
	r := &Request{
		Method: http.MethodPost, URL: u, Body: []byte(form.Encode()),
		Header: http.Header{"Content-Type": {"application/x-www-form-urlencoded"}, "X-Twilio-Signature": {"vOEb5UThFn24KEfnOFLQY2AE5FY="}},
	}
	if _, err := mustNew(t, Config{Carrier: "twilio", Secret: "12345"}).Verify(r); err != nil {
		t.Fatalf("Verify: %v", err)
	}
}

func TestTwilioRepeatedNames(t *testing.T) {
	form := url.Values{"b": {"2", "1", "2"}, "a": {""}}
	got := string(twilioMAC(&recorder{}, nil, "https://x/", form))
	if want := "https://x/ab1b2"; got != want {
		t.Fatalf("signed string = %q, want %q (Python helper: each distinct value once, sorted)", got, want)
	}
}

func TestTwilioRejects(t *testing.T) {
	c := mustNew(t, twilioCfg)
	inbound := loadFixture(t, "twilio", "inbound")
	jsonReq := &Request{
		Method: http.MethodPost,
		URL:    "https://hooks.example.com/twilio/json?bodySHA256=ac573c7a795678c01cdb066749c3a87ce5950a28bcd25298fb4694866599491f",
		Header: http.Header{"Content-Type": {"application/json"}, "X-Twilio-Signature": {"bVdXfWm/OTg41SJ2TKr2y6CtPK0="}},
		Body:   []byte(`{"MessageSid":"SM00000000000000000000000000000002","MessageStatus":"delivered"}`),
	}
	i := bytesIndex(inbound.Body, "Yes")
	tests := []struct {
		name   string
		c      Carrier
		r      *Request
		substr string
	}{
		{"changed body byte", c, func() *Request { r := clone(inbound); r.Body = flipAt(r.Body, i, 0x20); return r }(), `URL "https://hooks.example.com/twilio/sms"`},
		{"missing header", c, func() *Request { r := clone(inbound); r.Header.Del("X-Twilio-Signature"); return r }(), "missing X-Twilio-Signature"},
		{"not base64", c, func() *Request { r := clone(inbound); r.Header.Set("X-Twilio-Signature", "not a signature"); return r }(), "not a base64"},
		{"wrong token", mustNew(t, Config{Carrier: "twilio", Secret: "another_token"}), inbound, `"https://hooks.example.com:443/twilio/sms"`},
		{"http instead of https", c, func() *Request { r := clone(inbound); r.URL = "http://hooks.example.com/twilio/sms"; return r }(), `URL "http://hooks.example.com/twilio/sms"`},
		{"other path", c, func() *Request { r := clone(inbound); r.URL = "https://hooks.example.com/hooks/acme/twilio"; return r }(), "/hooks/acme/twilio"},
		{"signed for another port", c, func() *Request {
			r := clone(inbound)
			form, _ := url.ParseQuery(string(r.Body))
			r.Header.Set("X-Twilio-Signature", twilioSign(twilioToken, "https://hooks.example.com:8443/twilio/sms", form))
			return r
		}(), `nor "https://hooks.example.com:443/twilio/sms"`},
		{"query dropped", c, func() *Request {
			r := clone(loadFixture(t, "twilio", "status"))
			r.URL = "https://hooks.example.com/twilio/status"
			return r
		}(), "status"},
		{"json body changed", c, func() *Request {
			r := clone(jsonReq)
			r.Body = bytes.Replace(r.Body, []byte("delivered"), []byte("Delivered"), 1)
			return r
		}(), "bodySHA256"},
		{"json without bodySHA256", c, func() *Request {
			r := clone(jsonReq)
			r.URL = "https://hooks.example.com/twilio/json"
			r.Header.Set("X-Twilio-Signature", twilioSign(twilioToken, r.URL, nil))
			return r
		}(), "no bodySHA256"},
		{"form treated as GET", c, func() *Request { r := clone(inbound); r.Method = http.MethodGet; return r }(), "signature does not match"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := tt.c.Verify(tt.r)
			if !errors.Is(err, switchboard.ErrBadSignature) {
				t.Fatalf("Verify = %v, want ErrBadSignature", err)
			}
			msg := err.Error()
			if !strings.HasPrefix(msg, "verify twilio: ") || !strings.Contains(msg, tt.substr) {
				t.Errorf("error %q does not start with %q or mention %q", msg, "verify twilio: ", tt.substr)
			}
			if strings.Contains(msg, twilioToken) || strings.Contains(msg, "another_token") {
				t.Errorf("error %q holds the token", msg)
			}
		})
	}
}

func TestTwilioGET(t *testing.T) {
	c := mustNew(t, twilioCfg)
	q := "MessageSid=SM1&From=%2B15555550100&To=%2B15555550199&Body=Hi+there&SmsStatus=received&NumMedia=0"
	u := "https://hooks.example.com/twilio/sms?" + q
	m := hmac.New(sha1.New, []byte(twilioToken))
	m.Write([]byte(u)) // GET: the URL alone
	r := &Request{
		Method: http.MethodGet, URL: u, RawQuery: q,
		Header: http.Header{"X-Twilio-Signature": {base64.StdEncoding.EncodeToString(m.Sum(nil))}},
	}
	if _, err := c.Verify(r); err != nil {
		t.Fatalf("Verify: %v", err)
	}
	events, err := c.Parse(r)
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	d := events[0].Data
	if events[0].Type != switchboard.TypeReceived || d.MessageID != "SM1" || d.Text != "Hi there" || d.From != "+15555550100" {
		t.Fatalf("event = %+v", events[0])
	}
	if reply := c.Reply(r, events); reply.ContentType != "text/xml" || !strings.Contains(string(reply.Body), "<Response/>") {
		t.Fatalf("reply = %+v", reply)
	}
}

func TestTwilioParse(t *testing.T) {
	c := mustNew(t, twilioCfg)
	form := func(s string) *Request {
		return &Request{Method: http.MethodPost, Header: http.Header{"Content-Type": {"application/x-www-form-urlencoded"}}, Body: []byte(s)}
	}
	tests := []struct {
		name                      string
		body                      string
		typ, status, word, errMsg string
		errCode                   string
	}{
		{"sending", "MessageSid=SM1&MessageStatus=sending&SmsStatus=sending", switchboard.TypeStatus, "queued", "sending", "", ""},
		{"canceled", "MessageSid=SM1&MessageStatus=canceled", switchboard.TypeStatus, "failed", "canceled", "", ""},
		{"partially_delivered", "MessageSid=SM1&MessageStatus=partially_delivered", switchboard.TypeStatus, "sent", "partially_delivered", "", ""},
		{"scheduled", "MessageSid=SM1&MessageStatus=scheduled", switchboard.TypeStatus, "accepted", "scheduled", "", ""},
		{"read", "MessageSid=SM1&MessageStatus=read", switchboard.TypeStatus, "read", "read", "", ""},
		{"new word", "MessageSid=SM1&MessageStatus=teleported", switchboard.TypeStatus, "unknown", "teleported", "", ""},
		{"error message", "MessageSid=SM1&MessageStatus=failed&ErrorCode=30007&ErrorMessage=Carrier+violation", switchboard.TypeStatus, "failed", "failed", "Carrier violation", "30007"},
		{"error code 0", "MessageSid=SM1&MessageStatus=delivered&ErrorCode=0", switchboard.TypeStatus, "delivered", "delivered", "", ""},
		{"inbound by MessageStatus", "MessageSid=SM1&MessageStatus=received&Body=x", switchboard.TypeReceived, "", "", "", ""},
		{"inbound without status", "SmsSid=SM1&Body=x", switchboard.TypeReceived, "", "", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			events, err := c.Parse(form(tt.body))
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			e := events[0]
			if e.Type != tt.typ || e.Data.Status != tt.status || e.Data.CarrierStatus != tt.word || e.Data.MessageID != "SM1" {
				t.Fatalf("event = %+v, want type %s status %q carrier_status %q", e, tt.typ, tt.status, tt.word)
			}
			if tt.errCode == "" && e.Data.Error != nil || tt.errCode != "" && (e.Data.Error == nil || e.Data.Error.Code != tt.errCode || e.Data.Error.Message != tt.errMsg) {
				t.Fatalf("error = %+v, want code %q message %q", e.Data.Error, tt.errCode, tt.errMsg)
			}
		})
	}
	// A message still arriving, with nothing of it yet, is no event: it
	// would take the dedup key of the "received" callback that brings it.
	if events, err := c.Parse(form("MessageSid=MM9&MessageStatus=receiving&From=%2B15555550100")); err != nil || len(events) != 0 {
		t.Errorf("receiving without a body = %+v, %v; want no event", events, err)
	}
	// Media without NumMedia: the MediaUrl<i> given from 0 on.
	events, err := c.Parse(form("MessageSid=MM9&MediaUrl0=https%3A%2F%2Fa&MediaContentType0=image%2Fjpeg&MediaUrl1=https%3A%2F%2Fb"))
	if err != nil || len(events) != 1 || len(events[0].Data.Media) != 2 || events[0].Data.Media[0].ContentType != "image/jpeg" || events[0].Data.Media[1].URL != "https://b" {
		t.Errorf("media without NumMedia = %+v, %v; want both", events, err)
	}
	for _, bad := range []string{"From=%2B1555&Body=no+sid", "MessageSid=SM1&Body=%zz", "a;b"} {
		if _, err := c.Parse(form(bad)); !errors.Is(err, switchboard.ErrBadPayload) {
			t.Errorf("Parse(%q) = %v, want ErrBadPayload", bad, err)
		}
	}
	jr := &Request{Method: http.MethodPost, Header: http.Header{"Content-Type": {"application/json"}},
		Body: []byte(`{"MessageSid":"SM00000000000000000000000000000002","MessageStatus":"delivered"}`)}
	events, err = c.Parse(jr)
	if err != nil || events[0].Data.Status != "delivered" || events[0].Data.MessageID != "SM00000000000000000000000000000002" {
		t.Fatalf("Parse JSON = %+v, %v", events, err)
	}
	if _, err := c.Parse(&Request{Method: http.MethodPost, Header: jr.Header, Body: []byte(`[1]`)}); !errors.Is(err, switchboard.ErrBadPayload) {
		t.Fatalf("Parse JSON array = %v, want ErrBadPayload", err)
	}
}

func TestTwilioURLs(t *testing.T) {
	tests := []struct{ in, with, without string }{
		{"https://h.example/p?q=1", "https://h.example:443/p?q=1", "https://h.example/p?q=1"},
		{"http://h.example/p", "http://h.example:80/p", "http://h.example/p"},
		{"https://h.example:8443/p", "https://h.example:8443/p", "https://h.example/p"},
		{"https://h.example", "https://h.example:443", "https://h.example"},
		{"https://[::1]:443/p", "https://[::1]:443/p", "https://[::1]/p"},
		{"https://[::1]/p", "https://[::1]:443/p", "https://[::1]/p"},
		{"https://u:p@h.example/p", "https://u:p@h.example:443/p", "https://u:p@h.example/p"},
		{"https://h.example/p?next=http://x:1/", "https://h.example:443/p?next=http://x:1/", "https://h.example/p?next=http://x:1/"},
		{"not a url", "not a url", "not a url"},
		// An empty port ("host:") is a port as written: the URL as given is
		// a candidate (found by FuzzTwilio: a URL signed as sent failed).
		{"https://h.example:/p", "https://h.example:/p", "https://h.example/p"},
	}
	for _, tt := range tests {
		w, wo := twilioURLs(tt.in)
		if w != tt.with || wo != tt.without {
			t.Errorf("twilioURLs(%q) = %q, %q; want %q, %q", tt.in, w, wo, tt.with, tt.without)
		}
	}
}

func TestTwilioSimulate(t *testing.T) {
	const target = "https://hooks.example.com/hooks/acme/twilio-main?x=1"
	now := time.Unix(1736937000, 0)
	c := mustNew(t, twilioCfg)
	ids := map[string]bool{}
	for _, kind := range []string{"inbound", "status", "inbound"} {
		req, err := Simulate(twilioCfg, kind, SimMessage{Status: "undelivered", Text: "Is 2+2=4? Yes & café"}, target, now)
		if err != nil {
			t.Fatalf("Simulate: %v", err)
		}
		r := fromHTTP(t, req, target, now)
		if _, err := c.Verify(r); err != nil {
			t.Fatalf("%s: Verify: %v", kind, err)
		}
		events, err := c.Parse(r)
		if err != nil {
			t.Fatalf("%s: Parse: %v", kind, err)
		}
		d := events[0].Data
		ids[d.MessageID] = true
		switch kind {
		case "inbound":
			if events[0].Type != switchboard.TypeReceived || d.From != "+15555550100" || d.To != "+15555550199" || d.Text != "Is 2+2=4? Yes & café" {
				t.Fatalf("inbound event = %+v", events[0])
			}
		case "status":
			if events[0].Type != switchboard.TypeStatus || d.Status != "undelivered" || d.From != "+15555550199" || d.Error == nil {
				t.Fatalf("status event = %+v", events[0])
			}
		}
	}
	if len(ids) != 3 {
		t.Fatalf("message ids %v are not all different", ids)
	}
	if _, err := Simulate(twilioCfg, "bogus", SimMessage{}, target, now); err == nil {
		t.Fatal("Simulate accepted kind bogus")
	}
}

// FuzzTwilio: Verify and Parse never panic, and a body differing in one byte
// from a signed one never verifies unless it decodes to the same parameters
// (the scheme signs decoded values: "+" and "%20", or "%2b" and "%2B", are
// the same to it, and to Parse).
func FuzzTwilio(f *testing.F) {
	for _, kind := range []string{"inbound", "status"} {
		r := loadFixture(f, "twilio", kind)
		f.Add(r.Body, r.URL, r.Header.Get("X-Twilio-Signature"), false, 10, byte(1))
	}
	f.Add([]byte(`{"MessageSid":"SM1"}`), "https://h/x?bodySHA256=00", "AAAA", true, 0, byte(0x20))
	c := mustNew(f, twilioCfg)
	f.Fuzz(func(t *testing.T, body []byte, u, sig string, json bool, pos int, flip byte) {
		r := &Request{Method: http.MethodPost, URL: u, Body: body, Header: http.Header{"X-Twilio-Signature": {sig}}}
		if json {
			r.Header.Set("Content-Type", "application/json")
		}
		c.Verify(r)
		c.Parse(r)
		r.Method = http.MethodGet
		r.RawQuery = string(body)
		c.Verify(r)
		c.Parse(r)

		form, err := url.ParseQuery(string(body))
		if err != nil || json || len(body) == 0 || flip == 0 {
			return
		}
		r = &Request{Method: http.MethodPost, URL: u, Body: body,
			Header: http.Header{"X-Twilio-Signature": {twilioSign(twilioToken, stripFragment(u), form)}}}
		if _, err := c.Verify(r); err != nil {
			t.Fatalf("own signature: %v", err)
		}
		r.Body = flipAt(body, abs(pos)%len(body), flip)
		if _, err := c.Verify(r); err == nil {
			changed, err := url.ParseQuery(string(r.Body))
			if err != nil || twilioSign(twilioToken, "", changed) != twilioSign(twilioToken, "", form) {
				t.Fatalf("changed body %q verifies", r.Body)
			}
		}
	})
}

func abs(n int) int {
	if n < 0 {
		return -(n + 1)
	}
	return n
}

func BenchmarkTwilioVerify(b *testing.B) {
	c := mustNew(b, twilioCfg)
	r := loadFixture(b, "twilio", "inbound")
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.Verify(r); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkTwilioParse(b *testing.B) {
	c := mustNew(b, twilioCfg)
	r := loadFixture(b, "twilio", "inbound")
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.Parse(r); err != nil {
			b.Fatal(err)
		}
	}
}

package carrier

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strings"
	"testing"

	switchboard "github.com/switchboard-gw/switchboard"
)

var plivoCfg = Config{Carrier: "plivo", Secret: "PLIVO_TEST_AUTH_TOKEN_0123456789ab"}

func TestPlivo(t *testing.T) {
	conformance{
		cfg: plivoCfg, dir: "plivo",
		// V2 covers only the URL and nonce: the body is not signed.
		wrong:   Config{Carrier: "plivo", Secret: "OTHER_AUTH_TOKEN"},
		secrets: []string{"PLIVO_TEST_AUTH_TOKEN_0123456789ab", "OTHER_AUTH_TOKEN"},
		unsign: func(r *Request) {
			for _, h := range []string{"V2", "Ma-V2", "V3", "Ma-V3"} {
				r.Header.Del("X-Plivo-Signature-" + h)
			}
		},
		target: "https://hooks.example.com/plivo/status?tenant=acme",
	}.run(t)
}

func TestPlivoVectors(t *testing.T) {
	c := mustNew(t, plivoCfg)
	for kind, nonce := range map[string]string{"inbound": "05429567804466091622", "status": "31627761595286130198", "inbound-v3": "05429567804466091622", "status-v3": "31627761595286130198"} {
		proof, err := c.Verify(loadFixture(t, "plivo", kind))
		if err != nil || proof.Nonce != nonce || proof.TTL != plivoNonceTTL {
			t.Errorf("%s: Verify = %+v, %v", kind, proof, err)
		}
	}
	u, _ := url.Parse("https://hooks.example.com/plivo/inbound?tenant=acme")
	r := loadFixture(t, "plivo", "inbound")
	form, _ := url.ParseQuery(string(r.Body))
	const want = "https://hooks.example.com/plivo/inbound?tenant=acme.From15555550100MessageIntentMessageUUID2f6c1a3e-4b5d-11ef-8a9b-0242ac120002PowerpackUUIDTextIs 2+2=4? Yes & caféTo15555550199TotalAmount0.00000TotalRate0.00000TypesmsUnits1.05429567804466091622"
	if got := plivoV3String(u, "POST", firstValues(form), "05429567804466091622"); got != want {
		t.Fatalf("V3 string =\n%s\nwant\n%s", got, want)
	}
}

// plivo-go's own test vectors (utils_test.go, the revision the README cites;
// an older revision's single V3 vector was made by an earlier algorithm).
func TestPlivoSDKCrossCheck(t *testing.T) {
	c := mustNew(t, Config{Carrier: "plivo", Secret: "my_auth_token"})
	r := &Request{Method: "POST", URL: "https://answer.url", Header: http.Header{
		"X-Plivo-Signature-V2": {"ehV3IKhLysWBxC1sy8INm0qGoQYdYsHwuoKjsX7FsXc="}, "X-Plivo-Signature-V2-Nonce": {"12345"},
	}}
	if _, err := c.Verify(r); err != nil {
		t.Fatalf("V2: %v", err)
	}
	params := map[string]string{
		"Direction": "outbound", "From": "19792014278", "ALegUUID": "3e82ae9d-2c78-4d85-b1a4-6eae7dbafb36", "CallStatus": "in-progress",
		"BillRate": "0.002", "ParentAuthID": "MANWVLYTK4ZWU1YTY4QA", "To": "sip:PlivoSignature382029104058171078704104@phone-qa.voice.plivodev.com",
		"ALegRequestUUID": "3e82ae9d-2c78-4d85-b1a4-6eae7dbafb36", "CallUUID": "3e82ae9d-2c78-4d85-b1a4-6eae7dbafb36", "RequestUUID": "3e82ae9d-2c78-4d85-b1a4-6eae7dbafb36",
		"SIP-H-To": "<sip:PlivoSignature382029104058171078704104@52.9.11.55;transport=udp>;tag=1", "SessionStart": "2020-04-08 11:34:33.238707", "Event": "StartApp",
	}
	c = mustNew(t, Config{Carrier: "plivo", Secret: "Y2Q2ZDgxZmY5YWRiOTI5YmQ1Njg0MTAxZWIyOTc4"})
	const base = "https://plivobin.non-prod.plivops.com/api/v1/validate_signature03.xml"
	for _, v := range []struct{ url, method, sig string }{
		{base + "/?a=b&c=d", "POST", "k7Pusd4OxCIjR5IfA9iedDNu/h/gbdYqdzG/MiYtd1c="},
		{base + "/?a=b&c=d", "GET", "UBq8jAtd32wR8EK9VgxbBn4n5rpI/l1H9iN4WfSEHFQ="},
		{base, "POST", "iAjE5QqI37mbkYe4w3jTMudqEzbDufdqi7sYwTu64e0="},
		{base, "GET", "i/MQsaQSAd6fiKhOh2qeeeLHZ9faldADSb3/7+Akfbc="},
	} {
		if _, err := c.Verify(plivoV3Request(v.url, v.method, "31627761595286130198", "wrong,"+v.sig, params)); err != nil {
			t.Errorf("V3 %s %s: %v", v.method, v.url, err)
		}
	}
}

// plivoV3Request is a V3-signed request as plivo-go's tests describe it:
// the SDK's params are the POST body; for GET they are merged into the
// query string, which is how Plivo sends them.
func plivoV3Request(u, method, nonce, sig string, params map[string]string) *Request {
	r := &Request{Method: method, URL: u, Header: http.Header{"X-Plivo-Signature-V3": {sig}, "X-Plivo-Signature-V3-Nonce": {nonce}}}
	form := url.Values{}
	for k, v := range params {
		form.Set(k, v)
	}
	if method == "GET" {
		sep := "?"
		if strings.Contains(u, "?") {
			sep = "&"
		}
		r.URL += sep + form.Encode()
		return r
	}
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	r.Body = []byte(form.Encode())
	return r
}

func TestPlivoRejects(t *testing.T) {
	c := mustNew(t, plivoCfg)
	r := loadFixture(t, "plivo", "inbound")
	tests := []struct {
		name   string
		change func(*Request)
	}{
		{"other path", func(r *Request) { r.URL = "https://hooks.example.com/plivo/other" }},
		{"other nonce", func(r *Request) { r.Header.Set("X-Plivo-Signature-V2-Nonce", "05429567804466091623") }},
		{"no nonce", func(r *Request) { r.Header.Del("X-Plivo-Signature-V2-Nonce") }},
		{"only Ma-V2, wrong", func(r *Request) {
			r.Header.Del("X-Plivo-Signature-V2")
			r.Header.Set("X-Plivo-Signature-Ma-V2", "AAAA")
		}},
	}
	for _, tt := range tests {
		s := clone(r)
		tt.change(s)
		if _, err := c.Verify(s); !errors.Is(err, switchboard.ErrBadSignature) {
			t.Errorf("%s: Verify = %v, want ErrBadSignature", tt.name, err)
		}
	}
	// Ma-V2 alone is enough when it matches.
	s := clone(r)
	s.Header.Del("X-Plivo-Signature-V2")
	if _, err := c.Verify(s); err != nil {
		t.Errorf("Ma-V2 only: %v", err)
	}
	// V3 covers the body: a changed parameter does not verify.
	v3 := loadFixture(t, "plivo", "inbound-v3")
	v3.Body = []byte(strings.Replace(string(v3.Body), "Units=1", "Units=2", 1))
	if _, err := c.Verify(v3); !errors.Is(err, switchboard.ErrBadSignature) {
		t.Errorf("V3 with a changed body: Verify = %v", err)
	}
}

func TestPlivoParseMedia(t *testing.T) {
	c := mustNew(t, plivoCfg)
	for _, body := range []string{
		"MessageUUID=u&From=15555550100&To=15555550199&Type=mms&Body=look&MediaCount=2&Media1=https%3A%2F%2Fm%2F1&Media2=https%3A%2F%2Fm%2F2",
		"MessageUUID=u&From=15555550100&To=15555550199&Type=mms&Body=look&MediaCount=2&Media0=https%3A%2F%2Fm%2F1&Media1=https%3A%2F%2Fm%2F2",
	} {
		events, err := c.Parse(&Request{Method: "POST", Body: []byte(body)})
		if err != nil {
			t.Fatal(err)
		}
		d := events[0].Data
		if d.Text != "look" || len(d.Media) != 2 || d.Media[0].URL != "https://m/1" || d.Media[1].URL != "https://m/2" {
			t.Errorf("Parse(%s) = %+v", body, d)
		}
	}
	events, err := c.Parse(&Request{Method: "GET", RawQuery: "MessageUUID=u&From=15555550199&To=15555550100&Status=failed&ErrorCode=450"})
	if err != nil || events[0].Data.Status != "failed" || events[0].Data.Error.Code != "450" {
		t.Fatalf("GET status: %+v, %v", events, err)
	}
	for _, bad := range []string{"From=1", "MessageUUID=%zz"} {
		if _, err := c.Parse(&Request{Method: "POST", Body: []byte(bad)}); !errors.Is(err, switchboard.ErrBadPayload) {
			t.Errorf("Parse(%s) = %v", bad, err)
		}
	}
}

func FuzzPlivo(f *testing.F) {
	fuzzCarrier(f, plivoCfg, "plivo", []string{"X-Plivo-Signature-V2", "X-Plivo-Signature-V3"}, false)
}

// pyPlivoV3 signs as plivo-python's signature_v3.py does, written out
// here on its own: the query decoded (parse_qs, keep_blank_values), each
// name's values sorted and joined k=v&…; for POST "." and the body
// parameters k1v1…; for GET the query is every parameter.
func pyPlivoV3(t *testing.T, token, method, rawURL, body, nonce string) string {
	t.Helper()
	u, err := url.Parse(rawURL)
	if err != nil {
		t.Fatal(err)
	}
	q, err := url.ParseQuery(u.RawQuery)
	if err != nil {
		t.Fatal(err)
	}
	var pairs []string
	for k, vs := range q {
		vs = append([]string(nil), vs...)
		sort.Strings(vs)
		var kv []string
		for _, v := range vs {
			kv = append(kv, k+"="+v)
		}
		pairs = append(pairs, strings.Join(kv, "&"))
	}
	sort.Strings(pairs) // names are distinct, so this sorts by name
	query := strings.Join(pairs, "&")
	base := u.Scheme + "://" + u.Host + u.Path
	var s string
	if method == http.MethodGet {
		s = base
		if query != "" {
			s += "?" + query
		}
	} else {
		p, err := url.ParseQuery(body)
		if err != nil {
			t.Fatal(err)
		}
		var ks []string
		for k := range p {
			ks = append(ks, k)
		}
		sort.Strings(ks)
		var ps string
		for _, k := range ks {
			ps += k + p.Get(k)
		}
		s = base
		if query != "" || ps != "" {
			s += "?" + query
		}
		if query != "" && ps != "" {
			s += "."
		}
		s += ps
	}
	m := hmac.New(sha256.New, []byte(token))
	m.Write([]byte(s + "." + nonce))
	return base64.StdEncoding.EncodeToString(m.Sum(nil))
}

// Plivo's SDKs disagree on a V3 URL's query: Go signs its raw pairs (the
// vectors), Python and Node the decoded values. A callback signed either
// way verifies: an escaped character, an "=" in a value, a repeated name.
func TestPlivoV3DecodedQuery(t *testing.T) {
	c := mustNew(t, plivoCfg)
	token := plivoCfg.Secret
	body := "From=15555550100&To=15555550199&MessageUUID=2f6c1a3e&Text=hi&Type=sms"
	for _, tc := range []struct{ method, url string }{
		{"POST", "https://hooks.example.com/plivo?ref=sales%20team"},
		{"POST", "https://hooks.example.com/plivo?ref=a%2Fb&tenant=acme"},
		{"POST", "https://hooks.example.com/plivo?k=YWJj=="},
		{"POST", "https://hooks.example.com/plivo?r=b&r=a"},
		{"GET", "https://hooks.example.com/plivo?ref=a%2Fb&" + body},
		{"GET", "https://hooks.example.com/plivo?x=2&x=1&" + body},
	} {
		r := &Request{Method: tc.method, URL: tc.url, Header: http.Header{}}
		if tc.method == "POST" {
			r.Body = []byte(body)
			r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		}
		r.Header.Set("X-Plivo-Signature-V3-Nonce", "31627761595286130198")
		r.Header.Set("X-Plivo-Signature-V3", pyPlivoV3(t, token, tc.method, tc.url, string(r.Body), "31627761595286130198"))
		if _, err := c.Verify(r); err != nil {
			t.Errorf("%s %s signed as plivo-python does: %v", tc.method, tc.url, err)
		}
		if tc.method == "POST" { // still covers the body
			r.Body = []byte(strings.Replace(body, "Text=hi", "Text=ho", 1))
			if _, err := c.Verify(r); !errors.Is(err, switchboard.ErrBadSignature) {
				t.Errorf("%s %s with another body: Verify = %v, want ErrBadSignature", tc.method, tc.url, err)
			}
		}
	}
}

// A callback carrying both V2 and V3 is verified with V3, and both its
// nonces are remembered: a replay with the V3 headers removed and another
// body (V2 does not cover it), or with the V2 headers removed, then finds
// its nonce seen.
func TestPlivoRemembersV2NonceWithV3(t *testing.T) {
	c := mustNew(t, plivoCfg)
	v3 := loadFixture(t, "plivo", "inbound-v3")
	both := clone(v3)
	u, err := url.Parse(both.URL)
	if err != nil {
		t.Fatal(err)
	}
	const v2Nonce = "99999999999999999999" // another nonce than V3's
	m := hmac.New(sha256.New, []byte(plivoCfg.Secret))
	m.Write([]byte(u.Scheme + "://" + u.Host + u.Path + v2Nonce))
	both.Header.Set("X-Plivo-Signature-V2", base64.StdEncoding.EncodeToString(m.Sum(nil)))
	both.Header.Set("X-Plivo-Signature-V2-Nonce", v2Nonce)
	p, err := c.Verify(both)
	if err != nil {
		t.Fatal(err)
	}
	stripped := clone(both)
	stripped.Header.Del("X-Plivo-Signature-V3")
	stripped.Header.Del("X-Plivo-Signature-V3-Nonce")
	stripped.Body = []byte("From=15555550100&To=15555550199&MessageUUID=forged&Text=wire+the+money&Type=sms")
	q, err := c.Verify(stripped)
	if err != nil {
		t.Fatalf("the stripped request verifies with V2 (as it does at Plivo): %v", err)
	}
	remembered := []string{p.Nonce, p.Also}
	if !slices.Contains(remembered, q.Nonce) {
		t.Errorf("genuine request remembers nonces %q, the V3-stripped replay is checked against %q: the replay would be accepted", remembered, q.Nonce)
	}
	// And without its V2 headers, V3 verifies it again: under its V3 nonce,
	// remembered too.
	noV2 := clone(both)
	noV2.Header.Del("X-Plivo-Signature-V2")
	noV2.Header.Del("X-Plivo-Signature-V2-Nonce")
	r, err := c.Verify(noV2)
	if err != nil {
		t.Fatalf("the V2-stripped request verifies with V3: %v", err)
	}
	if !slices.Contains(remembered, r.Nonce) {
		t.Errorf("genuine request remembers nonces %q, the V2-stripped replay is checked against %q", remembered, r.Nonce)
	}
}

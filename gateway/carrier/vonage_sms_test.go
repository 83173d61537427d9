package carrier

import (
	"encoding/hex"
	"errors"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	switchboard "github.com/switchboard-gw/switchboard"
)

var vonageSMSCfg = Config{Carrier: "vonage-sms", Secret: "vonage-test-signature-secret", SignatureMethod: "sha256", ReplayWindow: 5 * time.Minute}

func TestVonageSMS(t *testing.T) {
	wrong := vonageSMSCfg
	wrong.Secret = "another-signature-secret"
	conformance{
		cfg: vonageSMSCfg, dir: "vonage-sms", bodySigned: true, wrong: wrong,
		secrets: []string{"vonage-test-signature-secret", "another-signature-secret"},
		unsign: func(r *Request) {
			r.Body = []byte(strings.Replace(string(r.Body), `"sig"`, `"zig"`, 1))
			r.URL = strings.Replace(r.URL, "&sig=", "&zig=", 1)
			r.RawQuery = strings.Replace(r.RawQuery, "&sig=", "&zig=", 1)
			r.Body = []byte(strings.Replace(string(r.Body), "&sig=", "&zig=", 1))
		},
	}.run(t)
}

func TestVonageSMSVectors(t *testing.T) {
	r := loadFixture(t, "vonage-sms", "inbound")
	p, err := vonageParams(r)
	if err != nil {
		t.Fatal(err)
	}
	const inboundString = "&api-key=abcd1234&keyword=IS&message-timestamp=2025-01-15 10:30:00&messageId=1000000F2D3C4B5A&msisdn=15555550100&nonce=5f1c2d3e-4b5a-4978-8a9b-0c1d2e3f4a5b&text=Is 2+2_4? Yes _ café&timestamp=1736937000&to=15555550199&type=text"
	if got := string(vonageSignString(p)); got != inboundString {
		t.Fatalf("string to sign =\n%s\nwant\n%s", got, inboundString)
	}
	for method, want := range map[string]string{
		"md5hash": "2e8231987e0c925a3a6ccd49eb98cbbf",
		"md5":     "2abe856cc04290a7a3d6dbf33d0e93a9",
		"sha1":    "0758c9fac93b7acca5f20d66eddaf77379628e89",
		"sha256":  "6ab95ba947b2c585eb7b242cabbec0348c49b83f2790108bff3140cabe7685ae",
		"sha512":  "81974c717ccee5dcff740f31dcb8f95f32bb6cca0580b4fa3fa4caf46dce9b4b448dcce52d041d34e574d86fc5ed4b11f8193525afc6c6f8a44400bc516aa719",
	} {
		c := mustNew(t, Config{Carrier: "vonage-sms", Secret: "vonage-test-signature-secret", SignatureMethod: method}).(*VonageSMS)
		if got := hex.EncodeToString(c.sign(p)); got != want {
			t.Errorf("%s = %s, want %s", method, got, want)
		}
	}
	dlr := loadFixture(t, "vonage-sms", "dlr")
	dp, _ := vonageParams(dlr)
	const dlrString = "&api-key=abcd1234&client-ref=order-42&err-code=0&message-timestamp=2025-01-15 10:31:05&messageId=1000000F2D3C4B5B&msisdn=15555550100&network-code=310260&nonce=9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d&price=0.00750000&scts=2501151031&status=delivered&timestamp=1736937065&to=15555550199"
	if got := string(vonageSignString(dp)); got != dlrString {
		t.Fatalf("DLR string to sign =\n%s\nwant\n%s", got, dlrString)
	}
	if got := hex.EncodeToString(mustNew(t, vonageSMSCfg).(*VonageSMS).sign(dp)); got != "58b5662861991d2b21f65b85b40f9e084ef089ec736698aae5ce3eb5b9405f77" {
		t.Fatalf("DLR sha256 = %s", got)
	}
	// The GET fixture carries exactly inbound.query.
	q, _ := os.ReadFile("testdata/vonage-sms/inbound.query")
	if get := loadFixture(t, "vonage-sms", "inbound-get"); get.RawQuery != string(q) {
		t.Fatalf("inbound-get query differs from inbound.query")
	}
}

func TestVonageSMSSDKCrossCheck(t *testing.T) {
	c := mustNew(t, Config{Carrier: "vonage-sms", Secret: "signature_secret", SignatureMethod: "md5"}).(*VonageSMS)
	tests := []struct {
		p    url.Values
		want string
	}{
		{url.Values{"param": {"value"}, "timestamp": {"1234567890"}}, "655a4d0b7f064dff438defc52b012cf5"},
		{url.Values{"param1": {"value&1"}, "param2": {"value=2"}, "timestamp": {"1234567890"}}, "2bbf0abafb2c55e5af6231513896a2ac"},
	}
	for _, tt := range tests {
		if got := hex.EncodeToString(c.sign(tt.p)); got != tt.want {
			t.Errorf("sign(%v) = %s, want %s", tt.p, got, tt.want)
		}
		tt.p.Set("sig", strings.ToUpper(tt.want))
		tt.p.Set("timestamp", "1234567890")
		r := &Request{Method: "GET", RawQuery: tt.p.Encode(), Now: time.Unix(1234567890, 0)}
		if _, err := c.Verify(r); err != nil {
			t.Errorf("Verify(%v): %v", tt.p, err)
		}
	}
}

func TestVonageSMSReplay(t *testing.T) {
	c := mustNew(t, vonageSMSCfg)
	r := loadFixture(t, "vonage-sms", "inbound")
	proof, err := c.Verify(r)
	if err != nil {
		t.Fatal(err)
	}
	// Signed at 1736937000, arrived 30 s later, window 5 min: remembered
	// until the timestamp leaves the window.
	if proof.Nonce != "5f1c2d3e-4b5a-4978-8a9b-0c1d2e3f4a5b" || proof.TTL != 4*time.Minute+31*time.Second {
		t.Fatalf("proof = %+v", proof)
	}
	for _, at := range []int64{1736937000 + 301, 1736937000 - 301} {
		s := clone(r)
		s.Now = time.Unix(at, 0)
		if _, err := c.Verify(s); !errors.Is(err, switchboard.ErrBadSignature) || !strings.Contains(err.Error(), "window") {
			t.Errorf("at %d: Verify = %v, want a stale-timestamp error", at, err)
		}
	}
	for _, bad := range []Config{{Carrier: "vonage-sms", Secret: "x"}, {Carrier: "vonage-sms", Secret: "x", SignatureMethod: "sha384"}, {Carrier: "vonage-sms", SignatureMethod: "md5"}} {
		if _, err := New(bad); err == nil {
			t.Errorf("New(%+v) = nil error", bad)
		}
	}
}

// FuzzVonageSMS: Vonage's scheme signs '&' and '=' in values as '_' (its
// SDKs), so a value changed between those three verifies (found by this
// fuzzer; a property of the scheme, not of the verifier); any other
// changed byte must not.
func FuzzVonageSMS(f *testing.F) {
	fuzzCarrierSigned(f, vonageSMSCfg, "vonage-sms", nil, true, func(old, new byte) bool {
		signedAlike := func(b byte) bool { return b == '&' || b == '=' || b == '_' }
		return signedAlike(old) && signedAlike(new)
	})
}

// Part reads concat-ref, concat-part and concat-total from a JSON body, a
// form or a GET query; a single message, a DLR or bad numbers are no part.
func TestVonageSMSPart(t *testing.T) {
	c := mustNew(t, vonageSMSCfg).(*VonageSMS)
	concat := "concat=true&concat-ref=7F&concat-total=3&concat-part=2&msisdn=447700900001&to=447700900002&messageId=0A1&text=x"
	want := Part{Ref: "447700900001 447700900002 7F", Number: 2, Total: 3}
	for name, r := range map[string]*Request{
		"json": {Method: "POST", Header: map[string][]string{"Content-Type": {"application/json"}},
			Body: []byte(`{"concat":"true","concat-ref":"7F","concat-total":"3","concat-part":"2","msisdn":"447700900001","to":"447700900002","messageId":"0A1","text":"x"}`)},
		"form": {Method: "POST", Header: map[string][]string{"Content-Type": {"application/x-www-form-urlencoded"}}, Body: []byte(concat)},
		"get":  {Method: "GET", RawQuery: concat, URL: "https://h.example.com/v?" + concat},
	} {
		if got, ok := c.Part(r); !ok || got != want {
			t.Errorf("%s: Part = %+v, %v; want %+v", name, got, ok, want)
		}
	}
	form := func(s string) *Request {
		return &Request{Method: "POST", Header: map[string][]string{"Content-Type": {"application/x-www-form-urlencoded"}}, Body: []byte(s)}
	}
	for _, s := range []string{
		"msisdn=447700900001&to=447700900002&messageId=0A1&text=x",     // one message
		strings.Replace(concat, "concat=true", "concat=false", 1),      // not concatenated
		strings.Replace(concat, "concat-part=2", "concat-part=4", 1),   // beyond the total
		strings.Replace(concat, "concat-total=3", "concat-total=1", 1), // one part
		strings.Replace(concat, "concat-ref=7F", "concat-ref=", 1),     // no reference
		concat + "&status=delivered",                                   // a DLR
	} {
		if got, ok := c.Part(form(s)); ok {
			t.Errorf("Part(%s) = %+v, want no part", s, got)
		}
	}
}

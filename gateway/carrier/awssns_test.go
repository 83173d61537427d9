package carrier

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"math/big"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	switchboard "github.com/switchboard-gw/switchboard"
)

const snsTopic = "arn:aws:sns:us-east-1:111122223333:sms-events"

// snsStub is an http.RoundTripper serving certificates by URL and
// answering SubscribeURLs, counting requests.
type snsStub struct {
	mu    sync.Mutex
	certs map[string][]byte
	gets  []string
	calls atomic.Int32
	down  bool
}

func (s *snsStub) RoundTrip(req *http.Request) (*http.Response, error) {
	s.calls.Add(1)
	if s.down {
		return nil, errors.New("connection refused")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.gets = append(s.gets, req.URL.String())
	body, ok := s.certs[req.URL.String()]
	status := http.StatusOK
	if !ok {
		if strings.Contains(req.URL.RawQuery, "Action=ConfirmSubscription") {
			body = []byte("<ConfirmSubscriptionResponse/>")
		} else {
			status, body = http.StatusNotFound, nil
		}
	}
	return &http.Response{StatusCode: status, Status: http.StatusText(status), Body: io.NopCloser(bytes.NewReader(body)), Request: req}, nil
}

func newSNSStub(t testing.TB) *snsStub {
	pemBytes, err := os.ReadFile("testdata/aws-sns/test-signing-cert.pem")
	if err != nil {
		t.Fatal(err)
	}
	return &snsStub{certs: map[string][]byte{
		"https://sns.us-east-1.amazonaws.com/SimpleNotificationService-0000000000000000000000000000000.pem": pemBytes,
	}}
}

func snsCfg(stub *snsStub) Config {
	return Config{Carrier: "aws-sns", TopicARNs: []string{snsTopic}, ReplayWindow: 5 * time.Minute, HTTPClient: &http.Client{Transport: stub}}
}

func TestSNS(t *testing.T) {
	stub := newSNSStub(t)
	wrong := snsCfg(stub)
	wrong.TopicARNs = []string{"arn:aws:sns:us-east-1:111122223333:other"}
	conformance{
		cfg: snsCfg(stub), dir: "aws-sns", bodySigned: true, wrong: wrong, noSimulate: true,
		unsign: func(r *Request) {
			var m map[string]any
			json.Unmarshal(r.Body, &m)
			delete(m, "Signature")
			r.Body, _ = json.Marshal(m)
		},
	}.run(t)
	if _, err := Simulate(snsCfg(stub), "inbound", SimMessage{}, "https://h/x", time.Now()); err == nil || !strings.Contains(err.Error(), "aws sns publish") {
		t.Error("Simulate(aws-sns) = nil error; SNS messages can only be signed by Amazon")
	}
	// Without a source's settings (simulate's flags have no topic_arns) it
	// says the same, not that topic_arns is missing.
	if _, err := Simulate(Config{Carrier: "aws-sns", Secret: "x"}, "inbound", SimMessage{}, "https://h/x", time.Now()); err == nil || !strings.Contains(err.Error(), "cannot be forged") {
		t.Errorf("Simulate(aws-sns, no topics) = %v, want 'cannot be forged'", err)
	}
}

// TestSNSStringToSign: the exported helper tests sign with is the
// canonical string Verify checks, byte for byte (the fixtures' vectors).
func TestSNSStringToSign(t *testing.T) {
	for kind, want := range map[string]string{
		"inbound": "48e3d868a1ca4d74ad514319b7d7e59568a6aa9e8bcba13414ba1c432f3d7666",
		"status":  "8de1bb2fbb0f1676510c1c3dad2f6db861eb58418e1a960b121333a1b6a8375c",
	} {
		got, err := SNSStringToSign(loadFixture(t, "aws-sns", kind).Body)
		if err != nil {
			t.Fatalf("%s: %v", kind, err)
		}
		if sum := sha256.Sum256(got); hex.EncodeToString(sum[:]) != want {
			t.Errorf("%s: SHA-256 of SNSStringToSign = %x, want %s", kind, sum, want)
		}
	}
	if _, err := SNSStringToSign([]byte("not json")); err == nil {
		t.Error("SNSStringToSign(not json) = nil error")
	}
}

func TestSNSVectors(t *testing.T) {
	stub := newSNSStub(t)
	c := mustNew(t, snsCfg(stub))
	for kind, want := range map[string]string{
		"inbound": "48e3d868a1ca4d74ad514319b7d7e59568a6aa9e8bcba13414ba1c432f3d7666",
		"status":  "8de1bb2fbb0f1676510c1c3dad2f6db861eb58418e1a960b121333a1b6a8375c",
	} {
		r := loadFixture(t, "aws-sns", kind)
		var e snsEnvelope
		if err := json.Unmarshal(r.Body, &e); err != nil {
			t.Fatal(err)
		}
		if sum := sha256.Sum256(e.canonical()); hex.EncodeToString(sum[:]) != want {
			t.Errorf("%s: canonical SHA-256 = %x, want %s", kind, sum, want)
		}
		if _, err := c.Verify(r); err != nil {
			t.Errorf("%s: Verify: %v", kind, err)
		}
		// One character of Message flipped: no longer verifies.
		s := clone(r)
		s.Body = bytes.Replace(s.Body, []byte(`café`), []byte(`cafe`), 1)
		s.Body = bytes.Replace(s.Body, []byte(`TEXT_DELIVERED`), []byte(`TEXT_DELIVERES`), 1)
		if _, err := c.Verify(s); !errors.Is(err, switchboard.ErrBadSignature) {
			t.Errorf("%s with Message changed: Verify = %v", kind, err)
		}
	}
	if n := stub.calls.Load(); n != 1 {
		t.Errorf("certificate fetched %d times, want once (cached)", n)
	}
}

func TestSNSRejects(t *testing.T) {
	stub := newSNSStub(t)
	c := mustNew(t, snsCfg(stub))
	r := loadFixture(t, "aws-sns", "status")
	const certURL = "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-0000000000000000000000000000000.pem"
	tests := []struct {
		name, from, to, substr string
		now                    time.Time
	}{
		{"other topic", snsTopic, "arn:aws:sns:us-east-1:999999999999:sms-events", "topic_arns", time.Time{}},
		{"http cert URL", certURL, strings.Replace(certURL, "https", "http", 1), "SNS host", time.Time{}},
		{"foreign cert host", certURL, strings.Replace(certURL, "sns.us-east-1.amazonaws.com", "sns.us-east-1.amazonaws.com.evil.example", 1), "SNS host", time.Time{}},
		{"cert host with port", certURL, strings.Replace(certURL, ".com/", ".com:8443/", 1), "SNS host", time.Time{}},
		{"not .pem", certURL, strings.TrimSuffix(certURL, ".pem") + ".txt", "SNS host", time.Time{}},
		{"version 3", `"SignatureVersion" : "2"`, `"SignatureVersion" : "3"`, "SignatureVersion", time.Time{}},
		{"type", `"Type" : "Notification"`, `"Type" : "Other"`, "Type", time.Time{}},
		{"stale", "", "", "age", time.Unix(1736937065, 0).Add(time.Hour + time.Minute)},
		{"future", "", "", "age", time.Unix(1736937065, 0).Add(-6 * time.Minute)},
	}
	for _, tt := range tests {
		s := clone(r)
		if tt.from != "" {
			s.Body = bytes.Replace(s.Body, []byte(tt.from), []byte(tt.to), 1)
		}
		if !tt.now.IsZero() {
			s.Now = tt.now
		}
		before := stub.calls.Load()
		_, err := c.Verify(s)
		if !errors.Is(err, switchboard.ErrBadSignature) || !strings.Contains(err.Error(), tt.substr) {
			t.Errorf("%s: Verify = %v, want ErrBadSignature mentioning %q", tt.name, err, tt.substr)
		}
		if tt.now.IsZero() && stub.calls.Load() != before && before != 0 {
			t.Errorf("%s: fetched a certificate", tt.name)
		}
	}
	s := clone(r)
	s.Header.Set("X-Amz-Sns-Message-Type", "SubscriptionConfirmation")
	if _, err := c.Verify(s); !errors.Is(err, switchboard.ErrBadSignature) {
		t.Errorf("header type mismatch: %v", err)
	}
	// A certificate that cannot be fetched is a 503: SNS retries.
	down := newSNSStub(t)
	down.down = true
	if _, err := mustNew(t, snsCfg(down)).Verify(r); !errors.Is(err, switchboard.ErrUnavailable) {
		t.Errorf("cert host down: Verify = %v, want ErrUnavailable", err)
	}
	missing := newSNSStub(t)
	missing.certs = nil
	if _, err := mustNew(t, snsCfg(missing)).Verify(r); !errors.Is(err, switchboard.ErrUnavailable) {
		t.Errorf("cert 404: Verify = %v, want ErrUnavailable", err)
	}
	for _, bad := range []Config{{Carrier: "aws-sns"}, {Carrier: "aws-sns", TopicARNs: []string{"sms-events"}}} {
		if _, err := New(bad); err == nil {
			t.Errorf("New(%+v) = nil error", bad)
		}
	}
}

// snsSigner signs envelopes with a generated key whose certificate the
// stub serves.
type snsSigner struct {
	key     *rsa.PrivateKey
	certURL string
}

func newSNSSigner(t *testing.T, stub *snsStub) *snsSigner {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "sns test"}, NotBefore: time.Unix(0, 0), NotAfter: time.Unix(1<<33, 0)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	s := &snsSigner{key: key, certURL: "https://sns.eu-west-1.amazonaws.com/SimpleNotificationService-test.pem"}
	stub.certs[s.certURL] = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	return s
}

func (s *snsSigner) sign(t *testing.T, e *snsEnvelope, version string) []byte {
	e.SignatureVersion, e.SigningCertURL = version, s.certURL
	var sig []byte
	var err error
	if version == "1" {
		d := sha1.Sum(e.canonical())
		sig, err = rsa.SignPKCS1v15(rand.Reader, s.key, crypto.SHA1, d[:])
	} else {
		d := sha256.Sum256(e.canonical())
		sig, err = rsa.SignPKCS1v15(rand.Reader, s.key, crypto.SHA256, d[:])
	}
	if err != nil {
		t.Fatal(err)
	}
	e.Signature = base64.StdEncoding.EncodeToString(sig)
	b, _ := json.Marshal(e)
	return b
}

func TestSNSSubscription(t *testing.T) {
	stub := newSNSStub(t)
	signer := newSNSSigner(t, stub)
	cfg := snsCfg(stub)
	cfg.AutoConfirm = true
	c := mustNew(t, cfg)
	now := time.Unix(1736937000, 0)
	subURL := "https://sns.us-east-1.amazonaws.com/?Action=ConfirmSubscription&TopicArn=" + snsTopic + "&Token=2336412f37"
	token, msg := "2336412f37", "You have chosen to subscribe to the topic "+snsTopic
	e := &snsEnvelope{Type: "SubscriptionConfirmation", MessageID: "m1", Token: &token, TopicArn: snsTopic, Message: msg, SubscribeURL: &subURL, Timestamp: "2025-01-15T10:30:00.000Z"}
	r := &Request{Method: "POST", Body: signer.sign(t, e, "1"), Now: now, Header: http.Header{"X-Amz-Sns-Message-Type": {"SubscriptionConfirmation"}}}
	if _, err := c.Verify(r); err != nil {
		t.Fatalf("Verify (SignatureVersion 1): %v", err)
	}
	events, err := c.Parse(r)
	var sub *SNSSubscription
	if len(events) != 0 || !errors.As(err, &sub) || errors.Is(err, switchboard.ErrBadPayload) {
		t.Fatalf("Parse = %v, %v; want a *SNSSubscription", events, err)
	}
	if sub.URL != subURL || sub.TopicARN != snsTopic || !sub.Auto {
		t.Fatalf("subscription = %+v", sub)
	}
	if err := sub.Confirm(context.Background()); err != nil {
		t.Fatalf("Confirm: %v", err)
	}
	if last := stub.gets[len(stub.gets)-1]; last != subURL {
		t.Fatalf("confirmed with GET %s, want %s", last, subURL)
	}
	// The SubscribeURL is signed: changing it breaks the signature.
	other := strings.Replace(string(r.Body), "Token=2336412f37", "Token=forged", 1)
	if _, err := c.Verify(&Request{Method: "POST", Body: []byte(other), Now: now}); !errors.Is(err, switchboard.ErrBadSignature) {
		t.Fatalf("forged SubscribeURL: Verify = %v", err)
	}
	evil := &SNSSubscription{TopicARN: snsTopic, URL: "https://evil.example/?Action=ConfirmSubscription", client: &http.Client{Transport: stub}, host: SNSCertHost}
	if err := evil.Confirm(context.Background()); err == nil {
		t.Fatal("Confirm to a foreign host succeeded")
	}
	unsub := &snsEnvelope{Type: "UnsubscribeConfirmation", MessageID: "m2", Token: &token, TopicArn: snsTopic, Message: "unsubscribed", SubscribeURL: &subURL, Timestamp: "2025-01-15T10:30:00.000Z"}
	r = &Request{Method: "POST", Body: signer.sign(t, unsub, "2"), Now: now}
	if _, err := c.Verify(r); err != nil {
		t.Fatalf("Verify unsubscribe: %v", err)
	}
	if events, err := c.Parse(r); err != nil || len(events) != 0 {
		t.Fatalf("Parse unsubscribe = %v, %v", events, err)
	}
}

func TestSNSParse(t *testing.T) {
	stub := newSNSStub(t)
	signer := newSNSSigner(t, stub)
	c := mustNew(t, snsCfg(stub))
	subject := "hello"
	tests := []struct {
		eventType, status string
		err               bool
	}{
		{"TEXT_QUEUED", "queued", false},
		{"TEXT_PENDING", "sent", false},
		{"TEXT_SUCCESSFUL", "sent", false},
		{"MEDIA_DELIVERED", "delivered", false},
		{"TEXT_TTL_EXPIRED", "undelivered", true},
		{"TEXT_CARRIER_BLOCKED", "failed", true},
		{"MEDIA_FILE_SIZE_EXCEEDED", "failed", true},
		{"TEXT_UNKNOWN", "unknown", true},
		{"RCS_DELIVERED", "unknown", true},
	}
	for _, tt := range tests {
		msg := `{"eventType":"` + tt.eventType + `","eventTimestamp":1736937065456,"messageId":"m1","originationPhoneNumber":"+15555550199","destinationPhoneNumber":"+15555550100","messageStatus":"X","messageStatusDescription":"why","totalMessageParts":2}`
		e := &snsEnvelope{Type: "Notification", MessageID: "n1", TopicArn: snsTopic, Subject: &subject, Message: msg, Timestamp: "2025-01-15T10:31:05.789Z"}
		r := &Request{Method: "POST", Body: signer.sign(t, e, "2"), Now: time.Unix(1736937066, 0)}
		if _, err := c.Verify(r); err != nil {
			t.Fatalf("%s: Verify (with Subject): %v", tt.eventType, err)
		}
		events, err := c.Parse(r)
		if err != nil {
			t.Fatal(err)
		}
		d := events[0].Data
		if d.Status != tt.status || d.CarrierStatus != tt.eventType || (d.Error != nil) != tt.err || d.Segments != 2 || d.OccurredAt.UnixMilli() != 1736937065456 {
			t.Errorf("%s = %+v, want status %s, error %v", tt.eventType, d, tt.status, tt.err)
		}
	}
	e := &snsEnvelope{Type: "Notification", MessageID: "n2", TopicArn: snsTopic, Message: `"just a test publish"`, Timestamp: "2025-01-15T10:31:05.789Z"}
	if _, err := c.Parse(&Request{Body: signer.sign(t, e, "2")}); !errors.Is(err, switchboard.ErrBadPayload) {
		t.Errorf("other message: %v", err)
	}
}

func FuzzSNS(f *testing.F) {
	stub := &snsStub{}
	pemBytes, _ := os.ReadFile("testdata/aws-sns/test-signing-cert.pem")
	stub.certs = map[string][]byte{"https://sns.us-east-1.amazonaws.com/SimpleNotificationService-0000000000000000000000000000000.pem": pemBytes}
	fuzzCarrier(f, snsCfg(stub), "aws-sns", nil, true)
}

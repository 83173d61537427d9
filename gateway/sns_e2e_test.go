package gateway

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	switchboard "github.com/switchboard-gw/switchboard"
	"github.com/switchboard-gw/switchboard/gateway/carrier"
	"github.com/switchboard-gw/switchboard/gateway/webhook"
	"github.com/switchboard-gw/switchboard/policy"
	"github.com/switchboard-gw/switchboard/queue"
	"github.com/switchboard-gw/switchboard/queue/redistest"
)

const (
	snsE2ETopic = "arn:aws:sns:us-east-1:111122223333:sms-events"
	// snsE2EHost is a real SNS host name: the carrier's production host
	// check (carrier.SNSCertHost) is left as it is and accepts it.
	snsE2EHost = "sns.us-east-1.amazonaws.com"
)

// fakeSNS stands in for Amazon SNS at https://sns.us-east-1.amazonaws.com:
// a TLS server whose certificate names that host, serving the signing
// certificate of an RSA key generated here and answering
// ConfirmSubscription. Its client dials the fake whatever the host, so the
// carrier decides alone which URLs it fetches, and TLS still checks the
// name.
type fakeSNS struct {
	srv     *httptest.Server
	client  *http.Client
	key     *rsa.PrivateKey
	certURL string

	mu       sync.Mutex
	certGets int
	confirms []url.Values // query of each ConfirmSubscription GET
	others   []string     // any other request
}

func newFakeSNS(t *testing.T) *fakeSNS {
	t.Helper()
	f := &fakeSNS{}
	var err error
	if f.key, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	signing := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "sns.amazonaws.com"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour), KeyUsage: x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, signing, signing, &f.key.PublicKey, f.key)
	if err != nil {
		t.Fatal(err)
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	certPath := "/SimpleNotificationService-" + randomHex(t, 16) + ".pem"
	f.certURL = "https://" + snsE2EHost + certPath

	// The TLS identity of sns.us-east-1.amazonaws.com, self-signed.
	tlsKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tlsTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: snsE2EHost}, DNSNames: []string{snsE2EHost},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true, IsCA: true,
	}
	tlsDER, err := x509.CreateCertificate(rand.Reader, tlsTmpl, tlsTmpl, &tlsKey.PublicKey, tlsKey)
	if err != nil {
		t.Fatal(err)
	}

	f.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		defer f.mu.Unlock()
		switch {
		case r.Method == http.MethodGet && r.URL.Path == certPath && r.URL.RawQuery == "":
			f.certGets++
			_, _ = w.Write(certPEM)
		case r.Method == http.MethodGet && r.URL.Path == "/" && r.URL.Query().Get("Action") == "ConfirmSubscription":
			f.confirms = append(f.confirms, r.URL.Query())
			w.Header().Set("Content-Type", "text/xml")
			_, _ = io.WriteString(w, `<ConfirmSubscriptionResponse xmlns="http://sns.amazonaws.com/doc/2010-03-31/"><ConfirmSubscriptionResult><SubscriptionArn>`+
				snsE2ETopic+`:c9135db0-26c4-47ec-8998-413945fb5a96</SubscriptionArn></ConfirmSubscriptionResult></ConfirmSubscriptionResponse>`)
		default:
			f.others = append(f.others, r.Method+" "+r.Host+r.URL.RequestURI())
			http.NotFound(w, r)
		}
	}))
	f.srv.TLS = &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{tlsDER}, PrivateKey: tlsKey}}}
	f.srv.StartTLS()
	t.Cleanup(f.srv.Close)

	roots := x509.NewCertPool()
	roots.AddCert(f.srv.Certificate())
	addr := f.srv.Listener.Addr().String()
	tr := &http.Transport{
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, addr)
		},
		TLSClientConfig: &tls.Config{RootCAs: roots},
	}
	t.Cleanup(tr.CloseIdleConnections)
	f.client = &http.Client{Transport: tr, Timeout: 5 * time.Second}
	return f
}

func randomHex(t *testing.T, n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

func (f *fakeSNS) counts() (certGets int, confirms []url.Values, others []string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.certGets, slices.Clone(f.confirms), slices.Clone(f.others)
}

// snsMessage is an SNS HTTP(S) message envelope, in SNS's key order.
type snsMessage struct {
	Type             string `json:"Type"`
	MessageID        string `json:"MessageId"`
	Token            string `json:"Token,omitempty"`
	TopicArn         string `json:"TopicArn"`
	Message          string `json:"Message"`
	SubscribeURL     string `json:"SubscribeURL,omitempty"`
	Timestamp        string `json:"Timestamp"`
	SignatureVersion string `json:"SignatureVersion"`
	Signature        string `json:"Signature"`
	SigningCertURL   string `json:"SigningCertURL"`
	UnsubscribeURL   string `json:"UnsubscribeURL,omitempty"`
}

func (f *fakeSNS) message(t *testing.T, typ, message string) snsMessage {
	id := randomHex(t, 16)
	return snsMessage{
		Type: typ, MessageID: id[:8] + "-" + id[8:12] + "-" + id[12:16] + "-" + id[16:20] + "-" + id[20:],
		TopicArn: snsE2ETopic, Message: message, Timestamp: time.Now().UTC().Format("2006-01-02T15:04:05.000Z"),
		SignatureVersion: "2", SigningCertURL: f.certURL,
	}
}

// sign signs m as SNS does (SignatureVersion 2: SHA256withRSA over the
// canonical string) with key, and returns the body SNS would POST.
func (f *fakeSNS) sign(t *testing.T, m snsMessage, key *rsa.PrivateKey) []byte {
	t.Helper()
	m.Signature = ""
	unsigned, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	str, err := carrier.SNSStringToSign(unsigned)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(str)
	sig, err := rsa.SignPKCS1v15(rand.Reader, key, crypto.SHA256, sum[:])
	if err != nil {
		t.Fatal(err)
	}
	m.Signature = base64.StdEncoding.EncodeToString(sig)
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(m); err != nil {
		t.Fatal(err)
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n"))
}

// fixtureMessage is the Message (the SMS payload) of a shared AWS example.
func fixtureMessage(t *testing.T, kind string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("carrier", "testdata", "aws-sns", kind+".json"))
	if err != nil {
		t.Fatal(err)
	}
	var m snsMessage
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m.Message
}

// snsDelivery is one request a destination received.
type snsDelivery struct {
	header http.Header
	body   []byte
}

type snsDestination struct {
	*httptest.Server
	mu  sync.Mutex
	got []snsDelivery
}

func (d *snsDestination) received() []snsDelivery {
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.Clone(d.got)
}

// TestSNSEndToEnd posts AWS SNS messages, signed as SNS signs them, through
// the real gateway (Start: listeners, Redis, delivery workers) with the
// aws-sns carrier's certificate fetches and subscription confirmations
// going to a local TLS server standing in for sns.us-east-1.amazonaws.com.
func TestSNSEndToEnd(t *testing.T) {
	sns := newFakeSNS(t)
	prev := snsHTTPClient
	snsHTTPClient = sns.client
	t.Cleanup(func() { snsHTTPClient = prev }) // after the server stops (cleanups run last-in first-out)

	rs := redistest.Start(t)
	app := &snsDestination{}
	app.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		app.mu.Lock()
		app.got = append(app.got, snsDelivery{r.Header.Clone(), b})
		app.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(app.Close)
	logs := &syncWriter{}
	srv := startServer(t, fmt.Sprintf(`
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0"}
redis: {url: %q}
delivery: {allow_private_networks: true, timeout: 5s}
tenants:
  acme:
    sources:
      sns: {carrier: aws-sns, topic_arns: [%q], auto_confirm: true}
      sns-manual: {carrier: aws-sns, topic_arns: [%q], auto_confirm: false}
    destinations:
      app: {url: %q, secret: %s}
    routes:
      - to: [app]
`, rs.URL(), snsE2ETopic, snsE2ETopic, app.URL, destSecret), logs)

	ctx := context.Background()
	rdb := rs.Client(t)
	store := queue.New(rdb)
	// stored counts the events of acme in Redis (each has a history hash).
	stored := func() int {
		t.Helper()
		keys, err := rdb.Keys(ctx, "sb:{acme}:h:e:*").Result()
		if err != nil {
			t.Fatal(err)
		}
		return len(keys)
	}
	post := func(source string, body []byte) (int, string) {
		t.Helper()
		var m snsMessage
		if err := json.Unmarshal(body, &m); err != nil {
			t.Fatal(err)
		}
		req, err := http.NewRequest(http.MethodPost, "http://"+srv.IngressAddr+"/hooks/acme/"+source, bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "text/plain; charset=UTF-8")
		req.Header.Set("User-Agent", "Amazon Simple Notification Service Agent")
		req.Header.Set("X-Amz-Sns-Message-Type", m.Type)
		req.Header.Set("X-Amz-Sns-Message-Id", m.MessageID)
		req.Header.Set("X-Amz-Sns-Topic-Arn", m.TopicArn)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	// logged returns the log records with message msg (a prefix).
	logged := func(msg string) []map[string]any {
		var out []map[string]any
		for line := range strings.Lines(logs.String()) {
			var rec map[string]any
			if json.Unmarshal([]byte(line), &rec) == nil && strings.HasPrefix(fmt.Sprint(rec["msg"]), msg) {
				out = append(out, rec)
			}
		}
		return out
	}
	inbound, status := fixtureMessage(t, "inbound"), fixtureMessage(t, "status")

	t.Run("forged signature", func(t *testing.T) {
		forger, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			t.Fatal(err)
		}
		before := len(logged("callback refused"))
		code, answer := post("sns", sns.sign(t, sns.message(t, "Notification", inbound), forger))
		if code != http.StatusUnauthorized {
			t.Errorf("forged Signature answered %d %q, want 401", code, answer)
		}
		// A valid signature over a changed Message is forged too.
		body := sns.sign(t, sns.message(t, "Notification", status), sns.key)
		body = bytes.Replace(body, []byte(`TEXT_DELIVERED`), []byte(`TEXT_DELIVERES`), 1)
		if code, answer := post("sns", body); code != http.StatusUnauthorized {
			t.Errorf("Message changed after signing answered %d %q, want 401", code, answer)
		}
		if n := stored(); n != 0 {
			t.Errorf("%d events stored after forged messages, want 0", n)
		}
		refused := logged("callback refused")[before:]
		if len(refused) != 2 || !strings.Contains(fmt.Sprint(refused[0]["err"]), "signature does not verify") {
			t.Errorf("refusals logged: %v, want 2 saying the signature does not verify", refused)
		}
	})

	t.Run("certificate not on an SNS host", func(t *testing.T) {
		gets, _, _ := sns.counts()
		for _, certURL := range []string{
			"https://sns.us-east-1.amazonaws.com.evil.example/SimpleNotificationService-0.pem",
			"https://evil.example.com/SimpleNotificationService-0.pem",
			"https://127.0.0.1/SimpleNotificationService-0.pem",
			"https://" + sns.srv.Listener.Addr().String() + "/SimpleNotificationService-0.pem",
			"http://" + snsE2EHost + "/SimpleNotificationService-0.pem",
		} {
			m := sns.message(t, "Notification", inbound)
			m.SigningCertURL = certURL
			before := len(logged("callback refused"))
			// Signed with the real key: only the certificate's origin is wrong.
			if code, answer := post("sns", sns.sign(t, m, sns.key)); code != http.StatusUnauthorized {
				t.Errorf("SigningCertURL %s answered %d %q, want 401", certURL, code, answer)
			}
			if refused := logged("callback refused")[before:]; len(refused) != 1 || !strings.Contains(fmt.Sprint(refused[0]["err"]), "SNS host") {
				t.Errorf("SigningCertURL %s: refusals logged %v, want one saying it is not on an SNS host", certURL, refused)
			}
		}
		if n := stored(); n != 0 {
			t.Errorf("%d events stored, want 0", n)
		}
		if now, _, others := sns.counts(); now != gets || len(others) != 0 {
			t.Errorf("certificate fetches went from %d to %d, other requests %v: a foreign certificate URL must never be fetched", gets, now, others)
		}
	})

	t.Run("subscription auto-confirmed", func(t *testing.T) {
		token := randomHex(t, 64)
		m := sns.message(t, "SubscriptionConfirmation", "You have chosen to subscribe to the topic "+snsE2ETopic+".\nTo confirm the subscription, visit the SubscribeURL included in this message.")
		m.Token = token
		m.SubscribeURL = "https://" + snsE2EHost + "/?Action=ConfirmSubscription&TopicArn=" + snsE2ETopic + "&Token=" + token
		code, answer := post("sns", sns.sign(t, m, sns.key))
		if code != http.StatusOK {
			t.Fatalf("SubscriptionConfirmation answered %d %q, want 200", code, answer)
		}
		_, confirms, others := sns.counts()
		if len(confirms) != 1 || confirms[0].Get("Token") != token || confirms[0].Get("TopicArn") != snsE2ETopic || len(others) != 0 {
			t.Errorf("SNS received confirmations %v and other requests %v, want one GET of the SubscribeURL", confirms, others)
		}
		if recs := logged("SNS subscription confirmed"); len(recs) != 1 || recs[0]["topic_arn"] != snsE2ETopic || recs[0]["source"] != "sns" {
			t.Errorf("logged confirmations %v, want one for %s", recs, snsE2ETopic)
		}
		if n := stored(); n != 0 {
			t.Errorf("%d events stored for a SubscriptionConfirmation, want 0", n)
		}
	})

	t.Run("subscription with a SubscribeURL off SNS", func(t *testing.T) {
		m := sns.message(t, "SubscriptionConfirmation", "You have chosen to subscribe to the topic "+snsE2ETopic+".")
		m.Token = randomHex(t, 64)
		m.SubscribeURL = "https://evil.example.com/?Action=ConfirmSubscription&TopicArn=" + snsE2ETopic + "&Token=" + m.Token
		_, before, _ := sns.counts()
		if code, answer := post("sns", sns.sign(t, m, sns.key)); code != http.StatusBadRequest {
			t.Errorf("SubscriptionConfirmation to a foreign host answered %d %q, want 400 (no retry can make it good)", code, answer)
		}
		if _, after, others := sns.counts(); len(after) != len(before) || len(others) != 0 {
			t.Errorf("the gateway requested %v %v for a foreign SubscribeURL", after[len(before):], others)
		}
	})

	t.Run("subscription left to the operator", func(t *testing.T) {
		token := randomHex(t, 64)
		m := sns.message(t, "SubscriptionConfirmation", "You have chosen to subscribe to the topic "+snsE2ETopic+".")
		m.Token = token
		m.SubscribeURL = "https://" + snsE2EHost + "/?Action=ConfirmSubscription&TopicArn=" + snsE2ETopic + "&Token=" + token
		_, before, _ := sns.counts()
		code, answer := post("sns-manual", sns.sign(t, m, sns.key))
		if code != http.StatusOK {
			t.Fatalf("SubscriptionConfirmation answered %d %q, want 200", code, answer)
		}
		if _, after, _ := sns.counts(); len(after) != len(before) {
			t.Errorf("auto_confirm false: the gateway confirmed the subscription itself (%v)", after[len(before):])
		}
		recs := logged("SNS subscription awaits confirmation")
		if len(recs) != 1 {
			t.Fatalf("logged %v, want one line asking the operator to confirm", recs)
		}
		// The operator copies the URL from the log: it must be whole (the
		// account id in the topic ARN is not a phone number to mask).
		if recs[0]["subscribe_url"] != m.SubscribeURL || recs[0]["topic_arn"] != snsE2ETopic || recs[0]["source"] != "sns-manual" {
			t.Errorf("logged %v, want subscribe_url %s and topic_arn %s", recs[0], m.SubscribeURL, snsE2ETopic)
		}
		if n := stored(); n != 0 {
			t.Errorf("%d events stored for a SubscriptionConfirmation, want 0", n)
		}
	})

	t.Run("unsubscribe confirmation", func(t *testing.T) {
		m := sns.message(t, "UnsubscribeConfirmation", "You have unsubscribed from the topic.")
		m.Token = randomHex(t, 64)
		m.SubscribeURL = "https://" + snsE2EHost + "/?Action=ConfirmSubscription&TopicArn=" + snsE2ETopic + "&Token=" + m.Token
		if code, answer := post("sns", sns.sign(t, m, sns.key)); code != http.StatusOK {
			t.Errorf("UnsubscribeConfirmation answered %d %q, want 200", code, answer)
		}
		if n := stored(); n != 0 {
			t.Errorf("%d events stored for an UnsubscribeConfirmation, want 0", n)
		}
	})

	t.Run("notifications delivered", func(t *testing.T) {
		in := sns.message(t, "Notification", inbound)
		st := sns.message(t, "Notification", status)
		for _, m := range []snsMessage{in, st} {
			if code, answer := post("sns", sns.sign(t, m, sns.key)); code != http.StatusOK || answer != "" {
				t.Fatalf("Notification answered %d %q, want an empty 200", code, answer)
			}
		}
		waitUntil(t, "both events delivered", func() bool { return len(app.received()) >= 2 })
		secret, err := webhook.ParseSecret(destSecret)
		if err != nil {
			t.Fatal(err)
		}
		events := map[string]switchboard.Event{}
		for _, d := range app.received() {
			if err := webhook.Verify([][]byte{secret}, d.header, d.body, time.Now(), 0); err != nil {
				t.Errorf("delivery signature: %v", err)
			}
			var e switchboard.Event
			if err := json.Unmarshal(d.body, &e); err != nil {
				t.Fatalf("delivery is not a normalized event: %v: %s", err, d.body)
			}
			if e.Tenant != "acme" || e.Source != "sns" || e.Carrier != "aws-sns" || d.header.Get("webhook-id") != e.ID {
				t.Errorf("delivered %s, want tenant acme, source sns, carrier aws-sns, webhook-id %s", d.body, e.ID)
			}
			// Stored in Redis: the history holds the event as delivered.
			h, ok, err := store.History(ctx, "acme", e.ID)
			if err != nil || !ok {
				t.Errorf("event %s not in Redis: %v", e.ID, err)
			} else if !bytes.Equal(h.Event, d.body) || !slices.Equal(h.Destinations, []string{"app"}) {
				t.Errorf("Redis holds %s routed to %v, want %s routed to [app]", h.Event, h.Destinations, d.body)
			}
			events[e.Type] = e
		}
		r := events[switchboard.TypeReceived].Data
		if r.MessageID != "cae173d2-66b9-564c-8309-21f858e9fb84" || r.From != "+15555550100" || r.To != "+15555550199" ||
			r.Text != "Is 2+2=4? Yes & café" || r.OccurredAt == nil || r.OccurredAt.Format("2006-01-02T15:04:05.000Z") != in.Timestamp {
			t.Errorf("inbound event data = %+v", r)
		}
		s := events[switchboard.TypeStatus].Data
		if s.MessageID != "862a8790-60c0-4430-9b2b-658bdexample2" || s.From != "+15555550199" || s.To != "+15555550100" ||
			s.Status != switchboard.StatusDelivered || s.CarrierStatus != "TEXT_DELIVERED" || s.Segments != 1 || s.Error != nil {
			t.Errorf("status event data = %+v", s)
		}
		// Nothing else was stored or delivered along the way.
		if n := stored(); n != 2 {
			t.Errorf("%d events stored, want 2", n)
		}
		time.Sleep(100 * time.Millisecond)
		if n := len(app.received()); n != 2 {
			t.Errorf("%d deliveries, want 2", n)
		}
		// One certificate, fetched once per source over the whole test: each
		// source's carrier caches it (sns and sns-manual both verified).
		if gets, _, others := sns.counts(); gets != 2 || len(others) != 0 {
			t.Errorf("certificate fetched %d times (other requests %v), want twice (once per source)", gets, others)
		}
	})
}

// TestSNSClientNotConfigurable: the client aws-sns fetches with cannot be
// set from the configuration; without this package's test hook the
// carrier uses its own default client.
func TestSNSClientNotConfigurable(t *testing.T) {
	if snsHTTPClient != nil {
		t.Fatal("snsHTTPClient is set outside a test")
	}
	dir := t.TempDir()
	write := func(extra string) string {
		file := filepath.Join(dir, "sb.yaml")
		cfg := "redis: {url: \"redis://127.0.0.1:1/0\"}\ntenants:\n  acme:\n    sources:\n      sns:\n        carrier: aws-sns\n        topic_arns: [\"" +
			snsE2ETopic + "\"]\n" + extra + "    destinations:\n      app: {url: \"https://app.example.com/in\", secret: " + destSecret + "}\n    routes:\n      - to: [app]\n"
		if err := os.WriteFile(file, []byte(cfg), 0o600); err != nil {
			t.Fatal(err)
		}
		return file
	}
	cfg, err := policy.Load(write(""))
	if err != nil {
		t.Fatal(err)
	}
	cc, err := carrierConfig(cfg.Tenants["acme"].Sources["sns"])
	if err != nil || cc.HTTPClient != nil {
		t.Errorf("carrierConfig = HTTPClient %v, err %v; want the carrier's default client", cc.HTTPClient, err)
	}
	for _, key := range []string{"http_client", "signing_cert_host", "cert_host", "sns_cert_host"} {
		if _, err := policy.Load(write("        " + key + ": 127.0.0.1\n")); err == nil || !strings.Contains(err.Error(), "unknown key") {
			t.Errorf("a source with %s loaded (err %v), want unknown key", key, err)
		}
	}
}

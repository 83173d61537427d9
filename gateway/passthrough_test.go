package gateway

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/switchboard-gw/switchboard/gateway/carrier"
	"github.com/switchboard-gw/switchboard/gateway/webhook"
	"github.com/switchboard-gw/switchboard/queue"
	"github.com/switchboard-gw/switchboard/queue/redistest"
)

const (
	appToken  = "legacy-app-auth-token"
	twimlSays = `<?xml version="1.0" encoding="UTF-8"?><Response><Message>Thanks!</Message></Response>`
)

// legacyApp is a Twilio-era app behind a pass-through: it answers with
// respond and records what it got.
type legacyApp struct {
	*httptest.Server
	mu      sync.Mutex
	got     []*http.Request
	forms   []url.Values
	respond func(w http.ResponseWriter)
}

func newLegacyApp(t *testing.T, respond func(w http.ResponseWriter)) *legacyApp {
	a := &legacyApp{respond: respond}
	a.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = r.ParseForm()
		a.mu.Lock()
		a.got = append(a.got, r)
		a.forms = append(a.forms, r.PostForm)
		a.mu.Unlock()
		a.respond(w)
	}))
	t.Cleanup(a.Close)
	return a
}

func (a *legacyApp) requests() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.got)
}

// webhookID is the webhook-id of the i-th request the app got.
func (a *legacyApp) webhookID(i int) string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.got[i].Header.Get(webhook.HeaderID)
}

type passFixture struct {
	srv *httptest.Server
	rdb *redis.Client
	log *syncWriter
}

func mustPassGateway(t *testing.T, appURL string) *passFixture {
	t.Helper()
	rs := redistest.Start(t)
	cfgText := `
redis:
  url: ` + rs.URL() + `
delivery:
  allow_private_networks: true
  retry: {initial: 1m, max: 1h, max_attempts: 5}
tenants:
  acme:
    sources:
      tw:
        carrier: twilio
        secret: ` + token + `
        passthrough: {destination: legacy, timeout: 400ms}
    destinations:
      legacy:
        url: ` + appURL + `/sms
        secret: whsec_c3dpdGNoYm9hcmQtZGVtby1zZWNyZXQta2V5LTAwMDE=
        format: twilio
        twilio_auth_token: ` + appToken + `
      crm: {url: "https://crm.example.com/in", secret: whsec_c3dpdGNoYm9hcmQtZGVtby1zZWNyZXQta2V5LTAwMDE=}
    routes:
      - to: [crm]
`
	_, srv, rdb, logs := serveGateway(t, rs, cfgText)
	return &passFixture{srv: srv, rdb: rdb, log: logs}
}

func (f *passFixture) inbound(t *testing.T, sid string) (*http.Response, string, time.Duration) {
	t.Helper()
	req, err := carrier.Simulate(carrier.Config{Carrier: "twilio", Secret: token}, "inbound",
		carrier.SimMessage{MessageID: sid, Text: "hello"}, f.srv.URL+"/hooks/acme/tw", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, string(b), time.Since(start)
}

func (f *passFixture) count(t *testing.T, kind, key string) int64 {
	t.Helper()
	ctx := context.Background()
	var n int64
	var err error
	switch kind {
	case "stream":
		n, err = f.rdb.XLen(ctx, key).Result()
	case "zset":
		n, err = f.rdb.ZCard(ctx, key).Result()
	}
	if err != nil && err != redis.Nil {
		t.Fatal(err)
	}
	return n
}

// routedInHistory checks that the event's history lists legacy (the
// pass-through destination) as routed, beside crm: recover re-sends to it.
func (f *passFixture) routedInHistory(t *testing.T, eventID string) {
	t.Helper()
	h, ok, err := queue.New(f.rdb).History(context.Background(), "acme", eventID)
	if err != nil || !ok || !slices.Equal(h.Destinations, []string{"crm", "legacy"}) {
		t.Errorf("history of %s = %v (found %v, %v), want destinations [crm legacy]", eventID, h.Destinations, ok, err)
	}
}

func TestPassthroughAnswersWithTheApp(t *testing.T) {
	app := newLegacyApp(t, func(w http.ResponseWriter) {
		w.Header().Set("Content-Type", "text/xml")
		w.Header().Set("X-App", "legacy")
		_, _ = io.WriteString(w, twimlSays)
	})
	f := mustPassGateway(t, app.URL)
	resp, body, _ := f.inbound(t, "SM000000000000000000000000000000p1")
	if resp.StatusCode != http.StatusOK || body != twimlSays || resp.Header.Get("Content-Type") != "text/xml" || resp.Header.Get("X-App") != "legacy" {
		t.Fatalf("carrier got %d %q %v, want the app's TwiML as given", resp.StatusCode, body, resp.Header)
	}
	if app.requests() != 1 {
		t.Fatalf("app got %d requests, want 1", app.requests())
	}
	r, form := app.got[0], app.forms[0]
	// Twilio's form, signed over the app's URL with its own auth token:
	// the app verifies it with Twilio's library, unchanged.
	if form.Get("Body") != "hello" || form.Get("MessageSid") != "SM000000000000000000000000000000p1" ||
		r.Header.Get("X-Twilio-Signature") != carrier.TwilioSignature(appToken, app.URL+"/sms", form) {
		t.Errorf("app got form %v with signature %q", form, r.Header.Get("X-Twilio-Signature"))
	}
	if r.Header.Get("Switchboard-Attempt") != "1" || !strings.HasPrefix(r.Header.Get(webhook.HeaderID), "evt_") {
		t.Errorf("app got headers %v", r.Header)
	}
	// Stored and routed to crm; legacy had its copy, so none is queued.
	if n := f.count(t, "stream", "sb:{acme}:d:crm"); n != 1 {
		t.Errorf("crm stream = %d, want 1", n)
	}
	if n := f.count(t, "stream", "sb:{acme}:d:legacy") + f.count(t, "zset", "sb:{acme}:retry"); n != 0 {
		t.Errorf("legacy jobs queued = %d, want 0: it was delivered", n)
	}
	f.routedInHistory(t, app.webhookID(0))
	// The carrier's retry of the same callback is not forwarded again.
	resp, body, _ = f.inbound(t, "SM000000000000000000000000000000p1")
	if resp.StatusCode != http.StatusOK || !strings.HasSuffix(body, "<Response/>") || app.requests() != 1 {
		t.Errorf("retry: carrier got %d %q, app %d requests; want the usual ack and no second copy", resp.StatusCode, body, app.requests())
	}
}

func TestPassthroughFailureQueuesTheEvent(t *testing.T) {
	cases := []struct {
		name    string
		respond func(w http.ResponseWriter)
		retry   int64 // jobs in the retry set
		dead    int64 // dead letters
	}{
		{"5xx", func(w http.ResponseWriter) { w.WriteHeader(http.StatusInternalServerError) }, 1, 0},
		{"redirect", func(w http.ResponseWriter) { w.Header().Set("Location", "/x"); w.WriteHeader(http.StatusFound) }, 1, 0},
		{"gone", func(w http.ResponseWriter) { w.WriteHeader(http.StatusGone) }, 0, 1},
		{"timeout", func(w http.ResponseWriter) { time.Sleep(1500 * time.Millisecond); _, _ = io.WriteString(w, twimlSays) }, 1, 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			app := newLegacyApp(t, c.respond)
			f := mustPassGateway(t, app.URL)
			resp, body, took := f.inbound(t, "SM000000000000000000000000000000p2")
			if resp.StatusCode != http.StatusOK || !strings.HasSuffix(body, "<Response/>") {
				t.Fatalf("carrier got %d %q, want the usual acknowledgement", resp.StatusCode, body)
			}
			if took > time.Second {
				t.Errorf("carrier waited %v, want well within the 400ms timeout plus storing", took)
			}
			if n := f.count(t, "stream", "sb:{acme}:d:crm"); n != 1 {
				t.Errorf("crm stream = %d, want 1", n)
			}
			if n := f.count(t, "zset", "sb:{acme}:retry"); n != c.retry {
				t.Errorf("retry set = %d, want %d", n, c.retry)
			}
			if n := f.count(t, "stream", "sb:{acme}:dlq"); n != c.dead {
				t.Errorf("dead letters = %d, want %d", n, c.dead)
			}
			if n := f.count(t, "stream", "sb:{acme}:d:legacy"); n != 0 {
				t.Errorf("legacy stream = %d, want 0 (its attempt 1 is spent)", n)
			}
			f.routedInHistory(t, app.webhookID(0))
			if c.retry > 0 {
				m, _ := f.rdb.ZRangeWithScores(context.Background(), "sb:{acme}:retry", 0, 0).Result()
				if due := time.UnixMilli(int64(m[0].Score)); time.Until(due) < 25*time.Second {
					t.Errorf("retry due in %v, want after the backoff (30s–1m)", time.Until(due))
				}
				if !strings.Contains(m[0].Member.(string), "1:a1:1") {
					t.Errorf("retry member %q does not record attempt 1", m[0].Member)
				}
			}
		})
	}
}

// The app's answer is waited for at most until shortly before the carrier
// gives up, even with a timeout check accepts just below its deadline: the
// event must still be stored and the answer written in time.
func TestPassDeadline(t *testing.T) {
	start := time.Unix(1000, 0)
	for _, tc := range []struct {
		carrier string
		timeout time.Duration
		want    time.Duration
	}{
		{"telnyx", 1990 * time.Millisecond, 2*time.Second - passAnswerMargin},
		{"telnyx", time.Second, time.Second},
		{"twilio", 2 * time.Second, 2 * time.Second},
		{"twilio", 14990 * time.Millisecond, 15*time.Second - passAnswerMargin},
	} {
		if got := passDeadline(start, tc.timeout, tc.carrier).Sub(start); got != tc.want {
			t.Errorf("%s with timeout %v: waits %v, want %v", tc.carrier, tc.timeout, got, tc.want)
		}
	}
}

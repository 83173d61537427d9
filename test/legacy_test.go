package test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
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

	"github.com/switchboard-gw/switchboard/gateway/carrier"
	"github.com/switchboard-gw/switchboard/queue/redistest"
)

// Fronting legacy apps (issue 5): pull destinations, pass-through sources
// and ordered delivery, through the built binary and a real Redis.

const inboxToken = "inbox-pull-token-0123456789"

// pullEvent is one hand-out as an app sees it.
type pullEvent struct {
	Receipt string `json:"receipt"`
	Attempt int    `json:"attempt"`
	Event   struct {
		ID   string `json:"id"`
		Data struct {
			Text string `json:"text"`
		} `json:"data"`
	} `json:"event"`
}

// pullCall makes one pull API call with the inbox token.
func pullCall(t *testing.T, method, url string, body any) (int, []byte) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, url, rd)
	req.Header.Set("Authorization", "Bearer "+inboxToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

func pollInbox(t *testing.T, g *gatewayProc, query string) []pullEvent {
	t.Helper()
	code, body := pullCall(t, "GET", "http://"+g.Ingress+"/v1/pull/acme/inbox"+query, nil)
	if code != http.StatusOK {
		t.Fatalf("pull%s = %d %s", query, code, body)
	}
	var a struct {
		Events []pullEvent `json:"events"`
	}
	if err := json.Unmarshal(body, &a); err != nil {
		t.Fatalf("pull answer %s: %v", body, err)
	}
	return a.Events
}

func ackInbox(t *testing.T, g *gatewayProc, receipts ...string) (acked int, invalid []string) {
	t.Helper()
	code, body := pullCall(t, "POST", "http://"+g.Ingress+"/v1/pull/acme/inbox/ack", map[string]any{"receipts": receipts})
	var a struct {
		Acked   int      `json:"acked"`
		Invalid []string `json:"invalid"`
	}
	if code != http.StatusOK || json.Unmarshal(body, &a) != nil {
		t.Fatalf("ack = %d %s", code, body)
	}
	return a.Acked, a.Invalid
}

func TestLegacyPull(t *testing.T) {
	rs := redistest.Start(t)
	crm := newDestination(t, nil)
	g := startGateway(t, fmt.Sprintf(`
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0"}
redis: {url: %q}
delivery: {allow_private_networks: true}
tenants:
  acme:
    sources:
      tw: {carrier: twilio, secret: %s}
    destinations:
      inbox:
        type: pull
        token: %s
        visibility_timeout: 1s
        retry: {max_attempts: 2}
      crm: {url: %q, secret: %s}
    routes:
      - to: [inbox, crm]
`, rs.URL(), twilioToken, inboxToken, crm.URL, demoSecret))
	hook := g.hookURL("acme", "tw")
	base := "http://" + g.Ingress + "/v1/pull/acme/inbox"

	t.Run("wrong token, push destination, unknown destination: 401", func(t *testing.T) {
		for _, c := range []struct{ url, tok string }{
			{base, "wrong"}, {base, ""}, {"http://" + g.Ingress + "/v1/pull/acme/crm", inboxToken},
			{"http://" + g.Ingress + "/v1/pull/acme/nope", inboxToken}, {"http://" + g.Ingress + "/v1/pull/nobody/inbox", inboxToken},
		} {
			req, _ := http.NewRequest("GET", c.url, nil)
			if c.tok != "" {
				req.Header.Set("Authorization", "Bearer "+c.tok)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusUnauthorized {
				t.Errorf("GET %s with %q = %d, want 401", c.url, c.tok, resp.StatusCode)
			}
		}
	})

	var first pullEvent
	t.Run("a long-poll answers as soon as an event arrives", func(t *testing.T) {
		got := make(chan []pullEvent, 1)
		go func() { got <- pollInbox(t, g, "?wait=10s&max=100") }()
		time.Sleep(300 * time.Millisecond)
		sent := time.Now()
		if code := send(t, hook, "inbound", carrier.SimMessage{Text: "pull me", MessageID: "SM000000000000000000000000000000e1"}, nil); code != http.StatusOK {
			t.Fatalf("callback answered %d", code)
		}
		var evs []pullEvent
		select {
		case evs = <-got:
		case <-time.After(8 * time.Second):
			t.Fatal("the long-poll did not answer")
		}
		if time.Since(sent) > 2*time.Second {
			t.Errorf("long-poll answered %v after the event", time.Since(sent))
		}
		if len(evs) != 1 || evs[0].Attempt != 1 || evs[0].Event.Data.Text != "pull me" || !strings.HasPrefix(evs[0].Event.ID, "evt_") {
			t.Fatalf("hand-out = %+v", evs)
		}
		first = evs[0]
		// The push destination got the same event, unaffected.
		if e := event(t, crm.next(t, 10*time.Second)); e.ID != first.Event.ID {
			t.Errorf("crm got %s, want %s", e.ID, first.Event.ID)
		}
	})

	t.Run("unacknowledged: handed out again as attempt 2, then dead-lettered", func(t *testing.T) {
		if evs := pollInbox(t, g, ""); len(evs) != 0 {
			t.Fatalf("before the visibility timeout: %+v, want nothing", evs)
		}
		evs := pollInbox(t, g, "?wait=5s")
		if len(evs) != 1 || evs[0].Attempt != 2 || evs[0].Event.ID != first.Event.ID || evs[0].Receipt == first.Receipt {
			t.Fatalf("after the visibility timeout: %+v, want the same event, attempt 2, a new receipt", evs)
		}
		if acked, invalid := ackInbox(t, g, first.Receipt); acked != 0 || len(invalid) != 1 {
			t.Errorf("the first receipt acked %d, want 0: it died with the second hand-out", acked)
		}
		// max_attempts 2: the third hand-out would exceed it.
		time.Sleep(1200 * time.Millisecond)
		if evs := pollInbox(t, g, ""); len(evs) != 0 {
			t.Fatalf("third hand-out: %+v, want the event dead-lettered instead", evs)
		}
		out, errOut, code := runCLI(t, "dlq", "list", "--config", g.configFile, "--tenant", "acme", "--destination", "inbox")
		lines := jsonLines(t, out)
		if code != 0 || len(lines) != 1 || lines[0]["event_id"] != first.Event.ID || lines[0]["attempts"] != float64(2) {
			t.Fatalf("dlq list = %d %q %q", code, out, errOut)
		}
		if out, _, code := runCLI(t, "dlq", "replay", "--config", g.configFile, "--tenant", "acme", "--all"); code != 0 || !strings.Contains(out, "replayed 1") {
			t.Fatalf("dlq replay: %d %q", code, out)
		}
		evs = pollInbox(t, g, "?wait=5s")
		if len(evs) != 1 || evs[0].Attempt != 1 || evs[0].Event.ID != first.Event.ID {
			t.Fatalf("after replay: %+v, want the event afresh", evs)
		}
		if acked, _ := ackInbox(t, g, evs[0].Receipt); acked != 1 {
			t.Fatalf("ack of the replayed hand-out acked %d", acked)
		}
	})

	t.Run("acknowledged events are gone", func(t *testing.T) {
		for i, text := range []string{"a", "b", "c"} {
			send(t, hook, "inbound", carrier.SimMessage{Text: text, MessageID: fmt.Sprintf("SM000000000000000000000000000000f%d", i)}, nil)
		}
		var evs []pullEvent
		waitFor(t, 5*time.Second, "three events", func() bool {
			evs = append(evs, pollInbox(t, g, "?max=2")...)
			return len(evs) >= 3
		})
		var rs []string
		for i, e := range evs {
			if want := []string{"a", "b", "c"}[i]; e.Event.Data.Text != want {
				t.Errorf("hand-out %d = %q, want %q (stream order)", i, e.Event.Data.Text, want)
			}
			rs = append(rs, e.Receipt)
		}
		if acked, invalid := ackInbox(t, g, rs...); acked != 3 || len(invalid) != 0 {
			t.Fatalf("ack = %d, invalid %v", acked, invalid)
		}
		time.Sleep(1200 * time.Millisecond)
		if evs := pollInbox(t, g, ""); len(evs) != 0 {
			t.Errorf("after ack and the visibility timeout: %+v, want nothing", evs)
		}
	})

	t.Run("acknowledged and dead-lettered hand-outs count as deliveries", func(t *testing.T) {
		m := scrape(t, g)
		if n := m[`switchboard_deliveries_total{destination="inbox",outcome="delivered",tenant="acme"}`]; n < 3 {
			t.Errorf("inbox delivered = %v, want at least the 3 acknowledged", n)
		}
		if n := m[`switchboard_deliveries_total{destination="inbox",outcome="dead_letter",tenant="acme"}`]; n != 1 {
			t.Errorf("inbox dead_letter = %v, want 1", n)
		}
	})

	t.Run("SSE stream, resumable with Last-Event-ID", func(t *testing.T) {
		s := openStream(t, base+"/stream?max=5", "")
		send(t, hook, "inbound", carrier.SimMessage{Text: "s1", MessageID: "SM000000000000000000000000000000g1"}, nil)
		send(t, hook, "inbound", carrier.SimMessage{Text: "s2", MessageID: "SM000000000000000000000000000000g2"}, nil)
		id1, e1 := s.next(t)
		id2, e2 := s.next(t)
		if e1.Event.Data.Text != "s1" || e2.Event.Data.Text != "s2" || id1 != e1.Receipt || id2 != e2.Receipt {
			t.Fatalf("stream = %q %+v, %q %+v", id1, e1, id2, e2)
		}
		// The client processed s1 and lost the connection before s2 arrived.
		s.close()
		r := openStream(t, base+"/stream?max=5", id1)
		idR, eR := r.next(t)
		if eR.Event.Data.Text != "s2" || eR.Attempt != 2 || idR == id2 {
			t.Fatalf("resumed with %q %+v, want s2 again at once (attempt 2, new receipt)", idR, eR)
		}
		if acked, invalid := ackInbox(t, g, id1, idR, id2); acked != 2 || len(invalid) != 1 || invalid[0] != id2 {
			t.Errorf("ack = %d, invalid %v; want s1 and the new s2 acked, the old s2 receipt invalid", acked, invalid)
		}
		r.close()
	})

	t.Run("SIGTERM ends waiting long-polls", func(t *testing.T) {
		done := make(chan struct{})
		go func() {
			defer close(done)
			req, _ := http.NewRequest("GET", base+"?wait=30s", nil)
			req.Header.Set("Authorization", "Bearer "+inboxToken)
			if resp, err := http.DefaultClient.Do(req); err == nil {
				resp.Body.Close()
			}
		}()
		time.Sleep(200 * time.Millisecond)
		err, took := g.stop()
		if err != nil || took > 5*time.Second {
			t.Errorf("stop = %v after %v, want a clean exit without waiting out the poll", err, took)
		}
		<-done
	})
}

// sseStream reads an SSE response.
type sseStream struct {
	resp *http.Response
	msgs chan [2]string
}

func openStream(t *testing.T, url, lastID string) *sseStream {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	req.Header.Set("Authorization", "Bearer "+inboxToken)
	if lastID != "" {
		req.Header.Set("Last-Event-ID", lastID)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		t.Fatalf("stream = %d %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	s := &sseStream{resp: resp, msgs: make(chan [2]string, 100)}
	t.Cleanup(s.close)
	go func() {
		defer close(s.msgs)
		sc := bufio.NewScanner(resp.Body)
		var id, data string
		for sc.Scan() {
			switch line := sc.Text(); {
			case strings.HasPrefix(line, "id: "):
				id = line[4:]
			case strings.HasPrefix(line, "data: "):
				data = line[6:]
			case line == "" && data != "":
				s.msgs <- [2]string{id, data}
				id, data = "", ""
			}
		}
	}()
	return s
}

func (s *sseStream) close() { s.resp.Body.Close() }

func (s *sseStream) next(t *testing.T) (string, pullEvent) {
	t.Helper()
	select {
	case m, ok := <-s.msgs:
		if !ok {
			t.Fatal("the stream ended")
		}
		var e pullEvent
		if err := json.Unmarshal([]byte(m[1]), &e); err != nil {
			t.Fatalf("stream data %q: %v", m[1], err)
		}
		return m[0], e
	case <-time.After(10 * time.Second):
		t.Fatal("no stream message within 10s")
	}
	return "", pullEvent{}
}

// legacyTwilioApp is an app written for Twilio: it answers inbound SMS with
// TwiML, verifying X-Twilio-Signature with its own auth token. behave
// decides per request (by the text and Switchboard-Attempt) how it answers.
type legacyTwilioApp struct {
	*httptest.Server
	mu     sync.Mutex
	got    []url.Values
	hdrs   []http.Header
	recv   chan url.Values
	behave func(text string, attempt string) (status int, delay time.Duration)
}

const legacyAuthToken = "legacy-twilio-auth-token"

const twimlReply = `<?xml version="1.0" encoding="UTF-8"?><Response><Message>Got it: %s</Message></Response>`

func newLegacyTwilioApp(t *testing.T, behave func(text, attempt string) (int, time.Duration)) *legacyTwilioApp {
	a := &legacyTwilioApp{recv: make(chan url.Values, 100), behave: behave}
	a.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = r.ParseForm()
		if r.Header.Get("X-Twilio-Signature") != carrier.TwilioSignature(legacyAuthToken, a.URL+"/sms", r.PostForm) {
			http.Error(w, "bad signature", http.StatusForbidden)
			return
		}
		a.mu.Lock()
		a.got = append(a.got, r.PostForm)
		a.hdrs = append(a.hdrs, r.Header.Clone())
		a.mu.Unlock()
		status, delay := a.behave(r.PostForm.Get("Body"), r.Header.Get("Switchboard-Attempt"))
		time.Sleep(delay)
		a.recv <- r.PostForm
		if status != http.StatusOK {
			w.WriteHeader(status)
			return
		}
		w.Header().Set("Content-Type", "text/xml")
		fmt.Fprintf(w, twimlReply, r.PostForm.Get("Body"))
	}))
	t.Cleanup(a.Close)
	return a
}

func (a *legacyTwilioApp) received() (bodies []string, attempts []string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for i, f := range a.got {
		bodies = append(bodies, f.Get("Body"))
		attempts = append(attempts, a.hdrs[i].Get("Switchboard-Attempt"))
	}
	return bodies, attempts
}

// sendTwilio posts a signed Twilio inbound callback and returns the answer.
func sendTwilio(t *testing.T, hook, text, sid string) (int, string, time.Duration) {
	t.Helper()
	req, err := carrier.Simulate(carrier.Config{Carrier: "twilio", Secret: twilioToken}, "inbound",
		carrier.SimMessage{Text: text, MessageID: sid}, hook, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), time.Since(start)
}

func passthroughConfig(redisURL, appURL, crmURL, breaker string) string {
	return fmt.Sprintf(`
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0"}
redis: {url: %q}
delivery:
  allow_private_networks: true
  retry: {initial: 200ms, max: 400ms, max_attempts: 4}
tenants:
  acme:
    sources:
      tw:
        carrier: twilio
        secret: %s
        passthrough: {destination: legacy, timeout: 1s}
    destinations:
      legacy:
        url: %s/sms
        secret: %s
        format: twilio
        twilio_auth_token: %s
        breaker: %s
      crm: {url: %q, secret: %s}
    routes:
      - to: [crm]
`, redisURL, twilioToken, appURL, demoSecret, legacyAuthToken, breaker, crmURL, demoSecret)
}

func TestLegacyPassthrough(t *testing.T) {
	rs := redistest.Start(t)
	app := newLegacyTwilioApp(t, func(text, attempt string) (int, time.Duration) {
		switch {
		case text == "fail" && attempt == "1":
			return http.StatusInternalServerError, 0
		case text == "slow" && attempt == "1":
			return http.StatusOK, 3 * time.Second
		}
		return http.StatusOK, 0
	})
	crm := newDestination(t, nil)
	g := startGateway(t, passthroughConfig(rs.URL(), app.URL, crm.URL, "{min_requests: 100}"))
	hook := g.hookURL("acme", "tw")

	t.Run("the app's TwiML goes back to the carrier", func(t *testing.T) {
		code, body, _ := sendTwilio(t, hook, "hello", "SM000000000000000000000000000000h1")
		if code != http.StatusOK || body != fmt.Sprintf(twimlReply, "hello") {
			t.Fatalf("carrier got %d %q, want the app's TwiML", code, body)
		}
		if e := event(t, crm.next(t, 10*time.Second)); e.Data.Text != "hello" {
			t.Errorf("crm got %q: the event is still routed as usual", e.Data.Text)
		}
		// A carrier retry of the same callback is not forwarded again.
		code, body, _ = sendTwilio(t, hook, "hello", "SM000000000000000000000000000000h1")
		if code != http.StatusOK || strings.Contains(body, "Got it") {
			t.Errorf("carrier retry got %d %q, want the usual acknowledgement", code, body)
		}
	})

	t.Run("a failing app: usual ack, then attempt 2 from the queue", func(t *testing.T) {
		code, body, took := sendTwilio(t, hook, "fail", "SM000000000000000000000000000000h2")
		if code != http.StatusOK || strings.Contains(body, "Got it") || !strings.Contains(body, "<Response") {
			t.Fatalf("carrier got %d %q, want the usual acknowledgement", code, body)
		}
		if took > time.Second {
			t.Errorf("carrier waited %v", took)
		}
		waitFor(t, 10*time.Second, "attempt 2 from the queue", func() bool {
			bodies, attempts := app.received()
			return len(bodies) >= 3 && bodies[2] == "fail" && attempts[2] == "2"
		})
	})

	t.Run("a slow app: usual ack before the timeout, then attempt 2", func(t *testing.T) {
		code, body, took := sendTwilio(t, hook, "slow", "SM000000000000000000000000000000h3")
		if code != http.StatusOK || strings.Contains(body, "Got it") {
			t.Fatalf("carrier got %d %q, want the usual acknowledgement", code, body)
		}
		if took < 900*time.Millisecond || took > 1800*time.Millisecond {
			t.Errorf("carrier waited %v, want about the 1s pass-through timeout", took)
		}
		waitFor(t, 10*time.Second, "attempt 2 of the slow one", func() bool {
			bodies, attempts := app.received()
			n := len(bodies)
			return n >= 5 && bodies[n-1] == "slow" && attempts[n-1] == "2"
		})
	})

	// Every event reached the app exactly once delivered: hello (1),
	// fail (1 failed, 2), slow (1 timed out, 2).
	time.Sleep(500 * time.Millisecond)
	bodies, attempts := app.received()
	want := "hello/1 fail/1 fail/2 slow/1 slow/2"
	var got []string
	for i := range bodies {
		got = append(got, bodies[i]+"/"+attempts[i])
	}
	if strings.Join(got, " ") != want {
		t.Errorf("app received %v, want %s", got, want)
	}
}

// histAttempt and histEvent are an event's history as the admin API gives it.
type histAttempt struct {
	Destination string `json:"destination"`
	Attempt     int    `json:"attempt"`
	StatusCode  int    `json:"status_code"`
	Outcome     string `json:"outcome"`
}

type histEvent struct {
	ID           string        `json:"id"`
	Destinations []string      `json:"destinations"`
	Attempts     []histAttempt `json:"attempts"`
}

func TestLegacyPassthroughBreakerOpen(t *testing.T) {
	rs := redistest.Start(t)
	var mu sync.Mutex
	up := false
	app := newLegacyTwilioApp(t, func(text, attempt string) (int, time.Duration) {
		mu.Lock()
		defer mu.Unlock()
		if up {
			return http.StatusOK, 0
		}
		return http.StatusBadGateway, 0
	})
	crm := newDestination(t, nil)
	cfg := passthroughConfig(rs.URL(), app.URL, crm.URL, "{min_requests: 2, failure_ratio: 1, open_for: 1500ms}")
	cfg = strings.Replace(cfg, `admin_listen: "127.0.0.1:0"}`, `admin_listen: "127.0.0.1:0", admin_token: `+operateRootToken+`}`, 1)
	g := startGateway(t, cfg)
	hook := g.hookURL("acme", "tw")
	// Two failed pass-throughs open the breaker (their retries wait 200ms+,
	// by when it is open, so they wait too).
	for i := range 2 {
		if code, _, _ := sendTwilio(t, hook, fmt.Sprintf("down %d", i), fmt.Sprintf("SM000000000000000000000000000000i%d", i)); code != http.StatusOK {
			t.Fatalf("callback answered %d", code)
		}
	}
	mu.Lock()
	up = true
	mu.Unlock()
	before, _ := app.received()
	code, body, took := sendTwilio(t, hook, "while open", "SM000000000000000000000000000000i9")
	if code != http.StatusOK || strings.Contains(body, "Got it") || took > 500*time.Millisecond {
		t.Fatalf("with the breaker open the carrier got %d %q after %v, want the usual ack at once", code, body, took)
	}
	if after, _ := app.received(); len(after) != len(before) {
		t.Fatalf("the app was called while its breaker was open: %v", after)
	}
	// Once the breaker lets probes through, everything arrives as attempt
	// 2: the failed ones, and the one sent while open, whose attempt 1 the
	// open breaker spent (DESIGN).
	waitFor(t, 10*time.Second, "every event at the app", func() bool {
		bodies, _ := app.received()
		return len(bodies) >= 5
	})
	bodies, attempts := app.received()
	seen := map[string]string{}
	for i := range bodies {
		seen[bodies[i]] += attempts[i]
	}
	if seen["while open"] != "2" || seen["down 0"] != "12" || seen["down 1"] != "12" {
		t.Errorf("app received %v (attempts per text), want while open: 2, down 0/1: 1 then 2", seen)
	}
	// Its history lists the attempt 1 the open breaker spent.
	var found struct {
		Events []histEvent `json:"events"`
	}
	waitFor(t, 10*time.Second, "the history of the event sent while open", func() bool {
		adminGet(t, g, "/admin/v1/tenants/acme/events?message_id=SM000000000000000000000000000000i9", &found)
		return len(found.Events) == 1 && len(found.Events[0].Attempts) >= 3 // crm 1, legacy 1 and 2
	})
	var legacy []string
	for _, a := range found.Events[0].Attempts {
		if a.Destination == "legacy" {
			legacy = append(legacy, fmt.Sprintf("%d:%s", a.Attempt, a.Outcome))
		}
	}
	if strings.Join(legacy, " ") != "1:retry 2:delivered" {
		t.Errorf("legacy's attempts in the history = %v, want 1:retry 2:delivered", legacy)
	}
}

// TestLegacyPassthroughHistory: an event passed through is in the history
// with the pass-through destination among its routed destinations and its
// attempt 1 — also when no route took it — and recovering that destination
// re-sends it with its original webhook-id.
func TestLegacyPassthroughHistory(t *testing.T) {
	rs := redistest.Start(t)
	app := newLegacyTwilioApp(t, func(text, attempt string) (int, time.Duration) { return http.StatusOK, 0 })
	crm := newDestination(t, nil)
	g := startGateway(t, fmt.Sprintf(`
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0", admin_token: %s}
redis: {url: %q}
delivery: {allow_private_networks: true}
tenants:
  acme:
    sources:
      tw:
        carrier: twilio
        secret: %s
        passthrough: {destination: legacy, timeout: 1s}
    destinations:
      legacy:
        url: %s/sms
        secret: %s
        format: twilio
        twilio_auth_token: %s
      crm: {url: %q, secret: %s}
    routes:
      - match: {text: "^crm"}
        to: [crm]
`, operateRootToken, rs.URL(), twilioToken, app.URL, demoSecret, legacyAuthToken, crm.URL, demoSecret))
	hook := g.hookURL("acme", "tw")
	since := time.Now().Add(-time.Second)
	cases := []struct{ text, sid, routed string }{
		{"crm too", "SM000000000000000000000000000000m1", "crm legacy"},
		{"only the app", "SM000000000000000000000000000000m2", "legacy"}, // no route: pass-through only
	}
	for _, c := range cases {
		if code, body, _ := sendTwilio(t, hook, c.text, c.sid); code != http.StatusOK || body != fmt.Sprintf(twimlReply, c.text) {
			t.Fatalf("carrier got %d %q, want the app's TwiML", code, body)
		}
	}
	if e := event(t, crm.next(t, 10*time.Second)); e.Data.Text != "crm too" {
		t.Fatalf("crm got %q", e.Data.Text)
	}

	var ids []string
	for _, c := range cases {
		var found struct {
			Events []histEvent `json:"events"`
		}
		waitFor(t, 10*time.Second, "the pass-through attempt in the history of "+c.text, func() bool {
			adminGet(t, g, "/admin/v1/tenants/acme/events?message_id="+c.sid, &found)
			return len(found.Events) == 1 && slices.ContainsFunc(found.Events[0].Attempts,
				func(a histAttempt) bool { return a.Destination == "legacy" })
		})
		var ev histEvent
		adminGet(t, g, "/admin/v1/tenants/acme/events/"+found.Events[0].ID, &ev)
		if strings.Join(ev.Destinations, " ") != c.routed {
			t.Errorf("%s: destinations = %v, want %s", c.text, ev.Destinations, c.routed)
		}
		for _, a := range ev.Attempts {
			if a.Destination == "legacy" && (a.Attempt != 1 || a.StatusCode != 200 || a.Outcome != "delivered") {
				t.Errorf("%s: legacy attempt = %+v, want attempt 1, 200, delivered", c.text, a)
			}
		}
		ids = append(ids, ev.ID)
	}

	// The app lost its data: recovering legacy re-sends both, from the
	// queue, with their original webhook-ids and a fresh attempt budget.
	b, _ := json.Marshal(map[string]string{"destination": "legacy", "since": since.Format(time.RFC3339Nano)})
	req, _ := http.NewRequest(http.MethodPost, "http://"+g.Admin+"/admin/v1/tenants/acme/recover", bytes.NewReader(b))
	req.Header.Set("Authorization", "Bearer "+operateRootToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	answer, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || strings.TrimSpace(string(answer)) != `{"replayed":2}` {
		t.Fatalf("recover legacy = %d %s, want 2 replayed", resp.StatusCode, answer)
	}
	waitFor(t, 10*time.Second, "the recovered events at the app", func() bool {
		bodies, _ := app.received()
		return len(bodies) == 4
	})
	app.mu.Lock()
	var again []string
	for i, f := range app.got[2:] {
		again = append(again, f.Get("Body")+"/"+app.hdrs[2+i].Get("Switchboard-Attempt")+"/"+app.hdrs[2+i].Get("webhook-id"))
	}
	app.mu.Unlock()
	slices.Sort(again)
	want := []string{"crm too/1/" + ids[0], "only the app/1/" + ids[1]}
	if !slices.Equal(again, want) {
		t.Errorf("recovered deliveries = %v, want %v", again, want)
	}
}

func TestLegacyCheckRejectsSlowPassthrough(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "sb.yaml")
	cfg := `
tenants:
  acme:
    sources:
      tx:
        carrier: telnyx
        public_key: "11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo="
        passthrough: {destination: app, timeout: 2s}
    destinations:
      app: {url: "https://app.example.com/", secret: ` + demoSecret + `}
      inbox: {type: pull, url: "https://x.example.com/"}
`
	if err := os.WriteFile(file, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	_, errOut, code := runCLI(t, "check", "--config", file)
	if code != 1 {
		t.Fatalf("check exit %d, want 1: %s", code, errOut)
	}
	for _, want := range []string{
		"tenants.acme.sources.tx.passthrough.timeout: 2s is not below telnyx's own deadline of 2s",
		"tenants.acme.destinations.inbox.token: is required for type pull",
		"tenants.acme.destinations.inbox.url: is not used by type pull",
	} {
		if !strings.Contains(errOut, want) {
			t.Errorf("check output lacks %q:\n%s", want, errOut)
		}
	}
}

func TestLegacyOrdered(t *testing.T) {
	rs := redistest.Start(t)
	var mu sync.Mutex
	failed := map[string]bool{}
	app := newDestination(t, func(n int, d delivery) int {
		var e struct {
			Data struct{ Text string } `json:"data"`
		}
		_ = json.Unmarshal(d.Body, &e)
		mu.Lock()
		defer mu.Unlock()
		if e.Data.Text == "a1" && !failed["a1"] {
			failed["a1"] = true
			return http.StatusServiceUnavailable
		}
		return http.StatusOK
	})
	g := startGateway(t, fmt.Sprintf(`
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0"}
redis: {url: %q}
delivery:
  allow_private_networks: true
  retry: {initial: 300ms, max: 300ms, max_attempts: 5}
tenants:
  acme:
    sources:
      tw: {carrier: twilio, secret: %s}
    destinations:
      app:
        url: %q
        secret: %s
        order_key: conversation
        drop_stale_status: true
        max_in_flight: 4
    routes:
      - to: [app]
`, rs.URL(), twilioToken, app.URL, demoSecret))
	hook := g.hookURL("acme", "tw")
	const us, alice, bob = "+15555550199", "+15555550101", "+15555550102"

	// what the app received, "<text or status>/<attempt>", per conversation.
	got := func(n int) (all []string, a []string, b []string) {
		t.Helper()
		for range n {
			dv := app.next(t, 10*time.Second)
			e := event(t, dv)
			s := e.Data.Text
			if s == "" {
				s = e.Data.Status
			}
			s += "/" + dv.Header.Get("Switchboard-Attempt")
			all = append(all, s)
			if e.Data.From == alice || e.Data.To == alice {
				a = append(a, s)
			} else {
				b = append(b, s)
			}
		}
		return
	}

	t.Run("FIFO per conversation; a failure is retried in place", func(t *testing.T) {
		for i, m := range []carrier.SimMessage{
			{From: alice, To: us, Text: "a1"}, {From: bob, To: us, Text: "b1"}, {From: alice, To: us, Text: "a2"},
			{From: bob, To: us, Text: "b2"}, {From: alice, To: us, Text: "a3"},
		} {
			m.MessageID = fmt.Sprintf("SM000000000000000000000000000000j%d", i)
			if code := send(t, hook, "inbound", m, nil); code != http.StatusOK {
				t.Fatalf("callback answered %d", code)
			}
		}
		all, a, b := got(6)
		if strings.Join(a, " ") != "a1/1 a1/2 a2/1 a3/1" || strings.Join(b, " ") != "b1/1 b2/1" {
			t.Fatalf("alice's conversation got %v, bob's %v; want each in order, a1 retried in place", a, b)
		}
		// Bob's conversation did not wait for alice's retry.
		if idx := strings.Index(strings.Join(all, " "), "b2/1"); idx > strings.Index(strings.Join(all, " "), "a1/2") {
			t.Errorf("arrival order %v: b2 waited for a1's retry", all)
		}
	})

	t.Run("a status that goes backwards is not delivered", func(t *testing.T) {
		const staleSeries = `switchboard_stale_status_dropped_total{destination="app",tenant="acme"}`
		if v, ok := scrape(t, g)[staleSeries]; !ok || v != 0 {
			t.Fatalf("before any stale status: %s = %v (exposed %v), want 0", staleSeries, v, ok)
		}
		st := func(status string) {
			t.Helper()
			m := carrier.SimMessage{From: us, To: alice, Status: status, MessageID: "SM000000000000000000000000000000k1"}
			if code := send(t, hook, "status", m, nil); code != http.StatusOK {
				t.Fatalf("status callback answered %d", code)
			}
		}
		st("delivered")
		if all, _, _ := got(1); all[0] != "delivered/1" {
			t.Fatalf("got %v", all)
		}
		st("sent") // late: the carrier sent it before delivered
		// A marker in the same conversation comes after the stale status
		// was decided on (FIFO), so if it was delivered it is seen first.
		send(t, hook, "inbound", carrier.SimMessage{From: alice, To: us, Text: "marker", MessageID: "SM000000000000000000000000000000k2"}, nil)
		if all, _, _ := got(1); all[0] != "marker/1" {
			t.Fatalf("got %v, want the marker: the stale sent status must not be delivered", all)
		}
		waitFor(t, 5*time.Second, "the stale status to be logged", func() bool {
			return strings.Contains(g.log.String(), "stale status dropped")
		})
		// Counted before it was logged (one Lua script drops and counts it).
		if v := scrape(t, g)[staleSeries]; v != 1 {
			t.Errorf("%s = %v after one stale status, want 1", staleSeries, v)
		}
	})
}

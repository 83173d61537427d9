package gateway

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/switchboard-gw/switchboard/gateway/carrier"
	"github.com/switchboard-gw/switchboard/queue"
	"github.com/switchboard-gw/switchboard/queue/redistest"
)

const pullToken = "pull-token-0123456789abcdef"

type pullFixture struct {
	gw  *Gateway
	srv *httptest.Server
	log *syncWriter
}

// mustPullGateway serves a gateway whose tenant acme routes every event to
// the pull destination inbox (visibility timeout vis, 3 attempts) and to the
// push destination app.
func mustPullGateway(t *testing.T, vis string) *pullFixture {
	t.Helper()
	rs := redistest.Start(t)
	cfgText := `
redis:
  url: ` + rs.URL() + `
tenants:
  acme:
    sources:
      tw: {carrier: twilio, secret: ` + token + `}
    destinations:
      inbox: {type: pull, token: ` + pullToken + `, visibility_timeout: ` + vis + `, retry: {max_attempts: 3}}
      app: {url: "https://app.example.com/in", secret: whsec_c3dpdGNoYm9hcmQtZGVtby1zZWNyZXQta2V5LTAwMDE=}
    routes:
      - to: [inbox, app]
  globex:
    destinations:
      inbox: {type: pull, token: globex-token-0123456789}
`
	cfg := loadConfig(t, cfgText)
	logs := &syncWriter{}
	g, err := New(cfg, queue.New(rs.Client(t)), slog.New(slog.NewJSONHandler(logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(g.Handler())
	t.Cleanup(srv.Close)
	return &pullFixture{gw: g, srv: srv, log: logs}
}

func (f *pullFixture) inbound(t *testing.T, text string) {
	t.Helper()
	sendSimulated(t, carrier.Config{Carrier: "twilio", Secret: token}, "inbound", carrier.SimMessage{Text: text}, f.srv.URL+"/hooks/acme/tw")
}

type pullAnswer struct {
	Events []struct {
		Receipt string `json:"receipt"`
		Attempt int    `json:"attempt"`
		Event   struct {
			ID   string `json:"id"`
			Data struct {
				Text string `json:"text"`
			} `json:"data"`
		} `json:"event"`
	} `json:"events"`
}

func (f *pullFixture) do(t *testing.T, method, path, tok string, body any) (int, []byte, http.Header) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, f.srv.URL+path, rd)
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b, resp.Header
}

func (f *pullFixture) poll(t *testing.T, query string) pullAnswer {
	t.Helper()
	code, body, _ := f.do(t, "GET", "/v1/pull/acme/inbox"+query, pullToken, nil)
	if code != http.StatusOK {
		t.Fatalf("poll%s = %d %s", query, code, body)
	}
	var a pullAnswer
	if err := json.Unmarshal(body, &a); err != nil || a.Events == nil {
		t.Fatalf("poll answer %s: %v (want an events list, even empty)", body, err)
	}
	return a
}

func TestPullRefusesAlike(t *testing.T) {
	f := mustPullGateway(t, "30s")
	cases := []struct{ path, tok string }{
		{"/v1/pull/acme/inbox", ""},
		{"/v1/pull/acme/inbox", "wrong"},
		{"/v1/pull/acme/inbox", pullToken + "x"},
		{"/v1/pull/acme/app", pullToken},         // a push destination
		{"/v1/pull/acme/nope", pullToken},        // no such destination
		{"/v1/pull/nobody/inbox", pullToken},     // no such tenant
		{"/v1/pull/globex/inbox", pullToken},     // another destination's token
		{"/v1/pull/acme/inbox/stream", "wrong"},  // the stream too
		{"/v1/pull/acme/inbox?max=9999", "nope"}, // auth before parameters
	}
	var first []byte
	for _, c := range cases {
		code, body, hdr := f.do(t, "GET", c.path, c.tok, nil)
		if code != http.StatusUnauthorized || !strings.HasPrefix(hdr.Get("WWW-Authenticate"), "Bearer") {
			t.Errorf("GET %s with %q = %d, want 401 with WWW-Authenticate", c.path, c.tok, code)
		}
		if first == nil {
			first = body
		} else if !bytes.Equal(body, first) {
			t.Errorf("GET %s: body %s differs from %s: a refusal must not tell why", c.path, body, first)
		}
	}
	if code, _, _ := f.do(t, "POST", "/v1/pull/acme/inbox/ack", "wrong", map[string]any{"receipts": []string{}}); code != http.StatusUnauthorized {
		t.Errorf("ack with a wrong token = %d, want 401", code)
	}
	for _, q := range []string{"?max=0", "?max=101", "?max=x", "?wait=31s", "?wait=-1s", "?wait=soon", "?wait=18446744074", "?wait=9223372037"} {
		if code, body, _ := f.do(t, "GET", "/v1/pull/acme/inbox"+q, pullToken, nil); code != http.StatusBadRequest {
			t.Errorf("GET %s = %d %s, want 400", q, code, body)
		}
	}
	if strings.Contains(f.log.String(), pullToken) {
		t.Error("the log shows a pull token")
	}
}

// The Bearer scheme is matched in any case (RFC 7235).
func TestPullBearerAnyCase(t *testing.T) {
	f := mustPullGateway(t, "30s")
	for _, scheme := range []string{"bearer", "BEARER", "Bearer"} {
		req, _ := http.NewRequest("GET", f.srv.URL+"/v1/pull/acme/inbox", nil)
		req.Header.Set("Authorization", scheme+" "+pullToken)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("Authorization: %s <token> = %d, want 200", scheme, resp.StatusCode)
		}
	}
}

func TestPullLongPollAndAck(t *testing.T) {
	f := mustPullGateway(t, "30s")
	start := time.Now()
	if a := f.poll(t, ""); len(a.Events) != 0 || time.Since(start) > time.Second {
		t.Fatalf("poll without wait = %+v after %v, want an empty answer at once", a, time.Since(start))
	}

	// A long-poll answers as soon as an event arrives.
	got := make(chan pullAnswer, 1)
	go func() { got <- f.poll(t, "?wait=10s&max=5") }()
	time.Sleep(300 * time.Millisecond)
	sent := time.Now()
	f.inbound(t, "first")
	var a pullAnswer
	select {
	case a = <-got:
	case <-time.After(5 * time.Second):
		t.Fatal("the long-poll did not answer within 5s of the event")
	}
	if d := time.Since(sent); d > time.Second {
		t.Errorf("long-poll answered %v after the event, want at once", d)
	}
	if len(a.Events) != 1 || a.Events[0].Attempt != 1 || a.Events[0].Event.Data.Text != "first" ||
		!strings.HasPrefix(a.Events[0].Event.ID, "evt_") || a.Events[0].Receipt == "" {
		t.Fatalf("answer = %+v", a)
	}

	for _, text := range []string{"second", "third"} {
		f.inbound(t, text)
	}
	b := f.poll(t, "?max=1")
	if len(b.Events) != 1 || b.Events[0].Event.Data.Text != "second" {
		t.Fatalf("max=1 = %+v, want only the oldest", b)
	}
	c := f.poll(t, "?wait=1s")
	if len(c.Events) != 1 || c.Events[0].Event.Data.Text != "third" {
		t.Fatalf("next poll = %+v, want the third", c)
	}
	start = time.Now()
	if d := f.poll(t, "?wait=700ms"); len(d.Events) != 0 || time.Since(start) < 600*time.Millisecond {
		t.Fatalf("poll with nothing left = %+v after %v, want empty after the wait", d, time.Since(start))
	}
	start = time.Now() // a bare number is seconds, a fraction too
	if d := f.poll(t, "?wait=0.5"); len(d.Events) != 0 || time.Since(start) < 400*time.Millisecond {
		t.Fatalf("poll ?wait=0.5 = %+v after %v, want empty after half a second", d, time.Since(start))
	}

	code, body, _ := f.do(t, "POST", "/v1/pull/acme/inbox/ack", pullToken,
		map[string]any{"receipts": []string{a.Events[0].Receipt, b.Events[0].Receipt, "bogus"}})
	var ack struct {
		Acked   int      `json:"acked"`
		Invalid []string `json:"invalid"`
	}
	if err := json.Unmarshal(body, &ack); code != http.StatusOK || err != nil || ack.Acked != 2 || len(ack.Invalid) != 1 || ack.Invalid[0] != "bogus" {
		t.Fatalf("ack = %d %s", code, body)
	}
	if code, body, _ := f.do(t, "POST", "/v1/pull/acme/inbox/ack", pullToken, "nope"); code != http.StatusBadRequest {
		t.Errorf("ack with a bad body = %d %s, want 400", code, body)
	}
}

func TestPullWaitEndsAtShutdown(t *testing.T) {
	f := mustPullGateway(t, "30s")
	done := make(chan time.Duration, 1)
	go func() {
		start := time.Now()
		f.poll(t, "?wait=20s")
		done <- time.Since(start)
	}()
	time.Sleep(200 * time.Millisecond)
	f.gw.pulls.shutdown()
	select {
	case d := <-done:
		if d > 3*time.Second {
			t.Errorf("long-poll answered %v after start, want soon after shutdown", d)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the long-poll outlived shutdown")
	}
}

// sseClient reads Server-Sent Events messages (id, data) from a stream.
type sseClient struct {
	resp *http.Response
	msgs chan [2]string
}

func (f *pullFixture) stream(t *testing.T, query, lastID string) *sseClient {
	t.Helper()
	req, _ := http.NewRequest("GET", f.srv.URL+"/v1/pull/acme/inbox/stream"+query, nil)
	req.Header.Set("Authorization", "Bearer "+pullToken)
	if lastID != "" {
		req.Header.Set("Last-Event-ID", lastID)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("stream = %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	c := &sseClient{resp: resp, msgs: make(chan [2]string, 100)}
	t.Cleanup(c.close)
	go func() {
		sc := bufio.NewScanner(resp.Body)
		var id, data string
		for sc.Scan() {
			line := sc.Text()
			switch {
			case strings.HasPrefix(line, "id: "):
				id = line[4:]
			case strings.HasPrefix(line, "data: "):
				data = line[6:]
			case line == "" && data != "":
				c.msgs <- [2]string{id, data}
				id, data = "", ""
			}
		}
		close(c.msgs)
	}()
	return c
}

func (c *sseClient) close() { c.resp.Body.Close() }

func (c *sseClient) next(t *testing.T) (string, pulledEvent) {
	t.Helper()
	select {
	case m, ok := <-c.msgs:
		if !ok {
			t.Fatal("stream ended")
		}
		var p pulledEvent
		if err := json.Unmarshal([]byte(m[1]), &p); err != nil {
			t.Fatalf("data %q: %v", m[1], err)
		}
		return m[0], p
	case <-time.After(5 * time.Second):
		t.Fatal("no stream message within 5s")
	}
	return "", pulledEvent{}
}

func (c *sseClient) none(t *testing.T, d time.Duration) {
	t.Helper()
	select {
	case m := <-c.msgs:
		t.Fatalf("unexpected stream message %v", m)
	case <-time.After(d):
	}
}

type pulledEvent struct {
	Receipt string `json:"receipt"`
	Attempt int    `json:"attempt"`
	Event   struct {
		ID   string `json:"id"`
		Data struct {
			Text string `json:"text"`
		} `json:"data"`
	} `json:"event"`
}

func TestPullStreamAndResume(t *testing.T) {
	f := mustPullGateway(t, "30s")
	s := f.stream(t, "?max=2", "")
	for _, text := range []string{"one", "two", "three"} {
		f.inbound(t, text)
	}
	id1, e1 := s.next(t)
	id2, e2 := s.next(t)
	if e1.Event.Data.Text != "one" || e2.Event.Data.Text != "two" || id1 != e1.Receipt || e1.Attempt != 1 {
		t.Fatalf("stream = %q %+v, %q %+v", id1, e1, id2, e2)
	}
	s.none(t, 700*time.Millisecond) // two unacknowledged: at its cap
	if code, body, _ := f.do(t, "POST", "/v1/pull/acme/inbox/ack", pullToken, map[string]any{"receipts": []string{id1}}); code != http.StatusOK {
		t.Fatalf("ack = %d %s", code, body)
	}
	id3, e3 := s.next(t)
	if e3.Event.Data.Text != "three" {
		t.Fatalf("after the ack the stream sent %+v, want three", e3)
	}
	_ = id3

	// The client saw "two" last, then lost the connection (and "three"
	// with it, say). Reconnecting with Last-Event-ID sends "three" again
	// at once; "two" keeps its receipt.
	s.close()
	r := f.stream(t, "?max=2", id2)
	idR, eR := r.next(t)
	if eR.Event.Data.Text != "three" || eR.Attempt != 2 || idR == id3 {
		t.Fatalf("resumed with %q %+v, want three again (attempt 2) under a new receipt", idR, eR)
	}
	r.none(t, 700*time.Millisecond)
	code, body, _ := f.do(t, "POST", "/v1/pull/acme/inbox/ack", pullToken, map[string]any{"receipts": []string{id2, idR, id3}})
	if code != http.StatusOK || !strings.Contains(string(body), `"acked":2`) || !strings.Contains(string(body), id3) {
		t.Fatalf("ack = %d %s, want two acked and the stale receipt of three invalid", code, body)
	}
}

// TestPullMethodsAndBodies: a HEAD of the long-poll or the stream hands
// nothing out (405); other methods and unknown paths under /v1/pull/ get
// the API's JSON errors; an acknowledgement without receipts is a 400, one
// over 1 MiB a 413.
func TestPullMethodsAndBodies(t *testing.T) {
	f := mustPullGateway(t, "30s")
	f.inbound(t, "one")
	for _, path := range []string{"/v1/pull/acme/inbox?max=5", "/v1/pull/acme/inbox/stream"} {
		code, _, hdr := f.do(t, "HEAD", path, pullToken, nil)
		if code != http.StatusMethodNotAllowed || hdr.Get("Allow") != "GET" {
			t.Errorf("HEAD %s = %d Allow %q, want 405 Allow GET", path, code, hdr.Get("Allow"))
		}
	}
	if a := f.poll(t, "?max=5"); len(a.Events) != 1 || a.Events[0].Attempt != 1 {
		t.Fatalf("poll after the HEADs = %+v, want the event as attempt 1 (a HEAD handed it out)", a.Events)
	}
	jsonErr := func(what string, want int, code int, body []byte) {
		t.Helper()
		var e struct {
			Error string `json:"error"`
		}
		if code != want || json.Unmarshal(body, &e) != nil || e.Error == "" {
			t.Errorf("%s = %d %s, want %d with a JSON error", what, code, body, want)
		}
	}
	code, body, hdr := f.do(t, "POST", "/v1/pull/acme/inbox", pullToken, nil)
	jsonErr("POST on the long-poll", http.StatusMethodNotAllowed, code, body)
	if hdr.Get("Allow") != "GET" {
		t.Errorf("POST on the long-poll: Allow %q, want GET", hdr.Get("Allow"))
	}
	code, body, hdr = f.do(t, "GET", "/v1/pull/acme/inbox/ack", pullToken, nil)
	jsonErr("GET on ack", http.StatusMethodNotAllowed, code, body)
	if hdr.Get("Allow") != "POST" {
		t.Errorf("GET on ack: Allow %q, want POST", hdr.Get("Allow"))
	}
	code, body, _ = f.do(t, "GET", "/v1/pull/acme/inbox/nosuch", pullToken, nil)
	jsonErr("an unknown path", http.StatusNotFound, code, body)
	for _, b := range []any{map[string]any{}, map[string]any{"receipts": nil}, nil} {
		code, body, _ = f.do(t, "POST", "/v1/pull/acme/inbox/ack", pullToken, b)
		jsonErr(fmt.Sprintf("ack with %v", b), http.StatusBadRequest, code, body)
	}
	big := map[string]any{"receipts": []string{strings.Repeat("1", 2<<20)}}
	code, body, _ = f.do(t, "POST", "/v1/pull/acme/inbox/ack", pullToken, big)
	jsonErr("ack over 1 MiB", http.StatusRequestEntityTooLarge, code, body)
}

// TestPullHistory: what becomes of each hand-out is in the event's history
// like a push attempt: handed out again after the visibility timeout
// (retry), acknowledged (delivered), dead-lettered after max_attempts.
func TestPullHistory(t *testing.T) {
	srv, f := pullServer(t, "200ms", 2, "SM00000000000000000000000000000a01", "SM00000000000000000000000000000a02")
	first := f.poll(t, "?max=10")
	if len(first.Events) != 2 {
		t.Fatalf("first poll = %+v, want both events", first.Events)
	}
	var again pullAnswer
	waitUntil(t, "the hand-outs to lapse", func() bool {
		again = f.poll(t, "?max=10")
		return len(again.Events) == 2
	})
	acked, dead := again.Events[0], again.Events[1]
	if code, body, _ := f.do(t, "POST", "/v1/pull/acme/inbox/ack", pullToken, map[string]any{"receipts": []string{acked.Receipt}}); code != http.StatusOK {
		t.Fatalf("ack = %d %s", code, body)
	}
	waitUntil(t, "the other to be dead-lettered", func() bool { return len(f.poll(t, "?max=10").Events) == 0 && dlqLen(t, srv) == 1 })
	outcomes := func(id string) string {
		h, _, err := srv.store.History(context.Background(), "acme", id)
		if err != nil {
			return fmt.Sprint(err)
		}
		var s []string
		for _, a := range h.Attempts {
			s = append(s, fmt.Sprintf("%s/%d/%s", a.Destination, a.Attempt, a.Outcome))
		}
		return strings.Join(s, " ")
	}
	for id, want := range map[string]string{
		acked.Event.ID: "inbox/1/retry inbox/2/delivered",
		dead.Event.ID:  "inbox/1/retry inbox/2/dead_letter",
	} {
		waitUntil(t, "the history of "+id, func() bool { return outcomes(id) == want })
	}
}

func dlqLen(t *testing.T, srv *Server) int {
	t.Helper()
	dl, err := srv.store.DLQList(context.Background(), "acme", "", 0)
	if err != nil {
		t.Fatal(err)
	}
	return len(dl)
}

// TestPullSweepWithoutApp: an app that stops pulling does not leave its
// last hand-out in flight for good: once it expires with no hand-out left,
// the gateway dead-letters it by itself, into the history too.
func TestPullSweepWithoutApp(t *testing.T) {
	srv, f := pullServer(t, "200ms", 1, "SM00000000000000000000000000000b01")
	got := f.poll(t, "?max=10")
	if len(got.Events) != 1 {
		t.Fatalf("poll = %+v, want the event", got.Events)
	}
	// no more polls: the app is gone
	waitUntil(t, "the spent hand-out to be dead-lettered", func() bool { return dlqLen(t, srv) == 1 })
	waitUntil(t, "its history", func() bool {
		h, _, err := srv.store.History(context.Background(), "acme", got.Events[0].Event.ID)
		return err == nil && len(h.Attempts) == 1 && h.Attempts[0].Outcome == "dead_letter" && h.Attempts[0].Attempt == 1
	})
}

// pullServer runs a Server (history on) whose tenant acme routes every
// event to the pull destination inbox (visibility timeout vis, maxAttempts
// hand-outs), sends one inbound callback per message id, and
// returns it with a fixture for its pull API.
func pullServer(t *testing.T, vis string, maxAttempts int, messageIDs ...string) (*Server, *pullFixture) {
	t.Helper()
	rs := redistest.Start(t)
	srv := startServer(t, fmt.Sprintf(`
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0"}
redis: {url: %s}
history: {retention: 1h}
tenants:
  acme:
    sources:
      tw: {carrier: twilio, secret: %s}
    destinations:
      inbox: {type: pull, token: %s, visibility_timeout: %s, retry: {max_attempts: %d}}
    routes:
      - to: [inbox]
`, rs.URL(), token, pullToken, vis, maxAttempts), &syncWriter{})
	base := "http://" + srv.IngressAddr
	for _, id := range messageIDs {
		sendSimulated(t, carrier.Config{Carrier: "twilio", Secret: token}, "inbound", carrier.SimMessage{MessageID: id, Text: "hi"}, base+"/hooks/acme/tw")
	}
	return srv, &pullFixture{srv: &httptest.Server{URL: base}}
}

// TestPullResumeHistory: an event sent again because its stream
// reconnected (Last-Event-ID) has that in its history, not a lapsed
// visibility timeout.
func TestPullResumeHistory(t *testing.T) {
	srv, f := pullServer(t, "60s", 3, "SM00000000000000000000000000000c01", "SM00000000000000000000000000000c02")
	s := f.stream(t, "?max=10", "")
	id1, _ := s.next(t)
	_, e2 := s.next(t)
	s.close()
	r := f.stream(t, "?max=10", id1)
	if _, again := r.next(t); again.Event.ID != e2.Event.ID || again.Attempt != 2 {
		t.Fatalf("resumed with %+v, want the second event as attempt 2", again)
	}
	waitUntil(t, "the history of the event sent again", func() bool {
		h, _, err := srv.store.History(context.Background(), "acme", e2.Event.ID)
		return err == nil && len(h.Attempts) == 1 && h.Attempts[0].Attempt == 1 && h.Attempts[0].Outcome == "retry" &&
			strings.Contains(h.Attempts[0].Error, "stream reconnected")
	})
}

package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/switchboard-gw/switchboard/gateway/carrier"
	"github.com/switchboard-gw/switchboard/queue/redistest"
)

const (
	rootToken   = "root-admin-token-0123456789"
	acmeToken   = "acme-admin-token-0123456789"
	globexToken = "globex-admin-token-0123456789"
	destSecret  = "whsec_c3dpdGNoYm9hcmQtZGVtby1zZWNyZXQta2V5LTAwMDE="
)

// adminFixture is a running Server (both listeners, workers) on a real
// redis-server, with two tenants: acme delivers every event to ok (always
// 204) and to flaky (500 until told otherwise, two attempts, then dead);
// globex delivers to app and to inbox, a pull destination (token pullToken).
type adminFixture struct {
	srv      *Server
	rs       *redistest.Server
	log      *syncWriter
	ok       *recorder
	flaky    *recorder
	flakyUp  atomic.Bool
	bodies   []string // every admin answer, checked for secrets
	bodiesMu sync.Mutex
}

// recorder is a destination that records the webhook-ids it receives.
type recorder struct {
	*httptest.Server
	mu  sync.Mutex
	ids []string
}

func newRecorder(t *testing.T, code func() int) *recorder {
	r := &recorder{}
	r.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		_, _ = io.Copy(io.Discard, req.Body)
		r.mu.Lock()
		r.ids = append(r.ids, req.Header.Get("webhook-id"))
		r.mu.Unlock()
		w.WriteHeader(code())
	}))
	t.Cleanup(r.Close)
	return r
}

func (r *recorder) received() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.ids)
}

func (r *recorder) count(id string) int {
	n := 0
	for _, v := range r.received() {
		if v == id {
			n++
		}
	}
	return n
}

func startServer(t *testing.T, cfgText string, logs io.Writer) *Server {
	t.Helper()
	cfg := loadConfig(t, cfgText)
	srv, err := Start(cfg, slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})), Options{Consumer: "test"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = srv.Serve(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return srv
}

func mustAdminFixture(t *testing.T) *adminFixture {
	t.Helper()
	f := &adminFixture{rs: redistest.Start(t), log: &syncWriter{}}
	f.ok = newRecorder(t, func() int { return http.StatusNoContent })
	f.flaky = newRecorder(t, func() int {
		if f.flakyUp.Load() {
			return http.StatusOK
		}
		return http.StatusInternalServerError
	})
	app := newRecorder(t, func() int { return http.StatusOK })
	f.srv = startServer(t, fmt.Sprintf(`
server:
  listen: "127.0.0.1:0"
  admin_listen: "127.0.0.1:0"
  admin_token: %s
redis: {url: %q}
delivery:
  allow_private_networks: true
  timeout: 2s
  retry: {initial: 20ms, max: 50ms, max_attempts: 2, max_age: 1h}
tenants:
  acme:
    admin_token: %s
    sources:
      tw: {carrier: twilio, secret: %s}
    destinations:
      ok: {url: %q, secret: %s}
      flaky: {url: %q, secret: %s, rate: {per_second: 50, burst: 5}}
    routes:
      - to: [ok, flaky]
  globex:
    admin_token: %s
    sources:
      tw: {carrier: twilio, secret: %s}
    destinations:
      app: {url: %q, secret: %s}
      inbox: {type: pull, token: %s}
    routes:
      - to: [app, inbox]
`, rootToken, f.rs.URL(), acmeToken, token, f.ok.URL, destSecret, f.flaky.URL, destSecret,
		globexToken, token, app.URL, destSecret, pullToken), f.log)
	return f
}

// send posts a signed Twilio inbound callback to tenant's source tw.
func (f *adminFixture) send(t *testing.T, tenant, msgID, text string) {
	t.Helper()
	u := "http://" + f.srv.IngressAddr + "/hooks/" + tenant + "/tw"
	sendSimulated(t, carrier.Config{Carrier: "twilio", Secret: token}, "inbound", carrier.SimMessage{MessageID: msgID, Text: text}, u)
}

// do calls the admin listener and returns the status and body.
func (f *adminFixture) do(t *testing.T, tok, method, path string, body any) (int, []byte) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, "http://"+f.srv.AdminAddr+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	f.bodiesMu.Lock()
	f.bodies = append(f.bodies, string(b))
	f.bodiesMu.Unlock()
	return resp.StatusCode, b
}

// get decodes a 200 answer into out.
func (f *adminFixture) get(t *testing.T, tok, path string, out any) {
	t.Helper()
	code, b := f.do(t, tok, http.MethodGet, path, nil)
	if code != http.StatusOK {
		t.Fatalf("GET %s = %d %s, want 200", path, code, b)
	}
	if err := json.Unmarshal(b, out); err != nil {
		t.Fatalf("GET %s: %v: %s", path, err, b)
	}
}

type eventAnswer struct {
	ID           string         `json:"id"`
	ReceivedAt   string         `json:"received_at"`
	Destinations []string       `json:"destinations"`
	Event        map[string]any `json:"event"`
	Attempts     []struct {
		Time        string  `json:"time"`
		Destination string  `json:"destination"`
		Attempt     int     `json:"attempt"`
		StatusCode  int     `json:"status_code"`
		LatencyMS   float64 `json:"latency_ms"`
		Outcome     string  `json:"outcome"`
		Error       string  `json:"error"`
	} `json:"attempts"`
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestAdminAPI(t *testing.T) {
	f := mustAdminFixture(t)
	f.send(t, "acme", "SM00000000000000000000000000000a01", "first message")
	var eventID string
	waitUntil(t, "delivery to ok", func() bool {
		ids := f.ok.received()
		if len(ids) > 0 {
			eventID = ids[0]
		}
		return len(ids) == 1
	})
	var dlq struct {
		Entries []map[string]any `json:"entries"`
	}
	waitUntil(t, "flaky's dead letter", func() bool {
		f.get(t, rootToken, "/admin/v1/tenants/acme/dlq", &dlq)
		return len(dlq.Entries) == 1
	})

	t.Run("auth and tenant scoping", func(t *testing.T) {
		for _, tc := range []struct {
			tok, method, path string
			want              int
		}{
			{"", "GET", "/admin/v1/tenants", 401},
			{"wrong-token", "GET", "/admin/v1/tenants", 401},
			{rootToken + "x", "GET", "/admin/v1/tenants", 401},
			{"", "GET", "/admin/v1/tenants/acme/stats", 401},
			{"", "GET", "/admin/v1/nothing-here", 401},
			{rootToken, "GET", "/admin/v1/nothing-here", 404},
			// An endpoint asked with the wrong method: 405, not 404.
			{rootToken, "PUT", "/admin/v1/tenants/acme/dlq", 405},
			{rootToken, "GET", "/admin/v1/tenants/acme/recover", 405},
			{rootToken, "POST", "/admin/v1/tenants/acme/nothing", 404},
			{acmeToken, "GET", "/admin/v1/tenants/acme/stats", 200},
			{acmeToken, "GET", "/admin/v1/tenants/globex/stats", 403},
			{acmeToken, "GET", "/admin/v1/tenants/globex/dlq", 403},
			{acmeToken, "POST", "/admin/v1/tenants/globex/dlq/replay", 403},
			{acmeToken, "DELETE", "/admin/v1/tenants/globex/dlq?all=true", 403},
			{acmeToken, "GET", "/admin/v1/tenants/globex/events/" + eventID, 403},
			{acmeToken, "POST", "/admin/v1/tenants/globex/recover", 403},
			{acmeToken, "GET", "/admin/v1/tenants/nobody/stats", 403},
			{globexToken, "GET", "/admin/v1/tenants/acme/events/" + eventID, 403},
			{globexToken, "GET", "/admin/v1/tenants/globex/stats", 200},
			{rootToken, "GET", "/admin/v1/tenants/globex/stats", 200},
			{rootToken, "GET", "/admin/v1/tenants/nobody/stats", 404},
		} {
			if code, b := f.do(t, tc.tok, tc.method, tc.path, nil); code != tc.want {
				t.Errorf("%s %s with %q = %d %s, want %d", tc.method, tc.path, tc.tok, code, b, tc.want)
			}
		}
		if _, b := f.do(t, rootToken, "PUT", "/admin/v1/tenants/acme/dlq", nil); !strings.Contains(string(b), "(allowed: GET, DELETE)") {
			t.Errorf("405 body = %s, want it to name GET, DELETE", b)
		}
		// Outside /admin/v1/ too, errors are the API's JSON.
		for _, path := range []string{"/admin/", "/admin/v2/x"} {
			code, b := f.do(t, rootToken, "GET", path, nil)
			var e struct {
				Error string `json:"error"`
			}
			if code != http.StatusNotFound || json.Unmarshal(b, &e) != nil || e.Error == "" {
				t.Errorf("GET %s = %d %s, want 404 with a JSON error", path, code, b)
			}
		}
		// A body over the limit is 413 (DESIGN), not a 400.
		big := map[string]any{"ids": []string{strings.Repeat("1", adminMaxBody)}}
		if code, b := f.do(t, rootToken, "POST", "/admin/v1/tenants/acme/dlq/replay", big); code != http.StatusRequestEntityTooLarge {
			t.Errorf("replay with a body over 1 MiB = %d %s, want 413", code, b)
		}
		var out struct {
			Tenants []struct {
				ID           string `json:"id"`
				Sources      []map[string]string
				Destinations []map[string]string
			} `json:"tenants"`
		}
		f.get(t, acmeToken, "/admin/v1/tenants", &out)
		if len(out.Tenants) != 1 || out.Tenants[0].ID != "acme" {
			t.Errorf("tenants for acme's token = %+v, want only acme", out.Tenants)
		}
		f.get(t, rootToken, "/admin/v1/tenants", &out)
		if len(out.Tenants) != 2 || out.Tenants[0].ID != "acme" || out.Tenants[1].ID != "globex" {
			t.Fatalf("tenants for the server token = %+v, want acme and globex", out.Tenants)
		}
		acme := out.Tenants[0]
		if len(acme.Sources) != 1 || acme.Sources[0]["id"] != "tw" || acme.Sources[0]["carrier"] != "twilio" ||
			len(acme.Destinations) != 2 || acme.Destinations[0]["id"] != "flaky" || acme.Destinations[1]["id"] != "ok" {
			t.Errorf("acme = %+v", acme)
		}
	})

	t.Run("stats", func(t *testing.T) {
		var st struct {
			Tenant       string `json:"tenant"`
			Destinations []struct {
				Destination string   `json:"destination"`
				Queued      *int     `json:"queued"`
				InFlight    *int     `json:"in_flight"`
				Retrying    *int     `json:"retrying"`
				Dead        int      `json:"dead"`
				OldestAge   *float64 `json:"oldest_age_seconds"`
				Breaker     string   `json:"breaker"`
				Rate        struct {
					PerSecond float64 `json:"per_second"`
					Burst     int     `json:"burst"`
				} `json:"rate"`
			} `json:"destinations"`
		}
		f.get(t, acmeToken, "/admin/v1/tenants/acme/stats", &st)
		if st.Tenant != "acme" || len(st.Destinations) != 2 {
			t.Fatalf("stats = %+v", st)
		}
		fl := st.Destinations[0]
		if fl.Destination != "flaky" || fl.Dead != 1 || fl.Queued == nil || fl.InFlight == nil || fl.Retrying == nil ||
			fl.OldestAge == nil || fl.Breaker != "closed" || fl.Rate.PerSecond != 50 || fl.Rate.Burst != 5 {
			t.Errorf("flaky stats = %+v", fl)
		}
		if ok := st.Destinations[1]; ok.Destination != "ok" || ok.Dead != 0 {
			t.Errorf("ok stats = %+v", ok)
		}
	})

	t.Run("event and its attempts", func(t *testing.T) {
		var ev eventAnswer
		waitUntil(t, "three attempts in the history", func() bool {
			f.get(t, acmeToken, "/admin/v1/tenants/acme/events/"+eventID, &ev)
			return len(ev.Attempts) == 3
		})
		if ev.ID != eventID || ev.Event["id"] != eventID || !slices.Equal(ev.Destinations, []string{"ok", "flaky"}) {
			t.Errorf("event = %+v", ev)
		}
		if _, err := time.Parse(time.RFC3339Nano, ev.ReceivedAt); err != nil {
			t.Errorf("received_at = %q: %v", ev.ReceivedAt, err)
		}
		byDest := map[string][]string{}
		for _, a := range ev.Attempts {
			byDest[a.Destination] = append(byDest[a.Destination], fmt.Sprintf("%d:%d:%s", a.Attempt, a.StatusCode, a.Outcome))
			if a.LatencyMS <= 0 || a.Time == "" {
				t.Errorf("attempt without latency or time: %+v", a)
			}
			if a.StatusCode == 500 && a.Error != "HTTP 500" {
				t.Errorf("attempt error = %q, want HTTP 500", a.Error)
			}
		}
		if !slices.Equal(byDest["ok"], []string{"1:204:delivered"}) || !slices.Equal(byDest["flaky"], []string{"1:500:retry", "2:500:dead_letter"}) {
			t.Errorf("attempts = %v", byDest)
		}
		if code, _ := f.do(t, acmeToken, "GET", "/admin/v1/tenants/acme/events/evt_NOSUCHEVENT", nil); code != 404 {
			t.Errorf("unknown event: %d, want 404", code)
		}

		var found struct {
			Events []eventAnswer `json:"events"`
		}
		f.get(t, acmeToken, "/admin/v1/tenants/acme/events?message_id=SM00000000000000000000000000000a01", &found)
		if len(found.Events) != 1 || found.Events[0].ID != eventID {
			t.Errorf("events by message id = %+v", found.Events)
		}
		f.get(t, acmeToken, "/admin/v1/tenants/acme/events?message_id=SMnothing", &found)
		if len(found.Events) != 0 {
			t.Errorf("events by unknown message id = %+v", found.Events)
		}
		if code, _ := f.do(t, acmeToken, "GET", "/admin/v1/tenants/acme/events", nil); code != 400 {
			t.Errorf("events without message_id: %d, want 400", code)
		}
	})

	t.Run("dlq list, replay, purge", func(t *testing.T) {
		e := dlq.Entries[0]
		if e["destination"] != "flaky" || e["event_id"] != eventID || e["attempts"] != float64(2) || e["last_error"] != "HTTP 500" {
			t.Errorf("dead letter = %v", e)
		}
		if fa, _ := e["failed_at"].(string); !strings.HasSuffix(fa, "Z") {
			t.Errorf("failed_at = %v, want RFC 3339 UTC", e["failed_at"])
		}
		var none struct {
			Entries []any `json:"entries"`
		}
		f.get(t, rootToken, "/admin/v1/tenants/acme/dlq?destination=ok", &none)
		if none.Entries == nil || len(none.Entries) != 0 {
			t.Errorf("dlq of ok = %+v, want an empty list", none)
		}
		for _, bad := range []string{"limit=0", "limit=x", "limit=10001"} {
			if code, _ := f.do(t, rootToken, "GET", "/admin/v1/tenants/acme/dlq?"+bad, nil); code != 400 {
				t.Errorf("dlq?%s: %d, want 400", bad, code)
			}
		}
		for _, body := range []any{map[string]any{}, map[string]any{"ids": []string{"1-1"}, "all": true}, map[string]any{"bogus": 1}} {
			if code, _ := f.do(t, rootToken, "POST", "/admin/v1/tenants/acme/dlq/replay", body); code != 400 {
				t.Errorf("replay %v: %d, want 400", body, code)
			}
		}

		f.flakyUp.Store(true)
		before := f.flaky.count(eventID)
		code, b := f.do(t, acmeToken, "POST", "/admin/v1/tenants/acme/dlq/replay", map[string]any{"ids": []any{e["id"]}})
		if code != 200 || strings.TrimSpace(string(b)) != `{"replayed":1}` {
			t.Fatalf("replay = %d %s", code, b)
		}
		waitUntil(t, "the replayed delivery", func() bool { return f.flaky.count(eventID) == before+1 })
		var ev eventAnswer
		waitUntil(t, "the replayed attempt in the history", func() bool {
			f.get(t, acmeToken, "/admin/v1/tenants/acme/events/"+eventID, &ev)
			return len(ev.Attempts) == 4
		})
		if a := ev.Attempts[3]; a.Destination != "flaky" || a.Attempt != 1 || a.Outcome != "delivered" {
			t.Errorf("replayed attempt = %+v, want attempt 1 (a fresh budget), delivered", a)
		}

		// A new dead letter, purged by the query-string selectors.
		f.flakyUp.Store(false)
		f.send(t, "acme", "SM00000000000000000000000000000a02", "second")
		waitUntil(t, "a second dead letter", func() bool {
			f.get(t, rootToken, "/admin/v1/tenants/acme/dlq?destination=flaky&limit=5", &dlq)
			return len(dlq.Entries) == 1
		})
		if code, _ := f.do(t, rootToken, "DELETE", "/admin/v1/tenants/acme/dlq", nil); code != 400 {
			t.Errorf("DELETE without selectors: %d, want 400", code)
		}
		if code, _ := f.do(t, rootToken, "DELETE", "/admin/v1/tenants/acme/dlq?all=maybe", nil); code != 400 {
			t.Errorf("DELETE all=maybe: %d, want 400", code)
		}
		code, b = f.do(t, rootToken, "DELETE", "/admin/v1/tenants/acme/dlq?destination=ok&all=true", nil)
		if code != 200 || strings.TrimSpace(string(b)) != `{"purged":0}` {
			t.Errorf("purge of ok = %d %s, want 0 purged", code, b)
		}
		// The selectors as the issue writes them, the unused ones empty.
		code, b = f.do(t, rootToken, "DELETE", "/admin/v1/tenants/acme/dlq?destination=ok&id=&all=true", nil)
		if code != 200 || strings.TrimSpace(string(b)) != `{"purged":0}` {
			t.Errorf("purge with an empty id= = %d %s, want 0 purged", code, b)
		}
		code, b = f.do(t, rootToken, "DELETE", "/admin/v1/tenants/acme/dlq?id="+dlq.Entries[0]["id"].(string), nil)
		if code != 200 || strings.TrimSpace(string(b)) != `{"purged":1}` {
			t.Errorf("purge by id = %d %s", code, b)
		}
		f.get(t, rootToken, "/admin/v1/tenants/acme/dlq", &dlq)
		if len(dlq.Entries) != 0 {
			t.Errorf("after purge: %v", dlq.Entries)
		}
	})

	t.Run("recover by time range", func(t *testing.T) {
		f.flakyUp.Store(true)
		gap := func() time.Time {
			time.Sleep(3 * time.Millisecond)
			m := time.Now()
			time.Sleep(3 * time.Millisecond)
			return m
		}
		n0 := len(f.ok.received())
		f.send(t, "acme", "SM00000000000000000000000000000b01", "before")
		since := gap()
		f.send(t, "acme", "SM00000000000000000000000000000b02", "inside 1")
		f.send(t, "acme", "SM00000000000000000000000000000b03", "inside 2")
		until := gap()
		f.send(t, "acme", "SM00000000000000000000000000000b04", "after")
		waitUntil(t, "four deliveries to ok", func() bool { return len(f.ok.received()) == n0+4 })
		var inside []string
		for _, msg := range []string{"SM00000000000000000000000000000b02", "SM00000000000000000000000000000b03"} {
			var found struct {
				Events []eventAnswer `json:"events"`
			}
			f.get(t, acmeToken, "/admin/v1/tenants/acme/events?message_id="+msg, &found)
			if len(found.Events) != 1 {
				t.Fatalf("events of %s = %+v", msg, found.Events)
			}
			inside = append(inside, found.Events[0].ID)
		}

		for _, body := range []any{
			map[string]any{"destination": "ok"},
			map[string]any{"destination": "ok", "since": "yesterday"},
			map[string]any{"destination": "ok", "since": until.Format(time.RFC3339Nano), "until": since.Format(time.RFC3339Nano)},
			map[string]any{"since": since.Format(time.RFC3339Nano)},
		} {
			if code, b := f.do(t, acmeToken, "POST", "/admin/v1/tenants/acme/recover", body); code != 400 {
				t.Errorf("recover %v: %d %s, want 400", body, code, b)
			}
		}
		if code, _ := f.do(t, acmeToken, "POST", "/admin/v1/tenants/acme/recover",
			map[string]any{"destination": "nope", "since": since.Format(time.RFC3339Nano)}); code != 404 {
			t.Errorf("recover to an unknown destination: %d, want 404", code)
		}

		code, b := f.do(t, acmeToken, "POST", "/admin/v1/tenants/acme/recover", map[string]any{
			"destination": "ok", "since": since.Format(time.RFC3339Nano), "until": until.Format(time.RFC3339Nano),
		})
		if code != 200 || strings.TrimSpace(string(b)) != `{"replayed":2}` {
			t.Fatalf("recover = %d %s, want 2 replayed", code, b)
		}
		waitUntil(t, "the recovered deliveries", func() bool { return len(f.ok.received()) == n0+6 })
		again := f.ok.received()[n0+4:]
		slices.Sort(again)
		slices.Sort(inside)
		if !slices.Equal(again, inside) {
			t.Errorf("recovered webhook-ids = %v, want those of the two events inside the window %v", again, inside)
		}
		time.Sleep(100 * time.Millisecond)
		if n := len(f.ok.received()); n != n0+6 {
			t.Errorf("ok received %d deliveries, want %d: recover sent more than the window", n-n0, 6)
		}
		var ev eventAnswer
		waitUntil(t, "the recovered attempt in the history", func() bool {
			f.get(t, acmeToken, "/admin/v1/tenants/acme/events/"+inside[0], &ev)
			n := 0
			for _, a := range ev.Attempts {
				if a.Destination == "ok" {
					n++
				}
			}
			return n == 2
		})
	})

	t.Run("metrics", func(t *testing.T) {
		resp, err := http.Get("http://" + f.srv.AdminAddr + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		m := string(b)
		for _, want := range []string{
			`switchboard_ingress_requests_total{carrier="twilio",code="200",source="tw",tenant="acme"} 6`,
			`switchboard_deliveries_total{destination="flaky",outcome="dead_letter",tenant="acme"} 2`,
			`switchboard_deliveries_total{destination="ok",outcome="delivered",tenant="acme"} 8`,
			`switchboard_retries_total{destination="flaky",tenant="acme"} 2`,
			`switchboard_dlq_depth{destination="flaky",tenant="acme"} 0`,
			`switchboard_queue_depth{destination="ok",tenant="acme"} 0`,
			`switchboard_breaker_state{destination="flaky",tenant="acme"} 0`,
			`switchboard_delivery_duration_seconds_count{destination="ok",tenant="acme"} 8`,
			`switchboard_enqueue_duration_seconds_count{tenant="acme"} 6`,
			`switchboard_queue_oldest_age_seconds{destination="app",tenant="globex"} 0`,
			`switchboard_store_up 1`,
		} {
			if !strings.Contains(m, want) {
				t.Errorf("/metrics lacks %s", want)
			}
		}
	})

	t.Run("no answer holds a secret", func(t *testing.T) {
		f.bodiesMu.Lock()
		all := strings.Join(f.bodies, "\n")
		f.bodiesMu.Unlock()
		for _, s := range []string{rootToken, acmeToken, globexToken, token, destSecret, pullToken, f.ok.URL, f.flaky.URL} {
			if strings.Contains(all, s) {
				t.Errorf("an admin answer contains %q", s)
			}
		}
		if l := f.log.String(); strings.Contains(l, rootToken) || strings.Contains(l, acmeToken) || strings.Contains(l, "first message") {
			t.Error("the log holds an admin token or message text")
		}
	})
}

func TestAdminOffWithoutTokens(t *testing.T) {
	rs := redistest.Start(t)
	logs := &syncWriter{}
	srv := startServer(t, fmt.Sprintf(`
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0"}
redis: {url: %q}
tenants:
  acme:
    sources:
      tw: {carrier: twilio, secret: %s}
    destinations:
      app: {url: "https://app.example.com/in", secret: %s}
    routes:
      - to: [app]
`, rs.URL(), token, destSecret), logs)
	for _, path := range []string{"/admin/v1/tenants", "/admin/v1/tenants/acme/stats"} {
		req, _ := http.NewRequest("GET", "http://"+srv.AdminAddr+path, nil)
		req.Header.Set("Authorization", "Bearer anything")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound || !strings.Contains(string(body), `"error":"the admin API is off`) {
			t.Errorf("%s with no admin token configured: %d %s, want 404 with a JSON error", path, resp.StatusCode, body)
		}
	}
	if !strings.Contains(logs.String(), "the admin API is off") {
		t.Errorf("the log does not say the admin API is off:\n%s", logs.String())
	}
	resp, err := http.Get("http://" + srv.AdminAddr + "/metrics")
	if err != nil || resp.StatusCode != 200 {
		t.Errorf("/metrics = %v, %v; want 200 without a token", resp, err)
	}
}

// TestOpenAPIMatchesServer checks the OpenAPI document against the running
// server, both listeners: every documented path, method and status is
// produced by a real request to the listener the document names for that
// path (its own servers, else the document's), and every case here is
// documented.
func TestOpenAPIMatchesServer(t *testing.T) {
	var doc struct {
		OpenAPI string `yaml:"openapi"`
		Servers []struct {
			URL string `yaml:"url"`
		} `yaml:"servers"`
		Paths map[string]map[string]any `yaml:"paths"`
	}
	if err := yaml.Unmarshal(OpenAPI, &doc); err != nil {
		t.Fatalf("openapi.yaml: %v", err)
	}
	if !strings.HasPrefix(doc.OpenAPI, "3.1") {
		t.Errorf("openapi = %q, want 3.1.x", doc.OpenAPI)
	}
	if len(doc.Servers) == 0 {
		t.Fatal("openapi.yaml names no server")
	}
	f := mustAdminFixture(t)

	// The document's server URLs are the listeners' defaults.
	listeners := map[string]string{
		"http://127.0.0.1:9090": f.srv.AdminAddr,   // server.admin_listen
		"http://127.0.0.1:8080": f.srv.IngressAddr, // server.listen
	}
	methods := []string{"get", "put", "post", "delete", "options", "head", "patch", "trace"}
	addr := map[string]string{} // documented path → the listener it is served on
	var documented []string
	for path, item := range doc.Paths {
		base := doc.Servers[0].URL
		if ss, _ := item["servers"].([]any); len(ss) > 0 {
			s, _ := ss[0].(map[string]any)
			base, _ = s["url"].(string)
		}
		a, ok := listeners[base]
		if !ok {
			t.Errorf("%s: server %q is not a listener's default URL", path, base)
			continue
		}
		if pull := strings.HasPrefix(path, "/v1/pull/"); pull != (a == f.srv.IngressAddr) {
			t.Errorf("%s is documented on %s, not on the listener that serves it", path, base)
		}
		addr[path] = a
		for method, op := range item {
			if !slices.Contains(methods, method) {
				continue
			}
			opMap, _ := op.(map[string]any)
			responses, _ := opMap["responses"].(map[string]any)
			if len(responses) == 0 {
				t.Errorf("%s %s documents no responses", method, path)
			}
			for status := range responses {
				documented = append(documented, strings.ToUpper(method)+" "+path+" "+status)
			}
		}
	}

	type call struct {
		tok, path string
		body      any
	}
	// do makes the request of case k ("METHOD path status") on the listener
	// of its documented path. A stream's body is not read: its status and
	// headers are the answer.
	do := func(k string, c call) (int, http.Header, string) {
		method, rest, _ := strings.Cut(k, " ")
		path, _, _ := strings.Cut(rest, " ")
		var rd io.Reader
		if c.body != nil {
			b, _ := json.Marshal(c.body)
			rd = bytes.NewReader(b)
		}
		req, err := http.NewRequest(method, "http://"+addr[path]+c.path, rd)
		if err != nil {
			t.Errorf("%s: %v", k, err)
			return 0, nil, ""
		}
		if c.tok != "" {
			req.Header.Set("Authorization", "Bearer "+c.tok)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Errorf("%s: %v", k, err)
			return 0, nil, ""
		}
		defer resp.Body.Close()
		if strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
			return resp.StatusCode, resp.Header, ""
		}
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, resp.Header, string(b)
	}

	f.send(t, "acme", "SM00000000000000000000000000000c01", "openapi")
	var dl struct {
		Entries []map[string]any `json:"entries"`
	}
	waitUntil(t, "a dead letter", func() bool {
		f.get(t, rootToken, "/admin/v1/tenants/acme/dlq", &dl)
		return len(dl.Entries) == 1
	})
	evID := dl.Entries[0]["event_id"].(string)
	since := time.Now().Add(-time.Hour).Format(time.RFC3339)
	// A hand-out of globex's pull destination, for a real acknowledgement.
	f.send(t, "globex", "SM00000000000000000000000000000c02", "pulled")
	var pulled struct {
		Events []struct {
			Receipt string `json:"receipt"`
		} `json:"events"`
	}
	const pollCase = "GET /v1/pull/{tenant}/{destination} 200"
	if code, _, b := do(pollCase, call{pullToken, "/v1/pull/globex/inbox?max=1", nil}); code != http.StatusOK ||
		json.Unmarshal([]byte(b), &pulled) != nil || len(pulled.Events) != 1 {
		t.Fatalf("poll of globex's inbox = %d %s, want its one event", code, b)
	}
	receipts := map[string]any{"receipts": []string{pulled.Events[0].Receipt}}

	ok := func(path string, body any) call { return call{rootToken, path, body} }
	pull := func(path string, body any) call { return call{pullToken, path, body} }
	cases := map[string]call{
		"GET /admin/v1/openapi.yaml 200":                 ok("/admin/v1/openapi.yaml", nil),
		"GET /admin/v1/openapi.yaml 401":                 {"", "/admin/v1/openapi.yaml", nil},
		"GET /admin/v1/tenants 200":                      ok("/admin/v1/tenants", nil),
		"GET /admin/v1/tenants 401":                      {"", "/admin/v1/tenants", nil},
		"GET /admin/v1/tenants/{tenant}/stats 200":       ok("/admin/v1/tenants/acme/stats", nil),
		"GET /admin/v1/tenants/{tenant}/stats 401":       {"x", "/admin/v1/tenants/acme/stats", nil},
		"GET /admin/v1/tenants/{tenant}/stats 403":       {globexToken, "/admin/v1/tenants/acme/stats", nil},
		"GET /admin/v1/tenants/{tenant}/stats 404":       ok("/admin/v1/tenants/nobody/stats", nil),
		"GET /admin/v1/tenants/{tenant}/dlq 200":         ok("/admin/v1/tenants/acme/dlq?destination=flaky&limit=10", nil),
		"GET /admin/v1/tenants/{tenant}/dlq 400":         ok("/admin/v1/tenants/acme/dlq?limit=-1", nil),
		"GET /admin/v1/tenants/{tenant}/dlq 401":         {"", "/admin/v1/tenants/acme/dlq", nil},
		"GET /admin/v1/tenants/{tenant}/dlq 403":         {globexToken, "/admin/v1/tenants/acme/dlq", nil},
		"GET /admin/v1/tenants/{tenant}/dlq 404":         ok("/admin/v1/tenants/nobody/dlq", nil),
		"DELETE /admin/v1/tenants/{tenant}/dlq 200":      ok("/admin/v1/tenants/acme/dlq?id=1-1", nil),
		"DELETE /admin/v1/tenants/{tenant}/dlq 400":      ok("/admin/v1/tenants/acme/dlq", nil),
		"DELETE /admin/v1/tenants/{tenant}/dlq 401":      {"", "/admin/v1/tenants/acme/dlq?all=true", nil},
		"DELETE /admin/v1/tenants/{tenant}/dlq 403":      {globexToken, "/admin/v1/tenants/acme/dlq?all=true", nil},
		"DELETE /admin/v1/tenants/{tenant}/dlq 404":      ok("/admin/v1/tenants/nobody/dlq?all=true", nil),
		"POST /admin/v1/tenants/{tenant}/dlq/replay 200": ok("/admin/v1/tenants/acme/dlq/replay", map[string]any{"ids": []string{"1-1"}}),
		"POST /admin/v1/tenants/{tenant}/dlq/replay 400": ok("/admin/v1/tenants/acme/dlq/replay", map[string]any{}),
		"POST /admin/v1/tenants/{tenant}/dlq/replay 401": {"", "/admin/v1/tenants/acme/dlq/replay", map[string]any{"all": true}},
		"POST /admin/v1/tenants/{tenant}/dlq/replay 403": {globexToken, "/admin/v1/tenants/acme/dlq/replay", map[string]any{"all": true}},
		"POST /admin/v1/tenants/{tenant}/dlq/replay 404": ok("/admin/v1/tenants/nobody/dlq/replay", map[string]any{"all": true}),
		"GET /admin/v1/tenants/{tenant}/events 200":      ok("/admin/v1/tenants/acme/events?message_id=SM00000000000000000000000000000c01", nil),
		"GET /admin/v1/tenants/{tenant}/events 400":      ok("/admin/v1/tenants/acme/events", nil),
		"GET /admin/v1/tenants/{tenant}/events 401":      {"", "/admin/v1/tenants/acme/events?message_id=x", nil},
		"GET /admin/v1/tenants/{tenant}/events 403":      {globexToken, "/admin/v1/tenants/acme/events?message_id=x", nil},
		"GET /admin/v1/tenants/{tenant}/events 404":      ok("/admin/v1/tenants/nobody/events?message_id=x", nil),
		"GET /admin/v1/tenants/{tenant}/events/{id} 200": ok("/admin/v1/tenants/acme/events/"+evID, nil),
		"GET /admin/v1/tenants/{tenant}/events/{id} 401": {"", "/admin/v1/tenants/acme/events/" + evID, nil},
		"GET /admin/v1/tenants/{tenant}/events/{id} 403": {globexToken, "/admin/v1/tenants/acme/events/" + evID, nil},
		"GET /admin/v1/tenants/{tenant}/events/{id} 404": ok("/admin/v1/tenants/acme/events/evt_none", nil),
		"POST /admin/v1/tenants/{tenant}/recover 200":    ok("/admin/v1/tenants/acme/recover", map[string]any{"destination": "ok", "since": since}),
		"POST /admin/v1/tenants/{tenant}/recover 400":    ok("/admin/v1/tenants/acme/recover", map[string]any{"destination": "ok"}),
		"POST /admin/v1/tenants/{tenant}/recover 401":    {"", "/admin/v1/tenants/acme/recover", map[string]any{"destination": "ok", "since": since}},
		"POST /admin/v1/tenants/{tenant}/recover 403":    {globexToken, "/admin/v1/tenants/acme/recover", map[string]any{"destination": "ok", "since": since}},
		"POST /admin/v1/tenants/{tenant}/recover 404":    ok("/admin/v1/tenants/acme/recover", map[string]any{"destination": "nope", "since": since}),
		"GET /healthz 200":                               {"", "/healthz", nil},
		"GET /readyz 200":                                {"", "/readyz", nil},
		"GET /metrics 200":                               {"", "/metrics", nil},
		pollCase:                                         pull("/v1/pull/globex/inbox?max=5&wait=10ms", nil),
		"GET /v1/pull/{tenant}/{destination} 400":        pull("/v1/pull/globex/inbox?wait=31s", nil),
		"GET /v1/pull/{tenant}/{destination} 401":        {globexToken, "/v1/pull/globex/inbox", nil}, // an admin token is not the pull token
		"POST /v1/pull/{tenant}/{destination}/ack 200":   pull("/v1/pull/globex/inbox/ack", receipts),
		"POST /v1/pull/{tenant}/{destination}/ack 400":   pull("/v1/pull/globex/inbox/ack", map[string]any{"receipts": "not a list"}),
		"POST /v1/pull/{tenant}/{destination}/ack 401":   pull("/v1/pull/globex/app/ack", receipts), // a push destination
		"GET /v1/pull/{tenant}/{destination}/stream 200": pull("/v1/pull/globex/inbox/stream?max=1", nil),
		"GET /v1/pull/{tenant}/{destination}/stream 400": pull("/v1/pull/globex/inbox/stream?max=101", nil),
		"GET /v1/pull/{tenant}/{destination}/stream 401": pull("/v1/pull/acme/inbox/stream", nil), // no such destination
		"GET /admin/v1/tenants/{tenant}/stats 503":       ok("/admin/v1/tenants/acme/stats", nil),
		"GET /admin/v1/tenants/{tenant}/dlq 503":         ok("/admin/v1/tenants/acme/dlq", nil),
		"DELETE /admin/v1/tenants/{tenant}/dlq 503":      ok("/admin/v1/tenants/acme/dlq?all=true", nil),
		"POST /admin/v1/tenants/{tenant}/dlq/replay 503": ok("/admin/v1/tenants/acme/dlq/replay", map[string]any{"all": true}),
		"GET /admin/v1/tenants/{tenant}/events 503":      ok("/admin/v1/tenants/acme/events?message_id=x", nil),
		"GET /admin/v1/tenants/{tenant}/events/{id} 503": ok("/admin/v1/tenants/acme/events/"+evID, nil),
		"POST /admin/v1/tenants/{tenant}/recover 503":    ok("/admin/v1/tenants/acme/recover", map[string]any{"destination": "ok", "since": since}),
		"GET /readyz 503":                                {"", "/readyz", nil},
		"GET /v1/pull/{tenant}/{destination} 503":        pull("/v1/pull/globex/inbox", nil),
		"POST /v1/pull/{tenant}/{destination}/ack 503":   pull("/v1/pull/globex/inbox/ack", receipts),
	}
	for k := range cases {
		if !slices.Contains(documented, k) {
			t.Errorf("%s is served but not documented in openapi.yaml", k)
		}
	}
	// 503s last, with Redis gone; concurrently, as each waits for the
	// client's retry.
	var down []string
	for _, k := range documented {
		c, ok := cases[k]
		if !ok {
			t.Errorf("%s is documented but no request here produces it", k)
			continue
		}
		if strings.HasSuffix(k, " 503") {
			down = append(down, k)
			continue
		}
		if code, h, b := do(k, c); fmt.Sprint(code) != k[len(k)-3:] {
			t.Errorf("%s: got %d %s", k, code, b)
		} else if code == http.StatusUnauthorized && h.Get("WWW-Authenticate") == "" {
			t.Errorf("%s: no WWW-Authenticate header", k)
		}
	}
	f.rs.Kill()
	var wg sync.WaitGroup
	for _, k := range down {
		wg.Add(1)
		go func() {
			defer wg.Done()
			code, h, b := do(k, cases[k])
			if code != http.StatusServiceUnavailable || h.Get("Retry-After") == "" {
				t.Errorf("%s: got %d (Retry-After %q) %s", k, code, h.Get("Retry-After"), b)
			}
		}()
	}
	wg.Wait()
}

func TestRateLimitWaitsMetric(t *testing.T) {
	rs := redistest.Start(t)
	slow := newRecorder(t, func() int { return http.StatusNoContent })
	f := &adminFixture{rs: rs, log: &syncWriter{}}
	f.srv = startServer(t, fmt.Sprintf(`
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0"}
redis: {url: %q}
delivery: {allow_private_networks: true}
tenants:
  acme:
    sources:
      tw: {carrier: twilio, secret: %s}
    destinations:
      slow: {url: %q, secret: %s, rate: {per_second: 2, burst: 1}}
    routes:
      - to: [slow]
`, rs.URL(), token, slow.URL, destSecret), f.log)
	for i := range 4 {
		f.send(t, "acme", fmt.Sprintf("SM0000000000000000000000000000d%03d", i), "x")
	}
	waitUntil(t, "four deliveries", func() bool { return len(slow.received()) == 4 })
	resp, err := http.Get("http://" + f.srv.AdminAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var waits float64
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, `switchboard_rate_limit_waits_total{destination="slow",tenant="acme"} `) {
			_, _ = fmt.Sscan(line[strings.LastIndexByte(line, ' ')+1:], &waits)
		}
	}
	if waits < 1 {
		t.Errorf("switchboard_rate_limit_waits_total = %v after four deliveries at 2/s with burst 1, want at least 1", waits)
	}
}

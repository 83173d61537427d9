package gateway

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/switchboard-gw/switchboard/policy"
	"github.com/switchboard-gw/switchboard/queue"
)

// The pull API, on the carrier-facing listener, for apps that cannot
// receive webhooks (destinations with type: pull):
//
//	GET  /v1/pull/{tenant}/{destination}?max=10&wait=30s   long-poll
//	POST /v1/pull/{tenant}/{destination}/ack                {"receipts": [...]}
//	GET  /v1/pull/{tenant}/{destination}/stream?max=10      Server-Sent Events
//
// Every call needs the destination's token as a bearer token; a wrong
// token, an unknown tenant or destination, or a push destination all get the
// same 401. Hand-outs are queue.Pull: the destination's own stream and
// consumer group, nothing stored twice.

// Limits of the pull API's parameters.
const (
	pullDefaultMax = 10
	pullMaxMax     = 100
	pullMaxWait    = 30 * time.Second
	// pullMaxReceipts bounds one acknowledgement.
	pullMaxReceipts = 1000
	// pullPoll is how often a waiting long-poll or stream looks again when
	// nothing woke it: for events enqueued by another instance, hand-outs
	// whose visibility timeout passed, and acks on another instance.
	pullPoll = 500 * time.Millisecond
	// ssePing is how often an idle stream sends a comment, so proxies and
	// clients see it alive.
	ssePing = 15 * time.Second
	// sseWrite bounds one write to a stream's client.
	sseWrite = 30 * time.Second
)

// pullHub wakes the long-polls and streams of a tenant when it enqueues or
// acknowledges, and ends them all at shutdown. The zero value is ready.
type pullHub struct {
	mu   sync.Mutex
	subs map[string]chan struct{} // per tenant, closed at its next change
	stop chan struct{}
}

// changed returns a channel that is closed at tenant's next notify. Take it
// before looking, so that no change between the look and the wait is
// missed.
func (h *pullHub) changed(tenant string) <-chan struct{} {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.subs == nil {
		h.subs = map[string]chan struct{}{}
	}
	ch := h.subs[tenant]
	if ch == nil {
		ch = make(chan struct{})
		h.subs[tenant] = ch
	}
	return ch
}

// notify wakes whoever waits on tenant.
func (h *pullHub) notify(tenant string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if ch := h.subs[tenant]; ch != nil {
		close(ch)
		delete(h.subs, tenant)
	}
}

// stopped is closed once shutdown is called.
func (h *pullHub) stopped() <-chan struct{} {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.stop == nil {
		h.stop = make(chan struct{})
	}
	return h.stop
}

// shutdown answers every waiting long-poll and ends every stream; the
// server calls it when it starts shutting down (they would hold it up).
func (h *pullHub) shutdown() {
	s := h.stopped()
	h.mu.Lock()
	defer h.mu.Unlock()
	select {
	case <-s:
	default:
		close(h.stop)
	}
}

func (g *Gateway) pullRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /v1/pull/{tenant}/{destination}", getOnly(g.pullPoll))
	mux.HandleFunc("POST /v1/pull/{tenant}/{destination}/ack", g.pullAck)
	mux.HandleFunc("GET /v1/pull/{tenant}/{destination}/stream", getOnly(g.pullStream))
	// Anything else under /v1/pull/ gets a JSON error like the API's own:
	// 405 with Allow for a known path, else 404.
	mux.HandleFunc("/v1/pull/", func(w http.ResponseWriter, r *http.Request) {
		if allow := methodsAt(mux, r, "/v1/pull/", http.MethodGet, http.MethodPost); len(allow) > 0 {
			w.Header().Set("Allow", strings.Join(allow, ", "))
			pullError(w, http.StatusMethodNotAllowed, "method "+r.Method+" not allowed here (allowed: "+strings.Join(allow, ", ")+")")
			return
		}
		pullError(w, http.StatusNotFound, "no such pull endpoint: /v1/pull/{tenant}/{destination}[/ack|/stream]")
	})
}

// getOnly refuses HEAD, which a GET pattern also matches: a HEAD of the
// long-poll or the stream would hand out events (spending an attempt of
// each) that nobody receives, say to a monitor probing the URL.
func getOnly(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet {
			w.Header().Set("Allow", http.MethodGet)
			pullError(w, http.StatusMethodNotAllowed, "method "+r.Method+" not allowed here (allowed: GET): it would hand out events")
			return
		}
		h(w, r)
	}
}

// noPull stands in for a destination that does not exist or is not type
// pull: its token is compared all the same, so the answer takes as long.
var noPull = &policy.Destination{Type: policy.TypePull, Token: rand.Text()}

// pullAuth finds the pull destination the request names and checks its
// bearer token. On failure it has answered 401.
func (g *Gateway) pullAuth(w http.ResponseWriter, r *http.Request) (string, *policy.Destination, bool) {
	tid, did := r.PathValue("tenant"), r.PathValue("destination")
	var d *policy.Destination
	if t := g.config().Tenants[tid]; t != nil {
		d = t.Destinations[did]
	}
	known := d != nil && d.IsPull()
	if !known {
		d = noPull
	}
	token := bearerToken(r)
	if !d.TokenMatches(token) || !known {
		w.Header().Set("WWW-Authenticate", `Bearer realm="switchboard pull"`)
		pullError(w, http.StatusUnauthorized, "unauthorized")
		g.log.Warn("pull refused", "tenant", tid, "destination", did, "path", r.URL.Path,
			"reason", "wrong token, unknown destination or not type pull")
		return "", nil, false
	}
	return tid, d, true
}

// pulled is one hand-out as the app sees it.
type pulled struct {
	Receipt string          `json:"receipt"`
	Attempt int             `json:"attempt"`
	Event   json.RawMessage `json:"event"`
}

func toPulled(hs []queue.Handout) []pulled {
	out := make([]pulled, len(hs))
	for i, h := range hs {
		out[i] = pulled{Receipt: h.Receipt, Attempt: h.Attempt, Event: h.Event}
	}
	return out
}

// pullPoll serves GET /v1/pull/{tenant}/{destination}: it answers as soon
// as at least one event is handed out, or when wait has passed (with no
// events), or at shutdown.
func (g *Gateway) pullPoll(w http.ResponseWriter, r *http.Request) {
	tid, d, ok := g.pullAuth(w, r)
	if !ok {
		return
	}
	q := r.URL.Query()
	most, err := pullMax(q.Get("max"))
	if err != nil {
		pullError(w, http.StatusBadRequest, err.Error())
		return
	}
	wait, err := pullWait(q.Get("wait"))
	if err != nil {
		pullError(w, http.StatusBadRequest, err.Error())
		return
	}
	// The request is read; a long wait must not run into the server's read
	// timeout (which would cancel the request's context).
	rc := http.NewResponseController(w)
	_ = rc.SetReadDeadline(time.Time{})
	_ = rc.SetWriteDeadline(time.Now().Add(wait + sseWrite))

	ctx := r.Context()
	deadline := time.Now().Add(wait)
	p := g.pullArgs(tid, d, most)
	for {
		changed := g.pulls.changed(tid)
		hs, err := g.pullOnce(r, tid, d, p, nil)
		if err != nil {
			if ctx.Err() != nil {
				return // the app hung up
			}
			w.Header().Set("Retry-After", "1")
			pullError(w, http.StatusServiceUnavailable, "store unavailable; try again")
			return
		}
		left := time.Until(deadline)
		if len(hs) > 0 || left <= 0 {
			pullJSON(w, http.StatusOK, map[string]any{"events": toPulled(hs)})
			return
		}
		t := time.NewTimer(min(left, pullPoll))
		select {
		case <-changed:
		case <-t.C:
		case <-g.pulls.stopped():
			deadline = time.Now() // look once more, then answer
		case <-ctx.Done():
			t.Stop()
			return // the app is gone; nothing was handed out
		}
		t.Stop()
	}
}

func (g *Gateway) pullArgs(tid string, d *policy.Destination, most int) *queue.Pull {
	return &queue.Pull{
		Tenant: tid, Destination: d.ID, Max: most,
		Visibility: d.VisibilityTimeout.D(), MaxAttempts: d.Retry.MaxAttempts,
	}
}

// pullOnce hands out what is available (resuming after lastReceipt when it
// is not nil) and logs it.
func (g *Gateway) pullOnce(r *http.Request, tid string, d *policy.Destination, p *queue.Pull, lastReceipt *string) ([]queue.Handout, error) {
	p.Now = g.now()
	var hs []queue.Handout
	var dead []queue.PullOutcome
	var err error
	if lastReceipt != nil {
		hs, dead, err = g.store.PullResume(r.Context(), p, *lastReceipt)
	} else {
		hs, dead, err = g.store.Pull(r.Context(), p)
	}
	log := g.log.With("tenant", tid, "destination", d.ID)
	if err != nil {
		if r.Context().Err() == nil { // not merely the app hanging up
			log.Error("pull failed", "err", err.Error())
		}
		return nil, err
	}
	deadMsg, againMsg := queue.PullDeadError, "not acknowledged within the visibility timeout"
	if lastReceipt != nil {
		deadMsg, againMsg = queue.PullResumeDeadError, "sent again when its stream reconnected (Last-Event-ID)"
	}
	g.pullDead(tid, d, dead, deadMsg)
	if len(hs) > 0 {
		ids := make([]string, len(hs))
		for i, h := range hs {
			ids[i] = h.EventID
			if h.Attempt > 1 { // what became of the hand-out before this one
				g.recordPull(tid, d.ID, queue.PullOutcome{EventID: h.EventID, Attempt: h.Attempt - 1}, "retry", againMsg)
			}
		}
		log.Info("events handed out", "events", len(hs), "event_ids", ids, "session", p.Session,
			"resumed", lastReceipt != nil)
	}
	return hs, nil
}

// sweepPulls dead-letters, every second, the events of each pull
// destination whose last hand-out expired with none left
// (queue.Store.PullSweep): an app that stopped pulling would otherwise
// leave its last events in flight for good, out of the dead letters.
func (g *Gateway) sweepPulls(ctx context.Context) {
	failing := false // logged once per outage, not per destination and second
	every(ctx, time.Second, func() {
		if g.spool != nil && g.spool.down.Load() {
			return // Redis is known to be away: ask it nothing
		}
		cfg := g.config()
		ok := true
		for _, tid := range cfg.TenantIDs() {
			for _, d := range cfg.Tenants[tid].Destinations {
				if !d.IsPull() {
					continue
				}
				p := g.pullArgs(tid, d, 1)
				p.Now = g.now()
				dead, err := g.store.PullSweep(ctx, p)
				g.pullDead(tid, d, dead, queue.PullDeadError) // what it did before an error too
				if err != nil {
					if ok && !failing && ctx.Err() == nil {
						g.log.Warn("dead-lettering spent pull hand-outs failed; tried again every second", "tenant", tid, "destination", d.ID, "err", err.Error())
					}
					ok = false
				}
			}
		}
		if ok && failing {
			g.log.Info("dead-lettering spent pull hand-outs works again")
		}
		failing = !ok
	})
}

// pullDead counts, records and logs the events a pull destination
// dead-lettered; format is their last error (%d: hand-outs).
func (g *Gateway) pullDead(tid string, d *policy.Destination, dead []queue.PullOutcome, format string) {
	if len(dead) == 0 {
		return
	}
	g.metrics.pulled(tid, d.ID, 0, len(dead))
	ids := make([]string, len(dead))
	for i, o := range dead {
		ids[i] = o.EventID
		g.recordPull(tid, d.ID, o, "dead_letter", fmt.Sprintf(format, o.Attempt))
	}
	g.log.Warn("pulled events dead-lettered: handed out max_attempts times, never acknowledged",
		"tenant", tid, "destination", d.ID, "dead_lettered", len(dead), "event_ids", ids, "max_attempts", d.Retry.MaxAttempts)
}

// recordPull writes what became of a hand-out into its event's history:
// the attempt, at the time its outcome was known.
func (g *Gateway) recordPull(tid, dest string, o queue.PullOutcome, outcome, msg string) {
	if g.attempts != nil && o.EventID != "" {
		g.attempts.Record(tid, o.EventID, queue.Attempt{Time: g.now(), Destination: dest, Attempt: o.Attempt, Outcome: outcome, Error: msg})
	}
}

// pullAck serves POST …/ack: {"receipts": [...]} → {"acked": n,
// "invalid": [receipts that acknowledged nothing]}.
func (g *Gateway) pullAck(w http.ResponseWriter, r *http.Request) {
	tid, d, ok := g.pullAuth(w, r)
	if !ok {
		return
	}
	var req struct {
		Receipts *[]string `json:"receipts"`
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 1<<20))
	if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
		pullError(w, http.StatusRequestEntityTooLarge, "body over 1 MiB")
		return
	}
	if err == nil {
		err = json.Unmarshal(body, &req)
	}
	switch {
	case err != nil || req.Receipts == nil:
		pullError(w, http.StatusBadRequest, `body must be JSON: {"receipts": ["…"]}`)
		return
	case len(*req.Receipts) > pullMaxReceipts:
		pullError(w, http.StatusBadRequest, fmt.Sprintf("at most %d receipts per acknowledgement", pullMaxReceipts))
		return
	}
	receipts := *req.Receipts
	acked, invalid, err := g.store.PullAck(r.Context(), tid, d.ID, receipts)
	if err != nil {
		g.log.Error("pull ack failed", "tenant", tid, "destination", d.ID, "err", err.Error())
		w.Header().Set("Retry-After", "1")
		pullError(w, http.StatusServiceUnavailable, "store unavailable; try again")
		return
	}
	if invalid == nil {
		invalid = []string{}
	}
	for _, o := range acked {
		g.recordPull(tid, d.ID, o, "delivered", "")
	}
	if acked := len(receipts) - len(invalid); acked > 0 {
		g.metrics.pulled(tid, d.ID, acked, 0)
		g.pulls.notify(tid) // a stream at its cap may go on
	}
	pullJSON(w, http.StatusOK, map[string]any{"acked": len(receipts) - len(invalid), "invalid": invalid})
}

// pullStream serves GET …/stream as Server-Sent Events: each hand-out is
// one message whose id is its receipt and whose data is the same object a
// long-poll returns. At most max (default 10) of the stream's hand-outs
// are unacknowledged at a time. A client that reconnects with
// Last-Event-ID gets again, at once, what the dropped stream sent after
// that event and it has not acknowledged.
func (g *Gateway) pullStream(w http.ResponseWriter, r *http.Request) {
	tid, d, ok := g.pullAuth(w, r)
	if !ok {
		return
	}
	most, err := pullMax(r.URL.Query().Get("max"))
	if err != nil {
		pullError(w, http.StatusBadRequest, err.Error())
		return
	}
	rc := http.NewResponseController(w)
	_ = rc.SetReadDeadline(time.Time{})
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no") // nginx: do not buffer the stream
	w.WriteHeader(http.StatusOK)

	log := g.log.With("tenant", tid, "destination", d.ID)
	p := g.pullArgs(tid, d, most)
	p.Session, p.Unacked = newSession(), most
	send := func(chunk string) bool {
		_ = rc.SetWriteDeadline(time.Now().Add(sseWrite))
		if _, err := io.WriteString(w, chunk); err != nil {
			return false
		}
		return rc.Flush() == nil
	}
	if !send("retry: 2000\n\n") {
		return
	}
	log.Info("pull stream opened", "session", p.Session)
	defer log.Info("pull stream closed", "session", p.Session)

	var resume *string
	if last := r.Header.Get("Last-Event-ID"); last != "" {
		resume = &last
	}
	ctx := r.Context()
	lastSent := time.Now()
	for fails := 0; ; {
		changed := g.pulls.changed(tid)
		hs, err := g.pullOnce(r, tid, d, p, resume)
		resume = nil
		wait := pullPoll
		switch {
		case err != nil && ctx.Err() != nil:
			return
		case err != nil:
			fails++
			wait = min(time.Duration(fails)*time.Second, 5*time.Second)
		case len(hs) > 0:
			fails = 0
			p.Seq += int64(len(hs))
			var b strings.Builder
			for _, o := range toPulled(hs) {
				data, _ := json.Marshal(o)
				fmt.Fprintf(&b, "id: %s\ndata: %s\n\n", o.Receipt, data)
			}
			if !send(b.String()) {
				return // the unacknowledged ones come again after the visibility timeout, or at resume
			}
			lastSent = time.Now()
			continue
		}
		if time.Since(lastSent) >= ssePing {
			if !send(": ping\n\n") {
				return
			}
			lastSent = time.Now()
		}
		t := time.NewTimer(wait)
		select {
		case <-changed:
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return
		case <-g.pulls.stopped():
			t.Stop()
			return
		}
		t.Stop()
	}
}

// newSession names one stream.
func newSession() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// pullMax parses max: a whole number from 1 to 100, default 10.
func pullMax(s string) (int, error) {
	if s == "" {
		return pullDefaultMax, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > pullMaxMax {
		return 0, fmt.Errorf("max must be a whole number from 1 to %d", pullMaxMax)
	}
	return n, nil
}

// pullWait parses wait: a duration ("30s", "500ms"; a bare number is
// seconds) of at most 30s, default 0.
func pullWait(s string) (time.Duration, error) {
	if s == "" {
		return 0, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil && s[len(s)-1] >= '0' && s[len(s)-1] <= '9' {
		d, err = time.ParseDuration(s + "s") // a bare number is seconds ("0.5" too); overflow is an error
	}
	if err != nil || d < 0 || d > pullMaxWait {
		return 0, errors.New("wait must be a duration (like 500ms or 30s) of at most 30s")
	}
	return d, nil
}

func pullError(w http.ResponseWriter, code int, msg string) {
	pullJSON(w, code, map[string]string{"error": msg})
}

func pullJSON(w http.ResponseWriter, code int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		slog.Error("encode answer", "err", err.Error()) // a bug: every value here encodes
		code, b = http.StatusInternalServerError, []byte(`{"error":"internal error"}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_, _ = w.Write(append(b, '\n'))
}

// bearerToken is the token of an Authorization: Bearer header (the scheme
// in any case, RFC 7235), or "".
func bearerToken(r *http.Request) string {
	scheme, tok, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return ""
	}
	return strings.TrimSpace(tok)
}

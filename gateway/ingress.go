package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"

	switchboard "github.com/switchboard-gw/switchboard"
	"github.com/switchboard-gw/switchboard/gateway/carrier"
	"github.com/switchboard-gw/switchboard/queue"
)

// keptHeaders are the request headers stored with the raw callback.
var keptHeaders = []string{"Content-Type", "User-Agent", "I-Twilio-Idempotency-Token"}

// ServeHTTP handles POST (or GET) /hooks/{tenant}/{source}.
func (g *Gateway) hook(w http.ResponseWriter, r *http.Request) {
	start := g.now()
	tid, sid := r.PathValue("tenant"), r.PathValue("source")
	log := g.log.With("tenant", tid, "source", sid)
	t := g.tenants[tid]
	var s *source
	if t != nil {
		s = t.sources[sid]
	}
	if s == nil {
		g.fail(w, log, http.StatusNotFound, "unknown tenant or source", nil)
		return
	}
	log = log.With("carrier", s.cfg.Carrier)
	if t.ingress != nil {
		if res := t.ingress.ReserveN(start, 1); res.OK() {
			if d := res.DelayFrom(start); d > 0 {
				res.CancelAt(start)
				w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(d.Seconds()))))
				g.fail(w, log, http.StatusTooManyRequests, "tenant ingress rate exceeded", nil)
				return
			}
		}
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, g.cfg.Server.MaxBodyBytes))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			g.fail(w, log, http.StatusRequestEntityTooLarge, "body larger than server.max_body_bytes", nil)
			return
		}
		g.fail(w, log, http.StatusBadRequest, "cannot read body", err)
		return
	}
	req := &carrier.Request{
		Method:   r.Method,
		URL:      g.publicURL(r),
		Header:   r.Header,
		Body:     body,
		RawQuery: r.URL.RawQuery,
		Remote:   remoteAddr(r),
		Now:      start,
	}
	proof, err := s.carrier.Verify(req)
	if err != nil {
		code := http.StatusUnauthorized
		if errors.Is(err, switchboard.ErrUnavailable) {
			code = http.StatusServiceUnavailable
			w.Header().Set("Retry-After", "5")
		}
		g.fail(w, log.With("url", redactURL(req.URL)), code, "verification failed", err)
		return
	}
	events, err := s.carrier.Parse(req)
	if err != nil {
		g.fail(w, log, http.StatusBadRequest, "cannot parse callback", err)
		return
	}
	if proof.Nonce != "" {
		fresh, err := g.store.Remember(r.Context(), tid, sid+":"+proof.Nonce, proof.TTL)
		if err != nil {
			w.Header().Set("Retry-After", "1")
			g.fail(w, log, http.StatusServiceUnavailable, "store unavailable", err)
			return
		}
		if !fresh {
			g.fail(w, log, http.StatusUnauthorized, "verification failed", errors.New("replayed nonce"))
			return
		}
	}

	raw := rawJSON(r, body)
	entries := make([]*queue.Entry, 0, len(events))
	routed := 0
	for i := range events {
		e := &events[i]
		e.ID = switchboard.NewEventID(start)
		e.Timestamp = switchboard.NewTime(start)
		e.Tenant, e.Source, e.Carrier = tid, sid, s.cfg.Carrier
		dests := t.cfg.Route(e)
		if len(dests) == 0 {
			log.Info("no route takes this event; not stored", "event_id", e.ID, "type", e.Type)
			continue
		}
		routed++
		b, err := json.Marshal(e)
		if err != nil {
			g.fail(w, log, http.StatusInternalServerError, "cannot encode event", err)
			return
		}
		entry := &queue.Entry{
			Tenant:       tid,
			DedupKey:     e.DedupKey(),
			EventID:      e.ID,
			Event:        b,
			Destinations: dests,
			Now:          start,
		}
		for _, d := range dests {
			if s.rawFor[d] {
				entry.Raw = raw
				entry.RawFor = append(entry.RawFor, d)
			}
		}
		entries = append(entries, entry)
	}
	var fresh []bool
	if len(entries) > 0 {
		fresh, err = g.store.Enqueue(r.Context(), g.cfg.Dedup.TTL.D(), entries...)
		if err != nil {
			w.Header().Set("Retry-After", "1")
			g.fail(w, log, http.StatusServiceUnavailable, "store unavailable; try again", err)
			return
		}
		if g.wake != nil {
			g.wake(tid)
		}
	}
	dups := 0
	ids := make([]string, 0, len(entries))
	for i, e := range entries {
		if !fresh[i] {
			dups++
			continue
		}
		ids = append(ids, e.EventID)
	}
	resp := s.carrier.Reply(req, events)
	if resp.ContentType != "" {
		w.Header().Set("Content-Type", resp.ContentType)
	}
	if resp.Status == 0 {
		resp.Status = http.StatusOK
	}
	w.WriteHeader(resp.Status)
	_, _ = w.Write(resp.Body)
	log.Info("callback", "code", resp.Status, "events", len(events), "routed", routed,
		"stored", len(ids), "duplicates", dups, "event_ids", ids, "ms", g.now().Sub(start).Milliseconds())
}

// fail answers with code and logs why, once. err may hold detail for the
// log (never secrets: the carriers and store keep them out of errors).
func (g *Gateway) fail(w http.ResponseWriter, log *slog.Logger, code int, msg string, err error) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(code)
	_, _ = io.WriteString(w, msg+"\n")
	args := []any{"code", code, "reason", msg}
	if err != nil {
		args = append(args, "err", err.Error())
	}
	level := slog.LevelWarn
	if code >= 500 {
		level = slog.LevelError
	}
	log.Log(context.Background(), level, "callback refused", args...)
}

// publicURL rebuilds the URL the carrier called, for URL-signed schemes:
// server.public_base_url + the request URI as sent when set; otherwise the
// scheme and host from trusted proxies' X-Forwarded-Proto/Host, else from
// the request itself. The path and query are never re-encoded.
func (g *Gateway) publicURL(r *http.Request) string {
	uri := r.RequestURI
	if uri == "" {
		uri = r.URL.RequestURI()
	}
	if base := g.cfg.Server.PublicBaseURL; base != "" {
		return base + uri
	}
	scheme, host := "http", r.Host
	if r.TLS != nil {
		scheme = "https"
	}
	if g.trustedPeer(r) {
		if p := firstValue(r.Header.Get("X-Forwarded-Proto")); p == "http" || p == "https" {
			scheme = p
		}
		if h := firstValue(r.Header.Get("X-Forwarded-Host")); h != "" {
			host = h
		}
	}
	return scheme + "://" + host + uri
}

func firstValue(v string) string {
	v, _, _ = strings.Cut(v, ",")
	return strings.TrimSpace(v)
}

func (g *Gateway) trustedPeer(r *http.Request) bool {
	if len(g.trusted) == 0 {
		return false
	}
	a := remoteAddr(r)
	for _, p := range g.trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

func remoteAddr(r *http.Request) netip.Addr {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	a, _ := netip.ParseAddr(host)
	return a.Unmap()
}

// rawJSON is the callback as received, for the raw format and replays.
func rawJSON(r *http.Request, body []byte) []byte {
	raw := switchboard.Raw{Method: r.Method, ContentType: r.Header.Get("Content-Type"), Query: r.URL.RawQuery, Body: body}
	for _, h := range keptHeaders {
		if v := r.Header.Get(h); v != "" {
			if raw.Headers == nil {
				raw.Headers = map[string]string{}
			}
			raw.Headers[h] = v
		}
	}
	b, _ := json.Marshal(raw)
	return b
}

// redactURL hides query values that may be secrets (url tokens) in logs.
func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil || u.RawQuery == "" {
		return s
	}
	q := u.Query()
	for k := range q {
		lk := strings.ToLower(k)
		if strings.Contains(lk, "token") || strings.Contains(lk, "key") || strings.Contains(lk, "secret") {
			q.Set(k, "REDACTED")
		}
	}
	u.RawQuery = q.Encode()
	return u.String()
}

package gateway

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

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
	rl := &reqLog{base: g.log, attrs: []any{"tenant", tid, "source", sid}}
	log := rl.get
	rt := g.routing() // this request follows one configuration throughout
	t := rt.tenants[tid]
	var s *source
	if t != nil {
		s = t.sources[sid]
	}
	if s == nil {
		g.fail(w, log(), http.StatusNotFound, "unknown tenant or source", nil)
		return
	}
	rl.with("carrier", s.cfg.Carrier)
	if t.ingress != nil {
		if res := t.ingress.ReserveN(start, 1); res.OK() {
			if d := res.DelayFrom(start); d > 0 {
				res.CancelAt(start)
				w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(d.Seconds()))))
				g.fail(w, log(), http.StatusTooManyRequests, "tenant ingress rate exceeded", nil)
				return
			}
		}
	}
	if r.ContentLength > rt.cfg.Server.MaxBodyBytes {
		// Refused before it is sent. Closing the connection keeps net/http
		// from reading the unwanted body before it answers.
		w.Header().Set("Connection", "close")
		g.fail(w, log(), http.StatusRequestEntityTooLarge, "body larger than server.max_body_bytes", nil)
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, rt.cfg.Server.MaxBodyBytes))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			g.fail(w, log(), http.StatusRequestEntityTooLarge, "body larger than server.max_body_bytes", nil)
			return
		}
		g.fail(w, log(), http.StatusBadRequest, "cannot read body", err)
		return
	}
	req := &carrier.Request{
		Method:   r.Method,
		URL:      rt.publicURL(r),
		Header:   r.Header,
		Body:     body,
		RawQuery: r.URL.RawQuery,
		Remote:   rt.clientAddr(r),
		Now:      start,
	}
	proof, err := s.carrier.Verify(req)
	if err != nil {
		g.metrics.verificationFailed(tid, sid, err)
		code := http.StatusUnauthorized
		if errors.Is(err, switchboard.ErrUnavailable) {
			code = http.StatusServiceUnavailable
			w.Header().Set("Retry-After", "5")
		}
		g.fail(w, log().With("url", redactURL(req.URL)), code, "verification failed", errors.New(redactURLsIn(err.Error())))
		return
	}
	events, err := s.carrier.Parse(req)
	if err != nil {
		var sub *carrier.SNSSubscription
		if errors.As(err, &sub) {
			g.confirmSNS(w, r, log(), s, req, sub)
			return
		}
		g.fail(w, log(), http.StatusBadRequest, "cannot parse callback", err)
		return
	}
	if err := validUTF8(events); err != nil {
		g.fail(w, log(), http.StatusBadRequest, "cannot parse callback", err)
		return
	}
	// A nonce is claimed now and recorded only once the events are stored:
	// a request with the same nonce meanwhile is told to try again (503),
	// and a callback refused with 503 gives its claim back, so that the
	// carrier's retry with the same nonce is accepted.
	nonceKey := ""
	if proof.Nonce != "" {
		// One key per nonce, '\n'-separated (queue.Store.Claim); a '\n'
		// inside one (signed data of the carrier's) is escaped.
		nonceKey = sid + ":" + strings.ReplaceAll(proof.Nonce, "\n", "%0A")
		if proof.Also != "" {
			nonceKey += "\n" + sid + ":" + strings.ReplaceAll(proof.Also, "\n", "%0A")
		}
		hold := nonceHold
		if s.cfg.Passthrough != nil { // the app's answer is awaited while the claim holds
			hold += passDeadline(start, s.cfg.Passthrough.Timeout.D(), s.cfg.Carrier).Sub(start)
		}
		state, token, err := g.claimNonce(r.Context(), tid, nonceKey, hold) // spool.go
		switch {
		case err != nil:
			w.Header().Set("Retry-After", "1")
			g.fail(w, log(), http.StatusServiceUnavailable, "store unavailable", err)
			return
		case state == queue.ClaimRecorded:
			g.metrics.verificationFailed(tid, sid, errors.New("replayed nonce"))
			g.fail(w, log(), http.StatusUnauthorized, "verification failed", errors.New("replayed nonce"))
			return
		case state == queue.ClaimPending:
			w.Header().Set("Retry-After", "2")
			g.fail(w, log(), http.StatusServiceUnavailable, "a request with the same nonce is being stored; try again", nil)
			return
		}
		if token != "" {
			defer func() {
				if nonceKey != "" { // not recorded: give the claim back
					if err := g.store.Unclaim(context.WithoutCancel(r.Context()), tid, nonceKey, token); err != nil {
						log().Warn("giving back a nonce claim failed; it lapses by itself", "err", err.Error())
					}
				}
			}()
		}
	}

	for i := range events {
		events[i].Tenant, events[i].Source, events[i].Carrier = tid, sid, s.cfg.Carrier
	}
	// One part of a longer message waits in Redis for the others; the
	// callback that brings the last one stores the whole (multipart.go).
	var roles []eventRole
	var parts *queue.Parts
	if mp, ok := s.multipart(); ok && len(events) == 1 {
		if part, ok := mp.Part(req); ok {
			rl.with("part", strconv.Itoa(part.Number)+"/"+strconv.Itoa(part.Total))
			joined, p, err := g.takePart(r.Context(), rt, tid, s, &events[0], part, start)
			switch {
			case err != nil: // not spooled: the part waits in Redis or nowhere
				w.Header().Set("Retry-After", "1")
				g.fail(w, log(), http.StatusServiceUnavailable, "cannot store the message part; try again", err)
				return
			case joined != nil:
				events, roles, parts = append(events, *joined), []eventRole{rolePart, roleJoined}, p
			default:
				roles = []eventRole{rolePart}
			}
		}
	}

	var raw []byte // the raw callback, built only for a raw destination
	rawTaken := map[string]bool{}
	joinedAt := -1 // the joined message's entry
	entries := make([]*queue.Entry, 0, len(events))
	routed := 0
	for i := range events {
		e := &events[i]
		e.ID = switchboard.NewEventID(start)
		e.Timestamp = switchboard.NewTime(start)
		role := roleWhole
		if i < len(roles) {
			role = roles[i]
		}
		dests := withoutRaw(t, s.withPassthrough(t.cfg.Route(e)), role) // passthrough.go, multipart.go
		if len(dests) == 0 {
			if role != rolePart { // a part waits for the others: it is not unrouted
				log().Info("no route takes this event; not stored", "event_id", e.ID, "type", e.Type)
				g.metrics.unrouted(tid, sid)
			}
			continue
		}
		routed++
		entry := newEntry(tid, t, e, dests, start, traceParent(r.Context())) // tracing.go
		if role == roleJoined {
			entry.DedupKey = partsDedupKey(parts)
			joinedAt = len(entries) // the entry appended below
		}
		// A raw destination gets the callback once, with its first routed
		// event, however many events the callback held.
		kept := entry.Destinations[:0]
		for _, d := range dests {
			if s.rawFor[d] {
				if rawTaken[d] {
					continue
				}
				rawTaken[d] = true
				if raw == nil {
					raw = rawJSON(r, body)
				}
				entry.Raw = raw
				entry.RawFor = append(entry.RawFor, d)
			}
			kept = append(kept, d)
		}
		entry.Destinations = kept
		if len(kept) == 0 {
			continue
		}
		entries = append(entries, entry)
	}
	// A pass-through source's app answers now, while the carrier waits.
	pass, report, err := g.passthrough(r, log, t, s, events, entries, start)
	defer report() // after the enqueue, so the attempt finds the event's history
	if err != nil {
		w.Header().Set("Retry-After", "1")
		g.fail(w, log(), http.StatusServiceUnavailable, "store unavailable; try again", err)
		return
	}
	var fresh []bool
	spooled := false // in the local journal, with the nonce (spool.go)
	if len(entries) > 0 {
		enqStart := time.Now()
		fresh, spooled, err = g.persist(r.Context(), log, rt.cfg.Dedup.TTL.D(), nonceKey, proof.TTL, entries)
		g.metrics.enqueued(tid, time.Since(enqStart))
		if err != nil {
			w.Header().Set("Retry-After", "1")
			g.fail(w, log(), http.StatusServiceUnavailable, "store unavailable; try again", err)
			return
		}
		if g.wake != nil {
			g.wake(tid)
		}
		g.pulls.notify(tid)
	}
	if parts != nil {
		g.finishParts(r.Context(), rt, tid, parts, s.cfg.ReassemblyWindow.D(), log())
		if joinedAt >= 0 && fresh[joinedAt] {
			g.metrics.joined(tid, sid, true)
		}
	}
	if nonceKey != "" {
		// The events are stored; a failure here only weakens replay
		// protection (dedup still drops a replayed callback's events). A
		// spooled callback's nonce is in the journal, recorded when drained.
		if !spooled {
			if err := g.store.Confirm(r.Context(), tid, nonceKey, proof.TTL); err != nil {
				log().Warn("recording nonce failed", "err", err.Error())
			}
		}
		nonceKey = "" // recorded (or the journal holds it): the claim stays
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
	g.metrics.duplicates(tid, sid, dups)
	noteEvents(r.Context(), ids)
	resp := s.carrier.Reply(req, events)
	if pass.answered() {
		resp = pass.reply(w.Header()) // the app's own answer
	}
	if resp.ContentType != "" {
		w.Header().Set("Content-Type", resp.ContentType)
	}
	if resp.Status == 0 {
		resp.Status = http.StatusOK
	}
	w.WriteHeader(resp.Status)
	_, _ = w.Write(resp.Body)
	// The one line of an accepted callback, without building a logger.
	g.log.Info("callback", append(rl.attrs, "code", resp.Status, "events", len(events), "routed", routed,
		"stored", len(ids), "duplicates", dups, "event_ids", ids, "ms", g.now().Sub(start).Milliseconds())...)
}

// reqLog is a callback's logger, built on first use: most callbacks write
// one line, and a logger's With costs more than the line.
type reqLog struct {
	base  *slog.Logger
	attrs []any
	l     *slog.Logger
}

func (r *reqLog) with(args ...any) { r.attrs, r.l = append(r.attrs, args...), nil }

func (r *reqLog) get() *slog.Logger {
	if r.l == nil {
		r.l = r.base.With(r.attrs...)
	}
	return r.l
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
// scheme, host and port from trusted proxies' X-Forwarded-Proto, -Host and
// -Port, else from the request itself. The scheme's default port is left
// out (a proxy's "Host: h:443" is the https://h/ the carrier was given).
// The path and query are never re-encoded.
func (rt *routing) publicURL(r *http.Request) string {
	uri := requestPath(r)
	if base := rt.cfg.Server.PublicBaseURL; base != "" {
		return base + uri
	}
	scheme, host := "http", r.Host
	if r.TLS != nil {
		scheme = "https"
	}
	if rt.trustedPeer(r) {
		if p := firstValue(r.Header.Get("X-Forwarded-Proto")); p == "http" || p == "https" {
			scheme = p
		}
		if h := firstValue(r.Header.Get("X-Forwarded-Host")); h != "" {
			host = h
		}
		if p := firstValue(r.Header.Get("X-Forwarded-Port")); p != "" && !hasPort(host) && allDigits(p) {
			host += ":" + p
		}
	}
	return scheme + "://" + withoutDefaultPort(scheme, host) + uri
}

// withoutDefaultPort is host without the port when it is scheme's default.
func withoutDefaultPort(scheme, host string) string {
	if !hasPort(host) {
		return host // the common case, without SplitHostPort's error
	}
	def := "80"
	if scheme == "https" {
		def = "443"
	}
	if h, p, err := net.SplitHostPort(host); err == nil && p == def {
		if strings.Contains(h, ":") {
			return "[" + h + "]"
		}
		return h
	}
	return host
}

// requestPath is the path and query of r exactly as sent. A request line
// in absolute form ("POST http://h/p?q HTTP/1.1", RFC 9112 3.2.2) gives
// them after its scheme and authority.
func requestPath(r *http.Request) string {
	uri := r.RequestURI
	if uri == "" {
		return r.URL.RequestURI()
	}
	if _, rest, ok := strings.Cut(uri, "://"); ok && !strings.HasPrefix(uri, "/") {
		if i := strings.IndexAny(rest, "/?"); i < 0 {
			uri = "/"
		} else if rest[i] == '?' {
			uri = "/" + rest[i:]
		} else {
			uri = rest[i:]
		}
	}
	return uri
}

// hasPort reports whether host ("h", "h:p", "[v6]", "[v6]:p") names a port.
func hasPort(host string) bool {
	if strings.HasPrefix(host, "[") {
		return strings.Contains(host, "]:")
	}
	return strings.Contains(host, ":")
}

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if !isDigit(s[i]) {
			return false
		}
	}
	return s != ""
}

func firstValue(v string) string {
	v, _, _ = strings.Cut(v, ",")
	return strings.TrimSpace(v)
}

func (rt *routing) trustedPeer(r *http.Request) bool { return rt.isTrusted(remoteAddr(r)) }

func (rt *routing) isTrusted(a netip.Addr) bool {
	for _, p := range rt.trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// clientAddr is the address a callback came from, for allow-lists: the
// TCP peer, or, when that is a trusted proxy, the nearest address in
// X-Forwarded-For that is not one (each proxy appends the peer it saw;
// only the entries the trusted proxies added are believed). A malformed
// entry stops the walk at the last address believed.
func (rt *routing) clientAddr(r *http.Request) netip.Addr {
	addr := remoteAddr(r)
	if !rt.isTrusted(addr) {
		return addr
	}
	var hops []string
	for _, v := range r.Header.Values("X-Forwarded-For") {
		hops = append(hops, strings.Split(v, ",")...)
	}
	for i := len(hops) - 1; i >= 0; i-- {
		a, err := netip.ParseAddr(strings.TrimSpace(hops[i]))
		if err != nil {
			return addr
		}
		addr = a.Unmap()
		if !rt.isTrusted(addr) {
			return addr
		}
	}
	return addr
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

// redactURL is a callback URL fit for a log line. The query stays as
// sent, its order and encoding kept, so that it can be compared with the
// URL configured at the carrier (a signature mismatch is about exactly
// that); the values of parameters that may be secrets (token, key, secret,
// sig, pass, pwd, auth, credential) and of those that carry message
// content (a GET callback's body, text, message, content, data, udh)
// become REDACTED, and phone numbers are masked.
func redactURL(s string) string {
	base, query, ok := strings.Cut(s, "?")
	if !ok || query == "" {
		return MaskNumbers(s)
	}
	query, frag, hasFrag := strings.Cut(query, "#")
	parts := strings.Split(query, "&")
	for i, p := range parts {
		// ';' separates pairs too for some parsers: each is redacted.
		sub := strings.Split(p, ";")
		for j, p := range sub {
			k, _, hasValue := strings.Cut(p, "=")
			name, err := url.QueryUnescape(k)
			if err != nil {
				name = k
			}
			if hasValue && redactParam(strings.ToLower(name)) {
				sub[j] = k + "=REDACTED"
			}
		}
		parts[i] = strings.Join(sub, ";")
	}
	out := base + "?" + strings.Join(parts, "&")
	if hasFrag {
		out += "#" + frag
	}
	return MaskNumbers(out)
}

// redactParam reports whether a query parameter's value stays out of logs.
func redactParam(name string) bool {
	switch name {
	case "body", "text", "message", "content", "msg", "data", "udh":
		return true
	}
	for _, w := range []string{"token", "key", "secret", "sig", "pass", "pwd", "auth", "credential"} {
		if strings.Contains(name, w) {
			return true
		}
	}
	return false
}

// redactURLsIn applies redactURL to every http(s) URL quoted in text (a
// verifier's error names the URL it checked, and the URLs it also tried).
func redactURLsIn(text string) string {
	var b strings.Builder
	for {
		i := strings.Index(text, `"http`)
		if i < 0 {
			b.WriteString(text)
			return b.String()
		}
		j := closingQuote(text[i+1:])
		if j < 0 {
			b.WriteString(text)
			return b.String()
		}
		b.WriteString(text[:i+1])
		b.WriteString(redactURL(text[i+1 : i+1+j]))
		text = text[i+1+j:]
	}
}

// closingQuote is the index of the first '"' in s that %q did not escape,
// or -1.
func closingQuote(s string) int {
	for j := 0; j < len(s); j++ {
		switch s[j] {
		case '\\':
			j++ // skip the escaped character
		case '"':
			return j
		}
	}
	return -1
}

// confirmSNS answers an AWS SNS subscription handshake: confirmed at once
// when the source says auto_confirm, otherwise logged with the URL the
// operator must visit.
func (g *Gateway) confirmSNS(w http.ResponseWriter, r *http.Request, log *slog.Logger, s *source, req *carrier.Request, sub *carrier.SNSSubscription) {
	if !sub.Auto {
		log.Warn("SNS subscription awaits confirmation: visit SubscribeURL or set auto_confirm: true",
			"topic_arn", sub.TopicARN, "subscribe_url", sub.URL)
	} else {
		ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
		defer cancel()
		if err := sub.Confirm(ctx); err != nil {
			if errors.Is(err, switchboard.ErrBadPayload) { // a URL no retry can make good
				g.fail(w, log, http.StatusBadRequest, "SNS subscription confirmation refused", err)
				return
			}
			w.Header().Set("Retry-After", "5")
			g.fail(w, log, http.StatusServiceUnavailable, "SNS subscription confirmation failed", err)
			return
		}
		log.Info("SNS subscription confirmed", "topic_arn", sub.TopicARN)
	}
	resp := s.carrier.Reply(req, nil)
	if resp.ContentType != "" {
		w.Header().Set("Content-Type", resp.ContentType)
	}
	w.WriteHeader(cmp.Or(resp.Status, http.StatusOK))
	_, _ = w.Write(resp.Body)
}

// validUTF8 refuses events whose text fields are not valid UTF-8: a carrier
// never sends such bytes, and an app must never receive them mangled.
func validUTF8(events []switchboard.Event) error {
	for i := range events {
		d := &events[i].Data
		for _, v := range []string{d.MessageID, d.From, d.To, d.Text, d.CarrierStatus} {
			if !utf8.ValidString(v) {
				return fmt.Errorf("%w: a field is not valid UTF-8", switchboard.ErrBadPayload)
			}
		}
	}
	return nil
}

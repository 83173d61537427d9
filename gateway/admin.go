package gateway

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	switchboard "github.com/switchboard-gw/switchboard"
	"github.com/switchboard-gw/switchboard/policy"
	"github.com/switchboard-gw/switchboard/queue"
)

// OpenAPI is the OpenAPI 3.1 document of the admin API and the pull API,
// served at GET /admin/v1/openapi.yaml.
//
//go:embed openapi.yaml
var OpenAPI []byte

// admin serves /admin/v1/ on the admin listener: JSON, behind a bearer
// token — server.admin_token for every tenant, a tenant's admin_token for
// that tenant only. It reads the Server's configuration at every request.
type admin struct {
	s   *Server
	mux *http.ServeMux
}

// Limits of the admin API.
const (
	adminMaxBody      = 1 << 20
	dlqDefaultLimit   = 100
	dlqMaxLimit       = 10000
	adminStoreTimeout = 30 * time.Second
)

func newAdmin(s *Server) *admin {
	a := &admin{s: s, mux: http.NewServeMux()}
	a.mux.HandleFunc("GET /admin/v1/openapi.yaml", a.openapi)
	a.mux.HandleFunc("GET /admin/v1/tenants", a.tenants)
	a.mux.HandleFunc("GET /admin/v1/tenants/{tenant}/stats", a.stats)
	a.mux.HandleFunc("GET /admin/v1/tenants/{tenant}/dlq", a.dlqList)
	a.mux.HandleFunc("POST /admin/v1/tenants/{tenant}/dlq/replay", a.dlqReplay)
	a.mux.HandleFunc("DELETE /admin/v1/tenants/{tenant}/dlq", a.dlqPurge)
	a.mux.HandleFunc("GET /admin/v1/tenants/{tenant}/events", a.eventsFind)
	a.mux.HandleFunc("GET /admin/v1/tenants/{tenant}/events/{id}", a.eventGet)
	a.mux.HandleFunc("POST /admin/v1/tenants/{tenant}/recover", a.recover)
	a.mux.HandleFunc("/admin/", func(w http.ResponseWriter, r *http.Request) {
		if allow := a.methodsFor(r); len(allow) > 0 {
			w.Header().Set("Allow", strings.Join(allow, ", "))
			adminError(w, http.StatusMethodNotAllowed, "method "+r.Method+" not allowed here (allowed: "+strings.Join(allow, ", ")+")")
			return
		}
		adminError(w, http.StatusNotFound, "no such admin endpoint")
	})
	return a
}

// methodsFor lists the methods an admin endpoint at r's path takes (none:
// there is no such endpoint), for a 405 rather than a 404 when r's method
// is the wrong one.
func (a *admin) methodsFor(r *http.Request) []string {
	return methodsAt(a.mux, r, "/admin/", http.MethodGet, http.MethodPost, http.MethodDelete)
}

// methodsAt lists which of methods mux serves at r's path by a pattern
// other than fallback (the catch-all answering 404 and 405).
func methodsAt(mux *http.ServeMux, r *http.Request, fallback string, methods ...string) []string {
	var allow []string
	for _, m := range methods {
		probe := r.Clone(r.Context())
		probe.Method = m
		if _, pattern := mux.Handler(probe); pattern != fallback && pattern != "" {
			allow = append(allow, m)
		}
	}
	return allow
}

// enabled reports whether any admin token is configured.
func adminEnabled(cfg *policy.Config) bool {
	if cfg.Server.AdminToken != "" {
		return true
	}
	for _, t := range cfg.Tenants {
		if t.AdminToken != "" {
			return true
		}
	}
	return false
}

// principal is who a request's token speaks for.
type principal struct {
	all     bool            // server.admin_token: every tenant
	tenants map[string]bool // tenants whose admin_token it is
	name    string          // for the log: "server" or "tenant:<id>"
}

func (p *principal) may(tenant string) bool { return p.all || p.tenants[tenant] }

type principalKey struct{}

// authenticate finds whose token the request carries, comparing digests in
// constant time so neither content nor length leaks. nil: no valid token.
func authenticate(cfg *policy.Config, r *http.Request) *principal {
	tok := bearerToken(r)
	if tok == "" {
		return nil
	}
	got := sha256.Sum256([]byte(tok))
	match := func(want string) bool {
		if want == "" {
			return false
		}
		w := sha256.Sum256([]byte(want))
		return subtle.ConstantTimeCompare(got[:], w[:]) == 1
	}
	p := &principal{tenants: map[string]bool{}}
	if match(cfg.Server.AdminToken) {
		p.all, p.name = true, "server"
	}
	for _, tid := range cfg.TenantIDs() {
		if match(cfg.Tenants[tid].AdminToken) {
			p.tenants[tid] = true
			if p.name == "" {
				p.name = "tenant:" + tid
			}
		}
	}
	if p.name == "" {
		return nil
	}
	return p
}

func (a *admin) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	cfg := a.s.config()
	if !adminEnabled(cfg) {
		adminError(w, http.StatusNotFound, "the admin API is off: no server.admin_token or tenant admin_token is configured")
		return
	}
	start := time.Now()
	p := authenticate(cfg, r)
	if p == nil {
		w.Header().Set("WWW-Authenticate", `Bearer realm="switchboard-admin"`)
		adminError(w, http.StatusUnauthorized, "a valid admin token is required (Authorization: Bearer …)")
		a.s.log.Warn("admin request refused", "method", r.Method, "path", r.URL.Path, "code", http.StatusUnauthorized)
		return
	}
	sw := &statusWriter{ResponseWriter: w}
	a.mux.ServeHTTP(sw, r.WithContext(context.WithValue(r.Context(), principalKey{}, p)))
	code := sw.code
	if code == 0 {
		code = http.StatusOK
	}
	level := slog.LevelInfo
	if r.Method == http.MethodGet {
		level = slog.LevelDebug
	}
	if code >= 400 {
		level = slog.LevelWarn
	}
	a.s.log.Log(r.Context(), level, "admin request", "method", r.Method, "path", r.URL.Path,
		"principal", p.name, "code", code, "ms", time.Since(start).Milliseconds())
}

// tenant resolves {tenant} for the request's principal: 403 for a tenant
// it may not see (whether or not it exists), 404 for an unknown one.
func (a *admin) tenant(w http.ResponseWriter, r *http.Request) (*policy.Tenant, bool) {
	tid := r.PathValue("tenant")
	p, _ := r.Context().Value(principalKey{}).(*principal)
	if p == nil || !p.may(tid) {
		adminError(w, http.StatusForbidden, "this token is not valid for tenant "+strconv.Quote(tid))
		return nil, false
	}
	t := a.s.config().Tenants[tid]
	if t == nil {
		adminError(w, http.StatusNotFound, "no tenant "+strconv.Quote(tid))
		return nil, false
	}
	return t, true
}

func adminJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
}

// apiError is the body of every error answer.
type apiError struct {
	Error string `json:"error"`
}

func adminError(w http.ResponseWriter, code int, msg string) {
	adminJSON(w, code, apiError{Error: msg})
}

// storeError answers a failed store call: 503 when Redis is away.
func (a *admin) storeError(w http.ResponseWriter, op string, err error) {
	if errors.Is(err, switchboard.ErrUnavailable) {
		w.Header().Set("Retry-After", "1")
		adminError(w, http.StatusServiceUnavailable, op+": the store is unavailable; try again")
	} else {
		adminError(w, http.StatusInternalServerError, op+" failed")
	}
	a.s.log.Error("admin "+op+" failed", "err", err.Error())
}

func storeCtx(r *http.Request) (context.Context, context.CancelFunc) {
	return context.WithTimeout(r.Context(), adminStoreTimeout)
}

// decodeBody reads a JSON body into v, refusing unknown fields and more
// than one value.
func decodeBody(w http.ResponseWriter, r *http.Request, v any) bool {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, adminMaxBody))
	dec.DisallowUnknownFields()
	err := dec.Decode(v)
	if err == nil {
		if err = dec.Decode(&struct{}{}); err == io.EOF {
			return true
		} else if err == nil {
			err = errors.New("more than one value")
		}
	}
	if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
		adminError(w, http.StatusRequestEntityTooLarge, "body over 1 MiB")
		return false
	}
	adminError(w, http.StatusBadRequest, "bad JSON body: "+err.Error())
	return false
}

func (a *admin) openapi(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/yaml")
	_, _ = w.Write(OpenAPI)
}

// GET /admin/v1/tenants

type tenantInfo struct {
	ID           string       `json:"id"`
	Sources      []sourceInfo `json:"sources"`
	Destinations []destInfo   `json:"destinations"`
}

type sourceInfo struct {
	ID      string `json:"id"`
	Carrier string `json:"carrier"`
}

// destInfo leaves the URL out: URLs may carry credentials in their path or
// query (e.g. chat webhooks), and no answer holds a secret.
type destInfo struct {
	ID     string `json:"id"`
	Format string `json:"format"`
}

func (a *admin) tenants(w http.ResponseWriter, r *http.Request) {
	p, _ := r.Context().Value(principalKey{}).(*principal)
	cfg := a.s.config()
	out := struct {
		Tenants []tenantInfo `json:"tenants"`
	}{Tenants: []tenantInfo{}}
	for _, tid := range cfg.TenantIDs() {
		if !p.may(tid) {
			continue
		}
		t := cfg.Tenants[tid]
		ti := tenantInfo{ID: tid, Sources: []sourceInfo{}, Destinations: []destInfo{}}
		for _, sid := range sortedKeys(t.Sources) {
			ti.Sources = append(ti.Sources, sourceInfo{ID: sid, Carrier: t.Sources[sid].Carrier})
		}
		for _, did := range sortedKeys(t.Destinations) {
			ti.Destinations = append(ti.Destinations, destInfo{ID: did, Format: t.Destinations[did].Format})
		}
		out.Tenants = append(out.Tenants, ti)
	}
	adminJSON(w, http.StatusOK, out)
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// GET /admin/v1/tenants/{tenant}/stats

type destStats struct {
	Destination string   `json:"destination"`
	Queued      int64    `json:"queued"`
	InFlight    int64    `json:"in_flight"`
	Retrying    int64    `json:"retrying"`
	Dead        int64    `json:"dead"`
	OldestAge   float64  `json:"oldest_age_seconds"`
	Breaker     string   `json:"breaker"`
	Rate        rateInfo `json:"rate"`
}

// rateInfo is a configured token bucket; per_second 0 means unlimited.
type rateInfo struct {
	PerSecond float64 `json:"per_second"`
	Burst     int     `json:"burst"`
}

func (a *admin) stats(w http.ResponseWriter, r *http.Request) {
	t, ok := a.tenant(w, r)
	if !ok {
		return
	}
	dests := sortedKeys(t.Destinations)
	ctx, cancel := storeCtx(r)
	defer cancel()
	st, err := a.s.store.Stats(ctx, t.ID, dests, time.Now())
	if err != nil {
		a.storeError(w, "stats", err)
		return
	}
	out := struct {
		Tenant       string      `json:"tenant"`
		Destinations []destStats `json:"destinations"`
	}{Tenant: t.ID, Destinations: []destStats{}}
	worker := a.s.worker(t.ID)
	for _, d := range dests {
		v, dc := st[d], t.Destinations[d]
		ds := destStats{
			Destination: d, Queued: v.Queued, InFlight: v.InFlight, Retrying: v.Retrying, Dead: v.Dead,
			OldestAge: v.Oldest.Seconds(), Breaker: "closed",
			Rate: rateInfo{PerSecond: dc.Rate.PerSecond, Burst: dc.Rate.Burst},
		}
		if worker != nil {
			if b := worker.BreakerState(d); b != "" {
				ds.Breaker = b
			}
		}
		out.Destinations = append(out.Destinations, ds)
	}
	adminJSON(w, http.StatusOK, out)
}

// The dead-letter endpoints.

type deadLetterInfo struct {
	ID          string `json:"id"`
	Destination string `json:"destination"`
	EventID     string `json:"event_id"`
	Attempts    int    `json:"attempts"`
	LastError   string `json:"last_error"`
	FailedAt    string `json:"failed_at"`
}

func (a *admin) dlqList(w http.ResponseWriter, r *http.Request) {
	t, ok := a.tenant(w, r)
	if !ok {
		return
	}
	q := r.URL.Query()
	limit := dlqDefaultLimit
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > dlqMaxLimit {
			adminError(w, http.StatusBadRequest, fmt.Sprintf("limit must be a number from 1 to %d", dlqMaxLimit))
			return
		}
		limit = n
	}
	ctx, cancel := storeCtx(r)
	defer cancel()
	list, err := a.s.store.DLQList(ctx, t.ID, q.Get("destination"), limit)
	if err != nil {
		a.storeError(w, "dlq list", err)
		return
	}
	out := struct {
		Entries []deadLetterInfo `json:"entries"`
	}{Entries: make([]deadLetterInfo, 0, len(list))}
	for _, d := range list {
		out.Entries = append(out.Entries, deadLetterInfo{
			ID: d.ID, Destination: d.Destination, EventID: d.EventID, Attempts: d.Attempts,
			LastError: d.LastError, FailedAt: d.FailedAt.UTC().Format(time.RFC3339),
		})
	}
	adminJSON(w, http.StatusOK, out)
}

// dlqSelector is what a replay body holds.
type dlqSelector struct {
	IDs         []string `json:"ids"`
	All         bool     `json:"all"`
	Destination string   `json:"destination"`
}

func (a *admin) dlqReplay(w http.ResponseWriter, r *http.Request) {
	t, ok := a.tenant(w, r)
	if !ok {
		return
	}
	var sel dlqSelector
	if !decodeBody(w, r, &sel) {
		return
	}
	if (len(sel.IDs) == 0) == !sel.All {
		adminError(w, http.StatusBadRequest, `give either "ids" (one or more) or "all": true`)
		return
	}
	ctx, cancel := storeCtx(r)
	defer cancel()
	n, err := a.s.store.DLQReplay(ctx, t.ID, sel.Destination, sel.IDs, sel.All, time.Now())
	if n > 0 {
		a.s.wakeTenant(t.ID)
	}
	if err != nil {
		a.storeError(w, "dlq replay", err)
		return
	}
	a.s.log.Info("dead letters replayed", "tenant", t.ID, "destination", sel.Destination, "replayed", n)
	adminJSON(w, http.StatusOK, map[string]int{"replayed": n})
}

func (a *admin) dlqPurge(w http.ResponseWriter, r *http.Request) {
	t, ok := a.tenant(w, r)
	if !ok {
		return
	}
	q := r.URL.Query()
	var ids []string
	for _, id := range q["id"] {
		if id != "" { // "?destination=&id=&all=true": an empty selector is none
			ids = append(ids, id)
		}
	}
	all := false
	if v := q.Get("all"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			adminError(w, http.StatusBadRequest, "all must be true or false")
			return
		}
		all = b
	}
	if (len(ids) == 0) == !all {
		adminError(w, http.StatusBadRequest, "give either id (one or more) or all=true in the query string")
		return
	}
	ctx, cancel := storeCtx(r)
	defer cancel()
	n, err := a.s.store.DLQPurge(ctx, t.ID, q.Get("destination"), ids, all)
	if err != nil {
		a.storeError(w, "dlq purge", err)
		return
	}
	a.s.log.Info("dead letters purged", "tenant", t.ID, "destination", q.Get("destination"), "purged", n)
	adminJSON(w, http.StatusOK, map[string]int{"purged": n})
}

// The event history.

type eventInfo struct {
	ID           string          `json:"id"`
	ReceivedAt   string          `json:"received_at"`
	Destinations []string        `json:"destinations"`
	Event        json.RawMessage `json:"event"`
	Attempts     []attemptInfo   `json:"attempts"`
}

type attemptInfo struct {
	Time        string  `json:"time"`
	Destination string  `json:"destination"`
	Attempt     int     `json:"attempt"`
	StatusCode  int     `json:"status_code"`
	LatencyMS   float64 `json:"latency_ms"`
	Outcome     string  `json:"outcome"`
	Error       string  `json:"error,omitempty"`
}

func toEventInfo(h queue.HistoryEvent) eventInfo {
	e := eventInfo{
		ID: h.ID, ReceivedAt: h.ReceivedAt.UTC().Format(time.RFC3339Nano), Destinations: h.Destinations,
		Event: h.Event, Attempts: make([]attemptInfo, 0, len(h.Attempts)),
	}
	if e.Destinations == nil {
		e.Destinations = []string{}
	}
	if !json.Valid(e.Event) {
		e.Event = json.RawMessage("null")
	}
	for _, at := range h.Attempts {
		e.Attempts = append(e.Attempts, attemptInfo{
			Time: at.Time.UTC().Format(time.RFC3339Nano), Destination: at.Destination, Attempt: at.Attempt,
			StatusCode: at.StatusCode, LatencyMS: float64(at.Latency.Microseconds()) / 1000,
			Outcome: at.Outcome, Error: at.Error,
		})
	}
	return e
}

func (a *admin) eventGet(w http.ResponseWriter, r *http.Request) {
	t, ok := a.tenant(w, r)
	if !ok {
		return
	}
	ctx, cancel := storeCtx(r)
	defer cancel()
	h, found, err := a.s.store.History(ctx, t.ID, r.PathValue("id"))
	if err != nil {
		a.storeError(w, "event lookup", err)
		return
	}
	if !found {
		adminError(w, http.StatusNotFound, "no such event in the history (it may be older than history.retention)")
		return
	}
	adminJSON(w, http.StatusOK, toEventInfo(h))
}

func (a *admin) eventsFind(w http.ResponseWriter, r *http.Request) {
	t, ok := a.tenant(w, r)
	if !ok {
		return
	}
	msg := r.URL.Query().Get("message_id")
	if msg == "" {
		adminError(w, http.StatusBadRequest, "message_id is required in the query string")
		return
	}
	ctx, cancel := storeCtx(r)
	defer cancel()
	hs, err := a.s.store.HistoryByMessage(ctx, t.ID, msg)
	if err != nil {
		a.storeError(w, "event lookup", err)
		return
	}
	out := struct {
		Events []eventInfo `json:"events"`
	}{Events: make([]eventInfo, 0, len(hs))}
	for _, h := range hs {
		out.Events = append(out.Events, toEventInfo(h))
	}
	adminJSON(w, http.StatusOK, out)
}

// POST /admin/v1/tenants/{tenant}/recover

type recoverRequest struct {
	Destination string `json:"destination"`
	Since       string `json:"since"`
	Until       string `json:"until"`
}

func (a *admin) recover(w http.ResponseWriter, r *http.Request) {
	t, ok := a.tenant(w, r)
	if !ok {
		return
	}
	var req recoverRequest
	if !decodeBody(w, r, &req) {
		return
	}
	if req.Destination == "" || req.Since == "" {
		adminError(w, http.StatusBadRequest, `"destination" and "since" are required`)
		return
	}
	if _, ok := t.Destinations[req.Destination]; !ok {
		adminError(w, http.StatusNotFound, "no destination "+strconv.Quote(req.Destination)+" in tenant "+t.ID)
		return
	}
	now := time.Now()
	since, err := time.Parse(time.RFC3339Nano, req.Since)
	if err != nil {
		adminError(w, http.StatusBadRequest, `"since" is not an RFC 3339 time`)
		return
	}
	until := now
	if req.Until != "" {
		if until, err = time.Parse(time.RFC3339Nano, req.Until); err != nil {
			adminError(w, http.StatusBadRequest, `"until" is not an RFC 3339 time`)
			return
		}
	}
	if until.Before(since) {
		adminError(w, http.StatusBadRequest, `"until" is before "since"`)
		return
	}
	ctx, cancel := storeCtx(r)
	defer cancel()
	n, err := a.s.store.Recover(ctx, t.ID, req.Destination, since, until, now)
	if n > 0 {
		a.s.wakeTenant(t.ID)
	}
	if err != nil {
		a.storeError(w, "recover", err)
		return
	}
	a.s.log.Info("events recovered", "tenant", t.ID, "destination", req.Destination,
		"since", since.UTC().Format(time.RFC3339Nano), "until", until.UTC().Format(time.RFC3339Nano), "replayed", n)
	adminJSON(w, http.StatusOK, map[string]int{"replayed": n})
}

// wakeTenant makes tenant's worker read now: jobs were just put back.
func (s *Server) wakeTenant(tid string) {
	if w := s.worker(tid); w != nil {
		w.Wake()
	}
}

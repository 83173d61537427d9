package gateway

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	switchboard "github.com/switchboard-gw/switchboard"
	"github.com/switchboard-gw/switchboard/gateway/delivery"
	"github.com/switchboard-gw/switchboard/policy"
	"github.com/switchboard-gw/switchboard/queue"
)

// metrics are one Server's Prometheus collectors, on a registry of its own
// (several Servers run in one test process). A nil *metrics records
// nothing, so a Gateway built without a Server (unit tests) needs none.
type metrics struct {
	reg *prometheus.Registry

	ingress       *prometheus.CounterVec
	verifyFailed  *prometheus.CounterVec
	enqueue       *prometheus.HistogramVec
	dedupHits     *prometheus.CounterVec
	deliveries    *prometheus.CounterVec
	deliveryTime  *prometheus.HistogramVec
	retries       *prometheus.CounterVec
	rateLimitWait *prometheus.CounterVec
	unroutedTotal *prometheus.CounterVec
	multipart     *prometheus.CounterVec
	// perTenant: every vector above, for forgetTenant.
	perTenant []*prometheus.MetricVec
}

// forgetTenant drops a removed tenant's series: a reload that removes it
// ends them, rather than leaving them exported unchanged for ever.
func (m *metrics) forgetTenant(tid string) {
	for _, v := range m.perTenant {
		v.DeletePartialMatch(prometheus.Labels{"tenant": tid})
	}
}

// newMetrics registers every collector; queue numbers (depths, ages,
// breaker states) are read from s at scrape time.
func newMetrics(s *Server) *metrics {
	m := &metrics{reg: prometheus.NewRegistry()}
	counter := func(name, help string, labels ...string) *prometheus.CounterVec {
		c := prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, labels)
		m.reg.MustRegister(c)
		m.perTenant = append(m.perTenant, c.MetricVec)
		return c
	}
	histogram := func(name, help string, buckets []float64, labels ...string) *prometheus.HistogramVec {
		h := prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: name, Help: help, Buckets: buckets}, labels)
		m.reg.MustRegister(h)
		m.perTenant = append(m.perTenant, h.MetricVec)
		return h
	}
	m.ingress = counter("switchboard_ingress_requests_total",
		"Carrier callbacks answered, by HTTP status code. Unknown tenants and sources are counted with empty labels.",
		"tenant", "source", "carrier", "code")
	m.verifyFailed = counter("switchboard_verification_failures_total",
		"Carrier callbacks refused by verification, by reason.", "tenant", "source", "reason")
	m.enqueue = histogram("switchboard_enqueue_duration_seconds",
		"Time to store one callback's events in Redis (dedup, history and every destination's stream in one round trip).",
		prometheus.ExponentialBuckets(0.00025, 2, 14), "tenant")
	m.dedupHits = counter("switchboard_dedup_hits_total",
		"Events recognized as a carrier's retry of an event already stored, and dropped.", "tenant", "source")
	m.deliveries = counter("switchboard_deliveries_total",
		"Delivery attempts, by what followed: delivered, retry or dead_letter. For a pull destination: events acknowledged (delivered) or dead-lettered after max_attempts hand-outs.", "tenant", "destination", "outcome")
	m.deliveryTime = histogram("switchboard_delivery_duration_seconds",
		"Duration of one delivery attempt, from sending the request to the response or error.",
		prometheus.ExponentialBuckets(0.005, 2, 14), "tenant", "destination")
	m.retries = counter("switchboard_retries_total",
		"Delivery attempts that were retries (attempt 2 and later).", "tenant", "destination")
	m.rateLimitWait = counter("switchboard_rate_limit_waits_total",
		"Times a destination's jobs waited because its rate limit (or the tenant's delivery_rate) was spent: once per hold that jobs waited out, or per batch of jobs read that waited for their slots.",
		"tenant", "destination")
	m.unroutedTotal = counter("switchboard_unrouted_events_total",
		"Events no route took: counted and logged, not stored.", "tenant", "source")
	m.multipart = counter("switchboard_multipart_messages_total",
		"Messages a carrier sent in parts (Vonage SMS), stored as one event: whole (every part came) or incomplete (its reassembly_window passed first).",
		"tenant", "source", "outcome")
	m.reg.MustRegister(&queueCollector{s: s},
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// seed creates the series of every tenant, source and destination in cfg
// at zero, so that a scrape of a fresh gateway already lists them (a
// series first seen at 1 hides its first increase from rate()).
func (m *metrics) seed(cfg *policy.Config) {
	if m == nil {
		return
	}
	for tid, t := range cfg.Tenants {
		m.enqueue.WithLabelValues(tid)
		for sid, src := range t.Sources {
			m.ingress.WithLabelValues(tid, sid, src.Carrier, "200")
			m.verifyFailed.WithLabelValues(tid, sid, "bad_signature")
			m.dedupHits.WithLabelValues(tid, sid)
			m.unroutedTotal.WithLabelValues(tid, sid)
			if src.ReassemblyWindow > 0 {
				m.multipart.WithLabelValues(tid, sid, "whole")
				m.multipart.WithLabelValues(tid, sid, "incomplete")
			}
		}
		for did, d := range t.Destinations {
			if d.IsPull() {
				m.deliveries.WithLabelValues(tid, did, "delivered")
				m.deliveries.WithLabelValues(tid, did, "dead_letter")
				continue
			}
			for _, outcome := range []string{"delivered", "retry", "dead_letter"} {
				m.deliveries.WithLabelValues(tid, did, outcome)
			}
			m.deliveryTime.WithLabelValues(tid, did)
			m.retries.WithLabelValues(tid, did)
			m.rateLimitWait.WithLabelValues(tid, did)
		}
	}
}

// handler serves /metrics.
func (m *metrics) handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg, Timeout: 10 * time.Second})
}

func (m *metrics) ingressDone(tenant, source, carrier string, code int) {
	if m == nil {
		return
	}
	m.ingress.WithLabelValues(tenant, source, carrier, strconv.Itoa(code)).Inc()
}

func (m *metrics) verificationFailed(tenant, source string, err error) {
	if m == nil {
		return
	}
	m.verifyFailed.WithLabelValues(tenant, source, failureReason(err)).Inc()
}

// failureReason maps a verification error to a small, fixed set of label
// values (the error text itself may be anything).
func failureReason(err error) string {
	msg := strings.ToLower(err.Error())
	if errors.Is(err, switchboard.ErrUnavailable) {
		if strings.Contains(msg, "unsigned") {
			return "unsigned" // Vonage Messages, answered 503
		}
		return "unverifiable" // e.g. an SNS signing certificate that cannot be fetched now
	}
	switch {
	case strings.Contains(msg, "replay"), strings.Contains(msg, "nonce"):
		return "replayed"
	case strings.Contains(msg, "missing"), strings.Contains(msg, "no signature"), strings.Contains(msg, "unsigned"):
		return "missing_signature"
	case strings.Contains(msg, "expired"), strings.Contains(msg, "stale"), strings.Contains(msg, "too old"),
		strings.Contains(msg, "timestamp"), strings.Contains(msg, "in the future"):
		return "stale"
	case strings.Contains(msg, "address"), strings.Contains(msg, "allowed_ips"), strings.Contains(msg, " ip "):
		return "ip_not_allowed"
	}
	return "bad_signature"
}

func (m *metrics) enqueued(tenant string, d time.Duration) {
	if m == nil {
		return
	}
	m.enqueue.WithLabelValues(tenant).Observe(d.Seconds())
}

func (m *metrics) unrouted(tenant, source string) {
	if m == nil {
		return
	}
	m.unroutedTotal.WithLabelValues(tenant, source).Inc()
}

// joined counts a multipart message stored as one event.
func (m *metrics) joined(tenant, source string, whole bool) {
	if m == nil {
		return
	}
	outcome := "incomplete"
	if whole {
		outcome = "whole"
	}
	m.multipart.WithLabelValues(tenant, source, outcome).Inc()
}

// pulled counts a pull destination's outcomes as deliveries: events its
// app acknowledged (delivered) and events dead-lettered after max_attempts
// hand-outs without one.
func (m *metrics) pulled(tenant, dest string, acked, dead int) {
	if m == nil {
		return
	}
	if acked > 0 {
		m.deliveries.WithLabelValues(tenant, dest, "delivered").Add(float64(acked))
	}
	if dead > 0 {
		m.deliveries.WithLabelValues(tenant, dest, "dead_letter").Add(float64(dead))
	}
}

func (m *metrics) duplicates(tenant, source string, n int) {
	if m == nil || n == 0 {
		return
	}
	m.dedupHits.WithLabelValues(tenant, source).Add(float64(n))
}

func (m *metrics) attempt(tenant, dest string, attempt int, outcome string, latency time.Duration) {
	if m == nil {
		return
	}
	m.deliveries.WithLabelValues(tenant, dest, outcome).Inc()
	m.deliveryTime.WithLabelValues(tenant, dest).Observe(latency.Seconds())
	if attempt > 1 {
		m.retries.WithLabelValues(tenant, dest).Inc()
	}
}

// lostAttempt counts an attempt whose instance stopped before recording
// its outcome, now decided: deliveries_total only (there is no latency).
func (m *metrics) lostAttempt(tenant, dest, outcome string) {
	if m == nil {
		return
	}
	m.deliveries.WithLabelValues(tenant, dest, outcome).Inc()
}

func (m *metrics) rateLimited(tenant, dest string) {
	if m == nil {
		return
	}
	m.rateLimitWait.WithLabelValues(tenant, dest).Inc()
}

// statusWriter remembers the status code written.
type statusWriter struct {
	http.ResponseWriter
	code int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.code == 0 {
		w.code = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// counted wraps the carrier endpoint to count and trace every answer. Tenant, source
// and carrier labels are set only for a configured source, so callers cannot
// mint label values.
func (g *Gateway) counted(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		sw := &statusWriter{ResponseWriter: w}
		r, end := g.tracing.callback(r)
		h(sw, r)
		code := sw.code
		if code == 0 {
			code = http.StatusOK
		}
		end(code)
		if g.metrics == nil {
			return
		}
		tid, sid, carrierName := r.PathValue("tenant"), r.PathValue("source"), ""
		if t := g.routing().tenants[tid]; t != nil {
			if s := t.sources[sid]; s != nil {
				carrierName = s.cfg.Carrier
			}
		}
		if carrierName == "" {
			tid, sid = "", ""
		}
		g.metrics.ingressDone(tid, sid, carrierName, code)
	}
}

// queueCollector reads queue depths, ages, breaker states and the stale
// statuses dropped at scrape time: one Stats script per tenant.
type queueCollector struct{ s *Server }

var (
	descQueueDepth = prometheus.NewDesc("switchboard_queue_depth",
		"Jobs in a destination's stream: waiting to be read plus in flight.", []string{"tenant", "destination"}, nil)
	descInFlight = prometheus.NewDesc("switchboard_queue_in_flight",
		"Jobs handed to a dispatcher and not yet finished.", []string{"tenant", "destination"}, nil)
	descRetryDepth = prometheus.NewDesc("switchboard_retry_depth",
		"Jobs waiting in the retry set for their next attempt.", []string{"tenant", "destination"}, nil)
	descOldest = prometheus.NewDesc("switchboard_queue_oldest_age_seconds",
		"Age of the oldest job in a destination's stream: the delivery lag (0 when empty).", []string{"tenant", "destination"}, nil)
	descDLQDepth = prometheus.NewDesc("switchboard_dlq_depth",
		"Dead letters of a destination.", []string{"tenant", "destination"}, nil)
	descBreaker = prometheus.NewDesc("switchboard_breaker_state",
		"Circuit breaker state of a destination: 0 closed, 1 half-open, 2 open.", []string{"tenant", "destination"}, nil)
	descStale = prometheus.NewDesc("switchboard_stale_status_dropped_total",
		"Status events not delivered to a drop_stale_status destination because a status as far along had been delivered for their message. "+
			"Counted in Redis: every instance reports the tenant's total.", []string{"tenant", "destination"}, nil)
	descStoreUp = prometheus.NewDesc("switchboard_store_up",
		"1 if this scrape could read the queue numbers from Redis, else 0.", nil, nil)
)

func (c *queueCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descQueueDepth, descInFlight, descRetryDepth, descOldest, descDLQDepth, descBreaker, descStale, descStoreUp} {
		ch <- d
	}
}

func (c *queueCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.s
	cfg := s.config()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	up := 1.0
	now := time.Now()
	for _, tid := range cfg.TenantIDs() {
		t := cfg.Tenants[tid]
		dests := make([]string, 0, len(t.Destinations))
		for d := range t.Destinations {
			dests = append(dests, d)
		}
		slices.Sort(dests)
		w := s.worker(tid)
		for _, d := range dests {
			if w != nil {
				ch <- prometheus.MustNewConstMetric(descBreaker, prometheus.GaugeValue, breakerValue(w, d), tid, d)
			}
		}
		if up == 0 {
			continue // Redis is away: do not wait for it once per tenant
		}
		st, err := s.store.Stats(ctx, tid, dests, now)
		if err != nil {
			up = 0
			continue
		}
		for d, v := range st {
			// The stream of a destination no longer configured is not
			// read: its depth is unknown, not 0. Its retries and dead
			// letters are counted all the same.
			if t.Destinations[d] != nil {
				ch <- prometheus.MustNewConstMetric(descQueueDepth, prometheus.GaugeValue, float64(v.Queued+v.InFlight), tid, d)
				ch <- prometheus.MustNewConstMetric(descInFlight, prometheus.GaugeValue, float64(v.InFlight), tid, d)
				ch <- prometheus.MustNewConstMetric(descOldest, prometheus.GaugeValue, v.Oldest.Seconds(), tid, d)
			}
			ch <- prometheus.MustNewConstMetric(descRetryDepth, prometheus.GaugeValue, float64(v.Retrying), tid, d)
			ch <- prometheus.MustNewConstMetric(descDLQDepth, prometheus.GaugeValue, float64(v.Dead), tid, d)
			// Only where statuses can be dropped (or were, before a reload
			// turned it off): a zero for every destination would be noise.
			if dc := t.Destinations[d]; v.Stale > 0 || (dc != nil && dc.DropStaleStatus) {
				ch <- prometheus.MustNewConstMetric(descStale, prometheus.CounterValue, float64(v.Stale), tid, d)
			}
		}
	}
	ch <- prometheus.MustNewConstMetric(descStoreUp, prometheus.GaugeValue, up)
}

func breakerValue(w *delivery.Worker, dest string) float64 {
	switch w.BreakerState(dest) {
	case "half-open":
		return 1
	case "open":
		return 2
	}
	return 0
}

// observe is a tenant's delivery.Worker Observe hook: it counts the attempt
// and records it in the event's history.
func (s *Server) observe(tid string) func(dest string, j *queue.Job, o delivery.Outcome, d delivery.Decision, latency time.Duration) {
	return func(dest string, j *queue.Job, o delivery.Outcome, d delivery.Decision, latency time.Duration) {
		attempt := j.Attempts + 1
		outcome := outcomeName(d.Action)
		// An attempt that ended after a reload removed its tenant goes
		// into the history, not into series that are gone.
		live := s.config().Tenants[tid] != nil
		switch {
		case live && o.Result == delivery.Lost:
			// made by an instance that stopped: no request to time or trace
			s.metrics.lostAttempt(tid, dest, outcome)
		case live:
			s.metrics.attempt(tid, dest, attempt, outcome, latency)
			s.tracing.attempt(tid, dest, j, attempt, o, outcome, latency)
		}
		s.attempts.Record(tid, j.EventID, queue.Attempt{
			Time: time.Now().Add(-latency), Destination: dest, Attempt: attempt, StatusCode: o.Status,
			Latency: latency, Outcome: outcome, Error: o.Err,
		})
	}
}

func outcomeName(a delivery.Action) string {
	switch a {
	case delivery.Ack:
		return "delivered"
	case delivery.RetryLater:
		return "retry"
	}
	return "dead_letter"
}

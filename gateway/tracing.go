package gateway

import (
	"context"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/switchboard-gw/switchboard/gateway/delivery"
	"github.com/switchboard-gw/switchboard/policy"
	"github.com/switchboard-gw/switchboard/queue"
)

// tracing is one Server's OpenTelemetry tracer: a span per callback, whose
// W3C trace context is stored with each job (and sent to destinations as
// traceparent), and a span per delivery attempt linked to it. With
// tracing.otlp_endpoint empty it records nothing; a traceparent a callback
// arrives with is still passed on. A nil *tracing is off.
type tracing struct {
	tracer   trace.Tracer
	on       bool
	shutdown func(context.Context) error
}

var propagator = propagation.TraceContext{}

var errorHandlerOnce sync.Once

// newTracing builds the tracer cfg asks for. The exporter sends spans in
// batches to cfg.OTLPEndpoint + /v1/traces (unless the URL has a path);
// OTEL_EXPORTER_OTLP_HEADERS and the other standard variables apply, e.g.
// for a collector's API key.
func newTracing(cfg policy.Tracing, version string, log *slog.Logger) (*tracing, error) {
	if cfg.OTLPEndpoint == "" {
		return &tracing{tracer: noop.NewTracerProvider().Tracer(""), shutdown: func(context.Context) error { return nil }}, nil
	}
	endpoint := cfg.OTLPEndpoint // validated by policy.Load
	if u, err := url.Parse(endpoint); err == nil && (u.Path == "" || u.Path == "/") {
		u.Path = "/v1/traces"
		endpoint = u.String()
	}
	exp, err := otlptracehttp.New(context.Background(), otlptracehttp.WithEndpointURL(endpoint))
	if err != nil {
		return nil, err
	}
	res := resource.NewSchemaless(attribute.String("service.name", cfg.ServiceName), attribute.String("service.version", version))
	tp := sdktrace.NewTracerProvider(
		sdktrace.WithBatcher(exp),
		sdktrace.WithResource(res),
		sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.TraceIDRatioBased(cfg.SampleRatio))),
	)
	// The SDK reports export failures to one process-wide handler.
	errorHandlerOnce.Do(func() {
		otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) {
			log.Warn("tracing: exporting spans failed", "err", err.Error())
		}))
	})
	log.Info("tracing on: spans go over OTLP/HTTP", "endpoint", endpoint, "sample_ratio", cfg.SampleRatio)
	return &tracing{tracer: tp.Tracer("github.com/switchboard-gw/switchboard/gateway"), on: true, shutdown: tp.Shutdown}, nil
}

// close flushes the spans not yet exported (bounded by ctx).
func (tr *tracing) close(ctx context.Context) {
	if tr != nil {
		_ = tr.shutdown(ctx)
	}
}

// callback starts the span of one carrier callback, continuing a trace
// context the request carries. The span ends with end(code).
func (tr *tracing) callback(r *http.Request) (*http.Request, func(code int)) {
	if tr == nil {
		return r, func(int) {}
	}
	ctx := propagator.Extract(r.Context(), propagation.HeaderCarrier(r.Header))
	ctx, span := tr.tracer.Start(ctx, r.Method+" /hooks/{tenant}/{source}",
		trace.WithSpanKind(trace.SpanKindServer),
		trace.WithAttributes(
			attribute.String("http.request.method", r.Method),
			attribute.String("http.route", "/hooks/{tenant}/{source}"),
			attribute.String("switchboard.tenant", r.PathValue("tenant")),
			attribute.String("switchboard.source", r.PathValue("source")),
		))
	return r.WithContext(ctx), func(code int) {
		span.SetAttributes(attribute.Int("http.response.status_code", code))
		if code >= 500 {
			span.SetStatus(codes.Error, strconv.Itoa(code))
		}
		span.End()
	}
}

// traceParent is the W3C traceparent of ctx's span, or "" when there is
// none: what is stored with the callback's jobs.
func traceParent(ctx context.Context) string {
	if !trace.SpanContextFromContext(ctx).IsValid() {
		return ""
	}
	c := propagation.MapCarrier{}
	propagator.Inject(ctx, c)
	return c["traceparent"]
}

// noteEvents records on the callback's span the events it stored, so a
// trace can be found by webhook-id.
func noteEvents(ctx context.Context, ids []string) {
	if len(ids) > 0 {
		trace.SpanFromContext(ctx).SetAttributes(attribute.StringSlice("switchboard.event_ids", ids))
	}
}

// attempt records the span of one delivery attempt, just finished after
// latency: a new trace linked to the callback's span.
func (tr *tracing) attempt(tenant, dest string, j *queue.Job, attempt int, o delivery.Outcome, outcome string, latency time.Duration) {
	if tr == nil || !tr.on {
		return
	}
	end := time.Now()
	opts := []trace.SpanStartOption{
		trace.WithNewRoot(),
		trace.WithSpanKind(trace.SpanKindClient),
		trace.WithTimestamp(end.Add(-latency)),
		trace.WithAttributes(
			attribute.String("switchboard.tenant", tenant),
			attribute.String("switchboard.destination", dest),
			attribute.String("switchboard.event_id", j.EventID),
			attribute.Int("switchboard.attempt", attempt),
			attribute.String("switchboard.outcome", outcome),
		),
	}
	if j.TraceParent != "" {
		ctx := propagator.Extract(context.Background(), propagation.MapCarrier{"traceparent": j.TraceParent})
		if sc := trace.SpanContextFromContext(ctx); sc.IsValid() {
			opts = append(opts, trace.WithLinks(trace.Link{SpanContext: sc}))
		}
	}
	_, span := tr.tracer.Start(context.Background(), "delivery attempt", opts...)
	if o.Status != 0 {
		span.SetAttributes(attribute.Int("http.response.status_code", o.Status))
	}
	if o.Err != "" {
		span.SetStatus(codes.Error, o.Err)
	}
	span.End(trace.WithTimestamp(end))
}

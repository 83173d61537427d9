package gateway

import (
	"context"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	collectortrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/switchboard-gw/switchboard/gateway/carrier"
	"github.com/switchboard-gw/switchboard/policy"
	"github.com/switchboard-gw/switchboard/queue/redistest"
)

// collector is a fake OTLP/HTTP collector keeping the spans it receives.
type collector struct {
	*httptest.Server
	mu    sync.Mutex
	spans []*tracepb.Span
	paths []string
}

func newCollector(t *testing.T) *collector {
	c := &collector{}
	c.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		var req collectortrace.ExportTraceServiceRequest
		if err := proto.Unmarshal(b, &req); err != nil {
			t.Errorf("collector: %v", err)
		}
		c.mu.Lock()
		c.paths = append(c.paths, r.URL.Path)
		for _, rs := range req.ResourceSpans {
			for _, ss := range rs.ScopeSpans {
				c.spans = append(c.spans, ss.Spans...)
			}
		}
		c.mu.Unlock()
		w.Header().Set("Content-Type", "application/x-protobuf")
		b, _ = proto.Marshal(&collectortrace.ExportTraceServiceResponse{})
		_, _ = w.Write(b)
	}))
	t.Cleanup(c.Close)
	return c
}

func attr(s *tracepb.Span, key string) string {
	for _, a := range s.Attributes {
		if a.Key == key {
			if sv := a.Value.GetStringValue(); sv != "" {
				return sv
			}
			return fmt.Sprint(a.Value.GetIntValue())
		}
	}
	return ""
}

// TestTracing: a span per callback whose context travels with the job to
// the destination's traceparent, and a span per attempt linked to it.
func TestTracing(t *testing.T) {
	rs := redistest.Start(t)
	col := newCollector(t)
	var mu sync.Mutex
	var traceparents []string
	dest := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		traceparents = append(traceparents, r.Header.Get("traceparent"))
		mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	}))
	defer dest.Close()
	file := filepath.Join(t.TempDir(), "sb.yaml")
	if err := os.WriteFile(file, []byte(fmt.Sprintf(`
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0"}
redis: {url: %q}
tracing: {otlp_endpoint: %q}
delivery: {allow_private_networks: true}
tenants:
  acme:
    sources:
      tw: {carrier: twilio, secret: %s}
    destinations:
      app: {url: %q, secret: %s}
    routes:
      - to: [app]
`, rs.URL(), col.URL, token, dest.URL, destSecret)), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := policy.Load(file)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := Start(cfg, slog.New(slog.NewJSONHandler(io.Discard, nil)), Options{Consumer: "test"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = srv.Serve(ctx); close(done) }()
	defer func() { cancel(); <-done }()

	req, err := carrier.Simulate(carrier.Config{Carrier: "twilio", Secret: token}, "inbound", carrier.SimMessage{},
		"http://"+srv.IngressAddr+"/hooks/acme/tw", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	waitUntil(t, "the delivery", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(traceparents) == 1
	})
	cancel()
	<-done // Serve's stop flushes the spans

	tp := strings.Split(traceparents[0], "-")
	if len(tp) != 4 || tp[0] != "00" || len(tp[1]) != 32 || len(tp[2]) != 16 {
		t.Fatalf("traceparent sent = %q, want a W3C traceparent", traceparents[0])
	}
	col.mu.Lock()
	defer col.mu.Unlock()
	var cb, at *tracepb.Span
	for _, s := range col.spans {
		switch s.Name {
		case "POST /hooks/{tenant}/{source}":
			cb = s
		case "delivery attempt":
			at = s
		}
	}
	if cb == nil || at == nil {
		t.Fatalf("spans received: %v; want a callback and an attempt span", col.spans)
	}
	if col.paths[0] != "/v1/traces" {
		t.Errorf("spans posted to %s, want /v1/traces", col.paths[0])
	}
	if hex.EncodeToString(cb.TraceId) != tp[1] || hex.EncodeToString(cb.SpanId) != tp[2] {
		t.Errorf("traceparent %q is not the callback span's (%x/%x)", traceparents[0], cb.TraceId, cb.SpanId)
	}
	if attr(cb, "switchboard.tenant") != "acme" || attr(cb, "http.response.status_code") != "200" {
		t.Errorf("callback span attributes = %v", cb.Attributes)
	}
	if len(at.Links) != 1 || hex.EncodeToString(at.Links[0].TraceId) != tp[1] || hex.EncodeToString(at.Links[0].SpanId) != tp[2] {
		t.Errorf("attempt span links = %v, want the callback span", at.Links)
	}
	if attr(at, "switchboard.destination") != "app" || attr(at, "switchboard.attempt") != "1" ||
		attr(at, "http.response.status_code") != "204" || attr(at, "switchboard.outcome") != "delivered" {
		t.Errorf("attempt span attributes = %v", at.Attributes)
	}
}

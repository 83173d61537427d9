package policy

import (
	"strings"
	"testing"
	"time"
)

func TestTracingAndHistoryConfig(t *testing.T) {
	vars := map[string]string{"TW_TOKEN": "tok"}
	cfg := mustLoad(t, good, vars)
	if cfg.Tracing.OTLPEndpoint != "" || cfg.Tracing.ServiceName != "switchboard" || cfg.Tracing.SampleRatio != 1 {
		t.Errorf("tracing defaults = %+v, want off, switchboard, 1", cfg.Tracing)
	}
	if got := cfg.Tenants["acme"].History.Retention.D(); got != 72*time.Hour {
		t.Errorf("tenant history.retention = %v, want the default 72h", got)
	}
	cfg = mustLoad(t, "tracing: {otlp_endpoint: \"http://otel:4318\", sample_ratio: 0.25}\nhistory: {retention: 6h}\n"+
		strings.Replace(good, "  acme:\n", "  acme:\n    history: {retention: 1h}\n", 1), vars)
	if cfg.Tracing.OTLPEndpoint != "http://otel:4318" || cfg.Tracing.SampleRatio != 0.25 {
		t.Errorf("tracing = %+v", cfg.Tracing)
	}
	if cfg.History.Retention.D() != 6*time.Hour || cfg.Tenants["acme"].History.Retention.D() != time.Hour {
		t.Errorf("history = %v, acme %v; want 6h and its own 1h", cfg.History.Retention.D(), cfg.Tenants["acme"].History.Retention.D())
	}
	// A tenant turns its history off with 0s, whatever the top level says.
	cfg = mustLoad(t, "history: {retention: 6h}\n"+
		strings.Replace(good, "  acme:\n", "  acme:\n    history: {retention: 0s}\n", 1), vars)
	if got := cfg.Tenants["acme"].History.Retention.D(); got != 0 {
		t.Errorf("acme history.retention: 0s loaded as %v, want 0 (no history)", got)
	}
	for body, key := range map[string]string{
		"tracing: {otlp_endpoint: \"otel:4318\"}\n": "tracing.otlp_endpoint",
		"tracing: {sample_ratio: 2}\n":              "tracing.sample_ratio",
		"tracing: {service_name: \"\"}\n":           "tracing.service_name",
		"tracing: {exporter: x}\n":                  "tracing.exporter",
	} {
		_, errs := loadErrors(t, body+good, vars)
		if !strings.Contains(errs.Error(), key) {
			t.Errorf("%q: errors = %v, want one naming %s", body, errs, key)
		}
	}
}

package load

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

// A paced run sends request i no earlier than i/Rate after the start.
func TestRunPaced(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
	}))
	defer srv.Close()
	cbs := Prepare(srv.URL, "secret", "T", 50)
	r := Run(context.Background(), Config{URL: srv.URL, Conns: 4, Rate: 500}, cbs)
	if r.Requests != 50 || r.Errors != 0 {
		t.Fatalf("got %v, want 50 requests without errors", r)
	}
	if min := 49 * time.Second / 500; r.Elapsed < min {
		t.Errorf("50 requests at 500/s took %v, want at least %v", r.Elapsed, min)
	}
}

// A paced run measures latency from when a request was due, so a server
// slower than the pace shows the queue that builds up in front of it.
func TestRunPacedCountsQueueing(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		time.Sleep(20 * time.Millisecond)
	}))
	defer srv.Close()
	cbs := Prepare(srv.URL, "secret", "Q", 10)
	// One connection, a request due every millisecond, each taking 20ms:
	// the last is sent about 180ms after it was due.
	r := Run(context.Background(), Config{URL: srv.URL, Conns: 1, Rate: 1000}, cbs)
	if r.Requests != 10 {
		t.Fatalf("got %v, want 10 requests", r)
	}
	if r.P99 < 150*time.Millisecond {
		t.Errorf("p99 %v: the time waiting for the connection was not counted", r.P99)
	}
}

package load

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/switchboard-gw/switchboard/gateway/carrier"
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

// The generator's own HTTP/1.1 client: every request arrives correctly
// signed, and answers of every shape (chunked, Connection: close, no
// length) are read; a non-200 answer counts as an error.
func TestRunClient(t *testing.T) {
	tw, err := carrier.New(carrier.Config{Carrier: "twilio", Secret: "secret"})
	if err != nil {
		t.Fatal(err)
	}
	var verified atomic.Int64
	var shapeV atomic.Value // the kind of answer, set before each run
	shapeV.Store("")
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		req := &carrier.Request{Method: r.Method, URL: "http://" + r.Host + r.RequestURI, Header: r.Header, Body: body, Now: time.Now()}
		if _, err := tw.Verify(req); err == nil {
			verified.Add(1)
		}
		switch shapeV.Load().(string) {
		case "chunked":
			_, _ = io.WriteString(w, "<Response>")
			w.(http.Flusher).Flush()
			_, _ = io.WriteString(w, "</Response>")
		case "close":
			w.Header().Set("Connection", "close")
			_, _ = io.WriteString(w, "bye")
		case "503":
			w.WriteHeader(http.StatusServiceUnavailable)
		default:
			_, _ = io.WriteString(w, "<Response></Response>")
		}
	}))
	defer srv.Close()
	url := srv.URL + "/hooks/acme/tw?x=1"
	for _, tc := range []struct {
		shape  string
		errors int
	}{{"", 0}, {"chunked", 0}, {"close", 0}, {"503", 20}} {
		shapeV.Store(tc.shape)
		verified.Store(0)
		r := Run(context.Background(), Config{URL: url, Conns: 3, Max: 20}, Prepare(url, "secret", "C"+tc.shape, 20))
		if r.Requests != 20 || r.Errors != tc.errors || verified.Load() != 20 {
			t.Errorf("shape %q: %v, %d verified; want 20 requests, %d errors, all verified", tc.shape, r, verified.Load(), tc.errors)
		}
	}
}

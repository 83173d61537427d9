package load

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// The sink answers Go's HTTP client (what the gateway delivers with) 204
// over one kept-alive connection, with Content-Length and chunked bodies,
// and counts every request; a malformed request is an error.
func TestSinkAnswersAndCounts(t *testing.T) {
	s, err := StartSink()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var dials atomic.Int32
	tr := &http.Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		dials.Add(1)
		return (&net.Dialer{}).DialContext(ctx, network, addr)
	}}
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr}
	before := time.Now()
	for i := range 20 {
		var body io.Reader = bytes.NewReader(fmt.Appendf(nil, `{"n":%d}`, i))
		if i%2 == 1 { // a reader of unknown length: sent chunked
			body = io.MultiReader(strings.NewReader(`{"chunked":`), strings.NewReader(fmt.Sprintf("%d}", i)))
		}
		resp, err := c.Post(s.URL(), "application/json", body)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusNoContent {
			t.Fatalf("request %d: %d, want 204", i, resp.StatusCode)
		}
	}
	if s.Count() != 20 || s.Err() != nil || dials.Load() != 1 {
		t.Errorf("count %d, err %v, connections %d; want 20, nil, 1", s.Count(), s.Err(), dials.Load())
	}
	if s.Last().Before(before) {
		t.Errorf("Last = %v, before the requests", s.Last())
	}

	conn, err := net.Dial("tcp", strings.TrimPrefix(strings.TrimSuffix(s.URL(), "/events"), "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprint(conn, "POST /events HTTP/1.1\r\nContent-Length: x\r\n\r\n")
	_, _ = io.ReadAll(conn) // the sink hangs up
	if s.Err() == nil || s.Count() != 20 {
		t.Errorf("a bad Content-Length: err %v, count %d; want an error and no count", s.Err(), s.Count())
	}
}

// Protocol errors of different kinds keep the first (a second one used to
// panic the sink).
func TestSinkKeepsFirstError(t *testing.T) {
	s, err := StartSink()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	first := fmt.Errorf("first")
	s.fail(first)
	s.fail(&net.OpError{Op: "read", Err: io.ErrUnexpectedEOF})
	if s.Err() != first {
		t.Errorf("Err = %v, want the first error", s.Err())
	}
}

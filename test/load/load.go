// Package load generates signed carrier callbacks against a gateway and
// measures throughput and latency. It sends only to the URL it is given;
// the benchmark harness gives it 127.0.0.1 addresses, bounded in count and
// time.
package load

import (
	"bufio"
	"bytes"
	"context"
	_ "embed"
	"fmt"
	"io"
	"net"
	"net/url"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/switchboard-gw/switchboard/gateway/carrier"
)

// Config is one load run.
type Config struct {
	// URL is the Twilio source's hook URL; Secret its auth token.
	URL, Secret string
	// Conns is the number of concurrent connections (default 64).
	Conns int
	// Duration bounds the run; Max bounds the number of requests (0: no
	// bound besides Duration). At least one must be set.
	Duration time.Duration
	Max      int
	// Prefix makes message ids unique across runs.
	Prefix string
	// Rate, when positive, paces the run: request i is due at start +
	// i/Rate, whichever connection sends it, and its latency is measured
	// from when it was due, so time spent waiting for a free connection
	// counts (no coordinated omission). Zero sends as fast as the
	// connections allow (a closed loop).
	Rate float64
}

// Result is what a run measured.
type Result struct {
	Requests, Errors int
	Start            time.Time // when the first request went out
	Elapsed          time.Duration
	P50, P99         time.Duration
}

// Rate is successful requests per second.
func (r Result) Rate() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Requests-r.Errors) / r.Elapsed.Seconds()
}

func (r Result) String() string {
	return fmt.Sprintf("%d requests (%d errors) in %v: %.0f/s, p50 %v, p99 %v",
		r.Requests, r.Errors, r.Elapsed.Round(time.Millisecond), r.Rate(), r.P50, r.P99)
}

// Callback is one pre-signed request body.
type Callback struct {
	Body []byte
	Sig  string
}

// inboundForm is Twilio's inbound MMS callback from shared/carriers (the
// fixture every carrier test uses), so load tests send what Twilio sends.
//
//go:embed inbound.form
var inboundForm string

// Prepare builds n unique, correctly signed Twilio inbound callbacks (the
// fixture with its message ids made unique), so that signing costs nothing
// during the measured window.
func Prepare(target, secret, prefix string, n int) []Callback {
	base, err := url.ParseQuery(inboundForm)
	if err != nil {
		panic(err)
	}
	out := make([]Callback, n)
	for i := range out {
		f := url.Values{}
		for k, v := range base {
			f[k] = v
		}
		sid := fmt.Sprintf("MM%s%0*d", prefix, 32-len(prefix), i)
		f.Set("MessageSid", sid)
		f.Set("SmsSid", sid)
		f.Set("SmsMessageSid", sid)
		out[i] = Callback{Body: []byte(f.Encode()), Sig: carrier.TwilioSignature(secret, target, f)}
	}
	return out
}

// Run sends the prepared callbacks (each at most once) over cfg.Conns
// connections until they run out, cfg.Max is reached or cfg.Duration ends.
//
// It speaks HTTP/1.1 itself over keep-alive connections, one goroutine
// each: a request is one write of bytes built from the prepared callback,
// its answer is read with a small parser (status line, Content-Length or
// chunked body). The load generator shares the machine with what it
// measures; net/http's client costs about as much CPU per request as the
// server under test, and every microsecond it spends is taken from the
// gateway and Redis.
func Run(ctx context.Context, cfg Config, cbs []Callback) Result {
	conns := cfg.Conns
	if conns <= 0 {
		conns = 64
	}
	u, err := url.Parse(cfg.URL)
	if err != nil || u.Scheme != "http" || u.Host == "" {
		return Result{Errors: 1}
	}
	head := "POST " + u.RequestURI() + " HTTP/1.1\r\nHost: " + u.Host +
		"\r\nContent-Type: application/x-www-form-urlencoded\r\nX-Twilio-Signature: "
	if cfg.Duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, cfg.Duration)
		defer cancel()
	}
	limit := len(cbs)
	if cfg.Max > 0 && cfg.Max < limit {
		limit = cfg.Max
	}
	var next atomic.Int64
	var errs atomic.Int64
	lat := make([][]time.Duration, conns)
	// The connections are opened before the clock starts: connection
	// set-up is not what is measured.
	open := make([]*clientConn, conns)
	var wg sync.WaitGroup
	for c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			open[c], _ = dial(ctx, u.Host) // on failure, the first request dials again
		}()
	}
	wg.Wait()
	start := time.Now()
	for c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			mine := make([]time.Duration, 0, limit/conns+1)
			cn := open[c]
			defer func() { cn.close() }()
			buf := make([]byte, 0, 2048)
			for ctx.Err() == nil {
				i := int(next.Add(1) - 1)
				if i >= limit {
					break
				}
				var due time.Time
				if cfg.Rate > 0 {
					due = start.Add(time.Duration(float64(i) / cfg.Rate * float64(time.Second)))
					if wait := time.Until(due); wait > 0 {
						select {
						case <-time.After(wait):
						case <-ctx.Done():
						}
						if ctx.Err() != nil {
							break
						}
					}
				}
				buf = append(buf[:0], head...)
				buf = append(buf, cbs[i].Sig...)
				buf = append(buf, "\r\nContent-Length: "...)
				buf = strconv.AppendInt(buf, int64(len(cbs[i].Body)), 10)
				buf = append(buf, "\r\n\r\n"...)
				buf = append(buf, cbs[i].Body...)
				t0 := time.Now()
				if !due.IsZero() {
					t0 = due
				}
				if cn == nil {
					var err error
					if cn, err = dial(ctx, u.Host); err != nil {
						if ctx.Err() == nil {
							errs.Add(1)
							mine = append(mine, time.Since(t0))
						}
						continue
					}
				}
				status, keep, err := cn.roundTrip(buf)
				if err != nil {
					cn.close()
					cn = nil
					if ctx.Err() == nil {
						errs.Add(1)
						mine = append(mine, time.Since(t0))
					}
					continue
				}
				mine = append(mine, time.Since(t0))
				if status != 200 {
					errs.Add(1)
				}
				if !keep {
					cn.close()
					cn = nil
				}
			}
			lat[c] = mine
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	all := slices.Concat(lat...)
	slices.Sort(all)
	r := Result{Requests: len(all), Errors: int(errs.Load()), Start: start, Elapsed: elapsed}
	if len(all) > 0 {
		r.P50 = all[len(all)/2]
		r.P99 = all[min(len(all)-1, len(all)*99/100)]
	}
	return r
}

// clientConn is one keep-alive HTTP/1.1 connection of the load generator.
type clientConn struct {
	c  net.Conn
	br *bufio.Reader
}

func dial(ctx context.Context, host string) (*clientConn, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", host)
	if err != nil {
		return nil, err
	}
	return &clientConn{c: c, br: bufio.NewReaderSize(c, 4096)}, nil
}

func (cn *clientConn) close() {
	if cn != nil {
		cn.c.Close()
	}
}

// roundTrip writes one request and reads its response, discarding the
// body. keep is false when the server closes the connection after it.
func (cn *clientConn) roundTrip(req []byte) (status int, keep bool, err error) {
	if err := cn.c.SetDeadline(time.Now().Add(30 * time.Second)); err != nil {
		return 0, false, err
	}
	if _, err := cn.c.Write(req); err != nil {
		return 0, false, err
	}
	line, err := cn.br.ReadSlice('\n')
	if err != nil {
		return 0, false, err
	}
	// "HTTP/1.1 200 OK\r\n"
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.")) {
		return 0, false, fmt.Errorf("bad status line %q", line)
	}
	status, err = strconv.Atoi(string(line[9:12]))
	if err != nil {
		return 0, false, fmt.Errorf("bad status line %q", line)
	}
	length, chunked, keep, err := readHeaders(cn.br)
	if err != nil {
		return 0, false, err
	}
	if length >= 0 || chunked {
		return status, keep, discardBody(cn.br, length, chunked)
	}
	// No length: the body runs to the end of the connection.
	_, err = io.Copy(io.Discard, cn.br)
	return status, false, err
}

// readHeaders reads header lines up to the blank line and returns what
// framing needs: Content-Length (-1 if absent), whether the body is
// chunked, and whether the connection stays open.
func readHeaders(br *bufio.Reader) (length int, chunked, keep bool, err error) {
	length, keep = -1, true
	for {
		h, err := br.ReadSlice('\n')
		if err != nil {
			return 0, false, false, err
		}
		h = bytes.TrimRight(h, "\r\n")
		if len(h) == 0 {
			return length, chunked, keep, nil
		}
		name, value, ok := bytes.Cut(h, []byte(":"))
		if !ok {
			return 0, false, false, fmt.Errorf("bad header line %q", h)
		}
		value = bytes.TrimSpace(value)
		switch {
		case bytes.EqualFold(name, []byte("Content-Length")):
			if length, err = strconv.Atoi(string(value)); err != nil || length < 0 {
				return 0, false, false, fmt.Errorf("bad Content-Length %q", value)
			}
		case bytes.EqualFold(name, []byte("Transfer-Encoding")):
			chunked = bytes.EqualFold(value, []byte("chunked"))
		case bytes.EqualFold(name, []byte("Connection")):
			keep = !bytes.EqualFold(value, []byte("close"))
		}
	}
}

// discardBody reads a body of length bytes, or a chunked one, and drops it.
func discardBody(br *bufio.Reader, length int, chunked bool) error {
	if !chunked {
		_, err := br.Discard(max(length, 0))
		return err
	}
	for {
		l, err := br.ReadSlice('\n')
		if err != nil {
			return err
		}
		size, err := strconv.ParseInt(string(bytes.TrimRight(bytes.SplitN(l, []byte(";"), 2)[0], "\r\n")), 16, 64)
		if err != nil || size < 0 {
			return fmt.Errorf("bad chunk size %q", l)
		}
		if _, err := br.Discard(int(size) + 2); err != nil { // the chunk and its CRLF
			return err
		}
		if size == 0 {
			return nil // (no trailers from our peers)
		}
	}
}

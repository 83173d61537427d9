// Package load generates signed carrier callbacks against a gateway and
// measures throughput and latency. It sends only to the URL it is given;
// the benchmark harness gives it 127.0.0.1 addresses, bounded in count and
// time.
package load

import (
	"bytes"
	"context"
	_ "embed"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
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
func Run(ctx context.Context, cfg Config, cbs []Callback) Result {
	conns := cfg.Conns
	if conns <= 0 {
		conns = 64
	}
	tr := &http.Transport{MaxIdleConns: conns, MaxIdleConnsPerHost: conns, MaxConnsPerHost: conns, DisableCompression: true}
	client := &http.Client{Transport: tr, Timeout: 30 * time.Second}
	defer tr.CloseIdleConnections()
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
	var wg sync.WaitGroup
	start := time.Now()
	for c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			mine := make([]time.Duration, 0, limit/conns+1)
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
				req, _ := http.NewRequestWithContext(ctx, http.MethodPost, cfg.URL, bytes.NewReader(cbs[i].Body))
				req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
				req.Header.Set("X-Twilio-Signature", cbs[i].Sig)
				t0 := time.Now()
				if !due.IsZero() {
					t0 = due
				}
				resp, err := client.Do(req)
				if err != nil {
					if ctx.Err() == nil {
						errs.Add(1)
						mine = append(mine, time.Since(t0))
					}
					continue
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				mine = append(mine, time.Since(t0))
				if resp.StatusCode != http.StatusOK {
					errs.Add(1)
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

// Package gateway is the HTTP side of Switchboard: the carrier ingress, the
// health endpoints, and Serve, the one place that wires configuration,
// store, carriers and delivery workers together.
package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"time"

	"golang.org/x/time/rate"

	"github.com/switchboard-gw/switchboard/gateway/carrier"
	"github.com/switchboard-gw/switchboard/policy"
	"github.com/switchboard-gw/switchboard/queue"
)

// Gateway answers carrier callbacks: verify, normalize, route, store, ack.
type Gateway struct {
	cfg     *policy.Config
	store   *queue.Store
	log     *slog.Logger
	now     func() time.Time
	tenants map[string]*tenant
	trusted []netip.Prefix
	// wake, when set, is told which tenant just enqueued, so its worker
	// reads at once.
	wake func(tenant string)
}

type tenant struct {
	cfg     *policy.Tenant
	sources map[string]*source
	ingress *rate.Limiter
}

type source struct {
	cfg     *policy.Source
	carrier carrier.Carrier
	// rawFor lists the destinations whose format needs the raw callback.
	rawFor map[string]bool
}

// New builds the gateway for cfg. Problems the policy package cannot see
// (a carrier's key that does not parse) come back as policy.Errors.
func New(cfg *policy.Config, store *queue.Store, log *slog.Logger) (*Gateway, error) {
	g := &Gateway{cfg: cfg, store: store, log: log, now: time.Now, tenants: map[string]*tenant{}}
	for _, p := range cfg.Server.TrustedProxies {
		pfx, _ := policy.ParsePrefix(p) // validated by policy.Load
		g.trusted = append(g.trusted, pfx)
	}
	if err := BuildCarriers(cfg, func(tid, sid string, c carrier.Carrier) {
		t := g.tenants[tid]
		if t == nil {
			tc := cfg.Tenants[tid]
			t = &tenant{cfg: tc, sources: map[string]*source{}}
			if !tc.IngressRate.Unlimited() {
				t.ingress = rate.NewLimiter(rate.Limit(tc.IngressRate.PerSecond), tc.IngressRate.Burst)
			}
			g.tenants[tid] = t
		}
		s := &source{cfg: cfg.Tenants[tid].Sources[sid], carrier: c, rawFor: map[string]bool{}}
		for did, d := range cfg.Tenants[tid].Destinations {
			if d.Format == policy.FormatRaw {
				s.rawFor[did] = true
			}
		}
		t.sources[sid] = s
	}); err != nil {
		return nil, err
	}
	for tid, tc := range cfg.Tenants {
		if g.tenants[tid] == nil {
			g.tenants[tid] = &tenant{cfg: tc, sources: map[string]*source{}}
		}
	}
	return g, nil
}

// BuildCarriers constructs every source's carrier, calling add for each,
// and returns every problem as policy.Errors located in the config.
func BuildCarriers(cfg *policy.Config, add func(tenant, source string, c carrier.Carrier)) error {
	var errs policy.Errors
	for _, tid := range cfg.TenantIDs() {
		t := cfg.Tenants[tid]
		for sid, s := range t.Sources {
			cc, err := carrierConfig(s)
			if err == nil {
				var c carrier.Carrier
				c, err = carrier.New(cc)
				if err == nil {
					if add != nil {
						add(tid, sid, c)
					}
					continue
				}
			}
			errs = append(errs, cfg.Problem(fmt.Sprintf("tenants.%s.sources.%s", tid, sid), err.Error()))
		}
	}
	if len(errs) > 0 {
		return errs
	}
	return nil
}

func carrierConfig(s *policy.Source) (carrier.Config, error) {
	c := carrier.Config{
		Carrier:         s.Carrier,
		Secret:          s.Secret,
		SignatureMethod: s.SignatureMethod,
		PublicKey:       s.PublicKey,
		Username:        s.Username,
		Password:        s.Password,
		TopicARNs:       s.TopicARNs,
		AutoConfirm:     s.AutoConfirm,
		URLToken:        s.URLToken,
		Header:          s.Header,
		Algorithm:       s.Algorithm,
		Encoding:        s.Encoding,
		Prefix:          s.Prefix,
		ReplayWindow:    s.ReplayWindow.D(),
	}
	for _, a := range s.AllowedIPs {
		p, err := policy.ParsePrefix(a)
		if err != nil {
			return c, errors.New("allowed_ips: " + err.Error())
		}
		c.AllowedIPs = append(c.AllowedIPs, p)
	}
	return c, nil
}

// Handler serves the carrier-facing listener: POST (and GET)
// /hooks/{tenant}/{source}, /healthz and /readyz.
func (g *Gateway) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /hooks/{tenant}/{source}", g.hook)
	mux.HandleFunc("GET /hooks/{tenant}/{source}", g.hook)
	g.health(mux)
	return recoverer(g.log, mux)
}

func (g *Gateway) health(mux *http.ServeMux) {
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if err := g.store.Ping(ctx); err != nil {
			w.Header().Set("Retry-After", "1")
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = w.Write([]byte("redis unreachable\n"))
			return
		}
		_, _ = w.Write([]byte("ready\n"))
	})
}

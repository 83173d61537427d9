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
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"

	"github.com/switchboard-gw/switchboard/gateway/carrier"
	"github.com/switchboard-gw/switchboard/policy"
	"github.com/switchboard-gw/switchboard/queue"
)

// Gateway answers carrier callbacks: verify, normalize, route, store, ack.
type Gateway struct {
	store *queue.Store
	log   *slog.Logger
	now   func() time.Time
	// cur is what the configuration says: tenants, sources, routes and
	// ingress limits. Reload swaps it whole; a request uses the one it
	// started with.
	cur atomic.Pointer[routing]
	// wake, when set, is told which tenant just enqueued, so its worker
	// reads at once.
	wake func(tenant string)
	// metrics, when set, counts callbacks (see metrics.go).
	metrics *metrics
	// tracing, when set, traces callbacks (see tracing.go).
	tracing *tracing
	// pulls wakes the pull API's waiting long-polls and streams (pull.go).
	pulls pullHub
	// pass runs pass-through sources (passthrough.go).
	pass passState
	// batch, when set, groups concurrent callbacks' enqueues into one
	// pipeline (group commit); nil sends each on its own.
	batch *queue.Batcher
	// spool, when set, keeps callbacks while Redis is unreachable
	// (spool.go); nil: they get 503.
	spool *spool
	// attempts, when set, records what became of pulled events' hand-outs
	// in their history (pull.go).
	attempts *queue.AttemptLog
}

// enqueue stores a callback's entries, through the group-commit batcher
// when there is one.
func (g *Gateway) enqueue(ctx context.Context, ttl time.Duration, entries ...*queue.Entry) ([]bool, error) {
	if g.batch != nil {
		return g.batch.Enqueue(ctx, ttl, entries...)
	}
	return g.store.Enqueue(ctx, ttl, entries...)
}

// routing is one configuration's view of the ingress; it is not modified
// once built.
type routing struct {
	cfg     *policy.Config
	tenants map[string]*tenant
	trusted []netip.Prefix
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
	g := &Gateway{store: store, log: log, now: time.Now}
	rt, err := buildRouting(cfg, nil)
	if err != nil {
		return nil, err
	}
	g.cur.Store(rt)
	return g, nil
}

// routing returns the configuration in force.
func (g *Gateway) routing() *routing { return g.cur.Load() }

// config returns the configuration in force.
func (g *Gateway) config() *policy.Config { return g.cur.Load().cfg }

// Reload makes cfg the configuration in force for the next callback. A
// tenant whose ingress_rate did not change keeps its limiter (and the
// tokens it has spent). On error (a carrier's key that does not parse,
// as policy.Errors) nothing changes.
func (g *Gateway) Reload(cfg *policy.Config) error {
	rt, err := buildRouting(cfg, g.cur.Load())
	if err != nil {
		return err
	}
	g.cur.Store(rt)
	return nil
}

func buildRouting(cfg *policy.Config, old *routing) (*routing, error) {
	rt := &routing{cfg: cfg, tenants: make(map[string]*tenant, len(cfg.Tenants))}
	for _, p := range cfg.Server.TrustedProxies {
		pfx, _ := policy.ParsePrefix(p) // validated by policy.Load
		rt.trusted = append(rt.trusted, pfx)
	}
	for tid, tc := range cfg.Tenants {
		t := &tenant{cfg: tc, sources: map[string]*source{}}
		if !tc.IngressRate.Unlimited() {
			if prev := old.tenant(tid); prev != nil && prev.ingress != nil && prev.cfg.IngressRate == tc.IngressRate {
				t.ingress = prev.ingress
			} else {
				t.ingress = rate.NewLimiter(rate.Limit(tc.IngressRate.PerSecond), tc.IngressRate.Burst)
			}
		}
		rt.tenants[tid] = t
	}
	if err := BuildCarriers(cfg, func(tid, sid string, c carrier.Carrier) {
		s := &source{cfg: cfg.Tenants[tid].Sources[sid], carrier: c, rawFor: map[string]bool{}}
		for did, d := range cfg.Tenants[tid].Destinations {
			if d.Format == policy.FormatRaw {
				s.rawFor[did] = true
			}
		}
		rt.tenants[tid].sources[sid] = s
	}); err != nil {
		return nil, err
	}
	return rt, nil
}

// tenant returns the tenant tid, or nil; rt may be nil.
func (rt *routing) tenant(tid string) *tenant {
	if rt == nil {
		return nil
	}
	return rt.tenants[tid]
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

// snsHTTPClient, when not nil, is the client aws-sns sources fetch signing
// certificates and confirm subscriptions with (carrier.Config.HTTPClient);
// nil means the carrier's own default client. Only this package's tests set
// it, to stand a local TLS server in for Amazon SNS. It is deliberately not
// in policy.Source: no configuration can redirect those fetches, and the
// carrier checks every URL it fetches (https on an SNS host; for a
// certificate also no port and .pem) whatever client does the fetching.
var snsHTTPClient *http.Client

// The loader checks each source as its carrier reads it, so that check
// and reloads report those problems with the rest (policy.SourceCheck).
func init() {
	policy.SourceCheck = func(s *policy.Source) error {
		cc, err := carrierConfig(s)
		if err == nil {
			_, err = carrier.New(cc)
		}
		return err
	}
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
		HTTPClient:      snsHTTPClient,
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
// /hooks/{tenant}/{source}, the pull API /v1/pull/…, /healthz and /readyz.
func (g *Gateway) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /hooks/{tenant}/{source}", g.counted(g.hook))
	mux.HandleFunc("GET /hooks/{tenant}/{source}", g.counted(g.hook))
	g.pullRoutes(mux)
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

package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/switchboard-gw/switchboard/gateway/delivery"
	"github.com/switchboard-gw/switchboard/policy"
	"github.com/switchboard-gw/switchboard/queue"
)

// Server is a running gateway: listeners, store and delivery workers.
type Server struct {
	// started is the configuration Start was given. Its server.listen,
	// server.admin_listen, redis.url, delivery.allow_private_networks and
	// delivery.rate_scope stay in force until a restart; everything else
	// follows Reload (see config).
	started *policy.Config
	log     *slog.Logger
	rdb     *redis.Client
	store   *queue.Store
	embed   *queue.Embedded
	gw      *Gateway
	metrics *metrics
	tracing *tracing
	// attempts writes delivery attempts to the event history in batches.
	attempts *queue.AttemptLog
	// acker acknowledges delivered jobs in shared pipelines.
	acker *queue.Acker

	// Delivery workers, one per tenant; mu guards them (Reload adds and
	// removes tenants while serving).
	mu        sync.Mutex
	workers   map[string]*delivery.Worker
	cancels   map[string]context.CancelFunc // stops one tenant's worker
	wctx      context.Context               // parent of the workers' contexts; nil until Serve
	wg        sync.WaitGroup                // running workers
	stopping  bool
	client    *http.Client
	consumer  string
	readSlots chan struct{}

	ingress, admin         *http.Server
	ingressLn, adminLn     net.Listener
	IngressAddr, AdminAddr string
}

// Options adjust Start for tests and the CLI.
type Options struct {
	// Consumer names this instance in the consumer groups (default:
	// hostname-pid).
	Consumer string
}

// Start opens the store (Redis at redis.url, or the embedded store when it
// is empty), binds both listeners and starts the delivery workers. Call
// Serve to serve and Shutdown to stop.
func Start(cfg *policy.Config, log *slog.Logger, opts Options) (*Server, error) {
	log = maskingLogger(log)
	s := &Server{started: cfg, log: log, workers: map[string]*delivery.Worker{}, cancels: map[string]context.CancelFunc{},
		readSlots: make(chan struct{}, blockingReads)}
	url := cfg.Redis.URL
	if url == "" {
		e, err := queue.StartEmbedded()
		if err != nil {
			return nil, fmt.Errorf("start embedded store: %w", err)
		}
		s.embed = e
		url = "redis://" + e.Addr()
		log.Warn("redis.url is empty: using the embedded in-process store; NOTHING SURVIVES A RESTART — set redis.url for real use")
	}
	ropts, err := redis.ParseURL(url)
	if err != nil {
		s.close()
		return nil, errors.New("redis.url: cannot parse it") // the URL may hold a password
	}
	ropts.DialTimeout = 2 * time.Second
	ropts.ReadTimeout = 3 * time.Second
	ropts.WriteTimeout = 3 * time.Second
	ropts.MaxRetries = 1
	ropts.PoolSize = max(ropts.PoolSize, poolSize)
	// A hard cap: go-redis would otherwise open connections beyond
	// PoolSize under a burst (plus its pipeline pool of 10).
	ropts.MaxActiveConns = ropts.PoolSize
	s.rdb = redis.NewClient(ropts)
	s.store = queue.New(s.rdb)
	s.acker = &queue.Acker{Store: s.store}
	s.attempts = s.store.NewAttemptLog(4096, func(err error) {
		log.Warn("recording attempts in the event history failed", "err", err.Error())
	})

	gw, err := New(cfg, s.store, log)
	if err != nil {
		s.close()
		return nil, err
	}
	s.gw = gw
	gw.attempts = s.attempts
	if w := cfg.Redis.GroupCommitWindow.D(); w > 0 {
		gw.batch = &queue.Batcher{Store: s.store, Window: w}
	}
	if sc := cfg.Spool; sc != nil {
		if gw.spool, err = openSpool(sc.Dir, sc.MaxBytes, log); err != nil {
			s.close()
			return nil, err
		}
		size, waiting := gw.spool.stats()
		log.Info("spool on: callbacks are kept in a local journal while Redis is unreachable",
			"dir", sc.Dir, "max_bytes", sc.MaxBytes, "bytes", size, "waiting", waiting)
	}
	s.metrics = newMetrics(s)
	s.metrics.seed(cfg)
	gw.metrics = s.metrics
	if gw.spool != nil {
		s.metrics.reg.MustRegister(gw.spool.collectors()...)
	}
	if s.tracing, err = newTracing(cfg.Tracing, strings.TrimPrefix(delivery.UserAgent, "Switchboard/"), log); err != nil {
		s.close()
		return nil, fmt.Errorf("tracing: %w", err)
	}
	gw.tracing = s.tracing

	consumer := opts.Consumer
	if consumer == "" {
		host, _ := os.Hostname()
		consumer = fmt.Sprintf("%s-%d", host, os.Getpid())
	}
	s.consumer = consumer
	s.client = delivery.NewClient(cfg.Delivery.AllowPrivateNetworks)
	if cfg.Delivery.AllowPrivateNetworks {
		log.Warn("delivery.allow_private_networks is true: deliveries may reach loopback and private addresses")
	}
	for tid, t := range cfg.Tenants {
		s.workers[tid] = s.newWorker(tid, t)
	}
	gw.wake = s.wakeTenant
	gw.pass.transport = s.client.Transport // pass-through shares the delivery guard
	gw.pass.allow = s.passthroughBreaker

	if s.ingressLn, err = net.Listen("tcp", cfg.Server.Listen); err != nil {
		s.close()
		return nil, fmt.Errorf("server.listen: %w", err)
	}
	if s.adminLn, err = net.Listen("tcp", cfg.Server.AdminListen); err != nil {
		s.close()
		return nil, fmt.Errorf("server.admin_listen: %w", err)
	}
	s.IngressAddr, s.AdminAddr = s.ingressLn.Addr().String(), s.adminLn.Addr().String()

	admin := http.NewServeMux()
	gw.health(admin)
	admin.Handle("GET /metrics", s.metrics.handler())
	admin.Handle("/admin/", newAdmin(s))
	if !adminEnabled(cfg) {
		log.Info("the admin API is off: no server.admin_token or tenant admin_token is configured; /admin/v1/ answers 404")
	}
	s.ingress = newHTTPServer(gw.Handler())
	s.ingress.RegisterOnShutdown(gw.pulls.shutdown) // long-polls and streams would hold up Shutdown
	s.admin = newHTTPServer(recoverer(log, admin))
	return s, nil
}

// newHTTPServer sets every timeout, so slow clients cannot hold
// connections (slowloris).
func newHTTPServer(h http.Handler) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      60 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
	}
}

// recoverer turns a panic into a 500 and a log line: none reaches a client.
func recoverer(log *slog.Logger, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				log.Error("panic serving request", "path", r.URL.Path, "panic", fmt.Sprint(v))
				http.Error(w, "internal error", http.StatusInternalServerError)
			}
		}()
		h.ServeHTTP(w, r)
	})
}

// Serve serves until ctx is done, then shuts down: it stops accepting
// callbacks, lets those in progress finish, stops reading jobs, waits for
// deliveries in flight (each bounded by its timeout) and records their
// outcomes, so nothing is lost. It returns nil after a clean stop.
func (s *Server) Serve(ctx context.Context) error {
	errc := make(chan error, 2)
	go func() { errc <- s.ingress.Serve(s.ingressLn) }()
	go func() { errc <- s.admin.Serve(s.adminLn) }()
	s.log.Info("switchboard serving", "listen", s.IngressAddr, "admin_listen", s.AdminAddr,
		"tenants", len(s.config().Tenants))

	wctx, stopWorkers := context.WithCancel(context.Background())
	s.mu.Lock()
	s.wctx = wctx
	for tid, w := range s.workers {
		s.runWorker(tid, w)
	}
	s.mu.Unlock()
	s.wg.Add(2)
	go func() {
		defer s.wg.Done()
		s.gw.sweepParts(wctx) // multipart.go: messages whose parts did not all come
	}()
	go func() {
		defer s.wg.Done()
		s.gw.sweepPulls(wctx) // pull.go: spent hand-outs of apps that stopped pulling
	}()
	if s.gw.spool != nil {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.gw.drainSpool(wctx) // spool.go; what is left waits for the next start
		}()
	}

	var err error
	select {
	case <-ctx.Done():
	case err = <-errc:
		err = fmt.Errorf("listener stopped: %w", err)
	}
	s.log.Info("shutting down: no new callbacks; finishing deliveries in flight")
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	_ = s.ingress.Shutdown(sctx)
	if s.gw.batch != nil {
		s.gw.batch.Close() // the callbacks in progress were answered; nothing is queued
	}
	cancel()
	s.mu.Lock()
	s.stopping = true // no Reload starts a worker from now on
	s.mu.Unlock()
	stopWorkers()
	s.wg.Wait()
	sctx, cancel = context.WithTimeout(context.Background(), time.Second)
	_ = s.admin.Shutdown(sctx)
	cancel()
	s.close()
	s.log.Info("stopped")
	return err
}

func (s *Server) close() {
	if s.ingressLn != nil && s.ingress == nil {
		s.ingressLn.Close()
	}
	if s.adminLn != nil && s.admin == nil {
		s.adminLn.Close()
	}
	if s.acker != nil {
		s.acker.Close()
	}
	if s.attempts != nil {
		s.attempts.Close() // the attempts just finished reach the history
	}
	if s.gw != nil && s.gw.spool != nil {
		s.gw.spool.close()
	}
	if s.rdb != nil {
		s.rdb.Close()
	}
	if s.embed != nil {
		s.embed.Close()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	s.tracing.close(ctx) // flush the spans not yet exported
	cancel()
}

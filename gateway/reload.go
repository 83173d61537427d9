package gateway

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/switchboard-gw/switchboard/gateway/delivery"
	"github.com/switchboard-gw/switchboard/policy"
)

// Per-instance Redis connection limits. Deliveries, acks and enqueues take
// a connection only for one round trip; the workers' blocking reads hold
// one while they wait (up to readBlock), so at most blockingReads of them
// wait at once, however many tenants there are: the rest read without
// waiting and poll. A thousand destinations therefore cost no connection
// or goroutine each.
const (
	poolSize      = 64
	blockingReads = 16
)

// config returns the configuration in force (the last one Reload
// accepted).
func (s *Server) config() *policy.Config { return s.gw.config() }

// worker returns tenant tid's delivery worker, or nil.
func (s *Server) worker(tid string) *delivery.Worker {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.workers[tid]
}

func (s *Server) newWorker(tid string, t *policy.Tenant) *delivery.Worker {
	return &delivery.Worker{
		Store: s.store, Tenant: t, Client: s.client, Consumer: s.consumer,
		Acker:   s.acker,
		Log:     s.log,
		Observe: s.observe(tid),
		RateLimited: func(dest string) {
			if s.config().Tenants[tid] != nil { // not after a reload removed it
				s.metrics.rateLimited(tid, dest)
			}
		},
		RateScope: s.started.Delivery.RateScope,
		ReadSlots: s.readSlots,
	}
}

// runWorker starts w for tenant tid; s.mu is held and Serve has begun.
func (s *Server) runWorker(tid string, w *delivery.Worker) {
	ctx, cancel := context.WithCancel(s.wctx)
	s.cancels[tid] = cancel
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		_ = w.Run(ctx) // returns once its attempts in flight have ended
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.workers[tid] == nil && !s.stopping {
			// Removed by a reload: an attempt that ended after the reload
			// dropped the tenant's series may have written one again.
			s.metrics.forgetTenant(tid)
		}
	}()
}

// restartOnly are the settings Reload cannot change in a running process.
var restartOnly = []struct {
	key string
	get func(*policy.Config) any
}{
	{"server.listen", func(c *policy.Config) any { return c.Server.Listen }},
	{"server.admin_listen", func(c *policy.Config) any { return c.Server.AdminListen }},
	{"redis.url", func(c *policy.Config) any { return c.Redis.URL }},
	{"delivery.allow_private_networks", func(c *policy.Config) any { return c.Delivery.AllowPrivateNetworks }},
	{"delivery.rate_scope", func(c *policy.Config) any { return c.Delivery.RateScope }},
	{"tracing", func(c *policy.Config) any { return c.Tracing }},
	{"spool", func(c *policy.Config) any { return c.Spool }},
}

// Reload makes cfg the configuration in force, all at once: ingress
// (tenants, sources, routes, limits) and delivery. A destination whose
// settings did not change keeps its limiter, breaker and attempts in
// flight; a removed destination or tenant is no longer read, and its jobs
// stay in Redis (the dlq tools and a later reload that brings it back see
// them). The settings listed in Server.started need a restart: a change
// to them is logged and ignored. On error nothing changes.
func (s *Server) Reload(cfg *policy.Config) error {
	s.mu.Lock() // one reload at a time (SIGHUP and --watch may race)
	defer s.mu.Unlock()
	if s.stopping {
		return errors.New("shutting down")
	}
	old := s.config()
	// Ingress first: it is the step that can fail.
	if err := s.gw.Reload(cfg); err != nil {
		return err
	}
	s.metrics.seed(cfg)
	for _, k := range restartOnly {
		if !reflect.DeepEqual(k.get(cfg), k.get(s.started)) {
			s.log.Warn("configuration reload: this setting changes only on restart; keeping the running value", "key", k.key)
		}
	}
	for tid, t := range cfg.Tenants {
		if w := s.workers[tid]; w != nil {
			w.Update(t)
			continue
		}
		w := s.newWorker(tid, t)
		s.workers[tid] = w
		if s.wctx != nil {
			s.runWorker(tid, w)
		}
	}
	for tid := range s.workers {
		if _, ok := cfg.Tenants[tid]; ok {
			continue
		}
		if cancel := s.cancels[tid]; cancel != nil {
			cancel() // it finishes its attempts in flight; its jobs stay in Redis
		}
		delete(s.workers, tid)
		delete(s.cancels, tid)
		s.metrics.forgetTenant(tid)
	}
	s.log.Info("configuration reloaded", changes(old, cfg)...)
	switch on := adminEnabled(cfg); {
	case adminEnabled(old) && !on:
		s.log.Info("the admin API is off: the reload removed every admin token; /admin/v1/ answers 404")
	case !adminEnabled(old) && on:
		s.log.Info("the admin API is on: the reload configured an admin token")
	}
	return nil
}

// changes describes what a reload changes, for the log: tenants
// ("acme"), their destinations ("acme/crm"), sources ("acme/sources.tw"),
// routes ("acme/routes") and other settings ("acme/settings"), and the
// top-level sections ("server", "delivery", …).
func changes(old, cfg *policy.Config) []any {
	var added, removed, changed []string
	for _, sec := range []struct {
		name     string
		was, now any
	}{
		{"server", old.Server, cfg.Server}, {"redis", old.Redis, cfg.Redis}, {"delivery", old.Delivery, cfg.Delivery},
		{"dedup", old.Dedup, cfg.Dedup}, {"history", old.History, cfg.History}, {"tracing", old.Tracing, cfg.Tracing},
		{"spool", old.Spool, cfg.Spool}, {"tenants_dir", old.TenantsDir, cfg.TenantsDir},
	} {
		if !sameYAML(sec.was, sec.now) {
			changed = append(changed, sec.name)
		}
	}
	for _, tid := range cfg.TenantIDs() {
		t, o := cfg.Tenants[tid], old.Tenants[tid]
		if o == nil {
			added = append(added, tid)
			continue
		}
		for sid, src := range t.Sources {
			switch os := o.Sources[sid]; {
			case os == nil:
				added = append(added, tid+"/sources."+sid)
			case !sameYAML(os, src):
				changed = append(changed, tid+"/sources."+sid)
			}
		}
		for sid := range o.Sources {
			if t.Sources[sid] == nil {
				removed = append(removed, tid+"/sources."+sid)
			}
		}
		if !sameYAML(o.Routes, t.Routes) {
			changed = append(changed, tid+"/routes")
		}
		if o.AdminToken != t.AdminToken || o.IngressRate != t.IngressRate || o.DeliveryRate != t.DeliveryRate || o.History != t.History {
			changed = append(changed, tid+"/settings")
		}
		for _, did := range t.DestinationIDs() {
			switch od := o.Destinations[did]; {
			case od == nil:
				added = append(added, tid+"/"+did)
			case !reflect.DeepEqual(od, t.Destinations[did]):
				changed = append(changed, tid+"/"+did)
			}
		}
		for _, did := range o.DestinationIDs() {
			if t.Destinations[did] == nil {
				removed = append(removed, tid+"/"+did)
			}
		}
	}
	for _, tid := range old.TenantIDs() {
		if cfg.Tenants[tid] == nil {
			removed = append(removed, tid)
		}
	}
	slices.Sort(added)
	slices.Sort(removed)
	slices.Sort(changed)
	tn, src, dst, routes := cfg.Counts()
	return []any{"file", cfg.File, "tenants", tn, "sources", src, "destinations", dst, "routes", routes,
		"added", nonNil(added), "removed", nonNil(removed), "changed", nonNil(changed)}
}

// sameYAML compares two configuration values as their YAML would: by
// their keys, not by what loading compiled from them or where they were.
func sameYAML(a, b any) bool {
	x, err1 := yaml.Marshal(a)
	y, err2 := yaml.Marshal(b)
	return err1 == nil && err2 == nil && bytes.Equal(x, y)
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// ReloadFile loads and validates file (carriers included) and, if it is
// good, makes it the configuration in force. A bad file keeps the running
// configuration; the log says why, one problem per entry.
func (s *Server) ReloadFile(file string) error {
	cfg, err := policy.Load(file)
	if err == nil {
		err = s.Reload(cfg)
	}
	if err != nil {
		var errs policy.Errors
		problems := []string{err.Error()}
		if errors.As(err, &errs) {
			problems = problems[:0]
			for _, e := range errs {
				problems = append(problems, e.Error())
			}
		}
		s.log.Error("configuration reload failed; keeping the running configuration", "file", file, "problems", problems)
		return err
	}
	return nil
}

// Watch reloads file (see ReloadFile) whenever its content, or that of a
// file in its tenants_dir, changes, checking every interval until ctx is
// done. Editors that write in several steps may trigger a failed reload
// first; the next check sees the finished file.
func (s *Server) Watch(ctx context.Context, file string, interval time.Duration) {
	last := fingerprint(file, s.config().TenantsDir)
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		fp := fingerprint(file, s.config().TenantsDir)
		if fp == last {
			continue
		}
		last = fp
		s.log.Info("configuration file changed; reloading", "file", file)
		_ = s.ReloadFile(file)
	}
}

// fingerprint hashes the config file and the YAML files of its tenants
// directory (names and contents). Contents rather than modification times:
// a rewrite within the file system's time resolution is still seen.
func fingerprint(file, tenantsDir string) [sha256.Size]byte {
	h := sha256.New()
	add := func(name string) {
		b, err := os.ReadFile(name)
		if err != nil {
			b = []byte("unreadable: " + err.Error())
		}
		fmt.Fprintf(h, "%s\x00%d\x00", name, len(b))
		h.Write(b)
	}
	add(file)
	if tenantsDir != "" {
		dir := tenantsDir
		if !filepath.IsAbs(dir) {
			dir = filepath.Join(filepath.Dir(file), dir)
		}
		names, _ := filepath.Glob(filepath.Join(dir, "*.yaml"))
		more, _ := filepath.Glob(filepath.Join(dir, "*.yml"))
		names = append(names, more...)
		sort.Strings(names)
		for _, n := range names {
			add(n)
		}
	}
	var out [sha256.Size]byte
	h.Sum(out[:0])
	return out
}

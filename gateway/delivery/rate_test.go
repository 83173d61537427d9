package delivery

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/switchboard-gw/switchboard/policy"
)

// spacing returns the attempts' times, sorted.
func times(as []attempt) []time.Time {
	ts := make([]time.Time, len(as))
	for i, a := range as {
		ts[i] = a.at
	}
	slices.SortFunc(ts, func(a, b time.Time) int { return a.Compare(b) })
	return ts
}

// maxInWindow is the most attempts within any window of length d.
func maxInWindow(ts []time.Time, d time.Duration) int {
	best := 0
	for i := range ts {
		n := 0
		for j := i; j < len(ts) && ts[j].Sub(ts[i]) < d; j++ {
			n++
		}
		best = max(best, n)
	}
	return best
}

// TestRateLocal: a destination's rate spaces its attempts; the jobs it
// holds are not read (no attempt counted, nothing in the retry set).
func TestRateLocal(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	rcv := receiver(t, func() int { return http.StatusOK })
	tenant := loadTenant(t, tenantYAML("", fmt.Sprintf(`    destinations:
      app: {url: %q, secret: %s, rate: {per_second: 20, burst: 2}}
`, rcv.URL, testSecret)))
	r.start(tenant, "c1", policy.RateScopeLocal)
	r.enqueue(12, "app")
	var maxPending int64
	waitFor(t, 10*time.Second, "12 deliveries", func() bool {
		if p, err := r.rdb.XPending(context.Background(), "sb:{acme}:d:app", "sb").Result(); err == nil {
			maxPending = max(maxPending, p.Count)
		}
		if n, _ := r.rdb.ZCard(context.Background(), "sb:{acme}:retry").Result(); n != 0 {
			t.Fatalf("retry set holds %d jobs: a held job churned through it", n)
		}
		return len(r.made("app")) == 12
	})
	ts := times(r.made("app"))
	// burst 2, then one per 50ms: the 12th no earlier than 500ms after the first.
	if took := ts[11].Sub(ts[0]); took < 450*time.Millisecond {
		t.Errorf("12 deliveries took %v, want >= ~500ms at 20/s burst 2", took)
	}
	if n := maxInWindow(ts, 200*time.Millisecond); n > 2+4+1 {
		t.Errorf("%d deliveries within 200ms, want at most burst + 4 (+1 for timer jitter)", n)
	}
	for _, a := range r.made("app") {
		if a.attempt != 1 {
			t.Errorf("event %s delivered at attempt %d, want 1: holding must not count attempts", a.event, a.attempt)
		}
	}
	if maxPending > 3 {
		t.Errorf("up to %d jobs were read ahead, want at most the burst (+1): the limit must hold jobs in Redis", maxPending)
	}
}

// TestRateTotals: a destination's rate and the tenant's delivery_rate hold
// over all their deliveries: with the Redis scope across two workers (two
// gateway instances), with the local scope within one.
func TestRateTotals(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name, scope          string
		workers              int
		tenantRate, destRate string
		dests                []string
	}{
		{"redis scope, destination rate, two workers", policy.RateScopeRedis, 2, "", "rate: {per_second: 20, burst: 1}", []string{"app"}},
		{"redis scope, tenant delivery_rate, two workers", policy.RateScopeRedis, 2, "    delivery_rate: {per_second: 20, burst: 1}\n", "", []string{"app", "other"}},
		{"local scope, tenant delivery_rate", policy.RateScopeLocal, 1, "    delivery_rate: {per_second: 20, burst: 1}\n", "", []string{"app", "other"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			r := newRig(t)
			rcv := receiver(t, func() int { return http.StatusOK })
			tenant := loadTenant(t, tenantYAML("", c.tenantRate+fmt.Sprintf(`    destinations:
      app: {url: %q, secret: %s, %s}
      other: {url: %q, secret: %s}
`, rcv.URL, testSecret, c.destRate, rcv.URL, testSecret)))
			for i := range c.workers {
				r.start(tenant, fmt.Sprintf("c%d", i), c.scope)
			}
			for _, d := range c.dests {
				r.enqueue(20/len(c.dests), d)
			}
			waitFor(t, 10*time.Second, "20 deliveries", func() bool { return len(r.made("")) == 20 })
			ts := times(r.made(""))
			// 20/s with burst 1: 19 intervals of 50ms.
			if took := ts[19].Sub(ts[0]); took < 900*time.Millisecond {
				t.Errorf("20 deliveries took %v, want >= ~950ms: the limit must hold in total", took)
			}
			if n := maxInWindow(ts, 250*time.Millisecond); n > 5+1 {
				t.Errorf("%d deliveries within 250ms, want at most 5 (+1 for timer jitter)", n)
			}
			for _, a := range r.made("") {
				if a.attempt != 1 {
					t.Errorf("event %s delivered at attempt %d, want 1", a.event, a.attempt)
				}
			}
		})
	}
}

// TestUpdateKeepsState: a reload keeps the breaker and limiter of a
// destination whose settings did not change, starts a changed one afresh,
// and stops reading a removed one, whose jobs stay in Redis.
func TestUpdateKeepsState(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	rcv := receiver(t, func() int { return http.StatusBadGateway })
	ok := receiver(t, func() int { return http.StatusOK })
	cfg := func(extra string) string {
		return tenantYAML("  retry: {initial: 10ms, max: 10ms, max_attempts: 100}\n", fmt.Sprintf(`    destinations:
      dead: {url: %q, secret: %s, rate: {per_second: 100, burst: 5}, breaker: {min_requests: 2, open_for: 1m}}
      %s
`, rcv.URL, testSecret, extra))
	}
	v1 := loadTenant(t, cfg(fmt.Sprintf("gone: {url: %q, secret: %s}", ok.URL, testSecret)))
	w := r.start(v1, "c1", policy.RateScopeLocal)
	r.enqueue(2, "dead")
	waitFor(t, 5*time.Second, "the breaker to open", func() bool { return w.BreakerState("dead") == "open" })
	before := w.st.Load().dests["dead"]

	// Unchanged "dead", removed "gone", added "new".
	w.Update(loadTenant(t, cfg(fmt.Sprintf("new: {url: %q, secret: %s}", ok.URL, testSecret))))
	after := w.st.Load().dests["dead"]
	if after != before || after.limiter != before.limiter {
		t.Error("an unchanged destination lost its runtime state on reload")
	}
	if got := w.BreakerState("dead"); got != "open" {
		t.Errorf("breaker after reload = %s, want still open", got)
	}
	if w.BreakerState("gone") != "" || w.BreakerState("new") != "closed" {
		t.Errorf("after reload: gone = %q, new = %q, want \"\" and closed", w.BreakerState("gone"), w.BreakerState("new"))
	}
	r.enqueue(3, "gone")
	r.enqueue(1, "new")
	waitFor(t, 5*time.Second, "the new destination's delivery", func() bool { return len(r.made("new")) == 1 })
	// The worker has read after the reload: the removed destination's jobs
	// wait in its stream, unread.
	ctx := context.Background()
	if n, _ := r.rdb.XLen(ctx, "sb:{acme}:d:gone").Result(); n != 3 {
		t.Errorf("removed destination's stream holds %d jobs, want 3", n)
	}
	if p, _ := r.rdb.XPending(ctx, "sb:{acme}:d:gone", "sb").Result(); p != nil && p.Count != 0 {
		t.Errorf("%d jobs of the removed destination were read", p.Count)
	}
	if len(r.made("gone")) != 0 {
		t.Error("the removed destination was delivered to")
	}

	// A changed destination starts afresh (a closed breaker).
	w.Update(loadTenant(t, tenantYAML("", fmt.Sprintf(`    destinations:
      dead: {url: %q, secret: %s, timeout: 3s}
`, rcv.URL, testSecret))))
	if w.st.Load().dests["dead"] == before {
		t.Error("a changed destination kept its old runtime state")
	}
	if got := w.BreakerState("dead"); got != "closed" {
		t.Errorf("breaker of a changed destination = %s, want a fresh closed one", got)
	}
}

// TestRateWaitIsBounded: a job whose rate slot is further away than
// maxRateWait goes back to its stream untouched instead of waiting read.
func TestRateWaitIsBounded(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	tenant := loadTenant(t, tenantYAML("", fmt.Sprintf(`    destinations:
      app: {url: "http://127.0.0.1:1", secret: %s, rate: {per_second: 0.2, burst: 1}}
`, testSecret)))
	w := &Worker{Store: r.store, Tenant: tenant, Consumer: "c1", RateScope: policy.RateScopeRedis, Log: slog.New(slog.DiscardHandler)}
	w.init()
	st := w.st.Load()
	r.enqueue(2, "app")
	jobs, err := r.store.Read(context.Background(), "acme", "c1", map[string]int{"app": 2}, 0)
	if err != nil || len(jobs) != 2 {
		t.Fatalf("read = %d jobs, %v", len(jobs), err)
	}
	delays := w.reserveRedis(context.Background(), st, jobs)
	if delays[0] != 0 || delays[1] != -1 {
		t.Errorf("delays = %v, want [0 -1]: the second is 5s away, beyond maxRateWait", delays)
	}
	if held := time.Duration(st.dests["app"].heldUntil.Load() - time.Now().UnixNano()); held < 4*time.Second {
		t.Errorf("destination held for %v, want ~5s until its next token", held)
	}
	if want := w.gates(st); want["app"] != 0 {
		t.Errorf("gates = %v while the rate is spent, want app not read", want)
	}
}

package delivery

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/sony/gobreaker/v2"

	"github.com/switchboard-gw/switchboard/policy"
	"github.com/switchboard-gw/switchboard/queue"
	"github.com/switchboard-gw/switchboard/queue/redistest"
)

const testSecret = "whsec_c3dpdGNoYm9hcmQtZGVtby1zZWNyZXQta2V5LTAwMDE="

// attempt is one delivery attempt the worker made.
type attempt struct {
	dest    string
	event   string
	attempt int
	status  int
	at      time.Time
	lost    bool // Result Lost: reported by buryLost, not made
}

// rig is a worker (or several, sharing one Redis) for one tenant, with
// every attempt recorded and every log line kept.
type rig struct {
	t     *testing.T
	rs    *redistest.Server
	rdb   *redis.Client
	store *queue.Store
	log   *syncBuffer

	mu       sync.Mutex
	attempts []attempt
}

type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func newRig(t *testing.T) *rig {
	t.Helper()
	rs := redistest.Start(t)
	rdb := rs.Client(t)
	return &rig{t: t, rs: rs, rdb: rdb, store: queue.New(rdb), log: &syncBuffer{}}
}

// load loads the tenant "acme" from YAML (the tenants.acme mapping body,
// with delivery: defaults before it).
func loadTenant(t *testing.T, yaml string) *policy.Tenant {
	t.Helper()
	file := filepath.Join(t.TempDir(), "sb.yaml")
	if err := os.WriteFile(file, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := policy.Load(file)
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	return cfg.Tenants["acme"]
}

// start runs a worker for tenant until the test ends.
func (r *rig) start(tenant *policy.Tenant, consumer, scope string) *Worker {
	r.t.Helper()
	return r.startWith(tenant, consumer, scope, nil)
}

// startWith is start with set (when not nil) changing the worker first.
func (r *rig) startWith(tenant *policy.Tenant, consumer, scope string, set func(*Worker)) *Worker {
	r.t.Helper()
	w := &Worker{
		Store: r.store, Tenant: tenant, Client: NewClient(true), Consumer: consumer,
		Log:       slog.New(slog.NewJSONHandler(r.log, nil)),
		RateScope: scope,
		Observe: func(dest string, j *queue.Job, o Outcome, d Decision, latency time.Duration) {
			r.mu.Lock()
			defer r.mu.Unlock()
			r.attempts = append(r.attempts, attempt{dest: dest, event: j.EventID, attempt: j.Attempts + 1, status: o.Status, at: time.Now(), lost: o.Result == Lost})
		},
	}
	if set != nil {
		set(w)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = w.Run(ctx); close(done) }()
	r.t.Cleanup(func() { cancel(); <-done })
	return w
}

var eventSeq atomic.Int64

// enqueue stores n events for dests and returns their ids.
func (r *rig) enqueue(n int, dests ...string) []string {
	r.t.Helper()
	var ids []string
	for range n {
		id := fmt.Sprintf("evt_%06d", eventSeq.Add(1))
		e := &queue.Entry{Tenant: "acme", EventID: id, Event: []byte(`{"id":"` + id + `"}`), Destinations: dests}
		if _, err := r.store.Enqueue(context.Background(), time.Hour, e); err != nil {
			r.t.Fatal(err)
		}
		ids = append(ids, id)
	}
	return ids
}

func (r *rig) made(dest string) []attempt {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []attempt
	for _, a := range r.attempts {
		if dest == "" || a.dest == dest {
			out = append(out, a)
		}
	}
	return out
}

func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// receiver answers with the status code code() returns.
func receiver(t *testing.T, code func() int) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.WriteHeader(code())
	}))
	t.Cleanup(srv.Close)
	return srv
}

func tenantYAML(delivery, tenant string) string {
	return "delivery:\n  allow_private_networks: true\n" + delivery + "tenants:\n  acme:\n" + tenant
}

// TestBreakerHoldsJobs: 5xx trips the breaker; while open the destination
// is not read (its jobs wait in Redis, no attempt is counted); after
// open_for one probe goes; its success closes the breaker and the rest
// drains. Nothing is dead-lettered, and every state change is logged.
func TestBreakerHoldsJobs(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	var up atomic.Bool
	rcv := receiver(t, func() int {
		if up.Load() {
			return http.StatusOK
		}
		return http.StatusInternalServerError
	})
	tenant := loadTenant(t, tenantYAML(`  retry: {initial: 10ms, max: 20ms, max_attempts: 100}
`, fmt.Sprintf(`    destinations:
      app:
        url: %q
        secret: %s
        max_in_flight: 1
        breaker: {min_requests: 3, failure_ratio: 0.5, open_for: 400ms}
`, rcv.URL, testSecret)))
	w := r.start(tenant, "c1", policy.RateScopeLocal)
	ids := r.enqueue(3, "app")
	waitFor(t, 5*time.Second, "the breaker to open", func() bool { return w.BreakerState("app") == "open" })
	opened := time.Now()
	// The attempt that tripped it is recorded (Observe) just after.
	waitFor(t, 5*time.Second, "the third attempt to be recorded", func() bool { return len(r.made("app")) >= 3 })
	before := len(r.made("app"))
	if before != 3 {
		t.Errorf("attempts before opening = %d, want min_requests 3", before)
	}
	// While open nothing is attempted: wait for half-open, then compare.
	waitFor(t, 5*time.Second, "half-open", func() bool { return w.BreakerState("app") != "open" })
	if held := time.Since(opened); held < 350*time.Millisecond {
		t.Errorf("breaker left open after %v, want open_for 400ms", held)
	}
	for _, a := range r.made("app")[before:] {
		if a.at.Before(opened.Add(350 * time.Millisecond)) {
			t.Errorf("an attempt was made %v after the breaker opened", a.at.Sub(opened))
		}
	}
	// The jobs wait in Redis meanwhile: none lost, none dead.
	if n, _ := r.rdb.XLen(context.Background(), "sb:{acme}:dlq").Result(); n != 0 {
		t.Errorf("dlq holds %d jobs, want 0", n)
	}
	up.Store(true)
	waitFor(t, 10*time.Second, "all three delivered", func() bool {
		n := 0
		for _, a := range r.made("app") {
			if a.status == http.StatusOK {
				n++
			}
		}
		return n == 3
	})
	if w.BreakerState("app") != "closed" {
		t.Errorf("breaker = %s after successes, want closed", w.BreakerState("app"))
	}
	// An open breaker never counted an attempt: each job's attempts are
	// the failures it had plus its success.
	perEvent := map[string]int{}
	for _, a := range r.made("app") {
		perEvent[a.event]++
		if a.attempt != perEvent[a.event] {
			t.Errorf("event %s attempt %d recorded as %d: an attempt was counted while held", a.event, perEvent[a.event], a.attempt)
		}
	}
	if len(perEvent) != len(ids) {
		t.Errorf("attempted %d events, want %d", len(perEvent), len(ids))
	}
	log := r.log.String()
	for _, change := range []string{`"from":"closed","to":"open"`, `"from":"open","to":"half-open"`, `"from":"half-open","to":"closed"`} {
		if !strings.Contains(log, change) {
			t.Errorf("log lacks the breaker change %s", change)
		}
	}
}

// TestBreakerIgnores4xx: a receiver answering 4xx is alive; however many
// it answers, the breaker stays closed.
func TestBreakerIgnores4xx(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	rcv := receiver(t, func() int { return http.StatusBadRequest })
	tenant := loadTenant(t, tenantYAML(`  retry: {initial: 10ms, max: 10ms, max_attempts: 4}
`, fmt.Sprintf(`    destinations:
      app: {url: %q, secret: %s, breaker: {min_requests: 2, failure_ratio: 0.5}}
`, rcv.URL, testSecret)))
	w := r.start(tenant, "c1", policy.RateScopeLocal)
	r.enqueue(2, "app")
	waitFor(t, 10*time.Second, "8 attempts", func() bool { return len(r.made("app")) == 8 })
	if got := w.BreakerState("app"); got != "closed" {
		t.Errorf("breaker = %s after 8 answers of 400, want closed", got)
	}
}

// TestHalfOpenProbes: half-open lets exactly `probes` attempts through at
// once; one failure among them opens the breaker again.
func TestHalfOpenProbes(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	release := make(chan struct{})
	var mode atomic.Int32 // 0: fail, 1: hang then fail
	var inFlight, peak atomic.Int32
	rcv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		n := inFlight.Add(1)
		defer inFlight.Add(-1)
		for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
		}
		if mode.Load() == 1 {
			<-release
		}
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	t.Cleanup(rcv.Close)
	t.Cleanup(func() {
		select {
		case <-release:
		default:
			close(release)
		}
	})
	tenant := loadTenant(t, tenantYAML(`  retry: {initial: 10ms, max: 10ms, max_attempts: 100}
`, fmt.Sprintf(`    destinations:
      app: {url: %q, secret: %s, breaker: {min_requests: 2, failure_ratio: 1, open_for: 300ms, probes: 2}}
`, rcv.URL, testSecret)))
	w := r.start(tenant, "c1", policy.RateScopeLocal)
	r.enqueue(6, "app")
	waitFor(t, 5*time.Second, "the breaker to open", func() bool { return w.BreakerState("app") == "open" })
	mode.Store(1)
	peak.Store(0)
	waitFor(t, 5*time.Second, "two probes in flight", func() bool { return inFlight.Load() == 2 })
	if got := w.BreakerState("app"); got != "half-open" {
		t.Errorf("breaker = %s with probes in flight, want half-open", got)
	}
	// Give the worker a few read cycles to (wrongly) send a third.
	deadline := time.Now().Add(4 * readBlock)
	for time.Now().Before(deadline) {
		if inFlight.Load() > 2 {
			t.Fatalf("%d attempts in flight while half-open, want probes = 2", inFlight.Load())
		}
		time.Sleep(5 * time.Millisecond)
	}
	mode.Store(0)
	close(release)
	waitFor(t, 5*time.Second, "the failed probes to reopen the breaker", func() bool { return w.BreakerState("app") == "open" })
}

// TestBreakerRollingInterval: failures are counted over a rolling window
// of interval (in tenths), not a fixed one that resets all at once.
func TestBreakerRollingInterval(t *testing.T) {
	t.Parallel()
	b := newBreaker("x", policy.Breaker{FailureRatio: 1, MinRequests: 2, OpenFor: policy.Duration(time.Minute),
		Interval: policy.Duration(time.Second), Probes: 1}, func(from, to gobreaker.State) {})
	fail := func() {
		done, err := b.Allow()
		if err != nil {
			t.Fatalf("Allow: %v", err)
		}
		done(errUnhealthy)
	}
	start := time.Now()
	time.Sleep(700 * time.Millisecond)
	fail()
	time.Sleep(time.Until(start.Add(1150 * time.Millisecond)))
	fail()
	// A fixed window would have cleared the first failure at 1s.
	if got := b.State().String(); got != "open" {
		t.Errorf("state = %s after two failures 450ms apart in a 1s rolling window, want open", got)
	}

	b = newBreaker("y", policy.Breaker{FailureRatio: 1, MinRequests: 2, OpenFor: policy.Duration(time.Minute),
		Interval: policy.Duration(300 * time.Millisecond), Probes: 1}, func(from, to gobreaker.State) {})
	done, _ := b.Allow()
	done(errUnhealthy)
	time.Sleep(400 * time.Millisecond)
	done, _ = b.Allow()
	done(errUnhealthy)
	if got := b.State().String(); got != "closed" {
		t.Errorf("state = %s after two failures 400ms apart in a 300ms window, want closed", got)
	}
}

// TestRetryLeavesWhenDue: a retry this worker scheduled is sent when it is
// due, not at the next promotion tick (here an hour away), so the n-th
// retry waits within [d/2, d] as configured.
func TestRetryLeavesWhenDue(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	var calls atomic.Int64
	rcv := receiver(t, func() int {
		if calls.Add(1) == 1 {
			return http.StatusInternalServerError
		}
		return http.StatusOK
	})
	tenant := loadTenant(t, tenantYAML(`  retry: {initial: 300ms, max: 300ms, max_attempts: 5}
`, fmt.Sprintf(`    destinations:
      app: {url: %q, secret: %s}
`, rcv.URL, testSecret)))
	r.startWith(tenant, "c1", "", func(w *Worker) { w.promoteEvery = time.Hour })
	r.enqueue(1, "app")
	waitFor(t, 10*time.Second, "the retry", func() bool { return len(r.made("app")) == 2 })
	a := r.made("app")
	if gap := a[1].at.Sub(a[0].at); gap < 150*time.Millisecond {
		t.Errorf("retry after %v, want at least d/2 = 150ms", gap)
	}
}

// TestReclaimedAttemptsCount: a job left pending by consumers that stopped
// mid-attempt comes back with those attempts counted: as attempt 2 after
// one lost attempt, and, once they reach max_attempts, dead-lettered
// without another (an event whose delivery kills its instance must not go
// round forever).
func TestReclaimedAttemptsCount(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	var calls atomic.Int64
	rcv := receiver(t, func() int { calls.Add(1); return http.StatusOK })
	tenant := loadTenant(t, tenantYAML(`  retry: {max_attempts: 2}
`, fmt.Sprintf(`    destinations:
      app: {url: %q, secret: %s}
`, rcv.URL, testSecret)))
	ctx := context.Background()
	ids := r.enqueue(2, "app")
	jobs, err := r.store.Read(ctx, "acme", "crashed-1", map[string]int{"app": 2}, 0)
	if err != nil || len(jobs) != 2 {
		t.Fatalf("Read = %v, %v", jobs, err)
	}
	// Both were handed out once; the first once more, to a second consumer
	// that stopped too (XCLAIM counts a delivery; with JUSTID it does not).
	// IDLE makes them look long abandoned.
	key := "sb:{acme}:d:app"
	if err := r.rdb.Do(ctx, "XCLAIM", key, "sb", "crashed-2", 0, jobs[0].ID, "IDLE", 3600000).Err(); err != nil {
		t.Fatal(err)
	}
	if err := r.rdb.Do(ctx, "XCLAIM", key, "sb", "crashed-1", 0, jobs[1].ID, "IDLE", 3600000, "JUSTID").Err(); err != nil {
		t.Fatal(err)
	}
	r.start(tenant, "c1", "")
	waitFor(t, 10*time.Second, "the dead letter and the delivery", func() bool {
		n, _ := r.rdb.XLen(ctx, "sb:{acme}:dlq").Result()
		return n == 1 && calls.Load() == 1 && len(r.made("app")) == 2 // recorded after the receiver counted it
	})
	// Observed: the delivery, and the dead letter as the last lost attempt
	// (metrics and the event's history count it).
	var made, lost []attempt
	for _, a := range r.made("app") {
		if a.lost {
			lost = append(lost, a)
		} else {
			made = append(made, a)
		}
	}
	if len(made) != 1 || made[0].event != ids[1] || made[0].attempt != 2 {
		t.Errorf("attempts made = %+v, want one: %s as attempt 2", made, ids[1])
	}
	if len(lost) != 1 || lost[0].event != ids[0] || lost[0].attempt != 2 {
		t.Errorf("lost attempts reported = %+v, want %s's attempt 2", lost, ids[0])
	}
	dl, err := r.store.DLQList(ctx, "acme", "app", 10)
	if err != nil || len(dl) != 1 {
		t.Fatalf("DLQList = %v, %v", dl, err)
	}
	if dl[0].EventID != ids[0] || dl[0].Attempts != 2 || dl[0].LastError != lostAttempts {
		t.Errorf("dead letter = %+v, want %s with 2 attempts and %q", dl[0], ids[0], lostAttempts)
	}
}

// TestReclaimedHeldJobWaits: a job held in place with a backoff (its
// destination was ordered until a reload) and reclaimed by a worker of the
// now unordered destination waits for its retry's due time, with its
// attempts, instead of being attempted at once.
func TestReclaimedHeldJobWaits(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	var calls atomic.Int64
	rcv := receiver(t, func() int { calls.Add(1); return http.StatusOK })
	tenant := loadTenant(t, tenantYAML("", fmt.Sprintf(`    destinations:
      app: {url: %q, secret: %s}
`, rcv.URL, testSecret)))
	ctx := context.Background()
	r.enqueue(1, "app")
	jobs, err := r.store.Read(ctx, "acme", queue.OrderedConsumer("gone"), map[string]int{"app": 1}, 0)
	if err != nil || len(jobs) != 1 {
		t.Fatalf("Read = %v, %v", jobs, err)
	}
	due := time.Now().Add(time.Hour)
	if err := r.store.Hold(ctx, &jobs[0], 2, due, "HTTP 500"); err != nil {
		t.Fatal(err)
	}
	if err := r.rdb.Do(ctx, "XCLAIM", "sb:{acme}:d:app", "sb", queue.OrderedConsumer("gone"), 0, jobs[0].ID, "IDLE", 3600000, "JUSTID").Err(); err != nil {
		t.Fatal(err)
	}
	r.start(tenant, "c1", "")
	var score float64
	waitFor(t, 10*time.Second, "the job in the retry set", func() bool {
		zs, _ := r.rdb.ZRangeWithScores(ctx, "sb:{acme}:retry", 0, -1).Result()
		if len(zs) == 1 {
			score = zs[0].Score
		}
		return len(zs) == 1
	})
	if got := time.UnixMilli(int64(score)); got.Sub(due).Abs() > time.Millisecond {
		t.Errorf("retry due %v, want the hold's %v", got, due)
	}
	if n := calls.Load(); n != 0 {
		t.Errorf("%d attempts made before the job was due", n)
	}
	if n, _ := r.rdb.XLen(ctx, "sb:{acme}:d:app").Result(); n != 0 {
		t.Errorf("stream still holds %d entries", n)
	}
	waitFor(t, 5*time.Second, "the hold record to go", func() bool {
		return r.rdb.HLen(ctx, "sb:{acme}:hold:app").Val() == 0
	})
}

// TestRunningAttemptNotReclaimed: an attempt that runs longer than another
// instance's visibility timeout (their delivery timeouts differ after a
// reload reached one of them) keeps its job: the worker making it touches
// the job, so the other does not reclaim it and send it again.
func TestRunningAttemptNotReclaimed(t *testing.T) {
	t.Parallel()
	for _, touch := range []bool{true, false} {
		t.Run(fmt.Sprintf("touch=%v", touch), func(t *testing.T) {
			t.Parallel()
			r := newRig(t)
			var calls atomic.Int64
			rcv := receiver(t, func() int {
				if calls.Add(1) == 1 {
					time.Sleep(2500 * time.Millisecond) // the slow receiver
				}
				return http.StatusOK
			})
			tenant := loadTenant(t, tenantYAML("", fmt.Sprintf(`    destinations:
      app: {url: %q, secret: %s, timeout: 10s}
`, rcv.URL, testSecret)))
			every := 100 * time.Millisecond
			if !touch {
				every = time.Hour
			}
			for _, c := range []string{"a", "b"} { // each reclaims after 300ms idle
				r.startWith(tenant, c, "", func(w *Worker) { w.touchEvery, w.visibility = every, 300*time.Millisecond })
			}
			r.enqueue(1, "app")
			waitFor(t, 10*time.Second, "an attempt's outcome", func() bool { return len(r.made("app")) >= 1 })
			// the slow attempt's too (outcomes are recorded after the
			// receiver counted the request)
			waitFor(t, 10*time.Second, "every attempt's outcome", func() bool { return len(r.made("app")) == int(calls.Load()) })
			if n := calls.Load(); touch && n != 1 {
				t.Errorf("the receiver got the event %d times, want once: a running attempt's job was reclaimed", n)
			} else if !touch && n < 2 {
				t.Errorf("without touching, the receiver got the event %d times: the test no longer shows a reclaim", n)
			}
		})
	}
}

// TestWorkerPrunesGoneConsumers: a worker removes, now and then, the
// consumers of its destinations that are gone (no job held, idle), and
// keeps itself and those holding jobs.
func TestWorkerPrunesGoneConsumers(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	rcv := receiver(t, func() int { return http.StatusOK })
	tenant := loadTenant(t, tenantYAML("", fmt.Sprintf(`    destinations:
      app: {url: %q, secret: %s}
`, rcv.URL, testSecret)))
	ctx := context.Background()
	r.enqueue(2, "app")
	gone, err := r.store.Read(ctx, "acme", "gone-process", map[string]int{"app": 1}, 0)
	if err != nil || len(gone) != 1 {
		t.Fatalf("Read = %v, %v", gone, err)
	}
	if err := r.store.Ack(ctx, &gone[0]); err != nil {
		t.Fatal(err)
	}
	if _, err := r.store.Read(ctx, "acme", "crashed-holding", map[string]int{"app": 1}, 0); err != nil {
		t.Fatal(err)
	}
	r.startWith(tenant, "live", "", func(w *Worker) { w.pruneEvery, w.pruneIdle = 20*time.Millisecond, time.Millisecond })
	names := func() []string {
		cs, _ := r.rdb.XInfoConsumers(ctx, "sb:{acme}:d:app", "sb").Result()
		var out []string
		for _, c := range cs {
			out = append(out, c.Name)
		}
		slices.Sort(out)
		return out
	}
	waitFor(t, 10*time.Second, "gone-process removed", func() bool { return !slices.Contains(names(), "gone-process") })
	if got := names(); !slices.Contains(got, "crashed-holding") {
		t.Errorf("consumers = %v: the one holding a job was removed", got)
	}
	if !strings.Contains(r.log.String(), "removed consumers that hold no job") {
		t.Errorf("no log line about the removal:\n%s", r.log.String())
	}
}

// TestReloadedDestinationReadDespitePromoteErrors: a destination a reload
// adds is read once its lease state is known, even while promoting
// retries fails (a retry set it cannot read).
func TestReloadedDestinationReadDespitePromoteErrors(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	rcv := receiver(t, func() int { return http.StatusOK })
	w := r.start(loadTenant(t, tenantYAML("", fmt.Sprintf(`    destinations:
      app: {url: %q, secret: %s}
`, rcv.URL, testSecret))), "c1", "")
	r.enqueue(1, "app")
	waitFor(t, 5*time.Second, "the first delivery", func() bool { return len(r.made("app")) == 1 })
	ctx := context.Background()
	if err := r.rdb.Set(ctx, "sb:{acme}:retry", "not a sorted set", 0).Err(); err != nil { // promotion fails from now on
		t.Fatal(err)
	}
	w.Update(loadTenant(t, tenantYAML("", fmt.Sprintf(`    destinations:
      app: {url: %q, secret: %s}
      new: {url: %q, secret: %s}
`, rcv.URL, testSecret, rcv.URL, testSecret))))
	r.enqueue(1, "new")
	waitFor(t, 10*time.Second, "the added destination's delivery", func() bool { return len(r.made("new")) == 1 })
}

// TestRateLimitedCountsRealWaits: RateLimited reports a destination's jobs
// waiting for its rate (or the tenant's delivery_rate) — not a hold that no
// job waited out (a lone job sent at once), nor destinations that had
// nothing to send — in either scope.
func TestRateLimitedCountsRealWaits(t *testing.T) {
	t.Parallel()
	for _, scope := range []string{"", "redis"} {
		t.Run("scope="+scope, func(t *testing.T) {
			t.Parallel()
			r := newRig(t)
			rcv := receiver(t, func() int { return http.StatusOK })
			tenant := loadTenant(t, tenantYAML("", fmt.Sprintf(`    delivery_rate: {per_second: 4, burst: 1}
    destinations:
      app: {url: %q, secret: %s, rate: {per_second: 4, burst: 1}}
      idle: {url: %q, secret: %s}
`, rcv.URL, testSecret, rcv.URL, testSecret)))
			var mu sync.Mutex
			waits := map[string]int{}
			r.startWith(tenant, "c1", scope, func(w *Worker) {
				w.RateLimited = func(dest string) { mu.Lock(); waits[dest]++; mu.Unlock() }
			})
			count := func() map[string]int {
				mu.Lock()
				defer mu.Unlock()
				return maps.Clone(waits)
			}
			r.enqueue(1, "app")
			waitFor(t, 5*time.Second, "the lone job", func() bool { return len(r.made("app")) == 1 })
			// the next read finds nothing: the hold after the send ends
			// without a wait
			time.Sleep(600 * time.Millisecond)
			if w := count(); len(w) != 0 {
				t.Errorf("after one job sent at once: waits %v, want none", w)
			}
			r.enqueue(4, "app") // at 4/s, three of them wait
			waitFor(t, 5*time.Second, "the four jobs", func() bool { return len(r.made("app")) == 5 })
			if w := count(); w["app"] < 1 || w["idle"] != 0 {
				t.Errorf("after four jobs at 4/s: waits %v, want app's, none for idle", w)
			}
		})
	}
}

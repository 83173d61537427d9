package delivery

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/switchboard-gw/switchboard/policy"
	"github.com/switchboard-gw/switchboard/queue"
	"github.com/switchboard-gw/switchboard/queue/redistest"
)

// orderRig runs ordered destinations of tenant acme against a real Redis
// and one recording receiver.
type orderRig struct {
	t     *testing.T
	rdb   *redis.Client
	store *queue.Store
	rcv   *httptest.Server
	log   *orderLog

	mu       sync.Mutex
	got      []string // "<text>/<attempt>" in arrival order
	inFlight int
	maxIn    map[string]int // most attempts in flight at once, per conversation ("" = all)
	inConv   map[string]int
	// every replaces the workers' orderedTick when set.
	every time.Duration
	// answer decides the status for one request; nil: 200.
	answer func(text string, attempt int) int
	// hold, when it returns a channel, makes the receiver wait on it.
	hold func(text string) chan struct{}
}

// orderLog keeps log output for assertions.
type orderLog struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *orderLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *orderLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

const orderSecret = "whsec_c3dpdGNoYm9hcmQtZGVtby1zZWNyZXQta2V5LTAwMDE="

func orderWait(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

type orderEvent struct {
	Text, From, To, Status, MessageID string
}

func newOrderRig(t *testing.T) *orderRig {
	t.Helper()
	rs := redistest.Start(t)
	rdb := rs.Client(t)
	r := &orderRig{t: t, rdb: rdb, store: queue.New(rdb), log: &orderLog{}, maxIn: map[string]int{}, inConv: map[string]int{}}
	r.rcv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		var e struct {
			Data struct{ Text, From, To string } `json:"data"`
		}
		_ = json.Unmarshal(body, &e)
		conv := e.Data.From + e.Data.To
		attempt, _ := strconv.Atoi(req.Header.Get("Switchboard-Attempt"))
		r.mu.Lock()
		r.inFlight++
		r.inConv[conv]++
		r.maxIn[""] = max(r.maxIn[""], r.inFlight)
		r.maxIn[conv] = max(r.maxIn[conv], r.inConv[conv])
		r.got = append(r.got, fmt.Sprintf("%s/%d", e.Data.Text, attempt))
		answer, hold := r.answer, r.hold
		r.mu.Unlock()
		if hold != nil {
			if ch := hold(e.Data.Text); ch != nil {
				<-ch
			}
		}
		code := http.StatusOK
		if answer != nil {
			code = answer(e.Data.Text, attempt)
		}
		r.mu.Lock()
		r.inFlight--
		r.inConv[conv]--
		r.mu.Unlock()
		w.WriteHeader(code)
	}))
	t.Cleanup(r.rcv.Close)
	return r
}

// tenant loads acme with one destination "d" at the receiver, with extra
// YAML keys (indented for the destination) and delivery defaults.
func (r *orderRig) tenant(destKeys string) *policy.Tenant {
	r.t.Helper()
	yaml := `
delivery:
  allow_private_networks: true
  timeout: 2s
  retry: {initial: 100ms, max: 200ms, max_attempts: 5}
tenants:
  acme:
    destinations:
      d:
        url: ` + r.rcv.URL + `
        secret: ` + orderSecret + `
` + destKeys
	file := filepath.Join(r.t.TempDir(), "sb.yaml")
	if err := os.WriteFile(file, []byte(yaml), 0o600); err != nil {
		r.t.Fatal(err)
	}
	cfg, err := policy.Load(file)
	if err != nil {
		r.t.Fatalf("load: %v", err)
	}
	return cfg.Tenants["acme"]
}

func (r *orderRig) run(tenant *policy.Tenant, consumer string) (stop func()) {
	w := &Worker{Store: r.store, Tenant: tenant, Client: NewClient(true), Consumer: consumer,
		Log: slog.New(slog.NewJSONHandler(r.log, nil)), orderedEvery: r.every}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = w.Run(ctx); close(done) }()
	var once sync.Once
	stop = func() { once.Do(func() { cancel(); <-done }) }
	r.t.Cleanup(stop)
	return stop
}

var orderSeq atomic.Int64

func (r *orderRig) enqueue(evs ...orderEvent) {
	r.t.Helper()
	for _, e := range evs {
		id := fmt.Sprintf("evt_o%06d", orderSeq.Add(1))
		typ := "message.received"
		if e.Status != "" {
			typ = "message.status"
		}
		body, _ := json.Marshal(map[string]any{"id": id, "type": typ, "data": map[string]string{
			"text": e.Text, "from": e.From, "to": e.To, "status": e.Status, "message_id": e.MessageID}})
		if _, err := r.store.Enqueue(context.Background(), time.Hour, &queue.Entry{
			Tenant: "acme", EventID: id, Event: body, Destinations: []string{"d"}}); err != nil {
			r.t.Fatal(err)
		}
	}
}

func (r *orderRig) received() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.got...)
}

func (r *orderRig) await(n int) []string {
	r.t.Helper()
	orderWait(r.t, 15*time.Second, fmt.Sprintf("%d requests", n), func() bool { return len(r.received()) >= n })
	time.Sleep(150 * time.Millisecond) // nothing more should come
	return r.received()
}

func (r *orderRig) count(kind, key string) int64 {
	ctx := context.Background()
	var n int64
	switch kind {
	case "zset":
		n, _ = r.rdb.ZCard(ctx, key).Result()
	case "stream":
		n, _ = r.rdb.XLen(ctx, key).Result()
	}
	return n
}

func conv(text, from string) orderEvent {
	return orderEvent{Text: text, From: from, To: "+15555550199"}
}

func TestOrderedRetriesInPlace(t *testing.T) {
	t.Parallel()
	r := newOrderRig(t)
	r.answer = func(text string, attempt int) int {
		if text == "2" && attempt < 3 {
			return http.StatusInternalServerError
		}
		return http.StatusOK
	}
	r.enqueue(conv("1", "+1"), conv("2", "+2"), conv("3", "+3"), conv("4", "+4"))
	r.run(r.tenant("        ordered: true\n        max_in_flight: 8\n"), "a")
	// While 2 waits for its retry, nothing behind it goes, and it is never
	// moved to the retry set.
	orderWait(t, 10*time.Second, "the first failure of 2", func() bool { return len(r.received()) >= 2 })
	if n := r.count("zset", "sb:{acme}:retry"); n != 0 {
		t.Errorf("retry set = %d, want 0: an ordered job retries in place", n)
	}
	got := r.await(6)
	if want := "1/1 2/1 2/2 2/3 3/1 4/1"; strings.Join(got, " ") != want {
		t.Errorf("received %v, want %s", got, want)
	}
	if r.maxIn[""] != 1 {
		t.Errorf("%d attempts in flight at once, want 1", r.maxIn[""])
	}
	r.enqueue(conv("5", "+5"))
	if got := r.await(7); got[6] != "5/1" {
		t.Errorf("then received %v, want 5/1", got[6:])
	}
	if n := r.count("stream", "sb:{acme}:d:d"); n != 0 {
		t.Errorf("stream = %d jobs, want 0", n)
	}
}

// TestOrderedRetryLeavesWhenDue: a head waiting for its retry starts when
// it is due, not at the next tick (here an hour away).
func TestOrderedRetryLeavesWhenDue(t *testing.T) {
	t.Parallel()
	r := newOrderRig(t)
	r.every = time.Hour
	r.answer = func(text string, attempt int) int {
		if attempt < 2 {
			return http.StatusInternalServerError
		}
		return http.StatusOK
	}
	r.enqueue(conv("1", "+1"))
	r.run(r.tenant("        ordered: true\n"), "a")
	if got := r.await(2); strings.Join(got, " ") != "1/1 1/2" {
		t.Errorf("received %v, want 1/1 1/2", got)
	}
}

func TestOrderedDeadLettersInPlace(t *testing.T) {
	t.Parallel()
	r := newOrderRig(t)
	r.answer = func(text string, attempt int) int {
		if text == "2" {
			return http.StatusBadGateway
		}
		return http.StatusOK
	}
	r.enqueue(conv("1", "+1"), conv("2", "+1"), conv("3", "+1"))
	r.run(r.tenant("        ordered: true\n        retry: {max_attempts: 3}\n"), "a")
	got := r.await(5)
	if want := "1/1 2/1 2/2 2/3 3/1"; strings.Join(got, " ") != want {
		t.Errorf("received %v, want %s", got, want)
	}
	dl, err := r.store.DLQList(context.Background(), "acme", "d", 0)
	if err != nil || len(dl) != 1 || dl[0].Attempts != 3 || !strings.Contains(dl[0].LastError, "502") {
		t.Fatalf("dead letters = %+v, %v", dl, err)
	}
	if n, _ := r.rdb.HLen(context.Background(), "sb:{acme}:hold:d").Result(); n != 0 {
		t.Errorf("hold records = %d, want 0", n)
	}
}

func TestOrderedByConversation(t *testing.T) {
	t.Parallel()
	r := newOrderRig(t)
	release := make(chan struct{})
	r.hold = func(text string) chan struct{} {
		if text == "a1" {
			return release
		}
		return nil
	}
	r.answer = func(text string, attempt int) int {
		if text == "a1" && attempt == 1 {
			return http.StatusServiceUnavailable
		}
		return http.StatusOK
	}
	// a and b are two conversations (b's second event goes the other way:
	// the same conversation).
	r.enqueue(conv("a1", "+1"), conv("b1", "+2"), conv("a2", "+1"),
		orderEvent{Text: "b2", From: "+15555550199", To: "+2"}, conv("a3", "+1"), conv("b3", "+2"))
	r.run(r.tenant("        order_key: conversation\n        max_in_flight: 4\n"), "a")
	// a1 hangs; b goes on meanwhile.
	orderWait(t, 10*time.Second, "b's three events while a1 hangs", func() bool {
		n := 0
		for _, g := range r.received() {
			if strings.HasPrefix(g, "b") {
				n++
			}
		}
		return n == 3
	})
	close(release)
	got := r.await(7)
	var a, b []string
	for _, g := range got {
		if strings.HasPrefix(g, "a") {
			a = append(a, g)
		} else {
			b = append(b, g)
		}
	}
	if strings.Join(a, " ") != "a1/1 a1/2 a2/1 a3/1" || strings.Join(b, " ") != "b1/1 b2/1 b3/1" {
		t.Errorf("conversation a = %v, b = %v; want each in order, a1 retried in place", a, b)
	}
	if r.maxIn["+1+15555550199"] != 1 || r.maxIn["+2+15555550199"] != 1 || r.maxIn[""] != 2 {
		t.Errorf("in flight at once: %v, want one per conversation, both conversations together", r.maxIn)
	}
}

func TestDropStaleStatus(t *testing.T) {
	t.Parallel()
	for _, ordered := range []bool{true, false} {
		t.Run(fmt.Sprintf("ordered=%v", ordered), func(t *testing.T) {
			r := newOrderRig(t)
			keys := "        drop_stale_status: true\n"
			if ordered {
				keys += "        ordered: true\n"
			}
			r.run(r.tenant(keys), "a")
			st := func(text, status string) orderEvent {
				return orderEvent{Text: text, From: "+15555550199", To: "+1", Status: status, MessageID: "SM1"}
			}
			// Out of order at the carrier: delivered before sent.
			r.enqueue(st("queued", "queued"))
			r.await(1)
			r.enqueue(st("delivered", "delivered"))
			r.await(2)
			r.enqueue(st("sent", "sent"), st("failed", "failed"))
			r.enqueue(st("read", "read"))
			got := r.await(3)
			if want := "queued/1 delivered/1 read/1"; strings.Join(got, " ") != want {
				t.Errorf("received %v, want %s: sent and a second final status are stale", got, want)
			}
			dropped, err := r.store.StaleDropped(context.Background(), "acme")
			if err != nil || dropped["d"] != 2 {
				t.Errorf("StaleDropped = %v, %v; want d: 2", dropped, err)
			}
			if !strings.Contains(r.log.String(), "stale status dropped") {
				t.Error("no log line for the stale statuses")
			}
		})
	}
}

func TestOrderedFailover(t *testing.T) {
	t.Parallel()
	r := newOrderRig(t)
	r.answer = func(text string, attempt int) int {
		if text == "1" && attempt < 3 {
			return http.StatusInternalServerError
		}
		return http.StatusOK
	}
	tenant := r.tenant("        ordered: true\n        retry: {initial: 1s, max: 1s}\n")
	r.enqueue(conv("1", "+1"), conv("2", "+1"))
	stopA := r.run(tenant, "a")
	orderWait(t, 10*time.Second, "the first attempt", func() bool { return len(r.received()) == 1 })
	time.Sleep(100 * time.Millisecond) // its hold is recorded
	// b is running too but a holds the lease.
	r.run(tenant, "b")
	time.Sleep(300 * time.Millisecond)
	if got := r.received(); len(got) != 1 {
		t.Fatalf("received %v while a holds the lease and 1 waits its backoff", got)
	}
	stopA() // gives up its lease at once
	got := r.await(4)
	if want := "1/1 1/2 1/3 2/1"; strings.Join(got, " ") != want {
		t.Errorf("received %v, want %s: b takes over the held job with its attempts", got, want)
	}
	if !strings.Contains(r.log.String(), `"pending":2`) {
		t.Errorf("b did not claim a's two pending jobs:\n%s", r.log.String())
	}
}

func TestOrderedBreakerHolds(t *testing.T) {
	t.Parallel()
	r := newOrderRig(t)
	var mu sync.Mutex
	up := false
	r.answer = func(text string, attempt int) int {
		mu.Lock()
		defer mu.Unlock()
		if up {
			return http.StatusOK
		}
		return http.StatusInternalServerError
	}
	r.enqueue(conv("1", "+1"), conv("2", "+1"))
	r.run(r.tenant("        ordered: true\n        retry: {initial: 50ms, max: 50ms}\n        breaker: {min_requests: 1, failure_ratio: 1, open_for: 800ms}\n"), "a")
	orderWait(t, 10*time.Second, "the first attempt", func() bool { return len(r.received()) == 1 })
	mu.Lock()
	up = true
	mu.Unlock()
	time.Sleep(500 * time.Millisecond)
	if got := r.received(); len(got) != 1 {
		t.Fatalf("received %v while the breaker is open, want no attempt", got)
	}
	if got := r.await(3); strings.Join(got, " ") != "1/1 1/2 2/1" {
		t.Errorf("received %v, want 1/1 1/2 2/1", got)
	}
}

// TestOrderedToUnorderedReload: after a reload makes an ordered destination
// unordered, the jobs its lanes held are reclaimed with their counts: the
// one that waited behind a failing head comes as its attempt 1 (its ordered
// read is no attempt), and the failing head goes on from its hold's
// attempts (3, then 4), within max_attempts.
func TestOrderedToUnorderedReload(t *testing.T) {
	t.Parallel()
	r := newOrderRig(t)
	r.answer = func(text string, attempt int) int {
		if text == "1" && attempt < 4 {
			return http.StatusInternalServerError
		}
		return http.StatusOK
	}
	keys := "        timeout: 500ms\n        retry: {initial: 1s, max: 1s, max_attempts: 5}\n"
	r.enqueue(conv("1", "+1"), conv("2", "+2"))
	w := &Worker{Store: r.store, Tenant: r.tenant("        ordered: true\n" + keys), Client: NewClient(true), Consumer: "a",
		Log: slog.New(slog.NewJSONHandler(r.log, nil))}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = w.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })

	orderWait(t, 10*time.Second, "the second failure of 1", func() bool { return len(r.received()) >= 2 })
	orderWait(t, 5*time.Second, "its hold", func() bool { return r.rdb.HLen(context.Background(), "sb:{acme}:hold:d").Val() == 1 })
	w.Update(r.tenant(keys))
	orderWait(t, 20*time.Second, "1/4 and 2/1", func() bool {
		got := r.received()
		return slices.Contains(got, "1/4") && slices.Contains(got, "2/1")
	})
	got := r.await(5)
	slices.Sort(got)
	if want := []string{"1/1", "1/2", "1/3", "1/4", "2/1"}; !slices.Equal(got, want) {
		t.Errorf("received %v, want %v", got, want)
	}
	if n := r.rdb.HLen(context.Background(), "sb:{acme}:hold:d").Val(); n != 0 {
		t.Errorf("hold records left: %d", n)
	}
}

// TestOrderedKeptWhileInstancesDisagree: while one instance's configuration
// says a destination is ordered and another's (not reloaded yet, or
// reloaded first) says unordered, the unordered one leaves it to the lease
// holder: one conversation's events still go one at a time, in order.
func TestOrderedKeptWhileInstancesDisagree(t *testing.T) {
	t.Parallel()
	r := newOrderRig(t)
	r.hold = func(string) chan struct{} { // slow enough that reads overlap
		ch := make(chan struct{})
		time.AfterFunc(10*time.Millisecond, func() { close(ch) })
		return ch
	}
	r.enqueue(conv("0", "+1"))
	r.run(r.tenant("        ordered: true\n        max_in_flight: 8\n"), "a")
	r.await(1) // a holds the lease
	r.run(r.tenant("        max_in_flight: 8\n"), "b")
	var want []string
	for i := 1; i <= 30; i++ {
		r.enqueue(conv(strconv.Itoa(i), "+1"))
		want = append(want, fmt.Sprintf("%d/1", i))
	}
	got := r.await(31)
	if strings.Join(got[1:], " ") != strings.Join(want, " ") {
		t.Errorf("received %v, want %v in order", got[1:], want)
	}
	if r.maxIn[""] != 1 {
		t.Errorf("%d attempts in flight at once, want 1", r.maxIn[""])
	}
	if !strings.Contains(r.log.String(), "another instance delivers this destination in order") {
		t.Error("the unordered instance did not log that it leaves the destination to the lease holder")
	}
}

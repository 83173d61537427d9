package queue

import (
	"slices"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

func ms(ns ...int) []time.Duration {
	out := make([]time.Duration, len(ns))
	for i, n := range ns {
		out[i] = time.Duration(n) * time.Millisecond
	}
	return out
}

func mustReserve(t *testing.T, s *Store, tr Rate, reqs []RateRequest, maxWait time.Duration, now time.Time) ([]RateGrant, time.Duration) {
	t.Helper()
	g, next, err := s.reserveRate(ctxT(t), tenant, tr, reqs, maxWait, now)
	if err != nil {
		t.Fatalf("reserveRate: %v", err)
	}
	return g, next
}

// TestReserveRateGCRA checks the schedule on an injected clock: a burst
// goes at once, the rest is spaced by the rate, nothing is granted beyond
// maxWait, and the bucket refills with time.
func TestReserveRateGCRA(t *testing.T) {
	s, rdb, _ := mustStore(t)
	t0 := time.UnixMilli(1_800_000_000_000)
	crm := Rate{PerSecond: 10, Burst: 3} // one per 100ms, three at once

	g, _ := mustReserve(t, s, Rate{}, []RateRequest{{Dest: "crm", Rate: crm, N: 5}}, time.Second, t0)
	if want := ms(0, 0, 0, 100, 200); !slices.Equal(g[0].Delays, want) {
		t.Errorf("delays = %v, want %v", g[0].Delays, want)
	}
	if g[0].Next != 300*time.Millisecond {
		t.Errorf("next = %v, want 300ms", g[0].Next)
	}
	// 50ms later the bucket is still spent: the next send waits 250ms.
	g, _ = mustReserve(t, s, Rate{}, []RateRequest{{Dest: "crm", Rate: crm, N: 1}}, time.Second, t0.Add(50*time.Millisecond))
	if want := ms(250); !slices.Equal(g[0].Delays, want) {
		t.Errorf("delays = %v, want %v", g[0].Delays, want)
	}
	// maxWait: the rest is refused and spends nothing.
	g, _ = mustReserve(t, s, Rate{}, []RateRequest{{Dest: "crm", Rate: crm, N: 4}}, 400*time.Millisecond, t0.Add(50*time.Millisecond))
	if want := ms(350); !slices.Equal(g[0].Delays, want) {
		t.Errorf("delays beyond maxWait = %v, want %v", g[0].Delays, want)
	}
	if g[0].Next != 450*time.Millisecond {
		t.Errorf("next = %v, want 450ms", g[0].Next)
	}
	// A second later the bucket is full again: three at once.
	g, _ = mustReserve(t, s, Rate{}, []RateRequest{{Dest: "crm", Rate: crm, N: 4}}, time.Second, t0.Add(2*time.Second))
	if want := ms(0, 0, 0, 100); !slices.Equal(g[0].Delays, want) {
		t.Errorf("after refill delays = %v, want %v", g[0].Delays, want)
	}

	// The key expires once the bucket would be full: no state left behind.
	ttl, err := rdb.PTTL(ctxT(t), "sb:{acme}:rate:crm").Result()
	if err != nil || ttl <= 0 {
		t.Errorf("PTTL = %v, %v, want a positive TTL", ttl, err)
	}
}

// TestReserveRateTenantShared: the tenant's limit caps all its
// destinations together, shared round-robin; a destination without its own
// limit is bound by the tenant's alone.
func TestReserveRateTenantShared(t *testing.T) {
	s, _, _ := mustStore(t)
	t0 := time.UnixMilli(1_800_000_000_000)
	tr := Rate{PerSecond: 10, Burst: 2}
	reqs := []RateRequest{{Dest: "a", N: 3}, {Dest: "b", N: 3}}
	g, tnext := mustReserve(t, s, tr, reqs, 250*time.Millisecond, t0)
	if want := ms(0, 100); !slices.Equal(g[0].Delays, want) {
		t.Errorf("a delays = %v, want %v", g[0].Delays, want)
	}
	if want := ms(0, 200); !slices.Equal(g[1].Delays, want) {
		t.Errorf("b delays = %v, want %v", g[1].Delays, want)
	}
	if tnext != 300*time.Millisecond || g[0].Next != 300*time.Millisecond {
		t.Errorf("tenant next = %v, a next = %v, want 300ms both", tnext, g[0].Next)
	}
	// A destination limit slower than the tenant's decides its own pace.
	g, _ = mustReserve(t, s, tr, []RateRequest{{Dest: "slow", Rate: Rate{PerSecond: 2, Burst: 1}, N: 2}}, 2*time.Second, t0.Add(10*time.Second))
	if want := ms(0, 500); !slices.Equal(g[0].Delays, want) {
		t.Errorf("slow delays = %v, want %v", g[0].Delays, want)
	}
}

// TestReserveRateAcrossInstances: two Stores (two gateway instances) on one
// Redis share the limit; with Redis's own clock.
func TestReserveRateAcrossInstances(t *testing.T) {
	_, _, srv := mustStore(t)
	a, b := New(srv.Client(t)), New(srv.Client(t))
	r := Rate{PerSecond: 5, Burst: 1}
	req := []RateRequest{{Dest: "crm", Rate: r, N: 2}}
	ga, _, err := a.ReserveRate(ctxT(t), tenant, Rate{}, req, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	gb, _, err := b.ReserveRate(ctxT(t), tenant, Rate{}, req, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if len(ga[0].Delays) != 2 || ga[0].Delays[0] != 0 || !near(ga[0].Delays[1], 200*time.Millisecond) {
		t.Fatalf("first instance delays = %v, want [0 ~200ms]", ga[0].Delays)
	}
	if len(gb[0].Delays) != 2 || !near(gb[0].Delays[0], 400*time.Millisecond) || !near(gb[0].Delays[1], 600*time.Millisecond) {
		t.Errorf("second instance delays = %v, want [~400ms ~600ms]: the limit must hold in total", gb[0].Delays)
	}
}

// near allows for the time between two calls on Redis's real clock.
func near(got, want time.Duration) bool {
	return got <= want && got >= want-100*time.Millisecond
}

// TestReserveRateEmbedded: the script runs on the embedded store too.
func TestReserveRateEmbedded(t *testing.T) {
	emb, err := StartEmbedded()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(emb.Close)
	rdb := redis.NewClient(&redis.Options{Addr: emb.Addr()})
	t.Cleanup(func() { _ = rdb.Close() })
	s := New(rdb)
	g, _, err := s.ReserveRate(ctxT(t), tenant, Rate{}, []RateRequest{{Dest: "crm", Rate: Rate{PerSecond: 10, Burst: 2}, N: 3}}, time.Second)
	if err != nil {
		t.Fatalf("ReserveRate on the embedded store: %v", err)
	}
	if len(g[0].Delays) != 3 || g[0].Delays[0] != 0 || g[0].Delays[1] != 0 || !near(g[0].Delays[2], 100*time.Millisecond) {
		t.Errorf("delays = %v, want [0 0 ~100ms]", g[0].Delays)
	}
}

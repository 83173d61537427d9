package queue

import (
	"bytes"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	switchboard "github.com/switchboard-gw/switchboard"
	"github.com/switchboard-gw/switchboard/queue/redistest"
)

func TestEnqueueDedup(t *testing.T) {
	t.Parallel()
	s, rdb, _ := mustStore(t)
	ctx := ctxT(t)

	delivered := entry(1, "crm", "audit")
	delivered.DedupKey = "twilio-main|message.status|SM1|+15555550199|delivered"
	again := entry(2, "crm", "audit") // the carrier's retry: new event id, same key
	again.DedupKey = delivered.DedupKey
	sent := entry(3, "crm", "audit")
	sent.DedupKey = "twilio-main|message.status|SM1|+15555550199|sent"

	for i, tc := range []struct {
		e    *Entry
		want bool
	}{{delivered, true}, {again, false}, {sent, true}} {
		fresh, err := s.Enqueue(ctx, time.Hour, tc.e)
		if err != nil {
			t.Fatalf("Enqueue %d: %v", i, err)
		}
		if len(fresh) != 1 || fresh[0] != tc.want {
			t.Errorf("Enqueue %d: fresh = %v, want [%v]", i, fresh, tc.want)
		}
	}
	for _, d := range []string{"crm", "audit"} {
		if n := xlen(t, rdb, streamKey(tenant, d)); n != 2 {
			t.Errorf("XLEN %s = %d, want 2 (delivered and sent)", d, n)
		}
	}
	ttl, err := rdb.PTTL(ctx, seenKey(tenant, delivered.DedupKey)).Result()
	if err != nil || ttl <= 59*time.Minute || ttl > time.Hour {
		t.Errorf("seen key TTL = %v (%v), want about 1h", ttl, err)
	}

	// Duplicates within one batch: the second is caught by the first.
	b1, b2 := entry(4, "crm"), entry(5, "crm")
	b1.DedupKey, b2.DedupKey = "k", "k"
	fresh, err := s.Enqueue(ctx, time.Hour, b1, b2, entry(6, "crm"))
	if err != nil {
		t.Fatalf("Enqueue batch: %v", err)
	}
	if !slices.Equal(fresh, []bool{true, false, true}) {
		t.Errorf("batch fresh = %v, want [true false true]", fresh)
	}
	if n := xlen(t, rdb, streamKey(tenant, "crm")); n != 4 {
		t.Errorf("XLEN crm = %d, want 4", n)
	}
}

func TestEnqueueDedupDefaultTTL(t *testing.T) {
	t.Parallel()
	s, rdb, _ := mustStore(t)
	ctx := ctxT(t)
	e := entry(1, "crm")
	e.DedupKey = "k"
	if _, err := s.Enqueue(ctx, 0, e); err != nil {
		t.Fatalf("Enqueue: %v", err)
	}
	ttl, err := rdb.PTTL(ctx, seenKey(tenant, "k")).Result()
	if err != nil || ttl <= DefaultDedupTTL-time.Minute || ttl > DefaultDedupTTL {
		t.Errorf("seen key TTL = %v (%v), want %v", ttl, err, DefaultDedupTTL)
	}
}

func TestEnqueueFanOut(t *testing.T) {
	t.Parallel()
	s, rdb, _ := mustStore(t)
	ctx := ctxT(t)

	e := entry(1, "crm", "legacy", "audit")
	e.Raw = []byte("Body=YES&From=%2B15555550100")
	e.RawFor = []string{"legacy"}
	e.TraceParent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
	mustEnqueue(t, s, e)

	for _, d := range e.Destinations {
		msgs, err := rdb.XRange(ctx, streamKey(tenant, d), "-", "+").Result()
		if err != nil || len(msgs) != 1 {
			t.Fatalf("XRANGE %s = %v, %v; want one entry", d, msgs, err)
		}
		v := msgs[0].Values
		want := map[string]any{
			fEventID: e.EventID, fBody: string(e.Event), fAttempts: "0",
			fEnqueued: "1700000000001", fTrace: e.TraceParent,
		}
		if d == "legacy" {
			want[fRaw] = string(e.Raw)
		}
		if len(v) != len(want) {
			t.Errorf("%s fields = %v, want %v", d, v, want)
		}
		for f, w := range want {
			if v[f] != w {
				t.Errorf("%s field %s = %q, want %q", d, f, v[f], w)
			}
		}
	}
}

func TestEnqueueBatchAndValidation(t *testing.T) {
	t.Parallel()
	s, rdb, _ := mustStore(t)
	ctx := ctxT(t)

	batch := make([]*Entry, 64)
	for i := range batch {
		batch[i] = entry(i, "crm")
	}
	mustEnqueue(t, s, batch...)
	if n := xlen(t, rdb, streamKey(tenant, "crm")); n != 64 {
		t.Errorf("XLEN = %d, want 64", n)
	}

	// An entry routed nowhere still records its dedup key.
	nowhere := entry(100)
	nowhere.DedupKey = "nowhere"
	if fresh, err := s.Enqueue(ctx, time.Hour, nowhere); err != nil || !fresh[0] {
		t.Errorf("Enqueue without destinations = %v, %v; want [true]", fresh, err)
	}
	if fresh, err := s.Enqueue(ctx, time.Hour, nowhere); err != nil || fresh[0] {
		t.Errorf("Enqueue without destinations again = %v, %v; want [false]", fresh, err)
	}

	bad := entry(101, "crm")
	bad.Tenant = ""
	if _, err := s.Enqueue(ctx, time.Hour, entry(102, "crm"), bad); err == nil {
		t.Error("Enqueue with empty tenant: err = nil, want an error")
	}
	braces := entry(103, "crm")
	braces.Tenant = "a}b"
	if _, err := s.Enqueue(ctx, time.Hour, braces); err == nil {
		t.Error("Enqueue with braces in the tenant: err = nil, want an error")
	}
	if _, err := s.Enqueue(ctx, time.Hour, entry(104, "crm", "")); err == nil {
		t.Error("Enqueue with an empty destination: err = nil, want an error")
	}
	if n := xlen(t, rdb, streamKey(tenant, "crm")); n != 64 {
		t.Errorf("XLEN after rejected batches = %d, want 64 (nothing written)", n)
	}
}

func TestEnqueueAfterScriptFlush(t *testing.T) {
	t.Parallel()
	s, rdb, _ := mustStore(t)
	ctx := ctxT(t)
	mustEnqueue(t, s, entry(1, "crm"))
	if err := rdb.ScriptFlush(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	mustEnqueue(t, s, entry(2, "crm"), entry(3, "crm"))
	if n := xlen(t, rdb, streamKey(tenant, "crm")); n != 3 {
		t.Errorf("XLEN = %d, want 3", n)
	}
}

func TestEnqueueBinaryBody(t *testing.T) {
	t.Parallel()
	s, _, _ := mustStore(t)
	all := make([]byte, 256)
	for i := range all {
		all[i] = byte(i)
	}
	e := entry(1, "crm")
	e.Event, e.Raw, e.RawFor = all, all, []string{"crm"}
	mustEnqueue(t, s, e)
	jobs := mustRead(t, s, "c1", map[string]int{"crm": 1})
	if len(jobs) != 1 || !bytes.Equal(jobs[0].Event, all) || !bytes.Equal(jobs[0].Raw, all) {
		t.Fatalf("Read = %+v, want the 256 byte values back as event and raw", jobs)
	}
}

func TestUnavailable(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	// No retries: with go-redis's defaults each call spends about two
	// seconds redialling before it gives up.
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr, MaxRetries: -1, DialerRetries: 1})
	t.Cleanup(func() { _ = rdb.Close() })
	s := New(rdb)
	srv.Kill()
	ctx := ctxT(t)
	if _, err := s.Enqueue(ctx, time.Hour, entry(1, "crm")); !errors.Is(err, switchboard.ErrUnavailable) {
		t.Errorf("Enqueue with Redis down: err = %v, want ErrUnavailable", err)
	}
	if _, err := s.Read(ctx, tenant, "c1", map[string]int{"crm": 1}, 0); !errors.Is(err, switchboard.ErrUnavailable) {
		t.Errorf("Read with Redis down: err = %v, want ErrUnavailable", err)
	}
	if err := s.Ping(ctx); !errors.Is(err, switchboard.ErrUnavailable) {
		t.Errorf("Ping with Redis down: err = %v, want ErrUnavailable", err)
	}
}

// TestEnqueueFailedXAddReleasesDedup: the seen key is claimed before the
// XADDs; when one fails, the key is released, so the carrier's retry is
// stored rather than dropped as a duplicate. On Redis and on the embedded
// store (whose Lua differs).
func TestEnqueueFailedXAddReleasesDedup(t *testing.T) {
	t.Parallel()
	emb, err := StartEmbedded()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(emb.Close)
	erdb := redis.NewClient(&redis.Options{Addr: emb.Addr()})
	t.Cleanup(func() { _ = erdb.Close() })
	s, rdb, _ := mustStore(t)
	for name, st := range map[string]struct {
		s   *Store
		rdb *redis.Client
	}{"redis": {s, rdb}, "embedded": {New(erdb), erdb}} {
		ctx := ctxT(t)
		// A key of the wrong type where the audit stream should be.
		if err := st.rdb.Set(ctx, streamKey(tenant, "audit"), "not a stream", 0).Err(); err != nil {
			t.Fatal(err)
		}
		e := entry(1, "crm", "audit")
		e.DedupKey = "k1"
		if _, err := st.s.Enqueue(ctx, time.Hour, e); err == nil {
			t.Fatalf("%s: Enqueue onto a broken stream succeeded", name)
		}
		if n, _ := st.rdb.Exists(ctx, seenKey(tenant, "k1")).Result(); n != 0 {
			t.Errorf("%s: the seen key stayed after a failed XADD", name)
		}
		if err := st.rdb.Del(ctx, streamKey(tenant, "audit")).Err(); err != nil {
			t.Fatal(err)
		}
		retry := entry(2, "crm", "audit")
		retry.DedupKey = "k1"
		fresh, err := st.s.Enqueue(ctx, time.Hour, retry)
		if err != nil || !slices.Equal(fresh, []bool{true}) {
			t.Errorf("%s: the carrier's retry: fresh = %v, %v; want stored", name, fresh, err)
		}
		if n := xlen(t, st.rdb, streamKey(tenant, "audit")); n != 1 {
			t.Errorf("%s: XLEN audit = %d, want 1", name, n)
		}
	}
}

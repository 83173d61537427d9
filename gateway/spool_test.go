package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	switchboard "github.com/switchboard-gw/switchboard"
	"github.com/switchboard-gw/switchboard/gateway/carrier"
	"github.com/switchboard-gw/switchboard/policy"
	"github.com/switchboard-gw/switchboard/queue"
	"github.com/switchboard-gw/switchboard/queue/redistest"
)

// mustSpool opens a spool in dir, closed when the test ends.
func mustSpool(t *testing.T, dir string, max int64) (*spool, *syncWriter) {
	t.Helper()
	logs := &syncWriter{}
	sp, err := openSpool(dir, max, slog.New(slog.NewJSONHandler(logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sp.close)
	return sp, logs
}

func testRecord(i int) *spoolRecord {
	return &spoolRecord{TTL: time.Hour, Tenant: "acme", Entries: []*queue.Entry{{
		Tenant: "acme", DedupKey: fmt.Sprintf("tw|message.received|SM%d||", i), EventID: fmt.Sprintf("evt_%d", i),
		Event: fmt.Appendf(nil, `{"n":%d}`, i), Destinations: []string{"app"}, Now: time.UnixMilli(int64(1e12 + i)).UTC(),
	}}}
}

// replayAll replays sp, collecting the event ids fn took.
func replayAll(t *testing.T, sp *spool) ([]string, bool) {
	t.Helper()
	var ids []string
	_, emptied, err := sp.replay(func(rec *spoolRecord) error {
		ids = append(ids, rec.Entries[0].EventID)
		return nil
	})
	if err != nil {
		t.Fatalf("replay: %v", err)
	}
	return ids, emptied
}

func journalSize(t *testing.T, dir string) int64 {
	t.Helper()
	st, err := os.Stat(filepath.Join(dir, journalName))
	if err != nil {
		t.Fatal(err)
	}
	return st.Size()
}

func TestSpoolAppendReplay(t *testing.T) {
	dir := t.TempDir()
	sp, _ := mustSpool(t, dir, 1<<20)
	if sp.pending() {
		t.Fatal("a new spool is pending")
	}
	for i := range 5 {
		if err := sp.append(testRecord(i)); err != nil {
			t.Fatal(err)
		}
	}
	if b, n := sp.stats(); n != 5 || b != journalSize(t, dir) {
		t.Errorf("stats = %d bytes, %d records; want %d bytes, 5", b, n, journalSize(t, dir))
	}
	ids, emptied := replayAll(t, sp)
	if want := []string{"evt_0", "evt_1", "evt_2", "evt_3", "evt_4"}; !reflect.DeepEqual(ids, want) || !emptied {
		t.Errorf("replayed %v (emptied %v), want %v in order, emptied", ids, emptied, want)
	}
	if sp.pending() || journalSize(t, dir) != 0 {
		t.Errorf("after the replay: pending %v, journal %d bytes; want empty", sp.pending(), journalSize(t, dir))
	}
	if ids, _ := replayAll(t, sp); len(ids) != 0 {
		t.Errorf("a second replay gave %v, want nothing", ids)
	}
}

// TestSpoolKeepsEveryEntryField fills every field of queue.Entry and
// checks the journal gives it back unchanged: a field added to Entry that
// the journal cannot carry fails here.
func TestSpoolKeepsEveryEntryField(t *testing.T) {
	var e queue.Entry
	v := reflect.ValueOf(&e).Elem()
	for i := range v.NumField() {
		f := v.Field(i)
		switch f.Interface().(type) {
		case string:
			f.SetString("v-" + v.Type().Field(i).Name)
		case []byte:
			f.SetBytes([]byte(`{"field":"` + v.Type().Field(i).Name + `","bin":"\u0000\u00ff"}`))
		case []string:
			f.Set(reflect.ValueOf([]string{"a", "b"}))
		case time.Time:
			f.Set(reflect.ValueOf(time.Date(2026, 11, 27, 10, 0, 0, 123456789, time.UTC)))
		case time.Duration:
			f.SetInt(int64(72 * time.Hour))
		default:
			t.Fatalf("queue.Entry.%s has type %s, which this test (and perhaps the journal) does not know",
				v.Type().Field(i).Name, f.Type())
		}
	}
	dir := t.TempDir()
	sp, _ := mustSpool(t, dir, 1<<20)
	rec := &spoolRecord{TTL: 90 * time.Minute, Tenant: "acme", Nonce: "sn:n1", NonceTTL: time.Minute, Entries: []*queue.Entry{&e}}
	if err := sp.append(rec); err != nil {
		t.Fatal(err)
	}
	sp.close()
	sp, _ = mustSpool(t, dir, 1<<20) // from disk, not memory
	var got *spoolRecord
	if _, _, err := sp.replay(func(r *spoolRecord) error { got = r; return nil }); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, rec) {
		t.Errorf("replayed\n%+v\nwant\n%+v", *got.Entries[0], e)
	}
}

func TestSpoolSurvivesReopenAndResumes(t *testing.T) {
	dir := t.TempDir()
	sp, _ := mustSpool(t, dir, 1<<20)
	for i := range 4 {
		if err := sp.append(testRecord(i)); err != nil {
			t.Fatal(err)
		}
	}
	// Redis goes away after two records.
	down := fmt.Errorf("queue enqueue: %w", switchboard.ErrUnavailable)
	var took []string
	n, emptied, err := sp.replay(func(rec *spoolRecord) error {
		if len(took) == 2 {
			return down
		}
		took = append(took, rec.Entries[0].EventID)
		return nil
	})
	if n != 2 || emptied || !errors.Is(err, switchboard.ErrUnavailable) {
		t.Fatalf("replay = %d, %v, %v; want 2, not emptied, unavailable", n, emptied, err)
	}
	sp.close() // like a restart (kill -9 keeps the drained offset too: it is written, not fsynced)

	sp, _ = mustSpool(t, dir, 1<<20)
	if _, waiting := sp.stats(); waiting != 2 || !sp.pending() {
		t.Errorf("after reopening: %d waiting, pending %v; want 2, true", waiting, sp.pending())
	}
	ids, emptied := replayAll(t, sp)
	if want := []string{"evt_2", "evt_3"}; !reflect.DeepEqual(ids, want) || !emptied {
		t.Errorf("resumed with %v (emptied %v), want %v from the drained offset", ids, emptied, want)
	}

	// A lost offset replays from the start: harmless, the dedup keys drop
	// what is already stored.
	for i := range 2 {
		if err := sp.append(testRecord(i)); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, err := sp.replay(func(*spoolRecord) error { return down }); err == nil {
		t.Fatal("want the replay to stop")
	}
	sp.close()
	if err := os.WriteFile(filepath.Join(dir, drainedName), []byte("garbage-garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	sp, _ = mustSpool(t, dir, 1<<20)
	if ids, _ := replayAll(t, sp); !reflect.DeepEqual(ids, []string{"evt_0", "evt_1"}) {
		t.Errorf("with an unreadable offset replayed %v, want everything", ids)
	}
}

func TestSpoolCorruptRecords(t *testing.T) {
	t.Run("cut short at the end", func(t *testing.T) {
		dir := t.TempDir()
		sp, _ := mustSpool(t, dir, 1<<20)
		for i := range 3 {
			if err := sp.append(testRecord(i)); err != nil {
				t.Fatal(err)
			}
		}
		whole := journalSize(t, dir)
		sp.close()
		// A crash in the middle of the fourth record's write.
		torn := frame([]byte(`{"ttl":1,"tenant":"acme","entries":[]}`))
		appendFile(t, filepath.Join(dir, journalName), torn[:len(torn)-7])

		sp, logs := mustSpool(t, dir, 1<<20)
		if !strings.Contains(logs.String(), "cut short by a crash") {
			t.Errorf("no log line about the torn record:\n%s", logs)
		}
		if got := journalSize(t, dir); got != whole {
			t.Errorf("journal = %d bytes, want %d: the torn end is dropped", got, whole)
		}
		if err := sp.append(testRecord(3)); err != nil { // lands after the last whole record
			t.Fatal(err)
		}
		if ids, emptied := replayAll(t, sp); !reflect.DeepEqual(ids, []string{"evt_0", "evt_1", "evt_2", "evt_3"}) || !emptied {
			t.Errorf("replayed %v (emptied %v), want the four whole records", ids, emptied)
		}
	})

	t.Run("a bad checksum in the middle", func(t *testing.T) {
		dir := t.TempDir()
		sp, _ := mustSpool(t, dir, 1<<20)
		var ends []int64
		for i := range 3 {
			if err := sp.append(testRecord(i)); err != nil {
				t.Fatal(err)
			}
			ends = append(ends, journalSize(t, dir))
		}
		sp.close()
		path := filepath.Join(dir, journalName)
		b, _ := os.ReadFile(path)
		b[ends[0]+recHeader+5] ^= 0xff // a byte of the second record's payload
		if err := os.WriteFile(path, b, 0o600); err != nil {
			t.Fatal(err)
		}
		sp, logs := mustSpool(t, dir, 1<<20)
		ids, emptied := replayAll(t, sp)
		if !reflect.DeepEqual(ids, []string{"evt_0", "evt_2"}) || !emptied {
			t.Errorf("replayed %v (emptied %v), want evt_0 and evt_2 around the corrupt record", ids, emptied)
		}
		if !strings.Contains(logs.String(), "skipped an unreadable record") {
			t.Errorf("no log line about the corrupt record:\n%s", logs)
		}
	})

	t.Run("garbage never crashes", func(t *testing.T) {
		dir := t.TempDir()
		junk := []byte("SB\x00\x00\x00\x05xxxxSBSB\xff\xff\xff\xffSB")
		for range 200 {
			junk = append(junk, "SB\x00\x00\x10\x00"...)
		}
		appendFile(t, filepath.Join(dir, journalName), junk)
		sp, _ := mustSpool(t, dir, 1<<20)
		if ids, _ := replayAll(t, sp); len(ids) != 0 {
			t.Errorf("replayed %v from garbage", ids)
		}
	})
}

func appendFile(t *testing.T, path string, b []byte) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Write(b); err != nil {
		t.Fatal(err)
	}
}

func TestSpoolMaxBytes(t *testing.T) {
	dir := t.TempDir()
	var three int64
	for i := range 3 {
		three += int64(len(frame(mustJSON(t, testRecord(i)))))
	}
	sp, _ := mustSpool(t, dir, three+int64(len(frame(mustJSON(t, testRecord(3)))))-1)
	for i := range 3 {
		if err := sp.append(testRecord(i)); err != nil {
			t.Fatalf("record %d: %v", i, err)
		}
	}
	if err := sp.append(testRecord(3)); !errors.Is(err, errSpoolFull) {
		t.Fatalf("past max_bytes: %v, want errSpoolFull", err)
	}
	if got := journalSize(t, dir); got != three {
		t.Errorf("journal = %d bytes after a refused append, want %d", got, three)
	}
	if ids, _ := replayAll(t, sp); len(ids) != 3 {
		t.Errorf("replayed %v, want the 3 accepted", ids)
	}
	if err := sp.append(testRecord(4)); err != nil {
		t.Errorf("once drained: %v, want room again", err)
	}
}

func TestSpoolSkipsWhatTheStoreRefuses(t *testing.T) {
	sp, logs := mustSpool(t, t.TempDir(), 1<<20)
	for i := range 3 {
		if err := sp.append(testRecord(i)); err != nil {
			t.Fatal(err)
		}
	}
	var ids []string
	n, emptied, err := sp.replay(func(rec *spoolRecord) error {
		if rec.Entries[0].EventID == "evt_1" {
			return errors.New("queue enqueue: entry 0: empty destination") // not Redis being away
		}
		ids = append(ids, rec.Entries[0].EventID)
		return nil
	})
	if err != nil || !emptied || n != 2 || !reflect.DeepEqual(ids, []string{"evt_0", "evt_2"}) {
		t.Errorf("replay = %d %v %v, took %v; want 2 taken, emptied", n, emptied, err, ids)
	}
	if !strings.Contains(logs.String(), "skipped a callback the store refused") {
		t.Errorf("no log line for the skipped record:\n%s", logs)
	}
}

func TestSpoolDirIsLocked(t *testing.T) {
	dir := t.TempDir()
	mustSpool(t, dir, 1<<20)
	if _, err := openSpool(dir, 1<<20, slog.New(slog.DiscardHandler)); err == nil || !strings.Contains(err.Error(), "in use") {
		t.Errorf("a second spool on one dir: %v, want an error saying it is in use", err)
	}
}

func mustJSON(t *testing.T, rec *spoolRecord) []byte {
	t.Helper()
	b, err := json.Marshal(rec)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestSpoolIngress runs the spool inside the gateway against a real Redis:
// callbacks are acknowledged while Redis is down, a replayed nonce is
// refused meanwhile, and the drainer stores each callback once when Redis
// is back, then remembers the nonce.
func TestSpoolIngress(t *testing.T) {
	rs := redistest.Start(t, redistest.WithAOF()) // what Redis had survives its stop
	dir := t.TempDir()
	file := filepath.Join(t.TempDir(), "sb.yaml")
	cfgText := `server: {listen: ":0", max_body_bytes: 4096}
redis: {url: ` + rs.URL() + `}
tenants:
  acme:
    sources:
      tw: {carrier: twilio, secret: ` + token + `}
      sn: {carrier: sinch, secret: sinch-secret}
    destinations:
      app: {url: "https://app.example.com/in", secret: whsec_c3dpdGNoYm9hcmQtZGVtby1zZWNyZXQta2V5LTAwMDE=}
    routes:
      - match: {types: [message.received]}
        to: [app]
`
	if err := os.WriteFile(file, []byte(cfgText), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := policy.Load(file)
	if err != nil {
		t.Fatal(err)
	}
	rdb := redis.NewClient(&redis.Options{Addr: rs.Addr, MaxRetries: 1}) // as Start sets it
	t.Cleanup(func() { _ = rdb.Close() })
	nonceChecks := &commandCounter{name: "evalsha"}
	rdb.AddHook(nonceChecks)
	store := queue.New(rdb)
	logs := &syncWriter{}
	log := slog.New(slog.NewJSONHandler(logs, nil))
	g, err := New(cfg, store, log)
	if err != nil {
		t.Fatal(err)
	}
	if g.spool, err = openSpool(dir, 4096, log); err != nil { // a few callbacks
		t.Fatal(err)
	}
	t.Cleanup(g.spool.close)
	srv := httptest.NewServer(g.Handler())
	t.Cleanup(srv.Close)
	f := &fixture{srv: srv, rdb: rdb, rs: rs, log: logs}
	self := srv.URL + "/hooks/acme/tw"

	// Redis up and the journal empty: straight to Redis.
	if resp, _ := f.post(t, "/hooks/acme/tw", self, inboundForm("SM1"), nil); resp.StatusCode != 200 {
		t.Fatalf("with Redis up: %d, want 200", resp.StatusCode)
	}
	if g.spool.pending() || f.queued(t) != 1 {
		t.Fatalf("with Redis up: spool pending %v, queued %d; want the event in Redis", g.spool.pending(), f.queued(t))
	}

	rs.Stop()
	nonced := replayable(t, carrier.Config{Carrier: "sinch", Secret: "sinch-secret"}, srv.URL+"/hooks/acme/sn")
	if code := nonced(); code != http.StatusOK {
		t.Fatalf("a nonced callback with Redis down: %d, want 200 (spooled)", code)
	}
	before := nonceChecks.n.Load()
	if code := nonced(); code != http.StatusUnauthorized {
		t.Errorf("its replay with Redis down: %d, want 401 (the journal holds the nonce)", code)
	}
	if n := nonceChecks.n.Load() - before; n != 0 {
		t.Errorf("with Redis known down, the nonce check still asked Redis %d times (each waits out a dial timeout)", n)
	}
	// A new nonce too: the journal answers alone, no claim is asked of Redis.
	before = nonceChecks.n.Load()
	if code := replayable(t, carrier.Config{Carrier: "sinch", Secret: "sinch-secret"}, srv.URL+"/hooks/acme/sn")(); code != http.StatusOK {
		t.Errorf("a new nonced callback with Redis known down: %d, want 200 (spooled)", code)
	}
	if n := nonceChecks.n.Load() - before; n != 0 {
		t.Errorf("with Redis known down, a new nonce's claim still asked Redis %d times", n)
	}
	if resp, _ := f.post(t, "/hooks/acme/tw", self, inboundForm("SM2"), nil); resp.StatusCode != 200 {
		t.Fatalf("with Redis down: %d, want 200 (spooled)", resp.StatusCode)
	}
	if !strings.Contains(logs.String(), "Redis unreachable: spooled callback") {
		t.Errorf("no log line for the spooled callback:\n%s", logs)
	}
	// Past max_bytes: 503, as without a spool.
	code := 0
	for i := range 50 {
		resp, _ := f.post(t, "/hooks/acme/tw", self, inboundForm(fmt.Sprintf("SM%d", 10+i)), nil)
		if code = resp.StatusCode; code != 200 {
			if resp.Header.Get("Retry-After") == "" {
				t.Error("503 without Retry-After")
			}
			break
		}
	}
	if code != http.StatusServiceUnavailable {
		t.Fatalf("past spool.max_bytes: %d, want 503", code)
	}
	_, waiting := g.spool.stats()
	if r, err := http.Get(srv.URL + "/readyz"); err != nil || r.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("/readyz with Redis down and a spool = %v %v, want 503: it tells the truth about Redis", r.StatusCode, err)
	}

	journal, err := os.ReadFile(filepath.Join(dir, journalName))
	if err != nil {
		t.Fatal(err)
	}

	rs.Start()
	// The journal is full and not yet drained, Redis is back: straight to
	// Redis rather than 503.
	if resp, _ := f.post(t, "/hooks/acme/tw", self, inboundForm("SM99"), nil); resp.StatusCode != 200 {
		t.Fatalf("journal full, Redis back: %d, want 200\n%s", resp.StatusCode, logs)
	}
	if got := f.queued(t); got != 2 {
		t.Fatalf("queued = %d, want 2: SM1 and SM99 went to Redis", got)
	}

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { g.drainSpool(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	awaitDrained := func() {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for g.spool.pending() {
			if time.Now().After(deadline) {
				t.Fatalf("the spool was not drained:\n%s", logs)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	awaitDrained()
	if got, want := f.queued(t), int64(2+waiting); got != want {
		xs, _ := rdb.XRange(context.Background(), "sb:{acme}:d:app", "-", "+").Result()
		t.Errorf("queued = %d, want %d: every spooled callback once\n%v\n%s", got, want, xs, logs)
	}
	if !strings.Contains(logs.String(), fmt.Sprintf(`"msg":"spool drained %d callbacks"`, waiting)) {
		t.Errorf("no 'spool drained %d callbacks' line:\n%s", waiting, logs)
	}
	if code := nonced(); code != http.StatusUnauthorized {
		t.Errorf("the replay after the drain: %d, want 401 (the nonce is in Redis now)", code)
	}
	// Drained again (a crash before the journal was emptied): nothing new.
	for off := int64(0); off < int64(len(journal)); {
		payload, next, ok := readRecord(bytesReaderAt(journal), off, int64(len(journal)))
		if !ok {
			t.Fatalf("the journal does not read back at %d", off)
		}
		var rec spoolRecord
		if err := json.Unmarshal(payload, &rec); err != nil {
			t.Fatal(err)
		}
		if err := g.spool.append(&rec); err != nil {
			t.Fatal(err)
		}
		off = next
	}
	awaitDrained()
	if got, want := f.queued(t), int64(2+waiting); got != want {
		t.Errorf("after draining it all again: queued = %d, want %d (dedup keys drop them)", got, want)
	}
}

type bytesReaderAt []byte

func (b bytesReaderAt) ReadAt(p []byte, off int64) (int, error) {
	return copy(p, b[off:]), nil
}

// commandCounter counts the commands named name a client sends.
type commandCounter struct {
	name string
	n    atomic.Int64
}

func (c *commandCounter) DialHook(next redis.DialHook) redis.DialHook { return next }

func (c *commandCounter) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if cmd.Name() == c.name {
			c.n.Add(1)
		}
		return next(ctx, cmd)
	}
}

func (c *commandCounter) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

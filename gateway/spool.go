package gateway

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	switchboard "github.com/switchboard-gw/switchboard"
	"github.com/switchboard-gw/switchboard/queue"
)

// The spool (config spool: {dir, max_bytes}): while Redis is unreachable, a
// callback's entries are appended to a local journal and fsynced before the
// carrier gets its 2xx; a drainer replays them into Redis with
// Store.Enqueue, in order, once Redis answers, then empties the journal.
// While the journal holds callbacks, new ones join it behind them (so the
// order holds), unless it is full.
//
// The journal (spool.dir/callbacks.journal) is a sequence of records:
//
//	"SB" | n: uint32 | CRC-32C of n and payload: uint32 | payload: n bytes (JSON spoolRecord)
//
// integers big endian. A record cut short (a crash while writing it: its
// callback was never acknowledged) or failing its checksum is skipped with
// a log line, and reading resumes at the next record that checks out. How
// far the journal is drained is kept in spool.dir/callbacks.drained
// (written without fsync), so a restart resumes there; a lost or stale
// offset only replays records again, which their dedup keys make harmless.

const (
	journalName = "callbacks.journal"
	drainedName = "callbacks.drained"
	recHeader   = 10 // magic, length, checksum
)

var (
	crcTable = crc32.MakeTable(crc32.Castagnoli)

	errSpoolFull   = errors.New("spool: the journal is full (spool.max_bytes)")
	errSpoolClosed = errors.New("spool: closed")
)

// spoolRecord is one callback in the journal: what its Enqueue was given,
// and the nonce to remember once the entries are in Redis.
type spoolRecord struct {
	TTL      time.Duration `json:"ttl"` // the dedup TTL
	Tenant   string        `json:"tenant"`
	Nonce    string        `json:"nonce,omitempty"` // Store.Confirm key; empty: none
	NonceTTL time.Duration `json:"nonce_ttl,omitempty"`
	// Entries are the callback's entries, every field of queue.Entry.
	Entries []*queue.Entry `json:"entries"`
}

// spool is the journal of one gateway process. Its methods are safe for
// concurrent use.
type spool struct {
	dir  string
	max  int64
	log  *slog.Logger
	lock io.Closer // the directory's lock (spool_unix.go)
	// kick wakes the drainer when a record is appended.
	kick chan struct{}
	// down says Redis failed the last enqueue or the drainer's last ping.
	down atomic.Bool

	mu      sync.Mutex
	f       *os.File // the journal: appended under mu, read with ReadAt
	pos     *os.File // the drained offset
	size    int64    // end of the last whole record
	drained int64    // records before this offset are in Redis
	records int      // records between drained and size
	written uint64   // appends so far, for the group fsync
	// nonces counts the nonces of spooled callbacks (tenant NUL key), so a
	// replay is refused while Redis cannot say; cleared when emptied.
	nonces map[string]int

	syncMu sync.Mutex
	synced uint64 // appends known to be on disk
}

// openSpool opens (creating them as needed) the journal in dir, holding at
// most max bytes, and finds what it holds: records a crash cut short at its
// end are dropped, with a log line.
func openSpool(dir string, max int64, log *slog.Logger) (*spool, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("spool.dir: %w", err)
	}
	lock, err := lockDir(dir)
	if err != nil {
		return nil, err
	}
	sp := &spool{dir: dir, max: max, log: log, lock: lock, kick: make(chan struct{}, 1), nonces: map[string]int{}}
	if sp.f, err = os.OpenFile(filepath.Join(dir, journalName), os.O_RDWR|os.O_CREATE|os.O_APPEND, 0o600); err == nil {
		sp.pos, err = os.OpenFile(filepath.Join(dir, drainedName), os.O_RDWR|os.O_CREATE, 0o600)
	}
	if err == nil {
		syncDir(dir) // the files' names are on disk too
		err = sp.load()
	}
	if err != nil {
		sp.close()
		return nil, fmt.Errorf("spool.dir: %w", err)
	}
	return sp, nil
}

// load reads the journal as found at open.
func (sp *spool) load() error {
	st, err := sp.f.Stat()
	if err != nil {
		return err
	}
	size := st.Size()
	type found struct {
		off    int64
		nonces []string
	}
	var recs []found
	end := int64(0) // end of the last record that checks out
	for off := int64(0); off < size; {
		payload, next, ok := readRecord(sp.f, off, size)
		if !ok {
			off = resync(sp.f, off+1, size)
			continue
		}
		var rec spoolRecord
		_ = json.Unmarshal(payload, &rec) // an undecodable one is skipped when replayed
		recs = append(recs, found{off, nonceIDs(&rec)})
		off, end = next, next
	}
	if end < size {
		// A crash while appending: that callback never got its 2xx.
		if err := sp.f.Truncate(end); err != nil {
			return err
		}
		if err := sp.f.Sync(); err != nil {
			return err
		}
		sp.log.Warn("spool: dropped the end of the journal, a record cut short by a crash (its callback was not acknowledged)",
			"dir", sp.dir, "bytes", size-end)
	}
	sp.size = end
	sp.drained = sp.readDrained()
	valid := sp.drained == end
	for _, r := range recs {
		valid = valid || r.off == sp.drained
	}
	if !valid {
		sp.drained = 0 // drain it all again: dedup keeps that harmless
	}
	for _, r := range recs {
		if r.off >= sp.drained {
			sp.records++
			for _, n := range r.nonces {
				sp.nonces[n]++
			}
		}
	}
	return nil
}

// append adds rec to the journal and returns once it is on disk. It
// returns errSpoolFull when rec would take the journal past max.
func (sp *spool) append(rec *spoolRecord) error {
	payload, err := json.Marshal(rec)
	if err != nil {
		return fmt.Errorf("spool: encode: %w", err)
	}
	b := frame(payload)
	nonces := nonceIDs(rec)
	sp.mu.Lock()
	if sp.f == nil {
		sp.mu.Unlock()
		return errSpoolClosed
	}
	if sp.size+int64(len(b)) > sp.max {
		sp.mu.Unlock()
		return errSpoolFull
	}
	if _, err := sp.f.Write(b); err != nil {
		_ = sp.f.Truncate(sp.size) // leave no torn record before the next one
		sp.mu.Unlock()
		return fmt.Errorf("spool: write: %w", err)
	}
	sp.size += int64(len(b))
	sp.records++
	sp.written++
	seq := sp.written
	for _, n := range nonces {
		sp.nonces[n]++
	}
	sp.mu.Unlock()

	if err := sp.sync(seq); err != nil {
		// The carrier gets 503 and retries with this nonce; the record
		// may still be drained, and the dedup key drops one of the two.
		sp.mu.Lock()
		for _, n := range nonces {
			if sp.nonces[n] > 0 {
				if sp.nonces[n]--; sp.nonces[n] == 0 {
					delete(sp.nonces, n)
				}
			}
		}
		sp.mu.Unlock()
		return err
	}
	select {
	case sp.kick <- struct{}{}:
	default:
	}
	return nil
}

// sync makes the seq-th append durable. Concurrent appends share one
// fsync: the one that waited gets a sync that started after its write.
func (sp *spool) sync(seq uint64) error {
	sp.syncMu.Lock()
	defer sp.syncMu.Unlock()
	if sp.synced >= seq {
		return nil
	}
	sp.mu.Lock()
	f, upto := sp.f, sp.written
	sp.mu.Unlock()
	if f == nil {
		return errSpoolClosed
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("spool: fsync: %w", err)
	}
	sp.synced = upto
	return nil
}

// pending reports whether the journal holds anything (drained or not)
// that the drainer has yet to deal with.
func (sp *spool) pending() bool {
	sp.mu.Lock()
	defer sp.mu.Unlock()
	return sp.size > 0
}

// nonceHold is how long a nonce stays claimed at least while its callback
// is stored: the store takes milliseconds; a pass-through source's claim
// lasts its answer deadline longer (claimNonce's caller adds it). A
// request that finds the nonce claimed gets 503 (try again), never 401, so
// a carrier's retry after a crash in between is only delayed until the
// claim lapses.
const nonceHold = 5 * time.Second

// claimNonce checks nonce for tenant tid and claims it for hold while the
// callback is stored (Store.Claim): state says whether it was free
// (queue.ClaimTaken, with the claim's token in token: the caller must
// Confirm or Unclaim it), recorded (queue.ClaimRecorded: a replay, also
// when a spooled callback holds it) or claimed by a request in progress
// (queue.ClaimPending). While Redis is unreachable (an enqueue or the
// drainer found it so) the journal answers alone, without error, without
// a claim and without asking Redis, so callbacks do not wait out a dial
// timeout each: state is then queue.ClaimTaken with an empty token.
func (g *Gateway) claimNonce(ctx context.Context, tid, nonce string, hold time.Duration) (state queue.ClaimState, token string, err error) {
	sp := g.spool
	if sp == nil {
		return g.store.Claim(ctx, tid, nonce, hold)
	}
	sp.mu.Lock()
	held := false
	for n := range strings.SplitSeq(nonce, "\n") { // several keys: any held
		held = held || sp.nonces[tid+"\x00"+n] > 0
	}
	sp.mu.Unlock()
	if held {
		return queue.ClaimRecorded, "", nil
	}
	if sp.down.Load() {
		return queue.ClaimTaken, "", nil
	}
	state, token, err = g.store.Claim(ctx, tid, nonce, hold)
	if errors.Is(err, switchboard.ErrUnavailable) {
		return queue.ClaimTaken, "", nil
	}
	return state, token, err
}

// replay gives fn every record not yet drained, in journal order, and
// marks each drained when fn returns. An error from fn that wraps
// switchboard.ErrUnavailable stops the replay at its record, which comes
// again next time; any other error is logged and the record skipped, as is
// a record that cannot be read. Once every record is drained and no other
// arrived meanwhile, the journal is emptied and emptied is true. n counts
// the records fn took.
func (sp *spool) replay(fn func(*spoolRecord) error) (n int, emptied bool, err error) {
	for {
		sp.mu.Lock()
		f, off, end := sp.f, sp.drained, sp.size
		if f == nil {
			sp.mu.Unlock()
			return n, false, errSpoolClosed
		}
		if off >= end {
			err := sp.empty()
			sp.mu.Unlock()
			return n, err == nil, err
		}
		sp.mu.Unlock()
		for off < end {
			payload, next, ok := readRecord(f, off, end)
			var rec spoolRecord
			if ok && json.Unmarshal(payload, &rec) != nil {
				ok = false
			}
			if !ok {
				if payload == nil {
					next = resync(f, off+1, end)
				}
				sp.log.Error("spool: skipped an unreadable record (corrupt or cut short)", "offset", off, "bytes", next-off)
				sp.advance(next, payload != nil)
				off = next
				continue
			}
			if err := fn(&rec); err != nil {
				if errors.Is(err, switchboard.ErrUnavailable) {
					return n, false, err
				}
				sp.log.Error("spool: skipped a callback the store refused", "offset", off, "tenant", rec.Tenant,
					"event_ids", eventIDs(rec.Entries), "err", err.Error())
			} else {
				n++
			}
			sp.advance(next, true)
			off = next
		}
	}
}

// advance records that the journal is drained up to off; record says
// whether a whole record was passed.
func (sp *spool) advance(off int64, record bool) {
	sp.mu.Lock()
	defer sp.mu.Unlock()
	sp.drained = off
	if record && sp.records > 0 {
		sp.records--
	}
	sp.writeDrained(off)
}

// empty truncates the drained journal; sp.mu is held.
func (sp *spool) empty() error {
	if sp.size == 0 {
		return nil
	}
	if err := sp.f.Truncate(0); err != nil {
		return fmt.Errorf("spool: empty the journal: %w", err)
	}
	if err := sp.f.Sync(); err != nil {
		return fmt.Errorf("spool: empty the journal: %w", err)
	}
	sp.size, sp.drained, sp.records = 0, 0, 0
	clear(sp.nonces)
	sp.writeDrained(0)
	return nil
}

// readDrained returns the offset in callbacks.drained, 0 if unreadable.
func (sp *spool) readDrained() int64 {
	var b [12]byte
	if _, err := sp.pos.ReadAt(b[:], 0); err != nil {
		return 0
	}
	if crc32.Checksum(b[:8], crcTable) != binary.BigEndian.Uint32(b[8:]) {
		return 0
	}
	return int64(binary.BigEndian.Uint64(b[:8]))
}

// writeDrained records off in callbacks.drained, without fsync: after a
// power loss it may lag, and the records since are replayed again.
func (sp *spool) writeDrained(off int64) {
	var b [12]byte
	binary.BigEndian.PutUint64(b[:8], uint64(off))
	binary.BigEndian.PutUint32(b[8:], crc32.Checksum(b[:8], crcTable))
	if _, err := sp.pos.WriteAt(b[:], 0); err != nil {
		sp.log.Warn("spool: recording the drained offset failed; a restart replays more (harmless)", "err", err.Error())
	}
}

// stats returns the journal's size in bytes and its records not drained.
func (sp *spool) stats() (bytes int64, records int) {
	sp.mu.Lock()
	defer sp.mu.Unlock()
	return sp.size, sp.records
}

// collectors are the spool's Prometheus gauges, read at scrape time.
func (sp *spool) collectors() []prometheus.Collector {
	return []prometheus.Collector{
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "switchboard_spool_bytes",
			Help: "Size of the local spool journal in bytes (spool.max_bytes caps it)."},
			func() float64 { b, _ := sp.stats(); return float64(b) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "switchboard_spool_callbacks",
			Help: "Callbacks acknowledged from the local spool journal and not yet in Redis."},
			func() float64 { _, n := sp.stats(); return float64(n) }),
	}
}

// close closes the journal; what it holds stays for the next start.
func (sp *spool) close() {
	sp.mu.Lock()
	defer sp.mu.Unlock()
	if sp.f != nil {
		_ = sp.f.Close()
	}
	if sp.pos != nil {
		_ = sp.pos.Close()
	}
	if sp.lock != nil {
		_ = sp.lock.Close() // releases the directory
	}
	sp.f, sp.pos, sp.lock = nil, nil, nil
}

// frame wraps payload as one journal record.
func frame(payload []byte) []byte {
	b := make([]byte, recHeader+len(payload))
	b[0], b[1] = 'S', 'B'
	binary.BigEndian.PutUint32(b[2:6], uint32(len(payload)))
	binary.BigEndian.PutUint32(b[6:10], crc32.Update(crc32.Checksum(b[2:6], crcTable), crcTable, payload))
	copy(b[recHeader:], payload)
	return b
}

// readRecord reads the record at off of a journal whose whole records end
// at end. ok is false when no record that checks out starts at off;
// payload is then nil. next is where the following record starts.
func readRecord(r io.ReaderAt, off, end int64) (payload []byte, next int64, ok bool) {
	if end-off < recHeader {
		return nil, 0, false
	}
	var h [recHeader]byte
	if _, err := r.ReadAt(h[:], off); err != nil || h[0] != 'S' || h[1] != 'B' {
		return nil, 0, false
	}
	n := int64(binary.BigEndian.Uint32(h[2:6]))
	if n > end-off-recHeader {
		return nil, 0, false
	}
	payload = make([]byte, n)
	if _, err := r.ReadAt(payload, off+recHeader); err != nil {
		return nil, 0, false
	}
	if crc32.Update(crc32.Checksum(h[2:6], crcTable), crcTable, payload) != binary.BigEndian.Uint32(h[6:10]) {
		return nil, 0, false
	}
	return payload, off + recHeader + n, true
}

// resync returns the offset of the first record at or after from that
// checks out, or end if there is none.
func resync(r io.ReaderAt, from, end int64) int64 {
	buf := make([]byte, 64<<10)
	for off := from; off < end; {
		chunk := buf[:min(int64(len(buf)), end-off)]
		if _, err := r.ReadAt(chunk, off); err != nil {
			return end
		}
		for i := 0; ; {
			j := bytes.IndexByte(chunk[i:], 'S')
			if j < 0 {
				break
			}
			if _, _, ok := readRecord(r, off+int64(i+j), end); ok {
				return off + int64(i+j)
			}
			i += j + 1
		}
		off += int64(len(chunk))
	}
	return end
}

// nonceIDs are the keys of rec's nonces in spool.nonces (rec.Nonce may
// hold several keys, separated by '\n'; see queue.Store.Claim).
func nonceIDs(rec *spoolRecord) []string {
	if rec.Nonce == "" {
		return nil
	}
	var ids []string
	for n := range strings.SplitSeq(rec.Nonce, "\n") {
		ids = append(ids, rec.Tenant+"\x00"+n)
	}
	return ids
}

func eventIDs(entries []*queue.Entry) []string {
	ids := make([]string, 0, len(entries))
	for _, e := range entries {
		if e != nil {
			ids = append(ids, e.EventID)
		}
	}
	return ids
}

// syncDir fsyncs a directory, so the names of files just created in it
// survive a power loss. Where that is not possible (Windows) it does
// nothing.
func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
}

// persist stores a callback's entries: in Redis, or, with a spool, in its
// journal when Redis is unreachable or earlier callbacks still wait there.
// spooled says the entries are in the journal (fresh is then all true: a
// duplicate is recognized when they are drained), and the nonce, if any,
// goes with them, remembered in Redis once they are drained. On error
// (the store's, wrapping switchboard.ErrUnavailable when Redis is away and
// the journal cannot take the callback) nothing is acknowledged.
func (g *Gateway) persist(ctx context.Context, log func() *slog.Logger, ttl time.Duration, nonce string, nonceTTL time.Duration, entries []*queue.Entry) (fresh []bool, spooled bool, err error) {
	sp := g.spool
	if sp == nil {
		fresh, err = g.enqueue(ctx, ttl, entries...)
		return fresh, false, err
	}
	// Earlier callbacks wait in the journal: keep the order. Unless a
	// pass-through attempt was just stored in Redis: the attempt's history
	// wants its event there first.
	behind := sp.pending() && !slices.ContainsFunc(entries, func(e *queue.Entry) bool { return len(e.Attempted) > 0 })
	if !behind {
		fresh, err = g.enqueue(ctx, ttl, entries...)
		if err == nil || !errors.Is(err, switchboard.ErrUnavailable) {
			return fresh, false, err
		}
		sp.down.Store(true)
	}
	rec := &spoolRecord{TTL: ttl, Tenant: entries[0].Tenant, Nonce: nonce, NonceTTL: nonceTTL, Entries: entries}
	if serr := sp.append(rec); serr != nil {
		if behind {
			// The journal cannot take it but Redis may: the order gives
			// way rather than the callback.
			if fresh, err = g.enqueue(ctx, ttl, entries...); err == nil {
				return fresh, false, nil
			}
		}
		return nil, false, fmt.Errorf("%w; not spooled: %w", err, serr)
	}
	switch {
	case !behind:
		log().Warn("Redis unreachable: spooled callback", "event_ids", eventIDs(entries), "err", err.Error())
	case sp.down.Load():
		log().Warn("Redis unreachable: spooled callback", "event_ids", eventIDs(entries))
	default: // Redis is back; the drainer has not caught up yet
		log().Info("spooled callback behind earlier ones not yet drained", "event_ids", eventIDs(entries))
	}
	fresh = make([]bool, len(entries))
	for i := range fresh {
		fresh[i] = true
	}
	return fresh, true, nil
}

// drainSpool replays the journal into Redis whenever it holds callbacks
// and Redis answers, until ctx is done. While Redis is away it asks again
// after a backoff: 100 ms doubling to 2 s.
func (g *Gateway) drainSpool(ctx context.Context) {
	sp := g.spool
	var wait time.Duration
	drained, since := 0, time.Time{}
	for {
		if !sp.pending() {
			wait = 0
			select {
			case <-ctx.Done():
				return
			case <-sp.kick:
			}
			continue
		}
		if wait > 0 {
			t := time.NewTimer(wait)
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
		}
		if since.IsZero() {
			since = g.now()
		}
		pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		err := g.store.Ping(pctx)
		cancel()
		if err == nil {
			sp.down.Store(false)
			var n int
			var emptied bool
			n, emptied, err = sp.replay(func(rec *spoolRecord) error { return g.drainRecord(ctx, rec) })
			drained += n
			if emptied {
				g.log.Info(fmt.Sprintf("spool drained %d callbacks", drained), "callbacks", drained,
					"ms", g.now().Sub(since).Milliseconds())
				drained, since, wait = 0, time.Time{}, 0
				continue
			}
		}
		if ctx.Err() != nil {
			return
		}
		switch {
		case err == nil:
		case errors.Is(err, switchboard.ErrUnavailable):
			if !sp.down.Swap(true) && drained > 0 {
				_, waiting := sp.stats()
				g.log.Warn("spool drain interrupted: Redis unreachable; resuming when it answers",
					"drained", drained, "waiting", waiting, "err", err.Error())
			}
		default:
			g.log.Error("spool: draining failed", "err", err.Error()) // the journal itself
		}
		wait = min(max(2*wait, 100*time.Millisecond), 2*time.Second)
	}
}

// drainRecord stores one spooled callback in Redis, then remembers its
// nonce. An error (wrapping switchboard.ErrUnavailable) leaves the record
// to be replayed again; its entries then count as duplicates.
func (g *Gateway) drainRecord(ctx context.Context, rec *spoolRecord) error {
	if _, err := g.store.Enqueue(ctx, rec.TTL, rec.Entries...); err != nil {
		return err
	}
	if rec.Nonce != "" {
		// Confirm (a plain SET): the callback's own claim may still be
		// there (it was spooled right after claiming), and must be replaced.
		if err := g.store.Confirm(ctx, rec.Tenant, rec.Nonce, rec.NonceTTL); err != nil {
			return err
		}
	}
	if g.wake != nil {
		g.wake(rec.Tenant)
	}
	g.pulls.notify(rec.Tenant)
	return nil
}

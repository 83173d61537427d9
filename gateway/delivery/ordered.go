package delivery

import (
	"cmp"
	"context"
	"encoding/json"
	"log/slog"
	"sync"
	"time"

	"github.com/sony/gobreaker/v2"

	switchboard "github.com/switchboard-gw/switchboard"
	"github.com/switchboard-gw/switchboard/policy"
	"github.com/switchboard-gw/switchboard/queue"
)

// Ordered destinations (ordered: true, order_key) are not read by the
// worker's main loop: runOrdered delivers them. It keeps each destination's
// jobs in lanes — one lane, or one per conversation with order_key:
// conversation — and attempts only the head of a lane. A head that fails
// stays pending at its place in the stream (queue.Hold) and is attempted
// again after its backoff, holding back the jobs behind it, until it is
// delivered or dead-lettered. Breaker, rate limits and max_in_flight apply
// as to any destination.
//
// One instance delivers an ordered destination: the holder of its lease
// (queue.Lease, renewed every third of the visibility timeout). A new holder
// claims every pending job of the destination before reading new ones, so
// a failover keeps the order; it comes after the old holder's lease
// expires, one visibility timeout.

const (
	// orderedReadAhead bounds the jobs an ordered destination keeps read
	// and waiting in its lanes; a conversation stuck in retries holds up
	// reading once it fills them.
	orderedReadAhead = 256
	// orderedTick is how often ordered destinations look for jobs when
	// nothing woke them (jobs enqueued on another instance).
	orderedTick = 250 * time.Millisecond
	// orderedRetry is how soon a head that could not start (breaker,
	// rate, store) is tried again.
	orderedRetry = 100 * time.Millisecond
)

// ordered is a worker's ordered destinations. The zero value is ready.
type ordered struct {
	once     sync.Once
	wake     chan struct{}
	inflight sync.WaitGroup
	mu       sync.Mutex // guards dests and everything in them
	dests    map[string]*lanes
}

func (o *ordered) init() {
	o.once.Do(func() {
		o.wake = make(chan struct{}, 1)
		o.dests = map[string]*lanes{}
	})
}

// poke makes runOrdered look again now.
func (o *ordered) poke() {
	o.init()
	select {
	case o.wake <- struct{}{}:
	default:
	}
}

// lanes is one ordered destination's jobs in this instance.
type lanes struct {
	dest     string
	leased   bool
	renewAt  time.Time // renew the lease from then on
	lapsesAt time.Time // the lease lapses then unless renewed
	gen      int       // bumped when the lanes are dropped
	byKey    map[string]*lane
	held     int // jobs in all lanes
}

// lane is a FIFO of jobs of one order key; only its head is attempted.
type lane struct {
	key     string
	jobs    []*item
	running bool      // the head is being attempted
	due     time.Time // the head may not start before
}

// item is one job in a lane.
type item struct {
	job  queue.Job
	gen  int
	msg  string // carrier message id, for drop_stale_status
	rank int    // status rank; 0 unless a status event
	// settle, when not nil, is an outcome already decided whose recording
	// failed: record it again instead of attempting again.
	settle *Decision
}

func (ls *lanes) drop() {
	ls.leased = false
	ls.gen++
	ls.byKey = map[string]*lane{}
	ls.held = 0
}

// add puts j at the tail of its lane; due is when a held job may start.
func (ls *lanes) add(d *policy.Destination, j queue.Job, due time.Time) {
	it := &item{job: j, gen: ls.gen}
	key := ""
	var e struct {
		Type string `json:"type"`
		Data struct {
			MessageID string `json:"message_id"`
			From      string `json:"from"`
			To        string `json:"to"`
			Status    string `json:"status"`
		} `json:"data"`
	}
	if json.Unmarshal(j.Event, &e) == nil {
		if d.OrderKey == policy.OrderKeyConversation {
			// Both directions of a conversation are one lane.
			a, b := e.Data.From, e.Data.To
			if b < a {
				a, b = b, a
			}
			key = a + "|" + b
		}
		if e.Type == switchboard.TypeStatus {
			it.msg, it.rank = e.Data.MessageID, switchboard.StatusRank(e.Data.Status)
		}
	}
	l := ls.byKey[key]
	if l == nil {
		l = &lane{key: key}
		ls.byKey[key] = l
	}
	if len(l.jobs) == 0 {
		l.due = due
	}
	l.jobs = append(l.jobs, it)
	ls.held++
}

// runOrdered delivers the tenant's ordered destinations until ctx is done,
// then waits for their attempts in flight and gives up its leases.
func (w *Worker) runOrdered(ctx context.Context) {
	o := &w.ord
	o.init()
	tick := time.NewTicker(cmp.Or(w.orderedEvery, orderedTick))
	defer tick.Stop()
	for ctx.Err() == nil {
		w.stepOrdered(ctx, w.st.Load())
		select {
		case <-ctx.Done():
		case <-o.wake:
		case <-tick.C:
		}
	}
	o.inflight.Wait()
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, ls := range o.dests {
		if ls.leased {
			if err := w.Store.Unlease(context.Background(), w.id, ls.dest, w.Consumer); err != nil {
				w.Log.Warn("giving up an ordered destination's lease failed; another instance takes over when it expires",
					"tenant", w.id, "destination", ls.dest, "err", err)
			}
		}
	}
}

// stepOrdered renews leases, reads ahead and starts the lanes' heads that
// may go.
func (w *Worker) stepOrdered(ctx context.Context, st *state) {
	o := &w.ord
	vis := visibility(st)
	o.mu.Lock()
	for id, ls := range o.dests {
		if t := st.dests[id]; t == nil || !t.cfg.Ordered {
			// No longer ordered (reloaded): its pending jobs are reclaimed
			// like any, once idle for the visibility timeout; a held one
			// with its hold's attempts, the others with none counted for
			// their ordered reads (queue.OrderedConsumer).
			if ls.leased {
				_ = w.Store.Unlease(ctx, w.id, id, w.Consumer)
			}
			ls.drop()
			delete(o.dests, id)
		}
	}
	o.mu.Unlock()
	for id, t := range st.dests {
		if !t.cfg.Ordered {
			continue
		}
		o.mu.Lock()
		ls := o.dests[id]
		if ls == nil {
			ls = &lanes{dest: id, byKey: map[string]*lane{}}
			o.dests[id] = ls
		}
		o.mu.Unlock()
		if !w.leaseOrdered(ctx, t, ls, vis) {
			continue
		}
		w.readOrdered(ctx, t, ls)
		w.startOrdered(ctx, st, t, ls)
	}
}

// leaseOrdered takes or renews the lease on ls's destination and reports
// whether this instance delivers it now. On taking it, it claims the
// destination's pending jobs into the lanes.
func (w *Worker) leaseOrdered(ctx context.Context, t *target, ls *lanes, vis time.Duration) bool {
	o := &w.ord
	now := w.now()
	o.mu.Lock()
	leased, renewAt, lapsesAt := ls.leased, ls.renewAt, ls.lapsesAt
	o.mu.Unlock()
	if leased && now.Before(renewAt) {
		return true
	}
	ok, err := w.Store.Lease(ctx, w.id, ls.dest, w.Consumer, vis)
	o.mu.Lock()
	defer o.mu.Unlock()
	switch {
	case err != nil:
		if leased && now.Before(lapsesAt) {
			return true // try again next step; the lease still holds
		}
		if leased {
			w.Log.Warn("lost an ordered destination's lease: the store is unavailable", "tenant", w.id, "destination", ls.dest, "err", err)
			ls.drop()
		}
		return false
	case !ok:
		if leased {
			w.Log.Warn("another instance took an ordered destination's lease", "tenant", w.id, "destination", ls.dest)
			ls.drop()
		}
		return false
	}
	ls.renewAt, ls.lapsesAt = now.Add(vis/3), now.Add(vis)
	if leased {
		return true
	}
	o.mu.Unlock()
	held, err := w.Store.ClaimHeld(ctx, w.id, ls.dest, queue.OrderedConsumer(w.Consumer))
	o.mu.Lock()
	if err != nil {
		w.Log.Warn("claiming an ordered destination's pending jobs failed; retrying", "tenant", w.id, "destination", ls.dest, "err", err)
		return false
	}
	ls.drop()
	ls.leased = true
	for _, h := range held {
		ls.add(t.cfg, h.Job, h.Due)
	}
	w.Log.Info("delivering an ordered destination", "tenant", w.id, "destination", ls.dest, "pending", len(held))
	return true
}

// readOrdered reads new jobs into the lanes while there is room and the
// breaker is not open.
func (w *Worker) readOrdered(ctx context.Context, t *target, ls *lanes) {
	o := &w.ord
	o.mu.Lock()
	room := orderedReadAhead - ls.held
	o.mu.Unlock()
	if room <= 0 || t.breaker.State() == gobreaker.StateOpen {
		return
	}
	jobs, err := w.Store.Read(ctx, w.id, queue.OrderedConsumer(w.Consumer), map[string]int{ls.dest: min(room, 64)}, 0)
	o.mu.Lock()
	defer o.mu.Unlock()
	if err != nil && ctx.Err() == nil {
		w.Log.Warn("reading an ordered destination failed; retrying", "tenant", w.id, "destination", ls.dest, "err", err)
	}
	for _, j := range jobs {
		if ls.leased {
			ls.add(t.cfg, j, time.Time{})
		}
		// Lanes dropped meanwhile: the jobs stay pending, for the lease
		// holder to claim.
	}
}

// startOrdered starts the heads of lanes that may go, as slots allow.
func (w *Worker) startOrdered(ctx context.Context, st *state, t *target, ls *lanes) {
	if t.breaker.State() == gobreaker.StateOpen {
		return // nothing is attempted, no rate spent, until it half-opens
	}
	o := &w.ord
	now := w.now()
	type head struct {
		l  *lane
		it *item
	}
	var ready []head
	o.mu.Lock()
	free := cap(t.slots) - len(t.slots)
	for _, l := range ls.byKey {
		if len(ready) >= free {
			break
		}
		if !l.running && len(l.jobs) > 0 && !now.Before(l.due) {
			l.running = true
			ready = append(ready, head{l, l.jobs[0]})
		}
	}
	gen := ls.gen
	o.mu.Unlock()
	for _, h := range ready {
		l, it := h.l, h.it
		delay := time.Duration(0)
		if it.settle == nil {
			delay = w.reserveOne(ctx, st, &it.job)
		}
		if delay < 0 {
			w.finishOrdered(ls, l, it, gen, nil, now.Add(orderedRetry))
			continue
		}
		select {
		case t.slots <- struct{}{}:
		default:
			w.finishOrdered(ls, l, it, gen, nil, now)
			continue
		}
		o.inflight.Add(1)
		go func() {
			defer o.inflight.Done()
			defer func() { <-t.slots; o.poke() }()
			if delay > 0 {
				tm := time.NewTimer(delay)
				select {
				case <-tm.C:
				case <-ctx.Done():
					tm.Stop()
					w.finishOrdered(ls, l, it, gen, nil, time.Time{})
					return
				}
			}
			w.deliverOrdered(t, ls, l, it, gen)
		}()
	}
}

// reserveOne takes j's rate slot: the delay until it may go, or -1 when it
// may not go within maxRateWait.
func (w *Worker) reserveOne(ctx context.Context, st *state, j *queue.Job) time.Duration {
	jobs := []queue.Job{*j}
	if w.redisScope() {
		return w.reserveRedis(ctx, st, jobs)[0]
	}
	return w.reserveLocal(st, jobs)[0]
}

// finishOrdered records what became of a lane's head: done (delivered,
// dead-lettered or dropped) takes it off the lane; otherwise it stays the
// head, to start again at due.
func (w *Worker) finishOrdered(ls *lanes, l *lane, it *item, gen int, done *bool, due time.Time) {
	o := &w.ord
	o.mu.Lock()
	defer o.mu.Unlock()
	if gen != ls.gen || it.gen != gen {
		return // the lanes were dropped meanwhile
	}
	l.running = false
	if done == nil || !*done {
		l.due = due
		if d := due.Sub(w.now()); d > 0 {
			time.AfterFunc(d, o.poke) // start it when due, not at the next tick
		}
		return
	}
	l.jobs = l.jobs[1:]
	l.due = time.Time{}
	ls.held--
	if len(l.jobs) == 0 {
		delete(ls.byKey, l.key)
	}
}

// deliverOrdered makes one attempt of a lane's head and records its
// outcome in place. Like deliver, it does not stop at shutdown.
func (w *Worker) deliverOrdered(t *target, ls *lanes, l *lane, it *item, gen int) {
	ctx := context.Background()
	j := &it.job
	yes, no := true, false
	log := w.Log.With("tenant", w.id, "destination", j.Destination, "event_id", j.EventID, "ordered", true)
	if it.settle != nil {
		// The attempt was made; only its recording failed.
		if err := w.settleOrdered(ctx, t, it, *it.settle, j.Attempts, j.LastError); err != nil {
			log.Error("recording delivery outcome failed; retrying", "err", err)
			w.finishOrdered(ls, l, it, gen, &no, w.now().Add(time.Second))
			return
		}
		w.finishOrdered(ls, l, it, gen, &yes, time.Time{})
		return
	}
	if t.cfg.DropStaleStatus && it.rank > 0 && it.msg != "" {
		dropped, err := w.Store.DropStale(ctx, j, it.msg, it.rank)
		if err != nil {
			log.Warn("checking for a stale status failed; retrying", "err", err)
			w.finishOrdered(ls, l, it, gen, &no, w.now().Add(time.Second))
			return
		}
		if dropped {
			log.Info("stale status dropped: not above the last status delivered for its message",
				"message_id", it.msg, "status_rank", it.rank)
			w.finishOrdered(ls, l, it, gen, &yes, time.Time{})
			return
		}
	}
	done, err := t.breaker.Allow()
	if err != nil {
		w.finishOrdered(ls, l, it, gen, &no, w.now().Add(orderedRetry)) // no attempt made
		return
	}
	attempt, o, d, latency, now := w.attempt(ctx, t, j, done)
	level := slog.LevelInfo
	if o.Result != Delivered {
		level = slog.LevelWarn
	}
	log.Log(ctx, level, "delivery attempt", "attempt", attempt, "status", o.Status,
		"latency_ms", latency.Milliseconds(), "outcome", actionName(d.Action), "error", o.Err)
	if w.Observe != nil {
		w.Observe(j.Destination, j, o, d, latency)
	}
	serr := w.settleOrdered(ctx, t, it, d, attempt, o.Err)
	if d.Action == RetryLater {
		// Held in place: the next attempt of this head, after its backoff.
		j.Attempts, j.LastError = attempt, o.Err
		if serr != nil {
			log.Warn("recording the hold failed; it is kept here", "err", serr)
		}
		w.finishOrdered(ls, l, it, gen, &no, d.At)
		return
	}
	if serr != nil {
		log.Error("recording delivery outcome failed; retrying", "err", serr)
		j.Attempts, j.LastError = attempt, o.Err
		it.settle = &d
		w.finishOrdered(ls, l, it, gen, &no, now.Add(time.Second))
		return
	}
	w.finishOrdered(ls, l, it, gen, &yes, time.Time{})
}

// settleOrdered records decision d of the attempt-th attempt of a lane's
// head in Redis.
func (w *Worker) settleOrdered(ctx context.Context, t *target, it *item, d Decision, attempt int, lastErr string) error {
	j := &it.job
	switch d.Action {
	case Ack:
		return w.Store.Settle(ctx, j, rankOf(t, it.msg, it.rank))
	case RetryLater:
		return w.Store.Hold(ctx, j, attempt, d.At, lastErr)
	default:
		return w.Store.BuryHeld(ctx, j, attempt, lastErr, w.now())
	}
}

// rankOf is what a delivered status records for drop_stale_status: its
// rank, remembered as long as a later status of the message may still be
// delivered (retry.max_age, at least a day). Nil when not needed.
func rankOf(t *target, msg string, rank int) *queue.Rank {
	if !t.cfg.DropStaleStatus || msg == "" || rank <= 0 {
		return nil
	}
	return &queue.Rank{MessageID: msg, Rank: rank, TTL: max(t.cfg.Retry.MaxAge.D(), 24*time.Hour)}
}

// statusOf reads a job's carrier message id and status rank (0 unless a
// status event).
func statusOf(j *queue.Job) (string, int) {
	var e struct {
		Type string `json:"type"`
		Data struct {
			MessageID string `json:"message_id"`
			Status    string `json:"status"`
		} `json:"data"`
	}
	if json.Unmarshal(j.Event, &e) != nil || e.Type != switchboard.TypeStatus {
		return "", 0
	}
	return e.Data.MessageID, switchboard.StatusRank(e.Data.Status)
}

// dropStale is deliver's drop_stale_status check for an unordered
// destination: it reports whether j was dropped as stale. (Attempts in
// parallel may race; ordered destinations check exactly.)
func (w *Worker) dropStale(t *target, j *queue.Job) bool {
	if !t.cfg.DropStaleStatus {
		return false
	}
	msg, rank := statusOf(j)
	if msg == "" || rank <= 0 {
		return false
	}
	dropped, err := w.Store.DropStale(context.Background(), j, msg, rank)
	if err != nil {
		w.Log.Warn("checking for a stale status failed; delivering it", "tenant", w.id,
			"destination", j.Destination, "event_id", j.EventID, "err", err)
		return false
	}
	if dropped {
		w.Log.Info("stale status dropped: not above the last status delivered for its message", "tenant", w.id,
			"destination", j.Destination, "event_id", j.EventID, "message_id", msg, "status_rank", rank)
	}
	return dropped
}

// ack is deliver's acknowledgement: for a drop_stale_status destination it
// also records the status's rank.
func (w *Worker) ack(ctx context.Context, t *target, j *queue.Job) error {
	if !t.cfg.DropStaleStatus {
		if w.Acker != nil {
			return w.Acker.Ack(ctx, j)
		}
		return w.Store.Ack(ctx, j)
	}
	msg, rank := statusOf(j)
	return w.Store.Settle(ctx, j, rankOf(t, msg, rank))
}

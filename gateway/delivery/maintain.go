package delivery

import (
	"cmp"
	"context"
	"time"

	"github.com/switchboard-gw/switchboard/queue"
)

// promoteEvery is how often due retries are looked for at least. The
// worker also wakes when the earliest retry it knows of is due, and plans
// again when it schedules one, so its own retries leave on time; one that
// another instance scheduled is late by at most this much.
const promoteEvery = 250 * time.Millisecond

// visibilityMargin is added to twice the longest delivery timeout of a
// tenant to get the visibility timeout after which pending jobs (of a dead
// instance) are reclaimed: an attempt in flight, and the recording of its
// outcome, finish well within it, so a live attempt is never reclaimed.
const visibilityMargin = 5 * time.Second

// visibility returns the visibility timeout of the tenant in st.
func visibility(st *state) time.Duration {
	var longest time.Duration
	for _, t := range st.dests {
		longest = max(longest, t.cfg.Timeout.D())
	}
	return 2*longest + visibilityMargin
}

// pruneEvery is how often a worker removes its destinations' consumers
// that are gone (queue.PruneConsumers); consumerIdle how long a consumer
// holding no job must have been idle to go (at least). Each gateway
// process reads under a name of its own, so every restart leaves one.
const (
	pruneEvery   = 10 * time.Minute
	consumerIdle = time.Hour
)

// maintain promotes due retries, reclaims jobs left pending by a dead
// instance (or by this one, when recording an outcome failed) and now and
// then removes consumers that are gone.
func (w *Worker) maintain(ctx context.Context) {
	var lastReclaim, lastLeaseCheck time.Time
	var checked *state   // the configuration checkLeases last saw
	lastPrune := w.now() // not at start: a restart storm need not scan
	every := cmp.Or(w.promoteEvery, promoteEvery)
	timer := time.NewTimer(every)
	defer timer.Stop()
	var fails int
	for ctx.Err() == nil {
		now := w.now()
		// The configuration may have been reloaded: take it afresh.
		st := w.st.Load()
		vis := cmp.Or(w.visibility, visibility(st))
		reclaimEvery := min(max(vis/4, time.Second), 30*time.Second)
		n, next, err := w.Store.PromoteNext(ctx, w.id, now, 512)
		if now.Sub(lastLeaseCheck) >= leaseCheckEvery || st != checked {
			// at once after a reload: a changed destination is not read
			// until checked; whatever became of the promotion
			if lerr := w.checkLeases(ctx, st); lerr == nil {
				lastLeaseCheck, checked = now, st
			} else if err == nil {
				err = lerr
			}
		}
		if err == nil && now.Sub(lastReclaim) >= reclaimEvery {
			lastReclaim = now
			dests := make([]string, 0, len(st.dests))
			for id, t := range st.dests {
				// ordered ones are held in place by their lease holder
				// (ordered.go), here or elsewhere (checkLeases)
				if !t.cfg.Ordered && t.lease.Load() == leaseFree {
					dests = append(dests, id)
				}
			}
			var jobs []queue.Job
			jobs, err = w.Store.Reclaim(ctx, w.id, w.Consumer, dests, vis, 256)
			w.dispatch(ctx, st, w.waitDue(ctx, jobs, now), nil)
		}
		if err == nil && now.Sub(lastPrune) >= cmp.Or(w.pruneEvery, pruneEvery) {
			lastPrune = now
			all := make([]string, 0, len(st.dests))
			for id := range st.dests {
				all = append(all, id)
			}
			if n, perr := w.Store.PruneConsumers(ctx, w.id, all, w.Consumer, cmp.Or(w.pruneIdle, max(consumerIdle, 2*vis))); perr != nil {
				w.Log.Warn("removing idle consumers failed; tried again later", "tenant", w.id, "err", perr)
			} else if n > 0 {
				w.Log.Info("removed consumers that hold no job and were idle (gateway processes that are gone)", "tenant", w.id, "consumers", n)
			}
		}
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			fails++
			w.Log.Warn("retry promotion or reclaim failed; retrying", "tenant", w.id, "err", err)
			pause(ctx, fails)
			continue
		}
		fails = 0
		if n > 0 {
			w.Wake()
			continue
		}
		wait := every
		if !next.IsZero() {
			wait = min(wait, max(next.Sub(w.now()), time.Millisecond))
		}
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
		timer.Reset(wait)
		select {
		case <-ctx.Done():
		case <-timer.C:
		case <-w.retried:
		}
	}
}

// waitDue moves the reclaimed jobs whose next attempt is not due yet (held
// in place with a backoff by a destination that was ordered until a
// reload) to the retry set, due when they were, and returns the others.
// One that cannot be moved now stays pending, to be reclaimed again.
func (w *Worker) waitDue(ctx context.Context, jobs []queue.Job, now time.Time) []queue.Job {
	ready := jobs[:0]
	moved := false
	for _, j := range jobs {
		if !j.Due.After(now) {
			ready = append(ready, j)
			continue
		}
		id := j.ID
		if err := w.Store.Retry(ctx, &j, j.Attempts, j.Due, j.LastError); err != nil {
			w.Log.Warn("moving a reclaimed job to its retry failed; it is reclaimed again later", "tenant", w.id,
				"destination", j.Destination, "event_id", j.EventID, "err", err)
			continue
		}
		moved = true
		if err := w.Store.Unhold(ctx, w.id, j.Destination, id); err != nil {
			w.Log.Warn("removing a moved job's hold record failed; it is left unused", "tenant", w.id,
				"destination", j.Destination, "event_id", j.EventID, "err", err)
		}
	}
	if moved {
		select { // maintain promotes it when due, not at its next tick
		case w.retried <- struct{}{}:
		default:
		}
	}
	return ready
}

// leaseCheckEvery is how often a worker looks for ordered leases on the
// destinations its configuration says are unordered (checkLeases).
const leaseCheckEvery = time.Second

// checkLeases marks the destinations this worker's configuration says are
// unordered but that another instance delivers in order (it holds their
// lease): instances disagree while a reload reaches them one by one, and
// reading such a destination here would break its order. This worker
// neither reads nor reclaims them until the lease ends (the holder is
// reloaded too, or stops).
func (w *Worker) checkLeases(ctx context.Context, st *state) error {
	if st == nil {
		return nil
	}
	var dests []string
	for id, t := range st.dests {
		if !t.cfg.Ordered {
			dests = append(dests, id)
		}
	}
	leased, err := w.Store.Leased(ctx, w.id, dests, w.Consumer)
	if err != nil {
		return err
	}
	wake := false
	for _, id := range dests {
		t := st.dests[id]
		now := leaseFree
		if leased[id] {
			now = leaseElsewhere
		}
		was := t.lease.Swap(now)
		switch {
		case was == now:
		case now == leaseElsewhere:
			w.Log.Warn("another instance delivers this destination in order (it holds its lease) while this one's configuration says unordered: left to it until the lease ends; reload every instance",
				"tenant", w.id, "destination", id)
		case was == leaseElsewhere:
			w.Log.Info("the ordered lease on this destination ended: delivering it unordered, as this instance's configuration says",
				"tenant", w.id, "destination", id)
			wake = true
		default:
			wake = true // checked for the first time
		}
	}
	if wake {
		w.Wake()
	}
	return nil
}

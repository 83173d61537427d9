package delivery

import (
	"context"
	"slices"
	"time"

	"github.com/sony/gobreaker/v2"
	"golang.org/x/time/rate"

	"github.com/switchboard-gw/switchboard/policy"
	"github.com/switchboard-gw/switchboard/queue"
)

// maxRateWait bounds how long a job already read may wait for its rate
// slot. It stays far below the visibility timeout (at least 5s), so a job
// waiting is never reclaimed by another instance; a job that would wait
// longer goes back to its stream untouched.
const maxRateWait = 2 * time.Second

func (w *Worker) redisScope() bool { return w.RateScope == policy.RateScopeRedis }

// gates returns, per destination that may be read from, how many jobs to
// read: its free slots, no more than its rate allows, none while its breaker
// is open and only probes while half-open. Held jobs stay in Redis; no
// attempt is counted for them.
//
// Local scope asks this process's token buckets. Redis scope reads nothing
// for a destination (or tenant) until the time the Redis limiter last said
// its next send is allowed, and then at most a burst: dispatch reserves the
// slots of what was read.
func (w *Worker) gates(st *state) map[string]int {
	now := w.now()
	want := map[string]int{}
	redisScope := w.redisScope()
	tenantCap := -1
	if tr := st.tenant.DeliveryRate; !tr.Unlimited() {
		if redisScope {
			if now.UnixNano() < w.heldUntil.Load() {
				w.tenantRateHeld(st)
				return want
			}
			tenantCap = tr.Burst
		} else {
			tenantCap = int(st.limiter.TokensAt(now))
			if tenantCap < 1 {
				w.tenantRateHeld(st)
				return want
			}
		}
	}
	for id, t := range st.dests {
		n := cap(t.slots) - len(t.slots)
		if n <= 0 || t.cfg.Ordered || t.lease.Load() != leaseFree { // ordered: runOrdered (ordered.go), here or elsewhere
			continue
		}
		switch t.breaker.State() {
		case gobreaker.StateOpen:
			continue
		case gobreaker.StateHalfOpen:
			n = min(n, t.cfg.Breaker.Probes-len(t.slots))
		}
		free := n
		if r := t.cfg.Rate; !r.Unlimited() {
			if redisScope {
				if now.UnixNano() < t.heldUntil.Load() {
					w.noteRate(t, true)
					continue
				}
				n = min(n, r.Burst)
			} else {
				n = min(n, int(t.limiter.TokensAt(now)))
			}
		}
		if tenantCap >= 0 {
			n = min(n, tenantCap)
		}
		w.noteRate(t, free > 0 && n <= 0)
		if n > 0 {
			want[id] = n
		}
	}
	return want
}

// noteRate records that a rate limit holds t, unread, from now until the
// next read that includes it; that read reports the wait (noteRead) if it
// finds jobs: they were waiting. Only gates calls it, from Run's
// goroutine.
func (w *Worker) noteRate(t *target, held bool) {
	if held {
		t.rateHeld = true
	}
}

// noteRead reports to RateLimited, once per hold, the destinations a rate
// limit held (noteRate) whose first read after the hold found jobs, and
// ends their holds; it returns those reported. Only Run calls it, from its
// goroutine.
func (w *Worker) noteRead(st *state, want map[string]int, jobs []queue.Job) (reported map[string]bool) {
	for id := range want {
		t := st.dests[id]
		if t == nil || !t.rateHeld {
			continue
		}
		t.rateHeld = false
		if w.RateLimited != nil && slices.ContainsFunc(jobs, func(j queue.Job) bool { return j.Destination == id }) {
			w.RateLimited(id)
			if reported == nil {
				reported = map[string]bool{}
			}
			reported[id] = true
		}
	}
	return reported
}

// tenantRateHeld notes that the tenant's delivery_rate holds every
// destination that could otherwise be read.
func (w *Worker) tenantRateHeld(st *state) {
	for _, t := range st.dests {
		// only those gates could read: no other read would end the hold
		w.noteRate(t, len(t.slots) < cap(t.slots) && t.breaker.State() != gobreaker.StateOpen &&
			!t.cfg.Ordered && t.lease.Load() == leaseFree)
	}
}

// dispatch reserves each job's rate slot and starts it; a job whose slot is
// further than maxRateWait away, or whose destination is gone, goes back
// to its stream untouched. A destination whose jobs wait for their slots
// counts one wait (RateLimited), unless reported already (noteRead).
func (w *Worker) dispatch(ctx context.Context, st *state, jobs []queue.Job, reported map[string]bool) {
	if len(jobs) == 0 {
		return
	}
	var delays []time.Duration
	if w.redisScope() {
		delays = w.reserveRedis(ctx, st, jobs)
	} else {
		delays = w.reserveLocal(st, jobs)
	}
	if w.RateLimited != nil {
		waited := map[string]bool{} // once per destination and batch
		for i := range jobs {
			if d := jobs[i].Destination; delays[i] != 0 && st.dests[d] != nil && !waited[d] && !reported[d] {
				waited[d] = true
				w.RateLimited(d)
			}
		}
	}
	for i := range jobs {
		j := &jobs[i]
		t := st.dests[j.Destination]
		switch {
		case t == nil:
			w.release(j, "destination removed from the configuration")
		case delays[i] < 0:
			w.release(j, "rate limit")
		default:
			w.start(ctx, t, j, delays[i])
		}
	}
}

// reserveLocal takes each job's tokens from this process's buckets; -1:
// not granted.
func (w *Worker) reserveLocal(st *state, jobs []queue.Job) []time.Duration {
	now := w.now()
	delays := make([]time.Duration, len(jobs))
	for i := range jobs {
		t := st.dests[jobs[i].Destination]
		if t == nil {
			continue
		}
		var rs []*rate.Reservation
		var d time.Duration
		for _, l := range []*rate.Limiter{t.limiter, st.limiter} {
			if l == nil {
				continue
			}
			r := l.ReserveN(now, 1)
			rs = append(rs, r)
			d = max(d, r.DelayFrom(now))
		}
		if d > maxRateWait {
			for _, r := range rs {
				r.CancelAt(now)
			}
			d = -1
		}
		delays[i] = d
	}
	return delays
}

// reserveRedis reserves the jobs' slots in one ReserveRate call and notes
// when each limit next allows a send; -1: not granted.
func (w *Worker) reserveRedis(ctx context.Context, st *state, jobs []queue.Job) []time.Duration {
	delays := make([]time.Duration, len(jobs))
	tr := st.tenant.DeliveryRate
	var reqs []queue.RateRequest
	idx := map[string]int{} // destination -> index in reqs
	for i := range jobs {
		t := st.dests[jobs[i].Destination]
		if t == nil || (t.cfg.Rate.Unlimited() && tr.Unlimited()) {
			continue
		}
		k, ok := idx[t.id]
		if !ok {
			k = len(reqs)
			idx[t.id] = k
			reqs = append(reqs, queue.RateRequest{Dest: t.id, Rate: queue.Rate(t.cfg.Rate)})
		}
		reqs[k].N++
	}
	if len(reqs) == 0 {
		return delays
	}
	now := w.now()
	grants, tenantNext, err := w.Store.ReserveRate(ctx, w.id, queue.Rate(tr), reqs, maxRateWait)
	if err != nil {
		w.Log.Warn("rate reservation failed; jobs go back to their streams", "tenant", w.id, "err", err)
		for i := range jobs {
			if _, ok := idx[jobs[i].Destination]; ok {
				delays[i] = -1
			}
		}
		return delays
	}
	w.heldUntil.Store(now.Add(tenantNext).UnixNano())
	for k, r := range reqs {
		st.dests[r.Dest].heldUntil.Store(now.Add(grants[k].Next).UnixNano())
	}
	used := make([]int, len(reqs))
	for i := range jobs {
		k, ok := idx[jobs[i].Destination]
		if !ok {
			continue
		}
		if g := grants[k].Delays; used[k] < len(g) {
			delays[i] = g[used[k]]
			used[k]++
		} else {
			delays[i] = -1
		}
	}
	return delays
}

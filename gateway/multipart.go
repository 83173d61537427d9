package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	switchboard "github.com/switchboard-gw/switchboard"
	"github.com/switchboard-gw/switchboard/gateway/carrier"
	"github.com/switchboard-gw/switchboard/policy"
	"github.com/switchboard-gw/switchboard/queue"
)

// Multipart inbound messages (Vonage SMS's concat=true): the carrier calls
// once per part. Each part is stored in Redis (queue/multipart.go) before
// the carrier gets its 200 (while Redis is down a part gets 503 and the
// carrier retries it: parts are not spooled), and raw destinations get each
// callback as it comes, as the carrier sent it. The other destinations get
// one event: when the last part comes, its callback stores the whole
// message; when a part never comes, the sweeper stores what came once the
// source's reassembly_window has passed since the first part (text joined
// in part order, segments = the number of parts the carrier announced) and
// logs which parts were missing. Waiting parts outlive a reload that
// removes their source or turns joining off: the sweeper still stores them.

// eventRole is what the ingress does with an event of a callback.
type eventRole uint8

const (
	roleWhole  eventRole = iota // an event like any other
	rolePart                    // one part: only to raw destinations
	roleJoined                  // the parts made one: not to raw destinations
)

// multipart returns the source's carrier as a Multipart when the source
// joins parts.
func (s *source) multipart() (carrier.Multipart, bool) {
	if s.cfg.ReassemblyWindow <= 0 {
		return nil, false
	}
	mp, ok := s.carrier.(carrier.Multipart)
	return mp, ok
}

// partsKeep is how long a message's parts and its record of the parts
// already stored live: the dedup TTL (a carrier's retry of a part is a
// duplicate), and at least twice the window.
func partsKeep(rt *routing, window time.Duration) time.Duration {
	return max(rt.cfg.Dedup.TTL.D(), 2*window, time.Minute)
}

// partsLease bounds how long an instance may take to store a message's
// parts as one event before another may (queue.ClaimParts).
const partsLease = 30 * time.Second

// takePart stores event e, one part of a longer message, and returns the
// joined event and the parts it holds when the message is now whole (the
// caller holds their lease and calls finishParts once the event is
// stored). Should the waiting parts under the reference be another
// message's, those are stored first.
func (g *Gateway) takePart(ctx context.Context, rt *routing, tid string, s *source, e *switchboard.Event, part carrier.Part, now time.Time) (*switchboard.Event, *queue.Parts, error) {
	b := e.AppendJSON(nil)
	member := queue.PartsMember(s.cfg.ID + " " + part.Ref)
	add := func() (*queue.Parts, error) {
		p, _, err := g.store.AddPart(ctx, tid, member, part.Number, part.Total, e.Data.MessageID, b,
			now.Add(s.cfg.ReassemblyWindow.D()), partsLease, partsKeep(rt, s.cfg.ReassemblyWindow.D()))
		return p, err
	}
	p, err := add()
	if errors.Is(err, queue.ErrOtherMessage) {
		// The sender reused the reference while a message under it waits:
		// that message is stored now, with what came of it.
		if !g.storeParts(ctx, rt, tid, member) {
			return nil, nil, errors.New("the parts of an earlier message with this reference are being stored; try again")
		}
		p, err = add()
	}
	if err != nil || p == nil {
		return nil, nil, err
	}
	joined, err := joinParts(p)
	if err != nil {
		return nil, nil, err
	}
	return joined, p, nil
}

// joinParts makes one event of the stored parts: the first part's event
// with every part's text, in order.
func joinParts(p *queue.Parts) (*switchboard.Event, error) {
	var joined switchboard.Event
	var text strings.Builder
	for i, n := range p.Numbers() {
		var e switchboard.Event
		if err := json.Unmarshal(p.Events[n], &e); err != nil {
			return nil, fmt.Errorf("message part %d: %w", n, err)
		}
		if i == 0 {
			joined = e
		}
		text.WriteString(e.Data.Text)
	}
	joined.Data.Text = text.String()
	joined.Data.Segments = p.Total
	joined.ID, joined.Timestamp = "", switchboard.Time{}
	return &joined, nil
}

// partsDedupKey makes the event of these parts once, however many
// instances or retries store it.
func partsDedupKey(p *queue.Parts) string {
	var b strings.Builder
	b.WriteString("parts ")
	b.WriteString(p.Member)
	for _, n := range p.Numbers() {
		b.WriteString(" " + strconv.Itoa(n) + ":" + p.IDs[n])
	}
	return b.String()
}

// finishParts records that the joined event of p is stored and ends the
// lease. On failure the parts are due again when the lease ends and are
// stored again, a duplicate that dedup drops.
func (g *Gateway) finishParts(ctx context.Context, rt *routing, tid string, p *queue.Parts, window time.Duration, log *slog.Logger) {
	if err := g.store.FinishParts(ctx, tid, p, partsKeep(rt, window), g.now().Add(window)); err != nil {
		log.Warn("recording a multipart message as stored failed; it is stored again, and deduplicated, when due", "err", err.Error())
	}
}

// sweepParts stores, every second until ctx is done, the multipart
// messages whose window has passed with parts missing, in every tenant
// (a reload may have removed the source that took the parts).
func (g *Gateway) sweepParts(ctx context.Context) {
	every(ctx, time.Second, func() {
		rt := g.routing()
		for tid := range rt.tenants {
			due, err := g.store.DueParts(ctx, tid, g.now(), 64)
			if err != nil {
				if ctx.Err() == nil {
					g.log.Warn("reading due multipart messages failed", "tenant", tid, "err", err.Error())
				}
				continue
			}
			for _, member := range due {
				g.storeParts(ctx, rt, tid, member)
			}
		}
	})
}

// every calls fn every d until ctx ends.
func every(ctx context.Context, d time.Duration, fn func()) {
	tick := time.NewTicker(d)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			fn()
		}
	}
}

// storeParts stores the waiting parts under the reference named member as
// one event, routed to the tenant's destinations but the raw ones (they got
// each part). It reports false when another instance holds their lease.
func (g *Gateway) storeParts(ctx context.Context, rt *routing, tid, member string) bool {
	log := g.log.With("tenant", tid)
	t := rt.tenant(tid)
	p, ok, err := g.store.ClaimParts(ctx, tid, member, partsLease)
	if err != nil || !ok {
		if err != nil {
			log.Warn("claiming a multipart message failed", "err", err.Error())
		}
		return false
	}
	if len(p.Events) == 0 { // stored meanwhile
		g.finishParts(ctx, rt, tid, p, policy.DefaultReassemblyWindow, log)
		return true
	}
	joined, err := joinParts(p)
	if err != nil {
		log.Error("a multipart message's parts cannot be read; left in Redis", "err", err.Error())
		return false
	}
	log = log.With("source", joined.Source, "carrier", joined.Carrier)
	now := g.now()
	joined.ID = switchboard.NewEventID(now)
	joined.Timestamp = switchboard.NewTime(now)
	dests := withoutRaw(t, t.cfg.Route(joined), roleJoined)
	var ids []string
	if len(dests) == 0 {
		log.Info("no route takes this event; not stored", "event_id", joined.ID, "type", joined.Type)
		g.metrics.unrouted(tid, joined.Source)
	} else {
		entry := newEntry(tid, t, joined, dests, now, "")
		entry.DedupKey = partsDedupKey(p)
		fresh, _, err := g.persist(ctx, func() *slog.Logger { return log }, rt.cfg.Dedup.TTL.D(), "", 0, []*queue.Entry{entry})
		if err != nil {
			log.Warn("storing a multipart message failed; tried again when its lease ends", "err", err.Error())
			return false
		}
		if fresh[0] {
			ids = append(ids, joined.ID)
		}
		if g.wake != nil {
			g.wake(tid)
		}
		g.pulls.notify(tid)
	}
	window := policy.DefaultReassemblyWindow // the source's, if it still joins parts
	if s := t.sources[joined.Source]; s != nil && s.cfg.ReassemblyWindow > 0 {
		window = s.cfg.ReassemblyWindow.D()
	}
	g.finishParts(ctx, rt, tid, p, window, log)
	if len(ids) > 0 {
		g.metrics.joined(tid, joined.Source, p.Complete())
	}
	args := []any{"parts", partList(p.Numbers()), "total", p.Total, "delivered_before", partList(slices.Sorted(maps.Keys(p.Done))), "event_ids", ids}
	if p.Complete() {
		log.Info("multipart message stored", args...) // after a failure, or by another route
	} else {
		log.Warn("multipart message incomplete after reassembly_window: delivered the parts that came",
			append(args, "missing", missingParts(p))...)
	}
	return true
}

// missingParts lists the numbers of the parts that never came (the first
// 20 of them: the total is the carrier's word).
func missingParts(p *queue.Parts) string {
	var miss []int
	for n := 1; n <= p.Total && len(miss) < 20; n++ {
		if _, ok := p.Events[n]; !ok {
			if _, ok := p.Done[n]; !ok {
				miss = append(miss, n)
			}
		}
	}
	s := partList(miss)
	if len(miss) == 20 {
		s += ",…"
	}
	return s
}

func partList(ns []int) string {
	s := make([]string, len(ns))
	for i, n := range ns {
		s[i] = strconv.Itoa(n)
	}
	return strings.Join(s, ",")
}

// withoutRaw keeps the destinations an event of that role goes to: a part
// only to raw destinations (they get every callback), the joined message
// only to the others.
func withoutRaw(t *tenant, dests []string, role eventRole) []string {
	if role == roleWhole {
		return dests
	}
	kept := dests[:0:0]
	for _, d := range dests {
		if dest := t.cfg.Destinations[d]; (dest != nil && dest.Format == policy.FormatRaw) == (role == rolePart) {
			kept = append(kept, d)
		}
	}
	return kept
}

// newEntry is the queue entry of event e for dests.
func newEntry(tid string, t *tenant, e *switchboard.Event, dests []string, now time.Time, traceparent string) *queue.Entry {
	return &queue.Entry{
		Tenant:       tid,
		DedupKey:     e.DedupKey(),
		EventID:      e.ID,
		Event:        e.AppendJSON(nil),
		Destinations: dests,
		Now:          now,
		History:      t.cfg.History.Retention.D(),
		MessageID:    e.Data.MessageID,
		TraceParent:  traceparent,
	}
}

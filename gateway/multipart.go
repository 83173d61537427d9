package gateway

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	switchboard "github.com/switchboard-gw/switchboard"
	"github.com/switchboard-gw/switchboard/gateway/carrier"
	"github.com/switchboard-gw/switchboard/queue"
)

// Multipart inbound messages (Vonage SMS's concat=true): the carrier calls
// once per part. Each part is stored in Redis (queue/multipart.go) before
// the carrier gets its 200, and raw destinations get each callback as it
// comes, as the carrier sent it. The other destinations get one event: when
// the last part comes, its callback stores the whole message; when a part
// never comes, the sweeper stores what came once the source's
// reassembly_window has passed since the first part (text joined in part
// order, segments = the number of parts the carrier announced), and logs
// which parts were missing.

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
// already delivered live: the dedup TTL (a carrier's retry of a part is a
// duplicate), and at least twice the window.
func partsKeep(rt *routing, s *source) time.Duration {
	return max(rt.cfg.Dedup.TTL.D(), 2*s.cfg.ReassemblyWindow.D(), time.Minute)
}

// takePart stores event e, one part of a longer message, and returns the
// joined event and the parts it holds when the message is now whole.
func (g *Gateway) takePart(ctx context.Context, rt *routing, tid string, s *source, e *switchboard.Event, part carrier.Part, now time.Time) (*switchboard.Event, *queue.Parts, error) {
	b, err := json.Marshal(e)
	if err != nil {
		return nil, nil, err
	}
	member := queue.PartsMember(s.cfg.ID + " " + part.Ref)
	p, _, err := g.store.AddPart(ctx, tid, member, part.Number, part.Total, b, now.Add(s.cfg.ReassemblyWindow.D()), partsKeep(rt, s))
	if err != nil || !p.Complete() || len(p.Events) == 0 {
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

// partsDedupKey makes the event of these parts of that message once, however
// many instances or retries store it.
func partsDedupKey(p *queue.Parts) string {
	var b strings.Builder
	b.WriteString("parts ")
	b.WriteString(p.Member)
	for _, n := range p.Numbers() {
		b.WriteByte(' ')
		b.WriteString(strconv.Itoa(n))
	}
	return b.String()
}

// finishParts records that the joined event of p is stored. On failure the
// parts stay and the sweeper stores them again, a duplicate that dedup drops.
func (g *Gateway) finishParts(ctx context.Context, rt *routing, tid string, s *source, p *queue.Parts, log *slog.Logger) {
	keep, window := partsKeep(rt, s), s.cfg.ReassemblyWindow.D()
	if err := g.store.FinishParts(ctx, tid, p.Member, p.Numbers(), keep, g.now().Add(window)); err != nil {
		log.Warn("recording a multipart message as delivered failed; the sweeper retries", "err", err.Error())
	}
}

// sweepParts stores, every second until ctx is done, the multipart
// messages whose window has passed with parts missing.
func (g *Gateway) sweepParts(ctx context.Context) {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		rt := g.routing()
		for tid, t := range rt.tenants {
			if !t.joinsParts() {
				continue
			}
			due, err := g.store.DueParts(ctx, tid, g.now(), 64)
			if err != nil {
				if ctx.Err() == nil {
					g.log.Warn("reading due multipart messages failed", "tenant", tid, "err", err.Error())
				}
				continue
			}
			for _, member := range due {
				g.sweepMessage(ctx, rt, tid, t, member)
			}
		}
	}
}

// joinsParts reports whether a source of the tenant joins message parts.
func (t *tenant) joinsParts() bool {
	for _, s := range t.sources {
		if _, ok := s.multipart(); ok {
			return true
		}
	}
	return false
}

// sweepMessage stores the parts that came of one message as one event.
func (g *Gateway) sweepMessage(ctx context.Context, rt *routing, tid string, t *tenant, member string) {
	log := g.log.With("tenant", tid)
	p, err := g.store.ReadParts(ctx, tid, member)
	if err != nil {
		log.Warn("reading a multipart message failed", "err", err.Error())
		return
	}
	if len(p.Events) == 0 { // stored by a callback meanwhile
		_ = g.store.FinishParts(ctx, tid, member, nil, time.Minute, g.now())
		return
	}
	joined, err := joinParts(p)
	if err != nil {
		log.Error("a multipart message's parts cannot be read; left in Redis", "err", err.Error())
		return
	}
	s := t.sources[joined.Source]
	if s == nil {
		return // the source was removed; its parts expire
	}
	log = log.With("source", joined.Source, "carrier", joined.Carrier)
	now := g.now()
	joined.ID = switchboard.NewEventID(now)
	joined.Timestamp = switchboard.NewTime(now)
	dests := withoutRaw(s, t.cfg.Route(joined), roleJoined)
	var ids []string
	if len(dests) > 0 {
		entry, err := newEntry(tid, t, joined, dests, now, "")
		if err != nil {
			log.Error("cannot encode event", "err", err.Error())
			return
		}
		entry.DedupKey = partsDedupKey(p)
		fresh, _, err := g.persist(ctx, func() *slog.Logger { return log }, rt.cfg.Dedup.TTL.D(), "", 0, []*queue.Entry{entry})
		if err != nil {
			log.Warn("storing a multipart message failed; tried again in a second", "err", err.Error())
			return
		}
		if fresh[0] {
			ids = append(ids, joined.ID)
		}
		if g.wake != nil {
			g.wake(tid)
		}
		g.pulls.notify(tid)
	}
	g.finishParts(ctx, rt, tid, s, p, log)
	log.Warn("multipart message incomplete after reassembly_window: delivered the parts that came",
		"parts", partList(p.Numbers()), "total", p.Total, "delivered_before", partList(p.Done), "event_ids", ids)
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
func withoutRaw(s *source, dests []string, role eventRole) []string {
	if role == roleWhole {
		return dests
	}
	kept := dests[:0:0]
	for _, d := range dests {
		if s.rawFor[d] == (role == rolePart) {
			kept = append(kept, d)
		}
	}
	return kept
}

// newEntry is the queue entry of event e for dests.
func newEntry(tid string, t *tenant, e *switchboard.Event, dests []string, now time.Time, traceparent string) (*queue.Entry, error) {
	b, err := json.Marshal(e)
	if err != nil {
		return nil, err
	}
	return &queue.Entry{
		Tenant:       tid,
		DedupKey:     e.DedupKey(),
		EventID:      e.ID,
		Event:        b,
		Destinations: dests,
		Now:          now,
		History:      t.cfg.History.Retention.D(),
		MessageID:    e.Data.MessageID,
		TraceParent:  traceparent,
	}, nil
}

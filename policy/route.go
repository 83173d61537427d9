package policy

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"unicode/utf8"

	switchboard "github.com/switchboard-gw/switchboard"
)

// Route returns the destinations the tenant's routes send e to, each once,
// in route order. Routes are tried in order; the first whose conditions all
// hold takes the event and stops the search unless it says continue: true.
// A route without conditions matches everything. Nil means no route took it.
func (t *Tenant) Route(e *switchboard.Event) []string {
	var out []string
	var m eventMap
	for _, r := range t.Routes {
		if !r.matches(e, &m) {
			continue
		}
		for _, d := range r.To {
			if !slices.Contains(out, d) {
				out = append(out, d)
			}
		}
		if !r.Continue {
			break
		}
	}
	return out
}

// eventMap is the event as CEL sees it, built on first use: most routes
// have no when: and never need it.
type eventMap struct {
	m    map[string]any
	done bool
}

func (em *eventMap) get(e *switchboard.Event) map[string]any {
	if !em.done {
		em.m, em.done = EventMap(e), true
	}
	return em.m
}

// EventMap returns e as a when: expression sees it: the map its JSON
// decodes to (the same keys, omissions and text; whole numbers as int64),
// built directly (TestEventMapIsItsJSON holds the two equal).
func EventMap(e *switchboard.Event) map[string]any {
	d := &e.Data
	data := make(map[string]any, 8)
	str := func(k, v string) {
		if v != "" {
			data[k] = jsonText(v)
		}
	}
	str("message_id", d.MessageID)
	str("from", d.From)
	str("to", d.To)
	str("text", d.Text)
	if len(d.Media) > 0 {
		media := make([]any, len(d.Media))
		for i, m := range d.Media {
			mm := map[string]any{"url": jsonText(m.URL)}
			if m.ContentType != "" {
				mm["content_type"] = jsonText(m.ContentType)
			}
			media[i] = mm
		}
		data["media"] = media
	}
	if d.Segments != 0 {
		data["segments"] = int64(d.Segments)
	}
	str("status", d.Status)
	str("carrier_status", d.CarrierStatus)
	if d.Error != nil {
		em := map[string]any{}
		if d.Error.Code != "" {
			em["code"] = jsonText(d.Error.Code)
		}
		if d.Error.Message != "" {
			em["message"] = jsonText(d.Error.Message)
		}
		data["error"] = em
	}
	if d.OccurredAt != nil {
		data["occurred_at"] = d.OccurredAt.RFC3339()
	}
	return map[string]any{
		"id":        jsonText(e.ID),
		"type":      jsonText(e.Type),
		"timestamp": e.Timestamp.RFC3339(),
		"tenant":    jsonText(e.Tenant),
		"source":    jsonText(e.Source),
		"carrier":   jsonText(e.Carrier),
		"data":      data,
	}
}

// jsonText is s as it comes back from JSON: each byte of invalid UTF-8
// replaced by U+FFFD.
func jsonText(s string) string {
	if utf8.ValidString(s) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		b.WriteRune(r) // RuneError for an invalid byte
		i += size
	}
	return b.String()
}

func (r *Route) matches(e *switchboard.Event, em *eventMap) bool {
	if m := r.Match; m != nil {
		if !anyEqual(m.Types, e.Type) || !anyEqual(m.Carriers, e.Carrier) ||
			!anyEqual(m.Sources, e.Source) || !anyEqual(m.Statuses, e.Data.Status) ||
			!anyGlob(m.from, e.Data.From) || !anyGlob(m.to, e.Data.To) {
			return false
		}
		if m.text != nil && !m.text.MatchString(e.Data.Text) {
			return false
		}
	}
	if r.when != nil && !r.when.eval(em.get(e)) {
		return false
	}
	return true
}

// anyEqual: an empty list holds for every value.
func anyEqual(list []string, v string) bool {
	return len(list) == 0 || slices.Contains(list, v)
}

func anyGlob(list []glob, v string) bool {
	if len(list) == 0 {
		return true
	}
	for _, g := range list {
		if g.match(v) {
			return true
		}
	}
	return false
}

// glob matches a whole string; '*' matches any run of characters
// (including none), every other character only itself.
type glob struct {
	parts []string // the literal text between the stars
}

func compileGlob(s string) glob { return glob{parts: strings.Split(s, "*")} }

func (g glob) match(s string) bool {
	p := g.parts
	if len(p) == 1 {
		return s == p[0]
	}
	if !strings.HasPrefix(s, p[0]) {
		return false
	}
	s = s[len(p[0]):]
	last := p[len(p)-1]
	for _, mid := range p[1 : len(p)-1] {
		i := strings.Index(s, mid)
		if i < 0 {
			return false
		}
		s = s[i+len(mid):]
	}
	return len(s) >= len(last) && strings.HasSuffix(s, last)
}

// statuses is the normalized status vocabulary, for validating match.statuses.
var statuses = []string{
	switchboard.StatusAccepted, switchboard.StatusQueued, switchboard.StatusSent,
	switchboard.StatusDelivered, switchboard.StatusUndelivered, switchboard.StatusFailed,
	switchboard.StatusRead, switchboard.StatusUnknown,
}

// eventTypes are the types the gateway's events have: a route on another
// would never match, and the events it meant would go unrouted.
var eventTypes = []string{switchboard.TypeReceived, switchboard.TypeStatus}

// compileRoute validates a route's conditions and compiles its globs,
// regular expression and when: expression.
func (v *validator) compileRoute(p string, t *Tenant, r *Route) {
	if m := r.Match; m != nil {
		mp := p + ".match"
		for i, typ := range m.Types {
			if !slices.Contains(eventTypes, typ) {
				v.fail(fmt.Sprintf("%s.types[%d]", mp, i), "unknown event type %q (known: %s)", typ, strings.Join(eventTypes, ", "))
			}
		}
		for i, c := range m.Carriers {
			if _, ok := carrierKeys[c]; !ok {
				v.fail(fmt.Sprintf("%s.carriers[%d]", mp, i), "unknown carrier %q (known: %s)", c, strings.Join(sortedKeys(carrierKeys), ", "))
			}
		}
		for i, s := range m.Sources {
			if _, ok := t.Sources[s]; !ok {
				v.fail(fmt.Sprintf("%s.sources[%d]", mp, i), "source %q is not defined in tenant %s", s, t.ID)
			}
		}
		for i, s := range m.Statuses {
			if !slices.Contains(statuses, s) {
				v.fail(fmt.Sprintf("%s.statuses[%d]", mp, i), "%q is not a status (one of %s)", s, strings.Join(statuses, ", "))
			}
		}
		m.from = v.globs(mp+".from", m.From)
		m.to = v.globs(mp+".to", m.To)
		if m.Text != "" {
			re, err := regexp.Compile(m.Text)
			if err != nil {
				v.fail(mp+".text", "%q is not an RE2 regular expression: %s", m.Text, strings.TrimPrefix(err.Error(), "error parsing regexp: "))
			}
			m.text = re
		}
	}
	if r.When != "" || v.lines[p+".when"].line != 0 {
		prg, err := compileWhen(r.When)
		var we *whenError
		if errors.As(err, &we) && we.line > 0 && v.blocks[p+".when"].line > 0 {
			// "when: |": the problem's own line in the file.
			at := v.blocks[p+".when"]
			v.errs.add(at.file, at.line+we.line-1, p+".when", err.Error())
		} else if err != nil {
			v.fail(p+".when", "%s", err.Error())
		}
		r.when = prg
	}
}

func (v *validator) globs(p string, list []string) []glob {
	var out []glob
	for i, s := range list {
		if s == "" {
			v.fail(fmt.Sprintf("%s[%d]", p, i), "must not be empty (use \"*\" for any number)")
			continue
		}
		out = append(out, compileGlob(s))
	}
	return out
}

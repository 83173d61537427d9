package policy

import (
	"slices"

	switchboard "github.com/switchboard-gw/switchboard"
)

// Route returns the destinations the tenant's routes send e to, each once,
// in route order. Routes are tried in order; the first whose conditions all
// hold takes the event and stops the search unless it says continue: true.
// A route without conditions matches everything. Nil means no route took it.
func (t *Tenant) Route(e *switchboard.Event) []string {
	var out []string
	for _, r := range t.Routes {
		if !r.matches(e) {
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

func (r *Route) matches(e *switchboard.Event) bool {
	m := r.Match
	if m == nil {
		return true
	}
	if len(m.Types) > 0 && !slices.Contains(m.Types, e.Type) {
		return false
	}
	return true
}

package policy

import (
	"crypto/sha256"
	"crypto/subtle"
	"time"
)

// Destination types (destinations.*.type).
const (
	// TypePush destinations receive signed POSTs (the default).
	TypePush = "push"
	// TypePull destinations are polled by their app: GET /v1/pull/….
	TypePull = "pull"
)

// Order keys (destinations.*.order_key).
const (
	// OrderKeyConversation keeps FIFO order per conversation: the pair of
	// numbers (from, to), in either direction.
	OrderKeyConversation = "conversation"
)

// Limits of the pull API's settings.
const (
	// DefaultVisibilityTimeout is how long a pulled event may stay
	// unacknowledged before it is handed out again.
	DefaultVisibilityTimeout = 30 * time.Second
	// MaxVisibilityTimeout bounds visibility_timeout.
	MaxVisibilityTimeout = 12 * time.Hour
)

// Passthrough forwards a source's callbacks synchronously to one
// destination and returns that app's answer to the carrier.
type Passthrough struct {
	// Destination is the push destination that answers the carrier; it need
	// not be a route target.
	Destination string `yaml:"destination"`
	// Timeout bounds the app's answer (default: half the carrier's
	// deadline); it must stay below the carrier's deadline.
	Timeout Duration `yaml:"timeout"`
}

// CarrierDeadline is how long a carrier waits for the answer to a callback
// before it gives up (and retries): Telnyx 2s, Twilio 15s, others 10s.
func CarrierDeadline(carrier string) time.Duration {
	switch carrier {
	case "telnyx":
		return 2 * time.Second
	case "twilio":
		return 15 * time.Second
	}
	return 10 * time.Second
}

// IsPull reports whether the destination is polled by its app.
func (d *Destination) IsPull() bool { return d.Type == TypePull }

// TokenMatches reports, in constant time, whether token is the pull
// destination's bearer token. It is false for a destination without one.
func (d *Destination) TokenMatches(token string) bool {
	want := sha256.Sum256([]byte(d.Token))
	got := sha256.Sum256([]byte(token))
	return d.Token != "" && subtle.ConstantTimeCompare(want[:], got[:]) == 1
}

// pushOnly are the keys a pull destination does not take.
var pushOnly = []string{"url", "secret", "format", "twilio_account_sid", "twilio_auth_token",
	"timeout", "max_in_flight", "rate", "breaker", "ordered", "order_key", "drop_stale_status"}

// pullDestination validates a destination of type pull: a token, no push
// settings, and a visibility timeout.
func (v *validator) pullDestination(p string, d *Destination) {
	if d.Token == "" {
		v.fail(p+".token", "is required for type pull: the bearer token its app pulls with")
	} else if len(d.Token) < 16 {
		v.fail(p+".token", "is too short: use at least 16 random characters")
	}
	for _, k := range pushOnly {
		if _, ok := v.lines[p+"."+k]; ok {
			v.fail(p+"."+k, "is not used by type pull (its app fetches events from /v1/pull)")
		}
	}
	d.Format = FormatNormalized
	switch {
	case d.VisibilityTimeout == 0:
		d.VisibilityTimeout = Duration(DefaultVisibilityTimeout)
	case d.VisibilityTimeout < 0 || d.VisibilityTimeout.D() > MaxVisibilityTimeout:
		v.fail(p+".visibility_timeout", "must be positive and at most %s", MaxVisibilityTimeout)
	}
	if d.Retry.MaxAttempts < 1 {
		v.fail(p+".retry.max_attempts", "must be at least 1 (the first hand-out counts)")
	}
}

// pushDestination validates what a push destination adds to the common
// settings: its type, ordering, and no pull keys.
func (v *validator) pushDestination(p string, d *Destination) {
	switch d.Type {
	case "":
		d.Type = TypePush
	case TypePush:
	default:
		v.fail(p+".type", "%q is not one of push, pull", d.Type)
	}
	if d.Token != "" {
		v.fail(p+".token", "is only for type pull")
	}
	if d.VisibilityTimeout != 0 {
		v.fail(p+".visibility_timeout", "is only for type pull")
	}
	switch d.OrderKey {
	case "":
	case OrderKeyConversation:
		d.Ordered = true // a key to order by asks for ordering
	default:
		v.fail(p+".order_key", "%q is not a known order key (conversation)", d.OrderKey)
	}
}

// passthrough validates a source's passthrough: once every destination of
// the tenant is validated, so their types are known.
func (v *validator) passthrough(p string, t *Tenant, s *Source) {
	pt := s.Passthrough
	if pt == nil {
		return
	}
	p += ".passthrough"
	d, ok := t.Destinations[pt.Destination]
	switch {
	case pt.Destination == "":
		v.fail(p+".destination", "is required: the destination that answers the carrier")
	case !ok:
		v.fail(p+".destination", "destination %q is not defined in tenant %s", pt.Destination, t.ID)
	case d.IsPull():
		v.fail(p+".destination", "destination %q is type pull; pass-through needs a push destination", pt.Destination)
	case d.Ordered:
		v.fail(p+".destination", "destination %q is ordered; a synchronous answer cannot wait its turn", pt.Destination)
	}
	deadline := CarrierDeadline(s.Carrier)
	switch {
	case pt.Timeout == 0:
		pt.Timeout = Duration(deadline / 2)
	case pt.Timeout < 0:
		v.fail(p+".timeout", "must be positive")
	case pt.Timeout.D() >= deadline:
		v.fail(p+".timeout", "%s is not below %s's own deadline of %s: the carrier would give up before the app answers",
			pt.Timeout.D(), s.Carrier, deadline)
	}
}

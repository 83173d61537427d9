// Package carrier holds one file per messaging carrier: how its callbacks are
// verified, parsed into normalized events, and answered.
package carrier

import (
	"fmt"
	"net/http"
	"net/netip"
	"net/url"
	"sort"
	"time"

	switchboard "github.com/switchboard-gw/switchboard"
)

// Request is a carrier callback as the gateway received it. The body has
// been read once, capped, and is never re-serialized.
type Request struct {
	Method string
	// URL is the public URL the carrier called: scheme://host[:port]/path?query,
	// with the path and query exactly as sent (r.RequestURI), rebuilt from
	// server.public_base_url or trusted forwarding headers by the gateway.
	URL    string
	Header http.Header
	Body   []byte
	// RawQuery is the query string exactly as sent, without '?'.
	RawQuery string
	// Remote is the address the request came from: the peer, or behind
	// trusted proxies the client address they forwarded.
	Remote netip.Addr
	// Now is the time the request arrived.
	Now time.Time

	// The form or query parameters, parsed once (see params) from formSrc.
	parsed  bool
	formSrc string
	form    url.Values
	formErr error
}

// Proof is what a successful verification yields beyond "ok": replay ids
// (nonces, JWT ids) the gateway must remember for TTL, recorded only after
// the whole request verified.
type Proof struct {
	// Nonce, when not empty, must not have been seen before within TTL.
	Nonce string
	// Also is a second nonce the request carries (Plivo's V2 beside V3),
	// fresh and remembered like Nonce.
	Also string
	TTL  time.Duration
}

// Response is the answer the carrier expects.
type Response struct {
	Status      int
	ContentType string
	Body        []byte
}

// Carrier verifies, parses and answers one carrier's callbacks. Carriers are
// immutable after New and safe for concurrent use.
type Carrier interface {
	// Verify checks the request's authenticity. Errors wrap
	// switchboard.ErrBadSignature (401) or, for Vonage Messages' unsigned
	// callbacks, switchboard.ErrUnavailable (503).
	Verify(r *Request) (Proof, error)
	// Parse turns a verified request into events. The gateway fills ID,
	// Timestamp, Tenant, Source and Carrier; Parse fills Type and Data.
	// No events and no error means a callback with nothing to deliver
	// (e.g. a carrier event type we do not map): answer it with Reply.
	// Errors wrap switchboard.ErrBadPayload, except for an Amazon SNS
	// subscription handshake, where Parse returns a *SNSSubscription (see
	// there): not a failure but a request to confirm.
	Parse(r *Request) ([]switchboard.Event, error)
	// Reply is the acknowledgement the carrier expects once the events are
	// stored.
	Reply(r *Request, events []switchboard.Event) Response
}

// A Part is one part of an inbound message that the carrier delivers in
// parts (Vonage SMS's concatenated messages), each in its own callback.
type Part struct {
	// Ref is the same for every part of one message and differs between
	// messages: the sender, the recipient and the carrier's reference.
	Ref string
	// Number is this part's place, 1 to Total.
	Number, Total int
}

// Multipart is a carrier whose inbound messages may come in parts. Part
// reports whether a verified request is one part of a longer message.
type Multipart interface {
	Part(r *Request) (Part, bool)
}

// Config is a source's carrier settings, as the operator wrote them.
type Config struct {
	Carrier         string
	Secret          string
	SignatureMethod string
	PublicKey       string
	// PrivateKey is, for Simulate only, the key to sign with where the
	// scheme is asymmetric (telnyx: base64 of the 32-byte Ed25519 seed or
	// the 64-byte key). It is never read from a configuration.
	PrivateKey  string
	Username    string
	Password    string
	TopicARNs   []string
	AutoConfirm bool
	URLToken    string
	AllowedIPs  []netip.Prefix
	Header      string
	Algorithm   string
	Encoding    string
	Prefix      string
	// ReplayWindow bounds signed timestamps (default 5m).
	ReplayWindow time.Duration
	// HTTPClient is what aws-sns fetches signing certificates and confirms
	// subscriptions with; nil means a client with a 10 s timeout.
	HTTPClient *http.Client
}

var registry = map[string]func(Config) (Carrier, error){}

// register makes a carrier available to New; called from each carrier's init.
func register(name string, f func(Config) (Carrier, error)) { registry[name] = f }

// New builds the carrier named by cfg.Carrier.
func New(cfg Config) (Carrier, error) {
	f, ok := registry[cfg.Carrier]
	if !ok {
		return nil, fmt.Errorf("unknown carrier %q", cfg.Carrier)
	}
	if cfg.ReplayWindow == 0 {
		cfg.ReplayWindow = 5 * time.Minute
	}
	return f(cfg)
}

// Names lists the supported carriers, sorted.
func Names() []string {
	names := make([]string, 0, len(registry))
	for n := range registry {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

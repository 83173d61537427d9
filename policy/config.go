// Package policy is the operator's configuration: loading the YAML file,
// ${ENV} expansion, defaults and validation, and the compiled rules the
// gateway follows — routes, rate limits, breakers and retry backoff.
package policy

import (
	"regexp"
	"time"
)

// Config is a loaded, defaulted and validated configuration. It is not
// modified after Load returns.
type Config struct {
	Server     Server             `yaml:"server"`
	Redis      Redis              `yaml:"redis"`
	Delivery   Delivery           `yaml:"delivery"`
	Dedup      Dedup              `yaml:"dedup"`
	History    History            `yaml:"history"`
	Tracing    Tracing            `yaml:"tracing"`
	Spool      *Spool             `yaml:"spool"` // nil: no spool, see Spool
	TenantsDir string             `yaml:"tenants_dir"`
	Tenants    map[string]*Tenant `yaml:"tenants"`

	// File is the path Load read.
	File string `yaml:"-"`

	lines map[string]pos
}

// Server is the HTTP side of the gateway.
type Server struct {
	// Listen is the carrier-facing address (default ":8080").
	Listen string `yaml:"listen"`
	// AdminListen serves the admin API and /metrics (default "127.0.0.1:9090").
	AdminListen string `yaml:"admin_listen"`
	// AdminToken grants the admin API over every tenant; empty: none.
	AdminToken string `yaml:"admin_token" secret:"true"`
	// PublicBaseURL is the scheme://host[:port] prefix carriers call, used to
	// rebuild the signed URL behind proxies. Empty: taken from the request.
	PublicBaseURL string `yaml:"public_base_url"`
	// TrustedProxies are CIDRs whose X-Forwarded-Proto/Host are believed.
	TrustedProxies []string `yaml:"trusted_proxies"`
	// MaxBodyBytes caps a callback's body (default 1 MiB); larger gets 413.
	MaxBodyBytes int64 `yaml:"max_body_bytes"`
}

// Redis is where events are stored.
type Redis struct {
	// URL of the Redis server; empty starts the embedded, non-durable store.
	URL string `yaml:"url" secret:"true"`
	// GroupCommitWindow is how long a callback's enqueue waits to share
	// one Redis round trip with concurrent callbacks (default 100µs; 0s
	// sends each on its own).
	GroupCommitWindow Duration `yaml:"group_commit_window"`
}

// Delivery holds the settings every destination inherits; a destination may
// override each of them.
type Delivery struct {
	// AllowPrivateNetworks permits deliveries to loopback, private,
	// link-local and metadata addresses (default false: refused at dial).
	AllowPrivateNetworks bool `yaml:"allow_private_networks"`
	// RateScope says where rate limits (destination rate, tenant
	// delivery_rate) are kept: RateScopeRedis (default) makes them hold in
	// total across every gateway instance sharing the Redis; RateScopeLocal
	// keeps them in each process, so N instances allow N times the rate.
	RateScope           string `yaml:"rate_scope"`
	DestinationSettings `yaml:",inline"`
}

// Rate scopes (delivery.rate_scope).
const (
	RateScopeRedis = "redis"
	RateScopeLocal = "local"
)

// DestinationSettings are the delivery settings a destination inherits from
// delivery: and may override.
type DestinationSettings struct {
	// Timeout bounds one delivery attempt (default 10s).
	Timeout Duration `yaml:"timeout"`
	// MaxInFlight caps concurrent attempts per destination (default 16).
	MaxInFlight int     `yaml:"max_in_flight"`
	Retry       Retry   `yaml:"retry"`
	Rate        Rate    `yaml:"rate"`
	Breaker     Breaker `yaml:"breaker"`
}

// Retry is the backoff policy: the n-th retry waits a random time in
// [d/2, d], d = min(Max, Initial·2^(n−1)).
type Retry struct {
	Initial Duration `yaml:"initial"`
	Max     Duration `yaml:"max"`
	// MaxAttempts counts every attempt, the first included.
	MaxAttempts int `yaml:"max_attempts"`
	// MaxAge dead-letters a job this long after its event arrived.
	MaxAge Duration `yaml:"max_age"`
}

// Rate is a token bucket; PerSecond 0 means unlimited.
type Rate struct {
	PerSecond float64 `yaml:"per_second"`
	Burst     int     `yaml:"burst"`
}

// Unlimited reports whether the rate imposes no limit.
func (r Rate) Unlimited() bool { return r.PerSecond <= 0 }

// Breaker configures a destination's circuit breaker.
type Breaker struct {
	FailureRatio float64  `yaml:"failure_ratio"`
	MinRequests  int      `yaml:"min_requests"`
	OpenFor      Duration `yaml:"open_for"`
	Interval     Duration `yaml:"interval"`
	Probes       int      `yaml:"probes"`
}

// Dedup configures how long carrier retries are remembered.
type Dedup struct {
	TTL Duration `yaml:"ttl"`
}

// Tracing configures OpenTelemetry traces: a span per callback and per
// delivery attempt, exported over OTLP/HTTP. Off unless OTLPEndpoint is set.
type Tracing struct {
	// OTLPEndpoint is the collector's OTLP/HTTP URL, e.g.
	// http://otel-collector:4318 (spans go to its /v1/traces); empty: off.
	OTLPEndpoint string `yaml:"otlp_endpoint"`
	// ServiceName is the service.name resource attribute (default "switchboard").
	ServiceName string `yaml:"service_name"`
	// SampleRatio is the share of new traces kept, 0 < ratio <= 1 (default 1).
	SampleRatio float64 `yaml:"sample_ratio"`
}

// Spool is the local journal of callbacks accepted while Redis is
// unreachable: each is appended with fsync before the carrier gets its 2xx,
// and drained into Redis, in order, once Redis answers again.
type Spool struct {
	// Dir holds the journal (created if missing, mode 0700); a relative
	// path is relative to the configuration file's directory. Required.
	Dir string `yaml:"dir"`
	// MaxBytes caps the journal's size in bytes (default 64 MiB); a
	// callback that would exceed it gets 503, as without a spool.
	MaxBytes int64 `yaml:"max_bytes"`
}

// DefaultSpoolMaxBytes is spool.max_bytes when it is not set.
const DefaultSpoolMaxBytes = 64 << 20

// History configures how long delivered events are kept for lookup and
// recovery (default 72h; 0s keeps none, saving Redis memory and work).
type History struct {
	Retention Duration `yaml:"retention"`
}

// Tenant is one customer of the gateway: its carrier sources, its
// destinations and the routes between them.
type Tenant struct {
	ID           string                  `yaml:"-"`
	AdminToken   string                  `yaml:"admin_token" secret:"true"`
	IngressRate  Rate                    `yaml:"ingress_rate"`
	DeliveryRate Rate                    `yaml:"delivery_rate"`
	History      History                 `yaml:"history"`
	Sources      map[string]*Source      `yaml:"sources"`
	Destinations map[string]*Destination `yaml:"destinations"`
	Routes       []*Route                `yaml:"routes"`

	// File is where the tenant was defined.
	File string `yaml:"-"`
}

// Source is one carrier account calling POST /hooks/{tenant}/{source}.
type Source struct {
	ID              string   `yaml:"-"`
	Carrier         string   `yaml:"carrier"`
	Secret          string   `yaml:"secret" secret:"true"`
	SignatureMethod string   `yaml:"signature_method"`
	PublicKey       string   `yaml:"public_key"`
	Username        string   `yaml:"username"`
	Password        string   `yaml:"password" secret:"true"`
	TopicARNs       []string `yaml:"topic_arns"`
	AutoConfirm     bool     `yaml:"auto_confirm"`
	URLToken        string   `yaml:"url_token" secret:"true"`
	AllowedIPs      []string `yaml:"allowed_ips"`
	Header          string   `yaml:"header"`
	Algorithm       string   `yaml:"algorithm"`
	Encoding        string   `yaml:"encoding"`
	Prefix          string   `yaml:"prefix"`
	ReplayWindow    Duration `yaml:"replay_window"`
	// ReassemblyWindow is how long the parts of a multipart inbound
	// message wait for the others (vonage-sms, default 1m; 0s: each part
	// is its own event). Then what came is delivered as one event.
	ReassemblyWindow Duration `yaml:"reassembly_window"`
	// Passthrough, when set, forwards each callback synchronously to one
	// destination and gives the carrier that app's answer (legacy.go).
	Passthrough *Passthrough `yaml:"passthrough"`
}

// Formats a destination may receive.
const (
	FormatNormalized = "normalized"
	FormatRaw        = "raw"
	FormatTwilio     = "twilio"
)

// Destination is one application endpoint of a tenant.
type Destination struct {
	ID  string `yaml:"-"`
	URL string `yaml:"url"`
	// Secret holds the whsec_… signing secrets; several allow rotation.
	Secret StringList `yaml:"secret" secret:"true"`
	// Format is normalized (default), raw or twilio.
	Format           string `yaml:"format"`
	TwilioAccountSID string `yaml:"twilio_account_sid"`
	TwilioAuthToken  string `yaml:"twilio_auth_token" secret:"true"`

	// Type is push (default: Switchboard POSTs) or pull (the app fetches
	// its events from /v1/pull with Token; no URL or secret).
	Type  string `yaml:"type"`
	Token string `yaml:"token" secret:"true"`
	// VisibilityTimeout is how long a pulled event may stay unacknowledged
	// before it is handed out again (pull only; default 30s).
	VisibilityTimeout Duration `yaml:"visibility_timeout"`
	// Ordered delivers one event at a time, in arrival order: a failing
	// event is retried in place and holds back those behind it.
	Ordered bool `yaml:"ordered"`
	// OrderKey narrows the order: "conversation" keeps FIFO per pair of
	// numbers while different conversations proceed in parallel. It
	// implies Ordered.
	OrderKey string `yaml:"order_key"`
	// DropStaleStatus skips a status event whose rank is not above the
	// last status delivered for that message (switchboard.StatusRank).
	DropStaleStatus bool `yaml:"drop_stale_status"`

	DestinationSettings `yaml:",inline"`
}

// Route sends matching events to destinations.
type Route struct {
	Match *Match `yaml:"match"`
	// When is a CEL expression over event (the normalized event as a map),
	// e.g. event.data.text.contains("vip"). It is compiled by Load; at run
	// time a missing key (or any evaluation error) makes it false.
	When string   `yaml:"when"`
	To   []string `yaml:"to"`
	// Continue lets later routes also take an event this route took.
	Continue bool `yaml:"continue"`

	// Line is where the route starts in its file.
	Line int    `yaml:"-"`
	File string `yaml:"-"`

	when *program // compiled When; nil when empty
}

// Match holds a route's conditions; every non-empty one must hold, and
// within a list any one entry may match.
type Match struct {
	Types    []string `yaml:"types"`
	Carriers []string `yaml:"carriers"`
	Sources  []string `yaml:"sources"`
	Statuses []string `yaml:"statuses"`
	// From and To are globs over the whole E.164 number: '*' matches any
	// run of characters, everything else itself ("+447*").
	From []string `yaml:"from"`
	To   []string `yaml:"to"`
	// Text is an RE2 regular expression searched in data.text, unanchored
	// ("stop" matches "please stop"; write "^stop$" to anchor).
	Text string `yaml:"text"`

	from, to []glob
	text     *regexp.Regexp
}

// Duration is a time.Duration written as a Go duration ("250ms", "2h").
type Duration time.Duration

// D returns the duration as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// StringList is a YAML string or list of strings.
type StringList []string

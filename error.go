package switchboard

import "errors"

// Sentinel errors. Adapters wrap them with %w and lower-case context
// ("verify twilio: %w"); each edge maps them to its own answer.
var (
	// ErrUnknownTenant: no such tenant or source (HTTP 404).
	ErrUnknownTenant = errors.New("unknown tenant or source")
	// ErrBadSignature: the callback's signature is missing, wrong, stale or
	// replayed (HTTP 401).
	ErrBadSignature = errors.New("bad signature")
	// ErrBadPayload: the callback verified but cannot be understood (HTTP 400).
	ErrBadPayload = errors.New("bad payload")
	// ErrTooLarge: the body is over server.max_body_bytes (HTTP 413).
	ErrTooLarge = errors.New("body too large")
	// ErrUnavailable: the store cannot be reached; try again (HTTP 503).
	ErrUnavailable = errors.New("store unavailable")
)

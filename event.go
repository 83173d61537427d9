// Package switchboard holds the domain of the gateway: the normalized Event
// that every carrier callback becomes, its types and status vocabulary, and
// the few sentinel errors the adapters wrap. It imports only the standard
// library and the ULID generator.
package switchboard

import (
	"crypto/rand"
	"encoding/json"
	"strings"
	"sync"
	"time"

	"github.com/oklog/ulid/v2"
)

// Event types. Receivers must ignore types they do not know.
const (
	TypeReceived = "message.received" // an inbound SMS/MMS
	TypeStatus   = "message.status"   // a delivery report
)

// The normalized status vocabulary (data.status). The carrier's own word is
// kept in data.carrier_status.
const (
	StatusAccepted    = "accepted"
	StatusQueued      = "queued"
	StatusSent        = "sent"
	StatusDelivered   = "delivered"
	StatusUndelivered = "undelivered"
	StatusFailed      = "failed"
	StatusRead        = "read"
	StatusUnknown     = "unknown"
)

// StatusRank orders statuses forward in time: accepted 1, queued 2, sent 3,
// delivered/undelivered/failed 4, read 5. Unknown statuses rank 0.
func StatusRank(status string) int {
	switch status {
	case StatusAccepted:
		return 1
	case StatusQueued:
		return 2
	case StatusSent:
		return 3
	case StatusDelivered, StatusUndelivered, StatusFailed:
		return 4
	case StatusRead:
		return 5
	}
	return 0
}

// Event is the normalized event delivered to applications. Its JSON field
// names are stable API.
type Event struct {
	ID        string    `json:"id"`
	Type      string    `json:"type"`
	Timestamp Time      `json:"timestamp"`
	Tenant    string    `json:"tenant"`
	Source    string    `json:"source"`
	Carrier   string    `json:"carrier"`
	Data      EventData `json:"data"`
}

// EventData is the carrier-independent content of an event.
type EventData struct {
	MessageID     string  `json:"message_id,omitempty"`
	From          string  `json:"from,omitempty"`
	To            string  `json:"to,omitempty"`
	Text          string  `json:"text,omitempty"`
	Media         []Media `json:"media,omitempty"`
	Segments      int     `json:"segments,omitempty"`
	Status        string  `json:"status,omitempty"`
	CarrierStatus string  `json:"carrier_status,omitempty"`
	Error         *Error  `json:"error,omitempty"`
	OccurredAt    *Time   `json:"occurred_at,omitempty"`
}

// Media is one attachment of an MMS.
type Media struct {
	URL         string `json:"url"`
	ContentType string `json:"content_type,omitempty"`
}

// Error is the carrier's error for a failed or undelivered message.
type Error struct {
	Code    string `json:"code,omitempty"`
	Message string `json:"message,omitempty"`
}

// Raw is the carrier's callback as received, kept beside the event so that
// the raw format and replays can reproduce it byte for byte.
type Raw struct {
	Method      string            `json:"method"`
	ContentType string            `json:"content_type,omitempty"`
	Query       string            `json:"query,omitempty"`
	Body        []byte            `json:"body,omitempty"`
	Headers     map[string]string `json:"headers,omitempty"`
}

// DedupKey identifies a carrier's retry of the same callback: source, event
// type, carrier message id, recipient and status (empty for inbound). "sent"
// then "delivered" for one message are two keys; two recipients are two.
func (e *Event) DedupKey() string {
	status := e.Data.CarrierStatus
	if e.Type == TypeReceived {
		status = ""
	}
	return strings.Join([]string{e.Source, e.Type, e.Data.MessageID, e.Data.To, status}, "|")
}

// Time is a time.Time that marshals as RFC 3339 in UTC with milliseconds.
type Time struct{ time.Time }

// NewTime wraps t, truncated to milliseconds and in UTC.
func NewTime(t time.Time) Time { return Time{t.UTC().Truncate(time.Millisecond)} }

// TimePtr is NewTime returning a pointer, for optional fields.
func TimePtr(t time.Time) *Time { v := NewTime(t); return &v }

const timeLayout = "2006-01-02T15:04:05.000Z07:00"

// MarshalJSON writes the time as RFC 3339 in UTC, with milliseconds.
func (t Time) MarshalJSON() ([]byte, error) {
	return t.appendJSON(make([]byte, 0, len(timeLayout)+2)), nil
}

// RFC3339 is the time as its JSON holds it, unquoted.
func (t Time) RFC3339() string { return t.UTC().Format(timeLayout) }

// UnmarshalJSON accepts any RFC 3339 time.
func (t *Time) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	v, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return err
	}
	t.Time = v.UTC()
	return nil
}

var (
	idMu      sync.Mutex
	idEntropy = ulid.Monotonic(rand.Reader, 0)
)

// NewEventID returns a new sortable event id, "evt_" and a ULID.
func NewEventID(now time.Time) string {
	idMu.Lock()
	id, err := ulid.New(ulid.Timestamp(now), idEntropy)
	idMu.Unlock()
	if err != nil {
		// The monotonic reader overflows only after 2^80 ids in one
		// millisecond; fall back to fresh entropy.
		id = ulid.MustNew(ulid.Timestamp(now), rand.Reader)
	}
	return "evt_" + id.String()
}

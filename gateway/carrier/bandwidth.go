package carrier

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"time"

	switchboard "github.com/switchboard-gw/switchboard"
)

func init() { register("bandwidth", newBandwidth) }

// Bandwidth is Bandwidth's Messaging API v2: a JSON array of events POSTed
// to the Application's InboundCallbackUrl and OutboundCallbackUrl, with
// HTTP Basic credentials (InboundCallbackCreds / OutboundCallbackCreds) and
// no signature. Bandwidth waits 10 s for the answer.
//
// Config: Username and Password are the callback credentials set on the
// Application.
type Bandwidth struct {
	user, pass string
}

func newBandwidth(cfg Config) (Carrier, error) {
	if cfg.Username == "" || cfg.Password == "" {
		return nil, errors.New("bandwidth: username and password (the Application's callback credentials) are required")
	}
	return &Bandwidth{user: cfg.Username, pass: cfg.Password}, nil
}

// Verify checks Authorization: Basic in constant time. Nothing is signed
// or timestamped: use HTTPS, and an IP allow-list in front if you can.
func (c *Bandwidth) Verify(r *Request) (Proof, error) {
	return Proof{}, checkBasic("bandwidth", r.Header, c.user, c.pass)
}

type bandwidthEvent struct {
	Type        string     `json:"type"`
	Time        string     `json:"time"`
	Description string     `json:"description"`
	To          string     `json:"to"`
	ErrorCode   flexString `json:"errorCode"`
	Message     struct {
		ID           string   `json:"id"`
		From         string   `json:"from"`
		To           []string `json:"to"`
		Text         string   `json:"text"`
		Media        []string `json:"media"`
		SegmentCount int      `json:"segmentCount"`
	} `json:"message"`
}

// bandwidthStatus maps Bandwidth's event types of delivery reports.
var bandwidthStatus = map[string]string{
	"message-sending":   switchboard.StatusQueued,
	"message-sent":      switchboard.StatusSent,
	"message-delivered": switchboard.StatusDelivered,
	"message-failed":    switchboard.StatusFailed,
	"message-read":      switchboard.StatusRead,
}

// Parse turns each element of the array into an event: message-received is
// inbound, the other message-* types are delivery reports (for the
// recipient in the element's "to"). RBM responses (suggestion-response,
// requested-location-response) and other types yield no event.
func (c *Bandwidth) Parse(r *Request) ([]switchboard.Event, error) {
	var in []bandwidthEvent
	if err := json.Unmarshal(r.Body, &in); err != nil {
		return nil, badPayload("bandwidth", "body is not a JSON array of Bandwidth events: %v", err)
	}
	if in == nil { // null; an empty array is an empty batch
		return nil, badPayload("bandwidth", "body is null, not an array of Bandwidth events")
	}
	events := make([]switchboard.Event, 0, len(in))
	for i, b := range in {
		if b.Type == "" {
			return nil, badPayload("bandwidth", "event %d without type", i)
		}
		if !strings.HasPrefix(b.Type, "message-") {
			continue
		}
		if b.Message.ID == "" {
			return nil, badPayload("bandwidth", "event %d (%s) without message.id", i, b.Type)
		}
		to := b.To
		if to == "" && len(b.Message.To) > 0 {
			to = b.Message.To[0]
		}
		d := switchboard.EventData{
			MessageID: b.Message.ID, From: E164(b.Message.From), To: E164(to),
			Segments: b.Message.SegmentCount, OccurredAt: parseTimePtr(b.Time),
		}
		if b.Type == "message-received" {
			d.Text = b.Message.Text
			for _, u := range b.Message.Media {
				d.Media = append(d.Media, switchboard.Media{URL: u})
			}
			events = append(events, switchboard.Event{Type: switchboard.TypeReceived, Data: d})
			continue
		}
		d.Status = mapStatus(bandwidthStatus, b.Type)
		d.CarrierStatus = b.Type
		if code := string(b.ErrorCode); code != "" && code != "0" {
			d.Error = &switchboard.Error{Code: code, Message: b.Description}
		}
		events = append(events, switchboard.Event{Type: switchboard.TypeStatus, Data: d})
	}
	return events, nil
}

// Reply is an empty 200, which Bandwidth must have within 10 s.
func (c *Bandwidth) Reply(*Request, []switchboard.Event) Response { return replyOK() }

// bandwidthWord is the event type Bandwidth would send for a status.
var bandwidthWord = map[string]string{
	switchboard.StatusAccepted:    "message-sending",
	switchboard.StatusQueued:      "message-sending",
	switchboard.StatusSent:        "message-sent",
	switchboard.StatusDelivered:   "message-delivered",
	switchboard.StatusUndelivered: "message-failed",
	switchboard.StatusFailed:      "message-failed",
	switchboard.StatusRead:        "message-read",
}

func (c *Bandwidth) simulate(kind string, m SimMessage, target string, now time.Time) (*http.Request, error) {
	at := now.UTC().Format("2006-01-02T15:04:05.000Z")
	msg := map[string]any{
		"id": orDefault(m.MessageID, randomHex(15)), "owner": m.To, "applicationId": randomUUID(),
		"time": at, "segmentCount": 1, "to": []string{m.To}, "from": m.From,
	}
	ev := map[string]any{"time": at, "to": m.To, "message": msg}
	if kind == simInbound {
		ev["type"], ev["description"] = "message-received", "Incoming message received"
		msg["direction"], msg["text"], msg["owner"] = "in", m.Text, m.To
	} else {
		word := carrierWord(bandwidthWord, m.Status)
		ev["type"], ev["description"] = word, "ok"
		msg["direction"], msg["text"], msg["owner"] = "out", "", m.From
		if word == "message-failed" {
			ev["description"], ev["errorCode"] = "rejected-unallocated-to-number", 4720
		}
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode([]any{ev}); err != nil {
		return nil, err
	}
	req, err := newSimRequest(http.MethodPost, target, bytes.TrimSuffix(buf.Bytes(), []byte("\n")))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json; charset=utf-8")
	req.SetBasicAuth(c.user, c.pass)
	return req, nil
}

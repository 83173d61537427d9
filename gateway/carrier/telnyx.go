package carrier

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	switchboard "github.com/switchboard-gw/switchboard"
)

func init() { register("telnyx", newTelnyx) }

// Telnyx is Telnyx Messaging v2: message.received, message.sent and
// message.finalized events, POSTed as JSON and signed with Ed25519 over
// "timestamp|body" (headers telnyx-signature-ed25519, telnyx-timestamp).
// Telnyx waits only 2 s for the answer.
//
// Config: PublicKey is the account's public key from the portal (base64 of
// 32 bytes); for Simulate, PrivateKey is the key to sign with (base64 of
// the 32-byte seed or the 64-byte key) and PublicKey may stay empty.
// ReplayWindow bounds telnyx-timestamp.
type Telnyx struct {
	pub    ed25519.PublicKey
	priv   ed25519.PrivateKey // for simulations only
	window time.Duration
}

func newTelnyx(cfg Config) (Carrier, error) {
	c := &Telnyx{window: cfg.ReplayWindow}
	if cfg.PrivateKey != "" {
		key, err := base64.StdEncoding.DecodeString(strings.TrimSpace(cfg.PrivateKey))
		if err != nil {
			return nil, errors.New("telnyx: the private key is not base64")
		}
		switch len(key) {
		case ed25519.SeedSize:
			c.priv = ed25519.NewKeyFromSeed(key)
		case ed25519.PrivateKeySize:
			c.priv = ed25519.PrivateKey(key)
		default:
			return nil, fmt.Errorf("telnyx: the private key is %d bytes, want the 32 of an Ed25519 seed or the 64 of a key", len(key))
		}
		c.pub = c.priv.Public().(ed25519.PublicKey)
		if cfg.PublicKey == "" {
			return c, nil
		}
	}
	key, err := base64.StdEncoding.DecodeString(strings.TrimSpace(cfg.PublicKey))
	if err != nil {
		return nil, errors.New("telnyx: public_key is not base64")
	}
	switch len(key) {
	case ed25519.PublicKeySize:
		c.pub = ed25519.PublicKey(key)
	case ed25519.PrivateKeySize:
		// A private key does not belong in a configuration that logs,
		// diffs and shares as public data.
		return nil, errors.New("telnyx: public_key is 64 bytes, an Ed25519 private key; configure the 32-byte public key from the Telnyx portal")
	default:
		return nil, fmt.Errorf("telnyx: public_key is %d bytes, want the 32 of an Ed25519 public key", len(key))
	}
	return c, nil
}

// Verify checks the Ed25519 signature of "timestamp|body" and that the
// timestamp is within the replay window. Telnyx signs no nonce; its data.id
// is dedup material for the gateway.
func (c *Telnyx) Verify(r *Request) (Proof, error) {
	sig64 := r.Header.Get("Telnyx-Signature-Ed25519")
	tsText := r.Header.Get("Telnyx-Timestamp")
	if sig64 == "" || tsText == "" {
		return Proof{}, badSignature("telnyx", "missing telnyx-signature-ed25519 or telnyx-timestamp header")
	}
	sig, err := strictBase64.DecodeString(sig64)
	if err != nil || len(sig) != ed25519.SignatureSize {
		return Proof{}, badSignature("telnyx", "telnyx-signature-ed25519 is not a base64 Ed25519 signature")
	}
	ts, ok := unixTime(tsText)
	if !ok {
		return Proof{}, badSignature("telnyx", "telnyx-timestamp is not Unix seconds")
	}
	msg := make([]byte, 0, len(tsText)+1+len(r.Body))
	msg = append(append(append(msg, tsText...), '|'), r.Body...)
	if !ed25519.Verify(c.pub, msg, sig) {
		return Proof{}, badSignature("telnyx", "signature does not verify with the configured public key")
	}
	return Proof{}, checkWindow("telnyx", "telnyx-timestamp", ts, now(r), c.window)
}

type telnyxAddress struct {
	PhoneNumber string `json:"phone_number"`
	Status      string `json:"status"`
}

type telnyxEnvelope struct {
	Data struct {
		EventType  string `json:"event_type"`
		ID         string `json:"id"`
		OccurredAt string `json:"occurred_at"`
		Payload    struct {
			ID    string          `json:"id"`
			From  telnyxAddress   `json:"from"`
			To    []telnyxAddress `json:"to"`
			Text  string          `json:"text"`
			Parts int             `json:"parts"`
			Media []struct {
				URL         string `json:"url"`
				ContentType string `json:"content_type"`
			} `json:"media"`
			Errors []struct {
				Code   flexString `json:"code"`
				Title  string     `json:"title"`
				Detail string     `json:"detail"`
			} `json:"errors"`
			CompletedAt string `json:"completed_at"`
		} `json:"payload"`
	} `json:"data"`
}

// telnyxStatus maps a recipient's status; "" means inbound bookkeeping,
// not a delivery report.
var telnyxStatus = map[string]string{
	"queued":               switchboard.StatusQueued,
	"sending":              switchboard.StatusQueued,
	"sent":                 switchboard.StatusSent,
	"delivered":            switchboard.StatusDelivered,
	"delivery_unconfirmed": switchboard.StatusSent,
	"delivery_failed":      switchboard.StatusUndelivered,
	"expired":              switchboard.StatusUndelivered,
	"sending_failed":       switchboard.StatusFailed,
	"webhook_delivered":    "",
	"received":             "",
}

// Parse reads message.received as one inbound event, and message.sent and
// message.finalized as one status event per recipient (payload.to[i], each
// with its own status). Other event types yield no events: they are
// acknowledged and not stored.
func (c *Telnyx) Parse(r *Request) ([]switchboard.Event, error) {
	var env telnyxEnvelope
	if err := json.Unmarshal(r.Body, &env); err != nil {
		return nil, badPayload("telnyx", "body is not a Telnyx webhook: %v", err)
	}
	d, p := env.Data, env.Data.Payload
	if d.EventType == "" {
		return nil, badPayload("telnyx", "body has no data.event_type")
	}
	if d.EventType != "message.received" && d.EventType != "message.sent" && d.EventType != "message.finalized" {
		return nil, nil
	}
	if p.ID == "" {
		return nil, badPayload("telnyx", "%s without data.payload.id", d.EventType)
	}
	occurred := parseTimePtr(orDefault(d.OccurredAt, p.CompletedAt))
	if d.EventType == "message.received" {
		e := switchboard.EventData{MessageID: p.ID, From: E164(p.From.PhoneNumber), Text: p.Text, Segments: p.Parts, OccurredAt: occurred}
		if len(p.To) > 0 {
			e.To = E164(p.To[0].PhoneNumber)
		}
		for _, m := range p.Media {
			if m.URL != "" {
				e.Media = append(e.Media, switchboard.Media{URL: m.URL, ContentType: m.ContentType})
			}
		}
		return []switchboard.Event{{Type: switchboard.TypeReceived, Data: e}}, nil
	}
	var failure *switchboard.Error
	if len(p.Errors) > 0 {
		e := p.Errors[0]
		failure = &switchboard.Error{Code: string(e.Code), Message: orDefault(e.Detail, e.Title)}
	}
	var events []switchboard.Event
	bookkeeping := 0
	for _, to := range p.To {
		if to.Status == "" {
			continue // no status to report (a null or empty recipient)
		}
		status, ok := telnyxStatus[to.Status]
		if ok && status == "" {
			bookkeeping++
			continue
		}
		if !ok {
			status = switchboard.StatusUnknown
		}
		e := switchboard.EventData{
			MessageID: p.ID, From: E164(p.From.PhoneNumber), To: E164(to.PhoneNumber), Segments: p.Parts,
			Status: status, CarrierStatus: to.Status, OccurredAt: occurred,
		}
		// The errors are the message's; a recipient it reached has none
		// (recipients of one message can finalize differently).
		e.Error = failureOnly(status, failure)
		events = append(events, switchboard.Event{Type: switchboard.TypeStatus, Data: e})
	}
	if len(events) == 0 && bookkeeping == 0 {
		return nil, badPayload("telnyx", "%s without recipients", d.EventType)
	}
	return events, nil // none: only bookkeeping recipients, nothing to report
}

// failureOnly is err for a status that may carry one (failed,
// undelivered, unknown), nil for one that reports progress: a carrier's
// reason text on a delivered message is no error.
func failureOnly(status string, err *switchboard.Error) *switchboard.Error {
	switch status {
	case switchboard.StatusDelivered, switchboard.StatusSent, switchboard.StatusQueued,
		switchboard.StatusAccepted, switchboard.StatusRead:
		return nil
	}
	return err
}

// parseTimePtr reads an RFC 3339 time, nil when absent or malformed.
func parseTimePtr(s string) *switchboard.Time {
	return parseTimeIn(s, time.RFC3339Nano)
}

// parseTimeIn reads s in the first of layouts that fits, nil if none does.
// A time from a URL query whose zone's '+' was left unencoded (decoded
// as a space: "2025-01-15T10:31:05 00:00") is read with its '+' back.
func parseTimeIn(s string, layouts ...string) *switchboard.Time {
	if s == "" {
		return nil
	}
	for _, v := range []string{s, plusBack(s)} {
		for _, l := range layouts {
			if t, err := time.Parse(l, v); err == nil {
				return switchboard.TimePtr(t)
			}
		}
		if v == plusBack(v) {
			break
		}
	}
	return nil
}

// plusBack turns a space before a trailing zone offset ("… 00:00") back
// into the '+' a form decoding made of it.
func plusBack(s string) string {
	i := strings.LastIndexByte(s, ' ')
	if i < 0 || i+5 > len(s) || !allDigits(s[i+1:i+3]) {
		return s
	}
	if z := s[i+1:]; len(z) == 5 && (z[2] == ':' && allDigits(z[3:]) || allDigits(z)) {
		return s[:i] + "+" + z
	}
	return s
}

// Reply is an empty 200, which Telnyx must have within 2 s.
func (c *Telnyx) Reply(*Request, []switchboard.Event) Response { return replyOK() }

// telnyxWord is the recipient status Telnyx would send for a normalized one.
var telnyxWord = map[string]string{
	switchboard.StatusAccepted:    "queued",
	switchboard.StatusUndelivered: "delivery_failed",
	switchboard.StatusFailed:      "sending_failed",
}

func (c *Telnyx) simulate(kind string, m SimMessage, target string, now time.Time) (*http.Request, error) {
	if c.priv == nil {
		return nil, errors.New("telnyx: signing a simulated callback needs the private key (Ed25519), not the public one")
	}
	id := orDefault(m.MessageID, randomUUID())
	at := now.UTC().Format("2006-01-02T15:04:05.000-07:00")
	payload := map[string]any{
		"id": id, "record_type": "message", "type": "SMS", "parts": 1, "encoding": "GSM-7",
		"from": map[string]string{"phone_number": m.From}, "media": []any{}, "errors": []any{}, "cc": []any{},
	}
	event := "message.received"
	if kind == simInbound {
		payload["direction"] = "inbound"
		payload["text"] = m.Text
		payload["received_at"] = at
		payload["to"] = []map[string]string{{"phone_number": m.To, "status": "webhook_delivered"}}
	} else {
		event = "message.finalized"
		word := carrierWord(telnyxWord, m.Status)
		payload["direction"] = "outbound"
		payload["completed_at"] = at
		payload["to"] = []map[string]string{{"phone_number": m.To, "status": word}}
		if s := telnyxStatus[word]; s == switchboard.StatusFailed || s == switchboard.StatusUndelivered {
			payload["errors"] = []map[string]string{{"code": "40002", "title": "Blocked as spam - temporary", "detail": "The message was blocked by the carrier."}}
		}
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	err := enc.Encode(map[string]any{"data": map[string]any{
		"event_type": event, "id": randomUUID(), "occurred_at": at, "record_type": "event", "payload": payload,
	}})
	if err != nil {
		return nil, err
	}
	body := bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
	ts := strconv.FormatInt(now.Unix(), 10)
	sig := ed25519.Sign(c.priv, append([]byte(ts+"|"), body...))
	req, err := newSimRequest(http.MethodPost, target, body)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Telnyx-Signature-Ed25519", base64.StdEncoding.EncodeToString(sig))
	req.Header.Set("Telnyx-Timestamp", ts)
	return req, nil
}

package carrier

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	switchboard "github.com/switchboard-gw/switchboard"
)

func init() { register("sinch", newSinch) }

// Sinch is the Sinch SMS REST API (xms): inbound messages (mo_text,
// mo_binary, mo_media) and delivery reports, POSTed as JSON, signed (when
// Sinch enabled HMAC for the service plan) with HMAC-SHA256 over
// "body.nonce.timestamp" in x-sinch-webhook-signature.
//
// Config: Secret is the service plan's webhook secret. ReplayWindow bounds
// x-sinch-webhook-signature-timestamp.
type Sinch struct {
	secret []byte
	window time.Duration
}

func newSinch(cfg Config) (Carrier, error) {
	if cfg.Secret == "" {
		return nil, errors.New("sinch: secret (the service plan's webhook secret) is required")
	}
	return &Sinch{secret: []byte(cfg.Secret), window: cfg.ReplayWindow}, nil
}

// Verify checks the signature, that the algorithm (when named) is
// HmacSHA256, and that the timestamp is within the replay window; the
// nonce is returned in Proof.
func (c *Sinch) Verify(r *Request) (Proof, error) {
	sig := r.Header.Get("X-Sinch-Webhook-Signature")
	nonce := r.Header.Get("X-Sinch-Webhook-Signature-Nonce")
	tsText := r.Header.Get("X-Sinch-Webhook-Signature-Timestamp")
	if sig == "" || nonce == "" || tsText == "" {
		return Proof{}, badSignature("sinch", "missing x-sinch-webhook-signature, -nonce or -timestamp header (is HMAC signing enabled for the service plan?)")
	}
	if alg := r.Header.Get("X-Sinch-Webhook-Signature-Algorithm"); alg != "" && !strings.EqualFold(alg, "HmacSHA256") {
		return Proof{}, badSignature("sinch", "signature algorithm %q is not HmacSHA256", alg)
	}
	ts, ok := unixTime(tsText)
	if !ok {
		return Proof{}, badSignature("sinch", "x-sinch-webhook-signature-timestamp is not Unix seconds")
	}
	if !equalBase64(sig, c.mac(r.Body, nonce, tsText)) {
		return Proof{}, badSignature("sinch", "signature does not match the secret")
	}
	if err := checkWindow("sinch", "signature timestamp", ts, now(r), c.window); err != nil {
		return Proof{}, err
	}
	return Proof{Nonce: nonce, TTL: nonceTTL(ts, now(r), c.window)}, nil
}

func (c *Sinch) mac(body []byte, nonce, ts string) []byte {
	m := hmac.New(sha256.New, c.secret)
	m.Write(body)
	m.Write([]byte("." + nonce + "." + ts))
	return m.Sum(nil)
}

type sinchCallback struct {
	Type string `json:"type"`
	// inbound
	ID         string          `json:"id"`
	From       string          `json:"from"`
	To         string          `json:"to"`
	Body       json.RawMessage `json:"body"`
	ReceivedAt string          `json:"received_at"`
	// delivery reports
	BatchID           string     `json:"batch_id"`
	Recipient         string     `json:"recipient"`
	Status            string     `json:"status"`
	Code              flexString `json:"code"`
	At                string     `json:"at"`
	OperatorStatusAt  string     `json:"operator_status_at"`
	AppliedOriginator string     `json:"applied_originator"`
	Parts             int        `json:"number_of_message_parts"`
	Statuses          []struct {
		Code       flexString `json:"code"`
		Status     string     `json:"status"`
		Recipients []string   `json:"recipients"`
	} `json:"statuses"`
}

// sinchStatus maps Sinch delivery statuses (lower-cased).
var sinchStatus = map[string]string{
	"queued":     switchboard.StatusQueued,
	"dispatched": switchboard.StatusSent,
	"delivered":  switchboard.StatusDelivered,
	"failed":     switchboard.StatusUndelivered,
	"expired":    switchboard.StatusUndelivered,
	"deleted":    switchboard.StatusUndelivered,
	"rejected":   switchboard.StatusFailed,
	"aborted":    switchboard.StatusFailed,
	"cancelled":  switchboard.StatusFailed,
	"unknown":    switchboard.StatusUnknown,
}

// Parse reads inbound messages (mo_text, mo_binary, mo_media) and delivery
// reports: a recipient_delivery_report_* is one event; a batch
// delivery_report_* is one event per listed recipient, or per status when
// Sinch sent only counts (then without a recipient). Other types yield no
// events.
func (c *Sinch) Parse(r *Request) ([]switchboard.Event, error) {
	var cb sinchCallback
	if err := json.Unmarshal(r.Body, &cb); err != nil {
		return nil, badPayload("sinch", "body is not a Sinch callback: %v", err)
	}
	switch {
	case cb.Type == "":
		return nil, badPayload("sinch", "body has no type")
	case strings.HasPrefix(cb.Type, "mo_"):
		if cb.ID == "" {
			return nil, badPayload("sinch", "%s without id", cb.Type)
		}
		d := switchboard.EventData{MessageID: cb.ID, From: E164(cb.From), To: E164(cb.To), OccurredAt: parseTimePtr(cb.ReceivedAt)}
		switch cb.Type {
		case "mo_text":
			json.Unmarshal(cb.Body, &d.Text)
		case "mo_media":
			var body struct {
				Message string `json:"message"`
				Media   []struct {
					URL         string `json:"url"`
					MimeType    string `json:"mimeType"`
					ContentType string `json:"content_type"`
				} `json:"media"`
			}
			json.Unmarshal(cb.Body, &body)
			d.Text = body.Message
			for _, m := range body.Media {
				if m.URL != "" {
					d.Media = append(d.Media, switchboard.Media{URL: m.URL, ContentType: orDefault(m.MimeType, m.ContentType)})
				}
			}
		}
		// mo_binary: base64 octets with a UDH, no text.
		return []switchboard.Event{{Type: switchboard.TypeReceived, Data: d}}, nil
	case strings.HasPrefix(cb.Type, "recipient_delivery_report_"):
		if cb.BatchID == "" {
			return nil, badPayload("sinch", "%s without batch_id", cb.Type)
		}
		d := sinchReport(cb.BatchID, cb.AppliedOriginator, cb.Recipient, cb.Status, string(cb.Code))
		d.Segments = cb.Parts
		d.OccurredAt = parseTimePtr(orDefault(cb.At, cb.OperatorStatusAt))
		return []switchboard.Event{{Type: switchboard.TypeStatus, Data: d}}, nil
	case strings.HasPrefix(cb.Type, "delivery_report_"):
		if cb.BatchID == "" {
			return nil, badPayload("sinch", "%s without batch_id", cb.Type)
		}
		var events []switchboard.Event
		for _, s := range cb.Statuses {
			recipients := s.Recipients
			if len(recipients) == 0 {
				recipients = []string{""}
			}
			for _, to := range recipients {
				d := sinchReport(cb.BatchID, "", to, s.Status, string(s.Code))
				events = append(events, switchboard.Event{Type: switchboard.TypeStatus, Data: d})
			}
		}
		return events, nil
	}
	return nil, nil
}

func sinchReport(batch, from, to, word, code string) switchboard.EventData {
	d := switchboard.EventData{
		MessageID: batch, From: E164(from), To: E164(to),
		Status: mapStatus(sinchStatus, strings.ToLower(word)), CarrierStatus: word,
	}
	if code != "" && code != "0" && d.Status != switchboard.StatusDelivered && d.Status != switchboard.StatusSent && d.Status != switchboard.StatusQueued {
		d.Error = &switchboard.Error{Code: code}
	}
	return d
}

// Reply is an empty 200.
func (c *Sinch) Reply(*Request, []switchboard.Event) Response { return replyOK() }

// sinchWord is the status Sinch would send for a normalized one.
var sinchWord = map[string]string{
	switchboard.StatusAccepted:    "Queued",
	switchboard.StatusQueued:      "Queued",
	switchboard.StatusSent:        "Dispatched",
	switchboard.StatusDelivered:   "Delivered",
	switchboard.StatusUndelivered: "Failed",
	switchboard.StatusFailed:      "Rejected",
	switchboard.StatusUnknown:     "Unknown",
}

func (c *Sinch) simulate(kind string, m SimMessage, target string, now time.Time) (*http.Request, error) {
	at := now.UTC().Format("2006-01-02T15:04:05.000Z")
	var msg map[string]any
	if kind == simInbound {
		msg = map[string]any{
			"id": orDefault(m.MessageID, strings.ToUpper(randomHex(13))), "type": "mo_text",
			"from": strings.TrimPrefix(m.From, "+"), "to": strings.TrimPrefix(m.To, "+"), "body": m.Text,
			"received_at": at, "sent_at": at,
		}
	} else {
		word := carrierWord(sinchWord, m.Status)
		code := 0
		if s := sinchStatus[strings.ToLower(word)]; s == switchboard.StatusUndelivered || s == switchboard.StatusFailed {
			code = 402
		}
		msg = map[string]any{
			"type": "recipient_delivery_report_sms", "batch_id": orDefault(m.MessageID, strings.ToUpper(randomHex(13))),
			"recipient": strings.TrimPrefix(m.To, "+"), "applied_originator": strings.TrimPrefix(m.From, "+"),
			"status": word, "code": code, "at": at, "operator_status_at": at,
		}
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(msg); err != nil {
		return nil, err
	}
	body := bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
	nonce := strings.ToUpper(randomHex(13))
	ts := strconv.FormatInt(now.Unix(), 10)
	req, err := newSimRequest(http.MethodPost, target, body)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Sinch-Webhook-Signature", strictBase64.EncodeToString(c.mac(body, nonce, ts)))
	req.Header.Set("X-Sinch-Webhook-Signature-Algorithm", "HmacSHA256")
	req.Header.Set("X-Sinch-Webhook-Signature-Nonce", nonce)
	req.Header.Set("X-Sinch-Webhook-Signature-Timestamp", ts)
	return req, nil
}

package carrier

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	switchboard "github.com/switchboard-gw/switchboard"
)

func init() { register("bird", newBird) }

// Bird is Bird's Channels API (the platform after MessageBird): webhook
// subscriptions of the Notifications API POST {"service","event","payload"}
// JSON for sms.inbound and sms.outbound, signed with messagebird-signature:
// HMAC-SHA256 over timestamp "\n" subscribed URL "\n" raw SHA-256 of the
// body. Bird's newer developer API signs the Standard Webhooks way and has
// other payloads; it is not this carrier.
//
// Config: Secret is the subscription's signingKey. The subscription URL
// must be exactly the public URL the gateway sees (keep query strings out of
// it: whether Bird signs them is unconfirmed). ReplayWindow bounds
// messagebird-request-timestamp.
type Bird struct {
	key    []byte
	window time.Duration
}

func newBird(cfg Config) (Carrier, error) {
	if cfg.Secret == "" {
		return nil, errors.New("bird: secret (the webhook subscription's signingKey) is required")
	}
	return &Bird{key: []byte(cfg.Secret), window: cfg.ReplayWindow}, nil
}

// Verify checks messagebird-signature over r.URL and the body, and that the
// timestamp is within the replay window. Bird signs no nonce.
func (c *Bird) Verify(r *Request) (Proof, error) {
	sig := r.Header.Get("Messagebird-Signature")
	tsText := r.Header.Get("Messagebird-Request-Timestamp")
	if sig == "" || tsText == "" {
		return Proof{}, badSignature("bird", "missing messagebird-signature or messagebird-request-timestamp header")
	}
	ts, ok := unixTime(tsText)
	if !ok {
		return Proof{}, badSignature("bird", "messagebird-request-timestamp is not Unix seconds")
	}
	u := stripFragment(r.URL)
	if !slices.ContainsFunc(urlCandidates(u), func(cand string) bool { return equalBase64(sig, c.mac(tsText, cand, r.Body)) }) {
		return Proof{}, badSignature("bird", "signature does not match URL %q: the subscription URL must be exactly the public URL the gateway sees, and the secret its signingKey", u)
	}
	return Proof{}, checkWindow("bird", "messagebird-request-timestamp", ts, now(r), c.window)
}

func (c *Bird) mac(ts, u string, body []byte) []byte {
	sum := sha256.Sum256(body)
	m := hmac.New(sha256.New, c.key)
	m.Write([]byte(ts + "\n" + u + "\n"))
	m.Write(sum[:])
	return m.Sum(nil)
}

type birdIdentifier struct {
	IdentifierValue string `json:"identifierValue"`
}

type birdMedia struct {
	MediaURL    string `json:"mediaUrl"`
	ContentType string `json:"contentType"`
}

type birdMessage struct {
	ID     string `json:"id"`
	Sender struct {
		Contact   birdIdentifier `json:"contact"`
		Connector birdIdentifier `json:"connector"`
	} `json:"sender"`
	Receiver struct {
		Connector birdIdentifier   `json:"connector"`
		Contacts  []birdIdentifier `json:"contacts"`
	} `json:"receiver"`
	Body struct {
		Type string `json:"type"`
		Text struct {
			Text string `json:"text"`
		} `json:"text"`
		Image struct {
			Text   string      `json:"text"`
			Images []birdMedia `json:"images"`
		} `json:"image"`
		File struct {
			Text  string      `json:"text"`
			Files []birdMedia `json:"files"`
		} `json:"file"`
	} `json:"body"`
	Status          string `json:"status"`
	Reason          string `json:"reason"`
	Direction       string `json:"direction"`
	ChargeableUnits int    `json:"chargeableUnits"`
	LastStatusAt    string `json:"lastStatusAt"`
	CreatedAt       string `json:"createdAt"`
}

// birdStatus maps Bird's outbound message statuses.
var birdStatus = map[string]string{
	"accepted":        switchboard.StatusAccepted,
	"processing":      switchboard.StatusQueued,
	"sent":            switchboard.StatusSent,
	"sending_failed":  switchboard.StatusFailed,
	"delivered":       switchboard.StatusDelivered,
	"delivery_failed": switchboard.StatusUndelivered,
}

// Parse reads <channel>.inbound as an inbound message (text, or image/file
// bodies as media) and <channel>.outbound as one status event per receiving
// contact; reason becomes the error message. Other events yield no events.
func (c *Bird) Parse(r *Request) ([]switchboard.Event, error) {
	var env struct {
		Event   string      `json:"event"`
		Payload birdMessage `json:"payload"`
	}
	if err := json.Unmarshal(r.Body, &env); err != nil {
		return nil, badPayload("bird", "body is not a Bird notification: %v", err)
	}
	if env.Event == "" {
		return nil, badPayload("bird", "body has no event")
	}
	m := env.Payload
	inbound := strings.HasSuffix(env.Event, ".inbound")
	if !inbound && !strings.HasSuffix(env.Event, ".outbound") {
		return nil, nil
	}
	if m.ID == "" {
		return nil, badPayload("bird", "%s without payload.id", env.Event)
	}
	if inbound {
		d := switchboard.EventData{
			MessageID: m.ID, From: E164(m.Sender.Contact.IdentifierValue), To: E164(m.Receiver.Connector.IdentifierValue),
			Text: m.Body.Text.Text, Segments: m.ChargeableUnits, OccurredAt: parseTimePtr(orDefault(m.CreatedAt, m.LastStatusAt)),
		}
		for _, md := range append(m.Body.Image.Images, m.Body.File.Files...) {
			if md.MediaURL != "" {
				d.Media = append(d.Media, switchboard.Media{URL: md.MediaURL, ContentType: md.ContentType})
			}
		}
		d.Text = orDefault(d.Text, orDefault(m.Body.Image.Text, m.Body.File.Text))
		return []switchboard.Event{{Type: switchboard.TypeReceived, Data: d}}, nil
	}
	to := m.Receiver.Contacts
	if len(to) == 0 {
		to = []birdIdentifier{{}}
	}
	var failure *switchboard.Error
	if m.Reason != "" {
		failure = &switchboard.Error{Message: m.Reason}
	}
	events := make([]switchboard.Event, 0, len(to))
	for _, contact := range to {
		d := switchboard.EventData{
			MessageID: m.ID, From: E164(m.Sender.Connector.IdentifierValue), To: E164(contact.IdentifierValue),
			Status: mapStatus(birdStatus, m.Status), CarrierStatus: m.Status, Error: failureOnly(mapStatus(birdStatus, m.Status), failure),
			Segments: m.ChargeableUnits, OccurredAt: parseTimePtr(m.LastStatusAt),
		}
		events = append(events, switchboard.Event{Type: switchboard.TypeStatus, Data: d})
	}
	return events, nil
}

// Reply is an empty 200.
func (c *Bird) Reply(*Request, []switchboard.Event) Response { return replyOK() }

// birdWord is the status Bird would send for a normalized one.
var birdWord = map[string]string{
	switchboard.StatusQueued:      "processing",
	switchboard.StatusFailed:      "sending_failed",
	switchboard.StatusUndelivered: "delivery_failed",
}

func (c *Bird) simulate(kind string, m SimMessage, target string, now time.Time) (*http.Request, error) {
	at := now.UTC().Format("2006-01-02T15:04:05.000Z")
	msg := map[string]any{
		"id": orDefault(m.MessageID, randomUUID()), "channelId": randomUUID(),
		"body":  map[string]any{"type": "text", "text": map[string]string{"text": m.Text}},
		"parts": []map[string]string{{"platformReference": randomHex(16)}}, "chargeableUnits": 1,
		"lastStatusAt": at, "createdAt": at, "updatedAt": at, "reason": "",
	}
	event := "sms.inbound"
	if kind == simInbound {
		msg["sender"] = map[string]any{"contact": map[string]string{"id": randomUUID(), "identifierKey": "phonenumber", "identifierValue": m.From}}
		msg["receiver"] = map[string]any{"connector": map[string]string{"id": randomUUID(), "identifierValue": m.To}}
		msg["status"], msg["direction"] = "delivered", "incoming"
	} else {
		event = "sms.outbound"
		word := carrierWord(birdWord, m.Status)
		msg["sender"] = map[string]any{"connector": map[string]string{"id": randomUUID(), "identifierValue": m.From}}
		msg["receiver"] = map[string]any{"contacts": []map[string]string{{"id": randomUUID(), "identifierKey": "phonenumber", "identifierValue": m.To}}}
		msg["status"], msg["direction"] = word, "outgoing"
		if s := birdStatus[word]; s == switchboard.StatusFailed || s == switchboard.StatusUndelivered {
			msg["reason"] = "carrier rejected the message"
		}
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(map[string]any{"service": "channels", "event": event, "payload": msg}); err != nil {
		return nil, err
	}
	body := bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
	ts := strconv.FormatInt(now.Unix(), 10)
	req, err := newSimRequest(http.MethodPost, target, body)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Messagebird-Signature", strictBase64.EncodeToString(c.mac(ts, stripFragment(target), body)))
	req.Header.Set("Messagebird-Request-Timestamp", ts)
	return req, nil
}

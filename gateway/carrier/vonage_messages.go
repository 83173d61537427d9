package carrier

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"time"

	switchboard "github.com/switchboard-gw/switchboard"
)

func init() { register("vonage-messages", newVonageMessages) }

// VonageMessages is Vonage's Messages API (SMS and MMS channels): inbound
// messages and status callbacks, POSTed as JSON to an Application's Inbound
// and Status URLs, with "Authorization: Bearer <JWT>" (HS256 with the
// account's signature secret; claims iat, jti, iss "Vonage", payload_hash,
// api_key).
//
// Config: Secret is the account's signature secret. ReplayWindow bounds iat.
type VonageMessages struct {
	secret []byte
	window time.Duration
}

func newVonageMessages(cfg Config) (Carrier, error) {
	if cfg.Secret == "" {
		return nil, errors.New("vonage-messages: secret (the account's signature secret) is required")
	}
	return &VonageMessages{secret: []byte(cfg.Secret), window: cfg.ReplayWindow}, nil
}

type vonageClaims struct {
	IAT           numericDate `json:"iat"`
	JTI           string      `json:"jti"`
	ISS           string      `json:"iss"`
	PayloadHash   string      `json:"payload_hash"`
	APIKey        string      `json:"api_key,omitempty"`
	ApplicationID string      `json:"application_id,omitempty"`
}

// Verify checks the JWT (HS256 only), its issuer, that payload_hash is the
// SHA-256 of the body and that iat is within the replay window; the jti is
// returned in Proof. A callback with no bearer token is one Vonage sent
// unsigned during an internal error: the error wraps
// switchboard.ErrUnavailable, so that the gateway answers 503 and Vonage
// retries it, signed.
func (c *VonageMessages) Verify(r *Request) (Proof, error) {
	auth := r.Header.Get("Authorization")
	token, ok := cutPrefixFold(auth, "Bearer ")
	if !ok || strings.TrimSpace(token) == "" {
		return Proof{}, tryLater("vonage-messages", "unsigned callback (no Authorization: Bearer token); Vonage retries it signed after a 5xx")
	}
	var claims vonageClaims
	if err := verifyJWT("vonage-messages", strings.TrimSpace(token), c.secret, []string{"HS256"}, &claims); err != nil {
		return Proof{}, err
	}
	if claims.ISS != "Vonage" {
		return Proof{}, badSignature("vonage-messages", "token issuer %q is not Vonage", claims.ISS)
	}
	if !claims.IAT.set {
		return Proof{}, badSignature("vonage-messages", "token has no iat")
	}
	sum := sha256.Sum256(r.Body)
	if claims.PayloadHash == "" || !equalHex(claims.PayloadHash, sum[:]) {
		return Proof{}, badSignature("vonage-messages", "token payload_hash does not match the body")
	}
	if err := checkWindow("vonage-messages", "token iat", claims.IAT.Time, now(r), c.window); err != nil {
		return Proof{}, err
	}
	if claims.JTI == "" {
		return Proof{}, nil
	}
	return Proof{Nonce: claims.JTI, TTL: nonceTTL(claims.IAT.Time, now(r), c.window)}, nil
}

// cutPrefixFold is strings.CutPrefix ignoring ASCII case.
func cutPrefixFold(s, prefix string) (string, bool) {
	if len(s) < len(prefix) || !strings.EqualFold(s[:len(prefix)], prefix) {
		return s, false
	}
	return s[len(prefix):], true
}

// flexString is a JSON string that may arrive as a number.
type flexString string

func (f *flexString) UnmarshalJSON(b []byte) error {
	if len(b) > 0 && b[0] == '"' {
		var s string
		err := json.Unmarshal(b, &s)
		*f = flexString(s)
		return err
	}
	if string(b) == "null" {
		return nil
	}
	var n json.Number
	if err := json.Unmarshal(b, &n); err != nil {
		return err
	}
	*f = flexString(n)
	return nil
}

// vonageParty is "from"/"to": a string in v1, {"type","number"} in v0.1.
type vonageParty string

func (p *vonageParty) UnmarshalJSON(b []byte) error {
	if len(b) > 0 && b[0] == '{' {
		var v struct {
			Number flexString `json:"number"`
			ID     string     `json:"id"`
		}
		if err := json.Unmarshal(b, &v); err != nil {
			return err
		}
		*p = vonageParty(orDefault(string(v.Number), v.ID))
		return nil
	}
	var s flexString
	err := s.UnmarshalJSON(b)
	*p = vonageParty(s)
	return err
}

type vonageAttachment struct {
	Type    string `json:"type"`
	URL     string `json:"url"`
	Caption string `json:"caption"`
}

// vonageMessage holds the members read from a Messages API callback, v1 and
// v0.1 alike.
type vonageMessage struct {
	MessageUUID string      `json:"message_uuid"`
	From        vonageParty `json:"from"`
	To          vonageParty `json:"to"`
	Timestamp   string      `json:"timestamp"`
	Channel     string      `json:"channel"`
	MessageType string      `json:"message_type"`
	Text        string      `json:"text"`
	Status      string      `json:"status"`
	SMS         struct {
		NumMessages flexString `json:"num_messages"`
		CountTotal  flexString `json:"count_total"`
	} `json:"sms"`
	Content []vonageAttachment `json:"content"`
	Error   *struct {
		Type   string     `json:"type"`
		Title  flexString `json:"title"`
		Detail string     `json:"detail"`
		Code   flexString `json:"code"`
		Reason string     `json:"reason"`
	} `json:"error"`
	// v0.1
	Message *struct {
		Content struct {
			Type  string           `json:"type"`
			Text  string           `json:"text"`
			Image vonageAttachment `json:"image"`
		} `json:"content"`
		SMS struct {
			NumMessages flexString `json:"num_messages"`
		} `json:"sms"`
	} `json:"message"`
}

// vonageMessagesStatus maps Messages API statuses.
var vonageMessagesStatus = map[string]string{
	"submitted":     switchboard.StatusSent,
	"delivered":     switchboard.StatusDelivered,
	"read":          switchboard.StatusRead,
	"rejected":      switchboard.StatusFailed,
	"undeliverable": switchboard.StatusFailed,
}

// Parse reads a status callback (it has "status") or an inbound message,
// in the v1 format or the older v0.1 one (from/to as objects). MMS media
// come from the member named by message_type ({"url","caption"}) or from a
// content array.
func (c *VonageMessages) Parse(r *Request) ([]switchboard.Event, error) {
	var m vonageMessage
	if err := json.Unmarshal(r.Body, &m); err != nil {
		return nil, badPayload("vonage-messages", "body is not a Messages API callback: %v", err)
	}
	if m.MessageUUID == "" {
		return nil, badPayload("vonage-messages", "no message_uuid")
	}
	d := switchboard.EventData{MessageID: m.MessageUUID, From: E164(string(m.From)), To: E164(string(m.To))}
	if t, err := time.Parse(time.RFC3339Nano, m.Timestamp); err == nil {
		d.OccurredAt = switchboard.TimePtr(t)
	}
	if m.Status != "" {
		d.Status = mapStatus(vonageMessagesStatus, m.Status)
		d.CarrierStatus = m.Status
		d.Segments = atoi(string(m.SMS.CountTotal))
		if e := m.Error; e != nil {
			code := orDefault(string(e.Title), string(e.Code))
			if code == "" {
				_, code, _ = strings.Cut(e.Type, "#")
			}
			if msg := orDefault(e.Detail, e.Reason); code != "" || msg != "" {
				d.Error = &switchboard.Error{Code: code, Message: msg}
			}
		}
		return []switchboard.Event{{Type: switchboard.TypeStatus, Data: d}}, nil
	}
	d.Text = m.Text
	d.Segments = atoi(string(m.SMS.NumMessages))
	if v0 := m.Message; v0 != nil {
		d.Text = orDefault(d.Text, v0.Content.Text)
		d.Segments = max(d.Segments, atoi(string(v0.SMS.NumMessages)))
		if v0.Content.Image.URL != "" {
			d.Media = append(d.Media, switchboard.Media{URL: v0.Content.Image.URL})
		}
	}
	for _, a := range m.Content {
		if a.URL != "" {
			// a.Type is a kind (image, video), not a media type.
			d.Media = append(d.Media, switchboard.Media{URL: a.URL})
		}
		d.Text = orDefault(d.Text, a.Caption)
	}
	if t := m.MessageType; t != "" && t != "text" && t != "content" {
		var byType map[string]json.RawMessage
		var a vonageAttachment
		if json.Unmarshal(r.Body, &byType) == nil && json.Unmarshal(byType[t], &a) == nil && a.URL != "" {
			d.Media = append(d.Media, switchboard.Media{URL: a.URL})
			d.Text = orDefault(d.Text, a.Caption)
		}
	}
	return []switchboard.Event{{Type: switchboard.TypeReceived, Data: d}}, nil
}

// Reply is an empty 200.
func (c *VonageMessages) Reply(*Request, []switchboard.Event) Response { return replyOK() }

// vonageMessagesWord is the status Vonage would send for a normalized one.
var vonageMessagesWord = map[string]string{
	switchboard.StatusSent:        "submitted",
	switchboard.StatusQueued:      "submitted",
	switchboard.StatusAccepted:    "submitted",
	switchboard.StatusFailed:      "rejected",
	switchboard.StatusUndelivered: "undeliverable",
}

func (c *VonageMessages) simulate(kind string, m SimMessage, target string, now time.Time) (*http.Request, error) {
	msg := map[string]any{
		"message_uuid": orDefault(m.MessageID, randomUUID()),
		"from":         strings.TrimPrefix(m.From, "+"),
		"to":           strings.TrimPrefix(m.To, "+"),
		"timestamp":    now.UTC().Format(time.RFC3339),
		"channel":      "sms",
	}
	if kind == simInbound {
		keyword, _, _ := strings.Cut(m.Text, " ")
		msg["message_type"] = "text"
		msg["text"] = m.Text
		msg["sms"] = map[string]string{"num_messages": "1", "keyword": strings.ToUpper(keyword)}
	} else {
		word := carrierWord(vonageMessagesWord, m.Status)
		msg["status"] = word
		msg["sms"] = map[string]string{"count_total": "1"}
		if word == "rejected" || word == "undeliverable" {
			msg["error"] = map[string]any{"type": "https://developer.nexmo.com/api-errors/messages-olympus#1000", "title": 1000, "detail": "Throttled - You have exceeded the submission capacity allowed on this account.", "instance": randomUUID()}
		}
	}
	var body bytes.Buffer
	enc := json.NewEncoder(&body)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(msg); err != nil {
		return nil, err
	}
	b := bytes.TrimSuffix(body.Bytes(), []byte("\n"))
	sum := sha256.Sum256(b)
	token, err := signJWT(c.secret, vonageClaims{
		IAT: numericDate{Time: now}, JTI: randomUUID(), ISS: "Vonage",
		PayloadHash: hex.EncodeToString(sum[:]), APIKey: "abcd1234",
	})
	if err != nil {
		return nil, err
	}
	req, err := newSimRequest(http.MethodPost, target, b)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+token)
	return req, nil
}

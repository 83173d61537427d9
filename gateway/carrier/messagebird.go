package carrier

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	switchboard "github.com/switchboard-gw/switchboard"
)

func init() { register("messagebird", newMessageBird) }

// MessageBird is MessageBird's legacy SMS API: status reports (GET with a
// query string, only for messages sent with a reference) and inbound
// messages forwarded to a URL (GET query or POST form; the field set is
// not documented, see Parse), signed with MessageBird-Signature-JWT: an
// HS256/384/512 JWT whose url_hash is the SHA-256 of the full URL and
// payload_hash that of the body. The deprecated MessageBird-Signature
// scheme is accepted too. For the newer Bird platform use "bird".
//
// Config: Secret is the signing key (dashboard, Developers, API settings;
// not the API access key). ReplayWindow bounds the legacy scheme's
// timestamp; the JWT carries its own nbf/exp.
type MessageBird struct {
	key    []byte
	window time.Duration
}

// messageBirdSkew is the clock skew allowed around a token's nbf and exp
// (MessageBird's Go SDK allows 1 s).
const messageBirdSkew = time.Second

func newMessageBird(cfg Config) (Carrier, error) {
	if cfg.Secret == "" {
		return nil, errors.New("messagebird: secret (the signing key, not the API key) is required")
	}
	return &MessageBird{key: []byte(cfg.Secret), window: cfg.ReplayWindow}, nil
}

type messageBirdClaims struct {
	ISS         string      `json:"iss"`
	NBF         numericDate `json:"nbf"`
	EXP         numericDate `json:"exp"`
	JTI         string      `json:"jti"`
	URLHash     string      `json:"url_hash"`
	PayloadHash string      `json:"payload_hash,omitempty"`
}

// Verify checks MessageBird-Signature-JWT as MessageBird's SDK does: issuer
// MessageBird, now within [nbf, exp] (±1 s), a jti, url_hash equal to the
// SHA-256 of r.URL, and payload_hash present exactly when there is a body,
// equal to its SHA-256. The jti is returned in Proof until the token
// expires. Without a JWT, the legacy MessageBird-Signature is checked.
func (c *MessageBird) Verify(r *Request) (Proof, error) {
	token := strings.TrimSpace(r.Header.Get("MessageBird-Signature-JWT"))
	if token == "" {
		if r.Header.Get("MessageBird-Signature") != "" {
			return Proof{}, c.verifyLegacy(r)
		}
		return Proof{}, badSignature("messagebird", "missing MessageBird-Signature-JWT header")
	}
	var claims messageBirdClaims
	if err := verifyJWT("messagebird", token, c.key, []string{"HS256", "HS384", "HS512"}, &claims); err != nil {
		return Proof{}, err
	}
	at := now(r)
	switch {
	case claims.ISS != "MessageBird":
		return Proof{}, badSignature("messagebird", "token issuer %q is not MessageBird", claims.ISS)
	case !claims.NBF.set || !claims.EXP.set:
		return Proof{}, badSignature("messagebird", "token lacks nbf or exp")
	case at.Unix() < claims.NBF.Add(-messageBirdSkew).Unix():
		return Proof{}, badSignature("messagebird", "token not valid before %s (now %s)", claims.NBF.UTC().Format(time.RFC3339), at.UTC().Format(time.RFC3339))
	case at.Unix() > claims.EXP.Add(messageBirdSkew).Unix():
		return Proof{}, badSignature("messagebird", "token expired at %s (now %s)", claims.EXP.UTC().Format(time.RFC3339), at.UTC().Format(time.RFC3339))
	case claims.JTI == "":
		return Proof{}, badSignature("messagebird", "token has no jti")
	}
	u := stripFragment(r.URL)
	if !slices.ContainsFunc(urlCandidates(u), func(cand string) bool {
		sum := sha256.Sum256([]byte(cand))
		return equalHex(claims.URLHash, sum[:])
	}) {
		return Proof{}, badSignature("messagebird", "token url_hash does not match URL %q: the URL configured at MessageBird must be the public URL the gateway sees", u)
	}
	switch body := sha256.Sum256(r.Body); {
	case len(r.Body) == 0 && claims.PayloadHash != "":
		return Proof{}, badSignature("messagebird", "token has a payload_hash but the request has no body")
	case len(r.Body) > 0 && !equalHex(claims.PayloadHash, body[:]):
		return Proof{}, badSignature("messagebird", "token payload_hash does not match the body")
	}
	ttl := claims.EXP.Add(messageBirdSkew).Sub(at) + time.Second
	return Proof{Nonce: claims.JTI, TTL: max(ttl, time.Second)}, nil
}

// verifyLegacy checks the deprecated scheme: MessageBird-Signature is the
// base64 HMAC-SHA256 of timestamp "\n" sorted-and-re-encoded query "\n"
// raw SHA-256 of the body; MessageBird-Request-Timestamp must be within the
// replay window.
func (c *MessageBird) verifyLegacy(r *Request) error {
	ts, ok := unixTime(r.Header.Get("MessageBird-Request-Timestamp"))
	if !ok {
		return badSignature("messagebird", "MessageBird-Signature without a valid MessageBird-Request-Timestamp")
	}
	q, err := url.ParseQuery(rawQuery(r))
	if err != nil {
		return badSignature("messagebird", "query cannot be parsed, so its signature cannot be computed")
	}
	if !equalBase64(r.Header.Get("MessageBird-Signature"), c.legacyMAC(r.Header.Get("MessageBird-Request-Timestamp"), q, r.Body)) {
		return badSignature("messagebird", "MessageBird-Signature does not match the signing key")
	}
	return checkWindow("messagebird", "MessageBird-Request-Timestamp", ts, now(r), c.window)
}

func (c *MessageBird) legacyMAC(ts string, q url.Values, body []byte) []byte {
	sum := sha256.Sum256(body)
	m := hmac.New(sha256.New, c.key)
	m.Write([]byte(ts + "\n" + q.Encode() + "\n"))
	m.Write(sum[:])
	return m.Sum(nil)
}

// messageBirdStatus maps MessageBird recipient statuses.
var messageBirdStatus = map[string]string{
	"scheduled":       switchboard.StatusAccepted,
	"sent":            switchboard.StatusSent,
	"buffered":        switchboard.StatusSent,
	"delivered":       switchboard.StatusDelivered,
	"expired":         switchboard.StatusUndelivered,
	"delivery_failed": switchboard.StatusUndelivered,
}

// Parse reads a status report (it has status: id, recipient, status,
// statusDatetime, and optionally statusReason, statusErrorCode,
// messagePartCount, originator) or a forwarded inbound message: id,
// originator, recipient, body, createdDatetime and mediaUrls, or the
// short-code variant mid, originator, shortcode, message, receive_datetime.
// Parameters come from the query for GET, from the form otherwise.
func (c *MessageBird) Parse(r *Request) ([]switchboard.Event, error) {
	p, err := params(r)
	if err != nil {
		return nil, badPayload("messagebird", "parameters are not a valid form: %v", err)
	}
	id := firstOf(p, "id", "mid")
	if id == "" {
		return nil, badPayload("messagebird", "no id")
	}
	if word := p.Get("status"); word != "" {
		d := switchboard.EventData{
			MessageID: id, From: E164(p.Get("originator")), To: E164(p.Get("recipient")),
			Status: mapStatus(messageBirdStatus, word), CarrierStatus: word,
			Segments: atoi(p.Get("messagePartCount")), OccurredAt: parseTimePtr(p.Get("statusDatetime")),
		}
		if code := p.Get("statusErrorCode"); code != "" && code != "0" {
			d.Error = &switchboard.Error{Code: code, Message: p.Get("statusReason")}
		}
		return []switchboard.Event{{Type: switchboard.TypeStatus, Data: d}}, nil
	}
	d := switchboard.EventData{
		MessageID: id, From: E164(p.Get("originator")), To: E164(firstOf(p, "recipient", "shortcode")),
		Text: firstOf(p, "body", "message"), OccurredAt: parseTimePtr(p.Get("createdDatetime")),
	}
	if d.OccurredAt == nil {
		if t, err := time.Parse("20060102150405", p.Get("receive_datetime")); err == nil {
			d.OccurredAt = switchboard.TimePtr(t)
		}
	}
	for _, u := range append(p["mediaUrls"], p["mediaUrls[]"]...) {
		if u != "" {
			d.Media = append(d.Media, switchboard.Media{URL: u})
		}
	}
	return []switchboard.Event{{Type: switchboard.TypeReceived, Data: d}}, nil
}

// Reply is 200 with the body "OK", as MessageBird integrations answer.
func (c *MessageBird) Reply(*Request, []switchboard.Event) Response {
	return Response{Status: http.StatusOK, ContentType: "text/plain", Body: []byte("OK")}
}

// messageBirdWord is the status MessageBird would send for a normalized one.
var messageBirdWord = map[string]string{
	switchboard.StatusAccepted:    "scheduled",
	switchboard.StatusQueued:      "buffered",
	switchboard.StatusUndelivered: "delivery_failed",
	switchboard.StatusFailed:      "delivery_failed",
}

func (c *MessageBird) simulate(kind string, m SimMessage, target string, now time.Time) (*http.Request, error) {
	p := url.Values{}
	p.Set("id", orDefault(m.MessageID, randomHex(16)))
	at := now.UTC().Format("2006-01-02T15:04:05+00:00")
	if kind == simInbound {
		p.Set("recipient", strings.TrimPrefix(m.To, "+"))
		p.Set("originator", strings.TrimPrefix(m.From, "+"))
		p.Set("body", m.Text)
		p.Set("createdDatetime", at)
	} else {
		word := carrierWord(messageBirdWord, m.Status)
		p.Set("reference", "simulate")
		p.Set("recipient", strings.TrimPrefix(m.To, "+"))
		p.Set("originator", strings.TrimPrefix(m.From, "+"))
		p.Set("status", word)
		p.Set("statusDatetime", at)
		p.Set("messagePartCount", "1")
		if s := messageBirdStatus[word]; s == switchboard.StatusUndelivered || s == switchboard.StatusFailed {
			p.Set("statusErrorCode", "7")
			p.Set("statusReason", "delivery failed")
		}
	}
	u := stripFragment(target)
	sep := "?"
	if strings.Contains(u, "?") {
		sep = "&"
	}
	u += sep + p.Encode()
	sum := sha256.Sum256([]byte(u))
	token, err := signJWT(c.key, messageBirdClaims{
		ISS: "MessageBird", NBF: numericDate{Time: now}, EXP: numericDate{Time: now.Add(time.Minute)},
		JTI: randomUUID(), URLHash: hex.EncodeToString(sum[:]),
	})
	if err != nil {
		return nil, err
	}
	req, err := newSimRequest(http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	req.Body = nil
	req.Header.Set("MessageBird-Signature-JWT", token)
	return req, nil
}

package carrier

import (
	"bytes"
	"crypto/hmac"
	"crypto/md5"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	switchboard "github.com/switchboard-gw/switchboard"
)

func init() { register("vonage-sms", newVonageSMS) }

// VonageSMS is Vonage's (Nexmo's) SMS API: inbound messages and delivery
// receipts, sent as GET with a query string, POST form or POST-JSON (an
// account setting), signed with a "sig" parameter inside the payload.
// Signed webhooks must be enabled by Vonage support.
//
// Config: Secret is the account's signature secret and SignatureMethod the
// method chosen in the dashboard: md5hash (MD5 of the string and the
// secret), md5 (HMAC-MD5), sha1, sha256 or sha512 (HMAC). ReplayWindow
// bounds the signed timestamp.
type VonageSMS struct {
	secret []byte
	method string
	hash   func() hash.Hash
	window time.Duration
}

func newVonageSMS(cfg Config) (Carrier, error) {
	if cfg.Secret == "" {
		return nil, errors.New("vonage-sms: secret (the account's signature secret) is required")
	}
	c := &VonageSMS{secret: []byte(cfg.Secret), method: strings.ToLower(cfg.SignatureMethod), window: cfg.ReplayWindow}
	switch c.method {
	case "md5hash", "md5":
		c.hash = md5.New
	case "sha1":
		c.hash = sha1.New
	case "sha256":
		c.hash = sha256.New
	case "sha512":
		c.hash = sha512.New
	case "":
		return nil, errors.New("vonage-sms: signature_method (md5hash, md5, sha1, sha256 or sha512, as set in the dashboard) is required")
	default:
		return nil, fmt.Errorf("vonage-sms: signature_method %q is not md5hash, md5, sha1, sha256 or sha512", cfg.SignatureMethod)
	}
	return c, nil
}

// Verify checks the sig parameter: over every other parameter, sorted by
// name, as "&name=value" with "&" and "=" in values replaced by "_"; hex,
// compared ignoring case. The signed timestamp must be within the replay
// window; the nonce is returned in Proof.
func (c *VonageSMS) Verify(r *Request) (Proof, error) {
	p, err := vonageParams(r)
	if err != nil {
		return Proof{}, badSignature("vonage-sms", "cannot read the parameters to check sig: %v", err)
	}
	sig := p.Get("sig")
	if sig == "" {
		return Proof{}, badSignature("vonage-sms", "no sig parameter (signed webhooks must be enabled for the account by Vonage support)")
	}
	if !equalHex(sig, c.sign(p)) {
		return Proof{}, badSignature("vonage-sms", "sig does not match (signature method %s)", c.method)
	}
	ts, ok := unixTime(p.Get("timestamp"))
	if !ok {
		return Proof{}, badSignature("vonage-sms", "no valid timestamp parameter")
	}
	if err := checkWindow("vonage-sms", "timestamp", ts, now(r), c.window); err != nil {
		return Proof{}, err
	}
	proof := Proof{Nonce: p.Get("nonce")}
	if proof.Nonce != "" {
		proof.TTL = nonceTTL(ts, now(r), c.window)
	}
	return proof, nil
}

// sign is the MAC of the parameters other than sig.
func (c *VonageSMS) sign(p url.Values) []byte {
	s := vonageSignString(p)
	if c.method == "md5hash" {
		sum := md5.Sum(append(s, c.secret...))
		return sum[:]
	}
	m := hmac.New(c.hash, c.secret)
	m.Write(s)
	return m.Sum(nil)
}

// vonageSignString is "&k1=v1&k2=v2…" over every parameter but sig, names
// sorted byte-wise, "&" and "=" in values replaced by "_" (Vonage's SDKs).
func vonageSignString(p url.Values) []byte {
	names := make([]string, 0, len(p))
	for k := range p {
		if k != "sig" {
			names = append(names, k)
		}
	}
	slices.Sort(names)
	var b []byte
	for _, k := range names {
		b = append(b, '&')
		b = append(b, k...)
		b = append(b, '=')
		for _, ch := range []byte(p.Get(k)) {
			if ch == '&' || ch == '=' {
				ch = '_'
			}
			b = append(b, ch)
		}
	}
	return b
}

// vonageParams are the callback's parameters: the query for GET, the
// top-level members of a JSON body, or the form body.
func vonageParams(r *Request) (url.Values, error) {
	if !isGet(r) && isJSON(r.Header) {
		return flatJSON(r.Body)
	}
	return params(r)
}

// vonageDLRStatus maps Vonage SMS DLR statuses.
var vonageDLRStatus = map[string]string{
	"accepted":  switchboard.StatusSent,
	"buffered":  switchboard.StatusSent,
	"delivered": switchboard.StatusDelivered,
	"expired":   switchboard.StatusUndelivered,
	"failed":    switchboard.StatusUndelivered,
	"rejected":  switchboard.StatusFailed,
	"unknown":   switchboard.StatusUnknown,
}

// Part reports an inbound message's part: concat=true with concat-ref,
// concat-total > 1 and concat-part in 1..concat-total. The gateway puts the
// parts of one (msisdn, to, concat-ref) together (gateway/multipart.go).
func (c *VonageSMS) Part(r *Request) (Part, bool) {
	if !bytes.Contains(r.Body, []byte("concat")) && !strings.Contains(r.RawQuery, "concat") {
		return Part{}, false // the common case, without parsing again
	}
	p, err := vonageParams(r)
	if err != nil || p.Get("status") != "" || p.Get("concat") != "true" || p.Get("concat-ref") == "" {
		return Part{}, false
	}
	total, n := atoi(p.Get("concat-total")), atoi(p.Get("concat-part"))
	if total < 2 || n < 1 || n > total {
		return Part{}, false
	}
	return Part{Ref: p.Get("msisdn") + " " + p.Get("to") + " " + p.Get("concat-ref"), Number: n, Total: total}, true
}

// Parse reads an inbound message (no status parameter) or a delivery
// receipt. A multipart inbound message arrives part by part; each part is
// one event, with segments = concat-total (the gateway joins them: Part).
func (c *VonageSMS) Parse(r *Request) ([]switchboard.Event, error) {
	p, err := vonageParams(r)
	if err != nil {
		return nil, badPayload("vonage-sms", "%v", err)
	}
	id := p.Get("messageId")
	if id == "" {
		return nil, badPayload("vonage-sms", "no messageId")
	}
	if word := p.Get("status"); word != "" {
		d := switchboard.EventData{
			MessageID:     id,
			From:          E164(p.Get("to")),     // our sender id
			To:            E164(p.Get("msisdn")), // the recipient
			Status:        mapStatus(vonageDLRStatus, word),
			CarrierStatus: word,
		}
		if code := p.Get("err-code"); code != "" && code != "0" {
			d.Error = &switchboard.Error{Code: code}
		}
		if t, err := time.Parse("0601021504", p.Get("scts")); err == nil {
			d.OccurredAt = switchboard.TimePtr(t)
		} else if t, err := time.Parse(time.DateTime, p.Get("message-timestamp")); err == nil {
			d.OccurredAt = switchboard.TimePtr(t)
		}
		return []switchboard.Event{{Type: switchboard.TypeStatus, Data: d}}, nil
	}
	d := switchboard.EventData{
		MessageID: id,
		From:      E164(p.Get("msisdn")),
		To:        E164(p.Get("to")),
		Text:      p.Get("text"),
		Segments:  max(atoi(p.Get("concat-total")), 1),
	}
	if t, err := time.Parse(time.DateTime, p.Get("message-timestamp")); err == nil {
		d.OccurredAt = switchboard.TimePtr(t)
	}
	return []switchboard.Event{{Type: switchboard.TypeReceived, Data: d}}, nil
}

// Reply is an empty 200; anything else makes Vonage resend.
func (c *VonageSMS) Reply(*Request, []switchboard.Event) Response { return replyOK() }

// vonageDLRWord is the DLR status Vonage would send for a normalized one.
var vonageDLRWord = map[string]string{
	switchboard.StatusSent:        "accepted",
	switchboard.StatusQueued:      "buffered",
	switchboard.StatusAccepted:    "accepted",
	switchboard.StatusUndelivered: "expired",
	switchboard.StatusFailed:      "rejected",
}

func (c *VonageSMS) simulate(kind string, m SimMessage, target string, now time.Time) (*http.Request, error) {
	p := map[string]string{
		"api-key":           "abcd1234",
		"messageId":         orDefault(m.MessageID, strings.ToUpper(randomHex(8))),
		"message-timestamp": now.UTC().Format(time.DateTime),
		"timestamp":         fmt.Sprint(now.Unix()),
		"nonce":             randomUUID(),
	}
	if kind == simInbound {
		p["msisdn"] = strings.TrimPrefix(m.From, "+")
		p["to"] = strings.TrimPrefix(m.To, "+")
		p["text"] = m.Text
		p["type"] = "text"
		keyword, _, _ := strings.Cut(m.Text, " ")
		p["keyword"] = strings.ToUpper(keyword)
		if m.Parts > 1 {
			p["concat"] = "true"
			p["concat-ref"] = orDefault(m.PartRef, "1")
			p["concat-total"] = strconv.Itoa(m.Parts)
			p["concat-part"] = strconv.Itoa(max(m.Part, 1))
		}
	} else {
		word := carrierWord(vonageDLRWord, m.Status)
		p["msisdn"] = strings.TrimPrefix(m.To, "+")
		p["to"] = strings.TrimPrefix(m.From, "+")
		p["status"] = word
		p["err-code"] = "0"
		if s := vonageDLRStatus[word]; s == switchboard.StatusUndelivered || s == switchboard.StatusFailed {
			p["err-code"] = "99"
		}
		p["scts"] = now.UTC().Format("0601021504")
		p["network-code"] = "310260"
		p["price"] = "0.00750000"
	}
	v := url.Values{}
	for k, s := range p {
		v.Set(k, s)
	}
	p["sig"] = strings.ToUpper(hex.EncodeToString(c.sign(v)))
	body, err := json.Marshal(p)
	if err != nil {
		return nil, err
	}
	req, err := newSimRequest(http.MethodPost, target, body)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	return req, nil
}

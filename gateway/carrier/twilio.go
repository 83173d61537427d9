package carrier

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"hash"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	switchboard "github.com/switchboard-gw/switchboard"
)

func init() { register("twilio", newTwilio) }

// Twilio is Twilio Programmable Messaging: inbound messages and status
// callbacks, form-encoded POST (or GET with a query string), signed with
// X-Twilio-Signature, an HMAC-SHA1 keyed with the account's primary Auth
// Token over the URL Twilio called and the sorted POST parameters.
//
// Config: Secret is the Auth Token of the account (or subaccount) that owns
// the number or Messaging Service.
type Twilio struct {
	token []byte
}

func newTwilio(cfg Config) (Carrier, error) {
	if cfg.Secret == "" {
		return nil, errors.New("twilio: secret (the account's primary Auth Token) is required")
	}
	return &Twilio{token: []byte(cfg.Secret)}, nil
}

const twilioSignatureHeader = "X-Twilio-Signature"

// Verify checks X-Twilio-Signature as Twilio's helper libraries do: the
// signed string is r.URL (fragment removed) followed, for form-encoded
// POSTs, by every body parameter as name+value, names sorted byte-wise and
// each distinct value of a repeated name in sorted order. GET requests sign
// the URL alone. A JSON body signs the URL alone, which carries bodySHA256,
// the hex SHA-256 of the body. The URL as given, with the default port added
// and with the port removed are all accepted, as in the SDKs. Twilio signs
// no timestamp or nonce, so Proof is empty: retries are duplicates for the
// gateway's dedup, not replays.
func (c *Twilio) Verify(r *Request) (Proof, error) {
	sig := r.Header.Get(twilioSignatureHeader)
	if sig == "" {
		return Proof{}, badSignature("twilio", "missing %s header", twilioSignatureHeader)
	}
	got, err := strictBase64.DecodeString(sig)
	if err != nil || len(got) != sha1.Size {
		return Proof{}, badSignature("twilio", "%s is not a base64 HMAC-SHA1", twilioSignatureHeader)
	}
	u := stripFragment(r.URL)
	var form url.Values
	jsonBody := false
	switch {
	case isGet(r):
	case isJSON(r.Header):
		jsonBody = true
	default:
		if form, err = params(r); err != nil { // parsed once, for Parse too
			return Proof{}, badSignature("twilio", "body is not a valid form, so its signature cannot be computed")
		}
	}
	withPort, withoutPort := twilioURLs(u)
	signed := twilioParamString(make([]byte, 0, len(r.Body)), form)
	m := hmac.New(sha1.New, c.token)
	sum := make([]byte, 0, sha1.Size)
	matched := hmac.Equal(got, twilioMACParams(m, sum, withPort, signed))
	if !matched && withoutPort != withPort {
		matched = hmac.Equal(got, twilioMACParams(m, sum, withoutPort, signed))
	}
	if !matched {
		tried := withPort
		if u == withPort {
			tried = withoutPort
		}
		if tried == u {
			return Proof{}, badSignature("twilio", "signature does not match URL %q: the URL configured at Twilio must be exactly the public URL the gateway sees (server.public_base_url + path + query), and the secret the Auth Token of the account that owns the number", u)
		}
		return Proof{}, badSignature("twilio", "signature does not match URL %q (nor %q): the URL configured at Twilio must be exactly the public URL the gateway sees (server.public_base_url + path + query), and the secret the Auth Token of the account that owns the number", u, tried)
	}
	if jsonBody {
		want := queryParam(u, "bodySHA256")
		if want == "" {
			return Proof{}, badSignature("twilio", "JSON body but no bodySHA256 in URL %q", u)
		}
		sum := sha256.Sum256(r.Body)
		if !equalHex(want, sum[:]) {
			return Proof{}, badSignature("twilio", "body does not match the bodySHA256 in URL %q", u)
		}
	}
	return Proof{}, nil
}

// TwilioSignature is the X-Twilio-Signature Twilio would send for a
// form-encoded POST of form to webhookURL, signed with token (an Auth
// Token): what the "twilio" delivery format sends, so that apps verify it
// with Twilio's own libraries.
func TwilioSignature(token, webhookURL string, form url.Values) string {
	return strictBase64.EncodeToString(twilioMAC(hmac.New(sha1.New, []byte(token)), nil, stripFragment(webhookURL), form))
}

// twilioMAC is HMAC-SHA1 over u and the sorted form parameters, appended to
// sum. m is reset first.
func twilioMAC(m hash.Hash, sum []byte, u string, form url.Values) []byte {
	return twilioMACParams(m, sum, u, twilioParamString(nil, form))
}

func twilioMACParams(m hash.Hash, sum []byte, u string, params []byte) []byte {
	m.Reset()
	m.Write([]byte(u))
	m.Write(params)
	return m.Sum(sum[:0])
}

// twilioParamString appends the form's part of the signed string to dst:
// name+value for each parameter, names sorted byte-wise, and for a repeated
// name each distinct value once, sorted (Twilio's Python helper; twilio-go
// keeps only the first value, a known gap).
func twilioParamString(dst []byte, form url.Values) []byte {
	if len(form) == 0 {
		return dst
	}
	names := make([]string, 0, len(form))
	for name := range form {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		vs := form[name]
		if len(vs) > 1 {
			vs = slices.Compact(slices.Sorted(slices.Values(vs)))
		}
		for _, v := range vs {
			dst = append(dst, name...)
			dst = append(dst, v...)
		}
	}
	return dst
}

// twilioURLs returns u with the scheme's default port (u itself when it
// names a port or the scheme is not http/https) and u without a port.
func twilioURLs(u string) (withPort, withoutPort string) {
	scheme, rest, ok := strings.Cut(u, "://")
	if !ok {
		return u, u
	}
	end := strings.IndexAny(rest, "/?#")
	if end < 0 {
		end = len(rest)
	}
	authority, tail := rest[:end], rest[end:]
	userinfo := ""
	if at := strings.LastIndexByte(authority, '@'); at >= 0 {
		userinfo, authority = authority[:at+1], authority[at+1:]
	}
	host, hasPort := authority, false
	if i := strings.LastIndexByte(authority, ':'); i >= 0 && !strings.Contains(authority[i:], "]") {
		host, hasPort = authority[:i], true // "host:" (an empty port) too: the URL as given is one candidate
	}
	withoutPort = scheme + "://" + userinfo + host + tail
	if hasPort {
		return u, withoutPort
	}
	switch strings.ToLower(scheme) {
	case "https":
		return scheme + "://" + userinfo + host + ":443" + tail, withoutPort
	case "http":
		return scheme + "://" + userinfo + host + ":80" + tail, withoutPort
	}
	return u, withoutPort
}

// queryParam is the first value of name in u's query string, decoded.
func queryParam(u, name string) string {
	_, q, ok := strings.Cut(stripFragment(u), "?")
	if !ok {
		return ""
	}
	vs, _ := url.ParseQuery(q)
	return vs.Get(name)
}

// twilioStatus maps Twilio's message status to the normalized vocabulary.
var twilioStatus = map[string]string{
	"accepted":            switchboard.StatusAccepted,
	"scheduled":           switchboard.StatusAccepted,
	"queued":              switchboard.StatusQueued,
	"sending":             switchboard.StatusQueued,
	"sent":                switchboard.StatusSent,
	"partially_delivered": switchboard.StatusSent,
	"delivered":           switchboard.StatusDelivered,
	"undelivered":         switchboard.StatusUndelivered,
	"failed":              switchboard.StatusFailed,
	"canceled":            switchboard.StatusFailed,
	"read":                switchboard.StatusRead,
}

// Parse turns an inbound message (SmsStatus/MessageStatus "received", or no
// status) into a message.received event and a status callback into a
// message.status event. Parameters come from the query for GET, from the
// JSON object for a JSON body, and from the form otherwise.
func (c *Twilio) Parse(r *Request) ([]switchboard.Event, error) {
	p, err := twilioParams(r)
	if err != nil {
		return nil, err
	}
	id := firstOf(p, "MessageSid", "SmsMessageSid", "SmsSid")
	if id == "" {
		return nil, badPayload("twilio", "no MessageSid")
	}
	for _, k := range []string{"MessageSid", "MessageStatus", "From", "To", "Body"} {
		if vs := p[k]; len(vs) > 1 && slices.ContainsFunc(vs, func(v string) bool { return v != vs[0] }) {
			return nil, badPayload("twilio", "%s is given %d times with different values", k, len(vs))
		}
	}
	d := switchboard.EventData{
		MessageID: id,
		From:      E164(p.Get("From")),
		To:        E164(p.Get("To")),
		Segments:  atoi(p.Get("NumSegments")),
	}
	word := firstOf(p, "MessageStatus", "SmsStatus")
	if word == "" || word == "received" || word == "receiving" {
		d.Text = p.Get("Body")
		n, given := atoi(p.Get("NumMedia")), p.Has("NumMedia")
		for i := 0; (i < n || !given) && i < len(p); i++ {
			k := strconv.Itoa(i)
			u := p.Get("MediaUrl" + k)
			if u == "" && !given {
				break // without NumMedia: the MediaUrl<i> given from 0 on
			}
			if u != "" {
				d.Media = append(d.Media, switchboard.Media{URL: u, ContentType: p.Get("MediaContentType" + k)})
			}
		}
		if word == "receiving" && d.Text == "" && len(d.Media) == 0 {
			// A message still arriving, with nothing of it yet: no event.
			// As one, it would take the message's dedup key (an inbound
			// event's has no status), and the "received" callback that
			// brings the text would be dropped as its duplicate.
			return nil, nil
		}
		return []switchboard.Event{{Type: switchboard.TypeReceived, Data: d}}, nil
	}
	d.CarrierStatus = word
	d.Status = mapStatus(twilioStatus, word)
	if code := p.Get("ErrorCode"); code != "" && code != "0" {
		d.Error = &switchboard.Error{Code: code, Message: p.Get("ErrorMessage")}
	}
	if done := p.Get("RawDlrDoneDate"); done != "" {
		if t, err := time.Parse("0601021504", done); err == nil {
			d.OccurredAt = switchboard.TimePtr(t)
		}
	}
	return []switchboard.Event{{Type: switchboard.TypeStatus, Data: d}}, nil
}

func twilioParams(r *Request) (url.Values, error) {
	if !isGet(r) && isJSON(r.Header) {
		p, err := flatJSON(r.Body)
		if err != nil {
			return nil, badPayload("twilio", "JSON body: %v", err)
		}
		return p, nil
	}
	p, err := params(r)
	if err != nil {
		return nil, badPayload("twilio", "parameters are not a valid form: %v", err)
	}
	return p, nil
}

// flatJSON reads a JSON object's members whose values are strings, numbers
// or booleans as parameters.
func flatJSON(body []byte) (url.Values, error) {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var obj map[string]any
	if err := dec.Decode(&obj); err != nil {
		return nil, err
	}
	if obj == nil {
		return nil, errors.New("not an object")
	}
	p := make(url.Values, len(obj))
	for k, v := range obj {
		switch v := v.(type) {
		case string:
			p.Set(k, v)
		case json.Number:
			p.Set(k, v.String())
		case bool:
			p.Set(k, strconv.FormatBool(v))
		}
	}
	return p, nil
}

const twiMLEmpty = `<?xml version="1.0" encoding="UTF-8"?><Response/>`

// Reply answers an inbound message with empty TwiML (no reply message) and
// a status callback with an empty 200.
func (c *Twilio) Reply(r *Request, events []switchboard.Event) Response {
	if len(events) > 0 && events[0].Type == switchboard.TypeReceived {
		return Response{Status: http.StatusOK, ContentType: "text/xml", Body: []byte(twiMLEmpty)}
	}
	return Response{Status: http.StatusOK}
}

func (c *Twilio) simulate(kind string, m SimMessage, target string, now time.Time) (*http.Request, error) {
	p := url.Values{}
	p.Set("AccountSid", "AC"+strings.Repeat("0", 32))
	p.Set("ApiVersion", "2010-04-01")
	p.Set("From", m.From)
	p.Set("To", m.To)
	if kind == simInbound {
		id := orDefault(m.MessageID, "SM"+randomHex(16))
		p.Set("MessageSid", id)
		p.Set("SmsMessageSid", id)
		p.Set("SmsSid", id)
		p.Set("Body", m.Text)
		p.Set("NumMedia", "0")
		p.Set("NumSegments", "1")
		p.Set("SmsStatus", "received")
	} else {
		id := orDefault(m.MessageID, "SM"+randomHex(16))
		word := m.Status // Twilio's words include every normalized one
		p.Set("MessageSid", id)
		p.Set("SmsSid", id)
		p.Set("MessageStatus", word)
		p.Set("SmsStatus", word)
		if word == "failed" || word == "undelivered" {
			p.Set("ErrorCode", "30003")
		}
		if word == "delivered" || word == "undelivered" {
			p.Set("RawDlrDoneDate", now.UTC().Format("0601021504"))
		}
	}
	body := []byte(p.Encode())
	sig := TwilioSignature(string(c.token), target, p)
	req, err := newSimRequest(http.MethodPost, target, body)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("User-Agent", "TwilioProxy/1.1")
	req.Header.Set("I-Twilio-Idempotency-Token", randomUUID())
	req.Header.Set(twilioSignatureHeader, sig)
	return req, nil
}

// firstOf is the first non-empty value among the names.
func firstOf(p url.Values, names ...string) string {
	for _, n := range names {
		if v := p.Get(n); v != "" {
			return v
		}
	}
	return ""
}

// atoi reads a non-negative count; anything else is 0 (unknown).
func atoi(s string) int {
	n, err := strconv.Atoi(strings.TrimSpace(s))
	if err != nil || n < 0 {
		return 0
	}
	return n
}

// mapStatus maps a carrier's status word, unknown words to StatusUnknown.
func mapStatus(m map[string]string, word string) string {
	if s, ok := m[word]; ok {
		return s
	}
	return switchboard.StatusUnknown
}

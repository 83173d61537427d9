package carrier

import (
	"crypto/hmac"
	"crypto/sha256"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	switchboard "github.com/switchboard-gw/switchboard"
)

func init() { register("plivo", newPlivo) }

// Plivo is Plivo Messaging: inbound messages to an Application's
// message_url and per-message status callbacks, POSTed as a form (or GET
// with a query string). Messaging requests carry the V2 signature
// (X-Plivo-Signature-V2 / -Ma-V2 and -V2-Nonce): HMAC-SHA256 with the Auth
// Token over the URL without its query and the nonce. V2 does not cover the
// body, so a captured signature can be replayed with another body: the
// nonce must be remembered (Proof). Requests carrying the V3 headers (which
// also cover the parameters) are checked with V3 instead.
//
// Config: Secret is the Auth Token. The -Ma- headers, signed with the main
// account's token, are accepted too when Secret is that token.
type Plivo struct {
	token []byte
}

// plivoNonceTTL is how long a Plivo nonce is remembered. Nothing in a
// Plivo request is timestamped, so a signature never expires, and a V2
// signature does not cover the body: a captured signature and nonce could
// carry another body once the nonce is forgotten. A day would cover
// Plivo's retries; a week keeps such a replay out for that long, at one
// small key per callback.
const plivoNonceTTL = 7 * 24 * time.Hour

func newPlivo(cfg Config) (Carrier, error) {
	if cfg.Secret == "" {
		return nil, errors.New("plivo: secret (the Auth Token) is required")
	}
	return &Plivo{token: []byte(cfg.Secret)}, nil
}

// Verify checks V3 when its headers are present, else V2; any of the
// comma-separated signatures of X-Plivo-Signature-V{2,3} or -Ma-V{2,3} may
// match. Every nonce the request carries is returned in Proof, to be
// fresh and remembered, whichever family verified: a request carrying both
// could otherwise be replayed with one family's headers removed (without
// V3, with another body, which V2 does not cover), under a nonce never
// seen.
func (c *Plivo) Verify(r *Request) (Proof, error) {
	version := "V3"
	v2Nonce := r.Header.Get("X-Plivo-Signature-V2-Nonce")
	nonce := r.Header.Get("X-Plivo-Signature-V3-Nonce")
	if nonce == "" {
		version, nonce = "V2", v2Nonce
	}
	sigs := r.Header.Get("X-Plivo-Signature-"+version) + "," + r.Header.Get("X-Plivo-Signature-Ma-"+version)
	if nonce == "" || sigs == "," {
		return Proof{}, badSignature("plivo", "missing X-Plivo-Signature-V2 (or -V3) and nonce headers")
	}
	also := ""
	if v2Nonce != "" && v2Nonce != nonce {
		also = v2Nonce
	}
	matches := func(signed string) bool {
		m := hmac.New(sha256.New, c.token)
		m.Write([]byte(signed))
		mac := m.Sum(nil)
		for sig := range strings.SplitSeq(sigs, ",") {
			if equalBase64(strings.TrimSpace(sig), mac) {
				return true
			}
		}
		return false
	}
	ok := Proof{Nonce: nonce, Also: also, TTL: plivoNonceTTL}
	var u *url.URL
	for _, cand := range urlCandidates(stripFragment(r.URL)) {
		var err error
		if u, err = url.Parse(cand); err != nil {
			return Proof{}, badSignature("plivo", "request URL cannot be parsed")
		}
		if version == "V2" {
			if matches(u.Scheme + "://" + u.Host + u.Path + nonce) {
				return ok, nil
			}
			continue
		}
		// The SDKs' params are the POST body, or for GET the decoded query
		// (which then overrides the raw query pairs).
		src := string(r.Body)
		if isGet(r) {
			src = u.RawQuery
		}
		vs, err := url.ParseQuery(src)
		if err != nil {
			return Proof{}, badSignature("plivo", "parameters are not a valid form, so their V3 signature cannot be computed")
		}
		params := firstValues(vs)
		raw := plivoV3String(u, r.Method, params, nonce)
		if matches(raw) {
			return ok, nil
		}
		// only when the Go SDK's string did not match: as Python's and Node's
		if d, valid := plivoV3Decoded(u, r.Method, params, nonce); valid && d != raw && matches(d) {
			return ok, nil
		}
	}
	u, _ = url.Parse(stripFragment(r.URL))
	return Proof{}, badSignature("plivo", "%s signature does not match URL %q and the Auth Token", version, u.Scheme+"://"+u.Host+u.Path)
}

// plivoV3String is the V3 signed string, as Plivo's SDKs build it: the URL
// without query, "?" when there are parameters or a query, then for a
// query: its raw pairs sorted as k=v&k=v, and for POST "." and the sorted
// body parameters as k1v1k2v2 (for GET the body parameters join the query
// pairs); without a query: the sorted parameters (k=v& for GET, kv for
// POST); finally "." and the nonce.
func plivoV3String(u *url.URL, method string, params map[string]string, nonce string) string {
	s := u.Scheme + "://" + u.Host + u.Path
	if len(params) > 0 || u.RawQuery != "" {
		s += "?"
	}
	get := method == http.MethodGet
	if u.RawQuery != "" {
		q := plivoQueryMap(u.RawQuery)
		if get {
			for k, v := range params {
				q[k] = v
			}
			s = strings.TrimRight(s+plivoSorted(q, true), "&")
		} else {
			s = strings.TrimRight(s+plivoSorted(q, true)+"."+plivoSorted(params, false), ".")
		}
	} else {
		s += plivoSorted(params, get)
	}
	return s + "." + nonce
}

// plivoV3Decoded is the V3 string as Plivo's Python and Node SDKs build it,
// where they differ from the Go SDK (plivoV3String) and the vectors: the
// URL's query is decoded (parse_qs, qs.parse), so an escaped character
// ("%20", "%2F") or an "=" inside a value counts as itself, and a name
// given several values contributes each, sorted. For GET the decoded query
// is all the parameters. ok is false when the query is not a valid form.
func plivoV3Decoded(u *url.URL, method string, params map[string]string, nonce string) (string, bool) {
	if u.RawQuery == "" {
		return "", false // no query: the two agree
	}
	q, err := url.ParseQuery(u.RawQuery)
	if err != nil {
		return "", false
	}
	var qs strings.Builder
	for _, k := range slices.Sorted(maps.Keys(q)) {
		for _, v := range slices.Sorted(slices.Values(q[k])) {
			if qs.Len() > 0 {
				qs.WriteByte('&')
			}
			qs.WriteString(k + "=" + v)
		}
	}
	s := u.Scheme + "://" + u.Host + u.Path
	post := method != http.MethodGet && len(params) > 0
	if qs.Len() > 0 || post {
		s += "?" + qs.String()
	}
	if qs.Len() > 0 && post {
		s += "."
	}
	if post {
		s += plivoSorted(params, false)
	}
	return s + "." + nonce, true
}

// plivoQueryMap splits a raw query into its k=v pairs, undecoded; pairs
// without exactly one "=" are left out (as Plivo's SDKs do).
func plivoQueryMap(raw string) map[string]string {
	m := map[string]string{}
	for pair := range strings.SplitSeq(raw, "&") {
		if k, v, ok := strings.Cut(pair, "="); ok && !strings.Contains(v, "=") {
			m[k] = v
		}
	}
	return m
}

func plivoSorted(m map[string]string, query bool) string {
	var b strings.Builder
	for _, k := range slices.Sorted(maps.Keys(m)) {
		b.WriteString(k)
		if query {
			b.WriteByte('=')
		}
		b.WriteString(m[k])
		if query {
			b.WriteByte('&')
		}
	}
	return strings.TrimRight(b.String(), "&")
}

func firstValues(vs url.Values) map[string]string {
	m := make(map[string]string, len(vs))
	for k, v := range vs {
		m[k] = v[0]
	}
	return m
}

// plivoStatus maps Plivo message statuses.
var plivoStatus = map[string]string{
	"queued":      switchboard.StatusQueued,
	"sent":        switchboard.StatusSent,
	"delivered":   switchboard.StatusDelivered,
	"undelivered": switchboard.StatusUndelivered,
	"failed":      switchboard.StatusFailed,
	"rejected":    switchboard.StatusFailed,
	"read":        switchboard.StatusRead,
}

// plivoTime is the layout of Plivo's timestamps (UTC; an offset after it,
// "+00:00" as its API records have, is read too).
const plivoTime = "2006-01-02 15:04:05.999999"

// Parse reads a status callback (it has Status) or an inbound message.
// Inbound media are every Media<N> parameter in the order of N, whichever
// base Plivo uses.
func (c *Plivo) Parse(r *Request) ([]switchboard.Event, error) {
	p, err := params(r)
	if err != nil {
		return nil, badPayload("plivo", "parameters are not a valid form: %v", err)
	}
	id := p.Get("MessageUUID")
	if id == "" {
		return nil, badPayload("plivo", "no MessageUUID")
	}
	d := switchboard.EventData{MessageID: id, From: E164(p.Get("From")), To: E164(p.Get("To")), Segments: atoi(p.Get("Units"))}
	if word := p.Get("Status"); word != "" {
		d.Status = mapStatus(plivoStatus, word)
		d.CarrierStatus = word
		if code := p.Get("ErrorCode"); code != "" && code != "0" && code != "000" {
			d.Error = &switchboard.Error{Code: code}
		}
		for _, k := range []string{"DeliveryReportTime", "SentTime", "QueuedTime", "MessageTime"} {
			if t := parseTimeIn(p.Get(k), plivoTime, plivoTime+"Z07:00"); t != nil {
				d.OccurredAt = t
				break
			}
		}
		return []switchboard.Event{{Type: switchboard.TypeStatus, Data: d}}, nil
	}
	d.Text = orDefault(p.Get("Text"), p.Get("Body"))
	type media struct {
		n   int
		url string
	}
	var ms []media
	for k, v := range p {
		if n, err := strconv.Atoi(strings.TrimPrefix(k, "Media")); err == nil && strings.HasPrefix(k, "Media") && n >= 0 && v[0] != "" {
			ms = append(ms, media{n, v[0]})
		}
	}
	slices.SortFunc(ms, func(a, b media) int { return a.n - b.n })
	for _, m := range ms {
		d.Media = append(d.Media, switchboard.Media{URL: m.url})
	}
	return []switchboard.Event{{Type: switchboard.TypeReceived, Data: d}}, nil
}

// Reply is an empty 200 (no Message XML: no answer).
func (c *Plivo) Reply(*Request, []switchboard.Event) Response { return replyOK() }

func (c *Plivo) simulate(kind string, m SimMessage, target string, now time.Time) (*http.Request, error) {
	p := url.Values{}
	p.Set("MessageUUID", orDefault(m.MessageID, randomUUID()))
	p.Set("From", strings.TrimPrefix(m.From, "+"))
	p.Set("To", strings.TrimPrefix(m.To, "+"))
	p.Set("Type", "sms")
	p.Set("Units", "1")
	if kind == simInbound {
		p.Set("Text", m.Text)
		p.Set("TotalRate", "0.00000")
		p.Set("TotalAmount", "0.00000")
	} else {
		word := m.Status
		p.Set("Status", word)
		p.Set("ErrorCode", "")
		if s := plivoStatus[word]; s == switchboard.StatusFailed || s == switchboard.StatusUndelivered {
			p.Set("ErrorCode", "200")
		}
		p.Set("MessageTime", now.UTC().Format(plivoTime))
		if word == "delivered" || word == "undelivered" {
			p.Set("DeliveryReportTime", now.UTC().Format("2006-01-02 15:04:05.000000"))
		}
	}
	u, err := url.Parse(stripFragment(target))
	if err != nil {
		return nil, err
	}
	nonce := fmt.Sprintf("%020d", randomUint64())
	mac := hmac.New(sha256.New, c.token)
	mac.Write([]byte(u.Scheme + "://" + u.Host + u.Path + nonce))
	sig := strictBase64.EncodeToString(mac.Sum(nil))
	req, err := newSimRequest(http.MethodPost, target, []byte(p.Encode()))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("X-Plivo-Signature-V2", sig)
	req.Header.Set("X-Plivo-Signature-Ma-V2", sig)
	req.Header.Set("X-Plivo-Signature-V2-Nonce", nonce)
	return req, nil
}

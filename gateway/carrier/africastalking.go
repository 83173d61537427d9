package carrier

import (
	"errors"
	"net/http"
	"net/netip"
	"net/url"
	"time"

	switchboard "github.com/switchboard-gw/switchboard"
)

func init() { register("africastalking", newAfricasTalking) }

// AfricasTalking is Africa's Talking SMS: incoming messages and delivery
// reports POSTed as forms to the dashboard's callback URLs. Africa's
// Talking signs nothing, so the callback URL carries a secret token
// (?token=…) and, optionally, only the listed networks may call.
//
// Config: URLToken is the token put in the callback URLs (long and random);
// AllowedIPs, when not empty, are the CIDRs r.Remote must be in.
type AfricasTalking struct {
	token   string
	allowed []netip.Prefix
}

func newAfricasTalking(cfg Config) (Carrier, error) {
	if len(cfg.URLToken) < 16 {
		return nil, errors.New("africastalking: url_token is required, at least 16 characters (a long random secret put in the callback URL as ?token=…)")
	}
	return &AfricasTalking{token: cfg.URLToken, allowed: cfg.AllowedIPs}, nil
}

// Verify checks the token query parameter in constant time and, when
// AllowedIPs is set, the peer address. Errors never quote the URL, which
// holds the token.
func (c *AfricasTalking) Verify(r *Request) (Proof, error) {
	if len(c.allowed) > 0 {
		ok := false
		addr := r.Remote.Unmap()
		for _, p := range c.allowed {
			if addr.IsValid() && p.Contains(addr) {
				ok = true
				break
			}
		}
		if !ok {
			return Proof{}, badSignature("africastalking", "peer %s is not in allowed_ips", r.Remote)
		}
	}
	q, err := url.ParseQuery(rawQuery(r)) // q keeps the pairs it could read
	if q.Get("token") == "" {
		if err != nil {
			return Proof{}, badSignature("africastalking", "no token parameter in the callback URL (its query is malformed: %v)", err)
		}
		return Proof{}, badSignature("africastalking", "no token parameter in the callback URL")
	}
	if !equalString(q.Get("token"), c.token) {
		return Proof{}, badSignature("africastalking", "wrong token in the callback URL")
	}
	return Proof{}, nil
}

// africasTalkingStatus maps Africa's Talking delivery statuses.
var africasTalkingStatus = map[string]string{
	"Sent":      switchboard.StatusQueued,
	"Submitted": switchboard.StatusSent,
	"Buffered":  switchboard.StatusSent,
	"Success":   switchboard.StatusDelivered,
	"Rejected":  switchboard.StatusFailed,
	"Failed":    switchboard.StatusUndelivered,
}

// Parse reads a delivery report (id, status, phoneNumber, failureReason)
// or an incoming message (id, from, to, text, date in UTC). The form body
// is read for POST, the query (without token) for GET.
func (c *AfricasTalking) Parse(r *Request) ([]switchboard.Event, error) {
	p, err := params(r)
	if err != nil {
		return nil, badPayload("africastalking", "parameters are not a valid form: %v", err)
	}
	id := p.Get("id")
	if id == "" {
		return nil, badPayload("africastalking", "no id")
	}
	if word := p.Get("status"); word != "" {
		d := switchboard.EventData{
			MessageID: id, From: E164(p.Get("from")), To: E164(p.Get("phoneNumber")),
			Status: mapStatus(africasTalkingStatus, word), CarrierStatus: word,
		}
		if reason := p.Get("failureReason"); reason != "" {
			d.Error = &switchboard.Error{Code: reason}
		}
		return []switchboard.Event{{Type: switchboard.TypeStatus, Data: d}}, nil
	}
	d := switchboard.EventData{MessageID: id, From: E164(p.Get("from")), To: E164(p.Get("to")), Text: p.Get("text")}
	if t, err := time.Parse(time.DateTime, p.Get("date")); err == nil {
		d.OccurredAt = switchboard.TimePtr(t)
	} else {
		d.OccurredAt = parseTimePtr(p.Get("date"))
	}
	return []switchboard.Event{{Type: switchboard.TypeReceived, Data: d}}, nil
}

// Reply is an empty 200.
func (c *AfricasTalking) Reply(*Request, []switchboard.Event) Response { return replyOK() }

// africasTalkingWord is the status Africa's Talking would send.
var africasTalkingWord = map[string]string{
	switchboard.StatusAccepted:    "Sent",
	switchboard.StatusQueued:      "Sent",
	switchboard.StatusSent:        "Submitted",
	switchboard.StatusDelivered:   "Success",
	switchboard.StatusUndelivered: "Failed",
	switchboard.StatusFailed:      "Rejected",
}

func (c *AfricasTalking) simulate(kind string, m SimMessage, target string, now time.Time) (*http.Request, error) {
	p := url.Values{}
	if kind == simInbound {
		p.Set("date", now.UTC().Format(time.DateTime))
		p.Set("from", m.From)
		p.Set("id", orDefault(m.MessageID, randomUUID()))
		p.Set("linkId", randomHex(8))
		p.Set("text", m.Text)
		p.Set("to", m.To)
		p.Set("networkCode", "63902")
	} else {
		word := carrierWord(africasTalkingWord, m.Status)
		p.Set("id", orDefault(m.MessageID, "ATXid_"+randomHex(16)))
		p.Set("status", word)
		p.Set("phoneNumber", m.To)
		p.Set("networkCode", "63902")
		if word == "Failed" || word == "Rejected" {
			p.Set("failureReason", "AbsentSubscriber")
		}
		p.Set("retryCount", "0")
	}
	u, err := url.Parse(stripFragment(target))
	if err != nil {
		return nil, err
	}
	q := u.Query()
	q.Set("token", c.token)
	u.RawQuery = q.Encode()
	req, err := newSimRequest(http.MethodPost, u.String(), []byte(p.Encode()))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return req, nil
}

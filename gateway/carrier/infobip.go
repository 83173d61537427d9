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

func init() { register("infobip", newInfobip) }

// Infobip is Infobip SMS: inbound messages (renderer MO_JSON_2) and
// delivery reports, POSTed as {"results":[…]} JSON, many per request.
// Infobip signs nothing by default; a notification profile with BASIC
// security sends HTTP Basic credentials, which is what this carrier checks.
// (Infobip's HMAC option is not documented well enough to implement.)
//
// Config: Username and Password of the profile's BASIC security setting.
type Infobip struct {
	user, pass string
}

func newInfobip(cfg Config) (Carrier, error) {
	if cfg.Username == "" || cfg.Password == "" {
		return nil, errors.New("infobip: username and password (the notification profile's BASIC credentials) are required")
	}
	return &Infobip{user: cfg.Username, pass: cfg.Password}, nil
}

// Verify checks Authorization: Basic in constant time.
func (c *Infobip) Verify(r *Request) (Proof, error) {
	return Proof{}, checkBasic("infobip", r.Header, c.user, c.pass)
}

type infobipResult struct {
	MessageID    string `json:"messageId"`
	From         string `json:"from"`
	To           string `json:"to"`
	Sender       string `json:"sender"`
	Text         string `json:"text"`
	ReceivedAt   string `json:"receivedAt"`
	DoneAt       string `json:"doneAt"`
	SMSCount     int    `json:"smsCount"`
	MessageCount int    `json:"messageCount"`
	Status       *struct {
		GroupName   string `json:"groupName"`
		Name        string `json:"name"`
		Description string `json:"description"`
	} `json:"status"`
	Error *struct {
		GroupName   string     `json:"groupName"`
		ID          flexString `json:"id"`
		Name        string     `json:"name"`
		Description string     `json:"description"`
	} `json:"error"`
}

// infobipGroup maps Infobip status groups; infobipName refines by name.
var (
	infobipGroup = map[string]string{
		"PENDING":       switchboard.StatusSent,
		"DELIVERED":     switchboard.StatusDelivered,
		"UNDELIVERABLE": switchboard.StatusUndelivered,
		"EXPIRED":       switchboard.StatusUndelivered,
		"REJECTED":      switchboard.StatusFailed,
	}
	infobipName = map[string]string{
		"PENDING_ACCEPTED": switchboard.StatusQueued,
	}
)

// Parse turns each element of results into an event: a delivery report
// when it has a status object, else an inbound message. carrier_status is
// the status name (e.g. DELIVERED_TO_HANDSET), the error is Infobip's error
// unless its group is OK.
func (c *Infobip) Parse(r *Request) ([]switchboard.Event, error) {
	var body struct {
		Results []infobipResult `json:"results"`
	}
	if err := json.Unmarshal(r.Body, &body); err != nil {
		return nil, badPayload("infobip", "body is not an Infobip {\"results\":[…]} notification: %v", err)
	}
	if len(body.Results) == 0 {
		return nil, badPayload("infobip", "body has no results")
	}
	events := make([]switchboard.Event, 0, len(body.Results))
	for i, res := range body.Results {
		if res.MessageID == "" {
			return nil, badPayload("infobip", "result %d without messageId", i)
		}
		d := switchboard.EventData{MessageID: res.MessageID, To: E164(res.To), Segments: max(res.SMSCount, res.MessageCount)}
		if res.Status == nil {
			d.From, d.Text, d.OccurredAt = E164(res.From), res.Text, infobipTime(res.ReceivedAt)
			events = append(events, switchboard.Event{Type: switchboard.TypeReceived, Data: d})
			continue
		}
		d.From = E164(orDefault(res.Sender, res.From))
		d.CarrierStatus = orDefault(res.Status.Name, res.Status.GroupName)
		d.Status = mapStatus(infobipGroup, res.Status.GroupName)
		if s, ok := infobipName[res.Status.Name]; ok {
			d.Status = s
		}
		if e := res.Error; e != nil && e.GroupName != "OK" && (string(e.ID) != "0" || e.GroupName != "") {
			d.Error = &switchboard.Error{Code: orDefault(string(e.ID), e.Name), Message: orDefault(e.Description, e.Name)}
		}
		d.OccurredAt = infobipTime(res.DoneAt)
		events = append(events, switchboard.Event{Type: switchboard.TypeStatus, Data: d})
	}
	return events, nil
}

// infobipTime reads Infobip's times ("2025-01-15T10:30:00.123+0000"), or
// RFC 3339; nil when absent or malformed.
func infobipTime(s string) *switchboard.Time {
	for _, layout := range []string{"2006-01-02T15:04:05.999-0700", time.RFC3339Nano} {
		if t, err := time.Parse(layout, s); err == nil {
			return switchboard.TimePtr(t)
		}
	}
	return nil
}

// Reply is an empty 200.
func (c *Infobip) Reply(*Request, []switchboard.Event) Response { return replyOK() }

// infobipWord is the status Infobip would send for a normalized one:
// group id, group name, name.
var infobipWord = map[string][3]any{
	switchboard.StatusQueued:      {1, "PENDING", "PENDING_ACCEPTED"},
	switchboard.StatusAccepted:    {1, "PENDING", "PENDING_ACCEPTED"},
	switchboard.StatusSent:        {1, "PENDING", "PENDING_ENROUTE"},
	switchboard.StatusDelivered:   {3, "DELIVERED", "DELIVERED_TO_HANDSET"},
	switchboard.StatusUndelivered: {2, "UNDELIVERABLE", "UNDELIVERABLE_NOT_DELIVERED"},
	switchboard.StatusFailed:      {5, "REJECTED", "REJECTED_NETWORK"},
}

func (c *Infobip) simulate(kind string, m SimMessage, target string, now time.Time) (*http.Request, error) {
	at := now.UTC().Format("2006-01-02T15:04:05.000-0700")
	res := map[string]any{
		"messageId": orDefault(m.MessageID, randomDigits(19)), "to": strings.TrimPrefix(m.To, "+"), "smsCount": 1,
	}
	if kind == simInbound {
		keyword, rest, _ := strings.Cut(m.Text, " ")
		res["from"], res["text"], res["cleanText"], res["keyword"] = strings.TrimPrefix(m.From, "+"), m.Text, rest, strings.ToUpper(keyword)
		res["receivedAt"] = at
	} else {
		w, ok := infobipWord[m.Status]
		if !ok {
			w = [3]any{0, strings.ToUpper(m.Status), strings.ToUpper(m.Status)}
		}
		res["sender"], res["sentAt"], res["doneAt"] = strings.TrimPrefix(m.From, "+"), at, at
		res["status"] = map[string]any{"groupId": w[0], "groupName": w[1], "name": w[2], "description": "simulated"}
		res["error"] = map[string]any{"groupId": 0, "groupName": "OK", "id": 0, "name": "NO_ERROR", "description": "No Error", "permanent": false}
		if m.Status == switchboard.StatusUndelivered || m.Status == switchboard.StatusFailed {
			res["error"] = map[string]any{"groupId": 1, "groupName": "HANDSET_ERRORS", "id": 27, "name": "EC_ABSENT_SUBSCRIBER", "description": "Absent Subscriber", "permanent": false}
		}
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(map[string]any{"results": []any{res}}); err != nil {
		return nil, err
	}
	req, err := newSimRequest(http.MethodPost, target, bytes.TrimSuffix(buf.Bytes(), []byte("\n")))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.SetBasicAuth(c.user, c.pass)
	return req, nil
}

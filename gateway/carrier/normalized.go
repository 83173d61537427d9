package carrier

import (
	"bytes"
	"encoding/json"
	"net/http"
	"time"

	switchboard "github.com/switchboard-gw/switchboard"
)

// parseNormalized reads the body of the generic carriers (standard-webhooks,
// hmac, basic): one event in the normalized shape, or a JSON array of them.
//
//	{"type": "message.received",
//	 "data": {"message_id": "m-1", "from": "+15555550100", "to": "+15555550199",
//	          "text": "hi", "media": [{"url": "https://…", "content_type": "image/jpeg"}],
//	          "segments": 1}}
//	{"type": "message.status",
//	 "data": {"message_id": "m-1", "from": "+15555550199", "to": "+15555550100",
//	          "status": "undelivered", "carrier_status": "EXPIRED",
//	          "error": {"code": "30003", "message": "…"}, "occurred_at": "2025-01-15T10:31:05Z"}}
//
// type must be message.received or message.status, data.message_id is
// required, and a status event needs data.status. A status outside the
// normalized vocabulary becomes "unknown", kept in carrier_status;
// carrier_status defaults to status. Numbers are normalized with E164. The
// gateway's fields (id, timestamp, tenant, source, carrier) and unknown
// members are ignored.
func parseNormalized(carrier string, body []byte) ([]switchboard.Event, error) {
	body = bytes.TrimSpace(body)
	var in []switchboard.Event
	var err error
	if len(body) > 0 && body[0] == '[' {
		err = json.Unmarshal(body, &in)
	} else {
		in = make([]switchboard.Event, 1)
		err = json.Unmarshal(body, &in[0])
	}
	if err != nil {
		return nil, badPayload(carrier, "body is not a normalized event or an array of them: %v", err)
	}
	if len(in) == 0 {
		return nil, badPayload(carrier, "empty array: no events")
	}
	out := make([]switchboard.Event, len(in))
	for i, e := range in {
		d := e.Data
		if d.MessageID == "" {
			return nil, badPayload(carrier, "event %d: data.message_id is required", i)
		}
		d.From, d.To = E164(d.From), E164(d.To)
		switch e.Type {
		case switchboard.TypeReceived:
		case switchboard.TypeStatus:
			if d.Status == "" {
				return nil, badPayload(carrier, "event %d: data.status is required in a message.status event", i)
			}
			d.CarrierStatus = orDefault(d.CarrierStatus, d.Status)
			if switchboard.StatusRank(d.Status) == 0 {
				d.Status = switchboard.StatusUnknown
			}
		default:
			return nil, badPayload(carrier, "event %d: type %q is not %s or %s", i, e.Type, switchboard.TypeReceived, switchboard.TypeStatus)
		}
		if d.Error != nil && d.Error.Code == "" && d.Error.Message == "" {
			d.Error = nil
		}
		out[i] = switchboard.Event{Type: e.Type, Data: d}
	}
	return out, nil
}

// simNormalized is the body the generic carriers' simulations send.
func simNormalized(kind string, m SimMessage, now time.Time) []byte {
	e := switchboard.Event{Type: switchboard.TypeReceived}
	e.Data = switchboard.EventData{MessageID: orDefault(m.MessageID, "msg_"+randomHex(12)), From: m.From, To: m.To}
	if kind == simInbound {
		e.Data.Text = m.Text
	} else {
		e.Type = switchboard.TypeStatus
		e.Data.Status = m.Status
		if m.Status == switchboard.StatusFailed || m.Status == switchboard.StatusUndelivered {
			e.Data.Error = &switchboard.Error{Code: "simulated", Message: "simulated failure"}
		}
		e.Data.OccurredAt = switchboard.TimePtr(now)
	}
	b, _ := json.Marshal(struct {
		Type string                `json:"type"`
		Data switchboard.EventData `json:"data"`
	}{e.Type, e.Data})
	return b
}

// replyOK is the empty 200 most carriers expect.
func replyOK() Response { return Response{Status: http.StatusOK} }

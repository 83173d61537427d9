package delivery

import (
	"encoding/json"
	"net/url"
	"strconv"

	switchboard "github.com/switchboard-gw/switchboard"
	"github.com/switchboard-gw/switchboard/gateway/carrier"
	"github.com/switchboard-gw/switchboard/policy"
	"github.com/switchboard-gw/switchboard/queue"
)

func jsonUnmarshal(b []byte, v any) error {
	if len(b) == 0 {
		return errNoRaw
	}
	return json.Unmarshal(b, v)
}

// renderTwilio writes the event as Twilio's form fields, signed with
// X-Twilio-Signature over the destination URL with its twilio_auth_token,
// so an app written for Twilio verifies it with Twilio's own library
// whichever carrier the message came through.
func renderTwilio(d *policy.Destination, j *queue.Job) ([]byte, string, map[string]string, error) {
	var e switchboard.Event
	if err := json.Unmarshal(j.Event, &e); err != nil {
		return nil, "", nil, err
	}
	f := TwilioForm(&e, d.TwilioAccountSID)
	sig := carrier.TwilioSignature(d.TwilioAuthToken, d.URL, f)
	return []byte(f.Encode()), "application/x-www-form-urlencoded", map[string]string{"X-Twilio-Signature": sig}, nil
}

// TwilioForm is the event as the form fields Twilio would have sent.
func TwilioForm(e *switchboard.Event, accountSID string) url.Values {
	f := url.Values{}
	data := &e.Data
	f.Set("AccountSid", accountSID)
	f.Set("ApiVersion", "2010-04-01")
	f.Set("MessageSid", data.MessageID)
	f.Set("SmsSid", data.MessageID)
	f.Set("From", data.From)
	f.Set("To", data.To)
	if e.Type == switchboard.TypeReceived {
		f.Set("SmsMessageSid", data.MessageID)
		f.Set("SmsStatus", "received")
		f.Set("Body", data.Text)
		f.Set("NumMedia", strconv.Itoa(len(data.Media)))
		segments := data.Segments
		if segments == 0 {
			segments = 1
		}
		f.Set("NumSegments", strconv.Itoa(segments))
		for i, m := range data.Media {
			n := strconv.Itoa(i)
			f.Set("MediaUrl"+n, m.URL)
			f.Set("MediaContentType"+n, m.ContentType)
		}
		return f
	}
	f.Set("MessageStatus", data.Status)
	f.Set("SmsStatus", data.Status)
	if data.Error != nil {
		f.Set("ErrorCode", data.Error.Code)
		if data.Error.Message != "" {
			f.Set("ErrorMessage", data.Error.Message)
		}
	}
	return f
}

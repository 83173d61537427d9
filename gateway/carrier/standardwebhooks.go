package carrier

import (
	"errors"
	"net/http"
	"strings"
	"time"

	switchboard "github.com/switchboard-gw/switchboard"
	"github.com/switchboard-gw/switchboard/gateway/webhook"
)

func init() { register("standard-webhooks", newStandardWebhooks) }

// StandardWebhooks accepts callbacks signed the Standard Webhooks v1 way
// (webhook-id, webhook-timestamp, webhook-signature; see gateway/webhook),
// for senders that sign so — another Switchboard among them. The body is a
// normalized event or an array of them (see parseNormalized).
//
// Config: Secret is the "whsec_…" secret; several, separated by spaces or
// commas, are all accepted (rotation). ReplayWindow bounds
// webhook-timestamp.
type StandardWebhooks struct {
	secrets [][]byte
	window  time.Duration
}

func newStandardWebhooks(cfg Config) (Carrier, error) {
	var secrets [][]byte
	for s := range strings.FieldsFuncSeq(cfg.Secret, func(r rune) bool { return r == ',' || r == ' ' }) {
		key, err := webhook.ParseSecret(s)
		if err != nil {
			return nil, errors.New("standard-webhooks: secret: " + err.Error())
		}
		secrets = append(secrets, key)
	}
	if len(secrets) == 0 {
		return nil, errors.New(`standard-webhooks: secret ("whsec_…") is required`)
	}
	return &StandardWebhooks{secrets: secrets, window: cfg.ReplayWindow}, nil
}

// Verify checks the signature and that webhook-timestamp is within the
// replay window. Proof is empty: the webhook-id is, by the specification,
// the same on every retry of a message, so it identifies duplicates (which
// the gateway's dedup drops) rather than replays; a replay within the window
// is such a duplicate, since the signature covers id, time and body.
func (c *StandardWebhooks) Verify(r *Request) (Proof, error) {
	if err := webhook.Verify(c.secrets, r.Header, r.Body, now(r), c.window); err != nil {
		return Proof{}, badSignature("standard-webhooks", "%v", err)
	}
	return Proof{}, nil
}

// Parse reads the body as normalized events.
func (c *StandardWebhooks) Parse(r *Request) ([]switchboard.Event, error) {
	return parseNormalized("standard-webhooks", r.Body)
}

// Reply is an empty 200.
func (c *StandardWebhooks) Reply(*Request, []switchboard.Event) Response { return replyOK() }

func (c *StandardWebhooks) simulate(kind string, m SimMessage, target string, now time.Time) (*http.Request, error) {
	body := simNormalized(kind, m, now)
	req, err := newSimRequest(http.MethodPost, target, body)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	webhook.SetHeaders(req.Header, c.secrets[:1], "msg_"+randomHex(12), now, body)
	return req, nil
}

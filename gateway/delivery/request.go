package delivery

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/switchboard-gw/switchboard/gateway/webhook"
	"github.com/switchboard-gw/switchboard/policy"
	"github.com/switchboard-gw/switchboard/queue"
)

// NewRequest builds attempt number attempt of job j for push destination d,
// as it goes on the wire at now: a POST to d's URL with the body in d's
// format, the webhook-* headers signed with secrets (d's parsed secrets, see
// Secrets), the format's own headers (X-Twilio-Signature) and
// Switchboard-Attempt. The worker sends it; a pass-through proxies it. The
// error says whether the event cannot be rendered or the URL is bad; either
// will not get better with a retry.
func NewRequest(ctx context.Context, d *policy.Destination, secrets [][]byte, j *queue.Job, attempt int, now time.Time) (*http.Request, error) {
	body, contentType, extra, err := render(d, j)
	if err != nil {
		return nil, fmt.Errorf("cannot render event: %w", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, d.URL, bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("bad destination URL: %w", err)
	}
	h := req.Header
	h.Set("Content-Type", contentType)
	h.Set("User-Agent", UserAgent)
	h.Set(webhook.HeaderID, j.EventID)
	h.Set(webhook.HeaderTimestamp, strconv.FormatInt(now.Unix(), 10))
	h.Set(webhook.HeaderSignature, webhook.Sign(secrets, j.EventID, now, body))
	h.Set("Switchboard-Attempt", strconv.Itoa(attempt))
	if j.TraceParent != "" {
		h.Set("traceparent", j.TraceParent)
	}
	for k, v := range extra {
		h.Set(k, v)
	}
	return req, nil
}

// Secrets parses d's whsec_… secrets (validated by policy.Load) into the
// keys NewRequest signs with.
func Secrets(d *policy.Destination) [][]byte {
	keys := make([][]byte, 0, len(d.Secret))
	for _, s := range d.Secret {
		if key, err := policy.ParseSecret(s); err == nil {
			keys = append(keys, key)
		}
	}
	return keys
}

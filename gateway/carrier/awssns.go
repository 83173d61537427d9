package carrier

import (
	"context"
	"crypto"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	switchboard "github.com/switchboard-gw/switchboard"
)

func init() { register("aws-sns", newSNS) }

// SNSCertHost matches the hosts Amazon SNS signing certificates are
// fetched from and SubscribeURLs point to. New reads it; tests may replace
// it before building a carrier.
var SNSCertHost = regexp.MustCompile(`^sns\.[a-zA-Z0-9-]{3,}\.amazonaws\.com(\.cn)?$`)

// snsMaxAge is the oldest SNS Timestamp accepted: SNS retries a message,
// with its original Timestamp, for up to an hour under a custom policy.
const snsMaxAge = time.Hour

// SNS is AWS End User Messaging SMS (formerly Pinpoint SMS) delivering
// through Amazon SNS: two-way SMS (inbound) and configuration-set events
// (delivery reports), each an SNS Notification POSTed as a JSON envelope
// whose Message is the payload as a JSON string. Envelopes are signed by
// SNS (SignatureVersion 1: SHA1withRSA, 2: SHA256withRSA) with the
// certificate at SigningCertURL, fetched once per URL from an SNS host.
// Raw message delivery must be off on the subscription: it strips the
// signature.
//
// Config: TopicARNs are the topics this source accepts (required: a
// subscription to someone else's topic would otherwise be accepted);
// AutoConfirm says whether the gateway confirms subscriptions itself;
// HTTPClient fetches certificates and confirms.
type SNS struct {
	topics      []string
	autoConfirm bool
	client      *http.Client
	certHost    *regexp.Regexp
	window      time.Duration

	mu    sync.Mutex
	certs map[string]*rsa.PublicKey
}

func newSNS(cfg Config) (Carrier, error) {
	if len(cfg.TopicARNs) == 0 {
		return nil, errors.New("aws-sns: topic_arns (the SNS topics this source accepts) is required")
	}
	for _, arn := range cfg.TopicARNs {
		if !strings.HasPrefix(arn, "arn:") {
			return nil, fmt.Errorf("aws-sns: topic_arns: %q is not an ARN", arn)
		}
	}
	client := cfg.HTTPClient
	if client == nil {
		client = &http.Client{Timeout: 10 * time.Second}
	}
	return &SNS{
		topics: slices.Clone(cfg.TopicARNs), autoConfirm: cfg.AutoConfirm, client: client,
		certHost: SNSCertHost, window: cfg.ReplayWindow, certs: map[string]*rsa.PublicKey{},
	}, nil
}

// snsEnvelope is an SNS HTTP(S) message. Pointers tell absent from empty,
// which the canonical string depends on.
type snsEnvelope struct {
	Type             string  `json:"Type"`
	MessageID        string  `json:"MessageId"`
	Token            *string `json:"Token"`
	TopicArn         string  `json:"TopicArn"`
	Subject          *string `json:"Subject"`
	Message          string  `json:"Message"`
	Timestamp        string  `json:"Timestamp"`
	SignatureVersion string  `json:"SignatureVersion"`
	Signature        string  `json:"Signature"`
	SigningCertURL   string  `json:"SigningCertURL"`
	SubscribeURL     *string `json:"SubscribeURL"`
}

// canonical is the string SNS signs: "Name\nValue\n" for the message
// type's keys, in order, leaving out absent optional ones.
func (e *snsEnvelope) canonical() []byte {
	var b []byte
	add := func(k string, v *string) {
		if v != nil {
			b = append(append(append(append(b, k...), '\n'), *v...), '\n')
		}
	}
	add("Message", &e.Message)
	add("MessageId", &e.MessageID)
	if e.Type == "Notification" {
		add("Subject", e.Subject)
	} else {
		add("SubscribeURL", e.SubscribeURL)
	}
	add("Timestamp", &e.Timestamp)
	if e.Type != "Notification" {
		add("Token", e.Token)
	}
	add("TopicArn", &e.TopicArn)
	add("Type", &e.Type)
	return b
}

// Verify checks the envelope: a known Type, a TopicArn of TopicARNs, an
// https SigningCertURL on an SNS host ending in .pem, the RSA signature of
// the canonical string with that certificate, and a Timestamp no older
// than an hour (SNS retries keep it) nor further ahead than the replay
// window. The certificate is fetched once and cached; a failed fetch wraps
// switchboard.ErrUnavailable (503, SNS retries). There is no nonce:
// MessageId is the same on SNS's retries, so it is dedup material.
func (c *SNS) Verify(r *Request) (Proof, error) {
	var e snsEnvelope
	if err := json.Unmarshal(r.Body, &e); err != nil {
		return Proof{}, badSignature("aws-sns", "body is not an SNS message")
	}
	switch e.Type {
	case "Notification", "SubscriptionConfirmation", "UnsubscribeConfirmation":
	default:
		return Proof{}, badSignature("aws-sns", "message Type %q is not an SNS message type", e.Type)
	}
	if h := r.Header.Get("X-Amz-Sns-Message-Type"); h != "" && h != e.Type {
		return Proof{}, badSignature("aws-sns", "x-amz-sns-message-type %q differs from Type %q", h, e.Type)
	}
	if !slices.Contains(c.topics, e.TopicArn) {
		return Proof{}, badSignature("aws-sns", "topic %q is not in topic_arns", e.TopicArn)
	}
	if e.Signature == "" {
		return Proof{}, badSignature("aws-sns", "unsigned message (is raw message delivery on? it must be off)")
	}
	var hash crypto.Hash
	switch e.SignatureVersion {
	case "1":
		hash = crypto.SHA1
	case "2":
		hash = crypto.SHA256
	default:
		return Proof{}, badSignature("aws-sns", "SignatureVersion %q is not 1 or 2", e.SignatureVersion)
	}
	sig, err := base64.StdEncoding.DecodeString(e.Signature)
	if err != nil {
		return Proof{}, badSignature("aws-sns", "Signature is not base64")
	}
	key, err := c.cert(e.SigningCertURL)
	if err != nil {
		return Proof{}, err
	}
	var digest []byte
	if hash == crypto.SHA1 {
		d := sha1.Sum(e.canonical())
		digest = d[:]
	} else {
		d := sha256.Sum256(e.canonical())
		digest = d[:]
	}
	if rsa.VerifyPKCS1v15(key, hash, digest, sig) != nil {
		return Proof{}, badSignature("aws-sns", "signature does not verify with the certificate at %s", e.SigningCertURL)
	}
	ts, err := time.Parse(time.RFC3339Nano, e.Timestamp)
	if err != nil {
		return Proof{}, badSignature("aws-sns", "Timestamp is not RFC 3339")
	}
	if age := now(r).Sub(ts); age > max(snsMaxAge, c.window) || age < -c.window {
		return Proof{}, badSignature("aws-sns", "Timestamp %s is %s from now, outside the accepted age", e.Timestamp, age.Round(time.Second))
	}
	return Proof{}, nil
}

// cert returns the public key of the certificate at u, fetching it the
// first time.
func (c *SNS) cert(u string) (*rsa.PublicKey, error) {
	pu, err := url.Parse(u)
	if err != nil || pu.Scheme != "https" || pu.User != nil || pu.Port() != "" || !c.certHost.MatchString(pu.Hostname()) || !strings.HasSuffix(pu.Path, ".pem") {
		return nil, badSignature("aws-sns", "SigningCertURL %q is not an https .pem URL on an SNS host", u)
	}
	c.mu.Lock()
	defer c.mu.Unlock() // one fetch at a time: certificates change rarely
	if key, ok := c.certs[u]; ok {
		return key, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, badSignature("aws-sns", "SigningCertURL %q: %v", u, err)
	}
	resp, err := c.client.Do(req)
	if err != nil {
		return nil, tryLater("aws-sns", "cannot fetch the signing certificate %s: %v", u, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil || resp.StatusCode != http.StatusOK {
		return nil, tryLater("aws-sns", "cannot fetch the signing certificate %s: status %d", u, resp.StatusCode)
	}
	block, _ := pem.Decode(body)
	if block == nil {
		return nil, badSignature("aws-sns", "%s is not a PEM certificate", u)
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, badSignature("aws-sns", "%s: %v", u, err)
	}
	key, ok := cert.PublicKey.(*rsa.PublicKey)
	if !ok {
		return nil, badSignature("aws-sns", "%s does not hold an RSA key", u)
	}
	if len(c.certs) >= 32 {
		clear(c.certs)
	}
	c.certs[u] = key
	return key, nil
}

// SNSSubscription is what Parse returns, as its error, for a verified SNS
// SubscriptionConfirmation: no event, but a subscription of this source to
// TopicARN waiting to be confirmed by a GET of URL (SNS's SubscribeURL).
// When Auto (Config.AutoConfirm) the gateway should call Confirm, else log
// URL for the operator to open; either way it answers with Reply.
type SNSSubscription struct {
	TopicARN string
	URL      string
	Auto     bool
	client   *http.Client
	host     *regexp.Regexp
}

func (s *SNSSubscription) Error() string {
	return "aws-sns: subscription to " + s.TopicARN + " awaits confirmation"
}

// Confirm GETs URL, which must be https on an SNS host, and reports
// whether SNS accepted it.
func (s *SNSSubscription) Confirm(ctx context.Context) error {
	pu, err := url.Parse(s.URL)
	if err != nil || pu.Scheme != "https" || !s.host.MatchString(pu.Hostname()) {
		return fmt.Errorf("%w: aws-sns: confirm subscription: SubscribeURL %q is not https on an SNS host", switchboard.ErrBadPayload, s.URL)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.URL, nil)
	if err != nil {
		return fmt.Errorf("aws-sns: confirm subscription: %w", err)
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return fmt.Errorf("aws-sns: confirm subscription to %s: %w", s.TopicARN, err)
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("aws-sns: confirm subscription to %s: SNS answered %s", s.TopicARN, resp.Status)
	}
	return nil
}

// snsInbound is the two-way SMS payload; snsEvent a configuration-set event.
type snsPayload struct {
	InboundMessageID  string `json:"inboundMessageId"`
	OriginationNumber string `json:"originationNumber"`
	DestinationNumber string `json:"destinationNumber"`
	MessageBody       string `json:"messageBody"`

	EventType                string `json:"eventType"`
	EventTimestamp           int64  `json:"eventTimestamp"`
	MessageID                string `json:"messageId"`
	OriginationPhoneNumber   string `json:"originationPhoneNumber"`
	DestinationPhoneNumber   string `json:"destinationPhoneNumber"`
	MessageStatus            string `json:"messageStatus"`
	MessageStatusDescription string `json:"messageStatusDescription"`
	TotalMessageParts        int    `json:"totalMessageParts"`
}

// snsStatus maps the event types of End User Messaging SMS (TEXT_*, and
// MEDIA_* alike after the prefix).
var snsStatus = map[string]string{
	"QUEUED":                switchboard.StatusQueued,
	"SENT":                  switchboard.StatusSent,
	"PENDING":               switchboard.StatusSent,
	"SUCCESSFUL":            switchboard.StatusSent,
	"DELIVERED":             switchboard.StatusDelivered,
	"TTL_EXPIRED":           switchboard.StatusUndelivered,
	"UNREACHABLE":           switchboard.StatusUndelivered,
	"CARRIER_UNREACHABLE":   switchboard.StatusUndelivered,
	"BLOCKED":               switchboard.StatusFailed,
	"CARRIER_BLOCKED":       switchboard.StatusFailed,
	"SPAM":                  switchboard.StatusFailed,
	"INVALID":               switchboard.StatusFailed,
	"INVALID_MESSAGE":       switchboard.StatusFailed,
	"PROTECT_BLOCKED":       switchboard.StatusFailed,
	"FILE_INACCESSIBLE":     switchboard.StatusFailed,
	"FILE_TYPE_UNSUPPORTED": switchboard.StatusFailed,
	"FILE_SIZE_EXCEEDED":    switchboard.StatusFailed,
	"UNKNOWN":               switchboard.StatusUnknown,
}

func snsMapStatus(eventType string) string {
	rest, ok := strings.CutPrefix(eventType, "TEXT_")
	if !ok {
		rest, ok = strings.CutPrefix(eventType, "MEDIA_")
	}
	if !ok {
		return switchboard.StatusUnknown // RCS_*, VOICE_*
	}
	return mapStatus(snsStatus, rest)
}

// Parse reads a Notification's Message: a two-way SMS (inboundMessageId)
// is inbound, an event (eventType) a delivery report; its carrier_status
// is the eventType, and failures carry messageStatus and its description
// as the error. A SubscriptionConfirmation returns a *SNSSubscription; an
// UnsubscribeConfirmation, no events.
func (c *SNS) Parse(r *Request) ([]switchboard.Event, error) {
	var e snsEnvelope
	if err := json.Unmarshal(r.Body, &e); err != nil {
		return nil, badPayload("aws-sns", "body is not an SNS message: %v", err)
	}
	switch e.Type {
	case "SubscriptionConfirmation":
		if e.SubscribeURL == nil {
			return nil, badPayload("aws-sns", "SubscriptionConfirmation without SubscribeURL")
		}
		return nil, &SNSSubscription{TopicARN: e.TopicArn, URL: *e.SubscribeURL, Auto: c.autoConfirm, client: c.client, host: c.certHost}
	case "UnsubscribeConfirmation":
		return nil, nil
	case "Notification":
	default:
		return nil, badPayload("aws-sns", "message Type %q", e.Type)
	}
	var p snsPayload
	if err := json.Unmarshal([]byte(e.Message), &p); err != nil {
		return nil, badPayload("aws-sns", "Message is not an SMS payload: %v", err)
	}
	switch {
	case p.InboundMessageID != "":
		d := switchboard.EventData{
			MessageID: p.InboundMessageID, From: E164(p.OriginationNumber), To: E164(p.DestinationNumber),
			Text: p.MessageBody, OccurredAt: parseTimePtr(e.Timestamp),
		}
		return []switchboard.Event{{Type: switchboard.TypeReceived, Data: d}}, nil
	case p.EventType != "":
		if p.MessageID == "" {
			return nil, badPayload("aws-sns", "%s event without messageId", p.EventType)
		}
		d := switchboard.EventData{
			MessageID: p.MessageID, From: E164(p.OriginationPhoneNumber), To: E164(p.DestinationPhoneNumber),
			Status: snsMapStatus(p.EventType), CarrierStatus: p.EventType, Segments: p.TotalMessageParts,
		}
		if p.EventTimestamp > 0 {
			d.OccurredAt = switchboard.TimePtr(time.UnixMilli(p.EventTimestamp))
		}
		if s := d.Status; s == switchboard.StatusFailed || s == switchboard.StatusUndelivered || s == switchboard.StatusUnknown {
			if p.MessageStatus != "" || p.MessageStatusDescription != "" {
				d.Error = &switchboard.Error{Code: p.MessageStatus, Message: p.MessageStatusDescription}
			}
		}
		return []switchboard.Event{{Type: switchboard.TypeStatus, Data: d}}, nil
	}
	return nil, badPayload("aws-sns", "Message is neither a two-way SMS nor an SMS event")
}

// Reply is an empty 200.
func (c *SNS) Reply(*Request, []switchboard.Event) Response { return replyOK() }

func (c *SNS) simulate(string, SimMessage, string, time.Time) (*http.Request, error) {
	return nil, c.simulateErr()
}

func (*SNS) simulateErr() error {
	return errors.New("SNS messages are signed with Amazon's private key and cannot be forged; publish a test message to the topic instead (aws sns publish)")
}

// SNSStringToSign returns the string SNS signs for body, an SNS message's
// JSON envelope (its Signature is ignored): for tests that stand in for SNS
// and sign messages with their own key and certificate.
func SNSStringToSign(body []byte) ([]byte, error) {
	var e snsEnvelope
	if err := json.Unmarshal(body, &e); err != nil {
		return nil, fmt.Errorf("aws-sns: body is not an SNS message: %w", err)
	}
	return e.canonical(), nil
}

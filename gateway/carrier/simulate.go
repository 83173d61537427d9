package carrier

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"time"
)

// SimMessage is what a simulated callback says. Empty fields get defaults.
type SimMessage struct {
	// From and To are the event's numbers: for "inbound" the customer and
	// our number (defaults +15555550100 and +15555550199), for "status" our
	// number and the recipient (the other way round).
	From, To string
	// Text is the inbound message's text (default "Hello from switchboard").
	Text string
	// Status is the delivery status of a "status" callback: a normalized
	// word (delivered, failed, …) or the carrier's own (default delivered).
	Status string
	// MessageID is the carrier's message id (default: a random id in the
	// carrier's format, so that repeated simulations are not deduplicated).
	MessageID string
	// Part and Parts make an inbound message one part of a longer one,
	// Part of Parts, the parts sharing PartRef (vonage-sms's concat-part,
	// concat-total, concat-ref; other carriers join parts themselves).
	Part, Parts int
	PartRef     string
}

// Simulation kinds.
const (
	simInbound = "inbound"
	simStatus  = "status"
)

// simulator is implemented by carriers that can forge their own callbacks
// from a source's credentials.
type simulator interface {
	simulate(kind string, m SimMessage, target string, now time.Time) (*http.Request, error)
}

// Simulate builds the callback the carrier of cfg would send to targetURL
// for kind "inbound" (a received message) or "status" (a delivery report),
// signed with cfg's credentials and timestamped now, so that a gateway with
// the same source configuration accepts it. targetURL must be the public URL
// the gateway sees (URL-signed schemes cover it); to send the request
// elsewhere, change req.URL and req.Host afterwards. The request has no
// context; add one with req.WithContext.
func Simulate(cfg Config, kind string, m SimMessage, targetURL string, now time.Time) (*http.Request, error) {
	if cfg.Carrier == "aws-sns" { // before New, whose complaints would be about the source's keys
		return nil, fmt.Errorf("simulate aws-sns: %w", (&SNS{}).simulateErr())
	}
	if cfg.Carrier == "telnyx" && cfg.PrivateKey == "" { // before New, which would ask for a public key
		return nil, errors.New("simulate telnyx: signing needs the private key (base64 Ed25519 seed)")
	}
	c, err := New(cfg)
	if err != nil {
		return nil, err
	}
	s, ok := c.(simulator)
	if !ok {
		return nil, fmt.Errorf("simulate %s: this carrier's callbacks cannot be simulated", cfg.Carrier)
	}
	switch kind {
	case simInbound:
		m.From = orDefault(m.From, "+15555550100")
		m.To = orDefault(m.To, "+15555550199")
		m.Text = orDefault(m.Text, "Hello from switchboard")
	case simStatus:
		m.From = orDefault(m.From, "+15555550199")
		m.To = orDefault(m.To, "+15555550100")
		m.Status = orDefault(m.Status, "delivered")
	default:
		return nil, fmt.Errorf("simulate %s: kind %q is not inbound or status", cfg.Carrier, kind)
	}
	if now.IsZero() {
		now = time.Now()
	}
	req, err := s.simulate(kind, m, targetURL, now)
	if err != nil {
		return nil, fmt.Errorf("simulate %s: %w", cfg.Carrier, err)
	}
	return req, nil
}

func newSimRequest(method, target string, body []byte) (*http.Request, error) {
	req, err := http.NewRequest(method, stripFragment(target), bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("User-Agent", "switchboard-simulate")
	return req, nil
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// carrierWord is the carrier's status word for a normalized status, or
// status itself when it is not one of the keys of words.
func carrierWord(words map[string]string, status string) string {
	if w, ok := words[status]; ok {
		return w
	}
	return status
}

// randomHex is n random bytes in lower-case hex.
func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// randomDigits is n random decimal digits.
func randomDigits(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	for i := range b {
		b[i] = '0' + b[i]%10
	}
	return string(b)
}

// randomUint64 is a random number.
func randomUint64() uint64 {
	var b [8]byte
	rand.Read(b[:])
	return binary.BigEndian.Uint64(b[:])
}

// randomUUID is a random (version 4) UUID.
func randomUUID() string {
	b := make([]byte, 16)
	rand.Read(b)
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b)
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

// Package webhook signs and verifies webhooks the Standard Webhooks v1 way
// (standardwebhooks.com): an HMAC-SHA256 over "id.timestamp.body" keyed with
// a secret, sent in the webhook-id, webhook-timestamp and webhook-signature
// headers. The gateway signs its deliveries with it, and the standard-webhooks
// carrier, the simulator and the sink verify with it.
package webhook

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Header names. They are sent lower-case, as the specification writes them;
// http.Header canonicalizes them on the wire.
const (
	HeaderID        = "webhook-id"
	HeaderTimestamp = "webhook-timestamp"
	HeaderSignature = "webhook-signature"
)

// SecretPrefix starts the text form of a secret: "whsec_" and the base64 of
// the key bytes.
const SecretPrefix = "whsec_"

// DefaultTolerance is how far webhook-timestamp may be from now when Verify
// is given no tolerance.
const DefaultTolerance = 5 * time.Minute

// Errors returned by Verify. Each names a reason; none holds a secret.
var (
	// ErrMissingHeader: webhook-id, webhook-timestamp or webhook-signature
	// is absent or empty.
	ErrMissingHeader = errors.New("webhook: missing header")
	// ErrTimestamp: webhook-timestamp is not Unix seconds, or is further
	// from now than the tolerance.
	ErrTimestamp = errors.New("webhook: timestamp out of tolerance")
	// ErrNoMatch: no v1 signature in webhook-signature matches any secret.
	ErrNoMatch = errors.New("webhook: no matching signature")
)

// ParseSecret decodes a secret written as "whsec_<base64>". As in the
// Standard Webhooks libraries, the prefix is optional and what follows is
// always standard base64. The error says what is wrong without quoting the
// secret.
func ParseSecret(s string) ([]byte, error) {
	b64 := strings.TrimPrefix(strings.TrimSpace(s), SecretPrefix)
	if b64 == "" {
		return nil, errors.New("webhook: secret is empty")
	}
	key, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		// Unpadded base64 is a common hand-written form; accept it.
		key, err = base64.RawStdEncoding.DecodeString(b64)
	}
	if err != nil {
		return nil, errors.New(`webhook: secret is not "whsec_" followed by standard base64`)
	}
	if len(key) == 0 {
		return nil, errors.New("webhook: secret is empty")
	}
	return key, nil
}

// Sign returns the webhook-signature header value for one message: a
// "v1,<base64 HMAC-SHA256 of id.timestamp.body>" entry per secret, in order,
// separated by spaces. ts is sent as whole Unix seconds.
func Sign(secrets [][]byte, id string, ts time.Time, body []byte) string {
	var tsBuf [20]byte
	unix := strconv.AppendInt(tsBuf[:0], ts.Unix(), 10)
	out := make([]byte, 0, len(secrets)*(len("v1, ")+sigLen))
	var sum [sha256.Size]byte
	for i, secret := range secrets {
		if i > 0 {
			out = append(out, ' ')
		}
		out = append(out, "v1,"...)
		out = base64.StdEncoding.AppendEncode(out, mac(sum[:0], secret, id, unix, body))
	}
	return string(out)
}

// SetHeaders sets webhook-id, webhook-timestamp and webhook-signature on h
// for a message signed with secrets.
func SetHeaders(h http.Header, secrets [][]byte, id string, ts time.Time, body []byte) {
	h.Set(HeaderID, id)
	h.Set(HeaderTimestamp, strconv.FormatInt(ts.Unix(), 10))
	h.Set(HeaderSignature, Sign(secrets, id, ts, body))
}

// Verify checks a received message: its webhook-id must be present, its
// webhook-timestamp within tolerance of now (tolerance <= 0 means
// DefaultTolerance), and at least one of the space-separated "v1,…" entries
// of webhook-signature must be the HMAC of id.timestamp.body under one of
// secrets. Other signature versions are ignored. MACs are compared in
// constant time. Errors wrap ErrMissingHeader, ErrTimestamp or ErrNoMatch.
func Verify(secrets [][]byte, header http.Header, body []byte, now time.Time, tolerance time.Duration) error {
	id := get(header, HeaderID)
	tsText := get(header, HeaderTimestamp)
	sigs := get(header, HeaderSignature)
	switch {
	case id == "":
		return fmt.Errorf("%w %s", ErrMissingHeader, HeaderID)
	case tsText == "":
		return fmt.Errorf("%w %s", ErrMissingHeader, HeaderTimestamp)
	case sigs == "":
		return fmt.Errorf("%w %s", ErrMissingHeader, HeaderSignature)
	}
	ts, err := strconv.ParseInt(tsText, 10, 64)
	if err != nil {
		return fmt.Errorf("%w: %s is not Unix seconds", ErrTimestamp, HeaderTimestamp)
	}
	if tolerance <= 0 {
		tolerance = DefaultTolerance
	}
	if skew := now.Unix() - ts; skew > int64(tolerance/time.Second) || -skew > int64(tolerance/time.Second) {
		return fmt.Errorf("%w: %s is %ds from now, tolerance %s", ErrTimestamp, HeaderTimestamp, skew, tolerance)
	}
	var sum [sha256.Size]byte
	var got [sha256.Size + 1]byte // DecodedLen of 44 characters
	for _, secret := range secrets {
		want := mac(sum[:0], secret, id, []byte(tsText), body)
		for entry := range strings.FieldsSeq(sigs) {
			b64, ok := strings.CutPrefix(entry, "v1,")
			if !ok || len(b64) != sigLen {
				continue
			}
			n, err := strictBase64.Decode(got[:], []byte(b64))
			if err != nil || n != sha256.Size {
				continue
			}
			if hmac.Equal(got[:n], want) {
				return nil
			}
		}
	}
	return ErrNoMatch
}

// strictBase64 refuses non-zero padding bits, so that no two signature
// texts decode to the same MAC.
var strictBase64 = base64.StdEncoding.Strict()

// sigLen is the length of a base64 HMAC-SHA256.
const sigLen = 44

// mac appends HMAC-SHA256(secret, id "." ts "." body) to dst.
func mac(dst, secret []byte, id string, ts, body []byte) []byte {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(id))
	m.Write([]byte{'.'})
	m.Write(ts)
	m.Write([]byte{'.'})
	m.Write(body)
	return m.Sum(dst)
}

// get reads a header by its canonical name, falling back to the lower-case
// key a hand-built map may hold.
func get(h http.Header, name string) string {
	if v := h.Get(name); v != "" {
		return v
	}
	if vs := h[name]; len(vs) > 0 {
		return vs[0]
	}
	return ""
}

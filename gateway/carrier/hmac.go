package carrier

import (
	"crypto/hmac"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"net/http"
	"net/textproto"
	"strings"
	"time"

	switchboard "github.com/switchboard-gw/switchboard"
)

func init() { register("hmac", newHMAC) }

// HMAC accepts callbacks whose raw body is signed with a shared secret in
// one header, the way many webhook senders do it, e.g. GitHub's
// "X-Hub-Signature-256: sha256=<hex>". The body is a normalized event or an
// array of them (see parseNormalized).
//
// Config: Secret (the key, used as given), Header (required), Algorithm
// sha1, sha256 (default) or sha512, Encoding hex (default; either case) or
// base64 (standard, padded), Prefix before the MAC in the header (e.g.
// "sha256="; compared ignoring case). The scheme signs no time, so there is
// no replay window: a replay is a duplicate, dropped by the gateway's dedup.
type HMAC struct {
	key      []byte
	header   string
	newHash  func() hash.Hash
	encoding string
	prefix   string
	label    string
}

func newHMAC(cfg Config) (Carrier, error) {
	c := &HMAC{key: []byte(cfg.Secret), header: textproto.CanonicalMIMEHeaderKey(strings.TrimSpace(cfg.Header)), prefix: cfg.Prefix}
	if cfg.Secret == "" {
		return nil, errors.New("hmac: secret is required")
	}
	if c.header == "" {
		return nil, errors.New("hmac: header (the header that carries the signature) is required")
	}
	switch strings.ToLower(orDefault(cfg.Algorithm, "sha256")) {
	case "sha1":
		c.newHash, c.label = sha1.New, "HMAC-SHA1"
	case "sha256":
		c.newHash, c.label = sha256.New, "HMAC-SHA256"
	case "sha512":
		c.newHash, c.label = sha512.New, "HMAC-SHA512"
	default:
		return nil, fmt.Errorf("hmac: algorithm %q is not sha1, sha256 or sha512", cfg.Algorithm)
	}
	switch c.encoding = strings.ToLower(orDefault(cfg.Encoding, "hex")); c.encoding {
	case "hex", "base64":
	default:
		return nil, fmt.Errorf("hmac: encoding %q is not hex or base64", cfg.Encoding)
	}
	return c, nil
}

// Verify checks the header's MAC of the raw body in constant time.
func (c *HMAC) Verify(r *Request) (Proof, error) {
	v := strings.TrimSpace(r.Header.Get(c.header))
	if v == "" {
		return Proof{}, badSignature("hmac", "missing %s header", c.header)
	}
	if len(v) < len(c.prefix) || !strings.EqualFold(v[:len(c.prefix)], c.prefix) {
		return Proof{}, badSignature("hmac", "%s does not start with %q", c.header, c.prefix)
	}
	sig := v[len(c.prefix):]
	mac := c.mac(r.Body)
	ok := false
	if c.encoding == "hex" {
		ok = equalHex(sig, mac)
	} else {
		ok = equalBase64(sig, mac)
	}
	if !ok {
		return Proof{}, badSignature("hmac", "%s is not the %s (%s) of the body", c.header, c.label, c.encoding)
	}
	return Proof{}, nil
}

func (c *HMAC) mac(body []byte) []byte {
	m := hmac.New(c.newHash, c.key)
	m.Write(body)
	return m.Sum(nil)
}

// Parse reads the body as normalized events.
func (c *HMAC) Parse(r *Request) ([]switchboard.Event, error) { return parseNormalized("hmac", r.Body) }

// Reply is an empty 200.
func (c *HMAC) Reply(*Request, []switchboard.Event) Response { return replyOK() }

func (c *HMAC) simulate(kind string, m SimMessage, target string, now time.Time) (*http.Request, error) {
	body := simNormalized(kind, m, now)
	req, err := newSimRequest(http.MethodPost, target, body)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	sig := hex.EncodeToString(c.mac(body))
	if c.encoding == "base64" {
		sig = base64.StdEncoding.EncodeToString(c.mac(body))
	}
	req.Header.Set(c.header, c.prefix+sig)
	return req, nil
}

package carrier

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/json"
	"errors"
	"hash"
	"math"
	"slices"
	"strings"
	"time"
)

// jwtHashes are the HMAC JWS algorithms the carriers use.
var jwtHashes = map[string]func() hash.Hash{
	"HS256": sha256.New,
	"HS384": sha512.New384,
	"HS512": sha512.New,
}

var jwtBase64 = base64.RawURLEncoding.Strict()

// verifyJWT checks a compact JWS signed with key by one of algs (HMAC
// only: "none" and public-key algorithms are refused, so a token cannot
// pick its own check) and decodes its claims into claims. Errors wrap
// ErrBadSignature and name the carrier.
func verifyJWT(carrier, token string, key []byte, algs []string, claims any) error {
	h64, rest, ok1 := strings.Cut(token, ".")
	p64, s64, ok2 := strings.Cut(rest, ".")
	if !ok1 || !ok2 || strings.Contains(s64, ".") {
		return badSignature(carrier, "token is not a compact JWT")
	}
	var header struct {
		Alg string `json:"alg"`
	}
	hb, err := jwtBase64.DecodeString(h64)
	if err != nil || json.Unmarshal(hb, &header) != nil {
		return badSignature(carrier, "token header is not base64url JSON")
	}
	if !slices.Contains(algs, header.Alg) {
		return badSignature(carrier, "token algorithm %q is not one of %s", header.Alg, strings.Join(algs, ", "))
	}
	sig, err := jwtBase64.DecodeString(s64)
	if err != nil {
		return badSignature(carrier, "token signature is not base64url")
	}
	m := hmac.New(jwtHashes[header.Alg], key)
	m.Write([]byte(token[:len(h64)+1+len(p64)]))
	if !hmac.Equal(sig, m.Sum(nil)) {
		return badSignature(carrier, "token signature does not match the secret")
	}
	pb, err := jwtBase64.DecodeString(p64)
	if err != nil || json.Unmarshal(pb, claims) != nil {
		return badSignature(carrier, "token claims are not base64url JSON")
	}
	return nil
}

// signJWT makes a compact HS256 JWS of claims, for simulations.
func signJWT(key []byte, claims any) (string, error) {
	payload, err := json.Marshal(claims)
	if err != nil {
		return "", err
	}
	s := jwtBase64.EncodeToString([]byte(`{"alg":"HS256","typ":"JWT"}`)) + "." + jwtBase64.EncodeToString(payload)
	m := hmac.New(sha256.New, key)
	m.Write([]byte(s))
	return s + "." + jwtBase64.EncodeToString(m.Sum(nil)), nil
}

// numericDate is a JWT time claim: seconds since the epoch, possibly with a
// fraction.
type numericDate struct {
	time.Time
	set bool
}

func (d *numericDate) UnmarshalJSON(b []byte) error {
	var f float64
	if err := json.Unmarshal(b, &f); err != nil {
		return err
	}
	if math.IsNaN(f) || math.IsInf(f, 0) || f < 0 || f > 1<<40 {
		return errBadDate
	}
	sec, frac := math.Modf(f)
	d.Time, d.set = time.Unix(int64(sec), int64(frac*1e9)), true
	return nil
}

func (d numericDate) MarshalJSON() ([]byte, error) { return json.Marshal(d.Unix()) }

var errBadDate = errors.New("time claim out of range")

package carrier

import (
	"crypto/hmac"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	switchboard "github.com/switchboard-gw/switchboard"
)

// badSignature is an error for a request that failed verification:
// "verify <carrier>: <why>: bad signature". why must not hold a secret.
func badSignature(carrier, format string, args ...any) error {
	return fmt.Errorf("verify %s: %s: %w", carrier, fmt.Sprintf(format, args...), switchboard.ErrBadSignature)
}

// tryLater is an error for a callback that cannot be verified now but will
// be when the carrier retries it (503): errors.Is(err,
// switchboard.ErrUnavailable) holds, and the text says why (not "store
// unavailable": the store is fine).
func tryLater(carrier, format string, args ...any) error {
	return tryLaterError{fmt.Sprintf("verify %s: %s", carrier, fmt.Sprintf(format, args...))}
}

type tryLaterError struct{ msg string }

func (e tryLaterError) Error() string { return e.msg + " (answered 503; the carrier retries)" }
func (e tryLaterError) Unwrap() error { return switchboard.ErrUnavailable }

// badPayload is an error for a verified request that cannot be understood.
func badPayload(carrier, format string, args ...any) error {
	return fmt.Errorf("parse %s: %s: %w", carrier, fmt.Sprintf(format, args...), switchboard.ErrBadPayload)
}

// strictBase64 refuses non-zero padding bits, so that a changed character
// of a signature never decodes to the same bytes.
var strictBase64 = base64.StdEncoding.Strict()

// equalBase64 reports, in constant time, whether sig is the standard base64
// of mac.
func equalBase64(sig string, mac []byte) bool {
	got, err := strictBase64.DecodeString(sig)
	return err == nil && hmac.Equal(got, mac)
}

// equalHex reports, in constant time, whether sig is the hex of mac, in
// either case.
func equalHex(sig string, mac []byte) bool {
	if len(sig) != 2*len(mac) {
		return false
	}
	got, err := hex.DecodeString(sig)
	return err == nil && hmac.Equal(got, mac)
}

// equalString compares two credentials in constant time. The lengths leak,
// as with every MAC comparison.
func equalString(a, b string) bool {
	return subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1
}

// checkBasic checks an Authorization: Basic header against user and pass,
// comparing both parts in constant time and always both.
func checkBasic(carrier string, h http.Header, user, pass string) error {
	if h.Get("Authorization") == "" {
		return badSignature(carrier, "missing Authorization header")
	}
	u, p, ok := (&http.Request{Header: h}).BasicAuth()
	if !ok {
		return badSignature(carrier, "Authorization is not Basic credentials")
	}
	userOK := equalString(u, user)
	passOK := equalString(p, pass)
	if !userOK || !passOK {
		return badSignature(carrier, "wrong Basic credentials")
	}
	return nil
}

// unixTime reads Unix seconds from a signed header or field.
func unixTime(s string) (time.Time, bool) {
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return time.Time{}, false
	}
	return time.Unix(n, 0), true
}

// checkWindow refuses a signed time further than window from now.
func checkWindow(carrier, what string, ts, now time.Time, window time.Duration) error {
	if d := now.Sub(ts); d > window || d < -window {
		return badSignature(carrier, "%s %s is %s from now, outside the %s window",
			what, ts.UTC().Format(time.RFC3339), d.Round(time.Second), window)
	}
	return nil
}

// nonceTTL is how long a nonce signed at ts must be remembered: as long as
// a request carrying it would pass checkWindow.
func nonceTTL(ts, now time.Time, window time.Duration) time.Duration {
	ttl := ts.Add(window).Sub(now) + time.Second
	if ttl < time.Second {
		ttl = time.Second
	}
	return ttl
}

// now is the arrival time of r, or the clock when the gateway left it zero.
func now(r *Request) time.Time {
	if r.Now.IsZero() {
		return time.Now()
	}
	return r.Now
}

// mediaType is the lower-case media type of the request body, without
// parameters; "" when absent or unparseable.
func mediaType(h http.Header) string {
	mt, _, err := mime.ParseMediaType(h.Get("Content-Type"))
	if err != nil {
		return ""
	}
	return mt
}

// isJSON reports whether the body is declared as JSON.
func isJSON(h http.Header) bool {
	mt := mediaType(h)
	return mt == "application/json" || (len(mt) > 5 && mt[len(mt)-5:] == "+json")
}

// isGet reports whether the request carries its parameters in the query.
func isGet(r *Request) bool { return r.Method == http.MethodGet || r.Method == http.MethodHead }

// rawQuery is the query of r as sent: r.RawQuery, or the query part of r.URL.
func rawQuery(r *Request) string {
	if r.RawQuery != "" {
		return r.RawQuery
	}
	u := stripFragment(r.URL)
	for i := 0; i < len(u); i++ {
		if u[i] == '?' {
			return u[i+1:]
		}
	}
	return ""
}

// stripFragment removes a "#…" suffix, which carriers never send but which
// an operator may paste from a carrier's console.
// urlCandidates are the URLs a carrier may have signed for a request to u:
// u, u with its scheme's default port written out when it names no port,
// and u without its port when it names one — the rule Twilio's SDKs
// apply (twilioURLs), for every URL-signed carrier. A carrier signs the
// URL as it was configured, "https://h:443/p" and "https://h/p" are one
// endpoint, and a proxy may forward a port (X-Forwarded-Port) the carrier
// never saw.
func urlCandidates(u string) []string {
	withPort, withoutPort := twilioURLs(u)
	out := []string{u}
	for _, c := range []string{withPort, withoutPort} {
		if !slices.Contains(out, c) {
			out = append(out, c)
		}
	}
	return out
}

func stripFragment(u string) string {
	for i := 0; i < len(u); i++ {
		if u[i] == '#' {
			return u[:i]
		}
	}
	return u
}

// params are the callback's parameters: the query string for GET, the form
// body otherwise.
func params(r *Request) (url.Values, error) {
	// Verify and Parse both need the parameters: parse them once per
	// request. Callers must not modify the values.
	src := ""
	if isGet(r) {
		src = rawQuery(r)
		if r.parsed && src == r.formSrc {
			return r.form, r.formErr
		}
	} else {
		if r.parsed && string(r.Body) == r.formSrc { // compared without a copy
			return r.form, r.formErr
		}
		src = string(r.Body)
	}
	r.form, r.formErr = parseForm(src)
	r.formSrc, r.parsed = src, true
	return r.form, r.formErr
}

// parseForm is url.ParseQuery with the map sized up front and one backing
// array for the values of single-valued names: a carrier's form has some
// forty fields, and the growing map and per-value slices were most of
// ParseQuery's cost on the ingest path. Same result and errors
// (FuzzParseForm compares them).
func parseForm(s string) (url.Values, error) {
	n := strings.Count(s, "&") + 1
	m := make(url.Values, n)
	vals := make([]string, 0, n)
	var err error
	for s != "" {
		var pair string
		pair, s, _ = strings.Cut(s, "&")
		if strings.Contains(pair, ";") {
			if err == nil {
				err = errors.New("invalid semicolon separator in query")
			}
			continue
		}
		if pair == "" {
			continue
		}
		key, value, _ := strings.Cut(pair, "=")
		key, err1 := url.QueryUnescape(key)
		if err1 != nil {
			if err == nil {
				err = err1
			}
			continue
		}
		value, err1 = url.QueryUnescape(value)
		if err1 != nil {
			if err == nil {
				err = err1
			}
			continue
		}
		if old, ok := m[key]; ok {
			m[key] = append(old, value)
			continue
		}
		vals = append(vals, value)
		m[key] = vals[len(vals)-1 : len(vals) : len(vals)]
	}
	return m, err
}

package webhook

import (
	"bytes"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The vector published with the Standard Webhooks specification.
const (
	specSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	specID     = "msg_p5jXN8AQM9LWM0D4loKWxJek"
	specTS     = 1614265330
	specBody   = `{"test": 2432232314}`
	specSig    = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
)

func mustSecret(t testing.TB, s string) []byte {
	t.Helper()
	key, err := ParseSecret(s)
	if err != nil {
		t.Fatalf("ParseSecret: %v", err)
	}
	return key
}

func specHeader(sig string) http.Header {
	h := http.Header{}
	h.Set(HeaderID, specID)
	h.Set(HeaderTimestamp, strconv.Itoa(specTS))
	h.Set(HeaderSignature, sig)
	return h
}

func TestSignSpecVector(t *testing.T) {
	key := mustSecret(t, specSecret)
	if got := Sign([][]byte{key}, specID, time.Unix(specTS, 0), []byte(specBody)); got != specSig {
		t.Fatalf("Sign = %q, want %q", got, specSig)
	}
}

func TestSignSeveralSecrets(t *testing.T) {
	a, b := mustSecret(t, specSecret), []byte("another key")
	got := Sign([][]byte{a, b}, specID, time.Unix(specTS, 0), []byte(specBody))
	parts := strings.Split(got, " ")
	if len(parts) != 2 || parts[0] != specSig || !strings.HasPrefix(parts[1], "v1,") {
		t.Fatalf("Sign = %q, want %q and a second v1 entry", got, specSig)
	}
	if Sign(nil, specID, time.Unix(specTS, 0), nil) != "" {
		t.Fatal("Sign with no secrets is not empty")
	}
}

func TestVerify(t *testing.T) {
	key := mustSecret(t, specSecret)
	now := time.Unix(specTS, 0)
	other := []byte("rotated-out key")
	tests := []struct {
		name    string
		secrets [][]byte
		header  http.Header
		body    string
		now     time.Time
		tol     time.Duration
		want    error
	}{
		{"ok", [][]byte{key}, specHeader(specSig), specBody, now, 0, nil},
		{"second secret matches", [][]byte{other, key}, specHeader(specSig), specBody, now, 0, nil},
		{"one of several signatures", [][]byte{key}, specHeader("v1a,AAAA v1,bm90IGl0 " + specSig), specBody, now, 0, nil},
		{"4m59s late", [][]byte{key}, specHeader(specSig), specBody, now.Add(299 * time.Second), 0, nil},
		{"5m early", [][]byte{key}, specHeader(specSig), specBody, now.Add(-5 * time.Minute), 0, nil},
		{"too late", [][]byte{key}, specHeader(specSig), specBody, now.Add(301 * time.Second), 0, ErrTimestamp},
		{"too early", [][]byte{key}, specHeader(specSig), specBody, now.Add(-301 * time.Second), 0, ErrTimestamp},
		{"custom tolerance", [][]byte{key}, specHeader(specSig), specBody, now.Add(time.Hour), 2 * time.Hour, nil},
		{"changed body", [][]byte{key}, specHeader(specSig), `{"test": 2432232315}`, now, 0, ErrNoMatch},
		{"wrong secret", [][]byte{other}, specHeader(specSig), specBody, now, 0, ErrNoMatch},
		{"no secrets", nil, specHeader(specSig), specBody, now, 0, ErrNoMatch},
		{"v2 only", [][]byte{key}, specHeader("v2," + specSig[3:]), specBody, now, 0, ErrNoMatch},
		{"truncated", [][]byte{key}, specHeader(specSig[:len(specSig)-2]), specBody, now, 0, ErrNoMatch},
		{"missing id", [][]byte{key}, without(specHeader(specSig), HeaderID), specBody, now, 0, ErrMissingHeader},
		{"missing timestamp", [][]byte{key}, without(specHeader(specSig), HeaderTimestamp), specBody, now, 0, ErrMissingHeader},
		{"missing signature", [][]byte{key}, without(specHeader(specSig), HeaderSignature), specBody, now, 0, ErrMissingHeader},
		{"bad timestamp", [][]byte{key}, with(specHeader(specSig), HeaderTimestamp, "1614265330.5"), specBody, now, 0, ErrTimestamp},
		{"other id", [][]byte{key}, with(specHeader(specSig), HeaderID, "msg_other"), specBody, now, 0, ErrNoMatch},
		{"lower-case map", [][]byte{key}, http.Header{
			HeaderID: {specID}, HeaderTimestamp: {strconv.Itoa(specTS)}, HeaderSignature: {specSig},
		}, specBody, now, 0, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := Verify(tt.secrets, tt.header, []byte(tt.body), tt.now, tt.tol)
			if !errors.Is(err, tt.want) || (tt.want == nil) != (err == nil) {
				t.Fatalf("Verify = %v, want %v", err, tt.want)
			}
		})
	}
}

func with(h http.Header, k, v string) http.Header { h.Set(k, v); return h }
func without(h http.Header, k string) http.Header { h.Del(k); return h }

func TestSetHeadersRoundTrip(t *testing.T) {
	keys := [][]byte{[]byte("k1"), []byte("k2")}
	now := time.Unix(1736937000, 0)
	body := []byte(`{"type":"message.received"}`)
	h := http.Header{}
	SetHeaders(h, keys, "evt_1", now, body)
	if got := h.Get(HeaderTimestamp); got != "1736937000" {
		t.Fatalf("timestamp = %q, want 1736937000", got)
	}
	for _, k := range keys {
		if err := Verify([][]byte{k}, h, body, now, 0); err != nil {
			t.Fatalf("Verify with one of the signing keys: %v", err)
		}
	}
}

func TestParseSecret(t *testing.T) {
	for _, s := range []string{specSecret, strings.TrimPrefix(specSecret, "whsec_"), " " + specSecret + "\n", "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"} {
		key, err := ParseSecret(s)
		if err != nil || len(key) != 24 {
			t.Fatalf("ParseSecret(%q) = %d bytes, %v; want 24 bytes", s, len(key), err)
		}
	}
	key, err := ParseSecret("whsec_c2VjcmV0") // "secret", padded form is c2VjcmV0
	if err != nil || !bytes.Equal(key, []byte("secret")) {
		t.Fatalf("ParseSecret = %q, %v", key, err)
	}
	if key, err := ParseSecret("whsec_YWJjZA"); err != nil || string(key) != "abcd" {
		t.Fatalf("ParseSecret unpadded = %q, %v", key, err)
	}
	for _, bad := range []string{"", "whsec_", "whsec_not base64!!", "whsec_s3cr3t-passw0rd*"} {
		_, err := ParseSecret(bad)
		if err == nil {
			t.Fatalf("ParseSecret(%q) = nil error", bad)
		}
		if rest := strings.TrimPrefix(bad, "whsec_"); rest != "" && strings.Contains(err.Error(), rest) {
			t.Fatalf("error %q quotes the secret", err)
		}
	}
}

// FuzzVerify: Verify never panics, and a message whose body, id or
// timestamp differs by one byte from the signed one never verifies.
func FuzzVerify(f *testing.F) {
	f.Add([]byte(specBody), specID, specSig, 0, byte(1))
	f.Add([]byte{}, "x", "v1,", 3, byte(0x80))
	f.Add([]byte("{}"), "msg", "v1,"+strings.Repeat("A", 44)+" v1,AA==", 100, byte(0xff))
	key := mustSecret(f, specSecret)
	now := time.Unix(specTS, 0)
	f.Fuzz(func(t *testing.T, body []byte, id, sig string, pos int, flip byte) {
		h := http.Header{}
		h.Set(HeaderID, id)
		h.Set(HeaderTimestamp, strconv.Itoa(specTS))
		h.Set(HeaderSignature, sig)
		_ = Verify([][]byte{key}, h, body, now, 0) // must not panic

		if id == "" || strings.ContainsAny(id, "\r\n") || flip == 0 {
			return
		}
		good := Sign([][]byte{key}, id, now, body)
		h.Set(HeaderSignature, good)
		if err := Verify([][]byte{key}, h, body, now, 0); err != nil {
			t.Fatalf("own signature does not verify: %v", err)
		}
		if len(body) > 0 {
			changed := bytes.Clone(body)
			changed[abs(pos)%len(changed)] ^= flip
			if Verify([][]byte{key}, h, changed, now, 0) == nil {
				t.Fatalf("changed body verifies")
			}
		}
		bad := []byte(good)
		i := len("v1,") + abs(pos)%(len(bad)-len("v1,"))
		bad[i] ^= flip
		h.Set(HeaderSignature, string(bad))
		if Verify([][]byte{key}, h, body, now, 0) == nil {
			t.Fatalf("changed signature %q verifies", bad)
		}
	})
}

func abs(n int) int {
	if n < 0 {
		return -(n + 1)
	}
	return n
}

func BenchmarkSign(b *testing.B) {
	keys := [][]byte{mustSecret(b, specSecret)}
	body := bytes.Repeat([]byte("x"), 1024)
	ts := time.Unix(specTS, 0)
	b.ReportAllocs()
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		Sign(keys, specID, ts, body)
	}
}

func BenchmarkVerify(b *testing.B) {
	keys := [][]byte{mustSecret(b, specSecret)}
	body := bytes.Repeat([]byte("x"), 1024)
	ts := time.Unix(specTS, 0)
	h := http.Header{}
	SetHeaders(h, keys, specID, ts, body)
	b.ReportAllocs()
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		if err := Verify(keys, h, body, ts, 0); err != nil {
			b.Fatal(err)
		}
	}
}

package carrier

import (
	"errors"
	"net/netip"
	"strings"
	"testing"

	switchboard "github.com/switchboard-gw/switchboard"
)

// The fixtures' URLs carry ?token=REPLACE_WITH_LONG_RANDOM_SECRET.
var africasTalkingCfg = Config{Carrier: "africastalking", URLToken: "REPLACE_WITH_LONG_RANDOM_SECRET"}

func TestAfricasTalking(t *testing.T) {
	conformance{
		cfg: africasTalkingCfg, dir: "africastalking", noStatusFrom: true,
		wrong:   Config{Carrier: "africastalking", URLToken: "ANOTHER_LONG_RANDOM_SECRET"},
		secrets: []string{"REPLACE_WITH_LONG_RANDOM_SECRET", "ANOTHER_LONG_RANDOM_SECRET"},
		unsign: func(r *Request) {
			r.URL, _, _ = strings.Cut(r.URL, "?")
			r.RawQuery = ""
		},
	}.run(t)
}

func TestAfricasTalkingAllowedIPs(t *testing.T) {
	cfg := africasTalkingCfg
	cfg.AllowedIPs = []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24"), netip.MustParsePrefix("2001:db8::/32")}
	c := mustNew(t, cfg)
	r := loadFixture(t, "africastalking", "dlr")
	for addr, ok := range map[string]bool{"192.0.2.10": true, "::ffff:192.0.2.10": true, "2001:db8::1": true, "198.51.100.1": false, "": false} {
		s := clone(r)
		if addr != "" {
			s.Remote = netip.MustParseAddr(addr)
		}
		_, err := c.Verify(s)
		if ok != (err == nil) || (err != nil && !errors.Is(err, switchboard.ErrBadSignature)) {
			t.Errorf("peer %q: Verify = %v, want ok=%v", addr, err, ok)
		}
	}
	s := clone(r)
	s.Remote = netip.MustParseAddr("192.0.2.10")
	s.RawQuery = "token=REPLACE_WITH_LONG_RANDOM_SECREX"
	if _, err := c.Verify(s); err == nil || strings.Contains(err.Error(), "SECRE") {
		t.Errorf("wrong token from an allowed peer: %v", err)
	}
	// The right token beside a malformed part of the query still verifies;
	// a malformed query without it says both.
	s.RawQuery = "x=%zz&token=REPLACE_WITH_LONG_RANDOM_SECRET"
	if _, err := c.Verify(s); err != nil {
		t.Errorf("right token beside a malformed pair: %v", err)
	}
	s.RawQuery = "x=%zz"
	if _, err := c.Verify(s); err == nil || !strings.Contains(err.Error(), "no token parameter") || !strings.Contains(err.Error(), "malformed") {
		t.Errorf("malformed query without a token: %v", err)
	}
	if _, err := New(Config{Carrier: "africastalking", URLToken: "short"}); err == nil {
		t.Error("a short url_token is accepted")
	}
}

func TestAfricasTalkingParse(t *testing.T) {
	c := mustNew(t, africasTalkingCfg)
	events, err := c.Parse(&Request{Method: "POST", Body: []byte("id=x&status=Success&phoneNumber=%2B254711000100")})
	if err != nil || events[0].Data.Status != "delivered" || events[0].Data.Error != nil || events[0].Data.To != "+254711000100" {
		t.Fatalf("Success = %+v, %v", events, err)
	}
	if _, err := c.Parse(&Request{Method: "POST", Body: []byte("status=Success")}); !errors.Is(err, switchboard.ErrBadPayload) {
		t.Fatalf("no id: %v", err)
	}
}

func FuzzAfricasTalking(f *testing.F) {
	fuzzCarrier(f, africasTalkingCfg, "africastalking", nil, false)
}

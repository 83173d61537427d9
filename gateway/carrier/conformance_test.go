package carrier

import (
	"errors"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"

	switchboard "github.com/switchboard-gw/switchboard"
)

// conformance is what every carrier must do with its captured requests.
type conformance struct {
	cfg Config
	dir string // testdata/<dir>
	// wrong has wrong credentials; secrets must never appear in an error.
	wrong   Config
	secrets []string
	// unsign removes the request's authentication; unsignedErr is the
	// error expected then (default ErrBadSignature).
	unsign      func(r *Request)
	unsignedErr error
	// bodySigned: the scheme covers the body, so a changed byte must not
	// verify into a different event.
	bodySigned bool
	// target is the public URL simulations are sent to.
	target string
	// noSimulate: the carrier's callbacks cannot be forged from its config.
	noSimulate bool
	// noStatusFrom: the carrier's delivery reports do not name the sender.
	noStatusFrom bool
	// simCfg, when set, is the config Simulate signs with (a private key
	// where cfg holds the public one).
	simCfg *Config
}

func (cc conformance) run(t *testing.T) {
	t.Run("golden", func(t *testing.T) { testGolden(t, cc.dir, cc.cfg) })
	c := mustNew(t, cc.cfg)
	for _, kind := range fixtureKinds(t, cc.dir) {
		t.Run(kind, func(t *testing.T) {
			r := loadFixture(t, cc.dir, kind)
			if cc.bodySigned && len(r.Body) > 0 {
				want, err := c.Parse(r)
				if err != nil {
					t.Fatal(err)
				}
				for _, i := range []int{0, len(r.Body) / 3, len(r.Body) / 2, len(r.Body) - 1} {
					f := clone(r)
					f.Body = flipAt(r.Body, i, 0x01)
					if _, err := c.Verify(f); err == nil {
						if got, _ := c.Parse(f); reflect.DeepEqual(got, want) {
							continue // same content, e.g. JSON whitespace outside a signature
						}
						t.Errorf("body with byte %d changed verifies", i)
					} else if !errors.Is(err, switchboard.ErrBadSignature) {
						t.Errorf("changed byte %d: Verify = %v, want ErrBadSignature", i, err)
					}
				}
			}
			u := clone(r)
			cc.unsign(u)
			want := cc.unsignedErr
			if want == nil {
				want = switchboard.ErrBadSignature
			}
			if _, err := c.Verify(u); !errors.Is(err, want) {
				t.Errorf("unsigned: Verify = %v, want %v", err, want)
			}
			_, err := mustNew(t, cc.wrong).Verify(r)
			if !errors.Is(err, switchboard.ErrBadSignature) {
				t.Fatalf("wrong credentials: Verify = %v, want ErrBadSignature", err)
			}
			msg := err.Error()
			if !strings.HasPrefix(msg, "verify "+cc.cfg.Carrier+": ") {
				t.Errorf("error %q does not start with %q", msg, "verify "+cc.cfg.Carrier+": ")
			}
			for _, s := range cc.secrets {
				if strings.Contains(msg, s) {
					t.Errorf("error %q holds a secret", msg)
				}
			}
		})
	}
	if !cc.noSimulate {
		t.Run("simulate", func(t *testing.T) { cc.simulate(t, c) })
	}
}

// simulate checks that Simulate's requests verify and parse into the
// events asked for, with fresh message ids.
func (cc conformance) simulate(t *testing.T, c Carrier) {
	target := orDefault(cc.target, "https://hooks.example.com/hooks/acme/"+cc.cfg.Carrier)
	now := time.Unix(1736937000, 0)
	ids := map[string]bool{}
	cases := []struct {
		kind   string
		m      SimMessage
		status []string
	}{
		{"inbound", SimMessage{Text: "Is 2+2=4? Yes & café"}, nil},
		{"inbound", SimMessage{From: "15555550111", To: "+15555550199"}, nil},
		{"status", SimMessage{}, []string{"delivered"}},
		{"status", SimMessage{Status: "failed"}, []string{"failed", "undelivered"}},
		{"status", SimMessage{Status: "sent"}, []string{"sent"}},
	}
	simCfg := cc.cfg
	if cc.simCfg != nil {
		simCfg = *cc.simCfg
	}
	for _, tc := range cases {
		req, err := Simulate(simCfg, tc.kind, tc.m, target, now)
		if err != nil {
			t.Fatalf("Simulate(%s): %v", tc.kind, err)
		}
		r := fromHTTP(t, req, req.URL.String(), now.Add(2*time.Second))
		if _, err := c.Verify(r); err != nil {
			t.Fatalf("Simulate(%s %+v): Verify: %v", tc.kind, tc.m, err)
		}
		events, err := c.Parse(r)
		if err != nil || len(events) != 1 {
			t.Fatalf("Simulate(%s): Parse = %d events, %v", tc.kind, len(events), err)
		}
		e := events[0]
		d := e.Data
		if d.MessageID == "" || ids[d.MessageID] {
			t.Errorf("Simulate(%s): message id %q empty or repeated", tc.kind, d.MessageID)
		}
		ids[d.MessageID] = true
		if tc.kind == "inbound" {
			from := E164(orDefault(tc.m.From, "+15555550100"))
			if e.Type != switchboard.TypeReceived || d.From != from || d.To != "+15555550199" || d.Text != orDefault(tc.m.Text, "Hello from switchboard") {
				t.Errorf("Simulate(inbound): event = %+v", e)
			}
			if reply := c.Reply(r, events); reply.Status/100 != 2 {
				t.Errorf("Simulate(inbound): reply = %+v", reply)
			}
			continue
		}
		wantFrom := "+15555550199"
		if cc.noStatusFrom {
			wantFrom = ""
		}
		if e.Type != switchboard.TypeStatus || d.From != wantFrom || d.To != "+15555550100" || d.CarrierStatus == "" {
			t.Errorf("Simulate(status %q): event = %+v", tc.m.Status, e)
		}
		if !slicesContains(tc.status, d.Status) {
			t.Errorf("Simulate(status %q): status = %q, want one of %v", tc.m.Status, d.Status, tc.status)
		}
		if (d.Status == "failed" || d.Status == "undelivered") && d.Error == nil {
			t.Errorf("Simulate(status %q): no error in %+v", tc.m.Status, d)
		}
	}
	if _, err := Simulate(simCfg, "bogus", SimMessage{}, target, now); err == nil {
		t.Error("Simulate accepted kind bogus")
	}
}

func slicesContains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// fuzzCarrier seeds f with the fixtures of testdata/<dir>. Every input is
// run through Verify and Parse as a body (with the fixture's headers, and
// sig in each of sigHeaders) and must not panic; and for bodySigned schemes,
// the fixture with the byte at pos changed must not verify into a different
// event.
func fuzzCarrier(f *testing.F, cfg Config, dir string, sigHeaders []string, bodySigned bool) {
	fuzzCarrierSigned(f, cfg, dir, sigHeaders, bodySigned, nil)
}

// fuzzCarrierSigned is fuzzCarrier for a scheme that signs some bytes as
// the same: a change from old to new for which same is true may verify.
func fuzzCarrierSigned(f *testing.F, cfg Config, dir string, sigHeaders []string, bodySigned bool, same func(old, new byte) bool) {
	c := mustNew(f, cfg)
	var fixtures []*Request
	for _, kind := range fixtureKinds(f, dir) {
		r := loadFixture(f, dir, kind)
		fixtures = append(fixtures, r)
		sig := ""
		if len(sigHeaders) > 0 {
			sig = r.Header.Get(sigHeaders[0])
		}
		f.Add(r.Body, sig, len(r.Body)/2, byte(1), uint8(len(fixtures)-1))
	}
	f.Add([]byte("{}"), "", 0, byte(0x20), uint8(0))
	f.Add([]byte("[]"), "x", 1, byte(0x80), uint8(1))
	f.Fuzz(func(t *testing.T, body []byte, sig string, pos int, flip byte, which uint8) {
		base := fixtures[int(which)%len(fixtures)]
		r := clone(base)
		r.Body = body
		for _, h := range sigHeaders {
			r.Header.Set(h, sig)
		}
		c.Verify(r)
		c.Parse(r)
		r.Method = http.MethodGet
		r.RawQuery = string(body)
		c.Verify(r)
		c.Parse(r)

		if !bodySigned || flip == 0 || len(base.Body) == 0 {
			return
		}
		want, err := c.Parse(base)
		if err != nil {
			t.Fatal(err)
		}
		r = clone(base)
		at := abs(pos) % len(base.Body)
		r.Body = flipAt(base.Body, at, flip)
		if same != nil && same(base.Body[at], r.Body[at]) {
			return
		}
		if _, err := c.Verify(r); err == nil {
			if got, _ := c.Parse(r); !reflect.DeepEqual(got, want) {
				t.Fatalf("changed body %q verifies into %+v", r.Body, got)
			}
		}
	})
}

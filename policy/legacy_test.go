package policy

import (
	"strings"
	"testing"
	"time"
)

const legacyGood = `
tenants:
  acme:
    sources:
      tw:
        carrier: twilio
        secret: tok
        passthrough: {destination: legacy, timeout: 3s}
      tx:
        carrier: telnyx
        public_key: "11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo="
        passthrough: {destination: legacy}
    destinations:
      legacy:
        url: https://legacy.example.com/sms
        secret: ` + secret + `
        format: twilio
        twilio_auth_token: app-token
      inbox:
        type: pull
        token: pull-token-0123456789
        visibility_timeout: 45s
        retry: {max_attempts: 4}
      inbox2:
        type: pull
        token: pull-token-abcdefghij
      crm:
        url: https://crm.example.com/hooks
        secret: ` + secret + `
        order_key: conversation
        drop_stale_status: true
      audit:
        url: https://audit.example.com/hooks
        secret: ` + secret + `
        ordered: true
    routes:
      - to: [inbox, crm, audit]
`

func TestLegacyKeys(t *testing.T) {
	cfg := mustLoad(t, legacyGood, nil)
	acme := cfg.Tenants["acme"]
	tw := acme.Sources["tw"].Passthrough
	if tw == nil || tw.Destination != "legacy" || tw.Timeout.D() != 3*time.Second {
		t.Errorf("tw passthrough = %+v, want legacy 3s", tw)
	}
	if got := acme.Sources["tx"].Passthrough.Timeout.D(); got != time.Second {
		t.Errorf("telnyx default passthrough timeout = %v, want 1s (half its 2s deadline)", got)
	}
	in := acme.Destinations["inbox"]
	if !in.IsPull() || in.VisibilityTimeout.D() != 45*time.Second || in.Retry.MaxAttempts != 4 || in.Format != FormatNormalized {
		t.Errorf("inbox = type %q vis %v attempts %d format %q", in.Type, in.VisibilityTimeout.D(), in.Retry.MaxAttempts, in.Format)
	}
	if got := acme.Destinations["inbox2"].VisibilityTimeout.D(); got != DefaultVisibilityTimeout {
		t.Errorf("default visibility_timeout = %v, want %v", got, DefaultVisibilityTimeout)
	}
	if !in.TokenMatches("pull-token-0123456789") || in.TokenMatches("pull-token-012345678") || in.TokenMatches("") {
		t.Error("TokenMatches accepts a wrong token or refuses the right one")
	}
	if (&Destination{}).TokenMatches("") {
		t.Error("a destination without a token matches the empty token")
	}
	crm := acme.Destinations["crm"]
	if crm.Type != TypePush || !crm.Ordered || crm.OrderKey != OrderKeyConversation || !crm.DropStaleStatus {
		t.Errorf("crm = %+v, want push, ordered by conversation, drop_stale_status", crm)
	}
	if !acme.Destinations["audit"].Ordered {
		t.Error("audit: ordered = false, want true")
	}
}

func TestLegacyValidation(t *testing.T) {
	cases := []struct {
		name, yaml string
		want       []string // substrings of the errors, each on its own error
	}{
		{"pull without token, with push keys", `
    destinations:
      inbox:
        type: pull
        url: https://x.example.com/
        ordered: true
`, []string{"destinations.inbox.token: is required for type pull", "destinations.inbox.url: is not used by type pull", "destinations.inbox.ordered: is not used by type pull"}},
		{"short token", `
    destinations:
      inbox: {type: pull, token: short}
`, []string{"destinations.inbox.token: is too short"}},
		{"unknown type", `
    destinations:
      d: {type: poll, url: "https://x.example.com/", secret: ` + secret + `}
`, []string{`destinations.d.type: "poll" is not one of push, pull`}},
		{"pull keys on push", `
    destinations:
      d: {url: "https://x.example.com/", secret: ` + secret + `, token: abcdefghijklmnopq, visibility_timeout: 5s}
`, []string{"destinations.d.token: is only for type pull", "destinations.d.visibility_timeout: is only for type pull"}},
		{"bad order key and visibility", `
    destinations:
      d: {url: "https://x.example.com/", secret: ` + secret + `, order_key: sender}
      p: {type: pull, token: abcdefghijklmnopq, visibility_timeout: 13h}
`, []string{`destinations.d.order_key: "sender" is not a known order key`, "destinations.p.visibility_timeout: must be positive and at most 12h0m0s"}},
		{"passthrough at the carrier's deadline", `
    sources:
      tw: {carrier: twilio, secret: tok, passthrough: {destination: d, timeout: 15s}}
      tx: {carrier: telnyx, public_key: "11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=", passthrough: {destination: d, timeout: 2s}}
      pl: {carrier: plivo, secret: tok, passthrough: {destination: d, timeout: 10s}}
    destinations:
      d: {url: "https://x.example.com/", secret: ` + secret + `}
`, []string{"sources.tw.passthrough.timeout: 15s is not below twilio's own deadline of 15s",
			"sources.tx.passthrough.timeout: 2s is not below telnyx's own deadline of 2s",
			"sources.pl.passthrough.timeout: 10s is not below plivo's own deadline of 10s"}},
		{"passthrough to pull, ordered, missing", `
    sources:
      a: {carrier: twilio, secret: tok, passthrough: {destination: p}}
      b: {carrier: twilio, secret: tok, passthrough: {destination: o}}
      c: {carrier: twilio, secret: tok, passthrough: {destination: nope}}
      e: {carrier: twilio, secret: tok, passthrough: {timeout: 1s}}
    destinations:
      p: {type: pull, token: abcdefghijklmnopq}
      o: {url: "https://x.example.com/", secret: ` + secret + `, ordered: true}
`, []string{`sources.a.passthrough.destination: destination "p" is type pull`,
			`sources.b.passthrough.destination: destination "o" is ordered`,
			`sources.c.passthrough.destination: destination "nope" is not defined`,
			"sources.e.passthrough.destination: is required"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, errs := loadErrors(t, "tenants:\n  acme:"+c.yaml, nil)
			msg := errs.Error()
			for _, w := range c.want {
				if !strings.Contains(msg, w) {
					t.Errorf("errors do not contain %q:\n%s", w, msg)
				}
			}
			if len(errs) != len(c.want) {
				t.Errorf("got %d errors, want %d:\n%s", len(errs), len(c.want), msg)
			}
			for _, e := range errs {
				if e.Line == 0 {
					t.Errorf("error without a line: %v", e)
				}
			}
		})
	}
}

func TestLegacySecretsNeverInErrors(t *testing.T) {
	_, errs := loadErrors(t, `
tenants:
  acme:
    destinations:
      p: {type: pull, token: sup3rsecret}
`, nil)
	if strings.Contains(errs.Error(), "sup3rsecret") {
		t.Errorf("error shows the token: %v", errs)
	}
}

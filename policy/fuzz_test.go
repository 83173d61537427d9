package policy

import (
	switchboard "github.com/switchboard-gw/switchboard"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzLoad: the config loader never panics, and a file it rejects yields
// located errors (file and key) and no config.
func FuzzLoad(f *testing.F) {
	f.Add([]byte(good))
	if b, err := os.ReadFile("../configs/switchboard.example.yaml"); err == nil {
		f.Add(b)
	}
	f.Add([]byte("server:\n  listen: [\n"))
	f.Add([]byte("tenants:\n  a:\n    routes:\n      - to: [x]\n        match: {types: [1]}\n"))
	f.Add([]byte("delivery: {timeout: 5x, retry: {max_attempts: -1}}\n"))
	f.Add([]byte("a: &x [*x]\n"))
	f.Add([]byte("tenants:\n  a:\n    destinations:\n      d: &d {url: x}\n      e: {<<: [*d, *d], secret: y}\n"))
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, src []byte) {
		p := filepath.Join(dir, "fuzz.yaml")
		if err := os.WriteFile(p, src, 0o600); err != nil {
			t.Fatal(err)
		}
		cfg, err := LoadEnv(p, env(map[string]string{"TW_TOKEN": "x"}))
		if err == nil {
			if cfg == nil {
				t.Fatal("no error and no config")
			}
			return
		}
		if cfg != nil {
			t.Fatal("an error and a config")
		}
		errs, ok := err.(Errors)
		if !ok || len(errs) == 0 {
			t.Fatalf("err = %T %v, want located Errors", err, err)
		}
		for _, e := range errs {
			if e.File != p || e.Path == "" || !strings.Contains(e.Error(), p+":") {
				t.Fatalf("error not located: %q", e.Error())
			}
		}
	})
}

// routeFuzzYAML exercises every kind of condition: globs, a regular
// expression, statuses, CEL over nested fields, continue.
const routeFuzzYAML = `
tenants:
  acme:
    destinations:
      a: {url: "https://a.example.com", secret: ` + secret + `}
      b: {url: "https://b.example.com", secret: ` + secret + `}
      c: {url: "https://c.example.com", secret: ` + secret + `}
    routes:
      - match: {from: ["+447*", "*99"], text: "(?i)^stop$|unsubscribe"}
        to: [a]
        continue: true
      - match: {types: [message.status], statuses: [failed, undelivered]}
        when: 'event.data.error.code.startsWith("300") || size(event.data.text) > 3'
        to: [b]
      - when: 'event.data.media.exists(m, m.content_type == "image/png") && event.carrier == "twilio"'
        to: [c]
      - to: [a, b]
`

// FuzzRoute: the route matcher never panics on any event, and returns only
// configured destinations, each once.
func FuzzRoute(f *testing.F) {
	f.Add("message.received", "twilio", "+447700900123", "+15555550199", "STOP", "", "", "image/png")
	f.Add("message.status", "vonage-sms", "12345", "+15555550100", "", "failed", "30003", "")
	f.Add("", "", "", "", "\xff\xfe", "x", "", "")
	f.Add("message.status", "telnyx", "*", "**", "unsubscribe me", "undelivered", "3", "image/jpeg")
	dir := f.TempDir()
	p := filepath.Join(dir, "routes.yaml")
	if err := os.WriteFile(p, []byte(routeFuzzYAML), 0o600); err != nil {
		f.Fatal(err)
	}
	cfg, err := LoadEnv(p, env(nil))
	if err != nil {
		f.Fatal(err)
	}
	acme := cfg.Tenants["acme"]
	f.Fuzz(func(t *testing.T, typ, carrierName, from, to, text, status, code, media string) {
		e := &switchboard.Event{Type: typ, Carrier: carrierName, Data: switchboard.EventData{
			From: from, To: to, Text: text, Status: status,
		}}
		if code != "" {
			e.Data.Error = &switchboard.Error{Code: code}
		}
		if media != "" {
			e.Data.Media = []switchboard.Media{{URL: "https://m.example.com/1", ContentType: media}}
		}
		got := acme.Route(e)
		seen := map[string]bool{}
		for _, d := range got {
			if acme.Destinations[d] == nil || seen[d] {
				t.Fatalf("Route = %v: unknown or repeated destination", got)
			}
			seen[d] = true
		}
		if len(got) == 0 {
			t.Fatalf("Route = nil, but the last route takes everything")
		}
	})
}

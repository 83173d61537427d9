package policy

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	switchboard "github.com/switchboard-gw/switchboard"
)

const secret = "whsec_c3dpdGNoYm9hcmQtZGVtby1zZWNyZXQta2V5LTAwMDE="

func writeFile(t testing.TB, dir, name, body string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func env(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

func mustLoad(t testing.TB, body string, vars map[string]string) *Config {
	t.Helper()
	p := writeFile(t, t.TempDir(), "sb.yaml", body)
	cfg, err := LoadEnv(p, env(vars))
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	return cfg
}

func loadErrors(t *testing.T, body string, vars map[string]string) (string, Errors) {
	t.Helper()
	p := writeFile(t, t.TempDir(), "sb.yaml", body)
	_, err := LoadEnv(p, env(vars))
	var errs Errors
	if !errors.As(err, &errs) {
		t.Fatalf("err = %v, want policy.Errors", err)
	}
	return p, errs
}

const good = `
delivery:
  timeout: 5s
  retry: {initial: 2s, max: 1m, max_attempts: 7}
tenants:
  acme:
    sources:
      tw:
        carrier: twilio
        secret: ${TW_TOKEN}
    destinations:
      crm:
        url: https://crm.example.com/hooks
        secret: ` + secret + `
        retry: {initial: 1s, max_attempts: 3}
      audit:
        url: https://audit.example.com/hooks
        secret: [` + secret + `, ` + secret + `]
        timeout: 2s
    routes:
      - match: {types: [message.received]}
        to: [crm]
      - to: [audit]
`

func TestLoadDefaultsAndOverrides(t *testing.T) {
	cfg := mustLoad(t, good, map[string]string{"TW_TOKEN": "tok"})
	acme := cfg.Tenants["acme"]
	if got := acme.Sources["tw"].Secret; got != "tok" {
		t.Errorf("secret = %q, want expanded tok", got)
	}
	crm, audit := acme.Destinations["crm"], acme.Destinations["audit"]
	if crm.Retry.Initial.D() != time.Second || crm.Retry.MaxAttempts != 3 {
		t.Errorf("crm retry = %+v, want initial 1s, max_attempts 3", crm.Retry)
	}
	if crm.Retry.Max.D() != time.Minute {
		t.Errorf("crm retry.max = %v, want 1m inherited from delivery", crm.Retry.Max.D())
	}
	if crm.Retry.MaxAge.D() != 24*time.Hour {
		t.Errorf("crm retry.max_age = %v, want built-in default 24h", crm.Retry.MaxAge.D())
	}
	if crm.Timeout.D() != 5*time.Second || audit.Timeout.D() != 2*time.Second {
		t.Errorf("timeouts = %v, %v, want 5s (inherited), 2s", crm.Timeout.D(), audit.Timeout.D())
	}
	if audit.Retry.MaxAttempts != 7 {
		t.Errorf("audit max_attempts = %d, want 7 from delivery", audit.Retry.MaxAttempts)
	}
	if len(audit.Secret) != 2 || len(crm.Secret) != 1 {
		t.Errorf("secrets = %d, %d, want 2 and 1", len(audit.Secret), len(crm.Secret))
	}
	if crm.Format != FormatNormalized {
		t.Errorf("format = %q, want normalized", crm.Format)
	}
	if cfg.Dedup.TTL.D() != 24*time.Hour {
		t.Errorf("dedup ttl = %v, want 24h", cfg.Dedup.TTL.D())
	}
	if cfg.Delivery.AllowPrivateNetworks {
		t.Error("allow_private_networks defaults to true, want false")
	}
	tn, s, d, r := cfg.Counts()
	if tn != 1 || s != 1 || d != 2 || r != 2 {
		t.Errorf("counts = %d %d %d %d, want 1 1 2 2", tn, s, d, r)
	}
}

func TestLoadErrorsNameFileLineAndKey(t *testing.T) {
	body := `server:
  listen: ":8080"
  bogus: 1
delivery:
  timeout: 5x
tenants:
  acme:
    sources:
      tw:
        carrier: twilio
        secret: ${MISSING_TOKEN}
    destinations:
      crm:
        url: ftp://nope
        secret: whsec_c3dpdGNoYm9hcmQtZGVtby1zZWNyZXQta2V5LTAwMDE=
    routes:
      - to: [crm, ghost]
`
	p, errs := loadErrors(t, body, nil)
	want := []string{
		p + ":3: server.bogus: unknown key",
		p + `:5: delivery.timeout: "5x" is not a duration`,
		p + ":11: tenants.acme.sources.tw.secret: environment variable MISSING_TOKEN is not set",
	}
	got := errs.Error()
	for _, w := range want {
		if !strings.Contains(got, w) {
			t.Errorf("errors lack %q; got:\n%s", w, got)
		}
	}
	if !strings.Contains(got, p+`:17: tenants.acme.routes[0].to[1]: destination "ghost" is not defined`) {
		t.Errorf("validation errors are missing beside the decoding errors:\n%s", got)
	}
	if strings.Count(got, "delivery.timeout") != 1 || strings.Contains(got, "sources.tw.secret: is required") {
		t.Errorf("a key with a decoding error is reported twice:\n%s", got)
	}
}

func TestValidationErrors(t *testing.T) {
	body := `tenants:
  acme:
    sources:
      tw:
        carrier: twilio
      vz:
        carrier: nokia
    destinations:
      crm:
        url: ftp://nope
        secret: not-a-whsec-secret-value
        format: xml
      tw2:
        url: https://x.example.com
        secret: ` + secret + `
        format: twilio
        retry: {max_attempts: 0}
    routes:
      - to: [crm, ghost]
      - to: []
      -
`
	p, errs := loadErrors(t, body, nil)
	got := errs.Error()
	for _, w := range []string{
		p + ":4: tenants.acme.sources.tw.secret: is required for carrier twilio",
		p + `:7: tenants.acme.sources.vz.carrier: unknown carrier "nokia"`,
		p + ":10: tenants.acme.destinations.crm.url: must be an absolute http(s) URL",
		p + ":11: tenants.acme.destinations.crm.secret: must start with whsec_",
		p + `:12: tenants.acme.destinations.crm.format: "xml" is not one of`,
		p + ":13: tenants.acme.destinations.tw2.twilio_auth_token: is required for format twilio",
		p + ":17: tenants.acme.destinations.tw2.retry.max_attempts: must be at least 1",
		p + `:19: tenants.acme.routes[0].to[1]: destination "ghost" is not defined in tenant acme`,
		p + ":20: tenants.acme.routes[1].to: must name at least one destination",
		p + ":21: tenants.acme.routes[2]: is empty: a route needs to:",
	} {
		if !strings.Contains(got, w) {
			t.Errorf("errors lack %q; got:\n%s", w, got)
		}
	}
	if strings.Contains(got, "not-a-whsec-secret-value") {
		t.Errorf("an error prints a secret:\n%s", got)
	}
}

// TestSourceKeysNotUsed: a credential key the carrier does not take is an
// error: ignored, an allow-list or a signature method would be a check the
// operator believes is made.
func TestSourceKeysNotUsed(t *testing.T) {
	body := `tenants:
  acme:
    sources:
      tw:
        carrier: twilio
        secret: tok
        signature_method: md5
        allowed_ips: [10.0.0.0/8]
      at: {carrier: africastalking, url_token: at-url-token-0123456789, allowed_ips: [10.0.0.0/8]}
      hm: {carrier: hmac, secret: s, header: X-Sig, algorithm: sha256, encoding: hex, prefix: "sha256="}
      sns: {carrier: aws-sns, topic_arns: ["arn:aws:sns:us-east-1:123456789012:t"], auto_confirm: true}
      tx: {carrier: telnyx, public_key: 11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=, auto_confirm: true}
`
	p, errs := loadErrors(t, body, nil)
	got := errs.Error()
	for _, w := range []string{
		p + ":7: tenants.acme.sources.tw.signature_method: is not used by carrier twilio (it takes secret)",
		p + ":8: tenants.acme.sources.tw.allowed_ips: is not used by carrier twilio",
		p + ":12: tenants.acme.sources.tx.auto_confirm: is not used by carrier telnyx (it takes public_key)",
	} {
		if !strings.Contains(got, w) {
			t.Errorf("errors lack %q; got:\n%s", w, got)
		}
	}
	for _, src := range []string{"sources.at.", "sources.hm.", "sources.sns."} {
		if strings.Contains(got, src) {
			t.Errorf("a key the carrier takes is refused (%s):\n%s", src, got)
		}
	}
	if n := strings.Count(got, "\n") + 1; n != 3 {
		t.Errorf("%d errors, want 3:\n%s", n, got)
	}
}

func TestSecretsNeverInErrors(t *testing.T) {
	body := `server:
  admin_token: [hunter2-admin]
tenants:
  acme:
    sources:
      tw: {carrier: twilio, secret: {nested: hunter2-source}}
`
	_, errs := loadErrors(t, body, nil)
	if s := errs.Error(); strings.Contains(s, "hunter2") {
		t.Errorf("errors print a secret:\n%s", s)
	}
}

func TestSyntaxErrorHasLine(t *testing.T) {
	p, errs := loadErrors(t, "server:\n  listen: [\n", nil)
	if len(errs) != 1 || errs[0].File != p || errs[0].Line == 0 {
		t.Fatalf("errors = %v, want one located syntax error", errs)
	}
}

func TestDuplicateKey(t *testing.T) {
	_, errs := loadErrors(t, "server:\n  listen: a\n  listen: b\n", nil)
	if !strings.Contains(errs.Error(), ":3: server.listen: defined twice") {
		t.Errorf("errors = %v", errs)
	}
}

func TestTenantsDir(t *testing.T) {
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "tenants"), 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, "tenants"), "globex.yaml", `destinations:
  app: {url: "https://app.example.com", secret: `+secret+`}
routes:
  - to: [app, nope]
`)
	p := writeFile(t, dir, "sb.yaml", "tenants_dir: tenants\n")
	_, err := LoadEnv(p, env(nil))
	want := filepath.Join(dir, "tenants", "globex.yaml") + `:4: tenants.globex.routes[0].to[1]: destination "nope" is not defined`
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("err = %v, want %q", err, want)
	}
	writeFile(t, filepath.Join(dir, "tenants"), "globex.yaml", "destinations:\n  app: {url: \"https://app.example.com\", secret: "+secret+"}\nroutes:\n  - to: [app]\n")
	cfg, err := LoadEnv(p, env(nil))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Tenants["globex"] == nil || cfg.Tenants["globex"].Destinations["app"].MaxInFlight != 16 {
		t.Fatalf("tenant from dir not loaded with defaults: %+v", cfg.Tenants)
	}
	p2 := writeFile(t, dir, "sb2.yaml", "tenants_dir: tenants\ntenants:\n  globex: {}\n")
	want = filepath.Join(dir, "tenants", "globex.yaml") + ":1: tenants.globex: tenant globex is defined twice (also in " + p2 + ":3)"
	if _, err := LoadEnv(p2, env(nil)); err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("err = %v, want %q", err, want)
	}
	writeFile(t, filepath.Join(dir, "tenants"), "globex.yml", "{}\n")
	want = filepath.Join(dir, "tenants", "globex.yml") + ":1: tenants.globex: tenant globex is defined twice (also in " + filepath.Join(dir, "tenants", "globex.yaml") + ":1)"
	if _, err := LoadEnv(p, env(nil)); err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("err = %v, want %q", err, want)
	}
}

func TestTenantsDirErrorsNameTheTenantFile(t *testing.T) {
	dir := t.TempDir()
	tdir := filepath.Join(dir, "tenants")
	if err := os.Mkdir(tdir, 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, tdir, "acme.yaml", `sources:
  tw: {carrier: twilio, secret: x}
destinations:
  app: {url: "https://app.example.com", secret: `+secret+`, retry: {initial: 5x}}
routes:
  - when: evnt.type == "x"
    to: [app]
  - bogus: 1
`)
	writeFile(t, tdir, "broken.yaml", "destinations: [\n")
	p := writeFile(t, dir, "sb.yaml", "delivery: {timeout: 3s}\ntenants_dir: tenants\n")
	_, err := LoadEnv(p, env(nil))
	if err == nil {
		t.Fatal("loaded a tenants_dir with errors")
	}
	acme := filepath.Join(tdir, "acme.yaml")
	for _, w := range []string{
		acme + `:4: tenants.acme.destinations.app.retry.initial: "5x" is not a duration`,
		acme + `:6: tenants.acme.routes[0].when: column 1: undeclared reference to 'evnt'`,
		acme + `:8: tenants.acme.routes[1].bogus: unknown key`,
		filepath.Join(tdir, "broken.yaml") + `:`,
	} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("errors lack %q; got:\n%v", w, err)
		}
	}
	writeFile(t, tdir, "acme.yaml", "destinations:\n  app: {url: \"https://app.example.com\", secret: "+secret+"}\n")
	if err := os.Remove(filepath.Join(tdir, "broken.yaml")); err != nil {
		t.Fatal(err)
	}
	cfg, err := LoadEnv(p, env(nil))
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.Tenants["acme"].Destinations["app"].Timeout.D(); got != 3*time.Second {
		t.Errorf("timeout = %v, want 3s inherited from delivery: in the main file", got)
	}
	if got := cfg.Tenants["acme"].File; got != acme {
		t.Errorf("tenant file = %q, want %q", got, acme)
	}
}

func TestExampleConfigsLoad(t *testing.T) {
	files, _ := filepath.Glob("../configs/*.yaml")
	if len(files) == 0 {
		t.Fatal("no example configs found in ../configs")
	}
	for _, f := range files {
		if _, err := Load(f); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
}

func TestRoute(t *testing.T) {
	cfg := mustLoad(t, good, map[string]string{"TW_TOKEN": "x"})
	acme := cfg.Tenants["acme"]
	in := &switchboard.Event{Type: switchboard.TypeReceived}
	st := &switchboard.Event{Type: switchboard.TypeStatus}
	if got := acme.Route(in); strings.Join(got, ",") != "crm" {
		t.Errorf("inbound routes to %v, want [crm] (first match stops)", got)
	}
	if got := acme.Route(st); strings.Join(got, ",") != "audit" {
		t.Errorf("status routes to %v, want [audit]", got)
	}
	acme.Routes[0].Continue = true
	if got := acme.Route(in); strings.Join(got, ",") != "crm,audit" {
		t.Errorf("with continue, inbound routes to %v, want [crm audit]", got)
	}
}

func TestRateScope(t *testing.T) {
	if got := mustLoad(t, "{}\n", nil).Delivery.RateScope; got != RateScopeRedis {
		t.Errorf("default rate_scope = %q, want %q", got, RateScopeRedis)
	}
	if got := mustLoad(t, "delivery: {rate_scope: local}\n", nil).Delivery.RateScope; got != RateScopeLocal {
		t.Errorf("rate_scope = %q, want local", got)
	}
	p, errs := loadErrors(t, "delivery:\n  rate_scope: cluster\n", nil)
	if want := p + `:2: delivery.rate_scope: "cluster" is not one of redis, local`; !strings.Contains(errs.Error(), want) {
		t.Errorf("errors = %v, want %q", errs, want)
	}
}

// A value from ${NAME} that fails validation is shown as written, never
// expanded: a secret put under the wrong key must not be printed.
func TestErrorsHideExpandedValues(t *testing.T) {
	vars := map[string]string{"TW_TOKEN": "tok", "S1": "whsec_topsecretvalue", "S2": "abc123"}
	body := "server:\n  max_body_bytes: ${S1}\n  trusted_proxies: [\"${S2}\"]\n" + good
	_, errs := loadErrors(t, body, vars)
	text := errs.Error()
	for _, leak := range []string{"topsecretvalue", "abc123"} {
		if strings.Contains(text, leak) {
			t.Errorf("errors show %q:\n%s", leak, text)
		}
	}
	for _, want := range []string{`server.max_body_bytes: "${S1}" is not a whole number`, `server.trusted_proxies[0]: "${S2}" is not a CIDR`} {
		if !strings.Contains(text, want) {
			t.Errorf("errors lack %q:\n%s", want, text)
		}
	}

	// A value that is also a word of the message is not shown by where
	// it stood: the message names only where the value came from.
	pull := `tenants:
  acme:
    sources: {tw: {carrier: twilio, secret: abc}}
    destinations:
      p: {type: pull, token: "${PT}"}
    routes: [{to: [p]}]
`
	for _, v := range []string{"short", "use at least 16"} {
		_, errs := loadErrors(t, pull, map[string]string{"PT": v})
		text := errs.Error()
		if strings.Contains(text, v) || !strings.Contains(text, "tenants.acme.destinations.p.token: is not valid (its value comes from ${PT} and is not shown)") {
			t.Errorf("token %q: error shows where the value stood or lacks the key:\n%s", v, text)
		}
	}
}

// An empty file, or one of comments only, is all defaults.
func TestLoadEmptyFile(t *testing.T) {
	for _, body := range []string{"", "# nothing yet\n"} {
		cfg := mustLoad(t, body, nil)
		if len(cfg.Tenants) != 0 || cfg.Server.MaxBodyBytes != defaultConfig.Server.MaxBodyBytes {
			t.Errorf("%q: tenants %d, max_body_bytes %d; want the defaults", body, len(cfg.Tenants), cfg.Server.MaxBodyBytes)
		}
	}
}

// YAML merge keys bring in an anchored mapping's keys; the mapping's own
// keys win, and unknown keys are still errors.
func TestLoadMergeKeys(t *testing.T) {
	body := `tenants:
  acme:
    sources:
      tw: {carrier: twilio, secret: x}
    destinations:
      a: &dest
        url: https://a.example.com/
        secret: ` + secret + `
        timeout: 3s
      b: {<<: *dest, url: "https://b.example.com/", timeout: 4s}
      c:
        <<: [*dest]
        url: https://c.example.com/
    routes: [{to: [a, b, c]}]
`
	cfg := mustLoad(t, body, nil)
	ds := cfg.Tenants["acme"].Destinations
	if b := ds["b"]; b.URL != "https://b.example.com/" || b.Timeout.D() != 4*time.Second || len(b.Secret) == 0 {
		t.Errorf("b = url %s timeout %v secret set %v; want its own url and timeout, a's secret", b.URL, b.Timeout.D(), len(b.Secret) > 0)
	}
	if c := ds["c"]; c.URL != "https://c.example.com/" || c.Timeout.D() != 3*time.Second {
		t.Errorf("c = url %s timeout %v; want its own url, a's timeout", c.URL, c.Timeout.D())
	}
	_, errs := loadErrors(t, strings.Replace(body, "url: https://c.example.com/", "url: https://c.example.com/\n        bogus: 1", 1), nil)
	if !strings.Contains(errs.Error(), "tenants.acme.destinations.c.bogus: unknown key") {
		t.Errorf("errors = %v, want c.bogus unknown", errs)
	}
	// A mapping that merges itself is an error, not an endless loop.
	_, errs = loadErrors(t, "tenants:\n  acme: &x\n    <<: *x\n", nil)
	if !strings.Contains(errs.Error(), "tenants.acme.<<: merges a mapping that contains this one") {
		t.Errorf("errors = %v, want the self-merge named", errs)
	}
}

// check refuses what serve would: listen addresses that are not host:port
// and a Redis URL that cannot be parsed (without printing it: it may hold
// a password).
func TestLoadAddresses(t *testing.T) {
	body := "server: {listen: \"127.0.0.1:notaport\", admin_listen: nonsense}\nredis: {url: \"redis://:pw@127.0.0.1:notaport/0\"}\n" + good
	_, errs := loadErrors(t, body, map[string]string{"TW_TOKEN": "x"})
	text := errs.Error()
	for _, want := range []string{"server.listen: \"127.0.0.1:notaport\": \"notaport\" is not a port", "server.admin_listen: \"nonsense\" is not host:port", "redis.url: cannot be parsed"} {
		if !strings.Contains(text, want) {
			t.Errorf("errors lack %q:\n%s", want, text)
		}
	}
	if strings.Contains(text, ":pw@") {
		t.Errorf("errors show the Redis URL's password:\n%s", text)
	}
}

// A chain of mappings, each merging the previous one many times, loads
// at once: each merged mapping is expanded once.
func TestLoadMergeChain(t *testing.T) {
	var b strings.Builder
	b.WriteString("tenants:\n  acme:\n    sources:\n      tw: {carrier: twilio, secret: x}\n    destinations:\n")
	fmt.Fprintf(&b, "      d0: &a0 {url: \"https://a.example.com/\", secret: %s}\n", secret)
	for i := 1; i <= 14; i++ {
		refs := strings.Repeat(fmt.Sprintf("*a%d, ", i-1), 10)
		fmt.Fprintf(&b, "      d%d: &a%d {<<: [%s]}\n", i, i, strings.TrimSuffix(refs, ", "))
	}
	b.WriteString("    routes: [{to: [d14]}]\n")
	p := writeFile(t, t.TempDir(), "sb.yaml", b.String())
	type result struct {
		cfg *Config
		err error
	}
	done := make(chan result, 1)
	go func() {
		cfg, err := LoadEnv(p, env(nil))
		done <- result{cfg, err}
	}()
	select {
	case r := <-done:
		if r.err != nil {
			t.Fatal(r.err)
		}
		if got := r.cfg.Tenants["acme"].Destinations["d14"].URL; got != "https://a.example.com/" {
			t.Errorf("d14 url = %q, want d0's", got)
		}
	case <-time.After(30 * time.Second): // 10^14 expansions without the cache
		t.Fatal("loading a chain of merges did not finish")
	}
}

// A tenant's "retention:" written with no value inherits, like one left out.
func TestHistoryRetentionNull(t *testing.T) {
	vars := map[string]string{"TW_TOKEN": "tok"}
	cfg := mustLoad(t, "history: {retention: 6h}\n"+
		strings.Replace(good, "  acme:\n", "  acme:\n    history:\n      retention:\n", 1), vars)
	if got := cfg.Tenants["acme"].History.Retention.D(); got != 6*time.Hour {
		t.Errorf("acme retention with no value = %v, want the top level's 6h", got)
	}
}

// reassembly_window: 1m by default for vonage-sms, 0 for other carriers and
// pass-through sources; set where no parts come, it is an error.
func TestReassemblyWindow(t *testing.T) {
	src := func(s string) string {
		return `tenants:
  acme:
    sources:
` + s + `
    destinations:
      crm: {url: "https://crm.example.com/hooks", secret: ` + secret + `}
    routes: [{to: [crm]}]
`
	}
	cfg := mustLoad(t, src(`      vn: {carrier: vonage-sms, secret: s, signature_method: sha256}
      v2: {carrier: vonage-sms, secret: s, signature_method: sha256, reassembly_window: 10s}
      v0: {carrier: vonage-sms, secret: s, signature_method: sha256, reassembly_window: 0s}
      vp: {carrier: vonage-sms, secret: s, signature_method: sha256, passthrough: {destination: crm}}
      tw: {carrier: twilio, secret: s}`), nil)
	for sid, want := range map[string]time.Duration{"vn": time.Minute, "v2": 10 * time.Second, "v0": 0, "vp": 0, "tw": 0} {
		if got := cfg.Tenants["acme"].Sources[sid].ReassemblyWindow.D(); got != want {
			t.Errorf("%s: reassembly_window = %v, want %v", sid, got, want)
		}
	}
	p, errs := loadErrors(t, src(`      tw: {carrier: twilio, secret: s, reassembly_window: 1m}
      vp: {carrier: vonage-sms, secret: s, signature_method: sha256, passthrough: {destination: crm}, reassembly_window: 1m}`), nil)
	for _, w := range []string{
		p + ":4: tenants.acme.sources.tw.reassembly_window: only vonage-sms delivers a message in parts",
		p + ":5: tenants.acme.sources.vp.reassembly_window: a pass-through source",
	} {
		if !strings.Contains(errs.Error(), w) {
			t.Errorf("errors lack %q; got:\n%s", w, errs.Error())
		}
	}
}

// A bad delivery default is reported once, at its own key, not again at
// every destination that inherits it; a destination's own bad value is.
func TestInheritedBadDefaultReportedOnce(t *testing.T) {
	p, errs := loadErrors(t, `delivery:
  retry: {max_attempts: -3}
  rate: {per_second: -1}
tenants:
  acme:
    sources: {tw: {carrier: twilio, secret: x}}
    destinations:
      crm: {url: "https://crm.example.com/", secret: `+secret+`}
      erp: {url: "https://erp.example.com/", secret: `+secret+`, retry: {max_attempts: 0}}
    routes: [{to: [crm, erp]}]
`, nil)
	got := errs.Error()
	for _, want := range []string{p + ":2: delivery.retry.max_attempts", p + ":3: delivery.rate.per_second", p + ":9: tenants.acme.destinations.erp.retry.max_attempts"} {
		if !strings.Contains(got, want) {
			t.Errorf("errors lack %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, "destinations.crm.retry") || strings.Contains(got, "destinations.crm.rate") || strings.Contains(got, "destinations.erp.rate") {
		t.Errorf("the inherited default is reported again at crm:\n%s", got)
	}
}

// TestLongValueCut: an error quoting a huge value is cut, saying how much
// was left out, so that it does not bury the other errors.
func TestLongValueCut(t *testing.T) {
	_, errs := loadErrors(t, "server:\n  listen: \""+strings.Repeat("x", 5000)+"\"\n", nil)
	got := errs.Error()
	if len(got) > 1000 || !strings.Contains(got, "more bytes)") || !strings.Contains(got, "server.listen") {
		t.Errorf("error of %d bytes: %.400s", len(got), got)
	}
}

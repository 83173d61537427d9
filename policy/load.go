package policy

import (
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/redis/go-redis/v9"
	"go.yaml.in/yaml/v3"
)

// Error is one problem in a configuration, located by file, line and key.
type Error struct {
	File string
	Line int
	Path string
	Msg  string
}

func (e Error) Error() string {
	return fmt.Sprintf("%s:%d: %s: %s", e.File, e.Line, e.Path, e.Msg)
}

// Errors is every problem found in a configuration, in file and line order.
type Errors []Error

func (es *Errors) add(file string, line int, path, msg string) {
	if path == "" {
		path = "(top)"
	}
	*es = append(*es, Error{File: file, Line: line, Path: path, Msg: msg})
}

func (es Errors) Error() string {
	lines := make([]string, len(es))
	for i, e := range es {
		lines[i] = e.Error()
	}
	return strings.Join(lines, "\n")
}

type pos struct {
	file string
	line int
}

// Defaults applied before the file is read.
var defaultConfig = Config{
	Server: Server{
		Listen:       ":8080",
		AdminListen:  "127.0.0.1:9090",
		MaxBodyBytes: 1 << 20,
	},
	Delivery: Delivery{
		DestinationSettings: DestinationSettings{
			Timeout:     Duration(10 * time.Second),
			MaxInFlight: 16,
			Retry: Retry{
				Initial:     Duration(5 * time.Second),
				Max:         Duration(time.Hour),
				MaxAttempts: 12,
				MaxAge:      Duration(24 * time.Hour),
			},
			Breaker: Breaker{
				FailureRatio: 0.5,
				MinRequests:  10,
				OpenFor:      Duration(30 * time.Second),
				Interval:     Duration(60 * time.Second),
				Probes:       1,
			},
		},
	},
	Redis:   Redis{GroupCommitWindow: Duration(100 * time.Microsecond)},
	Dedup:   Dedup{TTL: Duration(24 * time.Hour)},
	History: History{Retention: Duration(72 * time.Hour)},
	Tracing: Tracing{ServiceName: "switchboard", SampleRatio: 1},
}

// Load reads, expands, defaults and validates the configuration in file.
// Every problem found is returned at once as Errors.
func Load(file string) (*Config, error) {
	return LoadEnv(file, os.LookupEnv)
}

// LoadEnv is Load with the environment given by lookup.
func LoadEnv(file string, lookup func(string) (string, bool)) (*Config, error) {
	src, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	var errs Errors
	cfg := defaultConfig
	cfg.File = file
	lines := map[string]pos{}
	env := map[string][2]string{}
	blocks := map[string]pos{}
	nulls := map[string]bool{}

	root, ok := parseYAML(file, src, &errs)
	if !ok {
		root = nil
	}
	// An empty file (or one of comments only) is all defaults.
	if ok && (root.Kind == 0 || root.Kind == yaml.DocumentNode && len(root.Content) == 0) {
		ok = false
	}
	if ok {
		d := &decoder{file: file, errs: &errs, lookup: lookup, lines: map[string]int{}, blockLines: map[string]int{}, env: env, nulls: nulls}
		// delivery: first, so that destinations start from its values.
		body := root
		if body.Kind == yaml.DocumentNode && len(body.Content) > 0 {
			body = body.Content[0]
		}
		if body.Kind == yaml.MappingNode {
			for i := 0; i+1 < len(body.Content); i += 2 {
				if body.Content[i].Value == "delivery" {
					d.decode(body.Content[i+1], reflectValue(&cfg.Delivery), "delivery", false)
				}
			}
		}
		d.skip = map[string]bool{"delivery": true}
		defaults := cfg.Delivery.DestinationSettings
		d.newDestination = func() *Destination { return &Destination{DestinationSettings: defaults} }
		d.decode(root, reflectValue(&cfg), "", false)
		for p, l := range d.lines {
			lines[p] = pos{file, l}
		}
		for p, l := range d.blockLines {
			blocks[p] = pos{file, l}
		}
		for _, t := range cfg.Tenants {
			t.File = file
		}
		if cfg.TenantsDir != "" {
			loadTenantsDir(&cfg, d, lines, blocks, &errs)
		}
	}
	// Validate even when decoding failed, so one run lists every problem;
	// a key that already has an error is not reported again.
	if root != nil {
		failed := map[string]bool{}
		for _, e := range errs {
			failed[e.Path] = true
		}
		v := validator{cfg: &cfg, lines: lines, blocks: blocks, nulls: nulls, errs: &errs, failed: failed}
		v.validate()
	}
	if len(errs) > 0 {
		hideExpanded(errs, env)
		for i := range errs { // after hideExpanded, so that no cut hides a secret from it
			errs[i].Msg = cutMsg(errs[i].Msg)
		}
		sort.SliceStable(errs, func(i, j int) bool {
			if errs[i].File != errs[j].File {
				return errs[i].File < errs[j].File
			}
			return errs[i].Line < errs[j].Line
		})
		return nil, errs
	}
	cfg.lines = lines
	return &cfg, nil
}

// maxMsg bounds an error message: one that quotes a value of megabytes
// (a pasted file, say) would bury the others.
const maxMsg = 300

// cutMsg is msg cut to maxMsg bytes (at a rune boundary), saying so.
func cutMsg(msg string) string {
	if len(msg) <= maxMsg {
		return msg
	}
	cut := maxMsg
	for cut > 0 && !utf8.RuneStart(msg[cut]) {
		cut--
	}
	return msg[:cut] + fmt.Sprintf("… (%d more bytes)", len(msg)-cut)
}

func parseYAML(file string, src []byte, errs *Errors) (*yaml.Node, bool) {
	var root yaml.Node
	if err := yaml.Unmarshal(src, &root); err != nil {
		line := 0
		msg := err.Error()
		// yaml.v3 says "yaml: line N: problem".
		if _, err := fmt.Sscanf(msg, "yaml: line %d:", &line); err == nil {
			msg = strings.TrimSpace(msg[strings.Index(msg, ":")+1:])
			msg = strings.TrimSpace(msg[strings.Index(msg, ":")+1:])
		} else {
			msg = strings.TrimPrefix(msg, "yaml: ")
		}
		errs.add(file, line, "(syntax)", msg)
		return nil, false
	}
	return &root, true // an empty file is all defaults
}

// loadTenantsDir reads DIR/<tenant>.yaml, each holding what tenants.<tenant>
// would.
func loadTenantsDir(cfg *Config, d *decoder, lines, blocks map[string]pos, errs *Errors) {
	dir := cfg.TenantsDir
	if !filepath.IsAbs(dir) {
		dir = filepath.Join(filepath.Dir(cfg.File), dir)
	}
	matches, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
	if err == nil {
		more, _ := filepath.Glob(filepath.Join(dir, "*.yml"))
		matches = append(matches, more...)
	}
	if err != nil || (len(matches) == 0 && !dirExists(dir)) {
		errs.add(cfg.File, lineOf(lines, "tenants_dir"), "tenants_dir", fmt.Sprintf("cannot read directory %s", dir))
		return
	}
	sort.Strings(matches)
	if cfg.Tenants == nil {
		cfg.Tenants = map[string]*Tenant{}
	}
	for _, f := range matches {
		id := strings.TrimSuffix(strings.TrimSuffix(filepath.Base(f), ".yaml"), ".yml")
		path := "tenants." + id
		src, err := os.ReadFile(f)
		if err != nil {
			errs.add(f, 0, path, err.Error())
			continue
		}
		if !idPattern.MatchString(id) {
			errs.add(f, 0, path, "file name must be a tenant name: letters, digits, '.', '_' or '-'")
			continue
		}
		if prev, ok := cfg.Tenants[id]; ok {
			where := prev.File
			if p, ok := lines[path]; ok && p.line > 0 {
				where = fmt.Sprintf("%s:%d", p.file, p.line)
			}
			errs.add(f, 1, path, fmt.Sprintf("tenant %s is defined twice (also in %s)", id, where))
			continue
		}
		root, ok := parseYAML(f, src, errs)
		if !ok {
			continue
		}
		td := &decoder{file: f, errs: errs, lookup: d.lookup, lines: map[string]int{}, blockLines: map[string]int{}, newDestination: d.newDestination, env: d.env, nulls: d.nulls}
		t := &Tenant{}
		td.decode(root, reflectValue(t), path, false)
		t.File = f
		cfg.Tenants[id] = t
		for p, l := range td.lines {
			lines[p] = pos{f, l}
		}
		for p, l := range td.blockLines {
			blocks[p] = pos{f, l}
		}
		lines[path] = pos{f, 1}
	}
}

func dirExists(dir string) bool {
	st, err := os.Stat(dir)
	return err == nil && st.IsDir()
}

func lineOf(lines map[string]pos, path string) int { return lines[path].line }

// Problem returns an Error located at the key path, for problems found
// after Load by code that builds on the config (such as a carrier's keys).
func (c *Config) Problem(path, msg string) Error {
	p := locate(c.lines, path)
	if p.file == "" {
		p.file = c.File
	}
	return Error{File: p.file, Line: p.line, Path: path, Msg: msg}
}

// Counts returns how many tenants, sources, destinations and routes the
// configuration holds.
func (c *Config) Counts() (tenants, sources, destinations, routes int) {
	for _, t := range c.Tenants {
		tenants++
		sources += len(t.Sources)
		destinations += len(t.Destinations)
		routes += len(t.Routes)
	}
	return
}

// TenantIDs returns the tenant names, sorted.
func (c *Config) TenantIDs() []string {
	ids := make([]string, 0, len(c.Tenants))
	for id := range c.Tenants {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return ids
}

// DestinationIDs returns the tenant's destination names, sorted.
func (t *Tenant) DestinationIDs() []string {
	ids := make([]string, 0, len(t.Destinations))
	for id := range t.Destinations {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return ids
}

// ParseSecret decodes a Standard Webhooks secret, "whsec_" followed by
// base64. The error never contains the secret.
func ParseSecret(s string) ([]byte, error) {
	b64, ok := strings.CutPrefix(s, "whsec_")
	if !ok {
		return nil, errors.New("must start with whsec_ (a Standard Webhooks secret)")
	}
	key, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		return nil, errors.New("is not whsec_ followed by base64")
	}
	if len(key) < 16 {
		return nil, errors.New("is too short: use at least 16 random bytes (24 recommended)")
	}
	return key, nil
}

// carrierKeys lists the keys each carrier needs.
var carrierKeys = map[string][]string{
	"twilio":            {"secret"},
	"vonage-sms":        {"secret", "signature_method"},
	"vonage-messages":   {"secret"},
	"telnyx":            {"public_key"},
	"plivo":             {"secret"},
	"sinch":             {"secret"},
	"bandwidth":         {"username", "password"},
	"messagebird":       {"secret"},
	"bird":              {"secret"},
	"infobip":           {"username", "password"},
	"aws-sns":           {"topic_arns"},
	"africastalking":    {"url_token"},
	"standard-webhooks": {"secret"},
	"hmac":              {"secret", "header", "algorithm", "encoding"},
	"basic":             {"username", "password"},
}

// carrierOptional lists the keys a carrier may take beyond carrierKeys;
// any other credential key set on its source is an error (it would be
// ignored, and an ignored allowed_ips or signature_method is a check the
// operator believes is made).
var carrierOptional = map[string][]string{
	"aws-sns":        {"auto_confirm"},
	"africastalking": {"allowed_ips"},
	"hmac":           {"prefix"},
}

type validator struct {
	cfg   *Config
	lines map[string]pos
	// blocks: where the text of a block scalar starts (decoder.blockLines).
	blocks map[string]pos
	// nulls: keys written with no value (decoder.nulls).
	nulls  map[string]bool
	errs   *Errors
	failed map[string]bool // paths that already have a decoding error
}

func (v *validator) fail(path, format string, args ...any) {
	if v.failed[path] {
		return
	}
	p := locate(v.lines, path)
	if p.file == "" {
		p.file = v.cfg.File
	}
	v.errs.add(p.file, p.line, path, fmt.Sprintf(format, args...))
}

// reported reports whether an error was given for path.
func (v *validator) reported(path string) bool {
	for _, e := range *v.errs {
		if e.Path == path {
			return true
		}
	}
	return false
}

// locate finds the line of path, or of its nearest ancestor that has one
// (a key that was defaulted rather than written has no line of its own).
func locate(lines map[string]pos, path string) pos {
	for q := path; ; {
		if p, ok := lines[q]; ok {
			return p
		}
		i := strings.LastIndexAny(q, ".[")
		if i < 0 {
			return pos{}
		}
		q = q[:i]
	}
}

func (v *validator) validate() {
	c := v.cfg
	s := &c.Server
	if s.Listen == "" {
		v.fail("server.listen", "must not be empty")
	}
	if s.MaxBodyBytes <= 0 {
		v.fail("server.max_body_bytes", "must be positive")
	}
	if s.PublicBaseURL != "" {
		u, err := url.Parse(s.PublicBaseURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
			v.fail("server.public_base_url", "must be an http(s) URL like https://hooks.example.com (no query)")
		} else {
			s.PublicBaseURL = strings.TrimSuffix(s.PublicBaseURL, "/")
		}
	}
	for i, p := range s.TrustedProxies {
		if _, err := ParsePrefix(p); err != nil {
			v.fail(fmt.Sprintf("server.trusted_proxies[%d]", i), "%q is not a CIDR or IP address", p)
		}
	}
	if u := c.Redis.URL; u != "" {
		if !strings.HasPrefix(u, "redis://") && !strings.HasPrefix(u, "rediss://") && !strings.HasPrefix(u, "unix://") {
			v.fail("redis.url", "must start with redis://, rediss:// or unix://")
		} else if _, err := redis.ParseURL(u); err != nil {
			// Not the URL itself: it may hold a password.
			v.fail("redis.url", "cannot be parsed as redis://[user:password@]host:port/db")
		}
	}
	for path, addr := range map[string]string{"server.listen": s.Listen, "server.admin_listen": s.AdminListen} {
		if addr == "" {
			continue
		}
		if _, port, err := net.SplitHostPort(addr); err != nil {
			v.fail(path, "%q is not host:port (like :8080 or 127.0.0.1:9090)", addr)
		} else if _, err := net.LookupPort("tcp", port); err != nil {
			v.fail(path, "%q: %q is not a port", addr, port)
		}
	}
	if c.Dedup.TTL <= 0 {
		v.fail("dedup.ttl", "must be positive")
	}
	if c.History.Retention < 0 {
		v.fail("history.retention", "must not be negative (0s keeps no history)")
	}
	if e := c.Tracing.OTLPEndpoint; e != "" {
		if u, err := url.Parse(e); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			v.fail("tracing.otlp_endpoint", "%q is not an http:// or https:// URL", e)
		}
	}
	if r := c.Tracing.SampleRatio; r <= 0 || r > 1 {
		v.fail("tracing.sample_ratio", "must be above 0 and at most 1")
	}
	if c.Tracing.ServiceName == "" {
		v.fail("tracing.service_name", "must not be empty")
	}
	if c.Spool != nil {
		v.spool(c.Spool)
	}
	switch c.Delivery.RateScope {
	case "":
		c.Delivery.RateScope = RateScopeRedis
	case RateScopeRedis, RateScopeLocal:
	default:
		v.fail("delivery.rate_scope", "%q is not one of redis, local", c.Delivery.RateScope)
	}
	v.settings("delivery", &c.Delivery.DestinationSettings)

	for _, tid := range c.TenantIDs() {
		t := c.Tenants[tid]
		t.ID = tid
		tp := "tenants." + tid
		// A tenant's own retention wins, 0s (no history) included; a key
		// written with no value is left out.
		if _, set := v.lines[tp+".history.retention"]; !set || v.nulls[tp+".history.retention"] {
			t.History.Retention = c.History.Retention
		}
		v.rate(tp+".ingress_rate", &t.IngressRate)
		v.rate(tp+".delivery_rate", &t.DeliveryRate)
		for _, sid := range sortedKeys(t.Sources) {
			src := t.Sources[sid]
			src.ID = sid
			v.source(tp+".sources."+sid, src)
		}
		for _, did := range t.DestinationIDs() {
			dst := t.Destinations[did]
			dst.ID = did
			v.destination(tp+".destinations."+did, dst)
		}
		for _, sid := range sortedKeys(t.Sources) {
			v.passthrough(tp+".sources."+sid, t, t.Sources[sid]) // needs the destinations validated
		}
		for i, r := range t.Routes {
			rp := fmt.Sprintf("%s.routes[%d]", tp, i)
			if r == nil {
				v.fail(rp, "is empty: a route needs to: (the destinations it delivers to)")
				continue
			}
			r.Line = v.lines[rp].line
			r.File = v.lines[rp].file
			v.route(rp, t, r)
		}
	}
}

// spool checks spool: and resolves its dir against the config file's
// directory. Nothing is created: check has no side effects.
func (v *validator) spool(sp *Spool) {
	if sp.Dir == "" {
		v.fail("spool.dir", "is required: the directory that holds the journal")
	} else {
		if !filepath.IsAbs(sp.Dir) {
			sp.Dir = filepath.Join(filepath.Dir(v.cfg.File), sp.Dir)
		}
		if st, err := os.Stat(sp.Dir); err == nil && !st.IsDir() {
			v.fail("spool.dir", "%s is not a directory", sp.Dir)
		}
	}
	if _, set := v.lines["spool.max_bytes"]; !set && sp.MaxBytes == 0 {
		sp.MaxBytes = DefaultSpoolMaxBytes
	} else if sp.MaxBytes <= 0 {
		v.fail("spool.max_bytes", "must be positive (default %d, 64 MiB)", DefaultSpoolMaxBytes)
	}
}

func sortedKeys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

func (v *validator) settings(p string, s *DestinationSettings) {
	// A destination that inherits a bad value from delivery: is not told
	// again, at a key it does not have: inherited reports whether key is
	// not its own and one of bad was reported.
	inherited := func(key string, bad ...string) bool {
		_, own := v.lines[p+"."+key]
		return !own && p != "delivery" && slices.ContainsFunc(bad, v.reported)
	}
	fail := func(key, format string, args ...any) {
		if !inherited(key, "delivery."+key) {
			v.fail(p+"."+key, format, args...)
		}
	}
	if s.Timeout <= 0 {
		fail("timeout", "must be positive")
	}
	if s.MaxInFlight < 1 {
		fail("max_in_flight", "must be at least 1")
	}
	r := &s.Retry
	if r.Initial <= 0 {
		fail("retry.initial", "must be positive")
	}
	if r.Max < r.Initial {
		fail("retry.max", "must be at least retry.initial (%s)", r.Initial.D())
	}
	if r.MaxAttempts < 1 {
		fail("retry.max_attempts", "must be at least 1 (the first attempt counts)")
	}
	if r.MaxAge <= 0 {
		fail("retry.max_age", "must be positive")
	}
	if !inherited("rate", "delivery.rate.per_second", "delivery.rate.burst") {
		v.rate(p+".rate", &s.Rate)
	}
	b := &s.Breaker
	if b.FailureRatio <= 0 || b.FailureRatio > 1 {
		fail("breaker.failure_ratio", "must be above 0 and at most 1")
	}
	if b.MinRequests < 1 {
		fail("breaker.min_requests", "must be at least 1")
	}
	if b.OpenFor <= 0 {
		fail("breaker.open_for", "must be positive")
	}
	if b.Interval <= 0 {
		fail("breaker.interval", "must be positive")
	}
	if b.Probes < 1 {
		fail("breaker.probes", "must be at least 1")
	}
}

func (v *validator) rate(p string, r *Rate) {
	if r.PerSecond < 0 {
		v.fail(p+".per_second", "must not be negative (0 is unlimited)")
	}
	if r.Burst < 0 {
		v.fail(p+".burst", "must not be negative")
	}
	if r.PerSecond > 0 && r.Burst == 0 {
		r.Burst = max(1, int(r.PerSecond+0.999))
	}
}

// SourceCheck, when set, validates a source's settings as its carrier
// reads them (a key's format, say: a Telnyx public_key must be 32 bytes of
// base64). The gateway sets it, so that check and a reload report these
// problems with every other, at the key they are about.
var SourceCheck func(*Source) error

func (v *validator) source(p string, s *Source) {
	before := len(*v.errs)
	defer func() {
		if SourceCheck == nil || len(*v.errs) > before {
			return
		}
		if err := SourceCheck(s); err != nil {
			v.fail(sourceKeyPath(p, err.Error()), "%s", err.Error())
		}
	}()
	keys, ok := carrierKeys[s.Carrier]
	if !ok {
		if s.Carrier == "" {
			v.fail(p+".carrier", "is required")
		} else {
			v.fail(p+".carrier", "unknown carrier %q (known: %s)", s.Carrier, strings.Join(sortedKeys(carrierKeys), ", "))
		}
		return
	}
	vals := map[string]bool{
		"secret": s.Secret != "", "signature_method": s.SignatureMethod != "", "public_key": s.PublicKey != "",
		"username": s.Username != "", "password": s.Password != "", "topic_arns": len(s.TopicARNs) > 0,
		"url_token": s.URLToken != "", "header": s.Header != "", "algorithm": s.Algorithm != "", "encoding": s.Encoding != "",
	}
	for _, k := range keys {
		if !vals[k] {
			v.fail(p+"."+k, "is required for carrier %s", s.Carrier)
		}
	}
	vals["auto_confirm"], vals["allowed_ips"], vals["prefix"] = s.AutoConfirm, len(s.AllowedIPs) > 0, s.Prefix != ""
	for _, k := range sortedKeys(vals) {
		if vals[k] && !slices.Contains(keys, k) && !slices.Contains(carrierOptional[s.Carrier], k) {
			v.fail(p+"."+k, "is not used by carrier %s (it takes %s)", s.Carrier, strings.Join(append(slices.Clone(keys), carrierOptional[s.Carrier]...), ", "))
		}
	}
	for i, c := range s.AllowedIPs {
		if _, err := ParsePrefix(c); err != nil {
			v.fail(fmt.Sprintf("%s.allowed_ips[%d]", p, i), "%q is not a CIDR or IP address", c)
		}
	}
	if s.ReplayWindow < 0 {
		v.fail(p+".replay_window", "must not be negative")
	}
	if s.ReplayWindow == 0 {
		s.ReplayWindow = Duration(5 * time.Minute)
	}
	_, set := v.lines[p+".reassembly_window"]
	set = set && !v.nulls[p+".reassembly_window"]
	switch {
	case !set && s.Carrier == "vonage-sms" && s.Passthrough == nil:
		s.ReassemblyWindow = Duration(DefaultReassemblyWindow)
	case !set:
		s.ReassemblyWindow = 0
	case s.ReassemblyWindow > 0 && s.Carrier != "vonage-sms":
		v.fail(p+".reassembly_window", "only vonage-sms delivers a message in parts")
	case s.ReassemblyWindow > 0 && s.Passthrough != nil:
		v.fail(p+".reassembly_window", "a pass-through source forwards each part while the carrier waits; set 0s or remove passthrough")
	}
}

// DefaultReassemblyWindow is how long a vonage-sms source waits for the
// rest of a multipart message unless reassembly_window says otherwise.
const DefaultReassemblyWindow = time.Minute

// sourceKeyPath is the key a carrier's complaint is about — its errors
// read "telnyx: public_key is not base64" — or the source itself.
func sourceKeyPath(p, msg string) string {
	_, rest, ok := strings.Cut(msg, ": ")
	if !ok {
		rest = msg
	}
	end := strings.IndexFunc(rest, func(r rune) bool { return r != '_' && (r < 'a' || r > 'z') })
	if end < 0 {
		end = len(rest)
	}
	if _, known := fields(reflect.TypeOf(Source{}))[rest[:end]]; known && end > 0 {
		return p + "." + rest[:end]
	}
	return p
}

func (v *validator) destination(p string, d *Destination) {
	if d.Type == TypePull {
		v.pullDestination(p, d) // legacy.go
		return
	}
	v.pushDestination(p, d)
	u, err := url.Parse(d.URL)
	switch {
	case d.URL == "":
		v.fail(p+".url", "is required")
	case err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "":
		v.fail(p+".url", "must be an absolute http(s) URL")
	}
	if len(d.Secret) == 0 {
		v.fail(p+".secret", "is required: a Standard Webhooks secret whsec_…")
	}
	for i, s := range d.Secret {
		if _, err := ParseSecret(s); err != nil {
			sp := p + ".secret"
			if len(d.Secret) > 1 {
				sp = fmt.Sprintf("%s[%d]", sp, i)
			}
			v.fail(sp, "%s", err.Error())
		}
	}
	switch d.Format {
	case "":
		d.Format = FormatNormalized
	case FormatNormalized, FormatRaw:
	case FormatTwilio:
		if d.TwilioAuthToken == "" {
			v.fail(p+".twilio_auth_token", "is required for format twilio")
		}
		if d.TwilioAccountSID == "" {
			d.TwilioAccountSID = "AC" + strings.Repeat("0", 32)
		}
	default:
		v.fail(p+".format", "%q is not one of normalized, raw, twilio", d.Format)
	}
	v.settings(p, &d.DestinationSettings)
}

func (v *validator) route(p string, t *Tenant, r *Route) {
	if len(r.To) == 0 {
		v.fail(p+".to", "must name at least one destination")
	}
	for i, to := range r.To {
		if _, ok := t.Destinations[to]; !ok {
			v.fail(fmt.Sprintf("%s.to[%d]", p, i), "destination %q is not defined in tenant %s", to, t.ID)
		}
	}
	v.compileRoute(p, t, r)
}

// ParsePrefix parses a CIDR, or a single IP address as its /32 or /128.
func ParsePrefix(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		return p.Masked(), err
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	return netip.PrefixFrom(a, a.BitLen()), nil
}

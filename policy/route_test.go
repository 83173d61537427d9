package policy

import (
	"bufio"
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	switchboard "github.com/switchboard-gw/switchboard"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// TestRouteTables routes every event of testdata/routes/NAME.events.jsonl
// with the tenants of NAME.yaml and compares the destinations with
// NAME.golden (rewrite it with -update).
func TestRouteTables(t *testing.T) {
	files, _ := filepath.Glob("testdata/routes/*.yaml")
	if len(files) == 0 {
		t.Fatal("no route tables in testdata/routes")
	}
	for _, file := range files {
		name := strings.TrimSuffix(file, ".yaml")
		t.Run(filepath.Base(name), func(t *testing.T) {
			cfg, err := LoadEnv(file, env(nil))
			if err != nil {
				t.Fatalf("load: %v", err)
			}
			src, err := os.ReadFile(name + ".events.jsonl")
			if err != nil {
				t.Fatal(err)
			}
			var out bytes.Buffer
			sc := bufio.NewScanner(bytes.NewReader(src))
			for n := 1; sc.Scan(); n++ {
				var e switchboard.Event
				if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
					t.Fatalf("event %d: %v", n, err)
				}
				tenant := cfg.Tenants[e.Tenant]
				if tenant == nil {
					t.Fatalf("event %d: tenant %q is not in %s", n, e.Tenant, file)
				}
				dests := strings.Join(tenant.Route(&e), ", ")
				if dests == "" {
					dests = "(no route: not stored)"
				}
				fmt.Fprintf(&out, "%d %s %s/%s status=%q from=%q to=%q text=%q -> %s\n", n, e.Type, e.Carrier, e.Source,
					e.Data.Status, e.Data.From, e.Data.To, e.Data.Text, dests)
			}
			golden := name + ".golden"
			if *update {
				if err := os.WriteFile(golden, out.Bytes(), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if got := out.String(); got != string(want) {
				t.Errorf("routes differ from %s (-update rewrites it)\ngot:\n%swant:\n%s", golden, got, want)
			}
		})
	}
}

func TestGlob(t *testing.T) {
	for _, c := range []struct {
		glob, s string
		want    bool
	}{
		{"+447*", "+447700900123", true},
		{"+447*", "+447", true},
		{"+447*", "+4407700900123", false},
		{"+447*", "x+447", false},
		{"*99", "+15555550199", true},
		{"*99", "9", false},
		{"*", "", true},
		{"12345", "12345", true},
		{"12345", "123456", false},
		{"+1*555*0", "+15550", true},
		{"+1*555*0", "+1555", false},
		{"a*b*c", "abc", true},
		{"a*b*c", "acb", false},
		{"a*a", "a", false},
		{"a*a", "aa", true},
		{"**", "x", true},
		{"+1?", "+1?", true},
		{"+1?", "+12", false},
	} {
		if got := compileGlob(c.glob).match(c.s); got != c.want {
			t.Errorf("glob %q on %q = %v, want %v", c.glob, c.s, got, c.want)
		}
	}
}

func TestEventMapNumbers(t *testing.T) {
	m := EventMap(&switchboard.Event{Type: "message.received", Data: switchboard.EventData{Segments: 2, Text: "x"}})
	data, _ := m["data"].(map[string]any)
	if got, ok := data["segments"].(int64); !ok || got != 2 {
		t.Errorf("data.segments = %#v, want int64 2", data["segments"])
	}
	if _, ok := data["status"]; ok {
		t.Errorf("data.status is present for an event without one: %v", data)
	}
}

// eventMapViaJSON is what EventMap stands for: the event's JSON decoded,
// whole numbers as int64.
func eventMapViaJSON(t testing.TB, e *switchboard.Event) map[string]any {
	dec := json.NewDecoder(bytes.NewReader(e.AppendJSON(nil)))
	dec.UseNumber()
	var v map[string]any
	if err := dec.Decode(&v); err != nil {
		t.Fatal(err)
	}
	var walk func(any) any
	walk = func(v any) any {
		switch v := v.(type) {
		case map[string]any:
			for k, x := range v {
				v[k] = walk(x)
			}
		case []any:
			for i, x := range v {
				v[i] = walk(x)
			}
		case json.Number:
			n, err := v.Int64()
			if err != nil {
				t.Fatalf("%s is not a whole number", v)
			}
			return n
		}
		return v
	}
	return walk(v).(map[string]any)
}

func TestEventMapIsItsJSON(t *testing.T) {
	at := switchboard.TimePtr(time.Date(2026, 3, 1, 12, 30, 45, 123456789, time.UTC))
	full := switchboard.Event{ID: "evt_1", Type: "message.status", Timestamp: *at, Tenant: "acme", Source: "tw", Carrier: "twilio",
		Data: switchboard.EventData{MessageID: "SM1", From: "+15550001111", To: "+15550002222", Text: "hi \xff\xfe <&>",
			Media:    []switchboard.Media{{URL: "https://m/1", ContentType: "image/png"}, {URL: "https://m/2"}},
			Segments: 3, Status: "failed", CarrierStatus: "failed",
			Error: &switchboard.Error{Code: "30003", Message: "x"}, OccurredAt: at}}
	errOnly := full
	errOnly.Data = switchboard.EventData{Error: &switchboard.Error{}}
	for name, e := range map[string]switchboard.Event{"full": full, "empty": {}, "empty error": errOnly} {
		if got, want := EventMap(&e), eventMapViaJSON(t, &e); !reflect.DeepEqual(got, want) {
			t.Errorf("%s: EventMap = %#v\nits JSON decodes to %#v", name, got, want)
		}
	}
}

func FuzzEventMap(f *testing.F) {
	f.Add("vip \xff", "+1555", "", 2)
	f.Fuzz(func(t *testing.T, text, from, code string, segments int) {
		e := &switchboard.Event{Type: "message.received", Carrier: from,
			Data: switchboard.EventData{Text: text, From: from, Segments: segments,
				Media: []switchboard.Media{{URL: text, ContentType: code}}, Error: &switchboard.Error{Code: code, Message: text}}}
		if got, want := EventMap(e), eventMapViaJSON(t, e); !reflect.DeepEqual(got, want) {
			t.Errorf("EventMap = %#v\nits JSON decodes to %#v", got, want)
		}
	})
}

// TestRouteTypeMisspelled: a type the gateway never gives an event is an
// error, though it looks like one: the route would never match.
func TestRouteTypeMisspelled(t *testing.T) {
	_, errs := loadErrors(t, `tenants:
  acme:
    destinations:
      a: {url: "https://a.example.com", secret: `+secret+`}
    routes:
      - match: {types: [message.status, message.recieved]}
        to: [a]
`, nil)
	if want := `match.types[1]: unknown event type "message.recieved"`; !strings.Contains(errs.Error(), want) {
		t.Errorf("errors lack %q; got:\n%s", want, errs)
	}
}

func TestRouteConditionErrors(t *testing.T) {
	body := `tenants:
  acme:
    sources:
      tw: {carrier: twilio, secret: x}
    destinations:
      a: {url: "https://a.example.com", secret: ` + secret + `}
    routes:
      - match:
          types: [received]
          carriers: [twillio]
          sources: [nope]
          statuses: [delivred]
          from: [""]
          text: "(unclosed"
        to: [a]
      - when: event.data.text.contains("vip") &&
        to: [a]
      - when: evnt.carrier == "twilio"
        to: [a]
      - when: event.data.segments + 1
        to: [a]
      - when: event.carrier == "twilio"
        to: [a]
      - when: |
          event.carrier == "twilio" &&
            event.data.nope(1)
        to: [a]
      - when: ""
        to: [a]
`
	p, errs := loadErrors(t, body, nil)
	got := errs.Error()
	for _, w := range []string{
		p + `:9: tenants.acme.routes[0].match.types[0]: unknown event type "received" (known: message.received, message.status)`,
		p + `:10: tenants.acme.routes[0].match.carriers[0]: unknown carrier "twillio"`,
		p + `:11: tenants.acme.routes[0].match.sources[0]: source "nope" is not defined in tenant acme`,
		p + `:12: tenants.acme.routes[0].match.statuses[0]: "delivred" is not a status`,
		p + `:13: tenants.acme.routes[0].match.from[0]: must not be empty`,
		p + `:14: tenants.acme.routes[0].match.text: "(unclosed" is not an RE2 regular expression: missing closing )`,
		p + `:16: tenants.acme.routes[1].when: column `,
		p + `:18: tenants.acme.routes[2].when: column 1: undeclared reference to 'evnt'`,
		p + `:20: tenants.acme.routes[3].when: must be true or false, but its type is int`,
		p + `:26: tenants.acme.routes[5].when: line 2 of the expression, column 18: undeclared reference to 'nope'`, // its own line in the file
		p + `:28: tenants.acme.routes[6].when: is empty`,
	} {
		if !strings.Contains(got, w) {
			t.Errorf("errors lack %q; got:\n%s", w, got)
		}
	}
	if strings.Contains(got, "routes[4]") {
		t.Errorf("a valid when: is reported:\n%s", got)
	}
}

func TestRouteWhenMissingKeyIsFalse(t *testing.T) {
	cfg := mustLoad(t, `tenants:
  acme:
    destinations:
      a: {url: "https://a.example.com", secret: `+secret+`}
      b: {url: "https://b.example.com", secret: `+secret+`}
    routes:
      - when: '!(event.data.text == "x")'
        to: [a]
      - when: event.data.nope.deeper == 1 || true
        to: [b]
`, nil)
	acme := cfg.Tenants["acme"]
	// text is missing: the error makes the whole condition false, negated or not.
	if got := acme.Route(&switchboard.Event{Type: "message.status"}); strings.Join(got, ",") != "b" {
		t.Errorf("routes = %v, want [b]: a missing key is false, but `|| true` still holds", got)
	}
	if got := acme.Route(&switchboard.Event{Type: "message.received", Data: switchboard.EventData{Text: "y"}}); strings.Join(got, ",") != "a" {
		t.Errorf("routes = %v, want [a]", got)
	}
}

func BenchmarkRouteWhen(b *testing.B) {
	cfg := mustLoad(b, `tenants:
  acme:
    destinations:
      a: {url: "https://a.example.com", secret: `+secret+`}
    routes:
      - match: {types: [message.received], to: ["+1555*"], text: "(?i)stop"}
        when: event.data.text.contains("vip") && event.carrier == "twilio"
        to: [a]
`, nil)
	acme := cfg.Tenants["acme"]
	e := &switchboard.Event{Type: "message.received", Carrier: "twilio", Data: switchboard.EventData{To: "+15550100", Text: "vip, STOP"}}
	b.ReportAllocs()
	for b.Loop() {
		if len(acme.Route(e)) != 1 {
			b.Fatal("no route")
		}
	}
}

// TestREADMEWhenExamples: the when: expressions the README shows compile
// and hold for an event they describe.
func TestREADMEWhenExamples(t *testing.T) {
	e := EventMap(&switchboard.Event{Type: "message.received", Carrier: "twilio", Source: "twilio-us",
		Data: switchboard.EventData{From: "+15555550100", To: "+15555550199", Text: "Yes", Segments: 2,
			Media: []switchboard.Media{{URL: "https://m.example.com/1", ContentType: "image/jpeg"}}}})
	st := EventMap(&switchboard.Event{Type: "message.status", Carrier: "twilio",
		Data: switchboard.EventData{Status: "undelivered", Error: &switchboard.Error{Code: "30003"}}})
	for _, c := range []struct {
		expr string
		ev   map[string]any
	}{
		{`event.data.text.contains("vip") && event.carrier == "twilio"`, EventMap(&switchboard.Event{Carrier: "twilio", Data: switchboard.EventData{Text: "a vip"}})},
		{`has(event.data.error) && event.data.error.code in ["30003", "30005"]`, st},
		{`event.data.text.matches("(?i)^(yes|y)$")`, e},
		{`size(event.data.media) > 0 && event.data.media[0].content_type.startsWith("image/")`, e},
		{`event.data.segments >= 2`, e},
		{`event.source in ["twilio-us", "twilio-ca"] && event.data.to.startsWith("+1")`, e},
	} {
		p, err := compileWhen(c.expr)
		if err != nil {
			t.Errorf("%s: %v", c.expr, err)
			continue
		}
		if !p.eval(c.ev) {
			t.Errorf("%s is false for %v, want true", c.expr, c.ev)
		}
	}
	if p, _ := compileWhen(`event.data.status != "delivered"`); p.eval(e) {
		t.Error(`event.data.status != "delivered" holds for an inbound event without a status, want false`)
	}
}

package policy

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

// The JSON Schema of the config file, for editors. These tests keep it in
// step with the loader: the keys come from the config structs' yaml tags
// through fields (the decoder's own key table), the enums from the
// constants the validator checks against, the defaults from what Load
// produces, and every key of the example configs must be declared.
const schemaFile = "../configs/switchboard.schema.json"

type schemaNode = map[string]any

func loadSchema(t *testing.T) schemaNode {
	t.Helper()
	b, err := os.ReadFile(schemaFile)
	if err != nil {
		t.Fatal(err)
	}
	var root schemaNode
	if err := json.Unmarshal(b, &root); err != nil {
		t.Fatalf("%s: %v", schemaFile, err)
	}
	if got := root["$schema"]; got != "https://json-schema.org/draft/2020-12/schema" {
		t.Errorf("$schema = %v, want draft 2020-12", got)
	}
	return root
}

// resolve follows a local $ref ("#/$defs/x"), the keys beside it taking
// precedence over the target's (as editors merge them). A boolean schema or
// anything else that is not an object resolves to nil.
func resolve(root schemaNode, v any) schemaNode {
	n, ok := v.(schemaNode)
	if !ok {
		return nil
	}
	for depth := 0; depth < 16; depth++ {
		ref, ok := n["$ref"].(string)
		if !ok {
			return n
		}
		var target any = root
		for _, part := range strings.Split(strings.TrimPrefix(ref, "#/"), "/") {
			m, _ := target.(schemaNode)
			target = m[part]
		}
		tn, ok := target.(schemaNode)
		if !ok {
			return nil // a dangling $ref: reported by the walkers as a missing type
		}
		merged := schemaNode{}
		for k, x := range tn {
			merged[k] = x
		}
		for k, x := range n {
			if k != "$ref" {
				merged[k] = x
			}
		}
		n = merged
	}
	return nil
}

// accepts returns the JSON types a schema admits, through $ref, type,
// const, enum and its anyOf/oneOf/allOf branches ("integer" for "number").
func accepts(root schemaNode, v any) map[string]bool {
	out := map[string]bool{}
	var walk func(v any, depth int)
	walk = func(v any, depth int) {
		n := resolve(root, v)
		if n == nil || depth > 16 {
			return
		}
		switch ty := n["type"].(type) {
		case string:
			out[ty] = true
		case []any:
			for _, x := range ty {
				if s, ok := x.(string); ok {
					out[s] = true
				}
			}
		}
		values := []any{}
		if c, ok := n["const"]; ok {
			values = append(values, c)
		}
		if e, ok := n["enum"].([]any); ok {
			values = append(values, e...)
		}
		for _, x := range values {
			switch x.(type) {
			case string:
				out["string"] = true
			case float64:
				out["number"] = true
			case bool:
				out["boolean"] = true
			case nil:
				out["null"] = true
			}
		}
		for _, k := range []string{"anyOf", "oneOf", "allOf"} {
			bs, _ := n[k].([]any)
			for _, b := range bs {
				walk(b, depth+1)
			}
		}
	}
	walk(v, 0)
	if out["number"] {
		out["integer"] = true
	}
	return out
}

// items returns the schema of a list's elements: the node's own items, or
// those of its first branch that has any.
func items(root schemaNode, v any) any {
	n := resolve(root, v)
	if n == nil {
		return nil
	}
	if it, ok := n["items"]; ok {
		return it
	}
	for _, k := range []string{"anyOf", "oneOf"} {
		bs, _ := n[k].([]any)
		for _, b := range bs {
			if it := items(root, b); it != nil {
				return it
			}
		}
	}
	return nil
}

// conditionalKeys lists the property names and required keys that a
// struct's subschemas (allOf/anyOf/oneOf, if/then/else) mention.
func conditionalKeys(root schemaNode, n schemaNode) []string {
	var out []string
	var walk func(v any)
	walk = func(v any) {
		m := resolve(root, v)
		if m == nil {
			return
		}
		props, _ := m["properties"].(schemaNode)
		for k := range props {
			out = append(out, k)
		}
		req, _ := m["required"].([]any)
		for _, k := range req {
			out = append(out, fmt.Sprint(k))
		}
		for _, k := range []string{"if", "then", "else", "not"} {
			if x, ok := m[k]; ok {
				walk(x)
			}
		}
		for _, k := range []string{"allOf", "anyOf", "oneOf"} {
			bs, _ := m[k].([]any)
			for _, b := range bs {
				walk(b)
			}
		}
	}
	for _, k := range []string{"if", "then", "else", "not", "allOf", "anyOf", "oneOf"} {
		if x, ok := n[k]; ok {
			if bs, ok := x.([]any); ok {
				for _, b := range bs {
					walk(b)
				}
			} else {
				walk(x)
			}
		}
	}
	return out
}

// schemaWalker compares the schema with the config types.
type schemaWalker struct {
	root     schemaNode
	problems []string
}

func (w *schemaWalker) fail(path, format string, args ...any) {
	if path == "" {
		path = "(top)"
	}
	w.problems = append(w.problems, path+": "+fmt.Sprintf(format, args...))
}

func (w *schemaWalker) walk(raw any, t reflect.Type, path string) {
	n := resolve(w.root, raw)
	if n == nil {
		w.fail(path, "no schema (or a dangling $ref)")
		return
	}
	types := accepts(w.root, raw)
	want := func(ty string) {
		if !types[ty] {
			w.fail(path, "the loader takes a %s here (%s), the schema does not", ty, t)
		}
	}
	switch {
	case t == durationType:
		if rm, _ := raw.(schemaNode); rm["$ref"] != "#/$defs/duration" {
			w.fail(path, "a duration must be {\"$ref\": \"#/$defs/duration\"}, got %v", raw)
		}
		return
	case t == stringListType:
		want("string")
		want("array")
		return
	}
	switch t.Kind() {
	case reflect.Pointer:
		w.walk(raw, t.Elem(), path)
	case reflect.Struct:
		want("object")
		if ap, ok := n["additionalProperties"].(bool); !ok || ap {
			w.fail(path, "additionalProperties must be false: the loader rejects unknown keys")
		}
		props, _ := n["properties"].(schemaNode)
		fs := fields(t)
		for _, k := range sortedKeys(fs) {
			p, ok := props[k]
			if !ok {
				w.fail(join(path, k), "the loader accepts this key, the schema does not declare it")
				continue
			}
			if d, _ := resolve(w.root, p)["description"].(string); d == "" {
				w.fail(join(path, k), "has no description")
			}
			w.walk(p, t.FieldByIndex(fs[k].index).Type, join(path, k))
		}
		for _, k := range sortedKeys(props) {
			if _, ok := fs[k]; !ok {
				w.fail(join(path, k), "the schema declares this key, the loader rejects it")
			}
		}
		req, _ := n["required"].([]any)
		keys := conditionalKeys(w.root, n)
		for _, k := range req {
			keys = append(keys, fmt.Sprint(k))
		}
		for _, k := range keys {
			if _, ok := fs[k]; !ok {
				w.fail(join(path, k), "named in a required list or condition, but the loader rejects this key")
			}
		}
	case reflect.Map:
		want("object")
		pn := resolve(w.root, n["propertyNames"])
		if pn["pattern"] != idPattern.String() {
			w.fail(path, "propertyNames.pattern = %v, want the loader's %s", pn["pattern"], idPattern)
		}
		ap, ok := n["additionalProperties"].(schemaNode)
		if !ok {
			w.fail(path, "additionalProperties must be the schema of an entry")
			return
		}
		w.walk(ap, t.Elem(), path+".*")
	case reflect.Slice:
		want("array")
		it := items(w.root, raw)
		if it == nil {
			w.fail(path, "a list without items")
			return
		}
		w.walk(it, t.Elem(), path+"[]")
	case reflect.String:
		want("string")
	case reflect.Bool:
		want("boolean")
	case reflect.Int, reflect.Int64:
		want("integer")
	case reflect.Float64:
		want("number")
	default:
		w.fail(path, "the test does not know the Go type %s", t)
	}
}

// TestSchemaMatchesLoader fails when the loader accepts a key the schema
// lacks, when the schema names a key the loader rejects, or when a value's
// type or an object's closedness differs.
func TestSchemaMatchesLoader(t *testing.T) {
	root := loadSchema(t)
	w := &schemaWalker{root: root}
	w.walk(root, reflect.TypeOf(Config{}), "")
	// A file in tenants_dir holds one tenant: $defs/tenant must be complete
	// on its own, also should tenants.* stop referring to it.
	tenants, _ := root["properties"].(schemaNode)["tenants"].(schemaNode)
	if ap, _ := tenants["additionalProperties"].(schemaNode); ap["$ref"] != "#/$defs/tenant" {
		w.walk(schemaNode{"$ref": "#/$defs/tenant"}, reflect.TypeOf(Tenant{}), "$defs/tenant")
	}
	for _, p := range w.problems {
		t.Errorf("%s: %s", schemaFile, p)
	}
}

// lookup descends the schema by property names ("*" for a map's entries,
// "[]" for a list's elements), resolving $refs on the way.
func lookup(t *testing.T, root schemaNode, path string) schemaNode {
	t.Helper()
	n := root
	for _, part := range strings.Split(path, ".") {
		var next any
		switch part {
		case "*":
			next = n["additionalProperties"]
		case "[]":
			next = items(root, n)
		default:
			props, _ := n["properties"].(schemaNode)
			next = props[part]
		}
		n = resolve(root, next)
		if n == nil {
			t.Fatalf("%s: no schema at %s (stopped at %q)", schemaFile, path, part)
		}
	}
	return n
}

// enumOf collects the string values of a schema's enum and const, through
// $refs and anyOf/oneOf branches.
func enumOf(root schemaNode, v any) []string {
	var out []string
	n := resolve(root, v)
	if n == nil {
		return nil
	}
	if e, ok := n["enum"].([]any); ok {
		for _, x := range e {
			if s, ok := x.(string); ok {
				out = append(out, s)
			}
		}
	}
	if s, ok := n["const"].(string); ok {
		out = append(out, s)
	}
	for _, k := range []string{"anyOf", "oneOf"} {
		bs, _ := n[k].([]any)
		for _, b := range bs {
			out = append(out, enumOf(root, b)...)
		}
	}
	sort.Strings(out)
	return slices.Compact(out)
}

func sorted(s ...string) []string {
	s = slices.Clone(s)
	sort.Strings(s)
	return s
}

// TestSchemaEnums checks the schema's closed value sets against the ones
// the validator enforces.
func TestSchemaEnums(t *testing.T) {
	root := loadSchema(t)
	carriers := sortedKeys(carrierKeys)
	for path, want := range map[string][]string{
		"delivery.rate_scope":                   sorted(RateScopeRedis, RateScopeLocal),
		"tenants.*.sources.*.carrier":           carriers,
		"tenants.*.destinations.*.format":       sorted(FormatNormalized, FormatRaw, FormatTwilio),
		"tenants.*.destinations.*.type":         sorted(TypePush, TypePull),
		"tenants.*.destinations.*.order_key":    {OrderKeyConversation},
		"tenants.*.routes.[].match.carriers.[]": carriers,
		"tenants.*.routes.[].match.statuses.[]": sorted(statuses...),
	} {
		if got := enumOf(root, lookup(t, root, path)); !slices.Equal(got, want) {
			t.Errorf("%s: enum = %v, want %v", path, got, want)
		}
	}

	// Each carrier's required keys: one if/then per carrier, as carrierKeys.
	source := lookup(t, root, "tenants.*.sources.*")
	seen := map[string]bool{}
	rules, _ := source["allOf"].([]any)
	for _, r := range rules {
		rule := resolve(root, r)
		cond := resolve(root, rule["if"])
		props, _ := cond["properties"].(schemaNode)
		c, _ := resolve(root, props["carrier"])["const"].(string)
		if c == "" {
			continue
		}
		seen[c] = true
		var got []string
		req, _ := resolve(root, rule["then"])["required"].([]any)
		for _, k := range req {
			got = append(got, fmt.Sprint(k))
		}
		if want := carrierKeys[c]; !slices.Equal(sorted(got...), sorted(want...)) {
			t.Errorf("carrier %s: schema requires %v, the loader %v", c, got, want)
		}
	}
	for _, c := range carriers {
		if !seen[c] {
			t.Errorf("carrier %s: no if/then rule for its required keys %v", c, carrierKeys[c])
		}
	}

	// A pull destination refuses exactly the push-only keys.
	dest := lookup(t, root, "tenants.*.destinations.*")
	var refused []string
	rules, _ = dest["allOf"].([]any)
	for _, r := range rules {
		rule := resolve(root, r)
		props, _ := resolve(root, rule["if"])["properties"].(schemaNode)
		if resolve(root, props["type"])["const"] != TypePull {
			continue
		}
		then, _ := resolve(root, rule["then"])["properties"].(schemaNode)
		for k, v := range then {
			if v == false {
				refused = append(refused, k)
			}
		}
	}
	if got, want := sorted(refused...), sorted(pushOnly...); !slices.Equal(got, want) {
		t.Errorf("type pull refuses %v in the schema, %v in the loader", got, want)
	}
}

// TestSchemaDefaults checks every "default" in the schema against what
// Load gives a config that leaves the key out.
func TestSchemaDefaults(t *testing.T) {
	root := loadSchema(t)
	cfg := mustLoad(t, `
spool: {dir: journal}
tenants:
  acme:
    sources: {tw: {carrier: twilio, secret: x}}
    destinations: {crm: {url: "https://crm.example.com/hooks", secret: `+secret+`}}
    routes: [{to: [crm]}]
`, nil)
	checked := 0
	var walk func(raw any, v reflect.Value, path string)
	walk = func(raw any, v reflect.Value, path string) {
		n := resolve(root, raw)
		if n == nil {
			return
		}
		if def, ok := n["default"]; ok {
			checked++
			if err := sameAsDefault(def, v); err != nil {
				t.Errorf("%s: schema default %v, but Load gives %v: %v", path, def, v.Interface(), err)
			}
		}
		switch v.Kind() {
		case reflect.Pointer:
			if !v.IsNil() {
				walk(raw, v.Elem(), path)
			}
		case reflect.Struct:
			if v.Type() == durationType {
				return
			}
			props, _ := n["properties"].(schemaNode)
			fs := fields(v.Type())
			for _, k := range sortedKeys(fs) {
				if p, ok := props[k]; ok {
					walk(p, v.FieldByIndex(fs[k].index), join(path, k))
				}
			}
		case reflect.Map:
			for _, k := range v.MapKeys() {
				walk(n["additionalProperties"], v.MapIndex(k), path+"."+k.String())
			}
		case reflect.Slice:
			if v.Type() == stringListType {
				return
			}
			for i := 0; i < v.Len(); i++ {
				walk(items(root, raw), v.Index(i), fmt.Sprintf("%s[%d]", path, i))
			}
		}
	}
	walk(root, reflect.ValueOf(cfg).Elem(), "")
	if checked < 20 {
		t.Errorf("only %d defaults checked: the walk lost its way", checked)
	}
}

func sameAsDefault(def any, v reflect.Value) error {
	if v.Type() == durationType {
		s := fmt.Sprint(def)
		d, err := time.ParseDuration(s)
		if err != nil {
			return err
		}
		if d != time.Duration(v.Int()) {
			return fmt.Errorf("%s is not %s", d, time.Duration(v.Int()))
		}
		return nil
	}
	var same bool
	switch v.Kind() {
	case reflect.String:
		same = def == v.String()
	case reflect.Bool:
		same = def == v.Bool()
	case reflect.Int, reflect.Int64:
		same = def == float64(v.Int())
	case reflect.Float64:
		same = def == v.Float()
	default:
		return fmt.Errorf("a default on a %s", v.Type())
	}
	if !same {
		return fmt.Errorf("differ")
	}
	return nil
}

// TestSchemaDurationPattern checks $defs/duration's pattern against
// time.ParseDuration, the loader's parser (negative durations are refused).
func TestSchemaDurationPattern(t *testing.T) {
	root := loadSchema(t)
	var pattern string
	bs, _ := lookup(t, root, "redis.group_commit_window")["anyOf"].([]any)
	for _, b := range bs {
		// The duration's own pattern, not the ${ENV} branch it refers to.
		if n, _ := b.(schemaNode); n["$ref"] == nil && n["type"] == "string" && n["pattern"] != nil {
			pattern = n["pattern"].(string)
		}
	}
	re, err := regexp.Compile(pattern)
	if err != nil || pattern == "" {
		t.Fatalf("$defs/duration pattern %q: %v", pattern, err)
	}
	for _, s := range []string{"0", "0s", "250ms", "30s", "2h", "1h30m", "1.5h", ".5s", "1.s", "100µs", "100μs",
		"100us", "10ns", "+5s", "10", "10d", "1w", "-5s", "1h-5m", "", "5 s", "1e3s", "s", "h1", "1.2.3s"} {
		d, err := time.ParseDuration(s)
		want := err == nil && d >= 0
		if got := re.MatchString(s); got != want {
			t.Errorf("duration %q: schema says %v, the loader %v", s, got, want)
		}
	}
}

// TestSchemaCoversExampleConfigs walks every example config alongside the
// schema: each key used must be declared where it is used.
func TestSchemaCoversExampleConfigs(t *testing.T) {
	root := loadSchema(t)
	files, _ := filepath.Glob("../configs/*.yaml")
	if len(files) < 3 {
		t.Fatalf("found %d example configs in ../configs, want at least 3", len(files))
	}
	for _, f := range files {
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var doc yaml.Node
		if err := yaml.Unmarshal(src, &doc); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		var walk func(raw any, n *yaml.Node, path string)
		walk = func(raw any, n *yaml.Node, path string) {
			switch n.Kind {
			case yaml.DocumentNode:
				for _, c := range n.Content {
					walk(raw, c, path)
				}
				return
			case yaml.AliasNode:
				walk(raw, n.Alias, path)
				return
			}
			s := resolve(root, raw)
			if s == nil {
				t.Errorf("%s:%d: %s: no schema here", f, n.Line, path)
				return
			}
			switch n.Kind {
			case yaml.MappingNode:
				if !accepts(root, raw)["object"] {
					t.Errorf("%s:%d: %s: a mapping where the schema takes none", f, n.Line, path)
					return
				}
				props, _ := s["properties"].(schemaNode)
				for i := 0; i+1 < len(n.Content); i += 2 {
					k, val := n.Content[i], n.Content[i+1]
					p := join(path, k.Value)
					if ps, ok := props[k.Value]; ok {
						walk(ps, val, p)
					} else if ap, ok := s["additionalProperties"].(schemaNode); ok {
						walk(ap, val, p)
					} else {
						t.Errorf("%s:%d: %s: key not declared in the schema", f, k.Line, p)
					}
				}
			case yaml.SequenceNode:
				it := items(root, raw)
				if it == nil {
					t.Errorf("%s:%d: %s: a list where the schema takes none", f, n.Line, path)
					return
				}
				for i, c := range n.Content {
					walk(it, c, fmt.Sprintf("%s[%d]", path, i))
				}
			}
		}
		walk(root, &doc, "")
	}
}

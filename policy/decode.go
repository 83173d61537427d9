package policy

import (
	"fmt"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// decoder maps a YAML node tree onto the config structs by their yaml tags,
// so that every error can name the file, line and key path, unknown keys are
// caught, and ${ENV} is expanded in values after parsing (never changing
// line numbers). Only keys present in the YAML are written: defaults set
// beforehand survive, which is how destinations inherit delivery:.
type decoder struct {
	file   string
	errs   *Errors
	lookup func(string) (string, bool)
	// lines records the line of every key path seen, for later validation.
	lines map[string]int
	// blockLines records, for a block scalar ("key: |"), the line its
	// text starts on: a problem in that text is on a line of its own.
	blockLines map[string]int
	// newDestination returns a destination pre-filled with the defaults.
	newDestination func() *Destination
	// skip lists key paths already decoded.
	skip map[string]bool
	// env records, per key path, a value that ${NAME} expanded, and the
	// text it was written as: errors show the latter (a misplaced secret
	// must not be printed by check).
	env map[string][2]string
	// nulls records the key paths written with no value ("key:"): they
	// keep their default, as if left out.
	nulls map[string]bool
	// merged caches each merged mapping's pairs, so that a mapping
	// merged many times is expanded once (no exponential blow-up).
	merged map[*yaml.Node][]*yaml.Node
}

var (
	durationType   = reflect.TypeOf(Duration(0))
	stringListType = reflect.TypeOf(StringList(nil))
	destPtrType    = reflect.TypeOf((*Destination)(nil))
	envPattern     = regexp.MustCompile(`\$\{([^}]*)\}`)
)

func (d *decoder) errorf(n *yaml.Node, path, format string, args ...any) {
	line := 0
	if n != nil {
		line = n.Line
	}
	d.errs.add(d.file, line, path, fmt.Sprintf(format, args...))
}

// expand replaces ${NAME} from the environment. An unset variable is an
// error naming it; the value itself is never echoed.
func (d *decoder) expand(n *yaml.Node, path string) (string, bool) {
	s := n.Value
	if !strings.Contains(s, "${") {
		return s, true
	}
	ok := true
	out := envPattern.ReplaceAllStringFunc(s, func(m string) string {
		name := m[2 : len(m)-1]
		if name == "" {
			d.errorf(n, path, "empty ${} in value")
			ok = false
			return ""
		}
		v, set := d.lookup(name)
		if !set {
			d.errorf(n, path, "environment variable %s is not set", name)
			ok = false
		}
		return v
	})
	if ok && d.env != nil {
		d.env[path] = [2]string{out, s}
	}
	return out, ok
}

// hideExpanded rewrites errs so that none shows a value ${NAME} expanded
// to: the error names the text written in the file instead.
func hideExpanded(errs Errors, env map[string][2]string) {
	for i, e := range errs {
		for path, x := range env {
			// The error's own key, or one below it (a list item, a
			// source's key when the source is blamed).
			if x[0] == "" || path != e.Path && !strings.HasPrefix(path, e.Path+".") && !strings.HasPrefix(path, e.Path+"[") {
				continue
			}
			errs[i].Msg = strings.ReplaceAll(errs[i].Msg, strconv.Quote(x[0]), strconv.Quote(x[1]))
			if len(x[0]) >= 4 && strings.Contains(errs[i].Msg, x[0]) {
				// The value appears unquoted (in a wrapped error, or by
				// chance as a word of the message): replacing it would
				// show where it stood, so the message goes.
				errs[i].Msg = "is not valid (its value comes from " + x[1] + " and is not shown)"
			}
		}
	}
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func (d *decoder) decode(n *yaml.Node, v reflect.Value, path string, secret bool) {
	switch n.Kind {
	case yaml.DocumentNode:
		if len(n.Content) > 0 {
			d.decode(n.Content[0], v, path, secret)
		}
		return
	case yaml.AliasNode:
		d.decode(n.Alias, v, path, secret)
		return
	}
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		if d.nulls != nil {
			d.nulls[path] = true
		}
		return // "key:" with no value keeps the default
	}
	switch {
	case v.Type() == durationType:
		s, ok := d.scalar(n, path)
		if !ok {
			return
		}
		dur, err := time.ParseDuration(s)
		if err != nil || dur < 0 {
			d.errorf(n, path, "%q is not a duration (like 250ms, 30s, 2h)", s)
			return
		}
		v.SetInt(int64(dur))
		return
	case v.Type() == stringListType:
		if n.Kind == yaml.ScalarNode {
			s, ok := d.scalarSecret(n, path, secret)
			if ok {
				v.Set(reflect.ValueOf(StringList{s}))
			}
			return
		}
	case v.Type() == destPtrType && v.IsNil() && d.newDestination != nil:
		v.Set(reflect.ValueOf(d.newDestination()))
	}

	switch v.Kind() {
	case reflect.Pointer:
		if v.IsNil() {
			v.Set(reflect.New(v.Type().Elem()))
		}
		d.decode(n, v.Elem(), path, secret)
	case reflect.Struct:
		d.decodeStruct(n, v, path)
	case reflect.Map:
		d.decodeMap(n, v, path, secret)
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			d.errorf(n, path, "must be a list")
			return
		}
		s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
		for i, c := range n.Content {
			p := fmt.Sprintf("%s[%d]", path, i)
			d.lines[p] = c.Line
			d.decode(c, s.Index(i), p, secret)
		}
		v.Set(s)
	case reflect.String:
		if s, ok := d.scalarSecret(n, path, secret); ok {
			v.SetString(s)
			if n.Style&yaml.LiteralStyle != 0 && d.blockLines != nil { // ">" joins lines: no mapping
				d.blockLines[path] = n.Line + 1
			}
		}
	case reflect.Bool:
		s, ok := d.scalar(n, path)
		if !ok {
			return
		}
		b, err := strconv.ParseBool(s)
		if err != nil {
			d.errorf(n, path, "%q is not true or false", s)
			return
		}
		v.SetBool(b)
	case reflect.Int, reflect.Int64:
		s, ok := d.scalar(n, path)
		if !ok {
			return
		}
		i, err := strconv.ParseInt(s, 0, 64)
		if err != nil {
			d.errorf(n, path, "%q is not a whole number", s)
			return
		}
		v.SetInt(i)
	case reflect.Float64:
		s, ok := d.scalar(n, path)
		if !ok {
			return
		}
		f, err := strconv.ParseFloat(s, 64)
		if err != nil {
			d.errorf(n, path, "%q is not a number", s)
			return
		}
		v.SetFloat(f)
	default:
		d.errorf(n, path, "cannot be set") // a bug in the config types
	}
}

func (d *decoder) scalar(n *yaml.Node, path string) (string, bool) {
	return d.scalarSecret(n, path, false)
}

func (d *decoder) scalarSecret(n *yaml.Node, path string, secret bool) (string, bool) {
	if n.Kind != yaml.ScalarNode {
		if secret {
			d.errorf(n, path, "must be a single value")
		} else {
			d.errorf(n, path, "must be a single value, not a %s", kindName(n.Kind))
		}
		return "", false
	}
	return d.expand(n, path)
}

func kindName(k yaml.Kind) string {
	switch k {
	case yaml.MappingNode:
		return "mapping"
	case yaml.SequenceNode:
		return "list"
	}
	return "value"
}

type fieldInfo struct {
	index  []int
	secret bool
}

// fields lists a struct's YAML keys, descending into ",inline" structs.
func fields(t reflect.Type) map[string]fieldInfo {
	out := map[string]fieldInfo{}
	var walk func(t reflect.Type, prefix []int)
	walk = func(t reflect.Type, prefix []int) {
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			tag := f.Tag.Get("yaml")
			if tag == "-" || !f.IsExported() {
				continue
			}
			name, opts, _ := strings.Cut(tag, ",")
			idx := append(append([]int(nil), prefix...), i)
			if opts == "inline" {
				walk(f.Type, idx)
				continue
			}
			if name == "" {
				continue
			}
			out[name] = fieldInfo{index: idx, secret: f.Tag.Get("secret") == "true"}
		}
	}
	walk(t, nil)
	return out
}

// pairs is a mapping's key/value nodes with YAML merge keys applied:
// "<<: *defaults" (or a list of aliases) brings in the keys of the merged
// mappings that the mapping does not set itself.
func (d *decoder) pairs(n *yaml.Node, path string) []*yaml.Node {
	return d.mergedPairs(n, path, map[*yaml.Node]bool{n: true})
}

// mergedPairs is pairs; within lists the mappings being merged, so that
// one that merges itself is an error rather than endless.
func (d *decoder) mergedPairs(n *yaml.Node, path string, within map[*yaml.Node]bool) []*yaml.Node {
	merge := false
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Tag == "!!merge" {
			merge = true
		}
	}
	if !merge {
		return n.Content
	}
	own := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Tag != "!!merge" {
			own[n.Content[i].Value] = true
		}
	}
	var out []*yaml.Node
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		if k.Tag != "!!merge" {
			out = append(out, k, val)
			continue
		}
		sources := []*yaml.Node{val}
		if val.Kind == yaml.SequenceNode {
			sources = val.Content
		}
		for _, m := range sources {
			if m.Kind == yaml.AliasNode {
				m = m.Alias
			}
			if m.Kind != yaml.MappingNode {
				d.errorf(k, join(path, "<<"), "merges a %s; only mappings can be merged", kindName(m.Kind))
				continue
			}
			if within[m] {
				d.errorf(k, join(path, "<<"), "merges a mapping that contains this one")
				continue
			}
			mp, ok := d.merged[m]
			if !ok {
				within[m] = true
				mp = d.mergedPairs(m, path, within)
				delete(within, m)
				if d.merged == nil {
					d.merged = map[*yaml.Node][]*yaml.Node{}
				}
				d.merged[m] = mp
			}
			for j := 0; j+1 < len(mp); j += 2 {
				if !own[mp[j].Value] {
					own[mp[j].Value] = true // the first merged mapping wins
					out = append(out, mp[j], mp[j+1])
				}
			}
		}
	}
	return out
}

func (d *decoder) decodeStruct(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind != yaml.MappingNode {
		d.errorf(n, path, "must be a mapping of keys, not a %s", kindName(n.Kind))
		return
	}
	fs := fields(v.Type())
	seen := map[string]bool{}
	content := d.pairs(n, path)
	for i := 0; i+1 < len(content); i += 2 {
		k, val := content[i], content[i+1]
		p := join(path, k.Value)
		if seen[k.Value] {
			d.errorf(k, p, "defined twice")
			continue
		}
		seen[k.Value] = true
		if d.skip[p] {
			continue
		}
		f, ok := fs[k.Value]
		if !ok {
			d.errorf(k, p, "unknown key")
			continue
		}
		d.lines[p] = k.Line
		d.decode(val, v.FieldByIndex(f.index), p, f.secret)
	}
}

var idPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$`)

func (d *decoder) decodeMap(n *yaml.Node, v reflect.Value, path string, secret bool) {
	if n.Kind != yaml.MappingNode {
		d.errorf(n, path, "must be a mapping, not a %s", kindName(n.Kind))
		return
	}
	if v.IsNil() {
		v.Set(reflect.MakeMap(v.Type()))
	}
	content := d.pairs(n, path)
	for i := 0; i+1 < len(content); i += 2 {
		k, val := content[i], content[i+1]
		p := join(path, k.Value)
		if !idPattern.MatchString(k.Value) {
			d.errorf(k, p, "name must be 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit")
			continue
		}
		key := reflect.ValueOf(k.Value)
		if v.MapIndex(key).IsValid() {
			d.errorf(k, p, "defined twice")
			continue
		}
		d.lines[p] = k.Line
		elem := reflect.New(v.Type().Elem()).Elem()
		d.decode(val, elem, p, secret)
		if elem.Kind() == reflect.Pointer && elem.IsNil() {
			// "name:" with no value: an empty entry, defaults applied.
			if elem.Type() == destPtrType && d.newDestination != nil {
				elem.Set(reflect.ValueOf(d.newDestination()))
			} else {
				elem.Set(reflect.New(elem.Type().Elem()))
			}
		}
		v.SetMapIndex(key, elem)
	}
}

func reflectValue(p any) reflect.Value { return reflect.ValueOf(p).Elem() }

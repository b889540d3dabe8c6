package config

import (
	"fmt"
	"net/netip"
	"reflect"
	"strings"

	"go.yaml.in/yaml/v3"
)

// maxNodes bounds the work of decoding one file, so that nested aliases
// ("billion laughs") cannot make it explode.
const maxNodes = 100000

// decoder walks a yaml.Node tree into a struct, strictly, by the `yaml` tags
// of its fields, recording the line of every key path it sets and every
// problem it meets.
type decoder struct {
	file  string
	errs  Errors
	lines map[string]int
	bad   map[string]bool
	nodes int
}

var (
	durationType = reflect.TypeFor[Duration]()
	sizeType     = reflect.TypeFor[Size]()
	prefixType   = reflect.TypeFor[netip.Prefix]()
)

func (d *decoder) errorf(line int, key, format string, args ...any) {
	d.errs = append(d.errs, &Error{File: d.file, Line: line, Key: key, Msg: fmt.Sprintf(format, args...)})
	if key != "" {
		d.bad[key] = true
	}
}

// decode stores n into v (addressable). path is the dotted key path of n.
func (d *decoder) decode(n *yaml.Node, path string, v reflect.Value) {
	d.nodes++
	if d.nodes > maxNodes {
		if d.nodes == maxNodes+1 {
			d.errorf(n.Line, path, "document too large or too deeply aliased")
		}
		return
	}
	if n.Kind == yaml.AliasNode {
		if n.Alias == nil {
			d.errorf(n.Line, path, "unknown alias")
			return
		}
		// Report problems at the alias, not at the anchor.
		line := n.Line
		before := len(d.errs)
		d.decode(n.Alias, path, v)
		for _, e := range d.errs[before:] {
			e.Line = line
		}
		return
	}
	if isNull(n) {
		return // keep the default
	}
	switch {
	case v.Type() == durationType:
		s, ok := d.scalar(n, path, "a duration")
		if !ok {
			return
		}
		dur, err := ParseDuration(s)
		if err != nil {
			d.errorf(n.Line, path, "%v", err)
			return
		}
		v.SetInt(int64(dur))
		return
	case v.Type() == sizeType:
		s, ok := d.scalar(n, path, "a size")
		if !ok {
			return
		}
		sz, err := ParseSize(s)
		if err != nil {
			d.errorf(n.Line, path, "%v", err)
			return
		}
		v.SetInt(int64(sz))
		return
	case v.Type() == prefixType:
		s, ok := d.scalar(n, path, "a CIDR")
		if !ok {
			return
		}
		p, err := parsePrefix(s)
		if err != nil {
			d.errorf(n.Line, path, "%v", err)
			return
		}
		v.Set(reflect.ValueOf(p))
		return
	}
	switch v.Kind() {
	case reflect.Pointer: // an optional value (*bool): nil when not set
		e := reflect.New(v.Type().Elem())
		before := len(d.errs)
		d.decode(n, path, e.Elem())
		if len(d.errs) == before {
			v.Set(e)
		}
	case reflect.Struct:
		d.mapping(n, path, v)
	case reflect.Slice:
		d.sequence(n, path, v)
	case reflect.Map:
		d.dict(n, path, v)
	case reflect.String:
		if s, ok := d.scalar(n, path, "a string"); ok {
			v.SetString(s)
		}
	case reflect.Bool:
		s, ok := d.scalar(n, path, "true or false")
		if !ok {
			return
		}
		var b bool
		if n.ShortTag() != "!!bool" || n.Decode(&b) != nil {
			d.errorf(n.Line, path, "want true or false, got %q%s", s, quotedHint(n, "!!bool"))
			return
		}
		v.SetBool(b)
	case reflect.Int:
		s, ok := d.scalar(n, path, "an integer")
		if !ok {
			return
		}
		var i int
		if n.ShortTag() != "!!int" || n.Decode(&i) != nil {
			d.errorf(n.Line, path, "want an integer, got %q%s", s, quotedHint(n, "!!int"))
			return
		}
		v.SetInt(int64(i))
	default:
		panic("config: no decoder for " + v.Type().String())
	}
}

// quotedHint explains why a quoted "true" or "10" is not a bool or number.
// It is empty unless the value, unquoted, would have had the wanted tag.
func quotedHint(n *yaml.Node, tag string) string {
	if n.Style&(yaml.DoubleQuotedStyle|yaml.SingleQuotedStyle) == 0 {
		return ""
	}
	plain := yaml.Node{Kind: yaml.ScalarNode, Value: n.Value}
	if plain.ShortTag() == tag {
		return " (a quoted value is a string: remove the quotes)"
	}
	return ""
}

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

// scalar returns n's value when it is a scalar, else reports that want was
// expected.
func (d *decoder) scalar(n *yaml.Node, path, want string) (string, bool) {
	if n.Kind != yaml.ScalarNode {
		d.errorf(n.Line, path, "want %s, got %s", want, kindName(n))
		return "", false
	}
	return n.Value, true
}

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.AliasNode:
		return "an alias"
	case yaml.DocumentNode:
		return "a document"
	}
	return "a scalar"
}

func (d *decoder) mapping(n *yaml.Node, path string, v reflect.Value) {
	if n.Kind != yaml.MappingNode {
		d.errorf(n.Line, path, "want a mapping, got %s", kindName(n))
		return
	}
	fields := yamlFields(v.Type())
	seen := make(map[string]int)
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		if k.Kind != yaml.ScalarNode {
			d.errorf(k.Line, path, "a key must be a plain name, got %s", kindName(k))
			continue
		}
		if k.ShortTag() == "!!merge" {
			d.errorf(k.Line, path, "merge keys (<<) are not supported")
			continue
		}
		name := k.Value
		sub := join(path, name)
		idx, ok := fields[name]
		if !ok {
			msg := fmt.Sprintf("unknown key %q", sub)
			if _, ok := fields[name+"_file"]; ok {
				msg += fmt.Sprintf(" (secrets are never written inline: put it in a file and set %q)", join(path, name+"_file"))
			} else if s := suggest(name, v.Type()); s != "" {
				msg += fmt.Sprintf(" (did you mean %q?)", join(path, s))
			}
			d.errs = append(d.errs, &Error{File: d.file, Line: k.Line, Key: sub, Msg: msg, bare: true})
			continue
		}
		if first, dup := seen[name]; dup {
			d.errorf(k.Line, sub, "key given twice (first on line %d)", first)
			continue
		}
		seen[name] = k.Line
		d.lines[sub] = k.Line
		d.decode(val, sub, v.Field(idx))
		if v.Type().Field(idx).Tag.Get("config") == "dn" {
			d.splitDN(val, sub)
		}
	}
}

// splitDN reports a flow list of DNs that YAML split at the DNs' commas:
// [cn=admins,ou=groups,dc=example,dc=com] is four items, not one DN.
func (d *decoder) splitDN(n *yaml.Node, path string) {
	if n.Kind != yaml.SequenceNode || n.Style&yaml.FlowStyle == 0 || len(n.Content) < 2 {
		return
	}
	var parts []string
	for _, item := range n.Content {
		if item.Kind != yaml.ScalarNode || item.Style != 0 ||
			!strings.Contains(item.Value, "=") || strings.Contains(item.Value, ",") {
			return
		}
		parts = append(parts, item.Value)
	}
	d.errorf(n.Line, path, "YAML split a DN at its commas into %d items; quote each DN: [%q]",
		len(parts), strings.Join(parts, ","))
}

func (d *decoder) sequence(n *yaml.Node, path string, v reflect.Value) {
	if n.Kind != yaml.SequenceNode {
		d.errorf(n.Line, path, "want a list, got %s", kindName(n))
		return
	}
	s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
	for i, item := range n.Content {
		sub := fmt.Sprintf("%s[%d]", path, i)
		d.lines[sub] = item.Line
		d.decode(item, sub, s.Index(i))
	}
	v.Set(s)
}

func (d *decoder) dict(n *yaml.Node, path string, v reflect.Value) {
	if n.Kind != yaml.MappingNode {
		d.errorf(n.Line, path, "want a mapping, got %s", kindName(n))
		return
	}
	m := reflect.MakeMapWithSize(v.Type(), len(n.Content)/2)
	seen := make(map[string]int)
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		if k.Kind != yaml.ScalarNode || isNull(k) {
			d.errorf(k.Line, path, "a key must be a plain name, got %s", kindName(k))
			continue
		}
		sub := join(path, k.Value)
		if first, dup := seen[k.Value]; dup {
			d.errorf(k.Line, sub, "key given twice (first on line %d)", first)
			continue
		}
		seen[k.Value] = k.Line
		d.lines[sub] = k.Line
		elem := reflect.New(v.Type().Elem()).Elem()
		d.decode(val, sub, elem)
		m.SetMapIndex(reflect.ValueOf(k.Value), elem)
	}
	v.Set(m)
}

func join(path, name string) string {
	if path == "" {
		return name
	}
	return path + "." + name
}

// yamlFields maps the yaml tag names of struct type t to field indexes.
func yamlFields(t reflect.Type) map[string]int {
	m := make(map[string]int, t.NumField())
	for i := range t.NumField() {
		f := t.Field(i)
		if tag, ok := f.Tag.Lookup("yaml"); ok && f.IsExported() {
			m[strings.Split(tag, ",")[0]] = i
		}
	}
	return m
}

// suggest returns the key of t closest to name, if it is a likely typo.
func suggest(name string, t reflect.Type) string {
	best, bestDist := "", 3
	for i := range t.NumField() {
		tag, ok := t.Field(i).Tag.Lookup("yaml")
		if !ok {
			continue
		}
		tag = strings.Split(tag, ",")[0]
		if d := editDistance(name, tag); d < bestDist {
			best, bestDist = tag, d
		}
	}
	return best
}

func editDistance(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		return 64
	}
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// parsePrefix parses an IPv4 or IPv6 CIDR. A bare address is a one-host
// prefix. Host bits must be zero: "10.0.0.1/8" is refused with a hint.
func parsePrefix(s string) (netip.Prefix, error) {
	if !strings.Contains(s, "/") {
		a, err := netip.ParseAddr(s)
		if err != nil || a.Zone() != "" {
			return netip.Prefix{}, fmt.Errorf("%q is not a CIDR", s)
		}
		return netip.PrefixFrom(a, a.BitLen()), nil
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		msg := err.Error()
		if _, after, ok := strings.Cut(msg, "): "); ok {
			msg = after
		}
		return netip.Prefix{}, fmt.Errorf("%q is not a CIDR (%s)", s, msg)
	}
	if m := p.Masked(); m != p {
		return netip.Prefix{}, fmt.Errorf("%q has host bits set; did you mean %q?", s, m.String())
	}
	return p, nil
}

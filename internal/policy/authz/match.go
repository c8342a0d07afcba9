package authz

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// matchKind is how one policy value matches: Istio's exact, prefix
// ("abc*"), suffix ("*abc") and presence ("*").
type matchKind uint8

const (
	matchExact matchKind = iota
	matchPrefix
	matchSuffix
	matchPresence
)

type strMatch struct {
	kind matchKind
	s    string
}

// strSet matches a value when any of its entries does. An absent value
// (empty string) matches nothing, presence included.
type strSet []strMatch

func newStrSet(vals []string, fold func(string) string) strSet {
	if len(vals) == 0 {
		return nil
	}
	out := make(strSet, 0, len(vals))
	for _, v := range vals {
		if fold != nil {
			v = fold(v)
		}
		switch {
		case v == "*":
			out = append(out, strMatch{kind: matchPresence})
		case strings.HasSuffix(v, "*"):
			out = append(out, strMatch{kind: matchPrefix, s: v[:len(v)-1]})
		case strings.HasPrefix(v, "*"):
			out = append(out, strMatch{kind: matchSuffix, s: v[1:]})
		default:
			out = append(out, strMatch{kind: matchExact, s: v})
		}
	}
	return out
}

func (m strSet) match(v string) bool {
	if v == "" {
		return false
	}
	for i := range m {
		e := &m[i]
		switch e.kind {
		case matchExact:
			if v == e.s {
				return true
			}
		case matchPrefix:
			if strings.HasPrefix(v, e.s) {
				return true
			}
		case matchSuffix:
			if strings.HasSuffix(v, e.s) {
				return true
			}
		case matchPresence:
			return true
		}
	}
	return false
}

func (m strSet) String() string {
	parts := make([]string, len(m))
	for i, e := range m {
		switch e.kind {
		case matchPrefix:
			parts[i] = strconv.Quote(e.s + "*")
		case matchSuffix:
			parts[i] = strconv.Quote("*" + e.s)
		case matchPresence:
			parts[i] = `"*"`
		default:
			parts[i] = strconv.Quote(e.s)
		}
	}
	return "[" + strings.Join(parts, ", ") + "]"
}

// ipSet matches an address inside any of its prefixes.
type ipSet []netip.Prefix

func (s ipSet) match(a netip.Addr) bool {
	if !a.IsValid() {
		return false
	}
	a = a.Unmap()
	for _, p := range s {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

func (s ipSet) String() string {
	parts := make([]string, len(s))
	for i, p := range s {
		parts[i] = p.String()
	}
	return "[" + strings.Join(parts, ", ") + "]"
}

// portSet matches a port in the set.
type portSet []uint32

func (s portSet) match(p uint32) bool {
	for _, q := range s {
		if p == q {
			return true
		}
	}
	return false
}

func (s portSet) String() string {
	parts := make([]string, len(s))
	for i, p := range s {
		parts[i] = strconv.FormatUint(uint64(p), 10)
	}
	return "[" + strings.Join(parts, ", ") + "]"
}

// trimScheme removes "spiffe://": principals are compared in Istio's form
// (trust domain and path), so both spellings of a policy value match.
func trimScheme(s string) string { return strings.TrimPrefix(s, "spiffe://") }

// foldHost is how hosts compare: lowercase, without a trailing dot.
func foldHost(s string) string { return strings.TrimSuffix(strings.ToLower(s), ".") }

// namespaceOf returns the namespace in a SPIFFE ID's path (/ns/NAME/...),
// as Istio derives source.namespace, or "".
func namespaceOf(principal string) string {
	rest := trimScheme(principal)
	slash := strings.IndexByte(rest, '/')
	if slash < 0 {
		return ""
	}
	rest = rest[slash:]
	if !strings.HasPrefix(rest, "/ns/") {
		return ""
	}
	rest = rest[len("/ns/"):]
	if end := strings.IndexByte(rest, '/'); end >= 0 {
		rest = rest[:end]
	}
	return rest
}

// tracer records why a rule did not match, for Explain. A nil tracer
// records nothing and costs one comparison per check.
type tracer struct {
	field  string
	detail string
}

func (t *tracer) fail(field, format string, args ...any) {
	if t != nil && t.field == "" {
		t.field = field
		t.detail = fmt.Sprintf(format, args...)
	}
}

// checkIn checks a list field: the value must match the set (if set).
func checkIn(t *tracer, field string, set strSet, v string) bool {
	if set == nil || set.match(v) {
		return true
	}
	if t != nil {
		t.fail(field, "%s does not match %s", quoteOrAbsent(v), set)
	}
	return false
}

// checkNotIn checks a not-list field: the value must match none.
func checkNotIn(t *tracer, field string, set strSet, v string) bool {
	if set == nil || !set.match(v) {
		return true
	}
	if t != nil {
		t.fail(field, "%s matches %s", quoteOrAbsent(v), set)
	}
	return false
}

func quoteOrAbsent(v string) string {
	if v == "" {
		return "(absent)"
	}
	return strconv.Quote(v)
}

// Package attest proves who is calling: node attestation (join tokens) for
// agents, and workload attestation (the unix peer of the Workload API socket,
// or a Kubernetes service-account token checked by the server) for
// workloads. Both produce selectors that registrations match against.
package attest

import (
	"fmt"
	"path"
	"regexp"
	"strconv"
	"strings"
)

// Selector is one attested property, written TYPE:KEY:VALUE, e.g.
// "unix:uid:1000". Type is the attestor ("unix"), Value the rest ("uid:1000").
type Selector struct {
	Type  string
	Value string
}

// String returns the selector in its TYPE:VALUE form.
func (s Selector) String() string { return s.Type + ":" + s.Value }

var sha256Hex = regexp.MustCompile(`^[0-9a-f]{64}$`)

// ParseSelector parses and validates one selector. The error says what is
// wrong and what a valid selector looks like.
func ParseSelector(s string) (Selector, error) {
	typ, value, ok := strings.Cut(s, ":")
	if !ok || typ == "" || value == "" {
		return Selector{}, fmt.Errorf("selector %q: want TYPE:KEY:VALUE such as unix:uid:1000", s)
	}
	switch typ {
	case "unix":
		if err := validateUnix(value); err != nil {
			return Selector{}, fmt.Errorf("selector %q: %w", s, err)
		}
	case "k8s":
		if err := validateK8s(value); err != nil {
			return Selector{}, fmt.Errorf("selector %q: %w", s, err)
		}
	default:
		return Selector{}, fmt.Errorf("selector %q: unknown type %q (supported: unix, k8s)", s, typ)
	}
	return Selector{Type: typ, Value: value}, nil
}

func validateUnix(value string) error {
	key, v, ok := strings.Cut(value, ":")
	if !ok || v == "" {
		return fmt.Errorf("want unix:KEY:VALUE with KEY one of uid, gid, user, path, sha256")
	}
	switch key {
	case "uid", "gid":
		if _, err := strconv.ParseUint(v, 10, 32); err != nil {
			return fmt.Errorf("%s must be a decimal number, got %q", key, v)
		}
	case "user":
		if strings.ContainsAny(v, ":/ \t\n") {
			return fmt.Errorf("user name %q contains a forbidden character", v)
		}
	case "path":
		if !strings.HasPrefix(v, "/") || path.Clean(v) != v {
			return fmt.Errorf("path must be absolute and clean, got %q", v)
		}
	case "sha256":
		if !sha256Hex.MatchString(v) {
			return fmt.Errorf("sha256 must be 64 lowercase hex characters, got %q", v)
		}
	default:
		return fmt.Errorf("unknown unix key %q (supported: uid, gid, user, path, sha256)", key)
	}
	return nil
}

// ParseSelectors parses a list; the first bad one is reported with its index.
func ParseSelectors(in []string) ([]Selector, error) {
	out := make([]Selector, 0, len(in))
	for i, s := range in {
		sel, err := ParseSelector(s)
		if err != nil {
			return nil, fmt.Errorf("[%d]: %w", i, err)
		}
		out = append(out, sel)
	}
	return out, nil
}

// MatchAll reports whether every selector in want is among have. An empty want
// never matches: a registration without selectors would match everybody.
func MatchAll(want, have []Selector) bool {
	if len(want) == 0 {
		return false
	}
	set := make(map[Selector]struct{}, len(have))
	for _, s := range have {
		set[s] = struct{}{}
	}
	for _, s := range want {
		if _, ok := set[s]; !ok {
			return false
		}
	}
	return true
}

package lint

import (
	"fmt"
	"net/http"
	"net/netip"
	"slices"
	"strings"

	"github.com/trustmesh/trustmesh/internal/policy"
)

// The model of a rule, for reasoning about which requests it matches.
//
// A rule matches when any of its from entries, any of its to entries and
// all of its when conditions match. Distributing the AND over the ORs, a
// rule is a disjunction of conjuncts, one per (from entry, to entry) pair,
// each the conjunction of the atoms of that from entry, that to entry and
// every when condition. An atom is one list field: "the attribute matches
// one of these values" or, for a not- field, "none of these values".
//
// The model follows the authz package's semantics exactly (see
// authz/rule.go): principals are compared without "spiffe://", hosts in
// lowercase without a trailing dot, an absent value ("") matches no
// positive list, presence ("*") included, and every not-list; ipBlocks,
// remoteIpBlocks, source.ip and remote.ip all match the connection's peer
// address; ports and destination.port the application port.

// attrKind is what an atom constrains: one attribute of an authz.Request.
type attrKind uint8

const (
	attrPrincipal        attrKind = iota // peer SPIFFE ID, without "spiffe://"
	attrNamespace                        // the /ns/NAME/ of the peer's SPIFFE ID
	attrRequestPrincipal                 // JWT "iss/sub"
	attrSourceIP
	attrPort
	attrDestinationIP
	attrSNI
	attrHost
	attrMethod
	attrPath
	attrHeader // name: canonical header name
	attrAudiences
	attrPresenter
	attrClaim // name: the claim path, joined with "\x00"
)

// attr is an attribute: a kind and, for headers and claims, a name.
type attr struct {
	kind attrKind
	name string
}

// httpOnly reports whether only an HTTP request has the attribute (the
// authz package's HTTP-only fields and request.* keys).
func (a attr) httpOnly() bool {
	switch a.kind {
	case attrRequestPrincipal, attrHost, attrMethod, attrPath, attrHeader, attrAudiences, attrPresenter, attrClaim:
		return true
	}
	return false
}

// multi reports whether the attribute may have several values (a list
// claim, the audiences): a positive atom then needs one value to match, a
// negative atom needs none to.
func (a attr) multi() bool { return a.kind == attrAudiences || a.kind == attrClaim }

// matchKind is how one string value matches: Istio's exact, prefix
// ("abc*"), suffix ("*abc") and presence ("*").
type matchKind uint8

const (
	matchExact matchKind = iota
	matchPrefix
	matchSuffix
	matchPresence
)

// pattern is one string value of a policy, parsed.
type pattern struct {
	kind matchKind
	s    string
}

func parsePattern(v string) pattern {
	switch {
	case v == "*":
		return pattern{kind: matchPresence}
	case strings.HasSuffix(v, "*"):
		return pattern{kind: matchPrefix, s: v[:len(v)-1]}
	case strings.HasPrefix(v, "*"):
		return pattern{kind: matchSuffix, s: v[1:]}
	}
	return pattern{kind: matchExact, s: v}
}

// match reports whether the pattern matches v; "" (absent) matches none.
func (p pattern) match(v string) bool {
	if v == "" {
		return false
	}
	switch p.kind {
	case matchPrefix:
		return strings.HasPrefix(v, p.s)
	case matchSuffix:
		return strings.HasSuffix(v, p.s)
	case matchPresence:
		return true
	}
	return v == p.s
}

// contains reports whether every value b matches, p matches too.
func (p pattern) contains(b pattern) bool {
	switch p.kind {
	case matchPresence:
		return true
	case matchExact:
		return b.kind == matchExact && b.s == p.s
	case matchPrefix:
		return (b.kind == matchExact || b.kind == matchPrefix) && strings.HasPrefix(b.s, p.s)
	case matchSuffix:
		return (b.kind == matchExact || b.kind == matchSuffix) && strings.HasSuffix(b.s, p.s)
	}
	return false
}

// disjoint reports whether no value matches both p and b.
func (p pattern) disjoint(b pattern) bool {
	switch {
	case p.kind == matchExact:
		return !b.match(p.s)
	case b.kind == matchExact:
		return !p.match(b.s)
	case p.kind == matchPresence || b.kind == matchPresence:
		return false
	case p.kind == matchPrefix && b.kind == matchPrefix:
		return !strings.HasPrefix(p.s, b.s) && !strings.HasPrefix(b.s, p.s)
	case p.kind == matchSuffix && b.kind == matchSuffix:
		return !strings.HasSuffix(p.s, b.s) && !strings.HasSuffix(b.s, p.s)
	}
	return false // a prefix and a suffix: p.s + b.s matches both
}

// atom is one list field of a rule: the attribute has one of the values
// (or, with not, none of them). Which of strs, ports and ips is used
// depends on the attribute.
type atom struct {
	attr  attr
	not   bool
	strs  []pattern
	ports []uint32
	ips   []netip.Prefix
	// raw are the values as written, for messages.
	raw []string
	// field is where the atom comes from, relative to the rule, such as
	// "from[0].source.principals" or "when[1].notValues".
	field string
}

// matchString reports whether a single string value v satisfies the atom.
func (a *atom) matchString(v string) bool {
	return slices.ContainsFunc(a.strs, func(p pattern) bool { return p.match(v) }) != a.not
}

func (a *atom) matchPort(p uint32) bool { return slices.Contains(a.ports, p) != a.not }

func (a *atom) matchIP(ip netip.Addr) bool {
	in := ip.IsValid() && slices.ContainsFunc(a.ips, func(p netip.Prefix) bool { return p.Contains(ip.Unmap()) })
	return in != a.not
}

// hasPresence reports whether the atom lists "*".
func (a *atom) hasPresence() bool {
	return slices.ContainsFunc(a.strs, func(p pattern) bool { return p.kind == matchPresence })
}

// conjunct is one (from entry, to entry) pair of a rule with its when
// conditions.
type conjunct struct {
	atoms []atom
}

// ruleModel is a rule as a disjunction of conjuncts.
type ruleModel struct {
	index int
	// action is the action of the rule's policy, which decides how the
	// rule treats TCP traffic.
	action policy.Action
	// empty reports whether the rule is {}: it matches every request.
	empty bool
	// httpOnly is authz's: the rule uses a field only HTTP requests have.
	httpOnly bool
	conj     []conjunct
	// atoms are every atom of the rule, in the order of its fields.
	atoms []atom
}

// modelRule builds the model of rule i of a policy with the action. It
// fails on the values authz does not compile.
func modelRule(action policy.Action, i int, r *policy.Rule) (*ruleModel, error) {
	m := &ruleModel{index: i, action: action, empty: len(r.From) == 0 && len(r.To) == 0 && len(r.When) == 0}
	var froms, tos [][]atom
	for j, f := range r.From {
		s := &f.Source
		pre := fmt.Sprintf("from[%d].source.", j)
		var as []atom
		as = appendStrings(as, attr{kind: attrPrincipal}, false, s.Principals, trimScheme, pre+"principals")
		as = appendStrings(as, attr{kind: attrPrincipal}, true, s.NotPrincipals, trimScheme, pre+"notPrincipals")
		as = appendStrings(as, attr{kind: attrRequestPrincipal}, false, s.RequestPrincipals, nil, pre+"requestPrincipals")
		as = appendStrings(as, attr{kind: attrRequestPrincipal}, true, s.NotRequestPrincipals, nil, pre+"notRequestPrincipals")
		as = appendStrings(as, attr{kind: attrNamespace}, false, s.Namespaces, nil, pre+"namespaces")
		as = appendStrings(as, attr{kind: attrNamespace}, true, s.NotNamespaces, nil, pre+"notNamespaces")
		for _, l := range []struct {
			not  bool
			vals []string
			name string
		}{
			{false, s.IPBlocks, "ipBlocks"}, {true, s.NotIPBlocks, "notIpBlocks"},
			{false, s.RemoteIPBlocks, "remoteIpBlocks"}, {true, s.NotRemoteIPBlocks, "notRemoteIpBlocks"},
		} {
			var err error
			if as, err = appendIPs(as, attr{kind: attrSourceIP}, l.not, l.vals, pre+l.name); err != nil {
				return nil, err
			}
		}
		if len(s.RequestPrincipals) > 0 || len(s.NotRequestPrincipals) > 0 {
			m.httpOnly = true
		}
		froms = append(froms, as)
	}
	for j, t := range r.To {
		o := &t.Operation
		pre := fmt.Sprintf("to[%d].operation.", j)
		var as []atom
		as = appendStrings(as, attr{kind: attrHost}, false, o.Hosts, foldHost, pre+"hosts")
		as = appendStrings(as, attr{kind: attrHost}, true, o.NotHosts, foldHost, pre+"notHosts")
		var err error
		if as, err = appendPorts(as, false, o.Ports, pre+"ports"); err != nil {
			return nil, err
		}
		if as, err = appendPorts(as, true, o.NotPorts, pre+"notPorts"); err != nil {
			return nil, err
		}
		as = appendStrings(as, attr{kind: attrMethod}, false, o.Methods, nil, pre+"methods")
		as = appendStrings(as, attr{kind: attrMethod}, true, o.NotMethods, nil, pre+"notMethods")
		as = appendStrings(as, attr{kind: attrPath}, false, o.Paths, nil, pre+"paths")
		as = appendStrings(as, attr{kind: attrPath}, true, o.NotPaths, nil, pre+"notPaths")
		if len(o.Hosts)+len(o.NotHosts)+len(o.Methods)+len(o.NotMethods)+len(o.Paths)+len(o.NotPaths) > 0 {
			m.httpOnly = true
		}
		tos = append(tos, as)
	}
	var when []atom
	for j, c := range r.When {
		pre := fmt.Sprintf("when[%d].", j)
		name, args, err := policy.ParseConditionKey(c.Key)
		if err != nil {
			return nil, fmt.Errorf("%skey: %w", pre, err)
		}
		if policy.HTTPOnlyKey(name) {
			m.httpOnly = true
		}
		var a attr
		fold := func(s string) string { return s }
		switch name {
		case policy.KeyRequestHeaders:
			a = attr{kind: attrHeader, name: http.CanonicalHeaderKey(args[0])}
		case policy.KeySourceIP, policy.KeyRemoteIP:
			a = attr{kind: attrSourceIP}
		case policy.KeyDestinationIP:
			a = attr{kind: attrDestinationIP}
		case policy.KeyDestinationPort:
			a = attr{kind: attrPort}
		case policy.KeySourceNamespace:
			a = attr{kind: attrNamespace}
		case policy.KeySourcePrincipal:
			a, fold = attr{kind: attrPrincipal}, trimScheme
		case policy.KeyAuthPrincipal:
			a = attr{kind: attrRequestPrincipal}
		case policy.KeyAuthAudiences:
			a = attr{kind: attrAudiences}
		case policy.KeyAuthPresenter:
			a = attr{kind: attrPresenter}
		case policy.KeyAuthClaims:
			a = attr{kind: attrClaim, name: strings.Join(args, "\x00")}
		case policy.KeyConnectionSNI:
			a = attr{kind: attrSNI}
		default:
			return nil, fmt.Errorf("%skey: %q is not modeled", pre, c.Key)
		}
		for _, l := range []struct {
			not  bool
			vals []string
			name string
		}{{false, c.Values, "values"}, {true, c.NotValues, "notValues"}} {
			switch a.kind {
			case attrSourceIP, attrDestinationIP:
				if when, err = appendIPs(when, a, l.not, l.vals, pre+l.name); err != nil {
					return nil, err
				}
			case attrPort:
				if when, err = appendPorts(when, l.not, l.vals, pre+l.name); err != nil {
					return nil, err
				}
			default:
				when = appendStrings(when, a, l.not, l.vals, fold, pre+l.name)
			}
		}
	}
	if len(froms) == 0 {
		froms = [][]atom{nil}
	}
	if len(tos) == 0 {
		tos = [][]atom{nil}
	}
	for _, f := range froms {
		for _, t := range tos {
			m.conj = append(m.conj, conjunct{atoms: slices.Concat(f, t, when)})
		}
	}
	for _, f := range froms {
		m.atoms = append(m.atoms, f...)
	}
	for _, t := range tos {
		m.atoms = append(m.atoms, t...)
	}
	m.atoms = append(m.atoms, when...)
	return m, nil
}

func appendStrings(as []atom, a attr, not bool, vals []string, fold func(string) string, field string) []atom {
	if len(vals) == 0 {
		return as
	}
	ps := make([]pattern, len(vals))
	for i, v := range vals {
		if fold != nil {
			v = fold(v)
		}
		ps[i] = parsePattern(v)
	}
	return append(as, atom{attr: a, not: not, strs: ps, raw: vals, field: field})
}

func appendIPs(as []atom, a attr, not bool, vals []string, field string) ([]atom, error) {
	if len(vals) == 0 {
		return as, nil
	}
	ips := make([]netip.Prefix, len(vals))
	for i, v := range vals {
		p, err := policy.ParseIPBlock(v)
		if err != nil {
			return nil, fmt.Errorf("%s: %q: %w", field, v, err)
		}
		ips[i] = p
	}
	return append(as, atom{attr: a, not: not, ips: ips, field: field}), nil
}

func appendPorts(as []atom, not bool, vals []string, field string) ([]atom, error) {
	if len(vals) == 0 {
		return as, nil
	}
	ports := make([]uint32, len(vals))
	for i, v := range vals {
		p, err := policy.ParsePort(v)
		if err != nil {
			return nil, fmt.Errorf("%s: %q: %w", field, v, err)
		}
		ports[i] = p
	}
	return append(as, atom{attr: attr{kind: attrPort}, not: not, ports: ports, field: field}), nil
}

// trimScheme is how principals compare: without "spiffe://".
func trimScheme(s string) string { return strings.TrimPrefix(s, "spiffe://") }

// foldHost is how hosts compare: lowercase, without a trailing dot.
func foldHost(s string) string { return strings.TrimSuffix(strings.ToLower(s), ".") }

// namespaceOf returns the namespace of a principal (without "spiffe://"):
// NAME in td/ns/NAME/..., else "".
func namespaceOf(principal string) string {
	_, path, ok := strings.Cut(principal, "/")
	if !ok {
		return ""
	}
	rest, ok := strings.CutPrefix("/"+path, "/ns/")
	if !ok {
		return ""
	}
	ns, _, _ := strings.Cut(rest, "/")
	return ns
}

// patternNamespace returns the namespace of every principal p matches, if
// they all have the same one ("" for none).
func patternNamespace(p pattern) (string, bool) {
	switch p.kind {
	case matchExact:
		return namespaceOf(p.s), true
	case matchPrefix:
		_, path, ok := strings.Cut(p.s, "/")
		if !ok {
			return "", false // the trust domain may go on
		}
		path = "/" + path
		if len(path) < len("/ns/") {
			if strings.HasPrefix("/ns/", path) {
				return "", false
			}
			return "", true
		}
		rest, ok := strings.CutPrefix(path, "/ns/")
		if !ok {
			return "", true
		}
		ns, _, ended := strings.Cut(rest, "/")
		return ns, ended
	}
	return "", false
}

// covers reports whether every request rule b matches, rule a matches too,
// HTTP requests and TCP connections alike. It is sound but not complete:
// false may mean "not shown".
func covers(a, b *ruleModel) bool {
	if !dnfCovers(a.conj, b.conj) {
		return false
	}
	tb := b.tcp()
	if tb == nil {
		return true // b matches no TCP connection
	}
	ta := a.tcp()
	return ta != nil && dnfCovers(ta, tb)
}

// tcp returns the rule's conjuncts as they match TCP connections (see
// authz rule.match): none for an ALLOW or AUDIT rule with HTTP-only fields
// (nil), else the conjuncts without their HTTP-only atoms.
func (m *ruleModel) tcp() []conjunct {
	if m.httpOnly && (m.action == policy.ActionAllow || m.action == policy.ActionAudit) {
		return nil
	}
	out := make([]conjunct, len(m.conj))
	for i, c := range m.conj {
		out[i] = conjunct{atoms: tcpAtoms(c.atoms)}
	}
	return out
}

func tcpAtoms(as []atom) []atom {
	return slices.DeleteFunc(slices.Clone(as), func(x atom) bool { return x.attr.httpOnly() })
}

// dnfCovers reports whether each conjunct of b implies some conjunct of a.
func dnfCovers(a, b []conjunct) bool {
	for _, cb := range b {
		if !slices.ContainsFunc(a, func(ca conjunct) bool { return implies(cb.atoms, ca.atoms) }) {
			return false
		}
	}
	return true
}

// implies reports whether the conjunction of atoms b implies that of a.
func implies(b, a []atom) bool {
	for i := range a {
		if !impliedBy(&a[i], b) {
			return false
		}
	}
	return true
}

// impliedBy reports whether the conjunction of atoms bs implies atom a:
// every value bs admit, a admits.
func impliedBy(a *atom, bs []atom) bool {
	for i := range bs {
		b := &bs[i]
		if b.attr == a.attr && atomImplies(b, a) {
			return true
		}
		// A principal fixes the namespace; a namespace needs a principal.
		switch {
		case a.attr.kind == attrNamespace && b.attr.kind == attrPrincipal && !b.not:
			if principalsImplyNamespace(b, a) {
				return true
			}
		case a.attr.kind == attrPrincipal && !a.not && a.hasPresence() && b.attr.kind == attrNamespace && !b.not:
			return true
		}
	}
	return false
}

// atomImplies reports whether atom b implies atom a, of the same
// attribute.
func atomImplies(b, a *atom) bool {
	switch {
	case !a.not && !b.not:
		// What b admits is inside what a admits.
		switch a.attr.kind {
		case attrPort:
			return subsetPorts(b.ports, a.ports)
		case attrSourceIP, attrDestinationIP:
			return everyPrefixIn(b.ips, a.ips)
		}
		return everyPatternIn(b.strs, a.strs)
	case a.not && b.not:
		// b excludes at least what a excludes.
		switch a.attr.kind {
		case attrPort:
			return subsetPorts(a.ports, b.ports)
		case attrSourceIP, attrDestinationIP:
			return everyPrefixIn(a.ips, b.ips)
		}
		return everyPatternIn(a.strs, b.strs)
	case a.not && !b.not && !a.attr.multi():
		// What b admits is outside what a excludes.
		switch a.attr.kind {
		case attrPort:
			return !slices.ContainsFunc(b.ports, func(p uint32) bool { return slices.Contains(a.ports, p) })
		case attrSourceIP, attrDestinationIP:
			for _, p := range b.ips {
				if slices.ContainsFunc(a.ips, p.Overlaps) {
					return false
				}
			}
			return true
		}
		for _, p := range b.strs {
			if !allDisjoint(p, a.strs) {
				return false
			}
		}
		return true
	}
	return false
}

// principalsImplyNamespace reports whether every principal the positive
// atom b admits has a namespace the namespace atom a admits.
func principalsImplyNamespace(b, a *atom) bool {
	for _, p := range b.strs {
		ns, ok := patternNamespace(p)
		if !ok || !a.matchString(ns) {
			return false
		}
	}
	return true
}

func everyPatternIn(b, a []pattern) bool {
	for _, pb := range b {
		if !slices.ContainsFunc(a, func(pa pattern) bool { return pa.contains(pb) }) {
			return false
		}
	}
	return true
}

func allDisjoint(p pattern, ps []pattern) bool {
	return !slices.ContainsFunc(ps, func(q pattern) bool { return !p.disjoint(q) })
}

func subsetPorts(b, a []uint32) bool {
	return !slices.ContainsFunc(b, func(p uint32) bool { return !slices.Contains(a, p) })
}

// everyPrefixIn reports whether every prefix of b lies inside one of a.
func everyPrefixIn(b, a []netip.Prefix) bool {
	for _, pb := range b {
		if !slices.ContainsFunc(a, func(pa netip.Prefix) bool {
			return pa.Addr().BitLen() == pb.Addr().BitLen() && pa.Bits() <= pb.Bits() && pa.Contains(pb.Addr())
		}) {
			return false
		}
	}
	return true
}

package lint

import (
	"cmp"
	"context"
	"fmt"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/trustmesh/trustmesh/internal/policy"
	"github.com/trustmesh/trustmesh/internal/policy/authz"
)

// A witness is a concrete request that a conjunction of atoms matches. The
// solver below looks for one attribute by attribute, trying values made
// from the atoms' own patterns; it may miss one, never invent one: every
// witness Lint reports has been matched by the authz engine itself.

// witnessName is the service account of the principals the solver makes
// up.
const witnessName = "example"

// solve returns a request every atom matches: an HTTP request, or with
// tcp a TCP connection (the atoms must then have no HTTP-only attribute).
// td is the trust domain of made-up principals.
func solve(atoms []atom, tcp bool, td string) (*authz.Request, bool) {
	byAttr := make(map[attr][]*atom)
	var attrs []attr
	for i := range atoms {
		a := &atoms[i]
		if tcp && a.attr.httpOnly() {
			return nil, false
		}
		if _, ok := byAttr[a.attr]; !ok {
			attrs = append(attrs, a.attr)
		}
		byAttr[a.attr] = append(byAttr[a.attr], a)
	}
	r := &authz.Request{
		HTTP:     !tcp,
		Port:     8080,
		SourceIP: netip.MustParseAddr("10.0.0.1"),
	}
	if !tcp {
		r.Method, r.Path, r.Headers = "GET", "/", http.Header{}
	}

	principals, namespaces := byAttr[attr{kind: attrPrincipal}], byAttr[attr{kind: attrNamespace}]
	if len(principals)+len(namespaces) > 0 {
		v, ok := solvePrincipal(principals, namespaces, td)
		if !ok {
			return nil, false
		}
		if v != "" {
			r.Principal = "spiffe://" + v
		}
	}
	slices.SortFunc(attrs, func(a, b attr) int { return cmp.Or(cmp.Compare(a.kind, b.kind), strings.Compare(a.name, b.name)) })
	for _, a := range attrs {
		as := byAttr[a]
		var ok bool
		switch a.kind {
		case attrPrincipal, attrNamespace:
			ok = true // above
		case attrPort:
			r.Port, ok = solvePort(as)
		case attrSourceIP:
			r.SourceIP, ok = solveIP(as)
		case attrDestinationIP:
			r.DestinationIP, ok = solveIP(as)
		case attrSNI:
			r.SNI, ok = solveString(as, nil, true)
		case attrHost:
			r.Host, ok = solveString(as, []string{"example.internal"}, false)
		case attrMethod:
			r.Method, ok = solveString(as, []string{"GET", "POST"}, false)
		case attrPath:
			r.Path, ok = solveString(as, []string{"/"}, false)
		case attrRequestPrincipal:
			r.Auth.Principal, ok = solveString(as, []string{"https://issuer.example/" + witnessName}, true)
		case attrPresenter:
			r.Auth.Presenter, ok = solveString(as, nil, true)
		case attrHeader:
			var v string
			if v, ok = solveString(as, nil, true); ok && v != "" {
				r.Headers[a.name] = []string{v}
			}
		case attrAudiences:
			r.Auth.Audiences, ok = solveList(as)
		case attrClaim:
			var vs []string
			if vs, ok = solveList(as); ok && len(vs) > 0 {
				ok = setClaim(&r.Auth, strings.Split(a.name, "\x00"), vs)
			}
		}
		if !ok {
			return nil, false
		}
	}
	return r, true
}

// solvePrincipal returns a principal (without "spiffe://"; "" for
// plaintext) that the principal and namespace atoms all admit.
func solvePrincipal(principals, namespaces []*atom, td string) (string, bool) {
	nsCands := stringCandidates([]string{"default"}, patternsOf(namespaces))
	var cands []string
	for _, ns := range nsCands {
		if ns != "" && !strings.Contains(ns, "/") {
			cands = append(cands, td+"/ns/"+ns+"/sa/"+witnessName)
		}
	}
	for _, p := range patternsOf(principals) {
		if p.kind == matchPrefix && strings.HasSuffix(p.s, "/ns/") {
			for _, ns := range nsCands {
				cands = append(cands, p.s+ns+"/sa/"+witnessName)
			}
		}
	}
	cands = append(cands, stringCandidates(nil, patternsOf(principals))...)
	cands = append(cands, "")
	for _, v := range cands {
		if allMatch(principals, v) && allMatch(namespaces, namespaceOf(v)) {
			return v, true
		}
	}
	return "", false
}

// solveString returns a value the atoms of a single-valued attribute all
// admit, trying defaults first; absent ("") only when allowed.
func solveString(as []*atom, defaults []string, absent bool) (string, bool) {
	cands := stringCandidates(defaults, patternsOf(as))
	if absent {
		cands = append(cands, "")
	}
	for _, v := range cands {
		if (v != "" || absent) && allMatch(as, v) {
			return v, true
		}
	}
	return "", false
}

// solveList returns values for a multi-valued attribute: one per positive
// atom, matched by that atom and by no negative one.
func solveList(as []*atom) ([]string, bool) {
	cands := stringCandidates(nil, patternsOf(as))
	var out []string
	for _, a := range as {
		if a.not {
			continue
		}
		found := false
		for _, v := range cands {
			if !a.matchString(v) {
				continue
			}
			if slices.ContainsFunc(as, func(n *atom) bool { return n.not && !n.matchString(v) }) {
				continue
			}
			if !slices.Contains(out, v) {
				out = append(out, v)
			}
			found = true
			break
		}
		if !found {
			return nil, false
		}
	}
	return out, true
}

// setClaim sets the claim at path to the values, nesting objects.
func setClaim(auth *authz.Auth, path, vals []string) bool {
	if auth.Claims == nil {
		auth.Claims = map[string]any{}
	}
	m := auth.Claims
	for _, k := range path[:len(path)-1] {
		next, ok := m[k].(map[string]any)
		if !ok {
			if _, taken := m[k]; taken {
				return false
			}
			next = map[string]any{}
			m[k] = next
		}
		m = next
	}
	last := path[len(path)-1]
	if _, taken := m[last]; taken {
		return false
	}
	list := make([]any, len(vals))
	for i, v := range vals {
		list[i] = v
	}
	m[last] = list
	return true
}

func solvePort(as []*atom) (uint32, bool) {
	cands := []uint32{8080, 80, 443, 9080}
	for _, a := range as {
		if !a.not {
			cands = append(slices.Clone(a.ports), cands...)
		}
	}
	ok := func(p uint32) bool {
		return !slices.ContainsFunc(as, func(a *atom) bool { return !a.matchPort(p) })
	}
	for _, p := range cands {
		if ok(p) {
			return p, true
		}
	}
	for p := uint32(1); p <= 65535; p++ {
		if ok(p) {
			return p, true
		}
	}
	return 0, false
}

func solveIP(as []*atom) (netip.Addr, bool) {
	var cands []netip.Addr
	for _, a := range as {
		for _, p := range a.ips {
			first, last := p.Masked().Addr(), lastAddr(p)
			if a.not {
				cands = append(cands, last.Next(), first.Prev())
			} else {
				cands = append(cands, first, first.Next(), last, last.Prev())
			}
		}
	}
	for _, s := range []string{"10.0.0.1", "192.168.0.1", "172.16.0.1", "2001:db8::1"} {
		cands = append(cands, netip.MustParseAddr(s))
	}
	for _, ip := range cands {
		if ip.IsValid() && !slices.ContainsFunc(as, func(a *atom) bool { return !a.matchIP(ip) }) {
			return ip, true
		}
	}
	return netip.Addr{}, false
}

// lastAddr is the last address of a prefix.
func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Masked().Addr().AsSlice()
	for i := p.Bits(); i < len(b)*8; i++ {
		b[i/8] |= 1 << (7 - i%8)
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

func allMatch(as []*atom, v string) bool {
	return !slices.ContainsFunc(as, func(a *atom) bool { return !a.matchString(v) })
}

func patternsOf(as []*atom) []pattern {
	var ps []pattern
	for _, a := range as {
		ps = append(ps, a.strs...)
	}
	return ps
}

// stringCandidates returns the defaults, then values matching each
// pattern and each pair of a prefix and a suffix.
func stringCandidates(defaults []string, ps []pattern) []string {
	out := slices.Clone(defaults)
	for _, p := range ps {
		switch p.kind {
		case matchExact:
			out = append(out, p.s)
		case matchPrefix:
			out = append(out, p.s, p.s+witnessName, p.s+"z")
		case matchSuffix:
			out = append(out, p.s, witnessName+p.s, "z"+p.s)
		case matchPresence:
			out = append(out, witnessName, "z")
		}
	}
	for _, p := range ps {
		for _, q := range ps {
			if p.kind == matchPrefix && q.kind == matchSuffix {
				out = append(out, p.s+q.s, p.s+witnessName+q.s)
			}
		}
	}
	return out
}

// ruleMatches reports whether rule index of the single-policy engine e
// matches r.
func ruleMatches(e *authz.Engine, index int, r *authz.Request) bool {
	x := e.Explain(context.Background(), r)
	for _, s := range x.Steps {
		if s.Rule == index {
			return s.Matched
		}
	}
	return false
}

// describeRequest writes r for a message, naming only the attributes in
// used (the others may be anything).
func describeRequest(r *authz.Request, used map[attrKind]bool) string {
	var parts []string
	switch {
	case !r.HTTP:
		parts = append(parts, "a TCP connection")
	case used[attrMethod] || used[attrPath]:
		parts = append(parts, r.Method+" "+r.Path)
	default:
		parts = append(parts, "a request")
	}
	if used[attrHost] {
		parts = append(parts, "to host "+r.Host)
	}
	if used[attrPort] {
		parts = append(parts, "on port "+strconv.FormatUint(uint64(r.Port), 10))
	}
	if used[attrDestinationIP] {
		parts = append(parts, "to address "+r.DestinationIP.String())
	}
	if used[attrPrincipal] || used[attrNamespace] {
		if r.Principal == "" {
			parts = append(parts, "from a plaintext caller")
		} else {
			parts = append(parts, "from "+r.Principal)
		}
	}
	if used[attrSourceIP] {
		parts = append(parts, "from address "+r.SourceIP.String())
	}
	if used[attrSNI] {
		parts = append(parts, fmt.Sprintf("with SNI %q", r.SNI))
	}
	if used[attrRequestPrincipal] {
		if r.Auth.Principal == "" {
			parts = append(parts, "without a JWT")
		} else {
			parts = append(parts, fmt.Sprintf("with a JWT of %q", r.Auth.Principal))
		}
	}
	if used[attrAudiences] && len(r.Auth.Audiences) > 0 {
		parts = append(parts, fmt.Sprintf("with audiences %q", r.Auth.Audiences))
	}
	if used[attrPresenter] && r.Auth.Presenter != "" {
		parts = append(parts, fmt.Sprintf("with presenter %q", r.Auth.Presenter))
	}
	if used[attrClaim] && len(r.Auth.Claims) > 0 {
		parts = append(parts, "with claims "+describeClaims(r.Auth.Claims))
	}
	if used[attrHeader] {
		names := make([]string, 0, len(r.Headers))
		for k := range r.Headers {
			names = append(names, k)
		}
		slices.Sort(names)
		for _, k := range names {
			parts = append(parts, fmt.Sprintf("with header %s: %s", k, strings.Join(r.Headers[k], ",")))
		}
	}
	return strings.Join(parts, " ")
}

func describeClaims(m map[string]any) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		switch v := m[k].(type) {
		case map[string]any:
			parts[i] = k + ":" + describeClaims(v)
		default:
			parts[i] = fmt.Sprintf("%s:%v", k, v)
		}
	}
	return "{" + strings.Join(parts, ", ") + "}"
}

// usedAttrs returns the attribute kinds the atoms constrain.
func usedAttrs(atomLists ...[]atom) map[attrKind]bool {
	used := make(map[attrKind]bool)
	for _, as := range atomLists {
		for _, a := range as {
			used[a.attr.kind] = true
		}
	}
	return used
}

// compileOne compiles a policy alone, for checking witnesses; nil if authz
// does not compile it.
func compileOne(ap *policy.AuthorizationPolicy) *authz.Engine {
	e, err := authz.Compile([]*policy.AuthorizationPolicy{ap})
	if err != nil {
		return nil
	}
	return e
}

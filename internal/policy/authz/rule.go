package authz

import (
	"fmt"
	"net/http"
	"net/netip"
	"strconv"
	"strings"

	"github.com/trustmesh/trustmesh/internal/policy"
)

// source is a compiled Source.
type source struct {
	principals, notPrincipals         strSet
	reqPrincipals, notReqPrincipals   strSet
	namespaces, notNamespaces         strSet
	ipBlocks, notIPBlocks             ipSet
	remoteIPBlocks, notRemoteIPBlocks ipSet
}

// operation is a compiled Operation.
type operation struct {
	hosts, notHosts     strSet
	ports, notPorts     portSet
	methods, notMethods strSet
	paths, notPaths     strSet
}

// attribute is a when key's attribute.
type attribute uint8

const (
	attrHeader attribute = iota
	attrSourceIP
	attrRemoteIP
	attrSourceNamespace
	attrSourcePrincipal
	attrAuthPrincipal
	attrAuthAudiences
	attrAuthPresenter
	attrAuthClaims
	attrDestinationIP
	attrDestinationPort
	attrSNI
)

var attributes = map[string]attribute{
	policy.KeyRequestHeaders:  attrHeader,
	policy.KeySourceIP:        attrSourceIP,
	policy.KeyRemoteIP:        attrRemoteIP,
	policy.KeySourceNamespace: attrSourceNamespace,
	policy.KeySourcePrincipal: attrSourcePrincipal,
	policy.KeyAuthPrincipal:   attrAuthPrincipal,
	policy.KeyAuthAudiences:   attrAuthAudiences,
	policy.KeyAuthPresenter:   attrAuthPresenter,
	policy.KeyAuthClaims:      attrAuthClaims,
	policy.KeyDestinationIP:   attrDestinationIP,
	policy.KeyDestinationPort: attrDestinationPort,
	policy.KeyConnectionSNI:   attrSNI,
}

// condition is a compiled when entry.
type condition struct {
	key       string
	attr      attribute
	httpOnly  bool
	header    string   // canonical header name, for attrHeader
	claim     []string // claim path, for attrAuthClaims
	values    strSet
	notValues strSet
	ips       ipSet // for IP attributes
	notIPs    ipSet
	ports     portSet // for destination.port
	notPorts  portSet
}

// rule is a compiled Rule of one policy.
type rule struct {
	pol      *Policy
	index    int // in the policy's rules
	from     []source
	to       []operation
	when     []condition
	httpOnly bool // uses a field only an HTTP request has
}

// compileRule compiles a validated rule. Values that do not parse (an
// unvalidated object) are errors.
func compileRule(p *Policy, index int, r *policy.Rule) (*rule, error) {
	out := &rule{pol: p, index: index}
	field := fmt.Sprintf("spec.rules[%d]", index)
	for _, f := range r.From {
		s := &f.Source
		cs := source{
			principals:       newStrSet(s.Principals, trimScheme),
			notPrincipals:    newStrSet(s.NotPrincipals, trimScheme),
			reqPrincipals:    newStrSet(s.RequestPrincipals, nil),
			notReqPrincipals: newStrSet(s.NotRequestPrincipals, nil),
			namespaces:       newStrSet(s.Namespaces, nil),
			notNamespaces:    newStrSet(s.NotNamespaces, nil),
		}
		var err error
		for _, l := range []struct {
			dst  *ipSet
			vals []string
		}{
			{&cs.ipBlocks, s.IPBlocks}, {&cs.notIPBlocks, s.NotIPBlocks},
			{&cs.remoteIPBlocks, s.RemoteIPBlocks}, {&cs.notRemoteIPBlocks, s.NotRemoteIPBlocks},
		} {
			if *l.dst, err = parseIPs(l.vals); err != nil {
				return nil, fmt.Errorf("%s.from: %w", field, err)
			}
		}
		if cs.reqPrincipals != nil || cs.notReqPrincipals != nil {
			out.httpOnly = true
		}
		out.from = append(out.from, cs)
	}
	for _, t := range r.To {
		o := &t.Operation
		co := operation{
			hosts:      newStrSet(o.Hosts, foldHost),
			notHosts:   newStrSet(o.NotHosts, foldHost),
			methods:    newStrSet(o.Methods, nil),
			notMethods: newStrSet(o.NotMethods, nil),
			paths:      newStrSet(o.Paths, nil),
			notPaths:   newStrSet(o.NotPaths, nil),
		}
		var err error
		if co.ports, err = parsePorts(o.Ports); err != nil {
			return nil, fmt.Errorf("%s.to: %w", field, err)
		}
		if co.notPorts, err = parsePorts(o.NotPorts); err != nil {
			return nil, fmt.Errorf("%s.to: %w", field, err)
		}
		if co.hosts != nil || co.notHosts != nil || co.methods != nil || co.notMethods != nil || co.paths != nil || co.notPaths != nil {
			out.httpOnly = true
		}
		out.to = append(out.to, co)
	}
	for i, c := range r.When {
		cf := fmt.Sprintf("%s.when[%d]", field, i)
		attrName, args, err := policy.ParseConditionKey(c.Key)
		if err != nil {
			return nil, fmt.Errorf("%s.key: %w", cf, err)
		}
		cc := condition{key: c.Key, attr: attributes[attrName], httpOnly: policy.HTTPOnlyKey(attrName)}
		switch cc.attr {
		case attrHeader:
			cc.header = http.CanonicalHeaderKey(args[0])
		case attrAuthClaims:
			cc.claim = args
		}
		switch cc.attr {
		case attrSourceIP, attrRemoteIP, attrDestinationIP:
			if cc.ips, err = parseIPs(c.Values); err == nil {
				cc.notIPs, err = parseIPs(c.NotValues)
			}
		case attrDestinationPort:
			if cc.ports, err = parsePorts(c.Values); err == nil {
				cc.notPorts, err = parsePorts(c.NotValues)
			}
		case attrSourcePrincipal:
			cc.values, cc.notValues = newStrSet(c.Values, trimScheme), newStrSet(c.NotValues, trimScheme)
		default:
			cc.values, cc.notValues = newStrSet(c.Values, nil), newStrSet(c.NotValues, nil)
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", cf, err)
		}
		out.httpOnly = out.httpOnly || cc.httpOnly
		out.when = append(out.when, cc)
	}
	return out, nil
}

func parseIPs(vals []string) (ipSet, error) {
	if len(vals) == 0 {
		return nil, nil
	}
	out := make(ipSet, 0, len(vals))
	for _, v := range vals {
		p, err := policy.ParseIPBlock(v)
		if err != nil {
			return nil, fmt.Errorf("%q: %w", v, err)
		}
		out = append(out, p)
	}
	return out, nil
}

func parsePorts(vals []string) (portSet, error) {
	if len(vals) == 0 {
		return nil, nil
	}
	out := make(portSet, 0, len(vals))
	for _, v := range vals {
		p, err := policy.ParsePort(v)
		if err != nil {
			return nil, fmt.Errorf("%q: %w", v, err)
		}
		out = append(out, p)
	}
	return out, nil
}

// match reports whether the rule matches r. On TCP traffic (r.HTTP
// false), HTTP-only fields follow Istio: a rule of an ALLOW or AUDIT
// policy that uses one never matches; in DENY and CUSTOM policies the
// HTTP-only fields are ignored, so the rest decides (denying more rather
// than less).
func (rl *rule) match(r *Request, t *tracer) bool {
	if !r.HTTP && rl.httpOnly {
		switch rl.pol.Action {
		case policy.ActionAllow, policy.ActionAudit:
			if t != nil {
				t.fail(fmt.Sprintf("spec.rules[%d]", rl.index), "uses HTTP-only fields (requestPrincipals, hosts, methods, paths or request.* keys) and the traffic is TCP: Istio ignores such a rule in an %s policy", rl.pol.Action)
			}
			return false
		}
	}
	if len(rl.from) > 0 {
		ok := false
		for i := range rl.from {
			if rl.from[i].match(r, rl.index, i, t) {
				ok = true
				break
			}
		}
		if !ok {
			return false
		}
	}
	if len(rl.to) > 0 {
		ok := false
		for i := range rl.to {
			if rl.to[i].match(r, rl.index, i, t) {
				ok = true
				break
			}
		}
		if !ok {
			return false
		}
	}
	for i := range rl.when {
		if !rl.when[i].match(r, rl.index, i, t) {
			return false
		}
	}
	return true
}

// field names a field of a rule for traces; only called with a tracer.
func field(rule int, part string, i int, name string) string {
	return "spec.rules[" + strconv.Itoa(rule) + "]." + part + "[" + strconv.Itoa(i) + "]." + name
}

func (s *source) match(r *Request, ri, i int, t *tracer) bool {
	f := func(name string) string {
		if t == nil {
			return ""
		}
		return field(ri, "from", i, "source."+name)
	}
	principal := trimScheme(r.Principal)
	if s.principals != nil && !checkIn(t, f("principals"), s.principals, principal) {
		return false
	}
	if s.notPrincipals != nil && !checkNotIn(t, f("notPrincipals"), s.notPrincipals, principal) {
		return false
	}
	if r.HTTP {
		if s.reqPrincipals != nil && !checkIn(t, f("requestPrincipals"), s.reqPrincipals, r.Auth.Principal) {
			return false
		}
		if s.notReqPrincipals != nil && !checkNotIn(t, f("notRequestPrincipals"), s.notReqPrincipals, r.Auth.Principal) {
			return false
		}
	}
	if s.namespaces != nil || s.notNamespaces != nil {
		ns := namespaceOf(r.Principal)
		if s.namespaces != nil && !checkIn(t, f("namespaces"), s.namespaces, ns) {
			return false
		}
		if s.notNamespaces != nil && !checkNotIn(t, f("notNamespaces"), s.notNamespaces, ns) {
			return false
		}
	}
	for _, l := range [...]struct {
		set  ipSet
		not  bool
		name string
	}{
		{s.ipBlocks, false, "ipBlocks"}, {s.notIPBlocks, true, "notIpBlocks"},
		{s.remoteIPBlocks, false, "remoteIpBlocks"}, {s.notRemoteIPBlocks, true, "notRemoteIpBlocks"},
	} {
		if l.set == nil {
			continue
		}
		if l.set.match(r.SourceIP) == l.not {
			if t != nil {
				t.fail(f(l.name), "source address %s %s %s", addrOrAbsent(r.SourceIP), ternary(l.not, "is in", "is not in"), l.set)
			}
			return false
		}
	}
	return true
}

func (o *operation) match(r *Request, ri, i int, t *tracer) bool {
	f := func(name string) string {
		if t == nil {
			return ""
		}
		return field(ri, "to", i, "operation."+name)
	}
	if o.ports != nil && !o.ports.match(r.Port) {
		if t != nil {
			t.fail(f("ports"), "port %d is not in %s", r.Port, o.ports)
		}
		return false
	}
	if o.notPorts != nil && o.notPorts.match(r.Port) {
		if t != nil {
			t.fail(f("notPorts"), "port %d is in %s", r.Port, o.notPorts)
		}
		return false
	}
	if !r.HTTP {
		return true // HTTP-only fields: see rule.match
	}
	return checkIn(t, f("hosts"), o.hosts, r.Host) &&
		checkNotIn(t, f("notHosts"), o.notHosts, r.Host) &&
		checkIn(t, f("methods"), o.methods, r.Method) &&
		checkNotIn(t, f("notMethods"), o.notMethods, r.Method) &&
		checkIn(t, f("paths"), o.paths, r.Path) &&
		checkNotIn(t, f("notPaths"), o.notPaths, r.Path)
}

func (c *condition) match(r *Request, ri, i int, t *tracer) bool {
	if c.httpOnly && !r.HTTP {
		return true // ignored on TCP: see rule.match
	}
	name := ""
	if t != nil {
		name = "spec.rules[" + strconv.Itoa(ri) + "].when[" + strconv.Itoa(i) + "] (" + c.key + ")"
	}
	switch c.attr {
	case attrSourceIP, attrRemoteIP, attrDestinationIP:
		a := r.SourceIP
		if c.attr == attrDestinationIP {
			a = r.DestinationIP
		}
		if c.ips != nil && !c.ips.match(a) {
			if t != nil {
				t.fail(name, "%s is not in %s", addrOrAbsent(a), c.ips)
			}
			return false
		}
		if c.notIPs != nil && c.notIPs.match(a) {
			if t != nil {
				t.fail(name, "%s is in %s", addrOrAbsent(a), c.notIPs)
			}
			return false
		}
		return true
	case attrDestinationPort:
		if c.ports != nil && !c.ports.match(r.Port) {
			if t != nil {
				t.fail(name, "port %d is not in %s", r.Port, c.ports)
			}
			return false
		}
		if c.notPorts != nil && c.notPorts.match(r.Port) {
			if t != nil {
				t.fail(name, "port %d is in %s", r.Port, c.notPorts)
			}
			return false
		}
		return true
	case attrAuthAudiences:
		return c.matchList(r.Auth.Audiences, name, t)
	case attrAuthClaims:
		return c.matchClaim(r.Auth.Claims, name, t)
	case attrHeader:
		vals := r.Headers[c.header]
		v := ""
		switch len(vals) {
		case 0:
		case 1:
			v = vals[0]
		default:
			v = strings.Join(vals, ",") // as Envoy sees repeated headers
		}
		return c.matchOne(v, name, t)
	}
	return c.matchOne(c.scalar(r), name, t)
}

// scalar returns the value of a single-valued string attribute.
func (c *condition) scalar(r *Request) string {
	switch c.attr {
	case attrSourceNamespace:
		return namespaceOf(r.Principal)
	case attrSourcePrincipal:
		return trimScheme(r.Principal)
	case attrAuthPrincipal:
		return r.Auth.Principal
	case attrAuthPresenter:
		return r.Auth.Presenter
	case attrSNI:
		return r.SNI
	}
	return ""
}

func (c *condition) matchOne(v, name string, t *tracer) bool {
	return checkIn(t, name+" values", c.values, v) && checkNotIn(t, name+" notValues", c.notValues, v)
}

// matchList matches a multi-valued attribute: values match when any
// element does; notValues fail when any element does.
func (c *condition) matchList(vals []string, name string, t *tracer) bool {
	if c.values != nil {
		ok := false
		for _, v := range vals {
			if c.values.match(v) {
				ok = true
				break
			}
		}
		if !ok {
			if t != nil {
				t.fail(name+" values", "none of %q matches %s", vals, c.values)
			}
			return false
		}
	}
	if c.notValues != nil {
		for _, v := range vals {
			if c.notValues.match(v) {
				if t != nil {
					t.fail(name+" notValues", "%q matches %s", v, c.notValues)
				}
				return false
			}
		}
	}
	return true
}

// matchClaim matches a claim, following nested objects along the path;
// a string claim or a list of strings is matched, anything else counts as
// absent.
func (c *condition) matchClaim(claims map[string]any, name string, t *tracer) bool {
	var v any = claims
	for _, k := range c.claim {
		m, ok := v.(map[string]any)
		if !ok {
			v = nil
			break
		}
		v = m[k]
	}
	switch v := v.(type) {
	case string:
		return c.matchOne(v, name, t)
	case []any:
		var one [1]string
		strs := one[:0]
		if len(v) > 1 {
			strs = make([]string, 0, len(v))
		}
		for _, e := range v {
			if s, ok := e.(string); ok {
				strs = append(strs, s)
			}
		}
		return c.matchList(strs, name, t)
	case []string:
		return c.matchList(v, name, t)
	}
	return c.matchOne("", name, t)
}

func addrOrAbsent(a netip.Addr) string {
	if !a.IsValid() {
		return "(absent)"
	}
	return a.String()
}

func ternary(c bool, a, b string) string {
	if c {
		return a
	}
	return b
}

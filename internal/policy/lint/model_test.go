package lint

import (
	"math/rand/v2"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/trustmesh/trustmesh/internal/policy"
	"github.com/trustmesh/trustmesh/internal/policy/authz"
)

// The tests below check the model against the authz evaluator on random
// rules and requests drawn from a small vocabulary (so that rules often
// overlap and cover each other): the model matches exactly the requests
// the evaluator does, a proven cover is never contradicted by a request,
// and every witness the solver builds is matched by the evaluator.

func TestModelAgreesWithEvaluator(t *testing.T) {
	for seed := range uint64(400) {
		checkRandomRules(t, seed, seed*7919+1)
	}
}

func FuzzModelAgreesWithEvaluator(f *testing.F) {
	f.Add(uint64(1), uint64(2))
	f.Add(uint64(42), uint64(7))
	f.Fuzz(func(t *testing.T, s1, s2 uint64) {
		checkRandomRules(t, s1, s2)
	})
}

func TestCoversIsReflexiveAndSeesNarrowing(t *testing.T) {
	for seed := range uint64(300) {
		g := &ruleGen{r: rand.New(rand.NewPCG(seed, 99))}
		action := g.action()
		a := g.rule()
		ma := mustModel(t, action, &a)
		if !covers(ma, ma) {
			t.Fatalf("seed %d: got covers(a, a) false, want true for %+v", seed, a)
		}
		b := g.narrow(a)
		mb := mustModel(t, action, &b)
		if action == policy.ActionAllow && ma.httpOnly && !mb.httpOnly {
			// Dropping the entry with the HTTP-only field makes the
			// ALLOW rule match TCP connections a never matched: not a
			// narrowing.
			continue
		}
		if !covers(ma, mb) {
			t.Fatalf("seed %d: got covers(a, narrowed a) false, want true\na: %+v\nb: %+v", seed, a, b)
		}
	}
}

func checkRandomRules(t *testing.T, s1, s2 uint64) {
	t.Helper()
	g := &ruleGen{r: rand.New(rand.NewPCG(s1, s2))}
	actionA, actionB := g.action(), g.action()
	if actionA == policy.ActionAllow && actionB == policy.ActionDeny {
		actionA, actionB = actionB, actionA // DENY shadows ALLOW, not the reverse
	}
	ra := g.rule()
	var rb policy.Rule
	if g.r.IntN(2) == 0 {
		rb = g.rule()
	} else {
		rb = g.narrow(ra)
	}
	ea, eb := mustEngine(t, actionA, ra), mustEngine(t, actionB, rb)
	ma, mb := mustModel(t, actionA, &ra), mustModel(t, actionB, &rb)

	reqs := g.requests(60)
	for _, c := range mb.conj {
		if w, ok := solve(c.atoms, false, "cluster.local"); ok {
			if !ruleMatches(eb, 0, w) {
				t.Fatalf("witness %+v of conjunct %+v does not match rule %+v", w, c.atoms, rb)
			}
			reqs = append(reqs, w)
		}
	}
	for _, c := range mb.tcp() {
		if w, ok := solve(c.atoms, true, "cluster.local"); ok {
			if !ruleMatches(eb, 0, w) {
				t.Fatalf("TCP witness %+v of conjunct %+v does not match %s rule %+v", w, c.atoms, actionB, rb)
			}
			reqs = append(reqs, w)
		}
	}

	cover := covers(ma, mb)
	for _, r := range reqs {
		for _, x := range []struct {
			m *ruleModel
			e *authz.Engine
			r policy.Rule
		}{{ma, ea, ra}, {mb, eb, rb}} {
			if got, want := modelMatches(x.m, r), ruleMatches(x.e, 0, r); got != want {
				t.Fatalf("%s rule %+v on request %+v: got model match %v, want %v (the evaluator's)", x.m.action, x.r, r, got, want)
			}
		}
		if cover && ruleMatches(eb, 0, r) && !ruleMatches(ea, 0, r) {
			t.Fatalf("covers(a, b) but request %+v matches b and not a\na (%s): %+v\nb (%s): %+v", r, actionA, ra, actionB, rb)
		}
	}
}

func mustModel(t *testing.T, action policy.Action, r *policy.Rule) *ruleModel {
	t.Helper()
	m, err := modelRule(action, 0, r)
	if err != nil {
		t.Fatalf("modelRule(%+v): %v", r, err)
	}
	return m
}

func mustEngine(t *testing.T, action policy.Action, r policy.Rule) *authz.Engine {
	t.Helper()
	ap := &policy.AuthorizationPolicy{
		Metadata: policy.Metadata{Name: "p", Namespace: "default"},
		Spec:     policy.AuthorizationPolicySpec{Action: action, Rules: []policy.Rule{r}},
	}
	if err := policy.Validate(ap, td); err != nil {
		t.Fatalf("the generated policy is not valid: %v", err)
	}
	e := compileOne(ap)
	if e == nil {
		t.Fatalf("the generated policy does not compile: %+v", ap)
	}
	return e
}

// modelMatches evaluates the model on a request, independently of authz.
func modelMatches(m *ruleModel, r *authz.Request) bool {
	conj := m.conj
	if !r.HTTP {
		if conj = m.tcp(); conj == nil {
			return false
		}
	}
	return slices.ContainsFunc(conj, func(c conjunct) bool {
		return !slices.ContainsFunc(c.atoms, func(a atom) bool { return !atomMatches(&a, r) })
	})
}

func atomMatches(a *atom, r *authz.Request) bool {
	switch a.attr.kind {
	case attrPrincipal:
		return a.matchString(trimScheme(r.Principal))
	case attrNamespace:
		return a.matchString(namespaceOf(trimScheme(r.Principal)))
	case attrRequestPrincipal:
		return a.matchString(r.Auth.Principal)
	case attrSourceIP:
		return a.matchIP(r.SourceIP)
	case attrDestinationIP:
		return a.matchIP(r.DestinationIP)
	case attrPort:
		return a.matchPort(r.Port)
	case attrSNI:
		return a.matchString(r.SNI)
	case attrHost:
		return a.matchString(r.Host)
	case attrMethod:
		return a.matchString(r.Method)
	case attrPath:
		return a.matchString(r.Path)
	case attrPresenter:
		return a.matchString(r.Auth.Presenter)
	case attrHeader:
		return a.matchString(strings.Join(r.Headers[a.attr.name], ","))
	case attrAudiences:
		return matchList(a, r.Auth.Audiences)
	case attrClaim:
		var v any = r.Auth.Claims
		for _, k := range strings.Split(a.attr.name, "\x00") {
			m, _ := v.(map[string]any)
			v = m[k]
		}
		switch v := v.(type) {
		case string:
			return a.matchString(v)
		case []any:
			var vs []string
			for _, e := range v {
				if s, ok := e.(string); ok {
					vs = append(vs, s)
				}
			}
			return matchList(a, vs)
		}
		return a.matchString("")
	}
	panic("unknown attribute")
}

func matchList(a *atom, vs []string) bool {
	matched := slices.ContainsFunc(vs, func(v string) bool {
		return slices.ContainsFunc(a.strs, func(p pattern) bool { return p.match(v) })
	})
	return matched != a.not
}

// ruleGen makes random rules and requests.
type ruleGen struct{ r *rand.Rand }

var (
	vocabPrincipals  = []string{"cluster.local/ns/a/sa/x", "spiffe://cluster.local/ns/a/sa/x", "cluster.local/ns/a/*", "cluster.local/ns/b/sa/y", "cluster.local/*", "*", "*/sa/x"}
	vocabNamespaces  = []string{"a", "b", "*", "a*"}
	vocabReqPrinc    = []string{"iss/sub", "iss/*", "*", "other/sub"}
	vocabIPs         = []string{"10.0.0.0/8", "10.1.0.0/16", "10.1.2.3", "192.168.0.0/24"}
	vocabHosts       = []string{"a.example", "*.example", "b.example", "A.Example."}
	vocabPorts       = []string{"80", "8080", "22"}
	vocabMethods     = []string{"GET", "POST", "*"}
	vocabPaths       = []string{"/", "/api", "/api/*", "/api/v1", "*.json", "/admin*", "*"}
	vocabHeaderVals  = []string{"1", "2", "*", "1*"}
	vocabClaims      = []string{"admin", "dev", "*"}
	vocabAudiences   = []string{"aud1", "aud2"}
	vocabSNI         = []string{"a.example", "*.example"}
	vocabWhen        = []string{"request.headers[x-a]", "source.namespace", "source.principal", "source.ip", "destination.port", "request.auth.claims[groups]", "request.auth.audiences", "connection.sni", "request.auth.principal", "remote.ip"}
	vocabWhenValues  = map[string][]string{"request.headers[x-a]": vocabHeaderVals, "source.namespace": vocabNamespaces, "source.principal": vocabPrincipals, "source.ip": vocabIPs, "remote.ip": vocabIPs, "destination.port": vocabPorts, "request.auth.claims[groups]": vocabClaims, "request.auth.audiences": vocabAudiences, "connection.sni": vocabSNI, "request.auth.principal": vocabReqPrinc}
	vocabReqPrincIDs = []string{"", "spiffe://cluster.local/ns/a/sa/x", "spiffe://cluster.local/ns/b/sa/y", "spiffe://cluster.local/ns/c/sa/x", "spiffe://other/ns/a/sa/z"}
)

func (g *ruleGen) action() policy.Action {
	return []policy.Action{policy.ActionAllow, policy.ActionDeny}[g.r.IntN(2)]
}

func (g *ruleGen) pick(vs []string) []string {
	out := make([]string, 1+g.r.IntN(2))
	for i := range out {
		out[i] = vs[g.r.IntN(len(vs))]
	}
	return out
}

func (g *ruleGen) source() policy.Source {
	var s policy.Source
	for range 1 + g.r.IntN(2) {
		switch g.r.IntN(8) {
		case 0:
			s.Principals = g.pick(vocabPrincipals)
		case 1:
			s.NotPrincipals = g.pick(vocabPrincipals)
		case 2:
			s.Namespaces = g.pick(vocabNamespaces)
		case 3:
			s.NotNamespaces = g.pick(vocabNamespaces)
		case 4:
			s.RequestPrincipals = g.pick(vocabReqPrinc)
		case 5:
			s.NotRequestPrincipals = g.pick(vocabReqPrinc)
		case 6:
			s.IPBlocks = g.pick(vocabIPs)
		case 7:
			s.NotRemoteIPBlocks = g.pick(vocabIPs)
		}
	}
	return s
}

func (g *ruleGen) operation() policy.Operation {
	var o policy.Operation
	for range 1 + g.r.IntN(2) {
		switch g.r.IntN(8) {
		case 0:
			o.Hosts = g.pick(vocabHosts)
		case 1:
			o.NotHosts = g.pick(vocabHosts)
		case 2:
			o.Ports = g.pick(vocabPorts)
		case 3:
			o.NotPorts = g.pick(vocabPorts)
		case 4:
			o.Methods = g.pick(vocabMethods)
		case 5:
			o.NotMethods = g.pick(vocabMethods)
		case 6:
			o.Paths = g.pick(vocabPaths)
		case 7:
			o.NotPaths = g.pick(vocabPaths)
		}
	}
	return o
}

func (g *ruleGen) condition() policy.Condition {
	key := vocabWhen[g.r.IntN(len(vocabWhen))]
	c := policy.Condition{Key: key}
	switch g.r.IntN(3) {
	case 0:
		c.Values = g.pick(vocabWhenValues[key])
	case 1:
		c.NotValues = g.pick(vocabWhenValues[key])
	default:
		c.Values, c.NotValues = g.pick(vocabWhenValues[key]), g.pick(vocabWhenValues[key])
	}
	return c
}

func (g *ruleGen) rule() policy.Rule {
	var r policy.Rule
	for range g.r.IntN(3) {
		r.From = append(r.From, policy.RuleFrom{Source: g.source()})
	}
	for range g.r.IntN(3) {
		r.To = append(r.To, policy.RuleTo{Operation: g.operation()})
	}
	for range g.r.IntN(3) {
		r.When = append(r.When, g.condition())
	}
	return r
}

// narrow returns a rule that matches a subset of what r matches: r with a
// when condition more, a from or to entry fewer (of several), or a from or
// to entry where it has none.
func (g *ruleGen) narrow(r policy.Rule) policy.Rule {
	r.From, r.To, r.When = slices.Clone(r.From), slices.Clone(r.To), slices.Clone(r.When)
	switch g.r.IntN(3) {
	case 1:
		switch len(r.From) {
		case 0:
			r.From = []policy.RuleFrom{{Source: g.source()}}
			return r
		case 1:
		default:
			r.From = slices.Delete(r.From, 0, 1)
			return r
		}
	case 2:
		switch len(r.To) {
		case 0:
			r.To = []policy.RuleTo{{Operation: g.operation()}}
			return r
		case 1:
		default:
			r.To = r.To[:len(r.To)-1]
			return r
		}
	}
	r.When = append(r.When, g.condition())
	return r
}

func (g *ruleGen) requests(n int) []*authz.Request {
	one := func(vs ...string) string { return vs[g.r.IntN(len(vs))] }
	out := make([]*authz.Request, n)
	for i := range out {
		r := &authz.Request{
			Principal: one(vocabReqPrincIDs...),
			SourceIP:  netip.MustParseAddr(one("10.1.2.3", "10.2.0.1", "192.168.0.5", "172.16.0.1")),
			Port:      []uint32{80, 8080, 22, 9000}[g.r.IntN(4)],
			SNI:       one("", "a.example", "x.example"),
			HTTP:      g.r.IntN(5) > 0,
		}
		if r.HTTP {
			r.Method = one("GET", "POST", "DELETE")
			r.Path = one("/", "/api", "/api/v1", "/x.json", "/admin/x", "/other")
			r.Host = one("a.example", "b.example", "c.other")
			r.Headers = http.Header{}
			if v := one("", "1", "2", "12"); v != "" {
				r.Headers["X-A"] = []string{v}
			}
			r.Auth.Principal = one("", "iss/sub", "iss/other", "other/sub")
			switch g.r.IntN(4) {
			case 1:
				r.Auth.Claims = map[string]any{"groups": []any{"admin"}}
			case 2:
				r.Auth.Claims = map[string]any{"groups": []any{"dev", "x"}}
			case 3:
				r.Auth.Claims = map[string]any{"groups": "admin"}
			}
			switch g.r.IntN(3) {
			case 1:
				r.Auth.Audiences = []string{"aud1"}
			case 2:
				r.Auth.Audiences = []string{"aud2", "aud3"}
			}
		}
		out[i] = r
	}
	return out
}

package authz

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/trustmesh/trustmesh/internal/policy"
	"github.com/trustmesh/trustmesh/internal/policy/rego"
)

// benchPolicies builds n rules the way operators write them: one ALLOW
// rule per (caller, service path) pair, a fifth of them exact paths, the
// rest prefixes, and a handful of DENY rules that are not indexable
// (suffix paths, notPaths), spread over policies of 10 rules.
func benchPolicies(n int) []*policy.AuthorizationPolicy {
	var aps []*policy.AuthorizationPolicy
	for i := 0; i < n; i += 10 {
		ap := &policy.AuthorizationPolicy{Metadata: policy.Metadata{Name: fmt.Sprintf("allow-%05d", i), Namespace: "default", Revision: int64(i + 1)}}
		for j := i; j < i+10 && j < n; j++ {
			op := policy.Operation{Methods: []string{"GET", "POST"}, Paths: []string{fmt.Sprintf("/svc%d/*", j)}}
			if j%5 == 0 {
				op.Paths = []string{fmt.Sprintf("/api/v1/items%d", j)}
			}
			ap.Spec.Rules = append(ap.Spec.Rules, policy.Rule{
				From: []policy.RuleFrom{{Source: policy.Source{Principals: []string{benchCaller(j)}}}},
				To:   []policy.RuleTo{{Operation: op}},
			})
		}
		aps = append(aps, ap)
	}
	deny := &policy.AuthorizationPolicy{Metadata: policy.Metadata{Name: "deny", Namespace: "default"}, Spec: policy.AuthorizationPolicySpec{Action: policy.ActionDeny}}
	deny.Spec.Rules = []policy.Rule{
		{To: []policy.RuleTo{{Operation: policy.Operation{Paths: []string{"*.php", "*.env"}}}}},
		{From: []policy.RuleFrom{{Source: policy.Source{NotNamespaces: []string{"default", "shop"}}}}},
		{To: []policy.RuleTo{{Operation: policy.Operation{Methods: []string{"TRACE", "CONNECT"}}}}},
	}
	return append(aps, deny)
}

func benchCaller(j int) string {
	return fmt.Sprintf("spiffe://cluster.local/ns/shop/sa/caller%d", j%50)
}

// benchRequest is for rule j: allowed when j < n, else a miss.
func benchRequest(j int) *Request {
	path := fmt.Sprintf("/svc%d/items/42", j)
	if j%5 == 0 {
		path = fmt.Sprintf("/api/v1/items%d", j)
	}
	return &Request{Principal: benchCaller(j), HTTP: true, Method: "GET", Path: path, Host: "orders.default", Port: 8080,
		SourceIP: netip.MustParseAddr("127.0.0.1"), Headers: http.Header{}}
}

func benchRequests(n int) []*Request {
	r := rand.New(rand.NewPCG(1, 2))
	out := make([]*Request, 1024)
	for i := range out {
		j := r.IntN(n)
		if i%4 == 3 {
			j = n + r.IntN(n) // a quarter of the requests match no rule
		}
		out[i] = benchRequest(j)
	}
	return out
}

func benchEngine(tb testing.TB, n int) *Engine {
	tb.Helper()
	e, err := Compile(benchPolicies(n))
	if err != nil {
		tb.Fatal(err)
	}
	return e
}

// BenchmarkEvaluate measures the compiled engine at 10 to 10,000 rules
// and reports p50/p99 of single evaluations besides the mean.
func BenchmarkEvaluate(b *testing.B) {
	for _, n := range []int{10, 100, 1000, 10000} {
		b.Run(fmt.Sprintf("rules=%d", n), func(b *testing.B) {
			e := benchEngine(b, n)
			reqs := benchRequests(n)
			ctx := context.Background()
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				_ = e.Evaluate(ctx, reqs[i%len(reqs)])
			}
			b.StopTimer()
			reportPercentiles(b, func(r *Request) { _ = e.Evaluate(ctx, r) }, reqs)
		})
	}
}

// BenchmarkOPA evaluates the same decisions with an equivalent Rego
// policy in embedded OPA, for comparison.
func BenchmarkOPA(b *testing.B) {
	for _, n := range []int{10, 100, 1000, 10000} {
		b.Run(fmt.Sprintf("rules=%d", n), func(b *testing.B) {
			q, err := rego.NewQuery("bench", equivalentRego(benchPolicies(n)), "data.bench.decision", rego.WithTimeBudget(10*time.Second))
			if err != nil {
				b.Fatal(err)
			}
			reqs := benchRequests(n)
			inputs := make([]map[string]any, len(reqs))
			for i, r := range reqs {
				inputs[i] = RegoInput(r)
			}
			ctx := context.Background()
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if _, err := q.Eval(ctx, inputs[i%len(inputs)]); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			k := 0
			reportPercentiles(b, func(*Request) { _, _ = q.Eval(ctx, inputs[k%len(inputs)]); k++ }, reqs[:min(len(reqs), 200)])
		})
	}
}

func reportPercentiles(b *testing.B, f func(*Request), reqs []*Request) {
	samples := make([]time.Duration, 0, 4*len(reqs))
	for range 4 {
		for _, r := range reqs {
			start := time.Now()
			f(r)
			samples = append(samples, time.Since(start))
		}
	}
	slices.Sort(samples)
	b.ReportMetric(float64(samples[len(samples)/2].Nanoseconds()), "p50-ns")
	b.ReportMetric(float64(samples[len(samples)*99/100].Nanoseconds()), "p99-ns")
}

// equivalentRego writes the bench policies as one Rego module with the
// same decisions: allow when no deny rule and some allow rule matches.
func equivalentRego(aps []*policy.AuthorizationPolicy) string {
	var b strings.Builder
	b.WriteString("package bench\n\ndefault allowed := false\ndefault denied := false\n")
	b.WriteString("decision := allowed if not denied\ndecision := false if denied\n\n")
	for _, ap := range aps {
		head := "allowed"
		if ap.EffectiveAction() == policy.ActionDeny {
			head = "denied"
		}
		for _, r := range ap.Spec.Rules {
			fmt.Fprintf(&b, "%s if {\n", head)
			for _, f := range r.From {
				for _, p := range f.Source.Principals {
					fmt.Fprintf(&b, "\tinput.source.principal == %q\n", p)
				}
				if ns := f.Source.NotNamespaces; len(ns) > 0 {
					fmt.Fprintf(&b, "\tnot input.source.namespace in %s\n", regoSet(ns))
				}
			}
			for _, t := range r.To {
				if m := t.Operation.Methods; len(m) > 0 {
					fmt.Fprintf(&b, "\tinput.request.method in %s\n", regoSet(m))
				}
				for _, p := range t.Operation.Paths {
					switch {
					case strings.HasSuffix(p, "*"):
						fmt.Fprintf(&b, "\tstartswith(input.request.path, %q)\n", strings.TrimSuffix(p, "*"))
					case strings.HasPrefix(p, "*"):
						fmt.Fprintf(&b, "\tendswith(input.request.path, %q)\n", strings.TrimPrefix(p, "*"))
					default:
						fmt.Fprintf(&b, "\tinput.request.path == %q\n", p)
					}
				}
			}
			b.WriteString("}\n")
		}
	}
	return b.String()
}

func regoSet(vals []string) string {
	q := make([]string, len(vals))
	for i, v := range vals {
		q[i] = fmt.Sprintf("%q", v)
	}
	return "{" + strings.Join(q, ", ") + "}"
}

// TestOPAEquivalent checks that the OPA comparison decides what the
// engine decides, so the benchmark compares equal work. (The suffix DENY
// rule has two paths, which Rego reads as AND: no request of the bench
// ends in .php or .env, so it never matches in either.)
func TestOPAEquivalent(t *testing.T) {
	const n = 100
	e := benchEngine(t, n)
	q, err := rego.NewQuery("bench", equivalentRego(benchPolicies(n)), "data.bench.decision", rego.WithTimeBudget(10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	reqs := benchRequests(n)
	reqs = append(reqs, with(benchRequest(3), func(r *Request) { r.Method = "TRACE" }),
		with(benchRequest(3), func(r *Request) { r.Principal = "spiffe://cluster.local/ns/evil/sa/x" }))
	for i, r := range reqs {
		rs, err := q.Eval(context.Background(), RegoInput(r))
		if err != nil {
			t.Fatal(err)
		}
		got := len(rs) == 1 && rs[0].Expressions[0].Value == true
		if want := e.Evaluate(context.Background(), r).Allowed; got != want {
			t.Fatalf("request %d %s %s: OPA says %v, engine %v", i, r.Principal, r.Path, got, want)
		}
	}
}

// TestIndexAgreesWithLinearScan checks the path index against a scan of
// every rule on random policies and requests: the index must never hide a
// rule that matches, nor pick a later one.
func TestIndexAgreesWithLinearScan(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 9))
	paths := []string{"/", "/a", "/a/", "/a/b", "/ab", "/a/b/c", "/x.json", "/b", "/admin", "/admin/x"}
	pats := []string{"/a", "/a/*", "/a*", "*", "*.json", "/admin", "/admin/*", "/b", "/", "/a/b*"}
	principals := []string{"spiffe://cluster.local/ns/default/sa/sleep", "cluster.local/ns/default/sa/web", "cluster.local/ns/*", "*/sa/sleep", "spiffe://cluster.local/ns/default/sa/other"}
	callers := []string{sleep, "spiffe://cluster.local/ns/default/sa/web", "spiffe://cluster.local/ns/x/sa/y", ""}
	pick := func(l []string) []string {
		out := []string{l[r.IntN(len(l))]}
		if r.IntN(3) == 0 {
			out = append(out, l[r.IntN(len(l))])
		}
		return out
	}
	for iter := range 300 {
		var aps []*policy.AuthorizationPolicy
		for k := range 3 {
			ap := &policy.AuthorizationPolicy{Metadata: policy.Metadata{Name: fmt.Sprintf("p%d", k), Namespace: "default"}}
			ap.Spec.Action = []policy.Action{policy.ActionAllow, policy.ActionDeny, policy.ActionAudit}[r.IntN(3)]
			for range 1 + r.IntN(4) {
				var rl policy.Rule
				for range r.IntN(3) {
					src := policy.Source{Principals: pick(principals)}
					if r.IntN(4) == 0 {
						src = policy.Source{NotPrincipals: pick(principals)}
					}
					rl.From = append(rl.From, policy.RuleFrom{Source: src})
				}
				for range r.IntN(3) {
					op := policy.Operation{}
					switch r.IntN(4) {
					case 0:
						op.Paths = pick(pats)
					case 1:
						op.NotPaths = pick(pats)
					case 2:
						op.Paths, op.Methods = pick(pats), []string{"GET"}
					default:
						op.Methods = []string{"POST"}
					}
					rl.To = append(rl.To, policy.RuleTo{Operation: op})
				}
				ap.Spec.Rules = append(ap.Spec.Rules, rl)
			}
			aps = append(aps, ap)
		}
		e, err := Compile(aps)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range paths {
			for k, m := range []string{"GET", "POST", "GET", "POST"} {
				req := with(get(p), func(r *Request) { r.Method = m; r.Principal = callers[k] })
				d := e.Evaluate(context.Background(), req)
				want := linearDecision(e, req)
				if d.Allowed != want.Allowed || d.Reason != want.Reason || d.Policy != want.Policy || d.Rule != want.Rule {
					t.Fatalf("iteration %d, %s %s: index says %+v, scan says %+v", iter, m, p, d.Outcome, want)
				}
			}
		}
	}
}

// linearDecision decides by scanning every rule in order (no index).
func linearDecision(e *Engine, r *Request) Outcome {
	first := func(action policy.Action) (*Policy, int) {
		for _, p := range e.Policies {
			if p.Action != action {
				continue
			}
			for _, rl := range p.rules {
				if rl.match(r, nil) {
					return p, rl.index
				}
			}
		}
		return nil, -1
	}
	if p, i := first(policy.ActionDeny); p != nil {
		return Outcome{Reason: ReasonDenyPolicy, Policy: p, Rule: i}
	}
	hasAllow := false
	for _, p := range e.Policies {
		hasAllow = hasAllow || p.Action == policy.ActionAllow
	}
	if !hasAllow {
		return Outcome{Allowed: true, Reason: ReasonNoPolicy, Rule: -1}
	}
	if p, i := first(policy.ActionAllow); p != nil {
		return Outcome{Allowed: true, Reason: ReasonAllowPolicy, Policy: p, Rule: i}
	}
	return Outcome{Reason: ReasonNoAllowMatch, Rule: -1}
}

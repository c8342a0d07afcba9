package authz

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/trustmesh/trustmesh/internal/policy"
)

func TestCacheAgreesWithEngine(t *testing.T) {
	e := benchEngine(t, 200)
	c := NewCache(e, 64) // small: shards are emptied and refilled during the test
	if c == nil {
		t.Fatal("NewCache: nil for an engine without headers, claims or CUSTOM")
	}
	r := rand.New(rand.NewPCG(3, 4))
	for i := range 5000 {
		req := benchRequest(r.IntN(400))
		if i%7 == 0 {
			req.Method = "TRACE"
		}
		got, want := c.Evaluate(context.Background(), req), e.Evaluate(context.Background(), req)
		if got.Outcome != want.Outcome {
			t.Fatalf("request %d %s %s %s: cache says %+v, engine %+v", i, req.Principal, req.Method, req.Path, got.Outcome, want.Outcome)
		}
	}
}

func TestCacheRefusesUncacheable(t *testing.T) {
	for name, docs := range map[string]string{
		"headers": `
apiVersion: trustmesh.dev/v1
kind: AuthorizationPolicy
metadata: {name: h, namespace: default}
spec:
  rules: [{when: [{key: "request.headers[x-a]", values: ["b"]}]}]
`,
		"claims": `
apiVersion: trustmesh.dev/v1
kind: AuthorizationPolicy
metadata: {name: c, namespace: default}
spec:
  rules: [{when: [{key: "request.auth.claims[groups]", values: ["b"]}]}]
`,
	} {
		if c := NewCache(mustEngine(t, docs), 100); c != nil {
			t.Errorf("%s: NewCache returned a cache for an engine reading %s", name, name)
		}
	}
}

// BenchmarkCache measures a warm cache against direct evaluation.
func BenchmarkCache(b *testing.B) {
	for _, n := range []int{1000, 10000} {
		b.Run(fmt.Sprintf("rules=%d", n), func(b *testing.B) {
			e := benchEngine(b, n)
			c := NewCache(e, 4096)
			reqs := benchRequests(n)[:256]
			ctx := context.Background()
			for _, r := range reqs {
				c.Evaluate(ctx, r)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				_ = c.Evaluate(ctx, reqs[i%len(reqs)])
			}
		})
	}
}

// genericPolicies are n rules without paths: each names a caller (by
// format: an exact SPIFFE ID is indexed by principal, a suffix match is
// not) and a method.
func genericPolicies(n int, format string) []*policy.AuthorizationPolicy {
	ap := &policy.AuthorizationPolicy{Metadata: policy.Metadata{Name: "generic", Namespace: "default"}}
	for j := range n {
		ap.Spec.Rules = append(ap.Spec.Rules, policy.Rule{
			From: []policy.RuleFrom{{Source: policy.Source{Principals: []string{fmt.Sprintf(format, j)}}}},
			To:   []policy.RuleTo{{Operation: policy.Operation{Methods: []string{"GET"}}}},
		})
	}
	return []*policy.AuthorizationPolicy{ap}
}

// BenchmarkUnindexed compares direct evaluation and the cache on rules
// without paths, for a request that matches none (the worst case): exact
// principals (indexed) and suffix principals (scanned rule by rule).
func BenchmarkUnindexed(b *testing.B) {
	for _, tc := range []struct{ name, format string }{
		{"exact-principals", "spiffe://cluster.local/ns/shop/sa/caller%d"},
		{"suffix-principals", "*/sa/caller%d"},
	} {
		for _, n := range []int{1000, 10000} {
			benchUnindexed(b, tc.name, tc.format, n)
		}
	}
}

func benchUnindexed(b *testing.B, name, format string, n int) {
	{
		e, err := Compile(genericPolicies(n, format))
		if err != nil {
			b.Fatal(err)
		}
		req := benchRequest(1)
		req.Principal = "spiffe://cluster.local/ns/shop/sa/stranger"
		ctx := context.Background()
		b.Run(fmt.Sprintf("%s/rules=%d/engine", name, n), func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				_ = e.Evaluate(ctx, req)
			}
		})
		b.Run(fmt.Sprintf("%s/rules=%d/cache", name, n), func(b *testing.B) {
			c := NewCache(e, 4096)
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				_ = c.Evaluate(ctx, req)
			}
		})
	}
}

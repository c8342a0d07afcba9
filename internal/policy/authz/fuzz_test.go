package authz

import (
	"context"
	"net/netip"
	"testing"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/trustmesh/trustmesh/internal/policy"
)

// FuzzCompile decodes arbitrary policy files: whatever validates must
// compile, evaluate without panicking, and decide exactly as a linear scan
// of every rule does (the index may never hide or reorder a match).
func FuzzCompile(f *testing.F) {
	for _, seed := range []string{
		"apiVersion: trustmesh.dev/v1\nkind: AuthorizationPolicy\nmetadata: {name: p}\nspec: {}\n",
		"apiVersion: trustmesh.dev/v1\nkind: AuthorizationPolicy\nmetadata: {name: p}\nspec:\n  action: DENY\n  rules:\n  - to: [{operation: {paths: [\"/admin\", \"/admin/*\"]}}]\n",
		"apiVersion: trustmesh.dev/v1\nkind: AuthorizationPolicy\nmetadata: {name: p}\nspec:\n  rules:\n  - from: [{source: {principals: [\"spiffe://td/ns/a/sa/b\", \"td/ns/*\"], notIpBlocks: [\"10.0.0.0/8\"]}}]\n    to: [{operation: {methods: [GET], paths: [\"*.json\", \"/a\"], ports: [\"80\"]}}]\n    when: [{key: \"request.headers[x-a]\", values: [\"b*\"]}, {key: \"request.auth.claims[g]\", notValues: [\"x\"]}]\n",
	} {
		f.Add([]byte(seed))
	}
	td := spiffeid.RequireTrustDomainFromString("td")
	reqs := []*Request{
		{Principal: "spiffe://td/ns/a/sa/b", HTTP: true, Method: "GET", Path: "/a", Host: "h", Port: 80, SourceIP: netip.MustParseAddr("10.1.1.1")},
		{Principal: "spiffe://td/ns/x/sa/y", HTTP: true, Method: "POST", Path: "/admin/x.json", Port: 8080},
		{Principal: "", HTTP: true, Method: "GET", Path: "/", Port: 80},
		{Principal: "spiffe://td/ns/a/sa/b", Port: 80, SourceIP: netip.MustParseAddr("192.168.1.1")},
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		objs, err := policy.Decode(data)
		if err != nil {
			return
		}
		var aps []*policy.AuthorizationPolicy
		for _, o := range objs {
			ap, ok := o.(*policy.AuthorizationPolicy)
			if !ok || policy.Validate(o, td) != nil || ap.EffectiveAction() == policy.ActionCustom {
				continue
			}
			aps = append(aps, ap)
		}
		e, err := Compile(aps)
		if err != nil {
			t.Fatalf("valid policies do not compile: %v", err)
		}
		for _, r := range reqs {
			d := e.Evaluate(context.Background(), r)
			if e.shadow == nil {
				if want := linearDecision(e, r); d.Allowed != want.Allowed || d.Policy != want.Policy || d.Rule != want.Rule {
					t.Fatalf("index decided %+v, a linear scan %+v", d.Outcome, want)
				}
			}
			_ = e.Explain(context.Background(), r)
		}
	})
}

package simulate

import (
	"context"
	"strings"
	"testing"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/trustmesh/trustmesh/internal/policy"
)

const world = `apiVersion: trustmesh.dev/v1
kind: Workload
metadata: {name: orders, namespace: shop, labels: {app: orders}}
spec:
  spiffeID: spiffe://td/ns/shop/sa/orders
  parentID: spiffe://td/trustmesh/node/n1
  selectors: ["unix:uid:1"]
---
apiVersion: trustmesh.dev/v1
kind: Service
metadata: {name: orders, namespace: shop}
spec:
  ports: [{name: http, port: 80, protocol: HTTP, targetPort: 8080}, {name: db, port: 5432, protocol: TCP}]
  selector: {matchLabels: {app: orders}}
  spiffeIDs: ["spiffe://td/ns/shop/sa/orders"]
---
apiVersion: trustmesh.dev/v1
kind: Service
metadata: {name: ghost, namespace: shop}
spec:
  ports: [{port: 80, protocol: HTTP}]
  selector: {matchLabels: {app: ghost}}
  spiffeIDs: ["spiffe://td/ns/shop/sa/ghost"]
---
apiVersion: trustmesh.dev/v1
kind: AuthorizationPolicy
metadata: {name: orders, namespace: shop, revision: 5}
spec:
  selector: {matchLabels: {app: orders}}
  rules:
  - from: [{source: {principals: ["spiffe://td/ns/shop/sa/frontend"]}}]
    to: [{operation: {methods: ["GET"], ports: ["8080"]}}]
  - from: [{source: {principals: ["spiffe://td/ns/shop/sa/batch"]}}]
    to: [{operation: {ports: ["5432"]}}]
  - when: [{key: "request.auth.claims[role]", values: ["admin"]}]
---
apiVersion: trustmesh.dev/v1
kind: AuthorizationPolicy
metadata: {name: audit-all, namespace: trustmesh-system}
spec:
  action: AUDIT
  rules: [{to: [{operation: {paths: ["/secret/*"]}}]}]
`

func input(t *testing.T) Input {
	t.Helper()
	objs, err := policy.Decode([]byte(world))
	if err != nil {
		t.Fatal(err)
	}
	var in Input
	for _, o := range objs {
		if err := policy.Validate(o, spiffeid.RequireTrustDomainFromString("td")); err != nil {
			t.Fatal(err)
		}
		switch o := o.(type) {
		case *policy.Workload:
			in.Workloads = append(in.Workloads, o)
		case *policy.Service:
			in.Services = append(in.Services, o)
		case *policy.AuthorizationPolicy:
			in.AuthzPolicies = append(in.AuthzPolicies, o)
		}
	}
	return in
}

func TestExplain(t *testing.T) {
	in := input(t)
	tests := []struct {
		name    string
		req     Request
		allowed bool
		reason  string
		status  int
		want    []string // substrings of the summary or rule
	}{
		{"allowed-get", Request{From: "spiffe://td/ns/shop/sa/frontend", To: "orders.shop", Method: "GET", Path: "/orders/1"}, true, "allow-policy", 0,
			[]string{"ALLOW policy shop/orders (revision 5) rule 0 matched"}},
		{"denied-post", Request{From: "spiffe://td/ns/shop/sa/frontend", To: "orders.shop", Method: "POST", Path: "/orders"}, false, "no-allow-match", 403,
			[]string{`spec.rules[0].to[0].operation.methods: "POST" does not match ["GET"]`, "spec.rules[1].from[0].source.principals"}},
		{"tcp-port", Request{From: "spiffe://td/ns/shop/sa/batch", To: "orders.shop", Port: 5432, TCP: true}, true, "allow-policy", 0, nil},
		{"tcp-other-caller", Request{From: "spiffe://td/ns/shop/sa/frontend", To: "orders.shop", Port: 5432, TCP: true}, false, "no-allow-match", 403, nil},
		{"claims", Request{To: "orders.shop", Path: "/x", Claims: map[string]any{"iss": "i", "sub": "s", "role": "admin"}}, true, "allow-policy", 0, nil},
		{"bad-path", Request{From: "spiffe://td/ns/shop/sa/frontend", To: "orders.shop", Path: "/a/..%2f..%2fetc"}, false, "bad-path-encoded-slash", 400, nil},
		{"above-root", Request{To: "orders.shop", Path: "/../x"}, false, "bad-path-dot-segment-above-root", 400, nil},
		{"by-spiffe-id", Request{From: "spiffe://td/ns/shop/sa/frontend", To: "spiffe://td/ns/shop/sa/orders", Port: 8080, Path: "/"}, true, "allow-policy", 0, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := Explain(context.Background(), in, &tt.req)
			if err != nil {
				t.Fatal(err)
			}
			if res.Allowed != tt.allowed || res.Reason != tt.reason || res.HTTPStatus != tt.status {
				t.Fatalf("got allowed=%v reason=%s status=%d, want %v %s %d\n%s", res.Allowed, res.Reason, res.HTTPStatus, tt.allowed, tt.reason, tt.status, res.Summary)
			}
			for _, w := range tt.want {
				if !strings.Contains(res.Summary, w) {
					t.Errorf("summary lacks %q:\n%s", w, res.Summary)
				}
			}
		})
	}
}

func TestExplainDetails(t *testing.T) {
	in := input(t)
	res, err := Explain(context.Background(), in, &Request{From: "spiffe://td/ns/shop/sa/frontend", To: "orders.shop", Path: "/secret/x"})
	if err != nil {
		t.Fatal(err)
	}
	if res.Audited != "trustmesh-system/audit-all" {
		t.Errorf("audited: got %q, want trustmesh-system/audit-all", res.Audited)
	}
	if res.Policy != "shop/orders" || res.PolicyRevision != 5 || res.Rule != 0 || !strings.Contains(res.RuleYAML, "spiffe://td/ns/shop/sa/frontend") {
		t.Errorf("deciding rule: got %s rev %d rule %d\n%s", res.Policy, res.PolicyRevision, res.Rule, res.RuleYAML)
	}
	if res.Workload != "shop/orders" || res.Port != 8080 || res.Path != "/secret/x" {
		t.Errorf("got workload %s port %d path %s", res.Workload, res.Port, res.Path)
	}
	if len(res.Steps) != 4 {
		t.Errorf("got %d steps, want one per rule (4)", len(res.Steps))
	}
}

func TestExplainErrors(t *testing.T) {
	in := input(t)
	for _, tt := range []struct {
		name string
		req  Request
		want string
	}{
		{"unknown-service", Request{To: "nosuch.shop"}, `no Service "nosuch" in namespace "shop"`},
		{"no-workload", Request{To: "ghost.shop"}, "selects no Workload"},
		{"bad-port", Request{To: "orders.shop", Port: 81}, "has no port 81"},
		{"spiffe-id-without-port", Request{To: "spiffe://td/ns/shop/sa/orders"}, "--port is required"},
		{"unknown-spiffe-id", Request{To: "spiffe://td/ns/x/sa/y", Port: 1}, "no Workload has the SPIFFE ID"},
		{"bad-from", Request{From: "frontend", To: "orders.shop"}, "want a SPIFFE ID"},
		{"bad-ip", Request{To: "orders.shop", SourceIP: "nope"}, "not an IP address"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Explain(context.Background(), in, &tt.req)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("got %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

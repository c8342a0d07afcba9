package authz

import (
	"context"
	"net/http"
	"net/netip"
	"strings"
	"testing"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/trustmesh/trustmesh/internal/policy"
)

// mustEngine decodes, validates and compiles YAML policies.
func mustEngine(t testing.TB, docs string) *Engine {
	t.Helper()
	e, err := compileYAML(docs)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func compileYAML(docs string) (*Engine, error) {
	var aps []*policy.AuthorizationPolicy
	if strings.TrimSpace(docs) != "" {
		objs, err := policy.Decode([]byte(docs))
		if err != nil {
			return nil, err
		}
		for _, o := range objs {
			if err := policy.Validate(o, spiffeid.RequireTrustDomainFromString("cluster.local")); err != nil {
				return nil, err
			}
			aps = append(aps, o.(*policy.AuthorizationPolicy))
		}
	}
	return Compile(aps)
}

const sleep = "spiffe://cluster.local/ns/default/sa/sleep"

func get(path string) *Request {
	return &Request{Principal: sleep, HTTP: true, Method: "GET", Path: path, Host: "httpbin.default", Port: 8000,
		SourceIP: netip.MustParseAddr("10.1.2.3"), Headers: http.Header{}}
}

func with(r *Request, f func(*Request)) *Request { f(r); return r }

type check struct {
	name    string
	req     *Request
	allowed bool
	reason  string
	policy  string // "ns/name" that decided, or ""
}

func runChecks(t *testing.T, e *Engine, checks []check) {
	t.Helper()
	for _, c := range checks {
		t.Run(c.name, func(t *testing.T) {
			d := e.Evaluate(context.Background(), c.req)
			if d.Allowed != c.allowed || (c.reason != "" && d.Reason != c.reason) {
				x := e.Explain(context.Background(), c.req)
				t.Fatalf("got allowed=%v reason=%s, want allowed=%v reason=%s\n%s", d.Allowed, d.Reason, c.allowed, c.reason, x.Summary())
			}
			got := ""
			if d.Policy != nil {
				got = d.Policy.String()
			}
			if c.policy != "" && got != c.policy {
				t.Errorf("decided by %q, want %q", got, c.policy)
			}
		})
	}
}

// The cases below port the examples of Istio's AuthorizationPolicy
// reference and tasks into our own requests.
func TestIstioSemantics(t *testing.T) {
	tests := []struct {
		name     string
		policies string
		checks   []check
	}{
		{"no-policy-allows", ``, []check{{"get", get("/"), true, ReasonNoPolicy, ""}}},
		{"allow-nothing", `
apiVersion: trustmesh.dev/v1
kind: AuthorizationPolicy
metadata: {name: allow-nothing, namespace: default}
spec: {}
`, []check{{"get", get("/"), false, ReasonNoAllowMatch, ""}}},
		{"deny-all-empty-rule", `
apiVersion: trustmesh.dev/v1
kind: AuthorizationPolicy
metadata: {name: deny-all, namespace: default}
spec:
  action: DENY
  rules: [{}]
`, []check{{"get", get("/"), false, ReasonDenyPolicy, "default/deny-all"}}},
		{"allow-all-empty-rule", `
apiVersion: trustmesh.dev/v1
kind: AuthorizationPolicy
metadata: {name: allow-all, namespace: default}
spec:
  rules: [{}]
`, []check{{"get", get("/"), true, ReasonAllowPolicy, "default/allow-all"}}},
		{"deny-without-rules-matches-nothing", `
apiVersion: trustmesh.dev/v1
kind: AuthorizationPolicy
metadata: {name: deny-none, namespace: default}
spec: {action: DENY}
`, []check{{"get", get("/"), true, ReasonNoPolicy, ""}}},
		// Istio reference, first example: allow sleep (Istio principal
		// form) and the dev namespace to GET, and JWT holders with an
		// issuer claim to do anything else.
		{"istio-reference-allow", `
apiVersion: trustmesh.dev/v1
kind: AuthorizationPolicy
metadata: {name: httpbin, namespace: foo}
spec:
  action: ALLOW
  rules:
  - from:
    - source:
        principals: ["cluster.local/ns/default/sa/sleep"]
    - source:
        namespaces: ["dev"]
    to:
    - operation:
        methods: ["GET"]
    when:
    - key: request.auth.claims[iss]
      values: ["https://accounts.google.com"]
`, []check{
			{"sleep-get-google", with(get("/"), func(r *Request) { r.Auth.Claims = map[string]any{"iss": "https://accounts.google.com"} }), true, ReasonAllowPolicy, "foo/httpbin"},
			{"sleep-get-no-jwt", get("/"), false, ReasonNoAllowMatch, ""},
			{"dev-get-google", with(get("/"), func(r *Request) {
				r.Principal = "spiffe://cluster.local/ns/dev/sa/x"
				r.Auth.Claims = map[string]any{"iss": "https://accounts.google.com"}
			}), true, ReasonAllowPolicy, ""},
			{"sleep-post-google", with(get("/"), func(r *Request) {
				r.Method = "POST"
				r.Auth.Claims = map[string]any{"iss": "https://accounts.google.com"}
			}), false, ReasonNoAllowMatch, ""},
			{"other-ns", with(get("/"), func(r *Request) {
				r.Principal = "spiffe://cluster.local/ns/prod/sa/x"
				r.Auth.Claims = map[string]any{"iss": "https://accounts.google.com"}
			}), false, ReasonNoAllowMatch, ""},
		}},
		// Istio reference: deny requests from the dev namespace to POST.
		{"istio-reference-deny", `
apiVersion: trustmesh.dev/v1
kind: AuthorizationPolicy
metadata: {name: httpbin, namespace: foo}
spec:
  action: DENY
  rules:
  - from:
    - source: {namespaces: ["dev"]}
    to:
    - operation: {methods: ["POST"]}
`, []check{
			{"dev-post", with(get("/"), func(r *Request) { r.Principal = "spiffe://cluster.local/ns/dev/sa/x"; r.Method = "POST" }), false, ReasonDenyPolicy, "foo/httpbin"},
			{"dev-get", with(get("/"), func(r *Request) { r.Principal = "spiffe://cluster.local/ns/dev/sa/x" }), true, ReasonNoPolicy, ""},
			{"default-post", with(get("/"), func(r *Request) { r.Method = "POST" }), true, ReasonNoPolicy, ""},
		}},
		// Deny beats allow.
		{"deny-beats-allow", `
apiVersion: trustmesh.dev/v1
kind: AuthorizationPolicy
metadata: {name: allow-all, namespace: default}
spec:
  rules: [{}]
---
apiVersion: trustmesh.dev/v1
kind: AuthorizationPolicy
metadata: {name: deny-admin, namespace: default}
spec:
  action: DENY
  rules:
  - to: [{operation: {paths: ["/admin", "/admin/*"]}}]
`, []check{
			{"admin", get("/admin"), false, ReasonDenyPolicy, "default/deny-admin"},
			{"admin-sub", get("/admin/users"), false, ReasonDenyPolicy, ""},
			{"administrator", get("/administrator"), true, ReasonAllowPolicy, ""},
			{"root", get("/"), true, ReasonAllowPolicy, "default/allow-all"},
		}},
		// Istio's httpbin task: requests with a JWT only (requestPrincipals "*").
		{"require-jwt", `
apiVersion: trustmesh.dev/v1
kind: AuthorizationPolicy
metadata: {name: require-jwt, namespace: foo}
spec:
  rules:
  - from:
    - source: {requestPrincipals: ["*"]}
`, []check{
			{"with-jwt", with(get("/"), func(r *Request) { r.Auth.Principal = "testing@secure.istio.io/testing@secure.istio.io" }), true, ReasonAllowPolicy, ""},
			{"without-jwt", get("/"), false, ReasonNoAllowMatch, ""},
		}},
		// Istio's JWT groups claim example: a list claim matches when any element does.
		{"claims-groups", `
apiVersion: trustmesh.dev/v1
kind: AuthorizationPolicy
metadata: {name: require-group, namespace: foo}
spec:
  rules:
  - from:
    - source: {requestPrincipals: ["testing@secure.istio.io/testing@secure.istio.io"]}
    when:
    - key: request.auth.claims[groups]
      values: ["group1"]
`, []check{
			{"in-group", with(get("/"), func(r *Request) {
				r.Auth.Principal = "testing@secure.istio.io/testing@secure.istio.io"
				r.Auth.Claims = map[string]any{"groups": []any{"group1", "group2"}}
			}), true, ReasonAllowPolicy, ""},
			{"not-in-group", with(get("/"), func(r *Request) {
				r.Auth.Principal = "testing@secure.istio.io/testing@secure.istio.io"
				r.Auth.Claims = map[string]any{"groups": []any{"group2"}}
			}), false, ReasonNoAllowMatch, ""},
			{"nested-claim-absent", with(get("/"), func(r *Request) {
				r.Auth.Principal = "testing@secure.istio.io/testing@secure.istio.io"
			}), false, ReasonNoAllowMatch, ""},
		}},
		{"nested-claims", `
apiVersion: trustmesh.dev/v1
kind: AuthorizationPolicy
metadata: {name: nested, namespace: foo}
spec:
  rules:
  - when:
    - key: request.auth.claims[realm_access][roles]
      values: ["admin"]
`, []check{
			{"nested-match", with(get("/"), func(r *Request) {
				r.Auth.Claims = map[string]any{"realm_access": map[string]any{"roles": []any{"user", "admin"}}}
			}), true, ReasonAllowPolicy, ""},
			{"nested-no-match", with(get("/"), func(r *Request) {
				r.Auth.Claims = map[string]any{"realm_access": map[string]any{"roles": "user"}}
			}), false, "", ""},
		}},
		{"principal-forms", `
apiVersion: trustmesh.dev/v1
kind: AuthorizationPolicy
metadata: {name: p, namespace: default}
spec:
  rules:
  - from: [{source: {principals: ["spiffe://cluster.local/ns/default/sa/exact"]}}]
  - from: [{source: {principals: ["cluster.local/ns/team-*"]}}]
  - from: [{source: {principals: ["*/sa/suffix"]}}]
`, []check{
			{"exact-spiffe-form", with(get("/"), func(r *Request) { r.Principal = "spiffe://cluster.local/ns/default/sa/exact" }), true, "", ""},
			{"exact-no-prefix-match", with(get("/"), func(r *Request) { r.Principal = "spiffe://cluster.local/ns/default/sa/exactly" }), false, "", ""},
			{"prefix", with(get("/"), func(r *Request) { r.Principal = "spiffe://cluster.local/ns/team-a/sa/x" }), true, "", ""},
			{"suffix", with(get("/"), func(r *Request) { r.Principal = "spiffe://other.org/ns/x/sa/suffix" }), true, "", ""},
			{"plaintext", with(get("/"), func(r *Request) { r.Principal = "" }), false, "", ""},
		}},
		{"presence-and-not", `
apiVersion: trustmesh.dev/v1
kind: AuthorizationPolicy
metadata: {name: deny-plaintext, namespace: default}
spec:
  action: DENY
  rules:
  - from: [{source: {notPrincipals: ["*"]}}]
`, []check{
			{"mtls", get("/"), true, ReasonNoPolicy, ""},
			{"plaintext", with(get("/"), func(r *Request) { r.Principal = "" }), false, ReasonDenyPolicy, ""},
		}},
		{"not-namespaces", `
apiVersion: trustmesh.dev/v1
kind: AuthorizationPolicy
metadata: {name: deny-others, namespace: default}
spec:
  action: DENY
  rules:
  - from: [{source: {notNamespaces: ["default"]}}]
`, []check{
			{"same-ns", get("/"), true, "", ""},
			{"other-ns", with(get("/"), func(r *Request) { r.Principal = "spiffe://cluster.local/ns/other/sa/x" }), false, ReasonDenyPolicy, ""},
			{"no-ns-in-id", with(get("/"), func(r *Request) { r.Principal = "spiffe://cluster.local/web" }), false, ReasonDenyPolicy, ""},
		}},
		{"ip-blocks", `
apiVersion: trustmesh.dev/v1
kind: AuthorizationPolicy
metadata: {name: ip, namespace: default}
spec:
  rules:
  - from: [{source: {ipBlocks: ["10.1.0.0/16", "192.168.0.7"], notIpBlocks: ["10.1.9.0/24"]}}]
`, []check{
			{"in-cidr", get("/"), true, "", ""},
			{"in-not", with(get("/"), func(r *Request) { r.SourceIP = netip.MustParseAddr("10.1.9.9") }), false, "", ""},
			{"single-ip", with(get("/"), func(r *Request) { r.SourceIP = netip.MustParseAddr("192.168.0.7") }), true, "", ""},
			{"mapped-v4", with(get("/"), func(r *Request) { r.SourceIP = netip.MustParseAddr("::ffff:192.168.0.7") }), true, "", ""},
			{"outside", with(get("/"), func(r *Request) { r.SourceIP = netip.MustParseAddr("172.16.0.1") }), false, "", ""},
		}},
		{"hosts-ports-paths", `
apiVersion: trustmesh.dev/v1
kind: AuthorizationPolicy
metadata: {name: ops, namespace: default}
spec:
  rules:
  - to:
    - operation:
        hosts: ["HTTPBin.default.", "*.example.com"]
        ports: ["8000"]
        methods: ["GET", "HEAD"]
        paths: ["/api/*", "*.json", "/exact"]
        notPaths: ["/api/private/*"]
`, []check{
			{"prefix", get("/api/v1"), true, "", ""},
			{"suffix", get("/data/x.json"), true, "", ""},
			{"exact", get("/exact"), true, "", ""},
			{"exact-trailing-slash", get("/exact/"), false, "", ""},
			{"not-path", get("/api/private/x"), false, "", ""},
			{"wrong-method", with(get("/api/v1"), func(r *Request) { r.Method = "POST" }), false, "", ""},
			{"wrong-port", with(get("/api/v1"), func(r *Request) { r.Port = 9000 }), false, "", ""},
			{"host-suffix", with(get("/api/v1"), func(r *Request) { r.Host = "a.example.com" }), true, "", ""},
			{"host-other", with(get("/api/v1"), func(r *Request) { r.Host = "evil.com" }), false, "", ""},
		}},
		{"headers-and-when-keys", `
apiVersion: trustmesh.dev/v1
kind: AuthorizationPolicy
metadata: {name: w, namespace: default}
spec:
  rules:
  - when:
    - key: request.headers[x-tenant]
      values: ["acme"]
    - key: source.ip
      notValues: ["10.9.0.0/16"]
    - key: destination.port
      values: ["8000"]
    - key: source.principal
      values: ["cluster.local/ns/default/*"]
`, []check{
			{"match", with(get("/"), func(r *Request) { r.Headers.Set("X-Tenant", "acme") }), true, "", ""},
			{"header-absent", get("/"), false, "", ""},
			{"header-other", with(get("/"), func(r *Request) { r.Headers.Set("X-Tenant", "evil") }), false, "", ""},
			{"header-repeated", with(get("/"), func(r *Request) { r.Headers.Add("X-Tenant", "acme"); r.Headers.Add("X-Tenant", "evil") }), false, "", ""},
			{"ip-excluded", with(get("/"), func(r *Request) { r.Headers.Set("X-Tenant", "acme"); r.SourceIP = netip.MustParseAddr("10.9.1.1") }), false, "", ""},
		}},
		// Istio's TCP rules: an ALLOW rule with HTTP-only fields never
		// matches TCP traffic; a DENY rule's HTTP-only fields are ignored.
		{"tcp-allow-http-only", `
apiVersion: trustmesh.dev/v1
kind: AuthorizationPolicy
metadata: {name: tcp, namespace: default}
spec:
  rules:
  - from: [{source: {principals: ["cluster.local/ns/default/sa/sleep"]}}]
    to: [{operation: {methods: ["GET"], ports: ["9000"]}}]
  - to: [{operation: {ports: ["9001"]}}]
`, []check{
			{"tcp-9000-ignored", &Request{Principal: sleep, Port: 9000}, false, ReasonNoAllowMatch, ""},
			{"tcp-9001", &Request{Principal: sleep, Port: 9001}, true, ReasonAllowPolicy, ""},
			{"http-9000", with(get("/"), func(r *Request) { r.Port = 9000 }), true, ReasonAllowPolicy, ""},
		}},
		{"tcp-deny-http-only", `
apiVersion: trustmesh.dev/v1
kind: AuthorizationPolicy
metadata: {name: tcp, namespace: default}
spec:
  action: DENY
  rules:
  - to: [{operation: {methods: ["POST"], ports: ["9000"]}}]
`, []check{
			{"tcp-9000-denied", &Request{Principal: sleep, Port: 9000}, false, ReasonDenyPolicy, ""},
			{"tcp-9001", &Request{Principal: sleep, Port: 9001}, true, ReasonNoPolicy, ""},
			{"http-get-9000", with(get("/"), func(r *Request) { r.Port = 9000 }), true, ReasonNoPolicy, ""},
		}},
		{"audit-does-not-decide", `
apiVersion: trustmesh.dev/v1
kind: AuthorizationPolicy
metadata: {name: audit, namespace: default}
spec:
  action: AUDIT
  rules:
  - to: [{operation: {paths: ["/secret"]}}]
`, []check{{"audited-allowed", get("/secret"), true, ReasonNoPolicy, ""}}},
		{"custom-rego", `
apiVersion: trustmesh.dev/v1
kind: AuthorizationPolicy
metadata: {name: ext, namespace: default}
spec:
  action: CUSTOM
  provider:
    name: opa
    rego: |
      package ext
      default allow := false
      allow if input.request.headers["x-token"] == "open-sesame"
      reason := "bad token" if not allow
  rules:
  - to: [{operation: {paths: ["/vault/*"]}}]
`, []check{
			{"not-selected", get("/public"), true, ReasonNoPolicy, ""},
			{"selected-denied", get("/vault/x"), false, ReasonCustomDeny, "default/ext"},
			{"selected-allowed", with(get("/vault/x"), func(r *Request) { r.Headers.Set("X-Token", "open-sesame") }), true, ReasonNoPolicy, ""},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			runChecks(t, mustEngine(t, tt.policies), tt.checks)
		})
	}
}

func TestAuditRecorded(t *testing.T) {
	e := mustEngine(t, `
apiVersion: trustmesh.dev/v1
kind: AuthorizationPolicy
metadata: {name: audit, namespace: default, revision: 7}
spec:
  action: AUDIT
  rules:
  - to: [{operation: {paths: ["/secret"]}}]
`)
	d := e.Evaluate(context.Background(), get("/secret"))
	if !d.Audited || d.Audit.Policy.String() != "default/audit" || d.Audit.Policy.Revision != 7 {
		t.Errorf("got audited=%v audit=%+v, want audited by default/audit revision 7", d.Audited, d.Audit)
	}
	if d := e.Evaluate(context.Background(), get("/public")); d.Audited {
		t.Errorf("/public: audited, want not")
	}
}

func TestDryRun(t *testing.T) {
	e := mustEngine(t, `
apiVersion: trustmesh.dev/v1
kind: AuthorizationPolicy
metadata:
  name: deny-admin
  namespace: default
  annotations: {trustmesh.dev/dry-run: "true"}
spec:
  action: DENY
  rules:
  - to: [{operation: {paths: ["/admin"]}}]
`)
	d := e.Evaluate(context.Background(), get("/admin"))
	if !d.Allowed {
		t.Fatalf("dry-run policy enforced: got %+v", d.Outcome)
	}
	if !d.HasShadow || d.Shadow.Allowed || d.Shadow.Policy.String() != "default/deny-admin" {
		t.Errorf("shadow: got has=%v %+v, want a would-be deny by default/deny-admin", d.HasShadow, d.Shadow)
	}
	if d := e.Evaluate(context.Background(), get("/ok")); !d.Shadow.Allowed {
		t.Errorf("/ok: shadow denied")
	}
}

func TestCompileErrors(t *testing.T) {
	_, err := compileYAML(`
apiVersion: trustmesh.dev/v1
kind: AuthorizationPolicy
metadata: {name: ext, namespace: default}
spec:
  action: CUSTOM
  provider:
    rego: |
      package ext
      allow if http.send({"method": "GET", "url": "http://x"}).status_code == 200
`)
	if err == nil || !strings.Contains(err.Error(), "http.send") {
		t.Errorf("got %v, want an error about http.send", err)
	}
}

func TestExplain(t *testing.T) {
	e := mustEngine(t, `
apiVersion: trustmesh.dev/v1
kind: AuthorizationPolicy
metadata: {name: orders, namespace: default, revision: 3}
spec:
  rules:
  - from: [{source: {principals: ["spiffe://cluster.local/ns/default/sa/frontend"]}}]
    to: [{operation: {methods: ["GET"], paths: ["/orders/*"]}}]
`)
	x := e.Explain(context.Background(), with(get("/orders/1"), func(r *Request) { r.Method = "DELETE"; r.Principal = "spiffe://cluster.local/ns/default/sa/frontend" }))
	s := x.Summary()
	for _, want := range []string{"DENY (no-allow-match)", "default/orders (revision 3) rule 0", "spec.rules[0].to[0].operation.methods", `"DELETE" does not match ["GET"]`} {
		if !strings.Contains(s, want) {
			t.Errorf("summary %q does not contain %q", s, want)
		}
	}
	x = e.Explain(context.Background(), with(get("/orders/1"), func(r *Request) { r.Principal = "spiffe://cluster.local/ns/default/sa/frontend" }))
	if s := x.Summary(); !strings.Contains(s, "ALLOW (allow-policy): ALLOW policy default/orders (revision 3) rule 0 matched") {
		t.Errorf("summary %q", s)
	}
}

func TestEvaluateAllocatesNothing(t *testing.T) {
	e := benchEngine(t, 1000)
	reqs := benchRequests(1000)
	allocs := testing.AllocsPerRun(200, func() {
		for _, r := range reqs[:50] {
			_ = e.Evaluate(context.Background(), r)
		}
	})
	if allocs != 0 {
		t.Errorf("Evaluate: got %v allocations per 50 requests, want 0", allocs)
	}
}

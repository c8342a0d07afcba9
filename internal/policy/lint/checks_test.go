package lint

import (
	"fmt"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/trustmesh/trustmesh/internal/policy"
)

func TestOverPermissive(t *testing.T) {
	db := apName("default", "db")
	runCases(t, CodeOverPermissive, []lintCase{
		{
			name: "no-from-on-sensitive-port",
			docs: `
kind: AuthorizationPolicy
metadata: {name: db, namespace: default}
spec:
  selector: {matchLabels: {app: db}}
  rules: [{to: [{operation: {ports: ["8080", "5432"]}}]}]`,
			want: []Finding{{Severity: Warning, Object: db, Field: "spec.rules[0].to[0].operation.ports", Message: "allows any caller, plaintext ones included (no from, or only not- fields) to reach sensitive port 5432"}},
		},
		{
			name: "any-principal-on-sensitive-ports",
			docs: `
kind: AuthorizationPolicy
metadata: {name: db, namespace: default}
spec:
  selector: {matchLabels: {app: db}}
  rules:
  - from: [{source: {principals: ["*"]}}]
    to: [{operation: {ports: ["22", "6379"]}}]`,
			want: []Finding{{Severity: Warning, Object: db, Field: "spec.rules[0].to[0].operation.ports", Message: `any mTLS peer of the mesh (principals or namespaces ["*"]) to reach sensitive ports 22, 6379`}},
		},
		{
			name: "only-not-principals-on-sensitive-port",
			docs: `
kind: AuthorizationPolicy
metadata: {name: db, namespace: default}
spec:
  selector: {matchLabels: {app: db}}
  rules:
  - from: [{source: {notPrincipals: ["cluster.local/ns/default/sa/batch"]}}]
    to: [{operation: {ports: ["5432"]}}]`,
			want: []Finding{{Severity: Warning, Object: db, Field: "spec.rules[0].to[0].operation.ports", Message: "plaintext ones included"}},
		},
		{
			name: "destination-port-condition",
			docs: `
kind: AuthorizationPolicy
metadata: {name: db, namespace: default}
spec:
  selector: {matchLabels: {app: db}}
  rules: [{when: [{key: destination.port, values: ["6379"]}]}]`,
			want: []Finding{{Severity: Warning, Object: db, Field: "spec.rules[0].when[0].values", Message: "sensitive port 6379"}},
		},
		{
			name: "chosen-sensitive-ports",
			docs: `
kind: AuthorizationPolicy
metadata: {name: db, namespace: default}
spec:
  selector: {matchLabels: {app: db}}
  rules: [{to: [{operation: {ports: ["8080"]}}]}]`,
			input: func(in *Input) { in.SensitivePorts = []uint32{8080} },
			want:  []Finding{{Severity: Warning, Object: db, Field: "spec.rules[0].to[0].operation.ports", Message: "sensitive port 8080"}},
		},
		{
			name: "allow-all-in-namespace",
			docs: `
kind: AuthorizationPolicy
metadata: {name: allow-all, namespace: default}
spec:
  rules: [{}]`,
			want: []Finding{{Severity: Warning, Object: apName("default", "allow-all"), Field: "spec.rules[0]", Message: `every workload of namespace "default", plaintext ones included`}},
		},
		{
			name: "allow-all-mesh-wide",
			docs: `
kind: AuthorizationPolicy
metadata: {name: allow-all, namespace: trustmesh-system}
spec:
  rules: [{to: [{operation: {methods: ["GET"]}}]}, {}]`,
			want: []Finding{{Severity: Warning, Object: apName("trustmesh-system", "allow-all"), Field: "spec.rules[1]", Message: "every workload of the mesh"}},
		},
		{
			name: "named-principal-on-sensitive-port",
			docs: `
kind: AuthorizationPolicy
metadata: {name: db, namespace: default}
spec:
  selector: {matchLabels: {app: db}}
  rules:
  - from: [{source: {principals: ["cluster.local/ns/default/sa/orders"]}}]
    to: [{operation: {ports: ["5432"]}}]`,
		},
		{
			name: "ip-blocks-on-sensitive-port",
			docs: `
kind: AuthorizationPolicy
metadata: {name: db, namespace: default}
spec:
  selector: {matchLabels: {app: db}}
  rules:
  - from: [{source: {ipBlocks: ["10.0.0.0/8"]}}]
    to: [{operation: {ports: ["5432"]}}]`,
		},
		{
			name: "port-not-sensitive",
			docs: `
kind: AuthorizationPolicy
metadata: {name: web, namespace: default}
spec:
  selector: {matchLabels: {app: web}}
  rules: [{to: [{operation: {ports: ["8080"]}}]}]`,
		},
		{
			name: "no-sensitive-ports",
			docs: `
kind: AuthorizationPolicy
metadata: {name: db, namespace: default}
spec:
  selector: {matchLabels: {app: db}}
  rules: [{to: [{operation: {ports: ["5432"]}}]}]`,
			input: func(in *Input) { in.SensitivePorts = []uint32{} },
		},
		{
			name: "allow-all-for-selected-workloads",
			docs: `
kind: AuthorizationPolicy
metadata: {name: web, namespace: default}
spec:
  selector: {matchLabels: {app: web}}
  rules: [{}]`,
		},
		{
			name: "deny-on-sensitive-port",
			docs: `
kind: AuthorizationPolicy
metadata: {name: db, namespace: default}
spec:
  action: DENY
  rules: [{to: [{operation: {ports: ["22"]}}]}]`,
		},
	})
}

func TestSelectsNoWorkload(t *testing.T) {
	runCases(t, CodeSelectsNoWorkload, []lintCase{
		{
			name: "selector-typo",
			docs: docs(workload("default", "orders", "app: orders"), `
kind: AuthorizationPolicy
metadata: {name: orders, namespace: default}
spec:
  selector: {matchLabels: {app: ordres}}
  rules: [{}]`),
			want: []Finding{{Severity: Warning, Object: apName("default", "orders"), Field: "spec.selector", Message: `no Workload in namespace "default" has the labels app=ordres`}},
		},
		{
			name: "selector-in-the-wrong-namespace",
			docs: docs(workload("default", "orders", "app: orders"), `
kind: AuthorizationPolicy
metadata: {name: orders, namespace: shop}
spec:
  selector: {matchLabels: {app: orders}}
  rules: [{}]`),
			want: []Finding{{Severity: Warning, Object: apName("shop", "orders"), Field: "spec.selector"}},
		},
		{
			name: "namespace-without-workloads",
			docs: docs(workload("default", "orders", "app: orders"), `
kind: AuthorizationPolicy
metadata: {name: all, namespace: staging}
spec:
  rules: [{}]`),
			want: []Finding{{Severity: Warning, Object: apName("staging", "all"), Field: "metadata.namespace", Message: `namespace "staging" has no Workloads`}},
		},
		{
			name: "mesh-without-workloads",
			docs: `
kind: AuthorizationPolicy
metadata: {name: all, namespace: trustmesh-system}
spec:
  rules: [{}]`,
			input: func(in *Input) { in.Workloads = []*policy.Workload{} },
			want:  []Finding{{Severity: Warning, Object: apName("trustmesh-system", "all"), Field: "metadata.namespace", Message: "the mesh has no Workloads"}},
		},
		{
			name: "selector-matches",
			docs: docs(workload("default", "orders", "app: orders, tier: api"), `
kind: AuthorizationPolicy
metadata: {name: orders, namespace: default}
spec:
  selector: {matchLabels: {app: orders}}
  rules: [{}]`),
		},
		{
			name: "root-selector-matches-in-any-namespace",
			docs: docs(workload("shop", "orders", "app: orders"), `
kind: AuthorizationPolicy
metadata: {name: orders, namespace: trustmesh-system}
spec:
  selector: {matchLabels: {app: orders}}
  rules: [{}]`),
		},
		{
			name: "workloads-unknown",
			docs: `
kind: AuthorizationPolicy
metadata: {name: orders, namespace: default}
spec:
  selector: {matchLabels: {app: ordres}}
  rules: [{}]`,
		},
	})
}

func TestRequestPrincipalWithoutAuthn(t *testing.T) {
	api := apName("default", "api")
	allowJWT := `
kind: AuthorizationPolicy
metadata: {name: api, namespace: default}
spec:
  selector: {matchLabels: {app: api}}
  rules: [{from: [{source: {requestPrincipals: ["https://issuer.example/*"]}}]}]`
	ra := func(ns, selector string) string {
		return `
kind: RequestAuthentication
metadata: {name: jwt, namespace: ` + ns + `}
spec:
  ` + selector + `
  jwtRules: [{issuer: "https://issuer.example", jwksUri: "https://issuer.example/jwks"}]`
	}
	runCases(t, CodeRequestPrincipalWithoutAuthn, []lintCase{
		{
			name: "no-request-authentication",
			docs: allowJWT,
			want: []Finding{{Severity: Warning, Object: api, Field: "spec.rules[0].from[0].source.requestPrincipals", Message: "so its values never match"}},
		},
		{
			name: "auth-claims-key",
			docs: `
kind: AuthorizationPolicy
metadata: {name: api, namespace: default}
spec:
  rules:
  - to: [{operation: {paths: ["/admin*"]}}]
    when: [{key: "request.auth.claims[groups]", values: ["admin"]}]`,
			want: []Finding{{Severity: Warning, Object: api, Field: "spec.rules[0].when[0].values"}},
		},
		{
			name: "deny-not-request-principals",
			docs: `
kind: AuthorizationPolicy
metadata: {name: api, namespace: default}
spec:
  action: DENY
  rules: [{from: [{source: {notRequestPrincipals: ["*"]}}]}]`,
			want: []Finding{{Severity: Warning, Object: api, Field: "spec.rules[0].from[0].source.notRequestPrincipals", Message: "so it always holds"}},
		},
		{
			name: "request-authentication-elsewhere",
			docs: docs(allowJWT, ra("shop", "")),
			want: []Finding{{Severity: Warning, Object: api, Field: "spec.rules[0].from[0].source.requestPrincipals"}},
		},
		{
			name: "request-authentication-selects-another-workload",
			docs: docs(allowJWT, ra("default", "selector: {matchLabels: {app: web}}")),
			want: []Finding{{Severity: Warning, Object: api, Field: "spec.rules[0].from[0].source.requestPrincipals"}},
		},
		{
			name: "known-workloads-none-authenticated",
			docs: docs(allowJWT, workload("default", "api", "app: api"), workload("default", "web", "app: web"), ra("default", "selector: {matchLabels: {app: web}}")),
			want: []Finding{{Severity: Warning, Object: api, Field: "spec.rules[0].from[0].source.requestPrincipals"}},
		},
		{
			name: "namespace-wide-request-authentication",
			docs: docs(allowJWT, ra("default", "")),
		},
		{
			name: "mesh-wide-request-authentication",
			docs: docs(allowJWT, ra("trustmesh-system", "")),
		},
		{
			name: "same-selector",
			docs: docs(allowJWT, ra("default", "selector: {matchLabels: {app: api}}")),
		},
		{
			name: "known-workload-authenticated",
			docs: docs(allowJWT, workload("default", "api", "app: api, tier: x"), ra("default", "selector: {matchLabels: {tier: x}}")),
		},
		{
			name: "no-request-principals",
			docs: `
kind: AuthorizationPolicy
metadata: {name: api, namespace: default}
spec:
  rules: [{from: [{source: {principals: ["cluster.local/ns/default/sa/web"]}}]}]`,
		},
	})
}

func TestAllowNothing(t *testing.T) {
	runCases(t, CodeAllowNothing, []lintCase{
		{
			name: "allow-without-rules",
			docs: `
kind: AuthorizationPolicy
metadata: {name: allow-nothing, namespace: default}
spec: {}`,
			want: []Finding{{Severity: Info, Object: apName("default", "allow-nothing"), Field: "spec.rules", Message: "Istio's allow-nothing pattern"}},
		},
		{
			name: "deny-without-rules",
			docs: `
kind: AuthorizationPolicy
metadata: {name: deny, namespace: default}
spec: {action: DENY}`,
		},
		{
			name: "allow-with-rules",
			docs: `
kind: AuthorizationPolicy
metadata: {name: web, namespace: default}
spec:
  rules: [{from: [{source: {namespaces: ["frontend"]}}]}]`,
		},
	})
}

func TestDryRun(t *testing.T) {
	runCases(t, CodeDryRun, []lintCase{
		{
			name: "trustmesh-annotation",
			docs: `
kind: AuthorizationPolicy
metadata: {name: try, namespace: default, annotations: {trustmesh.dev/dry-run: "true"}}
spec: {action: DENY, rules: [{}]}`,
			want: []Finding{{Severity: Info, Object: apName("default", "try"), Field: `metadata.annotations["trustmesh.dev/dry-run"]`, Message: "never enforced"}},
		},
		{
			name: "istio-annotation",
			docs: `
kind: AuthorizationPolicy
metadata: {name: try, namespace: default, annotations: {istio.io/dry-run: "true"}}
spec: {action: DENY, rules: [{}]}`,
			want: []Finding{{Severity: Info, Object: apName("default", "try"), Field: `metadata.annotations["istio.io/dry-run"]`}},
		},
		{
			name: "annotation-false",
			docs: `
kind: AuthorizationPolicy
metadata: {name: try, namespace: default, annotations: {trustmesh.dev/dry-run: "false"}}
spec: {action: DENY, rules: [{}]}`,
		},
	})
}

func TestMixedL4L7(t *testing.T) {
	db := apName("default", "db")
	allowGET := `
kind: AuthorizationPolicy
metadata: {name: db, namespace: default}
spec:
  selector: {matchLabels: {app: db}}
  rules:
  - from: [{source: {principals: ["cluster.local/ns/default/sa/orders"]}}]
    to: [{operation: {ports: ["8080", "5432"], methods: ["GET"]}}]`
	runCases(t, CodeMixedL4L7, []lintCase{
		{
			name: "workloads-unknown",
			docs: docs(allowGET, service("default", "db", "{port: 5432, protocol: TCP}")),
			want: []Finding{{Severity: Warning, Object: db, Field: "spec.rules[0].to[0].operation.ports[1]", Message: `names port 5432, which Service "default/db" serves as TCP: Istio ignores such a rule for TCP traffic`}},
		},
		{
			name: "workload-served-and-selected",
			docs: docs(allowGET, service("default", "db", "{port: 5432, protocol: TCP}"), workload("default", "db", "app: db")),
			want: []Finding{{Severity: Error, Object: db, Field: "spec.rules[0].to[0].operation.ports[1]"}},
		},
		{
			name: "target-port",
			docs: docs(allowGET, service("default", "db", "{port: 15432, protocol: TCP, targetPort: 5432}")),
			want: []Finding{{Severity: Warning, Object: db, Field: "spec.rules[0].to[0].operation.ports[1]"}},
		},
		{
			name: "http-field-in-another-to-entry",
			docs: docs(`
kind: AuthorizationPolicy
metadata: {name: db, namespace: default}
spec:
  rules:
  - to: [{operation: {paths: ["/metrics"]}}, {operation: {ports: ["5432"]}}]`, service("default", "db", "{port: 5432, protocol: TCP}")),
			want: []Finding{{Severity: Warning, Object: db, Field: "spec.rules[0].to[1].operation.ports[0]"}},
		},
		{
			name: "deny",
			docs: docs(`
kind: AuthorizationPolicy
metadata: {name: db, namespace: default}
spec:
  action: DENY
  rules:
  - to: [{operation: {ports: ["5432"], paths: ["/admin"]}}]`, service("default", "db", "{port: 5432, protocol: TCP}")),
			want: []Finding{{Severity: Warning, Object: db, Field: "spec.rules[0].to[0].operation.ports[0]", Message: "denies every connection to the port"}},
		},
		{
			name: "services-unknown",
			docs: allowGET,
		},
		{
			name: "http-port",
			docs: docs(allowGET, service("default", "db", "{port: 5432, protocol: HTTP}")),
		},
		{
			name: "service-port-not-target-port",
			docs: docs(allowGET, service("default", "db", "{port: 5432, protocol: TCP, targetPort: 15432}")),
		},
		{
			name: "no-http-fields",
			docs: docs(`
kind: AuthorizationPolicy
metadata: {name: db, namespace: default}
spec:
  rules: [{to: [{operation: {ports: ["5432"]}}]}]`, service("default", "db", "{port: 5432, protocol: TCP}")),
		},
		{
			name: "service-in-another-namespace",
			docs: docs(allowGET, service("shop", "db", "{port: 5432, protocol: TCP}")),
		},
		{
			name: "service-serves-other-workloads",
			docs: docs(allowGET, service("default", "pg", "{port: 5432, protocol: TCP}"), workload("default", "db", "app: db"), workload("default", "pg", "app: pg")),
		},
	})
}

func TestUnknownPrincipalTrustDomain(t *testing.T) {
	web := apName("default", "web")
	wl := workload("default", "web", "app: web")
	runCases(t, CodeUnknownPrincipalTrustDomain, []lintCase{
		{
			name: "typo",
			docs: docs(wl, `
kind: AuthorizationPolicy
metadata: {name: web, namespace: default}
spec:
  rules: [{from: [{source: {principals: ["cluster.local/ns/default/sa/a", "clustr.local/ns/default/sa/b"]}}]}]`),
			want: []Finding{{Severity: Info, Object: web, Field: "spec.rules[0].from[0].source.principals[1]", Message: `the trust domain "clustr.local" of "clustr.local/ns/default/sa/b" is not that of any Workload (cluster.local)`}},
		},
		{
			name: "when-source-principal",
			docs: docs(wl, `
kind: AuthorizationPolicy
metadata: {name: web, namespace: default}
spec:
  action: DENY
  rules: [{when: [{key: source.principal, notValues: ["spiffe://partner.example/*"]}]}]`),
			want: []Finding{{Severity: Info, Object: web, Field: "spec.rules[0].when[0].notValues[0]", Message: `"partner.example"`}},
		},
		{
			name: "known-or-wildcard",
			docs: docs(wl, `
kind: AuthorizationPolicy
metadata: {name: web, namespace: default}
spec:
  rules: [{from: [{source: {principals: ["spiffe://cluster.local/ns/x/sa/y", "*", "*/sa/web", "cluster.local/*", "clus*"]}}]}]`),
		},
		{
			name: "workloads-unknown",
			docs: `
kind: AuthorizationPolicy
metadata: {name: web, namespace: default}
spec:
  rules: [{from: [{source: {principals: ["clustr.local/ns/default/sa/b"]}}]}]`,
		},
	})
}

func TestLintSortsByObjectAndField(t *testing.T) {
	var rules string
	for range 11 {
		rules += "  - to: [{operation: {methods: [\"GET\"]}}]\n"
	}
	in := decodeInput(t, docs(`
kind: AuthorizationPolicy
metadata: {name: b, namespace: default}
spec:
  rules:
`+rules, `
kind: AuthorizationPolicy
metadata: {name: a, namespace: default, annotations: {trustmesh.dev/dry-run: "true"}}
spec: {}`))
	var got []string
	for _, f := range Lint(in) {
		got = append(got, f.Object+" "+f.Field+" "+f.Code)
	}
	a, b := apName("default", "a"), apName("default", "b")
	want := []string{
		a + ` metadata.annotations["trustmesh.dev/dry-run"] dry-run`,
		a + " spec.rules allow-nothing",
	}
	for i := 1; i <= 10; i++ {
		want = append(want, fmt.Sprintf("%s spec.rules[%d] shadowed-rule", b, i))
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("order (-want +got):\n%s", diff)
	}
}

func TestLintSkipsNilAndUncompilable(t *testing.T) {
	bad := &policy.AuthorizationPolicy{
		Metadata: policy.Metadata{Name: "bad", Namespace: "default"},
		Spec: policy.AuthorizationPolicySpec{Rules: []policy.Rule{
			{From: []policy.RuleFrom{{Source: policy.Source{IPBlocks: []string{"not-an-ip"}}}}},
			{From: []policy.RuleFrom{{Source: policy.Source{IPBlocks: []string{"not-an-ip"}}}}},
		}},
	}
	got := Lint(Input{Policies: []*policy.AuthorizationPolicy{nil, bad}})
	if len(got) != 0 {
		t.Errorf("got %d findings, want none:\n%s", len(got), formatFindings(got))
	}
}

func TestSeverityString(t *testing.T) {
	for _, tc := range []struct {
		s    Severity
		want string
	}{{Error, "error"}, {Warning, "warning"}, {Info, "info"}, {0, "Severity(0)"}} {
		if got := tc.s.String(); got != tc.want {
			t.Errorf("Severity(%d).String(): got %q, want %q", int(tc.s), got, tc.want)
		}
	}
}

func TestCompareFields(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		want int
	}{
		{"spec.rules[2]", "spec.rules[10]", -1},
		{"spec.rules[10]", "spec.rules[2]", 1},
		{"spec.rules[2]", "spec.rules[2].to[0]", -1},
		{"metadata.namespace", "spec.rules", -1},
		{"spec.rules[1].from[0]", "spec.rules[1].from[0]", 0},
	} {
		if got := compareFields(tc.a, tc.b); got != tc.want {
			t.Errorf("compareFields(%q, %q): got %d, want %d", tc.a, tc.b, got, tc.want)
		}
	}
}

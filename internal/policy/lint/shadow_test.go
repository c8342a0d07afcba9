package lint

import "testing"

func TestShadowedRule(t *testing.T) {
	orders := apName("default", "orders")
	runCases(t, CodeShadowedRule, []lintCase{
		{
			name: "rule-without-to-covers-rule-with-paths",
			docs: `
kind: AuthorizationPolicy
metadata: {name: orders, namespace: default}
spec:
  rules:
  - from: [{source: {namespaces: ["frontend"]}}]
  - from: [{source: {namespaces: ["frontend"]}}]
    to: [{operation: {paths: ["/api/*"], methods: ["GET"]}}]`,
			want: []Finding{{Severity: Warning, Object: orders, Field: "spec.rules[1]", Message: "rule 0 of this policy already matches every request it matches"}},
		},
		{
			name: "principal-superset-and-no-when",
			docs: `
kind: AuthorizationPolicy
metadata: {name: orders, namespace: default}
spec:
  rules:
  - from: [{source: {principals: ["cluster.local/ns/default/sa/a", "cluster.local/ns/default/sa/b"]}}]
  - from: [{source: {principals: ["spiffe://cluster.local/ns/default/sa/b"]}}]
    when: [{key: "request.headers[x-env]", values: ["prod"]}]`,
			want: []Finding{{Severity: Warning, Object: orders, Field: "spec.rules[1]"}},
		},
		{
			name: "path-prefix-superset",
			docs: `
kind: AuthorizationPolicy
metadata: {name: orders, namespace: default}
spec:
  rules:
  - to: [{operation: {paths: ["/api/*"]}}]
  - to: [{operation: {paths: ["/api/v1/*", "/api/health"]}}]`,
			want: []Finding{{Severity: Warning, Object: orders, Field: "spec.rules[1]"}},
		},
		{
			name: "every-to-entry-covered-by-some-entry",
			docs: `
kind: AuthorizationPolicy
metadata: {name: orders, namespace: default}
spec:
  rules:
  - to: [{operation: {paths: ["/a"]}}, {operation: {paths: ["/b"]}}]
  - to: [{operation: {paths: ["/b"], methods: ["GET"]}}, {operation: {paths: ["/a"], methods: ["POST"]}}]`,
			want: []Finding{{Severity: Warning, Object: orders, Field: "spec.rules[1]"}},
		},
		{
			name: "every-from-entry-covered",
			docs: `
kind: AuthorizationPolicy
metadata: {name: orders, namespace: default}
spec:
  rules:
  - from: [{source: {namespaces: ["a"]}}, {source: {namespaces: ["b"]}}]
  - from: [{source: {namespaces: ["b"]}}]`,
			want: []Finding{{Severity: Warning, Object: orders, Field: "spec.rules[1]"}},
		},
		{
			name: "identical-rules-report-the-later",
			docs: `
kind: AuthorizationPolicy
metadata: {name: orders, namespace: default}
spec:
  rules:
  - to: [{operation: {methods: ["GET"]}}]
  - to: [{operation: {methods: ["GET"]}}]
  - to: [{operation: {methods: ["GET"]}}]`,
			want: []Finding{
				{Severity: Warning, Object: orders, Field: "spec.rules[1]", Message: "rule 0 of this policy"},
				{Severity: Warning, Object: orders, Field: "spec.rules[2]", Message: "rule 0 of this policy"},
			},
		},
		{
			name: "principal-fixes-namespace",
			docs: `
kind: AuthorizationPolicy
metadata: {name: orders, namespace: default}
spec:
  rules:
  - from: [{source: {namespaces: ["frontend"]}}]
  - from: [{source: {principals: ["cluster.local/ns/frontend/sa/web", "cluster.local/ns/frontend/*"]}}]`,
			want: []Finding{{Severity: Warning, Object: orders, Field: "spec.rules[1]"}},
		},
		{
			name: "not-paths-disjoint-from-paths",
			docs: `
kind: AuthorizationPolicy
metadata: {name: orders, namespace: default}
spec:
  rules:
  - to: [{operation: {notPaths: ["/admin*"]}}]
  - to: [{operation: {paths: ["/public/*", "/healthz"]}}]`,
			want: []Finding{{Severity: Warning, Object: orders, Field: "spec.rules[1]"}},
		},
		{
			name: "ip-blocks-and-remote-ip-blocks-are-the-peer-address",
			docs: `
kind: AuthorizationPolicy
metadata: {name: orders, namespace: default}
spec:
  rules:
  - from: [{source: {ipBlocks: ["10.0.0.0/8"]}}]
  - from: [{source: {remoteIpBlocks: ["10.1.0.0/16", "10.2.3.4"]}}]`,
			want: []Finding{{Severity: Warning, Object: orders, Field: "spec.rules[1]"}},
		},
		{
			name: "namespace-wide-policy-covers-selector-policy",
			docs: docs(`
kind: AuthorizationPolicy
metadata: {name: all, namespace: default}
spec:
  rules:
  - from: [{source: {namespaces: ["frontend"]}}]`, `
kind: AuthorizationPolicy
metadata: {name: orders, namespace: default}
spec:
  selector: {matchLabels: {app: orders}}
  rules:
  - from: [{source: {namespaces: ["frontend"]}}]
    to: [{operation: {methods: ["GET"]}}]`),
			want: []Finding{{Severity: Warning, Object: orders, Field: "spec.rules[0]", Message: `rule 0 of AuthorizationPolicy "default/all" already matches every request it matches, on every workload this policy applies to`}},
		},
		{
			name: "known-workloads-show-coverage",
			docs: docs(workload("default", "orders", "app: orders, tier: api"), `
kind: AuthorizationPolicy
metadata: {name: api, namespace: default}
spec:
  selector: {matchLabels: {tier: api}}
  rules:
  - from: [{source: {namespaces: ["frontend"]}}]`, `
kind: AuthorizationPolicy
metadata: {name: orders, namespace: default}
spec:
  selector: {matchLabels: {app: orders}}
  rules:
  - from: [{source: {namespaces: ["frontend"]}}]`),
			want: []Finding{{Severity: Warning, Object: orders, Field: "spec.rules[0]", Message: `rule 0 of AuthorizationPolicy "default/api"`}},
		},
		{
			name: "allow-shadowed-by-deny",
			docs: docs(`
kind: AuthorizationPolicy
metadata: {name: deny-admin, namespace: trustmesh-system}
spec:
  action: DENY
  rules:
  - to: [{operation: {paths: ["/admin*"]}}]`, `
kind: AuthorizationPolicy
metadata: {name: orders, namespace: default}
spec:
  rules:
  - from: [{source: {namespaces: ["ops"]}}]
    to: [{operation: {paths: ["/admin/users"]}}]`),
			want: []Finding{{Severity: Warning, Object: orders, Field: "spec.rules[0]", Message: `this ALLOW rule can never allow anything: DENY rule 0 of AuthorizationPolicy "trustmesh-system/deny-admin" always matches first`}},
		},
		{
			name: "allow-shadowed-by-deny-not-namespaces",
			docs: `
kind: AuthorizationPolicy
metadata: {name: only-frontend, namespace: default}
spec:
  action: DENY
  rules:
  - from: [{source: {notNamespaces: ["frontend"]}}]
---
kind: AuthorizationPolicy
metadata: {name: orders, namespace: default}
spec:
  rules:
  - from: [{source: {principals: ["cluster.local/ns/batch/sa/job"]}}]`,
			want: []Finding{{Severity: Warning, Object: orders, Field: "spec.rules[0]", Message: "can never allow anything"}},
		},
		{
			name: "deny-shadowed-by-deny-on-http-and-tcp",
			docs: `
kind: AuthorizationPolicy
metadata: {name: deny, namespace: default}
spec:
  action: DENY
  rules:
  - from: [{source: {principals: ["cluster.local/ns/batch/sa/job"]}}]
    to: [{operation: {paths: ["/x*"]}}]
  - from: [{source: {principals: ["cluster.local/ns/batch/sa/job"]}}]
    to: [{operation: {paths: ["/x/y"], ports: ["9000"]}}]`,
			want: []Finding{{Severity: Warning, Object: apName("default", "deny"), Field: "spec.rules[1]"}},
		},
		{
			name: "to-entries-are-alternatives-only-the-narrower-is-reported",
			docs: `
kind: AuthorizationPolicy
metadata: {name: orders, namespace: default}
spec:
  rules:
  - to: [{operation: {paths: ["/a"]}}]
  - to: [{operation: {paths: ["/a"]}}, {operation: {paths: ["/b"]}}]`,
			want: []Finding{{Severity: Warning, Object: orders, Field: "spec.rules[0]", Message: "rule 1 of this policy"}},
		},
		{
			name: "when-narrows-only-the-narrower-is-reported",
			docs: `
kind: AuthorizationPolicy
metadata: {name: orders, namespace: default}
spec:
  rules:
  - from: [{source: {namespaces: ["frontend"]}}]
    when: [{key: "request.headers[x-env]", values: ["prod"]}]
  - from: [{source: {namespaces: ["frontend"]}}]`,
			want: []Finding{{Severity: Warning, Object: orders, Field: "spec.rules[0]", Message: "rule 1 of this policy"}},
		},
		{
			name: "exact-path-is-narrower-than-prefix",
			docs: `
kind: AuthorizationPolicy
metadata: {name: orders, namespace: default}
spec:
  rules:
  - to: [{operation: {paths: ["/api"]}}]
  - to: [{operation: {paths: ["/api*"]}}]`,
			want: []Finding{{Severity: Warning, Object: orders, Field: "spec.rules[0]", Message: "rule 1 of this policy"}},
		},
		{
			name: "namespace-is-broader-than-a-principal-in-it",
			docs: `
kind: AuthorizationPolicy
metadata: {name: orders, namespace: default}
spec:
  rules:
  - from: [{source: {principals: ["cluster.local/ns/frontend/sa/web"]}}]
  - from: [{source: {namespaces: ["frontend"]}}]`,
			want: []Finding{{Severity: Warning, Object: orders, Field: "spec.rules[0]", Message: "rule 1 of this policy"}},
		},
		{
			name: "fields-are-and-only-the-narrower-is-reported",
			docs: `
kind: AuthorizationPolicy
metadata: {name: orders, namespace: default}
spec:
  rules:
  - from: [{source: {principals: ["cluster.local/ns/frontend/sa/web"]}}]
    to: [{operation: {paths: ["/x"]}}]
  - from: [{source: {principals: ["cluster.local/ns/frontend/sa/web"]}}]`,
			want: []Finding{{Severity: Warning, Object: orders, Field: "spec.rules[0]", Message: "rule 1 of this policy"}},
		},
		{
			name: "neither-covers-the-other",
			docs: `
kind: AuthorizationPolicy
metadata: {name: orders, namespace: default}
spec:
  rules:
  - to: [{operation: {paths: ["/a"], methods: ["GET"]}}]
  - to: [{operation: {paths: ["/a", "/b"], methods: ["POST"]}}]`,
		},
		{
			name: "prefix-principal-does-not-fix-namespace",
			docs: `
kind: AuthorizationPolicy
metadata: {name: orders, namespace: default}
spec:
  rules:
  - from: [{source: {namespaces: ["frontend"]}}]
  - from: [{source: {principals: ["cluster.local/ns/front*"]}}]`,
		},
		{
			name: "not-paths-overlapping-paths",
			docs: `
kind: AuthorizationPolicy
metadata: {name: orders, namespace: default}
spec:
  rules:
  - to: [{operation: {notPaths: ["/admin*"]}}]
  - to: [{operation: {paths: ["/ad*"]}}]`,
		},
		{
			name: "allow-rule-with-http-field-elsewhere-does-not-cover-tcp",
			docs: `
kind: AuthorizationPolicy
metadata: {name: orders, namespace: default}
spec:
  rules:
  - from: [{source: {principals: ["cluster.local/ns/a/sa/x"]}}, {source: {requestPrincipals: ["*"]}}]
  - from: [{source: {principals: ["cluster.local/ns/a/sa/x"]}}]`,
		},
		{
			name: "other-selector",
			docs: `
kind: AuthorizationPolicy
metadata: {name: a, namespace: default}
spec:
  selector: {matchLabels: {app: a}}
  rules: [{}]
---
kind: AuthorizationPolicy
metadata: {name: b, namespace: default}
spec:
  selector: {matchLabels: {app: b}}
  rules: [{to: [{operation: {methods: ["GET"]}}]}]`,
		},
		{
			name: "other-namespace",
			docs: `
kind: AuthorizationPolicy
metadata: {name: a, namespace: staging}
spec:
  rules: [{}]
---
kind: AuthorizationPolicy
metadata: {name: b, namespace: default}
spec:
  rules: [{to: [{operation: {methods: ["GET"]}}]}]`,
		},
		{
			name: "dry-run-deny-does-not-shadow",
			docs: `
kind: AuthorizationPolicy
metadata: {name: deny, namespace: default, annotations: {trustmesh.dev/dry-run: "true"}}
spec:
  action: DENY
  rules: [{}]
---
kind: AuthorizationPolicy
metadata: {name: orders, namespace: default}
spec:
  rules: [{to: [{operation: {methods: ["GET"]}}]}]`,
		},
		{
			name: "allow-does-not-shadow-deny",
			docs: `
kind: AuthorizationPolicy
metadata: {name: allow, namespace: default}
spec:
  rules: [{}]
---
kind: AuthorizationPolicy
metadata: {name: deny, namespace: default}
spec:
  action: DENY
  rules: [{to: [{operation: {methods: ["DELETE"]}}]}]`,
		},
	})
}

func TestAllowDenyConflict(t *testing.T) {
	orders := apName("default", "orders")
	runCases(t, CodeAllowDenyConflict, []lintCase{
		{
			name: "namespace-allowed-path-denied",
			docs: `
kind: AuthorizationPolicy
metadata: {name: deny-admin, namespace: default}
spec:
  action: DENY
  rules: [{to: [{operation: {paths: ["/admin*"]}}]}]
---
kind: AuthorizationPolicy
metadata: {name: orders, namespace: default}
spec:
  rules: [{from: [{source: {namespaces: ["frontend"]}}]}]`,
			want: []Finding{{
				Severity: Warning, Object: orders, Field: "spec.rules[0]",
				Message: `DENY rule 0 of AuthorizationPolicy "default/deny-admin", such as GET /admin from spiffe://cluster.local/ns/frontend/sa/example`,
			}},
		},
		{
			name: "known-workload-under-both",
			docs: docs(workload("default", "orders", "app: orders"), `
kind: AuthorizationPolicy
metadata: {name: deny-delete, namespace: default}
spec:
  selector: {matchLabels: {app: orders}}
  action: DENY
  rules: [{to: [{operation: {methods: ["DELETE"]}}]}]`, `
kind: AuthorizationPolicy
metadata: {name: orders, namespace: default}
spec:
  selector: {matchLabels: {app: orders}}
  rules: [{from: [{source: {principals: ["cluster.local/ns/default/sa/*"]}}]}]`),
			want: []Finding{{Severity: Warning, Object: orders, Field: "spec.rules[0]", Message: "such as DELETE / from spiffe://cluster.local/ns/default/sa/"}},
		},
		{
			name: "deny-except-namespace",
			docs: `
kind: AuthorizationPolicy
metadata: {name: only-frontend, namespace: default}
spec:
  action: DENY
  rules: [{from: [{source: {notNamespaces: ["frontend"]}}]}]
---
kind: AuthorizationPolicy
metadata: {name: orders, namespace: default}
spec:
  rules: [{from: [{source: {principals: ["cluster.local/*"]}}]}]`,
			want: []Finding{{Severity: Warning, Object: orders, Field: "spec.rules[0]", Message: "such as a request from spiffe://cluster.local/ns/default/sa/example"}},
		},
		{
			name: "disjoint-paths",
			docs: `
kind: AuthorizationPolicy
metadata: {name: deny-admin, namespace: default}
spec:
  action: DENY
  rules: [{to: [{operation: {paths: ["/admin/*"]}}]}]
---
kind: AuthorizationPolicy
metadata: {name: orders, namespace: default}
spec:
  rules: [{to: [{operation: {paths: ["/public/*"]}}]}]`,
		},
		{
			name: "principal-excluded-by-not-principals",
			docs: `
kind: AuthorizationPolicy
metadata: {name: deny, namespace: default}
spec:
  action: DENY
  rules: [{from: [{source: {notPrincipals: ["cluster.local/ns/default/sa/web"]}}]}]
---
kind: AuthorizationPolicy
metadata: {name: orders, namespace: default}
spec:
  rules: [{from: [{source: {principals: ["cluster.local/ns/default/sa/web"]}}]}]`,
		},
		{
			name: "other-principals",
			docs: `
kind: AuthorizationPolicy
metadata: {name: deny, namespace: default}
spec:
  action: DENY
  rules: [{from: [{source: {principals: ["cluster.local/ns/default/sa/batch"]}}]}]
---
kind: AuthorizationPolicy
metadata: {name: orders, namespace: default}
spec:
  rules: [{from: [{source: {principals: ["cluster.local/ns/default/sa/web"]}}]}]`,
		},
		{
			name: "other-namespaces",
			docs: `
kind: AuthorizationPolicy
metadata: {name: deny, namespace: staging}
spec:
  action: DENY
  rules: [{to: [{operation: {paths: ["/admin*"]}}]}]
---
kind: AuthorizationPolicy
metadata: {name: orders, namespace: default}
spec:
  rules: [{}]`,
		},
		{
			name: "known-workloads-under-one-each",
			docs: docs(workload("default", "orders", "app: orders"), workload("default", "web", "app: web"), `
kind: AuthorizationPolicy
metadata: {name: deny, namespace: default}
spec:
  selector: {matchLabels: {app: web}}
  action: DENY
  rules: [{to: [{operation: {paths: ["/admin*"]}}]}]`, `
kind: AuthorizationPolicy
metadata: {name: orders, namespace: default}
spec:
  selector: {matchLabels: {app: orders}}
  rules: [{from: [{source: {namespaces: ["frontend"]}}]}]`),
		},
		{
			name: "full-subsumption-is-a-shadow-not-a-conflict",
			docs: `
kind: AuthorizationPolicy
metadata: {name: deny, namespace: default}
spec:
  action: DENY
  rules: [{to: [{operation: {paths: ["/admin*"]}}]}]
---
kind: AuthorizationPolicy
metadata: {name: orders, namespace: default}
spec:
  rules: [{to: [{operation: {paths: ["/admin/x"]}}]}]`,
		},
		{
			name: "dry-run-deny",
			docs: `
kind: AuthorizationPolicy
metadata: {name: deny, namespace: default, annotations: {istio.io/dry-run: "true"}}
spec:
  action: DENY
  rules: [{to: [{operation: {paths: ["/admin*"]}}]}]
---
kind: AuthorizationPolicy
metadata: {name: orders, namespace: default}
spec:
  rules: [{from: [{source: {namespaces: ["frontend"]}}]}]`,
		},
	})
}

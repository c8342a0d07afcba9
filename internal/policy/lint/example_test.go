package lint_test

import (
	"fmt"

	"github.com/trustmesh/trustmesh/internal/policy"
	"github.com/trustmesh/trustmesh/internal/policy/lint"
)

func ExampleLint() {
	objs, err := policy.Decode([]byte(`
apiVersion: trustmesh.dev/v1
kind: AuthorizationPolicy
metadata: {name: orders, namespace: shop}
spec:
  selector: {matchLabels: {app: orders}}
  rules:
  - from: [{source: {principals: ["spiffe://cluster.local/ns/shop/sa/frontend"]}}]
  - from: [{source: {principals: ["spiffe://cluster.local/ns/shop/sa/frontend"]}}]
    to: [{operation: {methods: ["GET"], paths: ["/orders/*"]}}]
---
apiVersion: trustmesh.dev/v1
kind: AuthorizationPolicy
metadata: {name: no-admin, namespace: shop}
spec:
  action: DENY
  rules: [{to: [{operation: {paths: ["/admin*"]}}]}]
`))
	if err != nil {
		fmt.Println(err)
		return
	}
	var in lint.Input
	for _, o := range objs {
		in.Policies = append(in.Policies, o.(*policy.AuthorizationPolicy))
	}
	for _, f := range lint.Lint(in) {
		fmt.Printf("%s %s %s %s\n", f.Severity, f.Code, f.Object, f.Field)
		fmt.Printf("  %s\n", f.Message)
	}
	// Output:
	// warning allow-deny-conflict AuthorizationPolicy "shop/orders" spec.rules[0]
	//   some requests match both this ALLOW rule and DENY rule 0 of AuthorizationPolicy "shop/no-admin", such as GET /admin from spiffe://cluster.local/ns/shop/sa/frontend: DENY is evaluated first, so this rule does not allow them; if the DENY rule is a deliberate exception, nothing to do, otherwise narrow one of the rules
	// warning shadowed-rule AuthorizationPolicy "shop/orders" spec.rules[1]
	//   the rule can never change a decision: rule 0 of this policy already matches every request it matches; remove it, or narrow the other rule if that one is broader than intended
}

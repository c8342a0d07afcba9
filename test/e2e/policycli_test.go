package e2e

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func exitCode(err error) int {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode()
	}
	if err != nil {
		return -1
	}
	return 0
}

// TestPolicyCLIOffline drives validate, lint, test and import the way a
// user's CI would: files in, exit codes and FILE:LINE messages out.
func TestPolicyCLIOffline(t *testing.T) {
	t.Parallel()
	t.Run("validate reports lines", func(t *testing.T) {
		f := writeFile(t, "bad.yaml", `apiVersion: trustmesh.dev/v1
kind: AuthorizationPolicy
metadata: {name: ok, namespace: default}
spec: {}
---
apiVersion: trustmesh.dev/v1
kind: AuthorizationPolicy
metadata: {name: bad, namespace: default}
spec:
  action: ALLOW
  rules:
  - to:
    - operation:
        methods: ["get"]
        paths: ["/a*b"]
`)
		_, errOut, err := cli(t, "", "policy", "validate", "-f", f)
		if exitCode(err) != 1 {
			t.Fatalf("exit code %d, want 1\n%s", exitCode(err), errOut)
		}
		for _, want := range []string{f + `:14: AuthorizationPolicy "default/bad": spec.rules[0].to[0].operation.methods[0]`, f + ":15:"} {
			if !strings.Contains(errOut, want) {
				t.Errorf("stderr lacks %q:\n%s", want, errOut)
			}
		}
		out := mustCLI(t, "policy", "validate", "-f", "../../examples/policies/policies.yaml")
		if !strings.Contains(out, "3 object(s) valid") {
			t.Errorf("examples: %s", out)
		}
		_, errOut, err = cli(t, "", "policy", "validate", "-f", writeFile(t, "typo.yaml", "apiVersion: trustmesh.dev/v1\nkind: AuthorizationPolicy\nmetadata: {name: x}\nspec:\n  rulez: []\n"))
		if err == nil || !strings.Contains(errOut, ":5:") || !strings.Contains(errOut, `did you mean "rules"`) {
			t.Errorf("unknown field: err=%v\n%s", err, errOut)
		}
	})

	t.Run("test passes and fails with the right exit code", func(t *testing.T) {
		out := mustCLI(t, "policy", "test", "-f", "../../examples/policies/policies.yaml", "--cases", "../../examples/policies/cases.yaml")
		if !strings.Contains(out, "6 case(s), 6 passed, 0 failed") {
			t.Errorf("examples: %s", out)
		}
		cases := writeFile(t, "cases.yaml", `cases:
- name: wrong expectation
  from: spiffe://demo.trustmesh.dev/ns/default/sa/frontend
  destination: {labels: {app: payments}}
  method: POST
  path: /pay
  expect: ALLOW
`)
		out, _, err := cli(t, "", "policy", "test", "-f", "../../examples/policies/policies.yaml", "--cases", cases)
		if exitCode(err) != 1 || !strings.Contains(out, "FAIL  wrong expectation") || !strings.Contains(out, "got DENY (no-allow-match)") {
			t.Errorf("a failing case: exit %d\n%s", exitCode(err), out)
		}
		_, errOut, err := cli(t, "", "policy", "test", "-f", "../../examples/policies/policies.yaml", "--cases", writeFile(t, "c.yaml", "cases:\n- name: x\n  expect: MAYBE\n  to: a\n"))
		if err == nil || !strings.Contains(errOut, `expect "MAYBE": want ALLOW or DENY`) {
			t.Errorf("bad expect: %v %s", err, errOut)
		}
		_, errOut, err = cli(t, "", "policy", "test", "-f", "../../examples/policies/policies.yaml", "--cases", writeFile(t, "c.yaml", "cases:\n- name: x\n  expct: DENY\n"))
		if err == nil || !strings.Contains(errOut, "expct") {
			t.Errorf("unknown case field: %v %s", err, errOut)
		}
	})

	t.Run("lint finds and locates", func(t *testing.T) {
		f := writeFile(t, "lint.yaml", `apiVersion: trustmesh.dev/v1
kind: AuthorizationPolicy
metadata: {name: wide, namespace: default}
spec:
  rules:
  - from: [{source: {principals: ["*"]}}]
    to: [{operation: {ports: ["5432"]}}]
  - from: [{source: {principals: ["spiffe://td/ns/a/sa/b"]}}]
    to: [{operation: {ports: ["5432"]}}]
`)
		out, _, err := cli(t, "", "policy", "lint", "-f", f, "--strict")
		if exitCode(err) != 1 || !strings.Contains(out, "over-permissive") || !strings.Contains(out, "shadowed-rule") || !strings.Contains(out, f+":") {
			t.Errorf("lint --strict: exit %d\n%s", exitCode(err), out)
		}
	})

	t.Run("import from Istio", func(t *testing.T) {
		f := writeFile(t, "istio.yaml", `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: httpbin
  namespace: foo
  annotations: {istio.io/dry-run: "true"}
spec:
  selector: {matchLabels: {app: httpbin}}
  action: ALLOW
  rules:
  - from: [{source: {principals: ["cluster.local/ns/default/sa/sleep"]}}]
    to: [{operation: {methods: ["GET"]}}]
---
apiVersion: security.istio.io/v1beta1
kind: PeerAuthentication
metadata: {name: default, namespace: istio-system}
spec: {mtls: {mode: STRICT}}
`)
		out := mustCLI(t, "policy", "import", "--istio", "-f", f)
		for _, want := range []string{"apiVersion: trustmesh.dev/v1", "trustmesh.dev/dry-run", "namespace: trustmesh-system", "cluster.local/ns/default/sa/sleep"} {
			if !strings.Contains(out, want) {
				t.Errorf("import output lacks %q:\n%s", want, out)
			}
		}
		// The output is a valid trustmesh file.
		mustCLI(t, "policy", "validate", "-f", writeFile(t, "converted.yaml", out))
		_, errOut, err := cli(t, "", "policy", "import", "--istio", "-f", writeFile(t, "tr.yaml", `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: gw, namespace: foo}
spec:
  targetRef: {kind: Gateway, name: gw}
`))
		if err == nil || !strings.Contains(errOut, "targetRef") {
			t.Errorf("targetRef: err=%v %s", err, errOut)
		}
	})
}

// TestPolicyDiff compares a file with the server and revisions.
func TestPolicyDiff(t *testing.T) {
	t.Parallel()
	s := startServer(t, "diff.example")
	v1 := `apiVersion: trustmesh.dev/v1
kind: AuthorizationPolicy
metadata: {name: p, namespace: default}
spec:
  rules:
  - to: [{operation: {methods: ["GET"]}}]
`
	s.apply(t, v1)
	f := writeFile(t, "p.yaml", v1)
	if out := mustCLI(t, "policy", "diff", "-f", f, "--exit-code", "--data-dir", s.dir); !strings.Contains(out, "no changes") {
		t.Errorf("unchanged file: %s", out)
	}
	f2 := writeFile(t, "p2.yaml", strings.Replace(v1, `["GET"]`, `["GET", "POST"]`, 1))
	out, _, err := cli(t, "", "policy", "diff", "-f", f2, "--exit-code", "--data-dir", s.dir)
	if exitCode(err) != 1 || !strings.Contains(out, "+") || !strings.Contains(out, "POST") {
		t.Errorf("changed file: exit %d\n%s", exitCode(err), out)
	}
	newFile := writeFile(t, "n.yaml", strings.Replace(v1, "name: p", "name: q", 1))
	if out := mustCLI(t, "policy", "diff", "-f", newFile, "--data-dir", s.dir); !strings.Contains(out, "+kind: AuthorizationPolicy") {
		t.Errorf("a new object shows as all added:\n%s", out)
	}
	_, errOut, err := cli(t, "", "policy", "diff", "p", "--data-dir", s.dir)
	if err == nil || !strings.Contains(errOut, "needs --revision") {
		t.Errorf("NAME without --revision: %v %s", err, errOut)
	}
}

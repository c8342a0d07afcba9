package istio

import (
	"bytes"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/trustmesh/trustmesh/internal/policy"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

func readFixture(t testing.TB, name string) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// render writes objects as policy.ToYAML does, separated by "---".
func render(t *testing.T, objs []policy.Object) []byte {
	t.Helper()
	var buf bytes.Buffer
	for i, obj := range objs {
		if i > 0 {
			buf.WriteString("---\n")
		}
		y, err := policy.ToYAML(obj)
		if err != nil {
			t.Fatalf("ToYAML: %v", err)
		}
		buf.Write(y)
	}
	return buf.Bytes()
}

// checkGolden compares got with the golden file at path, or rewrites the
// file with -update.
func checkGolden(t *testing.T, path string, got []byte) {
	t.Helper()
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if diff := cmp.Diff(string(want), string(got)); diff != "" {
		t.Errorf("%s differs (-want +got):\n%s", path, diff)
	}
}

// TestConvert converts the fixtures, most of them examples of Istio's
// documentation, and compares the result with the golden files
// testdata/NAME.golden.yaml. Run with -update to rewrite them.
func TestConvert(t *testing.T) {
	for _, tc := range []struct {
		fixture string
		opts    Options
	}{
		{fixture: "authz-reference-example.yaml"},
		{fixture: "authz-deny.yaml"},
		{fixture: "authz-allow-nothing.yaml"},
		{fixture: "authz-allow-all.yaml"},
		{fixture: "authz-deny-all.yaml"},
		{fixture: "authz-audit.yaml"},
		{fixture: "authz-dry-run.yaml"},
		{fixture: "authz-custom-rego.yaml"},
		{fixture: "peerauthn-mesh-strict.yaml"},
		{fixture: "peerauthn-workload-permissive.yaml"},
		{fixture: "reqauthn-jwks.yaml"},
		{fixture: "server-fields.yaml"},
		{fixture: "kubectl-list.yaml"},
		{fixture: "json-stream.json"},
		{fixture: "aliases.yaml"},
		{fixture: "other-kinds-skipped.yaml", opts: Options{SkipOtherKinds: true}},
	} {
		name := strings.TrimSuffix(tc.fixture, filepath.Ext(tc.fixture))
		t.Run(name, func(t *testing.T) {
			objs, err := Convert(readFixture(t, tc.fixture), tc.opts)
			if err != nil {
				t.Fatalf("Convert: %v", err)
			}
			got := render(t, objs)
			checkGolden(t, filepath.Join("testdata", name+".golden.yaml"), got)

			// The output is trustmesh input, and valid.
			again, err := policy.Decode(got)
			if err != nil {
				t.Fatalf("Decode(output): %v", err)
			}
			if diff := cmp.Diff(objs, again); diff != "" {
				t.Errorf("Decode(output) differs from Convert's objects (-want +got):\n%s", diff)
			}
			for _, obj := range objs {
				if err := policy.Validate(obj, spiffeid.RequireTrustDomainFromString(DefaultTrustDomain)); err != nil {
					t.Errorf("Validate: %v", err)
				}
			}
		})
	}
}

// TestConvertMapsNamespaces checks the namespaces and annotations the
// conversion writes, which the golden files show too.
func TestConvertMapsNamespaces(t *testing.T) {
	const in = `
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: mesh, namespace: mesh-root}
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: ns, namespace: istio-system}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: no-namespace
  annotations: {istio.io/dry-run: "true", trustmesh.dev/dry-run: "true", other: x}
`
	objs, err := Convert([]byte(in), Options{RootNamespace: "mesh-root"})
	if err != nil {
		t.Fatal(err)
	}
	want := []policy.Metadata{
		{Name: "mesh", Namespace: policy.RootNamespace},
		{Name: "ns", Namespace: "istio-system"},
		{Name: "no-namespace", Namespace: policy.DefaultNamespace, Annotations: map[string]string{policy.AnnotationDryRun: "true", "other": "x"}},
	}
	var got []policy.Metadata
	for _, obj := range objs {
		got = append(got, *obj.GetMeta())
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("metadata differs (-want +got):\n%s", diff)
	}
	if ap := objs[2].(*policy.AuthorizationPolicy); !ap.DryRun() {
		t.Error("DryRun: got false, want true")
	}
}

// TestConvertErrors checks the errors of the error fixtures, annotated
// with the lines policy.Locator finds for them in the input.
func TestConvertErrors(t *testing.T) {
	for _, tc := range []struct {
		fixture string
		opts    Options
		want    []string
	}{
		{
			fixture: "authz-targetref.yaml",
			want: []string{
				`line 7: document 1 (AuthorizationPolicy "foo/gateway"): spec.targetRef: not supported: trustmesh selects workloads with selector.matchLabels; replace targetRef with a selector for the labels of the workloads the policy is for`,
				`line 23: document 2 (AuthorizationPolicy "foo/waypoint"): spec.targetRefs: not supported: trustmesh selects workloads with selector.matchLabels; replace targetRefs with a selector for the labels of the workloads the policy is for`,
			},
		},
		{
			// Validate's own message about spec.provider.rego is left out.
			fixture: "authz-custom-without-rego.yaml",
			want: []string{
				`line 11: document 1 (AuthorizationPolicy "foo/ext-authz"): spec.provider.rego: trustmesh evaluates CUSTOM policies with inline Rego, not with an extension provider ("my-ext-authz"): add spec.provider.rego, a Rego module that defines allow`,
				`line 23: document 2 (AuthorizationPolicy "foo/ext-authz-no-provider"): spec.provider.rego: trustmesh evaluates CUSTOM policies with inline Rego: add spec.provider.rego, a Rego module that defines allow`,
			},
		},
		{
			fixture: "authz-unknown-field.yaml",
			want: []string{
				`line 6: document 1 (AuthorizationPolicy "foo/typo"): unknown field "metadata.generateName" (known fields: annotations, creationRevision, labels, name, namespace, revision)`,
				`line 12: document 1 (AuthorizationPolicy "foo/typo"): unknown field "spec.rules[0].from[0].source.principal" (did you mean "principals"?)`,
				`line 15: document 1 (AuthorizationPolicy "foo/typo"): unknown field "spec.rules[0].to[0].operation.method" (did you mean "methods"?)`,
			},
		},
		{
			// The sources left empty are not reported again.
			fixture: "authz-service-accounts.yaml",
			want: []string{
				`line 10: document 1 (AuthorizationPolicy "foo/sa"): spec.rules[0].from[0].source.serviceAccounts: not supported: write the identities as principals: ["cluster.local/ns/default/sa/sleep", "cluster.local/ns/foo/sa/curl"]`,
				`line 12: document 1 (AuthorizationPolicy "foo/sa"): spec.rules[0].from[1].source.notServiceAccounts: not supported: write the identities as notPrincipals, such as cluster.local/ns/NAMESPACE/sa/NAME`,
			},
		},
		{
			fixture: "authz-service-accounts.yaml",
			opts:    Options{TrustDomain: spiffeid.RequireTrustDomainFromString("example.org")},
			want: []string{
				`line 10: document 1 (AuthorizationPolicy "foo/sa"): spec.rules[0].from[0].source.serviceAccounts: not supported: write the identities as principals: ["example.org/ns/default/sa/sleep", "example.org/ns/foo/sa/curl"]`,
				`line 12: document 1 (AuthorizationPolicy "foo/sa"): spec.rules[0].from[1].source.notServiceAccounts: not supported: write the identities as notPrincipals, such as example.org/ns/NAMESPACE/sa/NAME`,
			},
		},
		{
			fixture: "deployment-in-file.yaml",
			want: []string{
				`line 2: document 1 (Deployment "foo/httpbin"): kind: apps/v1 Deployment is not an Istio security policy (AuthorizationPolicy, PeerAuthentication or RequestAuthentication of security.istio.io): remove it from the input, or skip objects of other kinds`,
			},
		},
		{
			fixture: "other-kinds-skipped.yaml",
			want: []string{
				`line 3: document 1 (Deployment "httpbin"): kind: apps/v1 Deployment is not an Istio security policy (AuthorizationPolicy, PeerAuthentication or RequestAuthentication of security.istio.io): remove it from the input, or skip objects of other kinds`,
				`line 10: document 2 (Service "httpbin"): kind: v1 Service is not an Istio security policy (AuthorizationPolicy, PeerAuthentication or RequestAuthentication of security.istio.io): remove it from the input, or skip objects of other kinds`,
			},
		},
		{
			// Kinds of security.istio.io and other versions are errors
			// even with SkipOtherKinds.
			fixture: "v1alpha1.yaml",
			opts:    Options{SkipOtherKinds: true},
			want: []string{
				`line 1: document 1 (PeerAuthentication "foo/default"): apiVersion: "security.istio.io/v1alpha1" is not supported: want security.istio.io/v1 or security.istio.io/v1beta1`,
				`line 11: document 2 (Policy "default/legacy"): kind: "Policy" of security.istio.io is not supported: trustmesh imports AuthorizationPolicy, PeerAuthentication and RequestAuthentication`,
			},
		},
		{
			fixture: "reqauthn-unsupported.yaml",
			want: []string{
				`line 7: document 1 (RequestAuthentication "foo/jwt"): spec.targetRefs: not supported: trustmesh selects workloads with selector.matchLabels; replace targetRefs with a selector for the labels of the workloads the policy is for`,
				`line 14: document 1 (RequestAuthentication "foo/jwt"): spec.jwtRules[0].fromCookies: not supported: trustmesh reads tokens only from headers (fromHeaders) and query parameters (fromParams): send the token in a header, and remove fromCookies`,
				`line 15: document 1 (RequestAuthentication "foo/jwt"): spec.jwtRules[0].timeout: not supported: trustmesh fetches JWKS with its own timeout: remove it`,
				`line 16: document 1 (RequestAuthentication "foo/jwt"): spec.jwtRules[0].spaceDelimitedClaims: not supported: trustmesh matches claims as the token carries them: remove it, and match the claim's whole value`,
				`line 19: document 1 (RequestAuthentication "foo/jwt"): spec.jwtRules[1].jwks_uri: is Istio's other spelling of jwksUri, which is set too: keep only jwksUri`,
			},
		},
		{
			// Validate's own message about the selector is left out.
			fixture: "peerauthn-root-selector.yaml",
			want: []string{
				`line 7: document 1 (PeerAuthentication "istio-system/ignored"): spec.selector: Istio ignores a PeerAuthentication with a selector in its root namespace istio-system, and trustmesh rejects it: leave out the selector for a mesh-wide policy, or move the policy to the namespace of the workloads it selects`,
			},
		},
		{
			fixture: "validation-errors.yaml",
			want: []string{
				`line 4: document 1 (AuthorizationPolicy "foo/Bad_Name"): metadata.name: "Bad_Name" is not a valid name: use lowercase letters, digits, '-' and '.', each dot-separated part starting and ending with a letter or digit`,
				`line 6: document 1 (AuthorizationPolicy "foo/Bad_Name"): metadata.annotations["trustmesh.dev/dry-run"]: "yes": want "true" or "false"`,
				`line 9: document 1 (AuthorizationPolicy "foo/Bad_Name"): spec.action: "PERMIT" is not an action: want ALLOW, DENY, AUDIT or CUSTOM`,
				`line 13: document 1 (AuthorizationPolicy "foo/Bad_Name"): spec.rules[0].to[0].operation.methods[0]: "get": methods are matched exactly and HTTP methods are uppercase: write "GET"`,
				`line 14: document 1 (AuthorizationPolicy "foo/Bad_Name"): spec.rules[0].to[0].operation.paths[0]: "/api/{*}/x": path templates ({*}, {**}) are not supported: use a prefix ("/api/*") or suffix ("*.json") match`,
				`line 16: document 1 (AuthorizationPolicy "foo/Bad_Name"): spec.rules[0].when[0].key: "experimental.envoy.filters.network.mysql_proxy[db.table]" is not a supported key: want one of request.headers[NAME], request.auth.claims[NAME], source.ip, remote.ip, source.namespace, source.principal, request.auth.principal, request.auth.audiences, request.auth.presenter, destination.ip, destination.port, connection.sni`,
			},
		},
		{
			fixture: "list-item-error.yaml",
			want: []string{
				`line 18: document 1 (AuthorizationPolicy "foo/gw"): items[1].spec.targetRef: not supported: trustmesh selects workloads with selector.matchLabels; replace targetRef with a selector for the labels of the workloads the policy is for`,
				`line 24: document 1 (AuthorizationPolicy "foo/gw"): unknown field "items[1].spec.rules[0].to[0].operation.method" (did you mean "methods"?)`,
			},
		},
		{
			fixture: "syntax-error.yaml",
			want:    []string{`line 12: document 2: invalid YAML: line 12: did not find expected node content`},
		},
		{
			fixture: "repeated-key.yaml",
			want:    []string{`line 9: document 1 (PeerAuthentication "foo/default"): line 9: key "mtls" is repeated; a key may appear only once in a mapping`},
		},
		{
			fixture: "trustmesh-namespace.yaml",
			want: []string{
				`line 5: document 1 (PeerAuthentication "trustmesh-system/default"): metadata.namespace: trustmesh-system is trustmesh's root namespace, where policies apply to the whole mesh, but in Istio (root namespace istio-system) this one applies to its namespace only: move it to another namespace`,
			},
		},
		{
			fixture: "dry-run-conflict.yaml",
			want: []string{
				`line 7: document 1 (AuthorizationPolicy "foo/dry"): metadata.annotations["istio.io/dry-run"]: conflicts with the annotation trustmesh.dev/dry-run: keep one of them`,
			},
		},
		{
			fixture: "comments-only.yaml",
			want:    []string{`no Istio security policies found: want AuthorizationPolicy, PeerAuthentication or RequestAuthentication objects of security.istio.io/v1 or security.istio.io/v1beta1`},
		},
	} {
		name := strings.TrimSuffix(tc.fixture, filepath.Ext(tc.fixture))
		if tc.opts != (Options{}) {
			name += "-with-options"
		}
		t.Run(name, func(t *testing.T) {
			data := readFixture(t, tc.fixture)
			objs, err := Convert(data, tc.opts)
			if err == nil {
				t.Fatalf("Convert: got %d objects and no error, want an error", len(objs))
			}
			if objs != nil {
				t.Errorf("Convert: got %d objects with the error, want none", len(objs))
			}
			got := policy.NewLocator(data).AnnotateDecode(err)
			if diff := cmp.Diff(tc.want, strings.Split(got.Error(), "\n")); diff != "" {
				t.Errorf("Convert: errors differ (-want +got):\n%s", diff)
			}
		})
	}
}

// TestConvertInline covers cases too small for a fixture.
func TestConvertInline(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		want     []string // substrings, one per error line
	}{
		{"scalar-document", "hello\n", []string{`document 1: want an object (a mapping with apiVersion, kind, metadata and spec), got a string ("hello")`}},
		{"missing-apiversion", "kind: PeerAuthentication\nmetadata: {name: a}\n", []string{`document 1 (PeerAuthentication "a"): apiVersion: is missing: want security.istio.io/v1`}},
		{"apiversion-not-string", "apiVersion: 1\nkind: PeerAuthentication\n", []string{`apiVersion: want a string such as "security.istio.io/v1", got a number (1)`}},
		{"missing-kind", "apiVersion: security.istio.io/v1\nmetadata: {name: a}\n", []string{`document 1: kind: is missing: want AuthorizationPolicy, PeerAuthentication or RequestAuthentication`}},
		{"kind-not-string", "apiVersion: security.istio.io/v1\nkind: [a]\n", []string{`document 1: kind: want a string, AuthorizationPolicy, PeerAuthentication or RequestAuthentication; got a list`}},
		{"list-items-not-a-list", "apiVersion: v1\nkind: List\nitems: {}\n", []string{`document 1 (List): items: want a list, got a mapping`}},
		{"list-item-not-an-object", "apiVersion: v1\nkind: List\nitems: [1]\n", []string{`document 1: items[0]: want an object (a mapping with apiVersion, kind, metadata and spec), got a number (1)`}},
		{"top-level-key-not-string", "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: a}\n1: x\n", []string{`document 1 (PeerAuthentication "default/a"): field names must be strings, got a number (1)`}},
		{"merge-not-a-mapping", "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: a}\nspec: {<<: [1]}\n", []string{`document 1 (PeerAuthentication "default/a"): spec: a merge key (<<) takes a mapping or a list of mappings, got a number (1)`}},
		{"mapping-key-not-scalar", "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: a}\nspec: {? [a] : b}\n", []string{`document 1 (PeerAuthentication "default/a"): spec: mapping keys must be strings, got a list`}},
		{"status-not-decoded", "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: a}\nstatus: {x: [1]}\nspec: {mtls: {mode: BOGUS}}\n", []string{`document 1 (PeerAuthentication "default/a"): spec.mtls.mode: "BOGUS" is not a mode: want UNSET, DISABLE, PERMISSIVE or STRICT`}},
		{"json-repeated-key", `{"kind": "PeerAuthentication", "kind": "PeerAuthentication"}`, []string{`document 1: invalid JSON: key "kind" is repeated; a key may appear only once in an object`}},
		{"json-truncated", `{"kind": `, []string{`document 1: invalid JSON: unexpected EOF`}},
		{"json-too-deep", `{"a":` + strings.Repeat("[", 200), []string{`document 1: invalid JSON: values are nested more than 100 levels deep`}},
		{
			"alias-bomb",
			"apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: a}\nx:\n a: &a [x, x, x, x, x, x, x, x, x, x]\n b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\n c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\n d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\n e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]\n",
			[]string{`document 1 (PeerAuthentication "default/a"): YAML aliases expand the input to too many nodes: write the object out without aliases (the rest of the input is not read)`},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Convert([]byte(tc.in), Options{})
			if err == nil {
				t.Fatal("Convert: got no error, want one")
			}
			lines := strings.Split(err.Error(), "\n")
			if len(lines) != len(tc.want) {
				t.Errorf("Convert: got %d error lines, want %d:\n%v", len(lines), len(tc.want), err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Convert: got error\n%v\nwant it to contain\n%s", err, w)
				}
			}
		})
	}
}

// TestConvertJoinsErrors checks that the errors are those of errors.Join,
// one per problem.
func TestConvertJoinsErrors(t *testing.T) {
	_, err := Convert(readFixture(t, "reqauthn-unsupported.yaml"), Options{})
	var joined interface{ Unwrap() []error }
	if !errors.As(err, &joined) {
		t.Fatalf("Convert: got %T, want a joined error", err)
	}
	if got := len(joined.Unwrap()); got != 5 {
		t.Errorf("Convert: got %d errors, want 5", got)
	}
}

// FuzzConvert checks that Convert never panics and that what it returns
// is valid trustmesh input.
func FuzzConvert(f *testing.F) {
	files, err := filepath.Glob(filepath.Join("testdata", "*.*"))
	if err != nil {
		f.Fatal(err)
	}
	for _, file := range files {
		f.Add(readFixture(f, filepath.Base(file)))
	}
	td := spiffeid.RequireTrustDomainFromString(DefaultTrustDomain)
	f.Fuzz(func(t *testing.T, data []byte) {
		objs, err := Convert(data, Options{SkipOtherKinds: len(data)%2 == 0})
		if err != nil {
			_ = policy.NewLocator(data).AnnotateDecode(err) // must not panic
			return
		}
		for _, obj := range objs {
			if err := policy.Validate(obj, td); err != nil {
				t.Fatalf("Convert returned an invalid object: %v", err)
			}
			y, err := policy.ToYAML(obj)
			if err != nil {
				t.Fatalf("ToYAML: %v", err)
			}
			again, err := policy.Decode(y)
			if err != nil {
				t.Fatalf("Decode(ToYAML(obj)): %v\n%s", err, y)
			}
			if diff := cmp.Diff([]policy.Object{obj}, again); diff != "" {
				t.Fatalf("Decode(ToYAML(obj)) differs (-want +got):\n%s", diff)
			}
		}
	})
}

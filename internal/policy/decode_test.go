package policy

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/golden")

func readFixture(t testing.TB, name string) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// fullWorkload is the Workload of testdata/multi-document.yaml.
func fullWorkload() *Workload {
	return &Workload{
		APIVersion: APIVersion,
		Kind:       KindWorkload,
		Metadata: Metadata{
			Name:      "web",
			Namespace: "shop",
			Labels:    map[string]string{"app": "web"},
		},
		Spec: WorkloadSpec{
			SPIFFEID:    "spiffe://example.org/ns/shop/sa/web",
			ParentID:    "spiffe://example.org/trustmesh/node/node-1",
			Selectors:   []string{"unix:uid:1000", "unix:path:/usr/bin/web"},
			X509SVIDTTL: Duration(30 * time.Minute),
			JWTSVIDTTL:  Duration(5 * time.Minute),
			DNSNames:    []string{"web.internal"},
			Hint:        "web",
		},
	}
}

func apiWorkload() *Workload {
	return &Workload{
		APIVersion: APIVersion,
		Kind:       KindWorkload,
		Metadata:   Metadata{Name: "api", Namespace: DefaultNamespace},
		Spec: WorkloadSpec{
			SPIFFEID:  "spiffe://example.org/ns/default/sa/api",
			ParentID:  "spiffe://example.org/trustmesh/node/node-1",
			Selectors: []string{"unix:uid:1001"},
		},
	}
}

func emptyMeshConfig() *MeshConfig {
	return &MeshConfig{APIVersion: APIVersion, Kind: KindMeshConfig, Metadata: Metadata{Name: "default"}}
}

func TestDecode(t *testing.T) {
	blockScalar := apiWorkload()
	blockScalar.Spec.Hint = "first\n---\nkind: NotADocument\n"
	for _, tc := range []struct {
		fixture string
		want    []Object
	}{
		{
			fixture: "multi-document.yaml",
			want: []Object{
				&MeshConfig{
					APIVersion: APIVersion,
					Kind:       KindMeshConfig,
					Metadata:   Metadata{Name: "default"},
					Spec: MeshConfigSpec{
						TrustDomain:     "example.org",
						DefaultMTLSMode: MTLSStrict,
						X509SVIDTTL:     Duration(time.Hour),
						JWTSVIDTTL:      Duration(5 * time.Minute),
					},
				},
				fullWorkload(),
			},
		},
		{
			fixture: "empty-documents.yaml",
			want:    []Object{apiWorkload()},
		},
		{
			fixture: "block-scalar-separator.yaml",
			want:    []Object{blockScalar, emptyMeshConfig()},
		},
		{
			fixture: "workload.json",
			want: []Object{
				&Workload{
					APIVersion: APIVersion,
					Kind:       KindWorkload,
					Metadata:   Metadata{Name: "web", Namespace: "default", Labels: map[string]string{"app": "web"}},
					Spec: WorkloadSpec{
						SPIFFEID:    "spiffe://example.org/ns/default/sa/web",
						ParentID:    "spiffe://example.org/trustmesh/node/node-1",
						Selectors:   []string{"unix:uid:1000"},
						X509SVIDTTL: Duration(30 * time.Minute),
					},
				},
				emptyMeshConfig(),
			},
		},
		{
			// Null and empty values decode as absent.
			fixture: "null-fields.yaml",
			want: []Object{
				&Workload{
					APIVersion: APIVersion,
					Kind:       KindWorkload,
					Metadata:   Metadata{Name: "web", Namespace: "default"},
					Spec:       WorkloadSpec{SPIFFEID: "spiffe://example.org/ns/default/sa/web"},
				},
			},
		},
		{
			fixture: "service.yaml",
			want:    []Object{fullService()},
		},
		{
			fixture: "service-endpoints-only.yaml",
			want:    []Object{endpointsService()},
		},
		{
			fixture: "peerauthentication.yaml",
			want: []Object{
				peerAuth(RootNamespace, "default", MTLSStrict, nil, nil),
				peerAuth("shop", "default", MTLSPermissive, nil, nil),
				portPeerAuth(),
			},
		},
		{
			// JSON object keys are strings: "8080".
			fixture: "peerauthentication.json",
			want:    []Object{withMode(portPeerAuth(), "")},
		},
		{
			fixture: "peerauthentication-port-key-quoted.yaml",
			want:    []Object{withMode(portPeerAuth(), "")},
		},
		{
			fixture: "revision-precondition.yaml",
			want: []Object{
				&Workload{
					APIVersion: APIVersion,
					Kind:       KindWorkload,
					Metadata:   Metadata{Name: "web", Namespace: "default", Revision: 42},
					Spec:       WorkloadSpec{SPIFFEID: "spiffe://example.org/ns/default/sa/web"},
				},
			},
		},
	} {
		t.Run(strings.TrimSuffix(tc.fixture, filepath.Ext(tc.fixture)), func(t *testing.T) {
			got, err := Decode(readFixture(t, tc.fixture))
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("Decode: objects differ (-want +got):\n%s", diff)
			}
		})
	}
}

func TestDecodeErrors(t *testing.T) {
	for _, tc := range []struct {
		fixture string
		// want are substrings of the error, each on its own line.
		want []string
	}{
		{"empty.yaml", []string{"no objects found"}},
		{"comments-only.yaml", []string{"no objects found"}},
		{"workload-unknown-field.yaml", []string{`document 2 (Workload "web"): unknown field "spec.selectr" (did you mean "selectors"?)`}},
		{"workload-unknown-field-metadata.yaml", []string{`document 1 (Workload "web"): unknown field "metadata.annotatons" (did you mean "annotations"?)`}},
		{"workload-unknown-field-top.yaml", []string{`document 1 (Workload "web"): unknown field "status" (known fields: apiVersion, kind, metadata, spec)`}},
		{"workload-field-wrong-case.yaml", []string{`unknown field "spec.spiffeId" (did you mean "spiffeID"? field names are case-sensitive)`}},
		{"workload-several-unknown-fields.yaml", []string{`unknown field "metadata.nme"`, `unknown field "spec.zzz"`}},
		{"errors-in-two-documents.yaml", []string{
			`document 1 (Workload "web"): unknown field "spec.selectr"`,
			`document 2: unknown kind "Gateway" (supported kinds: AuthorizationPolicy, MeshConfig, PeerAuthentication, RequestAuthentication, Service, Workload)`,
		}},
		{"bad-apiversion.yaml", []string{`document 1 (Workload "web"): apiVersion "trustmesh.dev/v2" is not supported: want "trustmesh.dev/v1"`}},
		{"missing-apiversion.yaml", []string{`document 1 (Workload "web"): apiVersion is missing: want "trustmesh.dev/v1"`}},
		{"apiversion-not-string.yaml", []string{`document 1 (Workload "web"): apiVersion: want the string "trustmesh.dev/v1", got a number (1)`}},
		{"kind-not-string.yaml", []string{`document 1: kind: want a string, one of AuthorizationPolicy, MeshConfig, PeerAuthentication, RequestAuthentication, Service, Workload; got a list`}},
		{"unknown-kind.yaml", []string{`document 1: unknown kind "Gateway" (supported kinds: AuthorizationPolicy, MeshConfig, PeerAuthentication, RequestAuthentication, Service, Workload)`}},
		{"kind-wrong-case.yaml", []string{`document 1: unknown kind "workload" (did you mean "Workload"?)`}},
		{"missing-kind.yaml", []string{`document 1: kind is missing: want one of AuthorizationPolicy, MeshConfig, PeerAuthentication, RequestAuthentication, Service, Workload`}},
		{"duplicate-key.yaml", []string{`document 1: line 5: key "name" is repeated`}},
		{"json-duplicate-key.json", []string{`document 1: invalid JSON: key "kind" is repeated`}},
		{"json-truncated.json", []string{`document 1: invalid JSON: unexpected EOF`}},
		{"duration-number.yaml", []string{`spec.x509SVIDTTL: want a duration such as "30m" or "1h", got a number (30)`}},
		{"duration-garbage.yaml", []string{`spec.x509SVIDTTL: invalid duration "half an hour"`}},
		{"duration-zero.yaml", []string{`document 1 (MeshConfig "default"): spec.jwtSVIDTTL: duration "0s" must be positive`}},
		{"label-value-boolean.yaml", []string{`metadata.labels["canary"]: want a string, got a boolean (true); quote the value`}},
		{"selectors-not-a-list.yaml", []string{`spec.selectors: want a list, got a string ("unix:uid:1000")`}},
		{"revision-not-integer.yaml", []string{`metadata.revision: want an integer, got a string ("7")`}},
		{"revision-too-large.yaml", []string{`metadata.revision: 18446744073709551615 is out of range for a 64-bit integer`}},
		{"non-string-key.yaml", []string{`document 1 (Workload "web"): metadata.labels: mapping keys must be strings, got a number (1); quote it`}},
		{"scalar-document.yaml", []string{`document 1: want an object (a mapping with apiVersion, kind, metadata and spec), got a string`}},
		{"list-document.yaml", []string{`document 1: want an object (a mapping with apiVersion, kind, metadata and spec), got a list`}},
		{"syntax-error.yaml", []string{`document 1: invalid YAML: line 4:`}},
		{"label-key-boolean.yaml", []string{`document 1 (Workload "web"): metadata.labels: mapping keys must be strings, got a boolean (true); quote it`}},
		{"workload-field-name-number.yaml", []string{`document 1 (Workload "web"): spec: field names must be strings, got a number (1)`}},
		{"service-port-not-a-number.yaml", []string{`document 1 (Service "orders"): spec.ports[0].port: want an integer, got a string ("http")`}},
		{"service-unknown-field.yaml", []string{
			`document 1 (Service "orders"): unknown field "spec.ports[0].targetport" (did you mean "targetPort"? field names are case-sensitive)`,
			`document 1 (Service "orders"): unknown field "spec.selector.matchLabel" (did you mean "matchLabels"?)`,
		}},
		{"peerauthentication-mtls-not-a-mapping.yaml", []string{`document 1 (PeerAuthentication "default"): spec.mtls: want a mapping, got a string ("STRICT")`}},
		{"peerauthentication-port-key-not-a-number.yaml", []string{`document 1 (PeerAuthentication "orders"): spec.portLevelMtls["abc"]: want an integer key, such as 8080, got a string ("abc")`}},
		{"peerauthentication-port-key-leading-zero.json", []string{`spec.portLevelMtls["08080"]: want an integer key, such as 8080, got a string ("08080")`}},
		{"peerauthentication-port-key-float.yaml", []string{`spec.portLevelMtls[8080.5]: want an integer key, such as 8080, got a number (8080.5)`}},
		{"peerauthentication-port-key-negative.yaml", []string{`spec.portLevelMtls[-1]: want an integer key from 0 up, got a number (-1)`}},
		{"peerauthentication-port-key-too-large.yaml", []string{`spec.portLevelMtls[4294967296]: 4294967296 is out of range for a 32-bit unsigned integer`}},
		{"peerauthentication-port-key-out-of-range.json", []string{
			`spec.portLevelMtls["4294967296"]: 4294967296 is out of range for a 32-bit unsigned integer`,
			`spec.portLevelMtls["99999999999999999999"]: 99999999999999999999 is out of range for a 32-bit unsigned integer`,
		}},
		{"peerauthentication-port-key-repeated.yaml", []string{`spec.portLevelMtls[8080]: the key 8080 is repeated; a key may appear only once in a mapping`}},
	} {
		t.Run(strings.TrimSuffix(tc.fixture, filepath.Ext(tc.fixture)), func(t *testing.T) {
			objs, err := Decode(readFixture(t, tc.fixture))
			if err == nil {
				t.Fatalf("Decode: got %d objects and no error, want an error", len(objs))
			}
			if objs != nil {
				t.Errorf("Decode: got %d objects with the error, want none", len(objs))
			}
			lines := strings.Split(err.Error(), "\n")
			if len(lines) != len(tc.want) {
				t.Errorf("Decode: got %d error lines, want %d:\n%v", len(lines), len(tc.want), err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Decode: got error\n%v\nwant it to contain\n%s", err, w)
				}
			}
		})
	}
}

// TestDecodeHostileInput checks that deeply nested input and alias bombs
// are refused with an error rather than exhausting the stack or memory.
func TestDecodeHostileInput(t *testing.T) {
	const depth = 100000
	laughs := "a: &a [x, x, x, x, x, x, x, x, x]\n"
	for c := 'b'; c <= 'j'; c++ {
		prev := string(c - 1)
		laughs += fmt.Sprintf("%c: &%c [*%s, *%s, *%s, *%s, *%s, *%s, *%s, *%s, *%s]\n", c, c, prev, prev, prev, prev, prev, prev, prev, prev, prev)
	}
	for _, tc := range []struct {
		name, in, want string
	}{
		{"json", `{"spec":` + strings.Repeat("[", depth) + strings.Repeat("]", depth) + "}", "nested more than 100 levels deep"},
		{"yaml", "spec: " + strings.Repeat("[", depth) + strings.Repeat("]", depth), "exceeded max depth"},
		{"yaml-alias-bomb", laughs, "excessive aliasing"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Decode([]byte(tc.in))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Decode: got error %v, want one containing %q", err, tc.want)
			}
		})
	}
}

// TestDecodeDefaultsNamespace checks that only namespaced kinds get the
// default namespace.
func TestDecodeDefaultsNamespace(t *testing.T) {
	objs, err := Decode([]byte(`
apiVersion: trustmesh.dev/v1
kind: MeshConfig
metadata: {name: default}
---
apiVersion: trustmesh.dev/v1
kind: Workload
metadata: {name: web}
`))
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range []string{"", DefaultNamespace} {
		if got := objs[i].GetMeta().Namespace; got != want {
			t.Errorf("%s: got namespace %q, want %q", objs[i].GetKind(), got, want)
		}
	}
}

func TestRoundTrip(t *testing.T) {
	withRevisions := fullWorkload()
	withRevisions.Metadata.Revision = 7
	withRevisions.Metadata.CreationRevision = 3
	for _, tc := range []struct {
		name string
		obj  Object
	}{
		{"workload-full", fullWorkload()},
		{"workload-revisions", withRevisions},
		{"workload-minimal", apiWorkload()},
		{"meshconfig-empty", emptyMeshConfig()},
		{"meshconfig-default", DefaultMeshConfig()},
		{"service-full", fullService()},
		{"service-endpoints-only", endpointsService()},
		{"service-empty-selector", &Service{APIVersion: APIVersion, Kind: KindService, Metadata: Metadata{Name: "a", Namespace: "b"}, Spec: ServiceSpec{Selector: &Selector{}}}},
		{"peerauthentication-ports", portPeerAuth()},
		{"peerauthentication-empty", peerAuth(RootNamespace, "default", "", nil, nil)},
		{"peerauthentication-unset-port", peerAuth("shop", "p", MTLSUnset, &Selector{MatchLabels: map[string]string{"a": "b"}}, map[uint32]PortMTLS{1: {}, 65535: {Mode: MTLSUnset}, 4294967295: {Mode: MTLSDisable}})},
	} {
		t.Run(tc.name, func(t *testing.T) {
			data, err := Marshal(tc.obj)
			if err != nil {
				t.Fatalf("Marshal: %v", err)
			}
			got, err := Unmarshal(tc.obj.GetKind(), data)
			if err != nil {
				t.Fatalf("Unmarshal(%s): %v", data, err)
			}
			if diff := cmp.Diff(tc.obj, got); diff != "" {
				t.Errorf("Unmarshal(Marshal(obj)) differs from obj (-want +got):\n%s", diff)
			}
			again, err := Marshal(got)
			if err != nil {
				t.Fatalf("Marshal: %v", err)
			}
			if string(again) != string(data) {
				t.Errorf("Marshal is not canonical: got\n%s\nthen\n%s", data, again)
			}

			y, err := ToYAML(tc.obj)
			if err != nil {
				t.Fatalf("ToYAML: %v", err)
			}
			objs, err := Decode(y)
			if err != nil {
				t.Fatalf("Decode(ToYAML(obj)): %v\n%s", err, y)
			}
			if diff := cmp.Diff([]Object{tc.obj}, objs); diff != "" {
				t.Errorf("Decode(ToYAML(obj)) differs from obj (-want +got):\n%s", diff)
			}
		})
	}
}

// TestGolden pins the canonical JSON and the YAML of full objects. Run
// with -update to rewrite the files after a deliberate change.
func TestGolden(t *testing.T) {
	wl := fullWorkload()
	wl.Metadata.Revision = 7
	wl.Metadata.CreationRevision = 3
	for _, tc := range []struct {
		name string
		obj  Object
	}{
		{"workload-full", wl},
		{"service-full", fullService()},
		// Port keys are strings in JSON, and quoted in YAML.
		{"peerauthentication-full", portPeerAuth()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			j, err := Marshal(tc.obj)
			if err != nil {
				t.Fatal(err)
			}
			y, err := ToYAML(tc.obj)
			if err != nil {
				t.Fatal(err)
			}
			for _, f := range []struct {
				name string
				got  []byte
			}{
				{tc.name + ".json", append(j, '\n')},
				{tc.name + ".yaml", y},
			} {
				checkGolden(t, filepath.Join("testdata", "golden", f.name), f.got)
			}
		})
	}
}

// checkGolden compares got with the golden file at path, or rewrites the
// file with -update.
func checkGolden(t *testing.T, path string, got []byte) {
	t.Helper()
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
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

func TestMarshalFillsTypeMeta(t *testing.T) {
	w := &Workload{Metadata: Metadata{Name: "web", Namespace: "default"}}
	data, err := Marshal(w)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"apiVersion":"trustmesh.dev/v1","kind":"Workload","metadata":{"name":"web","namespace":"default"},"spec":{}}`
	if string(data) != want {
		t.Errorf("Marshal: got %s, want %s", data, want)
	}
	if w.APIVersion != "" || w.Kind != "" {
		t.Errorf("Marshal changed its argument: apiVersion %q, kind %q", w.APIVersion, w.Kind)
	}
}

func TestMarshalRejectsNonObjects(t *testing.T) {
	for _, tc := range []struct {
		name string
		obj  Object
	}{
		{"nil", nil},
		{"nil-workload", (*Workload)(nil)},
		{"foreign-type", foreign{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := Marshal(tc.obj); err == nil {
				t.Error("Marshal: got no error, want one")
			}
			if _, err := ToYAML(tc.obj); err == nil {
				t.Error("ToYAML: got no error, want one")
			}
			if err := Validate(tc.obj, testTD); err == nil {
				t.Error("Validate: got no error, want one")
			}
		})
	}
}

type foreign struct{}

func (foreign) GetKind() string    { return "Foreign" }
func (foreign) GetMeta() *Metadata { return &Metadata{} }
func (foreign) Namespaced() bool   { return false }

func TestUnmarshalErrors(t *testing.T) {
	for _, tc := range []struct {
		name, kind, data, want string
	}{
		{"unknown-kind", "Gateway", `{}`, `unknown kind "Gateway"`},
		{"kind-mismatch", KindWorkload, `{"apiVersion":"trustmesh.dev/v1","kind":"MeshConfig","metadata":{"name":"default"}}`, `kind "MeshConfig": want "Workload"`},
		{"trailing-data", KindWorkload, `{"apiVersion":"trustmesh.dev/v1","kind":"Workload"} {}`, "data after the object"},
		{"unknown-field", KindWorkload, `{"apiVersion":"trustmesh.dev/v1","kind":"Workload","spec":{"x":1}}`, `unknown field "spec.x"`},
		{"not-json", KindWorkload, `kind: Workload`, "invalid JSON"},
		{"empty", KindWorkload, ``, "invalid JSON: unexpected EOF"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Unmarshal(tc.kind, []byte(tc.data))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Unmarshal: got error %v, want one containing %q", err, tc.want)
			}
		})
	}
}

// TestYAMLRoundTripStrings checks that strings YAML gives special meaning
// survive ToYAML and Decode unchanged.
func TestYAMLRoundTripStrings(t *testing.T) {
	for _, s := range []string{
		"a\tb", " leading", "trailing ", "line1\nline2 ", "line1\n line2", "\n", "\n\n", "a\n\n", "\x00", "\u2028", "\u2029", "\ufeff", "\ufeffx",
		"null", "~", "yes", "no", "on", "off", "y", "n", "0x10", "0o7", "1e3", ".inf", "-.inf", ".nan", "1_000", "0b101", "- x", "#c", "a #c", ": x", "a: b", "'", "\"", "\r\n", "\r",
		"\x7f", "\u0085", "\u00a0", "---", "...", "--- x", "&a", "*a", "!tag", "%YAML", "@x", "`x", "|", ">", "?", "[", "{", ",",
		"2001-12-14", "2001-12-14t21:59:43.10-05:00", "<<", "=", "\t", " ", "", "\x1b", "\U0001F600", "\xef\xbf\xbd", "a\u0085b", "\u2028\n",
	} {
		w := validWorkload()
		w.Spec.Hint = s
		w.Metadata.Labels = map[string]string{s: s}
		w.Spec.Selectors = []string{s}
		y, err := ToYAML(w)
		if err != nil {
			t.Errorf("ToYAML(hint %q): %v", s, err)
			continue
		}
		objs, err := Decode(y)
		if err != nil {
			t.Errorf("Decode(ToYAML(hint %q)): %v\n%s", s, err, y)
			continue
		}
		if diff := cmp.Diff([]Object{w}, objs); diff != "" {
			t.Errorf("hint %q: Decode(ToYAML(obj)) differs (-want +got):\n%s\n%s", s, diff, y)
		}
	}
}

// FuzzDecode checks that Decode never panics and that whatever it decodes
// survives Marshal/Unmarshal and ToYAML/Decode unchanged.
func FuzzDecode(f *testing.F) {
	files, err := filepath.Glob(filepath.Join("testdata", "*.*"))
	if err != nil {
		f.Fatal(err)
	}
	for _, file := range files {
		f.Add(readFixture(f, filepath.Base(file)))
	}
	// Forms of the newer kinds that the fixtures do not hold: mapping keys
	// of every scalar type, and selectors and modes at their edges.
	for _, s := range []string{
		"{kind: PeerAuthentication, apiVersion: trustmesh.dev/v1, metadata: {name: a}, spec: {selector: {matchLabels: {a: b}}, portLevelMtls: {0: {}, 65536: {mode: UNSET}, \"1\": null, 0x50: {}}}}",
		"{kind: PeerAuthentication, apiVersion: trustmesh.dev/v1, metadata: {name: a}, spec: {portLevelMtls: {true: {}, ~: {}, 1e3: {}}}}",
		"{kind: PeerAuthentication, apiVersion: trustmesh.dev/v1, metadata: {name: a, namespace: trustmesh-system}, spec: {selector: {}, mtls: {}}}",
		`{"kind":"PeerAuthentication","apiVersion":"trustmesh.dev/v1","metadata":{"name":"a"},"spec":{"portLevelMtls":{"+1":{},"1 ":{},"":{}}}}`,
		"{kind: Service, apiVersion: trustmesh.dev/v1, metadata: {name: a}, spec: {ports: [{port: 0}, {port: 4294967296}], selector: {matchLabels: {}}, endpoints: [{}], spiffeIDs: []}}",
		"{kind: Service, apiVersion: trustmesh.dev/v1, metadata: {name: a, labels: {1: x}}, spec: {selector: {matchLabels: {8080: x}}}}",
		"{kind: AuthorizationPolicy, apiVersion: trustmesh.dev/v1, metadata: {name: a, annotations: {trustmesh.dev/dry-run: \"true\"}}, spec: {action: DENY, rules: [{from: [{source: {principals: [\"*\"], notIpBlocks: [\"::ffff:10.0.0.0/104\"]}}], to: [{operation: {paths: [\"/a*\"], ports: [\"80\"]}}], when: [{key: \"request.auth.claims[a][b]\", values: [x]}]}]}}",
		"{kind: AuthorizationPolicy, apiVersion: trustmesh.dev/v1, metadata: {name: a}, spec: {action: CUSTOM, provider: {name: p, rego: \"package x\\nallow := true\"}, rules: [{}]}}",
		"{kind: RequestAuthentication, apiVersion: trustmesh.dev/v1, metadata: {name: a}, spec: {jwtRules: [{issuer: i, jwks: '{\"keys\":[{}]}', fromHeaders: [{name: x, prefix: \"B \"}], outputClaimToHeaders: [{header: h, claim: c}]}]}}",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		objs, err := Decode(data)
		if err != nil {
			return
		}
		for _, obj := range objs {
			j, err := Marshal(obj)
			if err != nil {
				t.Fatalf("Marshal: %v", err)
			}
			got, err := Unmarshal(obj.GetKind(), j)
			if err != nil {
				t.Fatalf("Unmarshal(%s): %v", j, err)
			}
			if diff := cmp.Diff(obj, got); diff != "" {
				t.Fatalf("Unmarshal(Marshal(obj)) differs (-want +got):\n%s", diff)
			}
			y, err := ToYAML(obj)
			if err != nil {
				t.Fatalf("ToYAML: %v", err)
			}
			again, err := Decode(y)
			if err != nil {
				t.Fatalf("Decode(ToYAML(obj)): %v\n%s", err, y)
			}
			if diff := cmp.Diff([]Object{obj}, again); diff != "" {
				t.Fatalf("Decode(ToYAML(obj)) differs (-want +got):\n%s\nYAML:\n%s", diff, y)
			}
			_ = Validate(obj, testTD) // must not panic
		}
	})
}

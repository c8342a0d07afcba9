package policy

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

var testTD = spiffeid.RequireTrustDomainFromString("example.org")

func validWorkload() *Workload {
	return &Workload{
		APIVersion: APIVersion,
		Kind:       KindWorkload,
		Metadata: Metadata{
			Name:      "web",
			Namespace: "default",
			Labels:    map[string]string{"app": "web", "app.kubernetes.io/part-of": "shop", "empty": ""},
		},
		Spec: WorkloadSpec{
			SPIFFEID:    "spiffe://example.org/ns/default/sa/web",
			ParentID:    "spiffe://example.org/trustmesh/node/node-1",
			Selectors:   []string{"unix:uid:1000", "unix:path:/usr/bin/web"},
			X509SVIDTTL: Duration(30 * time.Minute),
			JWTSVIDTTL:  Duration(5 * time.Minute),
			DNSNames:    []string{"web.internal", "web"},
			Hint:        "web",
		},
	}
}

func validMeshConfig() *MeshConfig {
	return &MeshConfig{
		APIVersion: APIVersion,
		Kind:       KindMeshConfig,
		Metadata:   Metadata{Name: "default"},
		Spec: MeshConfigSpec{
			TrustDomain:     "example.org",
			DefaultMTLSMode: MTLSPermissive,
			X509SVIDTTL:     Duration(24 * time.Hour),
			JWTSVIDTTL:      Duration(time.Minute),
		},
	}
}

func TestValidateAccepts(t *testing.T) {
	for _, tc := range []struct {
		name string
		obj  Object
	}{
		{"workload-full", validWorkload()},
		{"workload-minimal", apiWorkload()},
		{"workload-no-type-meta", &Workload{
			Metadata: Metadata{Name: "a.b-c", Namespace: "x"},
			Spec:     WorkloadSpec{SPIFFEID: "spiffe://example.org/a", ParentID: "spiffe://example.org/trustmesh/node/n", Selectors: []string{"unix:gid:0"}},
		}},
		{"meshconfig-full", validMeshConfig()},
		{"meshconfig-empty", emptyMeshConfig()},
		{"meshconfig-default", DefaultMeshConfig()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := Validate(tc.obj, testTD); err != nil {
				t.Errorf("Validate: got %v, want nil", err)
			}
		})
	}
}

// TestValidateFixtures checks that the valid example files decode and
// validate.
func TestValidateFixtures(t *testing.T) {
	for _, f := range []string{
		"multi-document.yaml", "empty-documents.yaml", "workload.json",
		"service.yaml", "service-endpoints-only.yaml",
		"peerauthentication.yaml", "peerauthentication.json", "peerauthentication-port-key-quoted.yaml",
	} {
		t.Run(f, func(t *testing.T) {
			objs, err := Decode(readFixture(t, f))
			if err != nil {
				t.Fatal(err)
			}
			for _, obj := range objs {
				if err := Validate(obj, testTD); err != nil {
					t.Errorf("Validate: %v", err)
				}
			}
		})
	}
}

func TestValidateWorkload(t *testing.T) {
	for _, tc := range []struct {
		name   string
		modify func(w *Workload)
		// want is in the error message, after the object's name.
		want string
	}{
		{"name-missing", func(w *Workload) { w.Metadata.Name = "" }, "metadata.name: is required"},
		{"name-uppercase", func(w *Workload) { w.Metadata.Name = "Web" }, `metadata.name: "Web" is not a valid name: use lowercase letters`},
		{"name-too-long", func(w *Workload) { w.Metadata.Name = strings.Repeat("a", 254) }, "metadata.name: " + `"` + strings.Repeat("a", 254) + `" is not a valid name: it is 254 characters long; at most 253 are allowed`},
		{"name-empty-part", func(w *Workload) { w.Metadata.Name = "web..x" }, `metadata.name: "web..x" is not a valid name`},
		{"namespace-dot", func(w *Workload) { w.Metadata.Namespace = "a.b" }, `metadata.namespace: "a.b" is not a valid namespace: use lowercase letters, digits and '-'`},
		{"namespace-missing", func(w *Workload) { w.Metadata.Namespace = "" }, "metadata.namespace: is required"},
		{"label-key-bad", func(w *Workload) { w.Metadata.Labels = map[string]string{"-app": "web"} }, `metadata.labels["-app"]: invalid label key: use letters, digits`},
		{"label-key-bad-prefix", func(w *Workload) { w.Metadata.Labels = map[string]string{"Example.org/app": "web"} }, `metadata.labels["Example.org/app"]: invalid label key: prefix "Example.org"`},
		{"label-key-empty-name", func(w *Workload) { w.Metadata.Labels = map[string]string{"example.org/": "web"} }, `metadata.labels["example.org/"]: invalid label key: the name part is empty`},
		{"label-value-bad", func(w *Workload) { w.Metadata.Labels = map[string]string{"app": "web app"} }, `metadata.labels["app"]: invalid label value "web app": use letters`},
		{"label-value-too-long", func(w *Workload) { w.Metadata.Labels = map[string]string{"app": strings.Repeat("a", 64)} }, `metadata.labels["app"]: invalid label value "` + strings.Repeat("a", 64) + `": it is 64 characters long; at most 63 are allowed`},
		{"revision-negative", func(w *Workload) { w.Metadata.Revision = -1 }, "metadata.revision: -1 is negative"},
		{"apiversion-wrong", func(w *Workload) { w.APIVersion = "v1" }, `apiVersion: "v1" is not supported: want "trustmesh.dev/v1"`},
		{"kind-wrong", func(w *Workload) { w.Kind = "MeshConfig" }, `kind: "MeshConfig" does not match the object's type: want "Workload"`},

		{"spiffeid-missing", func(w *Workload) { w.Spec.SPIFFEID = "" }, "spec.spiffeID: is required: the workload's identity, such as spiffe://example.org/ns/default/sa/web"},
		{"spiffeid-uppercase-trust-domain", func(w *Workload) { w.Spec.SPIFFEID = "spiffe://Example.org/a" }, `spec.spiffeID: "spiffe://Example.org/a" is not a valid SPIFFE ID: trust domain characters must be lowercase letters, digits, dots, dashes or underscores (found "E"; write the trust domain in lowercase)`},
		{"spiffeid-other-trust-domain", func(w *Workload) { w.Spec.SPIFFEID = "spiffe://example.com/a" }, `spec.spiffeID: "spiffe://example.com/a" is not in this server's trust domain "example.org"`},
		{"spiffeid-no-path", func(w *Workload) { w.Spec.SPIFFEID = "spiffe://example.org" }, `spec.spiffeID: "spiffe://example.org" has no path: a workload ID needs one`},
		{"spiffeid-reserved-node", func(w *Workload) { w.Spec.SPIFFEID = "spiffe://example.org/trustmesh/node/node-1" }, `spec.spiffeID: "spiffe://example.org/trustmesh/node/node-1": paths under /trustmesh/ are reserved for nodes, the server and admins; a workload with such an ID could impersonate one of them`},
		{"spiffeid-reserved-root", func(w *Workload) { w.Spec.SPIFFEID = "spiffe://example.org/trustmesh" }, `spec.spiffeID: "spiffe://example.org/trustmesh": paths under /trustmesh/ are reserved`},

		{"parentid-missing", func(w *Workload) { w.Spec.ParentID = "" }, "spec.parentID: is required: the node agent allowed to serve this workload"},
		{"parentid-invalid", func(w *Workload) { w.Spec.ParentID = "spiffe://example.org/trustmesh/node/" }, `spec.parentID: "spiffe://example.org/trustmesh/node/" is not a valid SPIFFE ID: the path must not end with a slash`},
		{"parentid-not-node", func(w *Workload) { w.Spec.ParentID = "spiffe://example.org/ns/default/sa/web" }, `spec.parentID: "spiffe://example.org/ns/default/sa/web" is not a node agent's ID: want spiffe://example.org/trustmesh/node/<node name>`},
		{"parentid-node-subpath", func(w *Workload) { w.Spec.ParentID = "spiffe://example.org/trustmesh/node/a/b" }, `spec.parentID: "spiffe://example.org/trustmesh/node/a/b" is not a node agent's ID`},
		{"parentid-other-trust-domain", func(w *Workload) { w.Spec.ParentID = "spiffe://evil.org/trustmesh/node/n" }, `spec.parentID: "spiffe://evil.org/trustmesh/node/n" is not in this server's trust domain "example.org"`},

		{"selectors-empty", func(w *Workload) { w.Spec.Selectors = nil }, "spec.selectors: at least one selector is required; an empty list would match every process"},
		{"selector-invalid", func(w *Workload) { w.Spec.Selectors = []string{"unix:uid:1000", "unix:uid:root"} }, `spec.selectors[1]: selector "unix:uid:root": uid must be a decimal number, got "root"`},
		{"selector-unknown-type", func(w *Workload) { w.Spec.Selectors = []string{"k9s:sa:web"} }, `spec.selectors[0]: selector "k9s:sa:web": unknown type "k9s" (supported: unix, k8s)`},
		{"selector-duplicate", func(w *Workload) { w.Spec.Selectors = []string{"unix:uid:1000", "unix:gid:1", "unix:uid:1000"} }, `spec.selectors[2]: "unix:uid:1000" repeats spec.selectors[0]`},

		{"x509-ttl-too-short", func(w *Workload) { w.Spec.X509SVIDTTL = Duration(59 * time.Second) }, "spec.x509SVIDTTL: 59s is out of range: an SVID lifetime must be between 1m and 24h"},
		{"x509-ttl-too-long", func(w *Workload) { w.Spec.X509SVIDTTL = Duration(25 * time.Hour) }, "spec.x509SVIDTTL: 25h is out of range: an SVID lifetime must be between 1m and 24h"},
		{"jwt-ttl-negative", func(w *Workload) { w.Spec.JWTSVIDTTL = Duration(-time.Minute) }, "spec.jwtSVIDTTL: -1m is out of range"},

		{"dnsname-invalid", func(w *Workload) { w.Spec.DNSNames = []string{"web_1.internal"} }, `spec.dnsNames[0]: "web_1.internal" is not a valid DNS name: use lowercase letters`},
		{"dnsname-uppercase", func(w *Workload) { w.Spec.DNSNames = []string{"Web.internal"} }, `spec.dnsNames[0]: "Web.internal" is not a valid DNS name: write DNS names in lowercase`},
		{"dnsname-wildcard", func(w *Workload) { w.Spec.DNSNames = []string{"*.internal"} }, `spec.dnsNames[0]: "*.internal" is not a valid DNS name: wildcard names are not allowed`},
		{"dnsname-ip", func(w *Workload) { w.Spec.DNSNames = []string{"10.0.0.1"} }, `spec.dnsNames[0]: "10.0.0.1" is not a valid DNS name: it is an IP address; dnsNames holds DNS names only`},
		{"dnsname-trailing-dot", func(w *Workload) { w.Spec.DNSNames = []string{"web.internal."} }, `spec.dnsNames[0]: "web.internal." is not a valid DNS name: leave out the trailing dot`},
		{"dnsname-duplicate", func(w *Workload) { w.Spec.DNSNames = []string{"a", "b", "a"} }, `spec.dnsNames[2]: "a" repeats spec.dnsNames[0]`},

		{"hint-control-character", func(w *Workload) { w.Spec.Hint = "a\nb" }, `spec.hint: "a\nb" contains a control or non-printable character`},
		{"hint-too-long", func(w *Workload) { w.Spec.Hint = strings.Repeat("h", 257) }, "spec.hint: it is 257 bytes long; at most 256 are allowed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := validWorkload()
			tc.modify(w)
			err := Validate(w, testTD)
			if err == nil {
				t.Fatalf("Validate: got nil, want an error containing %q", tc.want)
			}
			// How messages name the workload: `Workload "default/web"`.
			prefix := fmt.Sprintf("Workload %q: ", w.Metadata.Namespace+"/"+w.Metadata.Name)
			switch {
			case w.Metadata.Name == "":
				prefix = "Workload (no name): "
			case w.Metadata.Namespace == "":
				prefix = fmt.Sprintf("Workload %q: ", w.Metadata.Name)
			}
			if !strings.HasPrefix(err.Error(), prefix) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Validate: got\n%v\nwant\n%s%s", err, prefix, tc.want)
			}
			if n := strings.Count(err.Error(), "\n") + 1; n != 1 {
				t.Errorf("Validate: got %d problems, want 1:\n%v", n, err)
			}
		})
	}
}

func TestValidateMeshConfig(t *testing.T) {
	for _, tc := range []struct {
		name   string
		modify func(m *MeshConfig)
		want   string
	}{
		{"name-not-default", func(m *MeshConfig) { m.Metadata.Name = "main" }, `MeshConfig "main": metadata.name: "main": the MeshConfig must be named "default"`},
		{"namespace-set", func(m *MeshConfig) { m.Metadata.Namespace = "default" }, `MeshConfig "default": metadata.namespace: MeshConfig is cluster-scoped: remove the namespace "default"`},
		{"trust-domain-other", func(m *MeshConfig) { m.Spec.TrustDomain = "example.com" }, `MeshConfig "default": spec.trustDomain: "example.com" is not this server's trust domain "example.org"`},
		{"trust-domain-uri", func(m *MeshConfig) { m.Spec.TrustDomain = "spiffe://example.org" }, `spec.trustDomain: "spiffe://example.org": write the trust domain name only, such as "example.org"`},
		{"trust-domain-invalid", func(m *MeshConfig) { m.Spec.TrustDomain = "example.org:443" }, `spec.trustDomain: "example.org:443" is not a valid trust domain: trust domain characters must be lowercase letters, digits, dots, dashes or underscores (found ":": a port is not allowed)`},
		{"mtls-mode-unknown", func(m *MeshConfig) { m.Spec.DefaultMTLSMode = "strict" }, `spec.defaultMTLSMode: "strict" is not a mode: want STRICT, PERMISSIVE or DISABLE`},
		{"x509-ttl-too-long", func(m *MeshConfig) { m.Spec.X509SVIDTTL = Duration(48 * time.Hour) }, "spec.x509SVIDTTL: 48h is out of range"},
		{"jwt-ttl-too-short", func(m *MeshConfig) { m.Spec.JWTSVIDTTL = Duration(time.Second) }, "spec.jwtSVIDTTL: 1s is out of range"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := validMeshConfig()
			tc.modify(m)
			err := Validate(m, testTD)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Validate: got\n%v\nwant an error containing\n%s", err, tc.want)
			}
		})
	}
}

// TestValidateReportsAll checks that every problem is reported, one per line.
func TestValidateReportsAll(t *testing.T) {
	w := &Workload{Metadata: Metadata{Name: "web", Namespace: "default"}}
	w.Spec.SPIFFEID = "spiffe://example.org/trustmesh/server"
	w.Spec.Selectors = []string{"unix:uid:x"}
	w.Spec.JWTSVIDTTL = Duration(time.Second)
	err := Validate(w, testTD)
	if err == nil {
		t.Fatal("Validate: got nil, want errors")
	}
	want := []string{
		`Workload "default/web": spec.spiffeID: "spiffe://example.org/trustmesh/server": paths under /trustmesh/ are reserved`,
		`Workload "default/web": spec.parentID: is required`,
		`Workload "default/web": spec.selectors[0]: selector "unix:uid:x"`,
		`Workload "default/web": spec.jwtSVIDTTL: 1s is out of range`,
	}
	lines := strings.Split(err.Error(), "\n")
	if len(lines) != len(want) {
		t.Fatalf("Validate: got %d lines, want %d:\n%v", len(lines), len(want), err)
	}
	for i := range want {
		if !strings.HasPrefix(lines[i], want[i]) {
			t.Errorf("Validate: line %d: got\n%s\nwant it to start with\n%s", i, lines[i], want[i])
		}
	}
}

func TestValidateNeedsTrustDomain(t *testing.T) {
	if err := Validate(validWorkload(), spiffeid.TrustDomain{}); err == nil {
		t.Error("Validate with no trust domain: got nil, want an error")
	}
}

// TestSPIFFEIDRules has one case per rule of the SPIFFE ID specification.
func TestSPIFFEIDRules(t *testing.T) {
	for _, tc := range []struct {
		name, id, want string
	}{
		{"valid", "spiffe://example.org/ns/a_b/sa/C-1.x", ""},
		{"valid-trust-domain-only", "spiffe://my_domain-1.example.org", ""},
		{"empty", "", "it is empty"},
		{"no-scheme", "example.org/a", `it must start with "spiffe://" followed by the trust domain`},
		{"wrong-scheme", "https://example.org/a", `the scheme must be "spiffe", not "https"`},
		{"uppercase-scheme", "SPIFFE://example.org/a", `the scheme must be written in lowercase: "spiffe://"`},
		{"single-slash", "spiffe:/example.org/a", `it must start with "spiffe://"`},
		{"missing-trust-domain", "spiffe:///a", "the trust domain is missing"},
		{"trust-domain-uppercase", "spiffe://Example.org/a", `trust domain characters must be lowercase letters, digits, dots, dashes or underscores (found "E"; write the trust domain in lowercase)`},
		{"trust-domain-userinfo", "spiffe://user@example.org/a", `(found "@": user info is not allowed)`},
		{"trust-domain-port", "spiffe://example.org:8443/a", `(found ":": a port is not allowed)`},
		{"trust-domain-non-ascii", "spiffe://exämple.org/a", `(found "ä")`},
		{"trust-domain-query", "spiffe://example.org?x=1", `(found "?": a query is not allowed)`},
		{"trust-domain-too-long", "spiffe://" + strings.Repeat("a", 256), "the trust domain is 256 characters long; at most 255 are allowed"},
		{"too-long", "spiffe://example.org/" + strings.Repeat("a", 2048), "a SPIFFE ID is at most 2048 bytes"},
		{"empty-segment", "spiffe://example.org/a//b", `path segments must not be empty (found "//")`},
		{"trailing-slash", "spiffe://example.org/a/", "the path must not end with a slash"},
		{"root-slash", "spiffe://example.org/", "the path must not end with a slash"},
		{"dot-segment", "spiffe://example.org/a/./b", `path segments must not be "." or ".." (found "/.")`},
		{"dot-dot-segment", "spiffe://example.org/a/..", `path segments must not be "." or ".." (found "/..")`},
		{"segment-char", "spiffe://example.org/a/b:c", `path segment characters must be letters, digits, dots, dashes or underscores (found ":" in segment "b:c")`},
		{"query", "spiffe://example.org/a?x=1", `(found "?" in segment "a?x=1": a query is not allowed)`},
		{"fragment", "spiffe://example.org/a#frag", `(found "#" in segment "a#frag": a fragment is not allowed)`},
		{"percent-encoding", "spiffe://example.org/a%20b", `(found "%" in segment "a%20b": percent-encoding is not allowed)`},
		{"invalid-utf8", "spiffe://example.org/a\xff", `(found "\xff" in segment "a\xff")`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id, err := parseSPIFFEID(tc.id)
			if tc.want == "" {
				if err != nil {
					t.Fatalf("parseSPIFFEID(%q): got %v, want nil", tc.id, err)
				}
				if id.String() != tc.id {
					t.Errorf("parseSPIFFEID(%q): got ID %q", tc.id, id)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("parseSPIFFEID(%q): got error %v, want one containing %q", tc.id, err, tc.want)
			}
		})
	}
}

// FuzzValidateSPIFFEID checks that parseSPIFFEID never panics, agrees with
// go-spiffe on every ID go-spiffe rejects, and returns the ID it was given.
func FuzzValidateSPIFFEID(f *testing.F) {
	for _, s := range []string{
		"spiffe://example.org/ns/default/sa/web", "spiffe://example.org", "spiffe://Example.org/a",
		"spiffe://example.org/a//b", "spiffe://example.org/./a", "spiffe://u@example.org:1/a?q#f",
		"spiffe:///", "SPIFFE://x/y", "", "spiffe://example.org/trustmesh/node/n", "spiffe://é/%",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		id, err := parseSPIFFEID(s)
		_, gsErr := spiffeid.FromString(s)
		if gsErr != nil && err == nil {
			t.Fatalf("parseSPIFFEID(%q) accepted what go-spiffe rejects: %v", s, gsErr)
		}
		if err != nil {
			if gsErr == nil && len(s) <= maxSPIFFEIDLength && !strings.Contains(err.Error(), "characters long") {
				t.Fatalf("parseSPIFFEID(%q) rejected what go-spiffe accepts: %v", s, err)
			}
			return
		}
		if id.String() != s {
			t.Fatalf("parseSPIFFEID(%q) = %q", s, id)
		}
		w := validWorkload()
		w.Spec.SPIFFEID = s
		_ = Validate(w, testTD) // must not panic
	})
}

package policy

import (
	"bytes"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// locateYAMLInput has the line numbers in its comments.
const locateYAMLInput = `# a comment on line 1
---
# nothing here: document 1 is empty
---
apiVersion: trustmesh.dev/v1 # line 5
kind: AuthorizationPolicy
metadata:
  name: web
  labels: {app: web, "app.kubernetes.io/name": web}
  annotations:
    "trustmesh.dev/dry-run": "true" # line 11
spec:
  selector:
    matchLabels:
      app: web
  rules:
  - from: # line 17
    - source:
        principals: ["cluster.local/ns/a/sa/b"]
    - source:
        principals: # line 21
        - cluster.local/ns/c/sa/d
        # a comment between items
        - cluster.local/ns/e/sa/f # line 24
    to:
    - {operation: {methods: [GET], paths: ["/x"]}} # line 26
  - when:
    - key: request.auth.claims[iss] # line 28
      values:
      - https://issuer.example
---
---
apiVersion: trustmesh.dev/v1 # line 33: document 4
kind: PeerAuthentication
metadata: {name: ports, namespace: shop}
spec:
  selector: {matchLabels: {app: web}}
  portLevelMtls:
    8080: # line 39
      mode: STRICT
    "9090": {mode: PERMISSIVE} # line 41
    0x50: {mode: DISABLE}
  mtls:
`

const locateJSONInput = `{
  "apiVersion": "trustmesh.dev/v1",
  "kind": "Workload",
  "metadata": {"name": "web",
    "labels": {"app": "web"}},
  "spec": {
    "selectors": [
      "unix:uid:1000",
      "unix:path:/usr/bin/web\/x"
    ]
  }
}
{"apiVersion": "trustmesh.dev/v1", "kind": "PeerAuthentication",
 "metadata": {"name": "p"},
 "spec": {"portLevelMtls": {"8080": {"mode": "STRICT"}}}}
`

func TestLocatorLine(t *testing.T) {
	yamlLoc := NewLocator([]byte(locateYAMLInput))
	jsonLoc := NewLocator([]byte(locateJSONInput))
	for _, tc := range []struct {
		name string
		loc  *Locator
		doc  int
		path string
		want int
	}{
		{"empty-document", yamlLoc, 1, "spec", 0},
		{"document-root", yamlLoc, 2, "", 5},
		{"top-level-field", yamlLoc, 2, "kind", 6},
		{"nested-field", yamlLoc, 2, "metadata.name", 8},
		{"flow-mapping-key", yamlLoc, 2, `metadata.labels["app"]`, 9},
		{"quoted-key-with-dots", yamlLoc, 2, `metadata.labels["app.kubernetes.io/name"]`, 9},
		{"quoted-annotation-key", yamlLoc, 2, `metadata.annotations["trustmesh.dev/dry-run"]`, 11},
		{"list-of-mappings", yamlLoc, 2, "spec.rules[0].from", 17},
		{"list-item", yamlLoc, 2, "spec.rules[0].from[1].source.principals", 21},
		{"item-after-comment", yamlLoc, 2, "spec.rules[0].from[1].source.principals[1]", 24},
		{"flow-item", yamlLoc, 2, "spec.rules[0].to[0].operation.paths[0]", 26},
		{"second-rule", yamlLoc, 2, "spec.rules[1].when[0].key", 28},
		{"missing-field", yamlLoc, 2, "spec.rules[1].when[0].notValues", 28},
		{"missing-top-level-field", yamlLoc, 2, "status", 5},
		{"missing-nested-fields", yamlLoc, 2, "spec.selector.matchLabels.x.y", 14},
		{"index-out-of-range", yamlLoc, 2, "spec.rules[7].from", 16},
		{"index-of-mapping", yamlLoc, 2, "spec.selector[0]", 13},
		{"field-of-list", yamlLoc, 2, "spec.rules.from", 16},
		{"field-of-scalar", yamlLoc, 2, "kind.x", 6},
		{"unknown-field-with-dots", yamlLoc, 2, "metadata.labels.app.kubernetes.io/name", 9},
		{"document-after-empty-ones", yamlLoc, 4, "metadata.namespace", 35},
		{"integer-key", yamlLoc, 4, "spec.portLevelMtls[8080].mode", 40},
		{"quoted-integer-key-as-number", yamlLoc, 4, "spec.portLevelMtls[9090].mode", 41},
		{"integer-key-quoted", yamlLoc, 4, `spec.portLevelMtls["8080"]`, 39},
		{"hex-key", yamlLoc, 4, "spec.portLevelMtls[80]", 42},
		{"null-value", yamlLoc, 4, "spec.mtls.mode", 43},
		{"document-out-of-range", yamlLoc, 5, "", 0},
		{"document-zero", yamlLoc, 0, "", 0},
		{"malformed-path", yamlLoc, 2, `spec.rules[0.from`, 16},
		{"unterminated-quote", yamlLoc, 2, `metadata.labels["app`, 9},
		{"json-root", jsonLoc, 1, "", 1},
		{"json-field", jsonLoc, 1, "metadata.name", 4},
		{"json-nested", jsonLoc, 1, `metadata.labels["app"]`, 5},
		{"json-list-item", jsonLoc, 1, "spec.selectors[1]", 9},
		{"json-missing-field", jsonLoc, 1, "spec.parentID", 6},
		{"json-second-object", jsonLoc, 2, "metadata.name", 14},
		{"json-integer-key", jsonLoc, 2, "spec.portLevelMtls[8080].mode", 15},
		{"json-no-third-object", jsonLoc, 3, "", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.loc.Line(tc.doc, tc.path); got != tc.want {
				t.Errorf("Line(%d, %q): got %d, want %d", tc.doc, tc.path, got, tc.want)
			}
		})
	}
}

func TestLocatorLineEdgeCases(t *testing.T) {
	for _, tc := range []struct {
		name, in, path string
		doc, want      int
	}{
		{"empty-input", "", "", 1, 0},
		{"syntax-error", "a: [\n", "a", 1, 0},
		{"documents-before-a-syntax-error", "a: 1\n---\nb: [\n", "a", 1, 1},
		{"scalar-document", "\n\nhello\n", "", 1, 3},
		{"tilde-document", "~\n---\na: 1\n", "a", 2, 3},
		{"alias", "x: &m\n  y: 1\nz: *m\n", "z.y", 1, 2},
		{"merge-key", "base: &b {port: 1}\nobj:\n  <<: *b\n  name: n\n", "obj.port", 1, 1},
		{"merge-list", "a: &a {p: 1}\nb: &b {q: 2}\nobj:\n  <<: [*a, *b]\n", "obj.q", 1, 2},
		{"own-key-before-merge", "a: &a {p: 1}\nobj:\n  <<: *a\n  p: 2\n", "obj.p", 1, 4},
		{"longest-key", "spec:\n  a: {b: 1}\n  a.b: 2\n", "spec.a.b", 1, 3},
		{"bool-key", "m:\n  true: 1\n", "m[true]", 1, 2},
		{"float-key", "m:\n  8080.5: 1\n", "m[8080.5]", 1, 2},
		{"empty-key", "m:\n  \"\": {x: 1}\n", `m[""].x`, 1, 2},
		{"bom", "\xef\xbb\xbfa: 1\nb: 2\n", "b", 1, 2},
		{"json-after-whitespace", "\n\n  {\"a\": 1,\n\"b\": 2}", "b", 1, 4},
		{"json-scalar-after-object", "{\"a\": 1}\n\"x\"", "", 2, 2},
		{"json-truncated", "{\"a\": 1}\n{\"b\": {", "", 1, 1},
		{"json-escaped-slash", "{\"a\\/b\": 1, \"c\": 2}", "c", 1, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := NewLocator([]byte(tc.in)).Line(tc.doc, tc.path); got != tc.want {
				t.Errorf("Line(%d, %q): got %d, want %d", tc.doc, tc.path, got, tc.want)
			}
		})
	}
	var nilLoc *Locator
	if got := nilLoc.Line(1, ""); got != 0 {
		t.Errorf("nil Locator: Line: got %d, want 0", got)
	}
}

// lines returns the messages of an annotated error, one per line.
func lines(err error) []string {
	if err == nil {
		return nil
	}
	return strings.Split(err.Error(), "\n")
}

func TestAnnotateDecode(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		want     []string
	}{
		{
			name: "field-errors",
			// The comment before the first "---" is not a document.
			in: `# comment
---
apiVersion: trustmesh.dev/v1
kind: Workload
metadata:
  name: web
  labels:
    canary: true
spec:
  selectr: []
  x509SVIDTTL: 30
`,
			want: []string{
				`line 8: document 1 (Workload "web"): metadata.labels["canary"]: want a string, got a boolean (true); quote the value if it is meant as a string`,
				`line 10: document 1 (Workload "web"): unknown field "spec.selectr" (did you mean "selectors"?)`,
				`line 11: document 1 (Workload "web"): spec.x509SVIDTTL: want a duration such as "30m" or "1h", got a number (30) (a duration needs a unit)`,
			},
		},
		{
			name: "missing-apiversion-and-unknown-kind",
			in: `kind: Workload
metadata: {name: a}
---

kind: Gateway
apiVersion: trustmesh.dev/v1
`,
			want: []string{
				`line 1: document 1 (Workload "a"): apiVersion is missing: want "trustmesh.dev/v1"`,
				`line 5: document 2: unknown kind "Gateway" (supported kinds: AuthorizationPolicy, MeshConfig, PeerAuthentication, RequestAuthentication, Service, Workload)`,
			},
		},
		{
			name: "not-an-object",
			in:   "\n- a\n- b\n",
			want: []string{`line 2: document 1: want an object (a mapping with apiVersion, kind, metadata and spec), got a list`},
		},
		{
			name: "yaml-syntax-error",
			in:   "apiVersion: trustmesh.dev/v1\nkind: Workload\n---\nmetadata: [\n",
			want: []string{`line 4: document 2: invalid YAML: line 4: did not find expected node content`},
		},
		{
			name: "yaml-repeated-key",
			in:   "apiVersion: trustmesh.dev/v1\nkind: Workload\nkind: Workload\n",
			want: []string{`line 3: document 1: line 3: key "kind" is repeated; a key may appear only once in a mapping`},
		},
		{
			name: "json-unknown-field",
			in:   "{\"apiVersion\": \"trustmesh.dev/v1\", \"kind\": \"Workload\",\n \"metadata\": {\"name\": \"a\"},\n \"spec\": {\"bogus\": 1}}\n",
			want: []string{`line 3: document 1 (Workload "a"): unknown field "spec.bogus" (known fields: dnsNames, hint, jwtSVIDTTL, parentID, selectors, spiffeID, x509SVIDTTL)`},
		},
		{
			name: "json-repeated-key",
			in:   "{\"kind\": \"Workload\",\n \"kind\": \"Workload\"}",
			want: []string{`line 2: document 1: invalid JSON: key "kind" is repeated; a key may appear only once in an object`},
		},
		{
			name: "json-syntax-error",
			in:   "{\"apiVersion\": \"trustmesh.dev/v1\", \"kind\": \"MeshConfig\", \"metadata\": {\"name\": \"default\"}}\n{\"a\":\n 1 2}",
			want: []string{`line 3: document 2: invalid JSON: invalid character '2' after object key:value pair`},
		},
		{
			name: "no-objects",
			in:   "# only comments\n",
			want: []string{`no objects found: the input is empty or holds only comments`},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Decode([]byte(tc.in))
			if err == nil {
				t.Fatal("Decode: got no error, want one")
			}
			got := NewLocator([]byte(tc.in)).AnnotateDecode(err)
			if diff := cmp.Diff(tc.want, lines(got)); diff != "" {
				t.Errorf("AnnotateDecode: lines differ (-want +got):\n%s", diff)
			}
		})
	}
}

func TestAnnotateValidate(t *testing.T) {
	const in = `apiVersion: trustmesh.dev/v1
kind: MeshConfig
metadata: {name: default}
---
apiVersion: trustmesh.dev/v1
kind: AuthorizationPolicy
metadata:
  name: Web
  annotations:
    trustmesh.dev/dry-run: "yes"
spec:
  action: PERMIT
  rules:
  - to:
    - operation:
        methods: [get]
`
	objs, err := Decode([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	verr := Validate(objs[1], testTD)
	if verr == nil {
		t.Fatal("Validate: got no error, want one")
	}
	got := NewLocator([]byte(in)).AnnotateValidate(2, verr)
	want := []string{
		`line 8: AuthorizationPolicy "default/Web": metadata.name: "Web" is not a valid name: use lowercase letters, digits, '-' and '.', each dot-separated part starting and ending with a letter or digit`,
		`line 10: AuthorizationPolicy "default/Web": metadata.annotations["trustmesh.dev/dry-run"]: "yes": want "true" or "false"`,
		`line 12: AuthorizationPolicy "default/Web": spec.action: "PERMIT" is not an action: want ALLOW, DENY, AUDIT or CUSTOM`,
		`line 16: AuthorizationPolicy "default/Web": spec.rules[0].to[0].operation.methods[0]: "get": methods are matched exactly and HTTP methods are uppercase: write "GET"`,
	}
	if diff := cmp.Diff(want, lines(got)); diff != "" {
		t.Errorf("AnnotateValidate: lines differ (-want +got):\n%s", diff)
	}

	// Each annotated line is a *LineError.
	var lineErrs []*LineError
	for _, e := range got.(interface{ Unwrap() []error }).Unwrap() {
		var le *LineError
		if !errors.As(e, &le) {
			t.Fatalf("line %q is not a *LineError", e)
		}
		lineErrs = append(lineErrs, le)
	}
	if lineErrs[0].Line != 8 || lineErrs[0].Err.Error() != lines(verr)[0] {
		t.Errorf("first LineError: got line %d, %q; want line 8, %q", lineErrs[0].Line, lineErrs[0].Err, lines(verr)[0])
	}
}

func TestAnnotateKeepsOtherLines(t *testing.T) {
	loc := NewLocator([]byte("a: 1\n"))
	for _, tc := range []struct {
		name string
		got  error
		want []string
	}{
		{"nil-decode", loc.AnnotateDecode(nil), nil},
		{"nil-validate", loc.AnnotateValidate(1, nil), nil},
		{"not-decode-form", loc.AnnotateDecode(errors.New("something else: a: b")), []string{"something else: a: b"}},
		{"not-validate-form", loc.AnnotateValidate(1, errors.New("no server trust domain given")), []string{"no server trust domain given"}},
		{"no-path", loc.AnnotateDecode(errors.New(`document 1: invalid JSON: unexpected EOF`)), []string{`document 1: invalid JSON: unexpected EOF`}},
		{"document-not-found", loc.AnnotateDecode(errors.New(`document 3 (Workload "a"): a: bad`)), []string{`document 3 (Workload "a"): a: bad`}},
		{"found", loc.AnnotateDecode(errors.New("document 1 (Workload \"a\"): a: bad\n\ndocument 1: b: worse")), []string{`line 1: document 1 (Workload "a"): a: bad`, `line 1: document 1: b: worse`}},
		{"no-name", loc.AnnotateValidate(1, errors.New(`Workload (no name): a: bad`)), []string{`line 1: Workload (no name): a: bad`}},
		{"nil-locator", (*Locator)(nil).AnnotateDecode(errors.New(`document 1: a: x`)), []string{`document 1: a: x`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if diff := cmp.Diff(tc.want, lines(tc.got)); diff != "" {
				t.Errorf("lines differ (-want +got):\n%s", diff)
			}
		})
	}
}

// FuzzLocator checks that a Locator never panics, whatever the input and
// the path, that it only returns lines of the input, and that annotating
// Decode's errors keeps every line.
func FuzzLocator(f *testing.F) {
	f.Add([]byte(locateYAMLInput), 2, "spec.rules[0].from[1].source.principals[1]")
	f.Add([]byte(locateYAMLInput), 4, `spec.portLevelMtls["8080"].mode`)
	f.Add([]byte(locateJSONInput), 2, "spec.portLevelMtls[8080]")
	f.Add([]byte("a: &a {b: *a}\n"), 1, "a.b.b.b")
	f.Add([]byte("x: {<<: [*y]}\n"), 1, "x.y")
	f.Add([]byte("{\"a\": [1, {\"b\": null}]} {"), 1, "a[1].b")
	f.Add([]byte("m: {\"\": {\"\": 1}}\n"), 1, `m..[""]`)
	f.Fuzz(func(t *testing.T, data []byte, doc int, path string) {
		loc := NewLocator(data)
		n := bytes.Count(data, []byte("\n")) + 1
		if line := loc.Line(doc, path); line < 0 || line > n {
			t.Fatalf("Line(%d, %q): got %d, want 0 to %d", doc, path, line, n)
		}
		for _, d := range parseStream(data) {
			got := loc.Line(d.index, "")
			// A document of a lone "!" is the empty string to Decode and
			// null, an empty document, to the Locator.
			if d.err == nil && d.root != "" && (d.root == nil) != (got == 0) {
				t.Fatalf("document %d: Decode parses it as %v, Line(%d, \"\") = %d", d.index, d.root, d.index, got)
			}
		}
		if _, err := Decode(data); err != nil {
			if got := loc.AnnotateDecode(err); len(lines(got)) > len(lines(err)) {
				t.Fatalf("AnnotateDecode: got %d lines from %d:\n%v", len(lines(got)), len(lines(err)), got)
			}
		}
		_ = loc.AnnotateValidate(doc, errors.New(`Workload "a/b": `+path+": x"))
		_ = loc.AnnotateDecode(errors.New(`document 1 (Workload "a"): ` + path + ": x"))
	})
}

func ExampleLocator_AnnotateDecode() {
	input := []byte(`apiVersion: trustmesh.dev/v1
kind: Workload
metadata:
  name: web
spec:
  spiffeID: spiffe://example.org/ns/default/sa/web
  selectrs: ["unix:uid:1000"]
`)
	_, err := Decode(input)
	fmt.Println(NewLocator(input).AnnotateDecode(err))
	// Output:
	// line 7: document 1 (Workload "web"): unknown field "spec.selectrs" (did you mean "selectors"?)
}

// TestLocatorCountsDocumentsAsDecode checks, on the fixtures of Decode's
// tests, that the Locator finds the documents Decode parses, at the same
// indexes, and no others.
func TestLocatorCountsDocumentsAsDecode(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "*.*"))
	if err != nil {
		t.Fatal(err)
	}
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			data := readFixture(t, filepath.Base(file))
			loc := NewLocator(data)
			docs := parseStream(data)
			for _, doc := range docs {
				got := loc.Line(doc.index, "")
				switch {
				case doc.err != nil:
				case doc.root == nil && got != 0:
					t.Errorf("document %d is empty, but Line found it on line %d", doc.index, got)
				case doc.root != nil && got == 0:
					t.Errorf("document %d: Line did not find it", doc.index)
				}
			}
			if got := loc.Line(len(docs)+1, ""); got != 0 {
				t.Errorf("document %d: Decode finds no such document, but Line found it on line %d", len(docs)+1, got)
			}
		})
	}
}

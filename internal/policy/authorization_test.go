package policy

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

func TestValidateAuthorization(t *testing.T) {
	const head = "apiVersion: trustmesh.dev/v1\nkind: AuthorizationPolicy\nmetadata: {name: p, namespace: default}\n"
	tests := []struct {
		name string
		spec string
		want []string // substrings of the error; none: valid
	}{
		{"allow-nothing", "spec: {}", nil},
		{"full", `spec:
  selector: {matchLabels: {app: web}}
  action: DENY
  rules:
  - from: [{source: {principals: ["spiffe://td/ns/a/sa/b", "td/ns/*", "*/sa/x"], ipBlocks: ["10.0.0.0/8", "::1"], notNamespaces: ["a"]}}]
    to: [{operation: {hosts: ["*.example.com"], ports: ["8080"], methods: ["GET"], paths: ["/a/*", "*.json"]}}]
    when: [{key: "request.headers[X-Tenant]", values: ["acme"]}, {key: "request.auth.claims[a][b]", notValues: ["x"]}, {key: source.ip, values: ["10.1.0.0/16"]}]`, nil},
		{"bad-action", "spec: {action: MAYBE}", []string{`spec.action: "MAYBE" is not an action`}},
		{"custom-without-rego", "spec: {action: CUSTOM, provider: {name: opa}}", []string{"spec.provider.rego: is required with action CUSTOM"}},
		{"provider-without-custom", "spec: {provider: {rego: x}}", []string{"spec.provider: is only allowed with action CUSTOM"}},
		{"empty-source", "spec: {rules: [{from: [{source: {}}]}]}", []string{"spec.rules[0].from[0].source: is empty"}},
		{"empty-operation", "spec: {rules: [{to: [{operation: {}}]}]}", []string{"spec.rules[0].to[0].operation: is empty"}},
		{"wildcard-in-middle", `spec: {rules: [{to: [{operation: {paths: ["/a*b"]}}]}]}`, []string{"wildcard * is allowed only once"}},
		{"path-template", `spec: {rules: [{to: [{operation: {paths: ["/a/{*}/b"]}}]}]}`, []string{"path templates"}},
		{"path-query", `spec: {rules: [{to: [{operation: {paths: ["/a?x=1"]}}]}]}`, []string{"without query"}},
		{"relative-path", `spec: {rules: [{to: [{operation: {paths: ["admin"]}}]}]}`, []string{"a path starts with /"}},
		{"host-with-port", `spec: {rules: [{to: [{operation: {hosts: ["a.com:80"]}}]}]}`, []string{"leave out the port"}},
		{"lowercase-method", `spec: {rules: [{to: [{operation: {methods: ["get"]}}]}]}`, []string{`write "GET"`}},
		{"bad-port", `spec: {rules: [{to: [{operation: {ports: ["0", "http"]}}]}]}`, []string{"ports[0]", "ports[1]"}},
		{"empty-value", `spec: {rules: [{from: [{source: {principals: [""]}}]}]}`, []string{`use "*" to mean any value`}},
		{"bad-spiffe-id", `spec: {rules: [{from: [{source: {principals: ["spiffe://TD/x"]}}]}]}`, []string{"not a SPIFFE ID"}},
		{"other-scheme", `spec: {rules: [{from: [{source: {principals: ["https://x/y"]}}]}]}`, []string{"a principal is a SPIFFE ID"}},
		{"cidr-host-bits", `spec: {rules: [{from: [{source: {ipBlocks: ["10.0.0.1/8"]}}]}]}`, []string{"did you mean 10.0.0.0/8"}},
		{"ip-zone", `spec: {rules: [{from: [{source: {ipBlocks: ["fe80::1%eth0"]}}]}]}`, []string{"zone"}},
		{"when-unknown-key", `spec: {rules: [{when: [{key: request.body, values: ["x"]}]}]}`, []string{`"request.body" is not a supported key`}},
		{"when-bad-header", `spec: {rules: [{when: [{key: "request.headers[x y]", values: ["x"]}]}]}`, []string{"not a valid header name"}},
		{"when-no-values", `spec: {rules: [{when: [{key: source.ip}]}]}`, []string{"needs values or notValues"}},
		{"when-two-header-names", `spec: {rules: [{when: [{key: "request.headers[a][b]", values: ["x"]}]}]}`, []string{"takes one name"}},
		{"empty-selector", "spec: {selector: {matchLabels: {}}}", []string{"spec.selector.matchLabels: is empty"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			objs, err := Decode([]byte(head + tt.spec))
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			err = Validate(objs[0], spiffeid.RequireTrustDomainFromString("td"))
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatalf("got %v, want valid", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("got valid, want errors containing %q", tt.want)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("got %v, want it to contain %q", err, w)
				}
			}
		})
	}
}

func TestDryRunAnnotation(t *testing.T) {
	objs, err := Decode([]byte(`apiVersion: trustmesh.dev/v1
kind: AuthorizationPolicy
metadata: {name: p, namespace: default, annotations: {trustmesh.dev/dry-run: "maybe"}}
spec: {}
`))
	if err != nil {
		t.Fatal(err)
	}
	if err := Validate(objs[0], spiffeid.RequireTrustDomainFromString("td")); err == nil || !strings.Contains(err.Error(), `want "true" or "false"`) {
		t.Errorf("got %v, want an error about the annotation's value", err)
	}
	ap := &AuthorizationPolicy{Metadata: Metadata{Annotations: map[string]string{IstioAnnotationDryRun: "true"}}}
	if !ap.DryRun() {
		t.Error("istio.io/dry-run: true is not taken as dry-run")
	}
}

func TestParseIPBlockMapped(t *testing.T) {
	p, err := ParseIPBlock("::ffff:10.0.0.0/104")
	if err != nil {
		t.Fatal(err)
	}
	if want := netip.MustParsePrefix("10.0.0.0/8"); p != want {
		t.Errorf("got %v, want %v (unmapped, as request addresses are compared)", p, want)
	}
}

func TestAppliesTo(t *testing.T) {
	web := &Workload{Metadata: Metadata{Name: "web", Namespace: "shop", Labels: map[string]string{"app": "web"}}}
	tests := []struct {
		name string
		ns   string
		sel  *Selector
		want bool
	}{
		{"mesh-wide", RootNamespace, nil, true},
		{"root-with-selector-matching", RootNamespace, &Selector{MatchLabels: map[string]string{"app": "web"}}, true},
		{"root-with-selector-not-matching", RootNamespace, &Selector{MatchLabels: map[string]string{"app": "db"}}, false},
		{"same-namespace", "shop", nil, true},
		{"other-namespace", "other", nil, false},
		{"selector-matching", "shop", &Selector{MatchLabels: map[string]string{"app": "web"}}, true},
		{"selector-other-namespace", "other", &Selector{MatchLabels: map[string]string{"app": "web"}}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ap := &AuthorizationPolicy{Metadata: Metadata{Namespace: tt.ns}, Spec: AuthorizationPolicySpec{Selector: tt.sel}}
			if got := ap.AppliesTo(web); got != tt.want {
				t.Errorf("AuthorizationPolicy.AppliesTo: got %v, want %v", got, tt.want)
			}
			ra := &RequestAuthentication{Metadata: Metadata{Namespace: tt.ns}, Spec: RequestAuthenticationSpec{Selector: tt.sel}}
			if got := ra.AppliesTo(web); got != tt.want {
				t.Errorf("RequestAuthentication.AppliesTo: got %v, want %v", got, tt.want)
			}
		})
	}
}

func TestValidateRequestAuthentication(t *testing.T) {
	const head = "apiVersion: trustmesh.dev/v1\nkind: RequestAuthentication\nmetadata: {name: jwt, namespace: default}\n"
	tests := []struct {
		name, spec string
		want       []string
	}{
		{"ok-uri", "spec: {jwtRules: [{issuer: a, jwksUri: 'https://idp/keys'}]}", nil},
		{"no-rules", "spec: {}", []string{"at least one rule is required"}},
		{"no-issuer", "spec: {jwtRules: [{jwksUri: 'https://idp/keys'}]}", []string{"issuer: is required"}},
		{"no-keys", "spec: {jwtRules: [{issuer: a}]}", []string{"needs jwksUri"}},
		{"both-keys", `spec: {jwtRules: [{issuer: a, jwksUri: "https://x/k", jwks: '{"keys":[{}]}'}]}`, []string{"only one of jwksUri and jwks"}},
		{"bad-uri", "spec: {jwtRules: [{issuer: a, jwksUri: 'ftp://x/k'}]}", []string{"want an http or https URL"}},
		{"bad-inline", "spec: {jwtRules: [{issuer: a, jwks: 'nope'}]}", []string{"is not a JWKS"}},
		{"dup-issuer", "spec: {jwtRules: [{issuer: a, jwksUri: 'https://x/k'}, {issuer: a, jwksUri: 'https://x/k'}]}", []string{"repeats spec.jwtRules[0]"}},
		{"bad-header", "spec: {jwtRules: [{issuer: a, jwksUri: 'https://x/k', fromHeaders: [{name: 'a b'}]}]}", []string{"not a valid header name"}},
		{"reserved-output", "spec: {jwtRules: [{issuer: a, jwksUri: 'https://x/k', outputPayloadToHeader: x-trustmesh-peer-identity}]}", []string{"reserved for the proxy"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			objs, err := Decode([]byte(head + tt.spec))
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			err = Validate(objs[0], spiffeid.RequireTrustDomainFromString("td"))
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatalf("got %v, want valid", err)
				}
				return
			}
			for _, w := range tt.want {
				if err == nil || !strings.Contains(err.Error(), w) {
					t.Errorf("got %v, want it to contain %q", err, w)
				}
			}
		})
	}
}

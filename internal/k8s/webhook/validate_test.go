package webhook

import (
	"bytes"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/trustmesh/trustmesh/internal/policy"
	"github.com/trustmesh/trustmesh/internal/policy/authz"
)

func newValidator(t testing.TB, log *slog.Logger) *Validator {
	t.Helper()
	v, err := NewValidator(ValidatorConfig{TrustDomain: td, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestValidate(t *testing.T) {
	tests := []struct {
		fixture string
		// want is the denial message; "" means allowed.
		want string
		code int32
	}{
		{fixture: "validate-workload-valid.json"},
		{fixture: "validate-authorizationpolicy-valid.json"},
		{fixture: "validate-meshconfig-valid.json"},
		{fixture: "validate-update-workload-valid.json"},
		{fixture: "validate-delete-invalid-object.json"},
		{fixture: "validate-update-object-being-deleted.json"},
		{fixture: "validate-update-status-subresource.json"},
		{
			fixture: "validate-workload-spiffeid-other-trust-domain.json", code: 422,
			want: `Workload "shop/orders": spec.spiffeID: "spiffe://evil.example/ns/shop/sa/orders" is not in this server's trust domain "example.org"`,
		},
		{
			fixture: "validate-workload-unknown-field.json", code: 422,
			want: `object (Workload "orders"): unknown field "spec.selector" (did you mean "selectors"?)`,
		},
		{
			fixture: "validate-authorizationpolicy-rego-does-not-compile.json", code: 422,
			want: "AuthorizationPolicy \"shop/ext-authz\": spec.provider.rego: shop/ext-authz:3: rego_parse_error: unexpected eof token\n" +
				"\tallow if input.request.headers[\"x-token\"] ==\n" +
				"\t                                           ^",
		},
		{
			fixture: "validate-authorizationpolicy-bad-action.json", code: 422,
			want: `AuthorizationPolicy "shop/orders-allow": spec.action: "PERMIT" is not an action: want ALLOW, DENY, AUDIT or CUSTOM`,
		},
		{
			fixture: "validate-requestauthentication-inline-jwks-invalid.json", code: 422,
			want: `RequestAuthentication "shop/jwt": spec.jwtRules: rules[0].JWKS: jwks: no usable signing key (key 0 (kid "a"): rsa key of 17 bits is outside 2048..8192)`,
		},
		{
			fixture: "validate-peerauthentication-bad-mode.json", code: 422,
			want: `PeerAuthentication "shop/default": spec.mtls.mode: "STRIKT" is not a mode: want UNSET, DISABLE, PERMISSIVE or STRICT`,
		},
		{
			fixture: "validate-service-bad-port.json", code: 422,
			want: `Service "shop/orders": spec.ports[0].port: is required: the port clients address, 1 to 65535`,
		},
		{
			fixture: "validate-unknown-kind.json", code: 422,
			want: `unknown kind "Gateway": the trustmesh.dev/v1 kinds are AuthorizationPolicy, MeshConfig, PeerAuthentication, RequestAuthentication, Service, Workload`,
		},
	}
	v := newValidator(t, nil)
	for _, tt := range tests {
		t.Run(strings.TrimSuffix(tt.fixture, ".json"), func(t *testing.T) {
			body := fixture(t, tt.fixture)
			resp := response(t, post(t, v, body), requestUID(t, body))
			if tt.want == "" {
				if !resp.Allowed || resp.Result != nil || resp.Patch != nil {
					t.Fatalf("got allowed=%v result=%+v, want allowed without a patch", resp.Allowed, resp.Result)
				}
				return
			}
			if resp.Allowed || resp.Result == nil {
				t.Fatalf("got allowed, want denied with %q", tt.want)
			}
			if got := resp.Result.Message; got != tt.want {
				t.Errorf("got message\n%s\nwant\n%s", got, tt.want)
			}
			if resp.Result.Code != tt.code || resp.Result.Status != "Failure" {
				t.Errorf("got code %d status %q, want %d Failure", resp.Result.Code, resp.Result.Status, tt.code)
			}
		})
	}
}

// TestValidateSameAsPolicyValidate checks every invalid fixture against
// what `trustmesh policy validate` does with the object as a file: the
// decoder it uses (policy.Decode) and authz.Validate give the message the
// webhook sends, up to the decoder naming the object "document 1" where
// the webhook has "object".
func TestValidateSameAsPolicyValidate(t *testing.T) {
	files, _ := filepath.Glob("testdata/validate-*.json")
	v := newValidator(t, nil)
	checked := 0
	for _, f := range files {
		body, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		rv, err := decodeReview(body)
		if err != nil || rv.Request.Operation == "DELETE" || rv.Request.SubResource != "" {
			continue
		}
		obj, err := objectJSON(rv.Request.Object.Raw, rv.Request.Namespace, rv.Request.Name)
		if err != nil || obj.deleting || !slices.Contains(policy.Kinds(), obj.kind) {
			continue
		}
		// What a user would write in a file: the object without the
		// Kubernetes additions.
		want := ""
		objs, err := policy.Decode(obj.data)
		if err == nil {
			err = authz.Validate(objs[0], td)
		}
		if err != nil {
			want = strings.ReplaceAll(err.Error(), "document 1 (", "object (")
		}
		resp := v.Admit(rv.Request)
		got := ""
		if !resp.Allowed {
			got = resp.Result.Message
		}
		if got != want {
			t.Errorf("%s: webhook says\n%s\npolicy validate says\n%s", f, got, want)
		}
		checked++
	}
	if checked < 10 {
		t.Errorf("checked %d fixtures, want at least 10", checked)
	}
}

func TestValidateHTTPErrors(t *testing.T) {
	v, err := NewValidator(ValidatorConfig{TrustDomain: td, MaxRequestBytes: 4096})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name        string
		method      string
		contentType string
		body        []byte
		want        int
	}{
		{"truncated JSON", http.MethodPost, "application/json", fixture(t, "review-truncated.json"), 400},
		{"v1beta1", http.MethodPost, "application/json", fixture(t, "review-v1beta1.json"), 400},
		{"no request", http.MethodPost, "application/json", fixture(t, "review-no-request.json"), 400},
		{"no uid", http.MethodPost, "application/json", fixture(t, "review-no-uid.json"), 400},
		{"not an object", http.MethodPost, "application/json", fixture(t, "review-not-an-object.json"), 400},
		{"empty body", http.MethodPost, "application/json", nil, 400},
		{"GET", http.MethodGet, "", nil, 405},
		{"wrong content type", http.MethodPost, "text/plain", fixture(t, "validate-workload-valid.json"), 415},
		{"too large", http.MethodPost, "application/json; charset=utf-8", bytes.Repeat([]byte(" "), 5000), 413},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest(tt.method, "/validate", bytes.NewReader(tt.body))
			if tt.contentType != "" {
				r.Header.Set("Content-Type", tt.contentType)
			}
			w := httptest.NewRecorder()
			v.ServeHTTP(w, r)
			if w.Code != tt.want {
				t.Errorf("got HTTP %d (%s), want %d", w.Code, strings.TrimSpace(w.Body.String()), tt.want)
			}
		})
	}
}

func TestValidateLogsDenials(t *testing.T) {
	var logs bytes.Buffer
	v := newValidator(t, slog.New(slog.NewJSONHandler(&logs, nil)))
	post(t, v, fixture(t, "validate-peerauthentication-bad-mode.json"))
	for _, want := range []string{`"component":"webhook-validate"`, `"msg":"admission denied: invalid object"`, `"uid":"0008"`,
		`"kind":"PeerAuthentication"`, `"namespace":"shop"`, `"name":"default"`, `"user":"alice@example.org"`, `"reason":"PeerAuthentication \"shop/default\": spec.mtls.mode`} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("log %s lacks %s", logs.String(), want)
		}
	}
}

func TestNewValidatorNeedsTrustDomain(t *testing.T) {
	if _, err := NewValidator(ValidatorConfig{}); err == nil {
		t.Error("NewValidator without a trust domain: got no error")
	}
}

func TestObjectJSON(t *testing.T) {
	raw := `{"apiVersion":"trustmesh.dev/v1","kind":"Workload","status":{"x":1},"zzz":1,` +
		`"metadata":{"uid":"u","resourceVersion":"1","generation":2,"creationTimestamp":"2026-01-01T00:00:00Z","managedFields":[],` +
		`"finalizers":["f"],"labels":{"a":"b"},"annotations":{"c":"d"}},"spec":{"b":1,"a":2}}`
	got, err := objectJSON([]byte(raw), "shop", "orders")
	if err != nil {
		t.Fatal(err)
	}
	want := `{"apiVersion":"trustmesh.dev/v1","kind":"Workload","metadata":{"name":"orders","namespace":"shop","labels":{"a":"b"},"annotations":{"c":"d"}},"spec":{"b":1,"a":2},"zzz":1}`
	if string(got.data) != want || got.kind != "Workload" || got.deleting {
		t.Errorf("got %s (kind %q, deleting %v), want %s", got.data, got.kind, got.deleting, want)
	}
	for _, bad := range []string{`null`, `[]`, `{"kind":1}`, `{"metadata":[]}`, `{`} {
		if _, err := objectJSON([]byte(bad), "", ""); err == nil {
			t.Errorf("objectJSON(%s): got no error", bad)
		}
	}
}

func ExampleValidator_Admit() {
	v, _ := NewValidator(ValidatorConfig{TrustDomain: td})
	rv, _ := decodeReview([]byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{
		"uid":"1","kind":{"group":"trustmesh.dev","version":"v1","kind":"PeerAuthentication"},"operation":"CREATE","namespace":"shop",
		"object":{"apiVersion":"trustmesh.dev/v1","kind":"PeerAuthentication","metadata":{"name":"default","namespace":"shop","uid":"x"},
		"spec":{"mtls":{"mode":"strict"}}}}}`))
	resp := v.Admit(rv.Request)
	fmt.Println(resp.Allowed, resp.Result.Message)
	// Output: false PeerAuthentication "shop/default": spec.mtls.mode: "strict" is not a mode: want UNSET, DISABLE, PERMISSIVE or STRICT
}

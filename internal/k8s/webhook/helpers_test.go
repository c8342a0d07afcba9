package webhook

import (
	"bytes"
	"encoding/json"
	"flag"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	admissionv1 "k8s.io/api/admission/v1"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

var td = spiffeid.RequireTrustDomainFromString("example.org")

func fixture(t testing.TB, name string) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// post sends body to h as the API server does.
func post(t testing.TB, h http.Handler, body []byte) *httptest.ResponseRecorder {
	t.Helper()
	r := httptest.NewRequest(http.MethodPost, "/", bytes.NewReader(body))
	r.Header.Set("Content-Type", "application/json")
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

// response decodes an AdmissionReview response and checks its envelope.
func response(t testing.TB, w *httptest.ResponseRecorder, wantUID string) *admissionv1.AdmissionResponse {
	t.Helper()
	if w.Code != http.StatusOK {
		t.Fatalf("got HTTP %d (%s), want 200", w.Code, w.Body)
	}
	if ct := w.Header().Get("Content-Type"); ct != "application/json" {
		t.Errorf("got Content-Type %q, want application/json", ct)
	}
	var rv admissionv1.AdmissionReview
	if err := json.Unmarshal(w.Body.Bytes(), &rv); err != nil {
		t.Fatalf("response is not JSON: %v", err)
	}
	if rv.APIVersion != "admission.k8s.io/v1" || rv.Kind != "AdmissionReview" || rv.Response == nil || rv.Request != nil {
		t.Fatalf("got %s, want an admission.k8s.io/v1 AdmissionReview with only a response", w.Body)
	}
	if string(rv.Response.UID) != wantUID {
		t.Errorf("got response uid %q, want the request's %q", rv.Response.UID, wantUID)
	}
	return rv.Response
}

// requestUID is the uid of the review in body.
func requestUID(t testing.TB, body []byte) string {
	t.Helper()
	var rv admissionv1.AdmissionReview
	if err := json.Unmarshal(body, &rv); err != nil || rv.Request == nil {
		t.Fatalf("fixture is no AdmissionReview request: %v", err)
	}
	return string(rv.Request.UID)
}

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (go test -update creates it)", err)
	}
	if diff := cmp.Diff(string(want), string(got)); diff != "" {
		t.Errorf("%s differs (-want +got; go test -update rewrites it):\n%s", path, diff)
	}
}

func indent(t *testing.T, data []byte) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := json.Indent(&b, data, "", "  "); err != nil {
		t.Fatal(err)
	}
	b.WriteByte('\n')
	return b.Bytes()
}

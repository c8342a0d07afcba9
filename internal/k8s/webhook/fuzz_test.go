package webhook

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
)

// FuzzAdmissionRequest feeds arbitrary bodies to the review decoder and,
// when one decodes, to both webhooks: nothing may panic, every decoded
// review gets a response, and a patch is always valid JSON.
func FuzzAdmissionRequest(f *testing.F) {
	files, _ := filepath.Glob("testdata/*.json")
	for _, name := range files {
		data, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	v, err := NewValidator(ValidatorConfig{TrustDomain: td})
	if err != nil {
		f.Fatal(err)
	}
	in, err := NewInjector(InjectorConfig{TrustDomain: td})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		rv, err := decodeReview(data)
		if err != nil {
			return
		}
		if rv.Request == nil || rv.Request.UID == "" {
			t.Fatal("decodeReview accepted a review without a request uid")
		}
		if v.Admit(rv.Request) == nil {
			t.Fatal("validator: no response")
		}
		resp := in.Admit(rv.Request)
		if resp == nil {
			t.Fatal("injector: no response")
		}
		if resp.Patch != nil && !json.Valid(resp.Patch) {
			t.Fatalf("patch is not JSON: %s", resp.Patch)
		}
	})
}

// FuzzObjectJSON checks that the object cut for the trustmesh decoder is
// always one JSON object.
func FuzzObjectJSON(f *testing.F) {
	f.Add([]byte(`{"apiVersion":"trustmesh.dev/v1","kind":"Workload","metadata":{"name":"a","uid":"x"},"spec":{},"status":{}}`))
	f.Add([]byte(`{"metadata":null,"kind":null}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		obj, err := objectJSON(data, "ns", "name")
		if err != nil {
			return
		}
		var m map[string]json.RawMessage
		if err := json.Unmarshal(obj.data, &m); err != nil {
			t.Fatalf("objectJSON(%s) = %s: not a JSON object: %v", data, obj.data, err)
		}
		if _, ok := m["status"]; ok {
			t.Fatalf("objectJSON(%s) kept status", data)
		}
	})
}

package v1_test

import (
	"reflect"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"
	"k8s.io/apimachinery/pkg/runtime"

	trustmeshv1 "github.com/trustmesh/trustmesh/internal/k8s/apis/v1"
	"github.com/trustmesh/trustmesh/internal/policy"
)

func TestKindsMatchPolicy(t *testing.T) {
	if got, want := trustmeshv1.Kinds(), policy.Kinds(); !slices.Equal(got, want) {
		t.Fatalf("resource kinds %v, want the policy kinds %v", got, want)
	}
	s := runtime.NewScheme()
	if err := trustmeshv1.AddToScheme(s); err != nil {
		t.Fatal(err)
	}
	for _, kind := range policy.Kinds() {
		t.Run(kind, func(t *testing.T) {
			r, ok := trustmeshv1.New(kind)
			if !ok {
				t.Fatalf("New(%q) = false", kind)
			}
			if got := r.GetObjectKind().GroupVersionKind(); got != trustmeshv1.GroupVersion.WithKind(kind) {
				t.Errorf("New(%q) has GVK %v", kind, got)
			}
			obj, _ := policy.NewObject(kind)
			got, want := reflect.TypeOf(specOf(r)), reflect.TypeOf(specOf(obj))
			if got != want {
				t.Errorf("Spec is %v, want %v", got, want)
			}
			if _, ok := trustmeshv1.NewList(kind); !ok {
				t.Errorf("NewList(%q) = false", kind)
			}
			for _, k := range []string{kind, kind + "List"} {
				if !s.Recognizes(trustmeshv1.GroupVersion.WithKind(k)) {
					t.Errorf("the scheme does not know %s", k)
				}
			}
		})
	}
	if _, ok := trustmeshv1.New("Nonsense"); ok {
		t.Error(`New("Nonsense") = true`)
	}
}

// TestFixturesSetEveryField guards the round-trip tests: a spec field that
// no fixture sets is a field whose loss (pruned by a CRD schema that lacks
// it) no test would see.
func TestFixturesSetEveryField(t *testing.T) {
	byKind := make(map[string][]reflect.Value)
	for _, f := range fixtures(t) {
		if f.name == "edge-values-validator-accepts.yaml" {
			continue
		}
		for _, obj := range f.objects {
			byKind[obj.GetKind()] = append(byKind[obj.GetKind()], reflect.ValueOf(specOf(obj)))
		}
	}
	for _, kind := range policy.Kinds() {
		obj, _ := policy.NewObject(kind)
		if unset := unsetFields(reflect.TypeOf(specOf(obj)), byKind[kind]); len(unset) > 0 {
			t.Errorf("%s: no fixture (testdata/every-field-*.yaml) sets %v", kind, unset)
		}
	}
}

// TestDeepCopy checks the generated deepcopy functions of the resources and
// of the policy spec types: a copy is equal and shares no slice, map or
// pointer with the original.
func TestDeepCopy(t *testing.T) {
	for _, f := range fixtures(t) {
		for _, obj := range f.objects {
			t.Run(f.name+"/"+obj.GetMeta().Name, func(t *testing.T) {
				r := toResource(t, obj, "ns")
				r.MeshStatus().Proxies = &trustmeshv1.ProxiesStatus{Acked: 1}
				c := r.DeepCopyObject()
				if diff := cmp.Diff(r, c); diff != "" {
					t.Fatalf("DeepCopyObject differs (-orig +copy):\n%s", diff)
				}
				if p := sharedReference("", reflect.ValueOf(r), reflect.ValueOf(c)); p != "" {
					t.Errorf("the copy shares %s with the original", p)
				}
			})
		}
	}
}

package v1_test

import (
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"testing"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	trustmeshv1 "github.com/trustmesh/trustmesh/internal/k8s/apis/v1"
	"github.com/trustmesh/trustmesh/internal/policy"
)

// trustDomain is the trust domain the fixtures are valid in.
var trustDomain = spiffeid.RequireTrustDomainFromString("example.org")

// fixture is one testdata file: its bytes and the objects policy.Decode
// reads from it, all valid.
type fixture struct {
	name    string
	data    []byte
	objects []policy.Object
}

// fixtures reads every testdata/*.yaml file; each must decode and validate
// as trustmesh objects.
func fixtures(t *testing.T) []fixture {
	t.Helper()
	files, err := filepath.Glob("testdata/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no fixtures in testdata: %v", err)
	}
	var out []fixture
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		objs, err := policy.Decode(data)
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		for _, obj := range objs {
			if err := policy.Validate(obj, trustDomain); err != nil {
				t.Fatalf("%s: the fixture must be valid for trustmesh: %v", f, err)
			}
		}
		out = append(out, fixture{name: filepath.Base(f), data: data, objects: objs})
	}
	return out
}

// specOf returns the Spec field of a *policy.<Kind> or a
// *trustmeshv1.<Kind>.
func specOf(obj any) any {
	return reflect.ValueOf(obj).Elem().FieldByName("Spec").Interface()
}

// toResource returns obj as a resource in namespace ns (ignored for a
// cluster-scoped kind), with the same name, labels, annotations and spec.
func toResource(t *testing.T, obj policy.Object, ns string) trustmeshv1.Resource {
	t.Helper()
	r, ok := trustmeshv1.New(obj.GetKind())
	if !ok {
		t.Fatalf("no resource type for kind %s", obj.GetKind())
	}
	m := obj.GetMeta()
	r.SetName(m.Name)
	if obj.Namespaced() {
		r.SetNamespace(ns)
	}
	r.SetLabels(m.Labels)
	r.SetAnnotations(m.Annotations)
	reflect.ValueOf(r).Elem().FieldByName("Spec").Set(reflect.ValueOf(specOf(obj)))
	return r
}

// unsetFields returns the paths of the struct fields under v's type that
// are zero in every value of vals: the fields the values do not cover.
func unsetFields(typ reflect.Type, vals []reflect.Value) []string {
	var out []string
	var walk func(path string, typ reflect.Type, vals []reflect.Value)
	walk = func(path string, typ reflect.Type, vals []reflect.Value) {
		switch typ.Kind() {
		case reflect.Pointer:
			var elems []reflect.Value
			for _, v := range vals {
				if !v.IsNil() {
					elems = append(elems, v.Elem())
				}
			}
			walk(path, typ.Elem(), elems)
		case reflect.Slice:
			var elems []reflect.Value
			for _, v := range vals {
				for i := range v.Len() {
					elems = append(elems, v.Index(i))
				}
			}
			walk(path+"[]", typ.Elem(), elems)
		case reflect.Map:
			var elems []reflect.Value
			for _, v := range vals {
				for it := v.MapRange(); it.Next(); {
					elems = append(elems, it.Value())
				}
			}
			walk(path+"[]", typ.Elem(), elems)
		case reflect.Struct:
			for i := range typ.NumField() {
				f := typ.Field(i)
				var fields []reflect.Value
				for _, v := range vals {
					if fv := v.Field(i); !fv.IsZero() {
						fields = append(fields, fv)
					}
				}
				if len(fields) == 0 {
					out = append(out, path+"."+f.Name)
					continue
				}
				walk(path+"."+f.Name, f.Type, fields)
			}
		}
	}
	walk("spec", typ, vals)
	slices.Sort(out)
	return out
}

// sharedReference returns the path of the first slice, map or pointer that
// a and b (values of one type) share, or "".
func sharedReference(path string, a, b reflect.Value) string {
	switch a.Kind() {
	case reflect.Pointer:
		if a.IsNil() || b.IsNil() {
			return ""
		}
		if a.Pointer() == b.Pointer() {
			return path
		}
		return sharedReference(path, a.Elem(), b.Elem())
	case reflect.Slice:
		if a.Len() == 0 || b.Len() == 0 {
			return ""
		}
		if a.Pointer() == b.Pointer() {
			return path
		}
		for i := range min(a.Len(), b.Len()) {
			if p := sharedReference(path+"[]", a.Index(i), b.Index(i)); p != "" {
				return p
			}
		}
	case reflect.Map:
		if a.Len() == 0 || b.Len() == 0 {
			return ""
		}
		if a.Pointer() == b.Pointer() {
			return path
		}
		for it := a.MapRange(); it.Next(); {
			if bv := b.MapIndex(it.Key()); bv.IsValid() {
				// Map values are not addressable: copies of structs can
				// still share their slices and maps.
				if p := sharedReference(path+"[]", it.Value(), bv); p != "" {
					return p
				}
			}
		}
	case reflect.Struct:
		for i := range a.NumField() {
			if p := sharedReference(path+"."+a.Type().Field(i).Name, a.Field(i), b.Field(i)); p != "" {
				return p
			}
		}
	}
	return ""
}

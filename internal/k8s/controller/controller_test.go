package controller

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/trustmesh/trustmesh/internal/k8s/k8stest"
	"github.com/trustmesh/trustmesh/internal/policy"
)

func TestMain(m *testing.M) { k8stest.Main(m) }

var spiffeTD = spiffeid.RequireTrustDomainFromString("example.org")

// recorder is an Applier that records what the controller asks of it (the
// real one, the server, is exercised by test/e2e).
type recorder struct {
	mu      sync.Mutex
	applied map[string]string // kind/ns/name → actor
	deleted []string
	managed []policy.Object
	rev     int64
	proxies ProxyCounts
}

func (r *recorder) Apply(_ context.Context, actor string, obj policy.Object) (int64, error) {
	if err := policy.Validate(obj, spiffeTD); err != nil {
		return 0, &InvalidError{Err: err}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	m := obj.GetMeta()
	if m.Annotations[ManagedByAnnotation] != ManagedByKubernetes {
		return 0, fmt.Errorf("object without the %s annotation", ManagedByAnnotation)
	}
	r.applied[obj.GetKind()+"/"+m.Namespace+"/"+m.Name] = actor
	r.rev++
	return r.rev, nil
}

func (r *recorder) Delete(_ context.Context, _, kind, ns, name string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.deleted = append(r.deleted, kind+"/"+ns+"/"+name)
	return nil
}

func (r *recorder) Managed(context.Context) ([]policy.Object, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.managed, nil
}

func (r *recorder) Proxies(int64) ProxyCounts {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.proxies
}

func (r *recorder) snapshot() (map[string]string, []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	applied := make(map[string]string, len(r.applied))
	for k, v := range r.applied {
		applied[k] = v
	}
	return applied, append([]string(nil), r.deleted...)
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func authzPolicy(ns, name, path string) *unstructured.Unstructured {
	u := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "trustmesh.dev/v1", "kind": "AuthorizationPolicy",
		"metadata": map[string]any{"namespace": ns, "name": name, "labels": map[string]any{"team": "orders"}},
		"spec": map[string]any{
			"action": "DENY",
			"rules":  []any{map[string]any{"to": []any{map[string]any{"operation": map[string]any{"paths": []any{path}}}}}},
		},
	}}
	return u
}

func TestController(t *testing.T) {
	env := k8stest.Shared(t)
	ns := env.NewNamespace(t)
	// An object written from Kubernetes earlier whose resource is gone.
	orphan := &policy.AuthorizationPolicy{Metadata: policy.Metadata{Namespace: ns, Name: "gone"}}
	rec := &recorder{applied: map[string]string{}, managed: []policy.Object{orphan}, proxies: ProxyCounts{Connected: 2, Acked: 1, Nacked: 1, LastNack: "bad"}}
	c, err := New(Config{Rest: env.Config, Applier: rec, Resync: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})

	eventually(t, "the orphan to be deleted", func() bool {
		_, deleted := rec.snapshot()
		return strings.Contains(strings.Join(deleted, " "), "AuthorizationPolicy/"+ns+"/gone")
	})

	good := authzPolicy(ns, "deny-admin", "/admin/*")
	if err := env.Client.Create(t.Context(), good, client.FieldOwner("kubectl-client-side-apply")); err != nil {
		t.Fatal(err)
	}
	key := "AuthorizationPolicy/" + ns + "/deny-admin"
	eventually(t, "the policy to be applied", func() bool {
		applied, _ := rec.snapshot()
		return applied[key] != ""
	})
	if applied, _ := rec.snapshot(); applied[key] != "k8s:kubectl-client-side-apply" {
		t.Errorf("actor: got %q, want k8s:kubectl-client-side-apply (from managedFields)", applied[key])
	}
	st := waitStatus(t, env, ns, "deny-admin", func(st map[string]any) bool { return condition(st) == "True" })
	if rev, _, _ := unstructured.NestedInt64(st, "appliedRevision"); rev <= 0 {
		t.Errorf("status.appliedRevision: got %d, want > 0\n%v", rev, st)
	}
	if acked, _, _ := unstructured.NestedInt64(st, "proxies", "acked"); acked != 1 {
		t.Errorf("status.proxies.acked: got %d, want 1\n%v", acked, st)
	}
	if last, _, _ := unstructured.NestedString(st, "proxies", "lastNack"); last != "bad" {
		t.Errorf("status.proxies.lastNack: got %q, want bad", last)
	}

	// An object the API server accepts but trustmesh's validator refuses:
	// the status says why (with the admission webhook it is refused
	// before it is stored).
	bad := authzPolicy(ns, "bad-path", "/orders/{id}")
	if err := env.Client.Create(t.Context(), bad); err != nil {
		t.Fatal(err)
	}
	st = waitStatus(t, env, ns, "bad-path", func(st map[string]any) bool { return condition(st) == "False" })
	if msg := conditionMessage(st); !strings.Contains(msg, "spec.rules[0].to[0].operation.paths") {
		t.Errorf("status message of an invalid policy: got %q, want the validator's field path", msg)
	}
	if applied, _ := rec.snapshot(); applied["AuthorizationPolicy/"+ns+"/bad-path"] != "" {
		t.Error("an invalid policy was applied")
	}

	// Deleting the resource deletes the object.
	if err := env.Client.Delete(t.Context(), good); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the deleted policy to be deleted", func() bool {
		_, deleted := rec.snapshot()
		return strings.Contains(strings.Join(deleted, " "), key)
	})
}

func waitStatus(t *testing.T, env *k8stest.Env, ns, name string, cond func(map[string]any) bool) map[string]any {
	t.Helper()
	var st map[string]any
	eventually(t, "the status of "+ns+"/"+name, func() bool {
		u := &unstructured.Unstructured{}
		u.SetGroupVersionKind(schema.GroupVersionKind{Group: Group, Version: Version, Kind: "AuthorizationPolicy"})
		if err := env.Client.Get(t.Context(), types.NamespacedName{Namespace: ns, Name: name}, u); err != nil {
			return false
		}
		st, _, _ = unstructured.NestedMap(u.Object, "status")
		return st != nil && cond(st)
	})
	return st
}

func condition(st map[string]any) string {
	conds, _, _ := unstructured.NestedSlice(st, "conditions")
	for _, c := range conds {
		if m, ok := c.(map[string]any); ok && m["type"] == "Accepted" {
			s, _ := m["status"].(string)
			return s
		}
	}
	return ""
}

func conditionMessage(st map[string]any) string {
	conds, _, _ := unstructured.NestedSlice(st, "conditions")
	for _, c := range conds {
		if m, ok := c.(map[string]any); ok && m["type"] == "Accepted" {
			s, _ := m["message"].(string)
			return s
		}
	}
	return ""
}

func TestActor(t *testing.T) {
	at := func(sec int64) *metav1.Time { tm := metav1.NewTime(time.Unix(sec, 0)); return &tm }
	for _, tc := range []struct {
		name   string
		fields []metav1.ManagedFieldsEntry
		want   string
	}{
		{"none", nil, "k8s:unknown"},
		{"latest write wins", []metav1.ManagedFieldsEntry{{Manager: "helm", Time: at(1)}, {Manager: "kubectl-edit", Time: at(2)}}, "k8s:kubectl-edit"},
		{"own status writes ignored", []metav1.ManagedFieldsEntry{{Manager: "argocd", Time: at(1)}, {Manager: fieldManager, Time: at(5), Subresource: "status"}}, "k8s:argocd"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			u := &unstructured.Unstructured{Object: map[string]any{}}
			u.SetManagedFields(tc.fields)
			if got := Actor(u); got != tc.want {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}

func TestToObjectRefuses(t *testing.T) {
	for _, tc := range []struct {
		name string
		obj  map[string]any
		want string
	}{
		{"other group", map[string]any{"apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy", "metadata": map[string]any{"name": "a"}}, "apiVersion"},
		{"unknown spec field", map[string]any{"apiVersion": "trustmesh.dev/v1", "kind": "AuthorizationPolicy", "metadata": map[string]any{"name": "a", "namespace": "x"},
			"spec": map[string]any{"actoin": "DENY"}}, "actoin"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ToObject(&unstructured.Unstructured{Object: tc.obj})
			var invalid *InvalidError
			if !errors.As(err, &invalid) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v, want an InvalidError containing %q", err, tc.want)
			}
		})
	}
}

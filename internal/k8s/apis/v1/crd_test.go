package v1_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	trustmeshv1 "github.com/trustmesh/trustmesh/internal/k8s/apis/v1"
	"github.com/trustmesh/trustmesh/internal/k8s/k8stest"
	"github.com/trustmesh/trustmesh/internal/policy"
)

func TestMain(m *testing.M) { k8stest.Main(m) }

// plurals are the resource names of the kinds.
var plurals = map[string]string{
	policy.KindAuthorizationPolicy:   "authorizationpolicies",
	policy.KindMeshConfig:            "meshconfigs",
	policy.KindPeerAuthentication:    "peerauthentications",
	policy.KindRequestAuthentication: "requestauthentications",
	policy.KindService:               "services",
	policy.KindWorkload:              "workloads",
}

// TestCRDsInstalled reads the CRDs back from the API server: one per kind,
// established, with the kind's scope, a status subresource and its printer
// columns.
func TestCRDsInstalled(t *testing.T) {
	env := k8stest.Shared(t)
	// The columns every kind has, and the kind's own (before them).
	common := []string{"Accepted", "Revision", "Acked", "Nacked", "Age"}
	columns := map[string][]string{
		policy.KindAuthorizationPolicy:   {"Action"},
		policy.KindMeshConfig:            {"Trust Domain", "mTLS"},
		policy.KindPeerAuthentication:    {"Mode"},
		policy.KindRequestAuthentication: {"Issuer"},
		policy.KindService:               {"SPIFFE IDs", "Port"},
		policy.KindWorkload:              {"SPIFFE ID", "Parent", "Selectors"},
	}
	for _, kind := range policy.Kinds() {
		t.Run(kind, func(t *testing.T) {
			var crd apiextensionsv1.CustomResourceDefinition
			name := plurals[kind] + "." + trustmeshv1.Group
			if err := env.Client.Get(t.Context(), types.NamespacedName{Name: name}, &crd); err != nil {
				t.Fatalf("get CRD %s: %v", name, err)
			}
			if crd.Spec.Names.Kind != kind {
				t.Errorf("kind %q, want %q", crd.Spec.Names.Kind, kind)
			}
			if !slices.Contains(crd.Spec.Names.Categories, "trustmesh") {
				t.Errorf("categories %v, want trustmesh among them", crd.Spec.Names.Categories)
			}
			obj, _ := policy.NewObject(kind)
			wantScope := apiextensionsv1.ClusterScoped
			if obj.Namespaced() {
				wantScope = apiextensionsv1.NamespaceScoped
			}
			if crd.Spec.Scope != wantScope {
				t.Errorf("scope %s, want %s", crd.Spec.Scope, wantScope)
			}
			if !established(&crd) {
				t.Errorf("not established: %+v", crd.Status.Conditions)
			}
			if len(crd.Spec.Versions) != 1 {
				t.Fatalf("%d versions, want 1 (v1)", len(crd.Spec.Versions))
			}
			v := crd.Spec.Versions[0]
			if v.Name != trustmeshv1.Version || !v.Served || !v.Storage {
				t.Errorf("version %s served=%v storage=%v, want v1 served and stored", v.Name, v.Served, v.Storage)
			}
			if v.Subresources == nil || v.Subresources.Status == nil {
				t.Error("no status subresource")
			}
			var got []string
			for _, c := range v.AdditionalPrinterColumns {
				got = append(got, c.Name)
			}
			for _, want := range append(columns[kind], common...) {
				if !slices.Contains(got, want) {
					t.Errorf("printer columns %v, want %q among them", got, want)
				}
			}
		})
	}
}

func established(crd *apiextensionsv1.CustomResourceDefinition) bool {
	for _, c := range crd.Status.Conditions {
		if c.Type == apiextensionsv1.Established {
			return c.Status == apiextensionsv1.ConditionTrue
		}
	}
	return false
}

// TestRoundTrip creates the fixtures' documents as they are (what kubectl
// apply sends), reads them back as typed resources and compares their spec
// with what policy.Decode reads from the same documents: every field
// survives the CRD schema (nothing pruned, no type refused).
func TestRoundTrip(t *testing.T) {
	env := k8stest.Shared(t)
	ns := env.NewNamespace(t)
	for _, f := range fixtures(t) {
		docs := documents(t, f.data)
		if len(docs) != len(f.objects) {
			t.Fatalf("%s: %d documents, %d objects", f.name, len(docs), len(f.objects))
		}
		for i, obj := range f.objects {
			t.Run(f.name+"/"+obj.GetMeta().Name, func(t *testing.T) {
				ctx := t.Context()
				u := docs[i]
				if obj.Namespaced() {
					u.SetNamespace(ns)
				}
				if err := env.Client.Create(ctx, u); err != nil {
					t.Fatalf("create: %v", err)
				}
				if !obj.Namespaced() {
					// Cluster-scoped, and one per cluster (MeshConfig).
					t.Cleanup(func() { _ = env.Client.Delete(t.Context(), u) })
				}
				got, _ := trustmeshv1.New(obj.GetKind())
				if err := env.Client.Get(ctx, client.ObjectKeyFromObject(u), got); err != nil {
					t.Fatalf("get: %v", err)
				}
				if diff := cmp.Diff(specOf(obj), specOf(got)); diff != "" {
					t.Errorf("spec read back differs from policy.Decode's (-decoded +read back):\n%s", diff)
				}
				if diff := cmp.Diff(obj.GetMeta().Labels, got.GetLabels()); diff != "" {
					t.Errorf("labels differ (-sent +read back):\n%s", diff)
				}
			})
		}
	}
}

// documents splits a YAML stream into objects, as kubectl reads it.
func documents(t *testing.T, data []byte) []*unstructured.Unstructured {
	t.Helper()
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
	var out []*unstructured.Unstructured
	for {
		var m map[string]any
		err := dec.Decode(&m)
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		if m != nil {
			out = append(out, &unstructured.Unstructured{Object: m})
		}
	}
}

// TestTypedCreate creates every fixture through the typed client, as a Go
// controller would, and reads it back.
func TestTypedCreate(t *testing.T) {
	env := k8stest.Shared(t)
	ns := env.NewNamespace(t)
	for _, f := range fixtures(t) {
		for _, obj := range f.objects {
			if !obj.Namespaced() {
				continue // TestRoundTrip has the one MeshConfig
			}
			t.Run(f.name+"/"+obj.GetMeta().Name, func(t *testing.T) {
				r := toResource(t, obj, ns)
				if err := env.Client.Create(t.Context(), r); err != nil {
					t.Fatalf("create: %v", err)
				}
				got, _ := trustmeshv1.New(obj.GetKind())
				if err := env.Client.Get(t.Context(), client.ObjectKeyFromObject(r), got); err != nil {
					t.Fatalf("get: %v", err)
				}
				if diff := cmp.Diff(specOf(obj), specOf(got)); diff != "" {
					t.Errorf("spec read back differs (-sent +read back):\n%s", diff)
				}
			})
		}
	}
}

// TestSchemaRejects sends objects the CRD schema refuses (with a dry run):
// each is refused by the API server with a message naming the field, and
// is invalid for policy.Validate too (the schema is never stricter).
func TestSchemaRejects(t *testing.T) {
	env := k8stest.Shared(t)
	ns := env.NewNamespace(t)
	tests := []struct {
		name string
		doc  string
		// want are substrings of the API server's message.
		want []string
	}{
		{
			name: "authorizationpolicy-action-not-an-action",
			doc:  `{kind: AuthorizationPolicy, metadata: {name: p}, spec: {action: MAYBE}}`,
			want: []string{"spec.action", `"MAYBE" is not an action: want ALLOW, DENY, AUDIT or CUSTOM`},
		},
		{
			name: "authorizationpolicy-action-lowercase",
			doc:  `{kind: AuthorizationPolicy, metadata: {name: p}, spec: {action: deny}}`,
			want: []string{"spec.action", `"deny" is not an action`},
		},
		{
			name: "peerauthentication-mode-not-a-mode",
			doc:  `{kind: PeerAuthentication, metadata: {name: p}, spec: {mtls: {mode: SOMETIMES}}}`,
			want: []string{"spec.mtls.mode", `"SOMETIMES" is not a mode: want UNSET, DISABLE, PERMISSIVE or STRICT`},
		},
		{
			name: "meshconfig-default-mode-unset",
			doc:  `{kind: MeshConfig, metadata: {name: default}, spec: {defaultMTLSMode: UNSET}}`,
			want: []string{"spec.defaultMTLSMode", `"UNSET" is not a mode: want STRICT, PERMISSIVE or DISABLE`},
		},
		{
			name: "meshconfig-not-named-default",
			doc:  `{kind: MeshConfig, metadata: {name: other}, spec: {}}`,
			want: []string{`metadata.name: "other": the MeshConfig must be named "default"`},
		},
		{
			name: "meshconfig-ttl-not-a-string",
			doc:  `{kind: MeshConfig, metadata: {name: default}, spec: {x509SVIDTTL: 3600}}`,
			want: []string{"spec.x509SVIDTTL", "must be of type string"},
		},
		{
			name: "service-port-out-of-range",
			doc:  `{kind: Service, metadata: {name: s}, spec: {ports: [{port: 70000, protocol: HTTP}], endpoints: [{address: "127.0.0.1:1"}], spiffeIDs: ["spiffe://example.org/s"]}}`,
			want: []string{"spec.ports[0].port", "less than or equal to 65535"},
		},
		{
			name: "service-protocol-unknown",
			doc:  `{kind: Service, metadata: {name: s}, spec: {ports: [{port: 53, protocol: UDP}], endpoints: [{address: "127.0.0.1:1"}], spiffeIDs: ["spiffe://example.org/s"]}}`,
			want: []string{"spec.ports[0].protocol", `Unsupported value: "UDP"`, `"HTTP", "HTTP2", "GRPC", "TCP"`},
		},
		{
			name: "service-port-without-number",
			doc:  `{kind: Service, metadata: {name: s}, spec: {ports: [{port: 80, protocol: HTTP, name: a}, {name: b, protocol: TCP}], endpoints: [{address: "127.0.0.1:1", port: 80}], spiffeIDs: ["spiffe://example.org/s"]}}`,
			want: []string{"spec.ports[1].port", "Required value"},
		},
		{
			name: "service-no-ports",
			doc:  `{kind: Service, metadata: {name: s}, spec: {endpoints: [{address: "127.0.0.1:1"}], spiffeIDs: ["spiffe://example.org/s"]}}`,
			want: []string{"spec.ports", "at least one port is required"},
		},
		{
			name: "service-no-spec",
			doc:  `{kind: Service, metadata: {name: s}}`,
			want: []string{"spec", "Required value"},
		},
		{
			name: "workload-no-spiffe-id",
			doc:  `{kind: Workload, metadata: {name: w}, spec: {parentID: "spiffe://example.org/trustmesh/node/n", selectors: ["unix:uid:1"]}}`,
			want: []string{"spec.spiffeID", "is required"},
		},
		{
			name: "workload-no-selectors",
			doc:  `{kind: Workload, metadata: {name: w}, spec: {spiffeID: "spiffe://example.org/w", parentID: "spiffe://example.org/trustmesh/node/n", selectors: []}}`,
			want: []string{"spec.selectors", "at least one selector is required"},
		},
		{
			name: "requestauthentication-rule-without-issuer",
			doc:  `{kind: RequestAuthentication, metadata: {name: r}, spec: {jwtRules: [{jwksUri: "https://i.example.org/jwks"}]}}`,
			want: []string{"spec.jwtRules", "every rule needs an issuer"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// A comment first: policy.Decode takes input that starts
			// with "{" for JSON.
			doc := "# " + tt.name + "\n" + strings.Replace(tt.doc, "{kind:", "{apiVersion: trustmesh.dev/v1, kind:", 1)
			objs, err := policy.Decode([]byte(doc))
			if err == nil {
				err = policy.Validate(objs[0], trustDomain)
			}
			if err == nil {
				t.Fatalf("policy.Validate accepts %s: the schema must not refuse it", doc)
			}
			t.Logf("trustmesh: %v", err)
			u := documents(t, []byte(doc))[0]
			if obj, ok := policy.NewObject(u.GetKind()); !ok {
				t.Fatalf("unknown kind %q", u.GetKind())
			} else if obj.Namespaced() {
				u.SetNamespace(ns)
			}
			err = env.Client.Create(t.Context(), u, client.DryRunAll)
			if !apierrors.IsInvalid(err) {
				t.Fatalf("create %s: got %v, want an Invalid error", doc, err)
			}
			t.Logf("API server: %v", err)
			for _, want := range tt.want {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("got %q, want it to contain %q", err, want)
				}
			}
		})
	}
}

// TestStatusSubresource writes the status through its subresource and
// checks that it and the spec change independently.
func TestStatusSubresource(t *testing.T) {
	env := k8stest.Shared(t)
	ns := env.NewNamespace(t)
	ctx := t.Context()
	c := env.Client
	obj := fixtureObject(t, policy.KindAuthorizationPolicy, "orders-allow")
	r := toResource(t, obj, ns).(*trustmeshv1.AuthorizationPolicy)
	r.Status.AppliedRevision = 99 // ignored on create: the status is its own
	if err := c.Create(ctx, r); err != nil {
		t.Fatal(err)
	}
	if r.Status.AppliedRevision != 0 {
		t.Errorf("after create, appliedRevision %d, want 0: create must not set the status", r.Status.AppliedRevision)
	}
	gen := r.Generation

	status := trustmeshv1.Status{
		ObservedGeneration: gen,
		Conditions: []metav1.Condition{{
			Type: trustmeshv1.ConditionAccepted, Status: metav1.ConditionTrue, Reason: trustmeshv1.ReasonApplied,
			Message: "applied as store revision 7", ObservedGeneration: gen, LastTransitionTime: metav1.Now().Rfc3339Copy(),
		}},
		AppliedRevision: 7,
		Proxies:         &trustmeshv1.ProxiesStatus{Connected: 3, Acked: 2, Nacked: 1, LastNack: "proxy-1: bad snapshot"},
	}
	r.Status = status
	r.Spec.Action = policy.ActionDeny // ignored by a status write
	if err := c.Status().Update(ctx, r); err != nil {
		t.Fatalf("update status: %v", err)
	}
	got := &trustmeshv1.AuthorizationPolicy{}
	if err := c.Get(ctx, client.ObjectKeyFromObject(r), got); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(status, got.Status); diff != "" {
		t.Errorf("status read back differs (-written +read):\n%s", diff)
	}
	if diff := cmp.Diff(specOf(obj), got.Spec); diff != "" {
		t.Errorf("a status write changed the spec (-before +after):\n%s", diff)
	}
	if got.Generation != gen {
		t.Errorf("a status write changed the generation from %d to %d", gen, got.Generation)
	}

	// A spec write changes the generation and leaves the status alone.
	got.Spec.Action = policy.ActionAudit
	got.Status = trustmeshv1.Status{AppliedRevision: 1}
	if err := c.Update(ctx, got); err != nil {
		t.Fatalf("update: %v", err)
	}
	if err := c.Get(ctx, client.ObjectKeyFromObject(r), got); err != nil {
		t.Fatal(err)
	}
	if got.Spec.Action != policy.ActionAudit {
		t.Errorf("action %q after a spec write, want AUDIT", got.Spec.Action)
	}
	if got.Generation != gen+1 {
		t.Errorf("generation %d after a spec write, want %d", got.Generation, gen+1)
	}
	if diff := cmp.Diff(status, got.Status); diff != "" {
		t.Errorf("a spec write changed the status (-before +after):\n%s", diff)
	}
}

// TestPrinterColumns asks the API server for a table, as kubectl get does,
// and checks the cells of a resource with a status.
func TestPrinterColumns(t *testing.T) {
	env := k8stest.Shared(t)
	ns := env.NewNamespace(t)
	ctx := t.Context()
	wl := toResource(t, fixtureObject(t, policy.KindWorkload, "orders"), ns).(*trustmeshv1.Workload)
	pa := toResource(t, fixtureObject(t, policy.KindPeerAuthentication, "orders-mtls"), ns).(*trustmeshv1.PeerAuthentication)
	ap := toResource(t, fixtureObject(t, policy.KindAuthorizationPolicy, "orders-custom"), ns).(*trustmeshv1.AuthorizationPolicy)
	svc := toResource(t, fixtureObject(t, policy.KindService, "orders"), ns).(*trustmeshv1.Service)
	ra := toResource(t, fixtureObject(t, policy.KindRequestAuthentication, "orders-jwt"), ns).(*trustmeshv1.RequestAuthentication)
	for _, r := range []trustmeshv1.Resource{wl, pa, ap, svc, ra} {
		if err := env.Client.Create(ctx, r); err != nil {
			t.Fatal(err)
		}
		r.MeshStatus().Conditions = []metav1.Condition{{Type: trustmeshv1.ConditionAccepted, Status: metav1.ConditionFalse,
			Reason: trustmeshv1.ReasonInvalid, Message: "no", LastTransitionTime: metav1.Now()}}
		r.MeshStatus().AppliedRevision = 42
		if err := env.Client.Status().Update(ctx, r); err != nil {
			t.Fatal(err)
		}
	}

	tests := []struct {
		plural, name string
		wide         bool
		want         map[string]string
	}{
		{"workloads", wl.Name, false, map[string]string{"SPIFFE ID": "spiffe://example.org/ns/shop/sa/orders", "Accepted": "False"}},
		{"workloads", wl.Name, true, map[string]string{"Parent": "spiffe://example.org/trustmesh/node/node-1", "Revision": "42"}},
		{"peerauthentications", pa.Name, false, map[string]string{"Mode": "STRICT", "Accepted": "False"}},
		{"authorizationpolicies", ap.Name, false, map[string]string{"Action": "CUSTOM", "Accepted": "False"}},
		{"services", svc.Name, false, map[string]string{"SPIFFE IDs": `["spiffe://example.org/ns/shop/sa/orders"]`}},
		{"services", svc.Name, true, map[string]string{"Port": "80"}},
		{"requestauthentications", ra.Name, false, map[string]string{"Issuer": "https://issuer.example.org"}},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%s/wide=%v", tt.plural, tt.wide), func(t *testing.T) {
			cells := tableRow(t, env.Config, ns, tt.plural, tt.name, tt.wide)
			for col, want := range tt.want {
				if got, ok := cells[col]; !ok || got != want {
					t.Errorf("column %q: got %q (present %v), want %q; row %v", col, got, ok, want, cells)
				}
			}
		})
	}
}

// tableRow gets one resource as a server-side table, as kubectl get does
// (wide: -o wide, with the priority columns), and returns its cells by
// column name.
func tableRow(t *testing.T, cfg *rest.Config, ns, plural, name string, wide bool) map[string]string {
	t.Helper()
	hc, err := rest.HTTPClientFor(cfg)
	if err != nil {
		t.Fatal(err)
	}
	url := fmt.Sprintf("%s/apis/%s/%s/namespaces/%s/%s/%s", strings.TrimSuffix(cfg.Host, "/"), trustmeshv1.Group, trustmeshv1.Version, ns, plural, name)
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept", "application/json;as=Table;v=v1;g=meta.k8s.io")
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s %v\n%s", url, resp.Status, err, body)
	}
	var table metav1.Table
	if err := json.Unmarshal(body, &table); err != nil {
		t.Fatal(err)
	}
	if len(table.Rows) != 1 {
		t.Fatalf("%d rows, want 1", len(table.Rows))
	}
	cells := make(map[string]string)
	for i, col := range table.ColumnDefinitions {
		if col.Priority > 0 && !wide {
			continue
		}
		cells[col.Name] = fmt.Sprint(table.Rows[0].Cells[i])
	}
	return cells
}

// fixtureObject returns the fixture object of the kind and name.
func fixtureObject(t *testing.T, kind, name string) policy.Object {
	t.Helper()
	for _, f := range fixtures(t) {
		for _, obj := range f.objects {
			if obj.GetKind() == kind && obj.GetMeta().Name == name {
				return obj
			}
		}
	}
	t.Fatalf("no fixture %s %s", kind, name)
	return nil
}

package policy

import (
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func peerAuth(ns, name string, mode MTLSMode, sel *Selector, ports map[uint32]PortMTLS) *PeerAuthentication {
	return &PeerAuthentication{
		APIVersion: APIVersion,
		Kind:       KindPeerAuthentication,
		Metadata:   Metadata{Name: name, Namespace: ns},
		Spec:       PeerAuthenticationSpec{Selector: sel, MTLS: MutualTLS{Mode: mode}, PortLevelMTLS: ports},
	}
}

// portPeerAuth is the workload-specific policy of
// testdata/peerauthentication.yaml.
func portPeerAuth() *PeerAuthentication {
	return peerAuth("shop", "orders", MTLSUnset, app("orders"), map[uint32]PortMTLS{
		8080: {Mode: MTLSStrict},
		9901: {Mode: MTLSDisable},
	})
}

func withMode(p *PeerAuthentication, m MTLSMode) *PeerAuthentication {
	p.Spec.MTLS.Mode = m
	return p
}

// app returns a selector of the label app=name.
func app(name string) *Selector { return &Selector{MatchLabels: map[string]string{"app": name}} }

func TestValidatePeerAuthenticationAccepts(t *testing.T) {
	for _, tc := range []struct {
		name string
		p    *PeerAuthentication
	}{
		{"mesh-wide", peerAuth(RootNamespace, "default", MTLSStrict, nil, nil)},
		{"namespace-wide", peerAuth("shop", "default", MTLSPermissive, nil, nil)},
		{"workload-specific", peerAuth("shop", "orders", MTLSDisable, app("orders"), nil)},
		{"ports", portPeerAuth()},
		{"ports-all-modes", peerAuth("shop", "orders", "", app("orders"), map[uint32]PortMTLS{
			1: {}, 2: {Mode: MTLSUnset}, 3: {Mode: MTLSDisable}, 4: {Mode: MTLSPermissive}, 65535: {Mode: MTLSStrict},
		})},
		{"empty-spec", peerAuth("shop", "default", "", nil, nil)},
		{"unset", peerAuth(RootNamespace, "default", MTLSUnset, nil, nil)},
		{"no-type-meta", &PeerAuthentication{Metadata: Metadata{Name: "p", Namespace: "x"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := Validate(tc.p, testTD); err != nil {
				t.Errorf("Validate: got %v, want nil", err)
			}
		})
	}
}

// TestValidatePeerAuthentication has one case per rule; each makes one
// problem, named by its field.
func TestValidatePeerAuthentication(t *testing.T) {
	for _, tc := range []struct {
		name   string
		modify func(p *PeerAuthentication)
		want   string
	}{
		{"name-missing", func(p *PeerAuthentication) { p.Metadata.Name = "" }, "metadata.name: is required"},
		{"namespace-invalid", func(p *PeerAuthentication) { p.Metadata.Namespace = "Shop" }, `metadata.namespace: "Shop" is not a valid namespace`},
		{"kind-wrong", func(p *PeerAuthentication) { p.Kind = KindService }, `kind: "Service" does not match the object's type: want "PeerAuthentication"`},
		{"mode-unknown", func(p *PeerAuthentication) { p.Spec.MTLS.Mode = "strict" }, `spec.mtls.mode: "strict" is not a mode: want UNSET, DISABLE, PERMISSIVE or STRICT`},
		{"selector-empty", func(p *PeerAuthentication) { p.Spec.Selector = &Selector{}; p.Spec.PortLevelMTLS = nil }, "spec.selector.matchLabels: is empty, which selects nothing: name at least one label, or leave out spec.selector for a namespace-wide policy"},
		{"selector-label-value-bad", func(p *PeerAuthentication) { p.Spec.Selector = &Selector{MatchLabels: map[string]string{"app": "-x"}} }, `spec.selector.matchLabels["app"]: invalid label value "-x"`},
		{"selector-in-root-namespace", func(p *PeerAuthentication) { p.Metadata.Namespace = RootNamespace }, "spec.selector: a policy in the root namespace trustmesh-system is mesh-wide and cannot have a selector (Istio ignores such a policy)"},
		{"port-level-without-selector", func(p *PeerAuthentication) { p.Spec.Selector = nil }, "spec.portLevelMtls: is only allowed with spec.selector: as in Istio, port-level modes apply to the ports of selected workloads"},
		{"port-zero", func(p *PeerAuthentication) { p.Spec.PortLevelMTLS[0] = PortMTLS{Mode: MTLSStrict} }, "spec.portLevelMtls[0]: port 0 is out of range: a port is 1 to 65535"},
		{"port-too-large", func(p *PeerAuthentication) { p.Spec.PortLevelMTLS[65536] = PortMTLS{Mode: MTLSStrict} }, "spec.portLevelMtls[65536]: port 65536 is out of range: a port is 1 to 65535"},
		{"port-mode-unknown", func(p *PeerAuthentication) { p.Spec.PortLevelMTLS[8080] = PortMTLS{Mode: "OFF"} }, `spec.portLevelMtls[8080].mode: "OFF" is not a mode: want UNSET, DISABLE, PERMISSIVE or STRICT`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := portPeerAuth()
			tc.modify(p)
			checkOneProblem(t, p, tc.want)
		})
	}
}

// TestMeshConfigRejectsUnset checks that UNSET, a PeerAuthentication mode,
// is not a mesh default.
func TestMeshConfigRejectsUnset(t *testing.T) {
	m := validMeshConfig()
	m.Spec.DefaultMTLSMode = MTLSUnset
	checkOneProblem(t, m, `spec.defaultMTLSMode: "UNSET" is not a mode`)
}

func TestResolvePeerAuthentication(t *testing.T) {
	// The workload resolved by default: shop/orders, app=orders, version=v1.
	w := &Workload{Metadata: Metadata{Name: "orders", Namespace: "shop", Labels: map[string]string{"app": "orders", "version": "v1"}}}
	mesh := func(m MTLSMode) *PeerAuthentication { return peerAuth(RootNamespace, "default", m, nil, nil) }
	namespace := func(m MTLSMode) *PeerAuthentication { return peerAuth("shop", "default", m, nil, nil) }
	workload := func(m MTLSMode, ports map[uint32]PortMTLS) *PeerAuthentication {
		return peerAuth("shop", "orders", m, app("orders"), ports)
	}
	created := func(rev int64, p *PeerAuthentication) *PeerAuthentication {
		p.Metadata.CreationRevision = rev
		return p
	}
	named := func(name string, p *PeerAuthentication) *PeerAuthentication {
		p.Metadata.Name = name
		return p
	}

	for _, tc := range []struct {
		name     string
		policies []*PeerAuthentication
		// w is the workload resolved, default shop/orders; nilWorkload
		// resolves for a nil one.
		w           *Workload
		nilWorkload bool
		meshDefault MTLSMode
		want        MTLSMode
		wantPorts   map[uint32]MTLSMode
	}{
		// The mesh default.
		{name: "no-policies", meshDefault: MTLSPermissive, want: MTLSPermissive},
		{name: "no-policies-default-disable", meshDefault: MTLSDisable, want: MTLSDisable},
		{name: "mesh-default-empty-is-strict", meshDefault: "", want: MTLSStrict},
		{name: "mesh-default-unset-is-strict", meshDefault: MTLSUnset, want: MTLSStrict},
		{name: "mesh-default-invalid-is-strict", meshDefault: "OFF", want: MTLSStrict},

		// One level at a time, each over the mesh default.
		{name: "mesh-wide", policies: []*PeerAuthentication{mesh(MTLSDisable)}, meshDefault: MTLSStrict, want: MTLSDisable},
		{name: "mesh-wide-unset", policies: []*PeerAuthentication{mesh(MTLSUnset)}, meshDefault: MTLSPermissive, want: MTLSPermissive},
		{name: "mesh-wide-empty-mode", policies: []*PeerAuthentication{mesh("")}, meshDefault: MTLSPermissive, want: MTLSPermissive},
		{name: "namespace-wide", policies: []*PeerAuthentication{namespace(MTLSPermissive)}, meshDefault: MTLSStrict, want: MTLSPermissive},
		{name: "workload-specific", policies: []*PeerAuthentication{workload(MTLSDisable, nil)}, meshDefault: MTLSStrict, want: MTLSDisable},

		// Narrower levels override broader ones.
		{name: "namespace-over-mesh", policies: []*PeerAuthentication{mesh(MTLSStrict), namespace(MTLSPermissive)}, meshDefault: MTLSDisable, want: MTLSPermissive},
		{name: "workload-over-namespace", policies: []*PeerAuthentication{mesh(MTLSDisable), namespace(MTLSPermissive), workload(MTLSStrict, nil)}, meshDefault: MTLSDisable, want: MTLSStrict},
		{name: "workload-over-mesh", policies: []*PeerAuthentication{mesh(MTLSPermissive), workload(MTLSStrict, nil)}, meshDefault: MTLSDisable, want: MTLSStrict},
		{name: "stricter-mesh-does-not-win", policies: []*PeerAuthentication{mesh(MTLSStrict), namespace(MTLSDisable)}, meshDefault: MTLSStrict, want: MTLSDisable},

		// UNSET inherits from the next broader level that sets a mode.
		{name: "workload-unset-inherits-namespace", policies: []*PeerAuthentication{mesh(MTLSStrict), namespace(MTLSPermissive), workload(MTLSUnset, nil)}, meshDefault: MTLSDisable, want: MTLSPermissive},
		{name: "namespace-unset-inherits-mesh", policies: []*PeerAuthentication{mesh(MTLSPermissive), namespace(MTLSUnset)}, meshDefault: MTLSStrict, want: MTLSPermissive},
		{name: "unset-skips-two-levels", policies: []*PeerAuthentication{mesh(MTLSPermissive), namespace(MTLSUnset), workload("", nil)}, meshDefault: MTLSStrict, want: MTLSPermissive},
		{name: "all-unset-inherit-default", policies: []*PeerAuthentication{mesh(MTLSUnset), namespace(MTLSUnset), workload(MTLSUnset, nil)}, meshDefault: MTLSDisable, want: MTLSDisable},

		// Policies that do not apply.
		{name: "other-namespace-ignored", policies: []*PeerAuthentication{peerAuth("billing", "default", MTLSDisable, nil, nil)}, meshDefault: MTLSStrict, want: MTLSStrict},
		{name: "other-namespace-selector-ignored", policies: []*PeerAuthentication{peerAuth("billing", "orders", MTLSDisable, app("orders"), nil)}, meshDefault: MTLSStrict, want: MTLSStrict},
		{name: "selector-not-matching", policies: []*PeerAuthentication{peerAuth("shop", "payments", MTLSDisable, app("payments"), nil)}, meshDefault: MTLSStrict, want: MTLSStrict},
		{name: "selector-needs-every-label", policies: []*PeerAuthentication{peerAuth("shop", "v2", MTLSDisable, &Selector{MatchLabels: map[string]string{"app": "orders", "version": "v2"}}, nil)}, meshDefault: MTLSStrict, want: MTLSStrict},
		{name: "selector-every-label", policies: []*PeerAuthentication{peerAuth("shop", "v1", MTLSDisable, &Selector{MatchLabels: map[string]string{"app": "orders", "version": "v1"}}, nil)}, meshDefault: MTLSStrict, want: MTLSDisable},
		{name: "empty-selector-selects-nothing", policies: []*PeerAuthentication{peerAuth("shop", "all", MTLSDisable, &Selector{}, nil)}, meshDefault: MTLSStrict, want: MTLSStrict},
		{name: "root-namespace-selector-ignored", policies: []*PeerAuthentication{peerAuth(RootNamespace, "orders", MTLSDisable, app("orders"), nil)}, meshDefault: MTLSStrict, want: MTLSStrict},
		{
			name:        "root-namespace-selector-ignored-in-root-namespace",
			policies:    []*PeerAuthentication{peerAuth(RootNamespace, "orders", MTLSDisable, app("orders"), nil)},
			w:           &Workload{Metadata: Metadata{Name: "orders", Namespace: RootNamespace, Labels: map[string]string{"app": "orders"}}},
			meshDefault: MTLSStrict,
			want:        MTLSStrict,
		},
		{
			name:        "mesh-wide-applies-in-root-namespace",
			policies:    []*PeerAuthentication{mesh(MTLSPermissive), namespace(MTLSDisable)},
			w:           &Workload{Metadata: Metadata{Name: "ca", Namespace: RootNamespace}},
			meshDefault: MTLSStrict,
			want:        MTLSPermissive,
		},
		{name: "nil-policy-skipped", policies: []*PeerAuthentication{nil, namespace(MTLSPermissive), nil}, meshDefault: MTLSStrict, want: MTLSPermissive},
		{
			name:        "nil-workload-gets-mesh-wide",
			policies:    []*PeerAuthentication{mesh(MTLSPermissive), namespace(MTLSDisable), workload(MTLSDisable, nil)},
			nilWorkload: true,
			meshDefault: MTLSStrict,
			want:        MTLSPermissive,
		},

		// Of several policies of one level, the oldest counts.
		{name: "oldest-mesh-wide", policies: []*PeerAuthentication{created(5, named("a", mesh(MTLSDisable))), created(3, named("b", mesh(MTLSPermissive)))}, meshDefault: MTLSStrict, want: MTLSPermissive},
		{name: "oldest-namespace-wide", policies: []*PeerAuthentication{created(2, named("z", namespace(MTLSDisable))), created(9, named("a", namespace(MTLSPermissive)))}, meshDefault: MTLSStrict, want: MTLSDisable},
		{name: "oldest-workload-specific", policies: []*PeerAuthentication{created(8, named("a", workload(MTLSStrict, nil))), created(7, named("b", workload(MTLSDisable, nil)))}, meshDefault: MTLSPermissive, want: MTLSDisable},
		{name: "oldest-same-revision-lowest-name", policies: []*PeerAuthentication{created(4, named("b", namespace(MTLSDisable))), created(4, named("a", namespace(MTLSPermissive)))}, meshDefault: MTLSStrict, want: MTLSPermissive},
		{name: "oldest-not-stored-counts-first", policies: []*PeerAuthentication{created(1, named("a", namespace(MTLSDisable))), named("b", namespace(MTLSPermissive))}, meshDefault: MTLSStrict, want: MTLSPermissive},
		{
			// The oldest policy counts even if it is UNSET: a newer one
			// of the same level does not fill in its mode.
			name:        "oldest-unset-inherits-not-newer",
			policies:    []*PeerAuthentication{mesh(MTLSPermissive), created(1, named("old", namespace(MTLSUnset))), created(2, named("new", namespace(MTLSDisable)))},
			meshDefault: MTLSStrict,
			want:        MTLSPermissive,
		},

		// Port-level modes.
		{
			name:        "port-level",
			policies:    []*PeerAuthentication{workload(MTLSStrict, map[uint32]PortMTLS{8080: {Mode: MTLSDisable}, 9090: {Mode: MTLSPermissive}})},
			meshDefault: MTLSStrict,
			want:        MTLSStrict,
			wantPorts:   map[uint32]MTLSMode{8080: MTLSDisable, 9090: MTLSPermissive},
		},
		{
			name:        "port-level-same-as-workload-left-out",
			policies:    []*PeerAuthentication{workload(MTLSStrict, map[uint32]PortMTLS{8080: {Mode: MTLSStrict}, 9090: {Mode: MTLSDisable}})},
			meshDefault: MTLSPermissive,
			want:        MTLSStrict,
			wantPorts:   map[uint32]MTLSMode{9090: MTLSDisable},
		},
		{
			name:        "port-level-unset-inherits-workload",
			policies:    []*PeerAuthentication{workload(MTLSPermissive, map[uint32]PortMTLS{8080: {Mode: MTLSUnset}, 9090: {}})},
			meshDefault: MTLSStrict,
			want:        MTLSPermissive,
		},
		{
			// Istio's "inherit the namespace's mode, set one port".
			name:        "port-level-with-workload-unset",
			policies:    []*PeerAuthentication{mesh(MTLSStrict), namespace(MTLSPermissive), workload(MTLSUnset, map[uint32]PortMTLS{8080: {Mode: MTLSStrict}, 9090: {Mode: MTLSPermissive}, 9901: {Mode: MTLSUnset}})},
			meshDefault: MTLSDisable,
			want:        MTLSPermissive,
			wantPorts:   map[uint32]MTLSMode{8080: MTLSStrict},
		},
		{
			name:        "port-level-of-namespace-wide-ignored",
			policies:    []*PeerAuthentication{peerAuth("shop", "default", MTLSStrict, nil, map[uint32]PortMTLS{8080: {Mode: MTLSDisable}})},
			meshDefault: MTLSPermissive,
			want:        MTLSStrict,
		},
		{
			name:        "port-level-of-mesh-wide-ignored",
			policies:    []*PeerAuthentication{peerAuth(RootNamespace, "default", MTLSStrict, nil, map[uint32]PortMTLS{8080: {Mode: MTLSDisable}})},
			meshDefault: MTLSPermissive,
			want:        MTLSStrict,
		},
		{
			name: "port-level-of-newer-workload-policy-ignored",
			policies: []*PeerAuthentication{
				created(1, named("old", workload(MTLSStrict, nil))),
				created(2, named("new", workload(MTLSStrict, map[uint32]PortMTLS{8080: {Mode: MTLSDisable}}))),
			},
			meshDefault: MTLSPermissive,
			want:        MTLSStrict,
		},
		{
			name:        "port-level-of-unselected-policy-ignored",
			policies:    []*PeerAuthentication{peerAuth("shop", "payments", MTLSStrict, app("payments"), map[uint32]PortMTLS{8080: {Mode: MTLSDisable}})},
			meshDefault: MTLSStrict,
			want:        MTLSStrict,
		},

		// Modes that are not modes, in unvalidated policies, fail closed.
		{name: "invalid-mode-is-strict", policies: []*PeerAuthentication{mesh(MTLSDisable), namespace("OFF")}, meshDefault: MTLSDisable, want: MTLSStrict},
		{
			name:        "invalid-port-mode-is-strict",
			policies:    []*PeerAuthentication{workload(MTLSPermissive, map[uint32]PortMTLS{8080: {Mode: "disable"}})},
			meshDefault: MTLSDisable,
			want:        MTLSPermissive,
			wantPorts:   map[uint32]MTLSMode{8080: MTLSStrict},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			wl := w
			switch {
			case tc.nilWorkload:
				wl = nil
			case tc.w != nil:
				wl = tc.w
			}
			// The order of the policies does not matter.
			for _, policies := range [][]*PeerAuthentication{tc.policies, reversed(tc.policies)} {
				mode, ports := ResolvePeerAuthentication(policies, wl, tc.meshDefault)
				if mode != tc.want {
					t.Errorf("ResolvePeerAuthentication: got mode %s, want %s", mode, tc.want)
				}
				if diff := cmp.Diff(tc.wantPorts, ports); diff != "" {
					t.Errorf("ResolvePeerAuthentication: port modes (-want +got):\n%s", diff)
				}
			}
		})
	}
}

func reversed[T any](s []T) []T {
	r := slices.Clone(s)
	slices.Reverse(r)
	return r
}

// TestResolvePeerAuthenticationFixture resolves the policies of
// testdata/peerauthentication.yaml, as decoded.
func TestResolvePeerAuthenticationFixture(t *testing.T) {
	objs, err := Decode(readFixture(t, "peerauthentication.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var policies []*PeerAuthentication
	for _, obj := range objs {
		if err := Validate(obj, testTD); err != nil {
			t.Fatalf("Validate: %v", err)
		}
		policies = append(policies, obj.(*PeerAuthentication))
	}
	for _, tc := range []struct {
		name      string
		w         *Workload
		want      MTLSMode
		wantPorts map[uint32]MTLSMode
	}{
		{"selected", &Workload{Metadata: Metadata{Namespace: "shop", Labels: map[string]string{"app": "orders"}}}, MTLSPermissive, map[uint32]MTLSMode{8080: MTLSStrict, 9901: MTLSDisable}},
		{"same-namespace", &Workload{Metadata: Metadata{Namespace: "shop", Labels: map[string]string{"app": "cart"}}}, MTLSPermissive, nil},
		{"other-namespace", &Workload{Metadata: Metadata{Namespace: "default", Labels: map[string]string{"app": "orders"}}}, MTLSStrict, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mode, ports := ResolvePeerAuthentication(policies, tc.w, MTLSDisable)
			if mode != tc.want {
				t.Errorf("got mode %s, want %s", mode, tc.want)
			}
			if diff := cmp.Diff(tc.wantPorts, ports); diff != "" {
				t.Errorf("port modes (-want +got):\n%s", diff)
			}
		})
	}
}

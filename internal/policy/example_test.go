package policy_test

import (
	"fmt"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/trustmesh/trustmesh/internal/policy"
)

func ExampleDecode() {
	objs, err := policy.Decode([]byte(`
apiVersion: trustmesh.dev/v1
kind: Workload
metadata:
  name: web
spec:
  spiffeID: spiffe://example.org/ns/default/sa/web
  parentID: spiffe://example.org/trustmesh/node/node-1
  selectors: ["unix:uid:1000"]
---
apiVersion: trustmesh.dev/v1
kind: Workload
metadata:
  name: api
spec:
  spifeID: spiffe://example.org/ns/default/sa/api
`))
	fmt.Println(len(objs))
	fmt.Println(err)
	// Output:
	// 0
	// document 2 (Workload "api"): unknown field "spec.spifeID" (did you mean "spiffeID"?)
}

func ExampleValidate() {
	td := spiffeid.RequireTrustDomainFromString("example.org")
	w := &policy.Workload{
		Metadata: policy.Metadata{Name: "web", Namespace: "default"},
		Spec: policy.WorkloadSpec{
			SPIFFEID: "spiffe://Example.org/web",
			ParentID: "spiffe://example.org/trustmesh/node/node-1",
		},
	}
	fmt.Println(policy.Validate(w, td))
	// Output:
	// Workload "default/web": spec.spiffeID: "spiffe://Example.org/web" is not a valid SPIFFE ID: trust domain characters must be lowercase letters, digits, dots, dashes or underscores (found "E"; write the trust domain in lowercase)
	// Workload "default/web": spec.selectors: at least one selector is required; an empty list would match every process
}

func ExampleResolveKind() {
	kind, _ := policy.ResolveKind("wl")
	fmt.Println(kind)
	_, err := policy.ResolveKind("gateways")
	fmt.Println(err)
	// Output:
	// Workload
	// unknown kind "gateways" (known kinds: AuthorizationPolicy, MeshConfig, PeerAuthentication, RequestAuthentication, Service, Workload)
}

func ExampleToYAML() {
	y, _ := policy.ToYAML(policy.DefaultMeshConfig())
	fmt.Print(string(y))
	// Output:
	// apiVersion: trustmesh.dev/v1
	// kind: MeshConfig
	// metadata:
	//   name: default
	// spec:
	//   defaultMTLSMode: STRICT
	//   x509SVIDTTL: 1h
	//   jwtSVIDTTL: 5m
}

func ExampleResolvePeerAuthentication() {
	policies := []*policy.PeerAuthentication{
		{ // mesh-wide
			Metadata: policy.Metadata{Name: "default", Namespace: policy.RootNamespace},
			Spec:     policy.PeerAuthenticationSpec{MTLS: policy.MutualTLS{Mode: policy.MTLSStrict}},
		},
		{ // namespace-wide
			Metadata: policy.Metadata{Name: "default", Namespace: "shop"},
			Spec:     policy.PeerAuthenticationSpec{MTLS: policy.MutualTLS{Mode: policy.MTLSPermissive}},
		},
		{ // workload-specific: inherit the namespace's mode, but require mTLS on port 8080
			Metadata: policy.Metadata{Name: "orders", Namespace: "shop"},
			Spec: policy.PeerAuthenticationSpec{
				Selector:      &policy.Selector{MatchLabels: map[string]string{"app": "orders"}},
				MTLS:          policy.MutualTLS{Mode: policy.MTLSUnset},
				PortLevelMTLS: map[uint32]policy.PortMTLS{8080: {Mode: policy.MTLSStrict}},
			},
		},
	}
	orders := &policy.Workload{Metadata: policy.Metadata{Name: "orders", Namespace: "shop", Labels: map[string]string{"app": "orders"}}}
	cart := &policy.Workload{Metadata: policy.Metadata{Name: "cart", Namespace: "shop", Labels: map[string]string{"app": "cart"}}}
	web := &policy.Workload{Metadata: policy.Metadata{Name: "web", Namespace: "default"}}
	for _, w := range []*policy.Workload{orders, cart, web} {
		mode, ports := policy.ResolvePeerAuthentication(policies, w, policy.MTLSDisable)
		fmt.Println(w.Metadata.Name, mode, ports)
	}
	// Output:
	// orders PERMISSIVE map[8080:STRICT]
	// cart PERMISSIVE map[]
	// web STRICT map[]
}

func ExampleService_Hosts() {
	svc := &policy.Service{Metadata: policy.Metadata{Name: "orders", Namespace: "shop"}}
	fmt.Println(svc.Hosts())
	// Output:
	// [orders orders.shop orders.shop.svc]
}

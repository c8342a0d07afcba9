// Package configsync is the push protocol between the control plane and
// proxies: the server-side hub that computes a snapshot per proxy identity
// and streams new versions when an input changes (ACK/NACK recorded), and
// the proxy-side subscriber that applies them.
//
// The model: the server assembly publishes a World (the objects from the
// store plus revocations) with SetWorld; the hub adds what only it knows
// (which proxies are connected, ready, and where they listen) and computes
// each proxy's snapshot with the pure function Compute. Changes are
// debounced; a proxy is sent a snapshot only when its own content changed.
package configsync

import (
	"slices"
	"strings"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	configsyncv1 "github.com/trustmesh/trustmesh/api/configsync/v1"
	"github.com/trustmesh/trustmesh/internal/policy"
)

// World is the store-derived input of every snapshot. It is immutable once
// published.
type World struct {
	Revision    int64
	Mesh        policy.MeshConfigSpec
	Services    []*policy.Service
	Workloads   []*policy.Workload
	PeerAuths   []*policy.PeerAuthentication
	Revocations []*configsyncv1.Revocation
	// AuthzPolicies and RequestAuths are every AuthorizationPolicy and
	// RequestAuthentication, with metadata.revision set.
	AuthzPolicies []*policy.AuthorizationPolicy
	RequestAuths  []*policy.RequestAuthentication
}

// ProxyInfo is what a connected proxy told us about itself.
type ProxyInfo struct {
	ID       string
	SPIFFEID spiffeid.ID
	Inbound  []*configsyncv1.InboundListener
	Mode     string
	Version  string
	// Ready: the proxy has ACKed a snapshot, so it can take traffic.
	Ready bool
}

// workloadOf finds the Workload registration of an identity: the oldest
// (namespace, name order) when several share it.
func workloadOf(w *World, id spiffeid.ID) *policy.Workload {
	for _, wl := range w.Workloads {
		if wl.Spec.SPIFFEID == id.String() {
			return wl
		}
	}
	return nil
}

// Compute returns the snapshot content (version unset) for proxy p.
func Compute(w *World, proxies []ProxyInfo, p ProxyInfo) *configsyncv1.Snapshot {
	return computeWith(w, ComputeServices(w, proxies), p)
}

// ComputeServices is the part of every proxy's snapshot that does not
// depend on the proxy: the services and their endpoints. The hub computes
// it once per generation and shares it between streams (read-only), which
// keeps a change O(proxies) rather than O(proxies²).
func ComputeServices(w *World, proxies []ProxyInfo) []*configsyncv1.Service {
	out := make([]*configsyncv1.Service, 0, len(w.Services))
	for _, svc := range w.Services {
		out = append(out, serviceFor(w, proxies, svc))
	}
	return out
}

// computeWith assembles proxy p's snapshot around the shared services.
func computeWith(w *World, services []*configsyncv1.Service, p ProxyInfo) *configsyncv1.Snapshot {
	snap := &configsyncv1.Snapshot{
		SpiffeId:    p.SPIFFEID.String(),
		Revocations: w.Revocations,
		Inbound:     inboundSettings(w, p),
		Policies:    policiesFor(w, p),
	}
	if len(services) > 0 {
		snap.Services = services
	}
	return snap
}

// workloadOrStandIn is the Workload of the proxy's identity or, for an
// identity without a registration, a stand-in in the default namespace
// without labels, so that it still gets mesh-wide and namespace policy.
func workloadOrStandIn(w *World, p ProxyInfo) *policy.Workload {
	if wl := workloadOf(w, p.SPIFFEID); wl != nil {
		return wl
	}
	return &policy.Workload{Metadata: policy.Metadata{Namespace: policy.DefaultNamespace}}
}

// policiesFor returns the AuthorizationPolicies and RequestAuthentications
// that apply to the proxy's workload, as stored JSON.
func policiesFor(w *World, p ProxyInfo) []*configsyncv1.PolicyObject {
	wl := workloadOrStandIn(w, p)
	var out []*configsyncv1.PolicyObject
	add := func(o policy.Object) {
		data, err := policy.Marshal(o)
		if err != nil {
			// Not reached for objects that were decoded from the store; a
			// policy that cannot be sent must not silently vanish, so the
			// proxy is sent one it will reject (and NACK, keeping its last
			// good config).
			data = []byte("{}")
		}
		out = append(out, &configsyncv1.PolicyObject{Kind: o.GetKind(), Json: data})
	}
	for _, ap := range w.AuthzPolicies {
		if ap.AppliesTo(wl) {
			add(ap)
		}
	}
	for _, ra := range w.RequestAuths {
		if ra.AppliesTo(wl) {
			add(ra)
		}
	}
	return out
}

func inboundSettings(w *World, p ProxyInfo) *configsyncv1.InboundSettings {
	wl := workloadOrStandIn(w, p)
	mode, ports := policy.ResolvePeerAuthentication(w.PeerAuths, wl, w.Mesh.DefaultMTLSMode)
	in := &configsyncv1.InboundSettings{DefaultMode: string(mode)}
	if len(ports) > 0 {
		in.PortModes = map[uint32]string{}
		for port, m := range ports {
			in.PortModes[port] = string(m)
		}
	}
	return in
}

func serviceFor(w *World, proxies []ProxyInfo, svc *policy.Service) *configsyncv1.Service {
	out := &configsyncv1.Service{
		Name:      svc.Metadata.Name,
		Namespace: svc.Metadata.Namespace,
		SpiffeIds: slices.Clone(svc.Spec.SPIFFEIDs),
		Hosts:     svc.Hosts(),
	}
	for _, port := range svc.Spec.Ports {
		out.Ports = append(out.Ports, &configsyncv1.ServicePort{Name: port.Name, Port: port.Port, Protocol: string(port.Protocol), TargetPort: port.Target()})
	}
	for _, ep := range svc.Spec.Endpoints {
		port := ep.Port
		if port == 0 && len(svc.Spec.Ports) == 1 {
			port = svc.Spec.Ports[0].Port
		}
		out.Endpoints = append(out.Endpoints, &configsyncv1.Endpoint{Address: ep.Address, Port: port})
	}
	// Dynamic endpoints: ready proxies whose identity is registered by a
	// Workload the service selects, and is allowed to serve the service.
	for _, px := range proxies {
		if !px.Ready || !slices.Contains(svc.Spec.SPIFFEIDs, px.SPIFFEID.String()) {
			continue
		}
		if !selectedIdentity(w, svc, px.SPIFFEID) {
			continue
		}
		for _, port := range svc.Spec.Ports {
			for _, l := range px.Inbound {
				if l.GetAppPort() == port.Target() || len(px.Inbound) == 1 {
					out.Endpoints = append(out.Endpoints, &configsyncv1.Endpoint{Address: l.GetAddress(), Port: port.Port, SpiffeId: px.SPIFFEID.String()})
					break
				}
			}
		}
	}
	slices.SortFunc(out.Endpoints, func(a, b *configsyncv1.Endpoint) int {
		if c := strings.Compare(a.Address, b.Address); c != 0 {
			return c
		}
		return int(a.Port) - int(b.Port)
	})
	out.Endpoints = slices.CompactFunc(out.Endpoints, func(a, b *configsyncv1.Endpoint) bool {
		return a.Address == b.Address && a.Port == b.Port && a.SpiffeId == b.SpiffeId
	})
	return out
}

// selectedIdentity: some Workload registering id is selected by svc.
func selectedIdentity(w *World, svc *policy.Service, id spiffeid.ID) bool {
	for _, wl := range w.Workloads {
		if wl.Spec.SPIFFEID == id.String() && svc.Selects(wl) {
			return true
		}
	}
	return false
}

func policyDefaults() policy.MeshConfigSpec { return policy.DefaultMeshConfig().Effective() }

package policy

import (
	"cmp"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// RootNamespace is the mesh's root namespace: a PeerAuthentication in it
// without a selector applies to the whole mesh.
const RootNamespace = "trustmesh-system"

// MTLSUnset is the mode of a PeerAuthentication that does not set one: it
// inherits the mode of the next broader level (see
// ResolvePeerAuthentication). It is not a mode of MeshConfig.
const MTLSUnset MTLSMode = "UNSET"

// PeerAuthentication sets the mTLS mode of the inbound proxies of
// workloads, as Istio's PeerAuthentication does. Its scope is
//
//   - mesh-wide: in RootNamespace, without a selector;
//   - namespace-wide: in another namespace, without a selector;
//   - workload-specific: with a selector, for the Workloads of its own
//     namespace that the selector selects.
//
// As in Istio, a policy in RootNamespace with a selector is ignored;
// Validate rejects it. See ResolvePeerAuthentication for how the levels
// combine.
type PeerAuthentication struct {
	APIVersion string                 `json:"apiVersion"`
	Kind       string                 `json:"kind"`
	Metadata   Metadata               `json:"metadata"`
	Spec       PeerAuthenticationSpec `json:"spec"`
}

// PeerAuthenticationSpec is the body of a PeerAuthentication.
type PeerAuthenticationSpec struct {
	// Selector makes the policy workload-specific: it applies to the
	// Workloads of its namespace that the selector selects. Without it the
	// policy applies to the whole namespace (the whole mesh in
	// RootNamespace).
	Selector *Selector `json:"selector,omitempty"`
	// MTLS is the mode of the workloads' inbound proxies. Left out, or
	// UNSET, it inherits the mode of the next broader level.
	MTLS MutualTLS `json:"mtls,omitzero"`

	// controller-gen knows no number keys: in the CRD schema (see doc.go)
	// PortLevelMTLS is an object of any keys and values.
	// +kubebuilder:validation:Schemaless
	// +kubebuilder:validation:Type=object
	// +kubebuilder:pruning:PreserveUnknownFields

	// PortLevelMTLS overrides MTLS for single ports, keyed by the
	// workload's application port (a ServicePort's target port, not the
	// port clients address). As in Istio, it is allowed only with a
	// Selector. A port's UNSET mode inherits the workload's mode.
	PortLevelMTLS map[uint32]PortMTLS `json:"portLevelMtls,omitempty"`
}

// MutualTLS is the mTLS setting of a PeerAuthentication.
type MutualTLS struct {
	// Mode is UNSET, DISABLE, PERMISSIVE or STRICT. Empty means UNSET.
	Mode MTLSMode `json:"mode,omitempty"`
}

// PortMTLS is the mTLS setting of one port in
// PeerAuthenticationSpec.PortLevelMTLS. It is a MutualTLS, as in Istio.
type PortMTLS = MutualTLS

var _ kindObject = (*PeerAuthentication)(nil)

// GetKind returns "PeerAuthentication".
func (p *PeerAuthentication) GetKind() string { return KindPeerAuthentication }

// GetMeta returns the object's metadata.
func (p *PeerAuthentication) GetMeta() *Metadata { return &p.Metadata }

// Namespaced returns true.
func (p *PeerAuthentication) Namespaced() bool { return true }

func (p *PeerAuthentication) typeMeta() (string, string) { return p.APIVersion, p.Kind }

func (p *PeerAuthentication) withTypeMeta() kindObject {
	c := *p
	c.APIVersion, c.Kind = APIVersion, KindPeerAuthentication
	return &c
}

func (p *PeerAuthentication) validateSpec(v *validator, _ spiffeid.TrustDomain) {
	s := &p.Spec
	if s.Selector != nil && p.Metadata.Namespace == RootNamespace {
		v.add("spec.selector", "a policy in the root namespace %s is mesh-wide and cannot have a selector (Istio ignores such a policy): leave out the selector, or move the policy to the namespace of the workloads it selects", RootNamespace)
	}
	checkSelector(v, "spec.selector", s.Selector, "for a namespace-wide policy")
	checkPeerAuthMode(v, "spec.mtls.mode", s.MTLS.Mode)
	if len(s.PortLevelMTLS) > 0 && s.Selector == nil {
		v.add("spec.portLevelMtls", "is only allowed with spec.selector: as in Istio, port-level modes apply to the ports of selected workloads, not to a whole namespace or mesh")
	}
	for _, port := range slices.Sorted(maps.Keys(s.PortLevelMTLS)) {
		field := fmt.Sprintf("spec.portLevelMtls[%d]", port)
		if port == 0 || port > maxPort {
			v.add(field, "port %d is out of range: a port is 1 to %d", port, maxPort)
		}
		checkPeerAuthMode(v, field+".mode", s.PortLevelMTLS[port].Mode)
	}
}

var peerAuthModes = []MTLSMode{MTLSUnset, MTLSDisable, MTLSPermissive, MTLSStrict}

func checkPeerAuthMode(v *validator, field string, m MTLSMode) {
	if m != "" && !slices.Contains(peerAuthModes, m) {
		v.add(field, "%q is not a mode: want UNSET, DISABLE, PERMISSIVE or STRICT", m)
	}
}

// ResolvePeerAuthentication returns the mTLS mode of the inbound proxy of
// workload w under the policies, with Istio's rules:
//
//   - A workload-specific policy overrides a namespace-wide one, which
//     overrides a mesh-wide one, which overrides meshDefault (the
//     MeshConfig's defaultMTLSMode). A policy whose mode is UNSET (or left
//     out) inherits the mode of the next broader level.
//   - Of several policies of one level that apply to w, only the oldest
//     counts: the one with the lowest metadata.creationRevision, then the
//     lowest name. Objects not yet stored have creationRevision 0 and so
//     count as oldest.
//   - Policies of other namespaces, and workload-specific policies whose
//     selector does not select w, do not apply. Nor do policies in
//     RootNamespace with a selector (Istio ignores them).
//
// portModes holds the ports (the workload's application ports) whose mode
// differs from mode, from the portLevelMtls of the workload-specific policy
// that counts; a port's UNSET mode inherits mode. portModes is nil if there
// are none. Port-level settings of policies without a selector are ignored.
//
// The policies are expected to be valid (see Validate). A mode that is not
// one of the four, as in an unvalidated object, counts as STRICT; so does an
// empty or UNSET meshDefault, the default of MeshConfig. Nil policies are
// skipped; a nil w gets the mesh-wide mode.
func ResolvePeerAuthentication(policies []*PeerAuthentication, w *Workload, meshDefault MTLSMode) (mode MTLSMode, portModes map[uint32]MTLSMode) {
	var mesh, namespace, workload *PeerAuthentication
	for _, p := range policies {
		switch p.scope(w) {
		case scopeMesh:
			mesh = older(mesh, p)
		case scopeNamespace:
			namespace = older(namespace, p)
		case scopeWorkload:
			workload = older(workload, p)
		}
	}

	mode = MTLSStrict
	if m, ok := setMode(meshDefault); ok {
		mode = m
	}
	for _, p := range []*PeerAuthentication{mesh, namespace, workload} {
		if p == nil {
			continue
		}
		if m, ok := setMode(p.Spec.MTLS.Mode); ok {
			mode = m
		}
	}

	if workload == nil {
		return mode, nil
	}
	for port, pm := range workload.Spec.PortLevelMTLS {
		m, ok := setMode(pm.Mode)
		if !ok || m == mode {
			continue
		}
		if portModes == nil {
			portModes = make(map[uint32]MTLSMode)
		}
		portModes[port] = m
	}
	return mode, portModes
}

// peerAuthScope is the level at which a PeerAuthentication applies to a
// workload.
type peerAuthScope int

const (
	scopeNone peerAuthScope = iota
	scopeMesh
	scopeNamespace
	scopeWorkload
)

// scope returns the level at which p applies to w, or scopeNone.
func (p *PeerAuthentication) scope(w *Workload) peerAuthScope {
	switch {
	case p == nil:
		return scopeNone
	case p.Metadata.Namespace == RootNamespace:
		if p.Spec.Selector != nil {
			return scopeNone // ignored, as in Istio
		}
		return scopeMesh
	case w == nil || p.Metadata.Namespace != w.Metadata.Namespace:
		return scopeNone
	case p.Spec.Selector == nil:
		return scopeNamespace
	case p.Spec.Selector.selects(p.Metadata.Namespace, w):
		return scopeWorkload
	}
	return scopeNone
}

// older returns the older of two policies of one level: lower
// creationRevision, then lower name. a may be nil.
func older(a, b *PeerAuthentication) *PeerAuthentication {
	if a == nil {
		return b
	}
	c := cmp.Or(
		cmp.Compare(b.Metadata.CreationRevision, a.Metadata.CreationRevision),
		strings.Compare(b.Metadata.Name, a.Metadata.Name),
	)
	if c < 0 {
		return b
	}
	return a
}

// setMode returns the mode m sets: false for UNSET or empty (inherit), and
// STRICT for a value that is not a mode.
func setMode(m MTLSMode) (MTLSMode, bool) {
	switch {
	case m == "" || m == MTLSUnset:
		return "", false
	case validMTLSMode(m):
		return m, true
	}
	return MTLSStrict, true
}

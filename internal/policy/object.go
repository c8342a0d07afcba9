package policy

import (
	"fmt"
	"slices"
	"strings"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// APIVersion is the apiVersion of every trustmesh object.
const APIVersion = "trustmesh.dev/v1"

// The kinds of object.
const (
	KindMeshConfig         = "MeshConfig"
	KindPeerAuthentication = "PeerAuthentication"
	KindService            = "Service"
	KindWorkload           = "Workload"
)

// DefaultNamespace is the namespace Decode gives a namespaced object that
// names none.
const DefaultNamespace = "default"

// Metadata identifies an object and carries its labels and revisions.
type Metadata struct {
	// Name is a DNS-1123 subdomain, unique per kind and namespace.
	Name string `json:"name"`
	// Namespace is a DNS-1123 label; empty for cluster-scoped kinds.
	Namespace string `json:"namespace,omitempty"`
	// Labels are Kubernetes-style labels.
	Labels map[string]string `json:"labels,omitempty"`
	// Annotations are Kubernetes-style annotations: free-form values
	// under label-style keys, such as trustmesh.dev/dry-run.
	Annotations map[string]string `json:"annotations,omitempty"`
	// Revision is the store revision of this version of the object. It is
	// output-only on reads; sent on a write, it is a compare-and-swap
	// precondition: the write fails unless the stored object is at this
	// revision.
	Revision int64 `json:"revision,omitempty"`
	// CreationRevision is the store revision at which the object was
	// created. Output-only.
	CreationRevision int64 `json:"creationRevision,omitempty"`
}

// Object is a trustmesh object of any kind. The concrete types are
// *AuthorizationPolicy, *MeshConfig, *PeerAuthentication,
// *RequestAuthentication, *Service and *Workload.
//
// +kubebuilder:object:generate=false
type Object interface {
	// GetKind returns the kind of the object's type, such as "Workload",
	// whatever its Kind field says.
	GetKind() string
	// GetMeta returns the object's metadata, for reading or changing.
	GetMeta() *Metadata
	// Namespaced reports whether objects of this kind live in a namespace.
	Namespaced() bool
}

// kindObject is what every registered kind implements beyond Object.
type kindObject interface {
	Object
	// typeMeta returns the APIVersion and Kind fields.
	typeMeta() (apiVersion, kind string)
	// withTypeMeta returns a shallow copy with APIVersion and Kind set.
	withTypeMeta() kindObject
	// validateSpec checks the kind's own rules, metadata.name rules that
	// are specific to the kind included.
	validateSpec(v *validator, td spiffeid.TrustDomain)
}

// kindInfo is the registry entry of one kind. To add a kind, write its type
// (with the methods of kindObject) and add an entry to registry.
type kindInfo struct {
	// kind is the canonical name, as in the kind field.
	kind string
	// plural is the lowercase plural the CLI accepts ("workloads").
	plural string
	// short are further CLI abbreviations ("wl").
	short []string
	// new returns a new zero object of the kind.
	new func() kindObject
}

// registry lists every kind, sorted by kind. It is never modified.
var registry = []kindInfo{
	{kind: KindAuthorizationPolicy, plural: "authorizationpolicies", short: []string{"ap", "authz"}, new: func() kindObject { return new(AuthorizationPolicy) }},
	{kind: KindMeshConfig, plural: "meshconfigs", new: func() kindObject { return new(MeshConfig) }},
	{kind: KindPeerAuthentication, plural: "peerauthentications", short: []string{"pa"}, new: func() kindObject { return new(PeerAuthentication) }},
	{kind: KindRequestAuthentication, plural: "requestauthentications", short: []string{"ra"}, new: func() kindObject { return new(RequestAuthentication) }},
	{kind: KindService, plural: "services", short: []string{"svc"}, new: func() kindObject { return new(Service) }},
	{kind: KindWorkload, plural: "workloads", short: []string{"wl"}, new: func() kindObject { return new(Workload) }},
}

// lookupKind returns the registry entry of the canonical kind.
func lookupKind(kind string) (kindInfo, bool) {
	for _, k := range registry {
		if k.kind == kind {
			return k, true
		}
	}
	return kindInfo{}, false
}

// Kinds returns the canonical names of all kinds, sorted.
func Kinds() []string {
	out := make([]string, 0, len(registry))
	for _, k := range registry {
		out = append(out, k.kind)
	}
	slices.Sort(out)
	return out
}

// knownKinds is the list of kinds for error messages.
func knownKinds() string { return strings.Join(Kinds(), ", ") }

// ResolveKind maps a kind as typed on the command line to its canonical
// name: the kind itself in any case ("Workload", "workload"), its plural
// ("workloads") or a short name ("wl").
func ResolveKind(s string) (string, error) {
	if k, ok := resolveKind(s); ok {
		return k, nil
	}
	return "", fmt.Errorf("unknown kind %q (known kinds: %s)", s, knownKinds())
}

func resolveKind(s string) (string, bool) {
	l := strings.ToLower(s)
	for _, k := range registry {
		if l == strings.ToLower(k.kind) || l == k.plural || slices.Contains(k.short, l) {
			return k.kind, true
		}
	}
	return "", false
}

// objectName is how messages name an object: `Workload "default/web"`.
func objectName(obj Object) string {
	m := obj.GetMeta()
	name := m.Name
	if obj.Namespaced() && m.Namespace != "" {
		name = m.Namespace + "/" + name
	}
	if m.Name == "" {
		return obj.GetKind() + " (no name)"
	}
	return fmt.Sprintf("%s %q", obj.GetKind(), name)
}

// NewObject returns a new zero object of the canonical kind (false for an
// unknown kind); its Namespaced method tells the kind's scope.
func NewObject(kind string) (Object, bool) {
	k, ok := lookupKind(kind)
	if !ok {
		return nil, false
	}
	return k.new(), true
}

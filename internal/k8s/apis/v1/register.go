package v1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/trustmesh/trustmesh/internal/policy"
)

// Group and Version of the resources: APIVersion is their apiVersion,
// trustmesh.dev/v1, the same as trustmesh's own objects.
const (
	Group      = "trustmesh.dev"
	Version    = "v1"
	APIVersion = policy.APIVersion
)

// GroupVersion is trustmesh.dev/v1.
var GroupVersion = schema.GroupVersion{Group: Group, Version: Version}

// SchemeBuilder registers the resources with a runtime.Scheme; AddToScheme
// is its AddToScheme.
var (
	SchemeBuilder = runtime.NewSchemeBuilder(addKnownTypes)
	AddToScheme   = SchemeBuilder.AddToScheme
)

func addKnownTypes(s *runtime.Scheme) error {
	for _, k := range kinds {
		s.AddKnownTypeWithName(GroupVersion.WithKind(k.kind), k.new())
		s.AddKnownTypeWithName(GroupVersion.WithKind(k.kind+"List"), k.newList())
	}
	metav1.AddToGroupVersion(s, GroupVersion)
	return nil
}

// Resource is a trustmesh custom resource of any kind: what a controller
// reads and whose status it writes.
//
// +kubebuilder:object:generate=false
type Resource interface {
	runtime.Object
	metav1.Object
	// MeshStatus returns the resource's status, for reading or changing.
	MeshStatus() *Status
}

// ResourceList is the list type of a kind.
//
// +kubebuilder:object:generate=false
type ResourceList interface {
	runtime.Object
	metav1.ListInterface
	// Resources returns the items, as pointers into the list.
	Resources() []Resource
}

// kindInfo is the entry of one kind in kinds.
type kindInfo struct {
	kind    string
	new     func() Resource
	newList func() ResourceList
}

// kinds lists a resource type per kind of the policy package (a test checks
// that they match), sorted by kind.
var kinds = []kindInfo{
	{policy.KindAuthorizationPolicy, func() Resource { return new(AuthorizationPolicy) }, func() ResourceList { return new(AuthorizationPolicyList) }},
	{policy.KindMeshConfig, func() Resource { return new(MeshConfig) }, func() ResourceList { return new(MeshConfigList) }},
	{policy.KindPeerAuthentication, func() Resource { return new(PeerAuthentication) }, func() ResourceList { return new(PeerAuthenticationList) }},
	{policy.KindRequestAuthentication, func() Resource { return new(RequestAuthentication) }, func() ResourceList { return new(RequestAuthenticationList) }},
	{policy.KindService, func() Resource { return new(Service) }, func() ResourceList { return new(ServiceList) }},
	{policy.KindWorkload, func() Resource { return new(Workload) }, func() ResourceList { return new(WorkloadList) }},
}

// Kinds returns the kinds that have a resource type, sorted.
func Kinds() []string {
	out := make([]string, len(kinds))
	for i, k := range kinds {
		out[i] = k.kind
	}
	return out
}

// New returns a new, empty resource of the kind, with its apiVersion and
// kind set; false for a kind that has none.
func New(kind string) (Resource, bool) {
	for _, k := range kinds {
		if k.kind == kind {
			r := k.new()
			r.GetObjectKind().SetGroupVersionKind(GroupVersion.WithKind(kind))
			return r, true
		}
	}
	return nil, false
}

// NewList returns a new, empty list of resources of the kind; false for a
// kind that has none.
func NewList(kind string) (ResourceList, bool) {
	for _, k := range kinds {
		if k.kind == kind {
			l := k.newList()
			l.GetObjectKind().SetGroupVersionKind(GroupVersion.WithKind(kind + "List"))
			return l, true
		}
	}
	return nil, false
}

// Package policy is the object model of trustmesh: the kinds of object an
// operator declares, how they are read from files and stored, and the rules
// they must obey.
//
// # Objects
//
// Every object has the Kubernetes shape
//
//	apiVersion: trustmesh.dev/v1
//	kind: Workload
//	metadata: {name: web, namespace: default, labels: {app: web}}
//	spec: {...}
//
// and is a pointer to a Go struct with APIVersion, Kind, Metadata and Spec
// fields. They all implement Object:
//
//   - *MeshConfig: the mesh-wide settings; cluster-scoped, one per mesh,
//     named "default".
//   - *Workload: an identity and the processes that get it; namespaced.
//   - *Service: a name clients address, the workloads (selected by label)
//     and static endpoints that serve it, and the identities allowed to
//     serve it; namespaced.
//   - *PeerAuthentication: the mTLS mode of workloads' inbound proxies,
//     mesh-wide (in RootNamespace), namespace-wide or workload-specific,
//     with Istio's semantics (see ResolvePeerAuthentication); namespaced.
//
// metadata.revision and metadata.creationRevision are store revisions. They
// are output-only, except that a revision sent with a write is a
// compare-and-swap precondition.
//
// # Reading, checking, storing
//
// An object goes through three steps:
//
//   - Decode reads a file a user wrote: YAML documents separated by "---"
//     or a stream of JSON objects. It is strict (unknown fields, duplicate
//     keys and wrong types are errors naming the document and the field
//     path) and fills in the default namespace, nothing else.
//   - Validate checks the semantic rules for the server's trust domain:
//     names, SPIFFE IDs, selectors, lifetimes. It reports all problems at
//     once, each naming its field.
//   - Marshal writes the canonical JSON the store keeps; Unmarshal reads it
//     back. ToYAML writes the form `get` prints.
//
// Defaults of the spec (lifetimes, mTLS mode, target ports) are not written
// into stored objects: zero fields mean "the default", and
// MeshConfig.Effective, Workload.SVIDTTLs, ServicePort.Target and
// ResolvePeerAuthentication resolve them when they are used.
//
// # Adding a kind
//
// Write the type (APIVersion, Kind, Metadata and Spec fields with json tags,
// the methods of Object and of the unexported kindObject interface) and add
// an entry to the registry in object.go. Decode, Unmarshal, Marshal,
// ResolveKind and Kinds then know it.
//
// # Concurrency
//
// The package holds no mutable state; its functions are safe for concurrent
// use. Objects are plain values with no locking: share them read-only or
// copy them.
//
// # Kubernetes
//
// On Kubernetes the kinds are also custom resources (internal/k8s/apis/v1)
// whose spec is the Spec type of this package, so the types carry
// controller-gen markers, comments that change no Go behaviour. The
// package's markers below say: generate DeepCopy and DeepCopyInto for every
// exported type into zz_generated.deepcopy.go (the resources need them for
// their spec; a type holding an interface or a foreign pointer opts out
// with +kubebuilder:object:generate=false); and every field is optional in
// the CRD schema, since Validate, not the schema, decides what is required.
// The few markers on types and fields fix the schema's shape (Duration is
// a string) or check list items cheaply and exactly as Validate does (a
// Service's ports); internal/k8s/apis/v1 adds the other cheap checks.
// `make generate` rewrites zz_generated.deepcopy.go and deploy/crds after a
// type changes; `make check-generated` fails while they are stale.
package policy

// The package's controller-gen markers (see "Kubernetes" above):
//
// +kubebuilder:object:generate=true
// +kubebuilder:validation:Optional

// Package v1 holds the Kubernetes custom resources of trustmesh, API group
// trustmesh.dev, version v1: one resource per kind of object of the policy
// package, so that `kubectl apply` takes the same documents as
// `trustmesh apply`.
//
// Each resource is the Kubernetes envelope of a trustmesh object: TypeMeta,
// ObjectMeta, a Spec that is the policy package's spec type (one Go type,
// one JSON shape, one validator), and a Status, common to all kinds, that
// reports what the mesh did with the object: whether it was accepted
// (compiled) or why not, the trustmesh store revision it was applied as,
// and how many proxies ACKed or NACKed the configuration computed from it.
// MeshConfig is cluster-scoped; the other kinds are namespaced.
//
// # Generated code and validation
//
// The CRDs in deploy/crds and the deepcopy functions
// (zz_generated.deepcopy.go here and in internal/policy) are generated from
// these types by controller-gen: run `make generate` after changing them.
// The CRDs validate only what is cheap and true to policy.Validate, and are
// never stricter: enums and required fields of a spec as CEL rules on its
// Spec field here, in Validate's words; the items of lists (a Service's
// ports: range, protocol, required) as schema markers on the policy types,
// since CEL over an unbounded list exceeds the API server's cost budget.
// The validating webhook checks the rest, with Validate's messages.
//
// # Concurrency
//
// The types are plain values, as with any Kubernetes API type: share them
// read-only or DeepCopy them.
package v1

// The package's controller-gen markers:
//
// +kubebuilder:object:generate=true
// +groupName=trustmesh.dev

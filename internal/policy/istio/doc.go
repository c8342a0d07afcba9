// Package istio imports Istio's security policies: it converts
// AuthorizationPolicy, PeerAuthentication and RequestAuthentication objects
// of security.istio.io/v1 (and v1beta1), as a user exported them from a
// cluster or keeps them in a repository, into trustmesh objects.
//
// # Model
//
// The spec of each trustmesh kind has the shape and the semantics of its
// Istio namesake, so conversion is a rewrite of the envelope and a check of
// the spec, done on a generic YAML tree:
//
//   - apiVersion becomes trustmesh.dev/v1; kind is kept.
//   - metadata.namespace is kept; a missing one becomes "default", and
//     Istio's root namespace (Options.RootNamespace) becomes trustmesh's,
//     policy.RootNamespace, so that mesh-wide policies stay mesh-wide.
//   - The annotation istio.io/dry-run becomes trustmesh.dev/dry-run. Labels
//     and other annotations are kept; the fields the Kubernetes API server
//     writes (uid, resourceVersion, generation, creationTimestamp,
//     managedFields, ownerReferences, finalizers, selfLink,
//     deletionTimestamp, deletionGracePeriodSeconds, status and the
//     kubectl.kubernetes.io/last-applied-configuration annotation) are
//     dropped.
//   - A RequestAuthentication's jwks_uri, Istio's other spelling of
//     jwksUri, becomes jwksUri.
//   - YAML aliases and merge keys ("<<") are expanded.
//
// Istio fields trustmesh does not support are errors that say what to do
// instead (see Convert). The result is then read by policy.Decode, whose
// strict decoder has the final word on the fields (an unknown one is an
// error), and checked by policy.Validate. Principals stay in Istio's form
// ("cluster.local/ns/NAMESPACE/sa/NAME"), which trustmesh accepts.
//
// Errors name the document (counted from 1, empty ones included, as
// policy.Decode counts them), the object and the field path, in the form
// of policy.Decode's errors:
//
//	document 2 (AuthorizationPolicy "foo/httpbin"): spec.targetRef: not supported: ...
//
// so that policy.Locator can find their lines in the input. Objects of a
// kubectl List ("kubectl get ... -o yaml") are converted one by one, and
// their field paths start with items[N].
//
// # Concurrency
//
// The package holds no state; Convert is safe for concurrent use.
package istio

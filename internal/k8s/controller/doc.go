// Package controller feeds trustmesh objects declared as Kubernetes custom
// resources (group trustmesh.dev, version v1, one CRD per kind) into the
// control plane, and reports back in each resource's status what the mesh
// did with it.
//
// # Model
//
// The Kubernetes API is the source of intent; the trustmesh store stays
// the source of what proxies are pushed, so Kubernetes objects and objects
// applied with `trustmesh apply` go through the same validation, revisions,
// audit log and push machinery. For every resource of a trustmesh kind the
// controller decodes apiVersion, kind, metadata (name, namespace, labels,
// annotations) and spec with the same strict decoder as the CLI, and hands
// the object to an Applier (the server) with an actor taken from the
// resource's managedFields (the manager that last wrote it, e.g.
// "k8s:kubectl-client-side-apply"). Objects the controller writes carry the
// annotation trustmesh.dev/managed-by=kubernetes; a resource deleted in
// Kubernetes deletes its object, and at start-up objects so marked whose
// resource is gone are deleted too (the server may have been down when it
// was deleted).
//
// The status subresource reports: observedGeneration; condition Accepted
// (True with the applied store revision, or False with the validator's
// message — the object in the store, if any, stays the last good one);
// appliedRevision; and proxies {acked, nacked, lastNack}: how many connected
// proxies are current as of the applied revision, and how many rejected a
// snapshot computed from it. The controller requeues a resource until every
// connected proxy has acknowledged it, then every resync period.
//
// Resources are read as unstructured objects, so the controller depends only
// on the kinds' JSON shape, which is the trustmesh YAML object's.
package controller

package v1

import metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

// ConditionAccepted is the condition type that says whether the mesh took
// the object: True when it validated and compiled and was written to the
// trustmesh store (reason ReasonApplied), False with the validator's
// message otherwise (reason ReasonInvalid); the last good version, if any,
// stays in force.
const ConditionAccepted = "Accepted"

// Reasons of ConditionAccepted.
const (
	ReasonApplied = "Applied"
	ReasonInvalid = "Invalid"
)

// Status reports what the mesh did with a resource. The trustmesh server
// writes it, through the status subresource; users never do.
type Status struct {
	// ObservedGeneration is the metadata.generation this status is about.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
	// Conditions: Accepted (see ConditionAccepted).
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`
	// AppliedRevision is the trustmesh store revision the object is in
	// force as: the revision of this generation when Accepted is True, of
	// the last accepted one otherwise; 0 if none ever was.
	// +optional
	AppliedRevision int64 `json:"appliedRevision,omitempty"`
	// Proxies counts the proxies against AppliedRevision.
	// +optional
	Proxies *ProxiesStatus `json:"proxies,omitempty"`
}

// ProxiesStatus counts the proxies connected to the trustmesh server
// against one store revision.
type ProxiesStatus struct {
	// Connected is the number of proxies connected.
	// +optional
	Connected int32 `json:"connected"`
	// Acked is the number of proxies that ACKed a configuration computed
	// from the revision or a later one.
	// +optional
	Acked int32 `json:"acked"`
	// Nacked is the number of proxies that rejected such a configuration.
	// +optional
	Nacked int32 `json:"nacked"`
	// LastNack is the reason of the last rejection.
	// +optional
	LastNack string `json:"lastNack,omitempty"`
}

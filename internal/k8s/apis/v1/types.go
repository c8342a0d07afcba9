package v1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/trustmesh/trustmesh/internal/policy"
)

// Every kind has the printer columns Accepted (the status of the Accepted
// condition) and Age, and with -o wide Revision (the applied store
// revision), Acked and Nacked (the proxies' counts). A column shows one
// value (a JSONPath's first), so a list is shown whole or by its first
// item. The CEL rules on the
// specs repeat cheap rules of policy.Validate, in its words; each is true
// to it, never stricter. (Rules on list items are native schema markers on
// the policy types instead: CEL over unbounded lists exceeds the API
// server's cost budget.)

// AuthorizationPolicy is policy.AuthorizationPolicy as a custom resource.
//
// +kubebuilder:object:root=true
// +kubebuilder:resource:scope=Namespaced,shortName=ap;authz,categories=trustmesh
// +kubebuilder:subresource:status
// +kubebuilder:printcolumn:name="Action",type=string,JSONPath=`.spec.action`,description="ALLOW (when empty), DENY, AUDIT or CUSTOM"
// +kubebuilder:printcolumn:name="Accepted",type=string,JSONPath=`.status.conditions[?(@.type=="Accepted")].status`
// +kubebuilder:printcolumn:name="Revision",type=integer,JSONPath=`.status.appliedRevision`,priority=1
// +kubebuilder:printcolumn:name="Acked",type=integer,JSONPath=`.status.proxies.acked`,priority=1
// +kubebuilder:printcolumn:name="Nacked",type=integer,JSONPath=`.status.proxies.nacked`,priority=1
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type AuthorizationPolicy struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// Spec is the policy: see policy.AuthorizationPolicySpec.
	// +optional
	// +kubebuilder:validation:XValidation:rule="!has(self.action) || self.action in ['', 'ALLOW', 'DENY', 'AUDIT', 'CUSTOM']",messageExpression="'\"' + self.action + '\" is not an action: want ALLOW, DENY, AUDIT or CUSTOM'",fieldPath=`.action`
	Spec policy.AuthorizationPolicySpec `json:"spec,omitempty"`
	// +optional
	Status Status `json:"status,omitempty"`
}

// AuthorizationPolicyList is a list of AuthorizationPolicy.
//
// +kubebuilder:object:root=true
type AuthorizationPolicyList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []AuthorizationPolicy `json:"items"`
}

// MeshConfig is policy.MeshConfig as a custom resource: cluster-scoped, and
// there is at most one, named "default".
//
// +kubebuilder:object:root=true
// +kubebuilder:resource:scope=Cluster,categories=trustmesh
// +kubebuilder:subresource:status
// +kubebuilder:validation:XValidation:rule="self.metadata.name == 'default'",messageExpression="'metadata.name: \"' + self.metadata.name + '\": the MeshConfig must be named \"default\"'"
// +kubebuilder:printcolumn:name="Trust Domain",type=string,JSONPath=`.spec.trustDomain`
// +kubebuilder:printcolumn:name="mTLS",type=string,JSONPath=`.spec.defaultMTLSMode`,description="the default mTLS mode: STRICT (when empty), PERMISSIVE or DISABLE"
// +kubebuilder:printcolumn:name="Accepted",type=string,JSONPath=`.status.conditions[?(@.type=="Accepted")].status`
// +kubebuilder:printcolumn:name="Revision",type=integer,JSONPath=`.status.appliedRevision`,priority=1
// +kubebuilder:printcolumn:name="Acked",type=integer,JSONPath=`.status.proxies.acked`,priority=1
// +kubebuilder:printcolumn:name="Nacked",type=integer,JSONPath=`.status.proxies.nacked`,priority=1
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type MeshConfig struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// Spec is the mesh-wide settings: see policy.MeshConfigSpec.
	// +optional
	// +kubebuilder:validation:XValidation:rule="!has(self.defaultMTLSMode) || self.defaultMTLSMode in ['', 'STRICT', 'PERMISSIVE', 'DISABLE']",messageExpression="'\"' + self.defaultMTLSMode + '\" is not a mode: want STRICT, PERMISSIVE or DISABLE'",fieldPath=`.defaultMTLSMode`
	Spec policy.MeshConfigSpec `json:"spec,omitempty"`
	// +optional
	Status Status `json:"status,omitempty"`
}

// MeshConfigList is a list of MeshConfig.
//
// +kubebuilder:object:root=true
type MeshConfigList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []MeshConfig `json:"items"`
}

// PeerAuthentication is policy.PeerAuthentication as a custom resource.
//
// +kubebuilder:object:root=true
// +kubebuilder:resource:scope=Namespaced,shortName=pa,categories=trustmesh
// +kubebuilder:subresource:status
// +kubebuilder:printcolumn:name="Mode",type=string,JSONPath=`.spec.mtls.mode`,description="the mTLS mode: STRICT, PERMISSIVE, DISABLE, or UNSET (when empty): inherited"
// +kubebuilder:printcolumn:name="Accepted",type=string,JSONPath=`.status.conditions[?(@.type=="Accepted")].status`
// +kubebuilder:printcolumn:name="Revision",type=integer,JSONPath=`.status.appliedRevision`,priority=1
// +kubebuilder:printcolumn:name="Acked",type=integer,JSONPath=`.status.proxies.acked`,priority=1
// +kubebuilder:printcolumn:name="Nacked",type=integer,JSONPath=`.status.proxies.nacked`,priority=1
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type PeerAuthentication struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// Spec is the policy: see policy.PeerAuthenticationSpec.
	// +optional
	// +kubebuilder:validation:XValidation:rule="!has(self.mtls) || !has(self.mtls.mode) || self.mtls.mode in ['', 'UNSET', 'DISABLE', 'PERMISSIVE', 'STRICT']",messageExpression="'\"' + self.mtls.mode + '\" is not a mode: want UNSET, DISABLE, PERMISSIVE or STRICT'",fieldPath=`.mtls.mode`
	Spec policy.PeerAuthenticationSpec `json:"spec,omitempty"`
	// +optional
	Status Status `json:"status,omitempty"`
}

// PeerAuthenticationList is a list of PeerAuthentication.
//
// +kubebuilder:object:root=true
type PeerAuthenticationList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []PeerAuthentication `json:"items"`
}

// RequestAuthentication is policy.RequestAuthentication as a custom
// resource.
//
// +kubebuilder:object:root=true
// +kubebuilder:resource:scope=Namespaced,shortName=ra,categories=trustmesh
// +kubebuilder:subresource:status
// +kubebuilder:printcolumn:name="Issuer",type=string,JSONPath=`.spec.jwtRules[0].issuer`,description="the issuer of the first JWT rule"
// +kubebuilder:printcolumn:name="Accepted",type=string,JSONPath=`.status.conditions[?(@.type=="Accepted")].status`
// +kubebuilder:printcolumn:name="Revision",type=integer,JSONPath=`.status.appliedRevision`,priority=1
// +kubebuilder:printcolumn:name="Acked",type=integer,JSONPath=`.status.proxies.acked`,priority=1
// +kubebuilder:printcolumn:name="Nacked",type=integer,JSONPath=`.status.proxies.nacked`,priority=1
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type RequestAuthentication struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// Spec is the policy: see policy.RequestAuthenticationSpec.
	// +required
	// +kubebuilder:validation:XValidation:rule="has(self.jwtRules) && size(self.jwtRules) > 0",message="at least one rule is required: the issuers whose tokens are accepted",fieldPath=`.jwtRules`,reason=FieldValueRequired
	// +kubebuilder:validation:XValidation:rule="!has(self.jwtRules) || self.jwtRules.all(r, has(r.issuer) && r.issuer != '')",message="every rule needs an issuer: the iss claim of the tokens it accepts",fieldPath=`.jwtRules`,reason=FieldValueRequired
	Spec policy.RequestAuthenticationSpec `json:"spec"`
	// +optional
	Status Status `json:"status,omitempty"`
}

// RequestAuthenticationList is a list of RequestAuthentication.
//
// +kubebuilder:object:root=true
type RequestAuthenticationList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []RequestAuthentication `json:"items"`
}

// Service is policy.Service as a custom resource. Kubernetes has its own
// Service: address this one as services.trustmesh.dev (or tmsvc).
//
// +kubebuilder:object:root=true
// +kubebuilder:resource:scope=Namespaced,shortName=tmsvc,categories=trustmesh
// +kubebuilder:subresource:status
// +kubebuilder:printcolumn:name="SPIFFE IDs",type=string,JSONPath=`.spec.spiffeIDs`,description="the identities allowed to serve the service"
// +kubebuilder:printcolumn:name="Port",type=integer,JSONPath=`.spec.ports[0].port`,priority=1,description="the first port"
// +kubebuilder:printcolumn:name="Accepted",type=string,JSONPath=`.status.conditions[?(@.type=="Accepted")].status`
// +kubebuilder:printcolumn:name="Revision",type=integer,JSONPath=`.status.appliedRevision`,priority=1
// +kubebuilder:printcolumn:name="Acked",type=integer,JSONPath=`.status.proxies.acked`,priority=1
// +kubebuilder:printcolumn:name="Nacked",type=integer,JSONPath=`.status.proxies.nacked`,priority=1
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type Service struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// Spec is the service: see policy.ServiceSpec.
	// +required
	// +kubebuilder:validation:XValidation:rule="has(self.ports) && size(self.ports) > 0",message="at least one port is required",fieldPath=`.ports`,reason=FieldValueRequired
	// +kubebuilder:validation:XValidation:rule="has(self.spiffeIDs) && size(self.spiffeIDs) > 0",message="at least one is required: the identities allowed to serve the service",fieldPath=`.spiffeIDs`,reason=FieldValueRequired
	Spec policy.ServiceSpec `json:"spec"`
	// +optional
	Status Status `json:"status,omitempty"`
}

// ServiceList is a list of Service.
//
// +kubebuilder:object:root=true
type ServiceList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []Service `json:"items"`
}

// Workload is policy.Workload as a custom resource.
//
// +kubebuilder:object:root=true
// +kubebuilder:resource:scope=Namespaced,shortName=wl,categories=trustmesh
// +kubebuilder:subresource:status
// +kubebuilder:printcolumn:name="SPIFFE ID",type=string,JSONPath=`.spec.spiffeID`
// +kubebuilder:printcolumn:name="Parent",type=string,JSONPath=`.spec.parentID`,priority=1
// +kubebuilder:printcolumn:name="Selectors",type=string,JSONPath=`.spec.selectors`,priority=1
// +kubebuilder:printcolumn:name="Accepted",type=string,JSONPath=`.status.conditions[?(@.type=="Accepted")].status`
// +kubebuilder:printcolumn:name="Revision",type=integer,JSONPath=`.status.appliedRevision`,priority=1
// +kubebuilder:printcolumn:name="Acked",type=integer,JSONPath=`.status.proxies.acked`,priority=1
// +kubebuilder:printcolumn:name="Nacked",type=integer,JSONPath=`.status.proxies.nacked`,priority=1
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type Workload struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// Spec is the registration: see policy.WorkloadSpec.
	// +required
	// +kubebuilder:validation:XValidation:rule="has(self.spiffeID) && self.spiffeID != ''",message="is required: the workload's identity, such as spiffe://example.org/ns/default/sa/web",fieldPath=`.spiffeID`,reason=FieldValueRequired
	// +kubebuilder:validation:XValidation:rule="has(self.selectors) && size(self.selectors) > 0",message="at least one selector is required; an empty list would match every process",fieldPath=`.selectors`,reason=FieldValueRequired
	Spec policy.WorkloadSpec `json:"spec"`
	// +optional
	Status Status `json:"status,omitempty"`
}

// WorkloadList is a list of Workload.
//
// +kubebuilder:object:root=true
type WorkloadList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []Workload `json:"items"`
}

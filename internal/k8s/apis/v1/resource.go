package v1

// The methods of Resource and ResourceList, per kind.

var (
	_ Resource     = (*AuthorizationPolicy)(nil)
	_ Resource     = (*MeshConfig)(nil)
	_ Resource     = (*PeerAuthentication)(nil)
	_ Resource     = (*RequestAuthentication)(nil)
	_ Resource     = (*Service)(nil)
	_ Resource     = (*Workload)(nil)
	_ ResourceList = (*AuthorizationPolicyList)(nil)
	_ ResourceList = (*MeshConfigList)(nil)
	_ ResourceList = (*PeerAuthenticationList)(nil)
	_ ResourceList = (*RequestAuthenticationList)(nil)
	_ ResourceList = (*ServiceList)(nil)
	_ ResourceList = (*WorkloadList)(nil)
)

// MeshStatus returns the status.
func (r *AuthorizationPolicy) MeshStatus() *Status { return &r.Status }

// MeshStatus returns the status.
func (r *MeshConfig) MeshStatus() *Status { return &r.Status }

// MeshStatus returns the status.
func (r *PeerAuthentication) MeshStatus() *Status { return &r.Status }

// MeshStatus returns the status.
func (r *RequestAuthentication) MeshStatus() *Status { return &r.Status }

// MeshStatus returns the status.
func (r *Service) MeshStatus() *Status { return &r.Status }

// MeshStatus returns the status.
func (r *Workload) MeshStatus() *Status { return &r.Status }

// Resources returns the items.
func (l *AuthorizationPolicyList) Resources() []Resource { return resources(l.Items) }

// Resources returns the items.
func (l *MeshConfigList) Resources() []Resource { return resources(l.Items) }

// Resources returns the items.
func (l *PeerAuthenticationList) Resources() []Resource { return resources(l.Items) }

// Resources returns the items.
func (l *RequestAuthenticationList) Resources() []Resource { return resources(l.Items) }

// Resources returns the items.
func (l *ServiceList) Resources() []Resource { return resources(l.Items) }

// Resources returns the items.
func (l *WorkloadList) Resources() []Resource { return resources(l.Items) }

// resources returns pointers to the items.
func resources[T any, P interface {
	*T
	Resource
}](items []T) []Resource {
	out := make([]Resource, len(items))
	for i := range items {
		out[i] = P(&items[i])
	}
	return out
}

package policy

import (
	"slices"
	"strings"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// MeshConfigName is the name of the one MeshConfig object.
const MeshConfigName = "default"

// MeshConfig holds the mesh-wide settings. It is cluster-scoped and there is
// at most one, named "default"; without it the defaults apply.
type MeshConfig struct {
	APIVersion string         `json:"apiVersion"`
	Kind       string         `json:"kind"`
	Metadata   Metadata       `json:"metadata"`
	Spec       MeshConfigSpec `json:"spec"`
}

// MTLSMode says whether a proxy requires, accepts or refuses mTLS.
type MTLSMode string

// The mTLS modes.
const (
	// MTLSStrict accepts only mTLS connections with a valid client SVID.
	MTLSStrict MTLSMode = "STRICT"
	// MTLSPermissive accepts mTLS and plaintext connections.
	MTLSPermissive MTLSMode = "PERMISSIVE"
	// MTLSDisable accepts plaintext connections only.
	MTLSDisable MTLSMode = "DISABLE"
)

var mtlsModes = []MTLSMode{MTLSStrict, MTLSPermissive, MTLSDisable}

// MeshConfigSpec is the body of a MeshConfig. Zero fields take the defaults;
// see MeshConfig.Effective.
type MeshConfigSpec struct {
	// TrustDomain, if set, must be the server's trust domain. It guards
	// against applying one mesh's configuration to another.
	TrustDomain string `json:"trustDomain,omitempty"`
	// DefaultMTLSMode applies where no PeerAuthentication says otherwise.
	// Default STRICT.
	DefaultMTLSMode MTLSMode `json:"defaultMTLSMode,omitempty"`
	// X509SVIDTTL is the lifetime of X.509-SVIDs, 1m to 24h. Default 1h.
	X509SVIDTTL Duration `json:"x509SVIDTTL,omitzero"`
	// JWTSVIDTTL is the lifetime of JWT-SVIDs, 1m to 24h. Default 5m.
	JWTSVIDTTL Duration `json:"jwtSVIDTTL,omitzero"`
}

var _ kindObject = (*MeshConfig)(nil)

// GetKind returns "MeshConfig".
func (m *MeshConfig) GetKind() string { return KindMeshConfig }

// GetMeta returns the object's metadata.
func (m *MeshConfig) GetMeta() *Metadata { return &m.Metadata }

// Namespaced returns false: MeshConfig is cluster-scoped.
func (m *MeshConfig) Namespaced() bool { return false }

func (m *MeshConfig) typeMeta() (string, string) { return m.APIVersion, m.Kind }

func (m *MeshConfig) withTypeMeta() kindObject {
	c := *m
	c.APIVersion, c.Kind = APIVersion, KindMeshConfig
	return &c
}

// DefaultMeshConfig returns the MeshConfig in force when none is stored, with
// every default spelled out.
func DefaultMeshConfig() *MeshConfig {
	return &MeshConfig{
		APIVersion: APIVersion,
		Kind:       KindMeshConfig,
		Metadata:   Metadata{Name: MeshConfigName},
		Spec:       (*MeshConfig)(nil).Effective(),
	}
}

// Effective returns the spec with the defaults filled in. It may be called
// on a nil *MeshConfig, which gives the defaults.
func (m *MeshConfig) Effective() MeshConfigSpec {
	var s MeshConfigSpec
	if m != nil {
		s = m.Spec
	}
	if s.DefaultMTLSMode == "" {
		s.DefaultMTLSMode = MTLSStrict
	}
	if s.X509SVIDTTL == 0 {
		s.X509SVIDTTL = Duration(DefaultX509SVIDTTL)
	}
	if s.JWTSVIDTTL == 0 {
		s.JWTSVIDTTL = Duration(DefaultJWTSVIDTTL)
	}
	return s
}

func (m *MeshConfig) validateSpec(v *validator, td spiffeid.TrustDomain) {
	if m.Metadata.Name != "" && m.Metadata.Name != MeshConfigName {
		v.add("metadata.name", "%q: the MeshConfig must be named %q", m.Metadata.Name, MeshConfigName)
	}
	if s := m.Spec.TrustDomain; s != "" {
		switch err := checkTrustDomainName(s); {
		case strings.Contains(s, "://"):
			v.add("spec.trustDomain", "%q: write the trust domain name only, such as %q", s, td.Name())
		case err != nil:
			v.add("spec.trustDomain", "%q is not a valid trust domain: %v", s, err)
		case s != td.Name():
			v.add("spec.trustDomain", "%q is not this server's trust domain %q", s, td.Name())
		}
	}
	if mode := m.Spec.DefaultMTLSMode; mode != "" && !validMTLSMode(mode) {
		v.add("spec.defaultMTLSMode", "%q is not a mode: want STRICT, PERMISSIVE or DISABLE", mode)
	}
	checkTTL(v, "spec.x509SVIDTTL", m.Spec.X509SVIDTTL)
	checkTTL(v, "spec.jwtSVIDTTL", m.Spec.JWTSVIDTTL)
}

func validMTLSMode(m MTLSMode) bool { return slices.Contains(mtlsModes, m) }

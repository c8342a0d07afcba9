package policy

import (
	"fmt"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/trustmesh/trustmesh/internal/attest"
)

// Workload registers a workload: the SPIFFE ID that a process gets from the
// node agent named by ParentID when it matches every one of Selectors.
type Workload struct {
	APIVersion string       `json:"apiVersion"`
	Kind       string       `json:"kind"`
	Metadata   Metadata     `json:"metadata"`
	Spec       WorkloadSpec `json:"spec"`
}

// WorkloadSpec is the body of a Workload.
type WorkloadSpec struct {
	// SPIFFEID is the identity the workload gets, in the server's trust
	// domain and outside the reserved /trustmesh/ path.
	SPIFFEID string `json:"spiffeID,omitempty"`
	// ParentID is the node agent allowed to serve this workload:
	// spiffe://<trust domain>/trustmesh/node/<node name>.
	ParentID string `json:"parentID,omitempty"`
	// Selectors are the attested properties a process must all have, such
	// as "unix:uid:1000". At least one is required.
	Selectors []string `json:"selectors,omitempty"`
	// X509SVIDTTL overrides the MeshConfig X.509-SVID lifetime, 1m to 24h.
	X509SVIDTTL Duration `json:"x509SVIDTTL,omitzero"`
	// JWTSVIDTTL overrides the MeshConfig JWT-SVID lifetime, 1m to 24h.
	JWTSVIDTTL Duration `json:"jwtSVIDTTL,omitzero"`
	// DNSNames are added to the X.509-SVID as DNS SANs.
	DNSNames []string `json:"dnsNames,omitempty"`
	// Hint tells apart several SVIDs of one workload in the Workload API.
	Hint string `json:"hint,omitempty"`
}

// maxHintLength bounds spec.hint.
const maxHintLength = 256

// reservedPathPrefix starts the SPIFFE IDs of nodes, the server and admins;
// no workload may have one.
const reservedPathPrefix = "/trustmesh"

// nodePathPrefix starts the SPIFFE IDs of node agents.
const nodePathPrefix = "/trustmesh/node/"

var _ kindObject = (*Workload)(nil)

// GetKind returns "Workload".
func (w *Workload) GetKind() string { return KindWorkload }

// GetMeta returns the object's metadata.
func (w *Workload) GetMeta() *Metadata { return &w.Metadata }

// Namespaced returns true.
func (w *Workload) Namespaced() bool { return true }

func (w *Workload) typeMeta() (string, string) { return w.APIVersion, w.Kind }

func (w *Workload) withTypeMeta() kindObject {
	c := *w
	c.APIVersion, c.Kind = APIVersion, KindWorkload
	return &c
}

// SVIDTTLs returns the lifetimes of the workload's X.509 and JWT SVIDs: its
// own if set, else mesh's (mesh may be nil).
func (w *Workload) SVIDTTLs(mesh *MeshConfig) (x509, jwt time.Duration) {
	eff := mesh.Effective()
	x509, jwt = time.Duration(eff.X509SVIDTTL), time.Duration(eff.JWTSVIDTTL)
	if w.Spec.X509SVIDTTL != 0 {
		x509 = time.Duration(w.Spec.X509SVIDTTL)
	}
	if w.Spec.JWTSVIDTTL != 0 {
		jwt = time.Duration(w.Spec.JWTSVIDTTL)
	}
	return x509, jwt
}

func (w *Workload) validateSpec(v *validator, td spiffeid.TrustDomain) {
	s := &w.Spec
	checkWorkloadID(v, "spec.spiffeID", s.SPIFFEID, td, "the workload's identity, such as spiffe://"+td.Name()+"/ns/default/sa/web")
	const nodeForm = "the node agent allowed to serve this workload, spiffe://<trust domain>/trustmesh/node/<node name>"
	if id, ok := checkIDField(v, "spec.parentID", s.ParentID, td, nodeForm); ok {
		node, isNode := strings.CutPrefix(id.Path(), nodePathPrefix)
		if !isNode || node == "" || strings.Contains(node, "/") {
			v.add("spec.parentID", "%q is not a node agent's ID: want spiffe://%s%s<node name>", s.ParentID, td.Name(), nodePathPrefix)
		}
	}

	if len(s.Selectors) == 0 {
		v.add("spec.selectors", "at least one selector is required; an empty list would match every process")
	}
	seen := make(map[attest.Selector]int, len(s.Selectors))
	for i, raw := range s.Selectors {
		field := fmt.Sprintf("spec.selectors[%d]", i)
		sel, err := attest.ParseSelector(raw)
		if err != nil {
			v.add(field, "%v", err)
			continue
		}
		if j, dup := seen[sel]; dup {
			v.add(field, "%q repeats spec.selectors[%d]", raw, j)
			continue
		}
		seen[sel] = i
	}

	checkTTL(v, "spec.x509SVIDTTL", s.X509SVIDTTL)
	checkTTL(v, "spec.jwtSVIDTTL", s.JWTSVIDTTL)

	names := make(map[string]int, len(s.DNSNames))
	for i, name := range s.DNSNames {
		field := fmt.Sprintf("spec.dnsNames[%d]", i)
		if err := checkDNSName(name); err != nil {
			v.add(field, "%q is not a valid DNS name: %v", name, err)
			continue
		}
		if j, dup := names[name]; dup {
			v.add(field, "%q repeats spec.dnsNames[%d]", name, j)
			continue
		}
		names[name] = i
	}

	switch {
	case len(s.Hint) > maxHintLength:
		v.add("spec.hint", "it is %d bytes long; at most %d are allowed", len(s.Hint), maxHintLength)
	case !utf8.ValidString(s.Hint) || strings.IndexFunc(s.Hint, func(r rune) bool { return !unicode.IsPrint(r) }) >= 0:
		v.add("spec.hint", "%q contains a control or non-printable character", s.Hint)
	}
}

// checkWorkloadID checks a required SPIFFE ID field that names a workload:
// in the trust domain td, with a path, and outside the reserved /trustmesh/
// paths. what describes the field for the message when it is missing.
func checkWorkloadID(v *validator, field, s string, td spiffeid.TrustDomain, what string) {
	id, ok := checkIDField(v, field, s, td, what)
	if !ok {
		return
	}
	switch {
	case id.Path() == "":
		v.add(field, "%q has no path: a workload ID needs one, such as spiffe://%s/ns/default/sa/web", s, td.Name())
	case id.Path() == reservedPathPrefix || strings.HasPrefix(id.Path(), reservedPathPrefix+"/"):
		v.add(field, "%q: paths under %s/ are reserved for nodes, the server and admins; a workload with such an ID could impersonate one of them", s, reservedPathPrefix)
	}
}

// checkIDField checks a required SPIFFE ID field in the trust domain td.
// what describes the field for the message when it is missing.
func checkIDField(v *validator, field, s string, td spiffeid.TrustDomain, what string) (spiffeid.ID, bool) {
	if s == "" {
		v.add(field, "is required: %s", what)
		return spiffeid.ID{}, false
	}
	id, err := parseSPIFFEID(s)
	if err != nil {
		v.add(field, "%q is not a valid SPIFFE ID: %v", s, err)
		return spiffeid.ID{}, false
	}
	if !id.MemberOf(td) {
		v.add(field, "%q is not in this server's trust domain %q", s, td.Name())
		return spiffeid.ID{}, false
	}
	return id, true
}

// Package adminapi is the operator-facing HTTP API of the trustmesh server:
// its roles, request and response shapes, the credentials directory layout,
// and the client the CLI uses. The server implements the handlers.
//
// The API is JSON over HTTPS with client certificates only. Operator
// certificates come from a dedicated admin CA (never the SPIFFE trust
// bundle), so no workload identity can act as an operator. The role is the
// certificate's single Subject OU.
package adminapi

import (
	"encoding/json"
	"slices"
	"time"

	"github.com/trustmesh/trustmesh/internal/policy/simulate"
)

// Roles an operator credential can carry.
const (
	RoleAdmin        = "admin"
	RolePolicyAuthor = "policy-author"
	RoleApprover     = "approver"
	RoleAuditor      = "auditor"
	RoleResponder    = "responder"
)

// Roles lists every role, most powerful first.
var Roles = []string{RoleAdmin, RolePolicyAuthor, RoleApprover, RoleAuditor, RoleResponder}

// ValidRole reports whether r is a known role.
func ValidRole(r string) bool { return slices.Contains(Roles, r) }

// Paths of the API.
const (
	PathWhoAmI      = "/v1/whoami"
	PathApply       = "/v1/apply"
	PathObjects     = "/v1/objects" // GET list/get, DELETE; query kind, namespace, name
	PathHistory     = "/v1/objects/history"
	PathTokens      = "/v1/tokens"
	PathAdminIssue  = "/v1/admin/credentials"
	PathRevocations = "/v1/revocations"
	PathCA          = "/v1/ca"
	PathCARotate    = "/v1/ca/rotate"
	PathBundle      = "/v1/bundle"
	PathNodes       = "/v1/nodes"
	PathAudit       = "/v1/audit"
	PathProxies     = "/v1/proxies"
	PathRollback    = "/v1/objects/rollback"
	PathExplain     = "/v1/explain"
)

// RollbackRequest restores an object to an earlier revision: the content
// of that revision is written as a new revision.
type RollbackRequest struct {
	Kind      string `json:"kind"`
	Namespace string `json:"namespace,omitempty"`
	Name      string `json:"name"`
	// Revision is the store revision to restore (see history).
	Revision int64 `json:"revision"`
	DryRun   bool  `json:"dryRun,omitempty"`
}

// ExplainRequest, ExplainStep and ExplainResponse are the simulate
// package's types: explain on the server and policy test in the CLI share
// them.
type (
	ExplainRequest  = simulate.Request
	ExplainStep     = simulate.Step
	ExplainResponse = simulate.Result
)

// Error is the body of every non-2xx response.
type Error struct {
	// Error says what went wrong and, where it can, what to do.
	Error string `json:"error"`
}

// WhoAmI describes the calling operator.
type WhoAmI struct {
	Name string `json:"name"`
	Role string `json:"role"`
}

// ApplyRequest carries a YAML or JSON file of one or more objects.
type ApplyRequest struct {
	Document string `json:"document"`
	DryRun   bool   `json:"dryRun,omitempty"`
}

// ApplyResult is what happened to one object.
type ApplyResult struct {
	Kind      string `json:"kind"`
	Namespace string `json:"namespace,omitempty"`
	Name      string `json:"name"`
	Revision  int64  `json:"revision"`
	// Action is "created", "configured", "unchanged", or with dryRun the
	// same words followed by " (dry run)".
	Action string `json:"action"`
}

// ApplyResponse lists results in document order.
type ApplyResponse struct {
	Results []ApplyResult `json:"results"`
}

// ObjectsResponse is a list of objects as stored (JSON of each object).
type ObjectsResponse struct {
	Items []json.RawMessage `json:"items"`
	// Entries, for a history, say who wrote each item and when.
	Entries []HistoryEntry `json:"entries,omitempty"`
}

// HistoryEntry describes one revision of an object.
type HistoryEntry struct {
	Revision int64     `json:"revision"`
	Time     time.Time `json:"time"`
	Actor    string    `json:"actor,omitempty"`
	Deleted  bool      `json:"deleted,omitempty"`
}

// DeleteResponse reports the tombstone revision.
type DeleteResponse struct {
	Revision int64 `json:"revision"`
}

// TokenRequest asks for a join token.
type TokenRequest struct {
	Node string        `json:"node"`
	TTL  time.Duration `json:"ttl"`
}

// TokenResponse carries the secret, shown once.
type TokenResponse struct {
	Token     string    `json:"token"`
	Node      string    `json:"node"`
	SPIFFEID  string    `json:"spiffeID"`
	ExpiresAt time.Time `json:"expiresAt"`
}

// AdminIssueRequest asks for an operator certificate for a CSR.
type AdminIssueRequest struct {
	Name string        `json:"name"`
	Role string        `json:"role"`
	TTL  time.Duration `json:"ttl"`
	// CSR is a PEM PKCS#10 request; the private key never leaves the client.
	CSR string `json:"csr"`
}

// AdminIssueResponse carries the signed certificate and the admin CA.
type AdminIssueResponse struct {
	CertPEM string `json:"certPEM"`
	CAPEM   string `json:"caPEM"`
	Serial  string `json:"serial"`
}

// RevokeRequest revokes one serial or every SVID of one SPIFFE ID.
type RevokeRequest struct {
	Serial   string `json:"serial,omitempty"`
	SPIFFEID string `json:"spiffeID,omitempty"`
	Reason   string `json:"reason,omitempty"`
}

// Revocation is one entry of the revocation list.
type Revocation struct {
	Serial    string    `json:"serial,omitempty"`
	SPIFFEID  string    `json:"spiffeID,omitempty"`
	RevokedAt time.Time `json:"revokedAt"`
	Reason    string    `json:"reason,omitempty"`
	Actor     string    `json:"actor"`
}

// RevocationsResponse is the whole revocation list.
type RevocationsResponse struct {
	Items []Revocation `json:"items"`
}

// Authority is one CA authority as the API shows it.
type Authority struct {
	ID          string    `json:"id"`
	State       string    `json:"state"`
	Subject     string    `json:"subject"`
	NotBefore   time.Time `json:"notBefore"`
	NotAfter    time.Time `json:"notAfter"`
	ActivatedAt time.Time `json:"activatedAt,omitzero"`
	RetiredAt   time.Time `json:"retiredAt,omitzero"`
	RemoveAfter time.Time `json:"removeAfter,omitzero"`
	// ActivatesAt is set for a prepared authority: when the server will
	// start signing with it.
	ActivatesAt time.Time `json:"activatesAt,omitzero"`
	JWTKeyID    string    `json:"jwtKeyID"`
}

// CAStatus lists the authorities, oldest first.
type CAStatus struct {
	TrustDomain string      `json:"trustDomain"`
	Authorities []Authority `json:"authorities"`
}

// Node is an attested node.
type Node struct {
	Name       string    `json:"name"`
	SPIFFEID   string    `json:"spiffeID"`
	AttestedAt time.Time `json:"attestedAt"`
	Serial     string    `json:"serial"`
	ExpiresAt  time.Time `json:"expiresAt"`
}

// NodesResponse lists nodes.
type NodesResponse struct {
	Items []Node `json:"items"`
}

// AuditRecord is one audit log entry.
type AuditRecord struct {
	Seq       int64     `json:"seq"`
	Time      time.Time `json:"time"`
	Actor     string    `json:"actor"`
	Action    string    `json:"action"`
	Object    string    `json:"object,omitempty"`
	Revision  int64     `json:"revision,omitempty"`
	Outcome   string    `json:"outcome"`
	Reason    string    `json:"reason,omitempty"`
	RequestID string    `json:"requestID,omitempty"`
}

// AuditResponse is a page of the audit log.
type AuditResponse struct {
	Items []AuditRecord `json:"items"`
}

// Proxy is a proxy connected to this server.
type Proxy struct {
	ID           string    `json:"id"`
	SPIFFEID     string    `json:"spiffeID"`
	Mode         string    `json:"mode,omitempty"`
	Version      string    `json:"version,omitempty"`
	Inbound      []string  `json:"inbound,omitempty"`
	Ready        bool      `json:"ready"`
	ConnectedAt  time.Time `json:"connectedAt"`
	SentVersion  uint64    `json:"sentVersion"`
	AckedVersion uint64    `json:"ackedVersion"`
	LastAckAt    time.Time `json:"lastAckAt,omitzero"`
	NackVersion  uint64    `json:"nackVersion,omitempty"`
	NackReason   string    `json:"nackReason,omitempty"`
}

// ProxiesResponse lists connected proxies.
type ProxiesResponse struct {
	Items []Proxy `json:"items"`
}

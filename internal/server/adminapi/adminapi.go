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
	"strings"
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
	// PathAuditCheckpoints serves what verifying the audit log needs
	// besides the records (GET, AuditCheckpointsResponse).
	PathAuditCheckpoints = "/v1/audit/checkpoints"
	PathProxies          = "/v1/proxies"
	PathRollback         = "/v1/objects/rollback"
	PathExplain          = "/v1/explain"
	PathTap              = "/v1/tap" // GET, streams TapEvent JSON lines; query to, from, denied
)

// TapFilter selects the requests a tap session sees.
type TapFilter struct {
	// To is a destination Service NAME[.NAMESPACE] (matched against the
	// host the caller named) or a destination SPIFFE ID; "" for any.
	To string
	// From is a source SPIFFE ID; "" for any.
	From string
	// Denied keeps only denied requests.
	Denied bool
	// ServedBy, filled by the server from the Service named in To, are the
	// identities allowed to serve it: a request whose destination is one
	// of them matches To whatever host the caller used.
	ServedBy []string
}

// Matches reports whether ev passes the filter.
func (f *TapFilter) Matches(ev *TapEvent) bool {
	if f.Denied && ev.Decision != "deny" {
		return false
	}
	if f.From != "" && ev.Source != f.From {
		return false
	}
	switch {
	case f.To == "":
	case strings.HasPrefix(f.To, "spiffe://"):
		return ev.Destination == f.To
	default:
		// "orders" matches the hosts orders, orders.NS, orders.NS.svc;
		// "orders.shop" matches orders.shop and orders.shop.svc.
		if slices.Contains(f.ServedBy, ev.Destination) {
			return true
		}
		want := strings.TrimSuffix(f.To, ".svc")
		host := strings.TrimSuffix(ev.Host, ".svc")
		if !strings.Contains(want, ".") {
			host, _, _ = strings.Cut(host, ".")
		}
		return host == want
	}
	return true
}

// TapEvent is one line of a tap stream: a request an inbound proxy
// handled, or a heartbeat.
type TapEvent struct {
	Time           time.Time `json:"time,omitzero"`
	Proxy          string    `json:"proxy,omitempty"`
	Direction      string    `json:"direction,omitempty"`
	Source         string    `json:"source,omitempty"`
	Destination    string    `json:"destination,omitempty"`
	Host           string    `json:"host,omitempty"`
	Protocol       string    `json:"protocol,omitempty"`
	Method         string    `json:"method,omitempty"`
	Path           string    `json:"path,omitempty"`
	Status         int       `json:"status,omitempty"`
	DurationMillis float64   `json:"durationMillis,omitempty"`
	Decision       string    `json:"decision,omitempty"`
	Reason         string    `json:"reason,omitempty"`
	Policy         string    `json:"policy,omitempty"`
	// Heartbeat lines carry no request; Dropped counts the summaries this
	// session lost because it read too slowly (or proxies had to drop).
	Heartbeat bool   `json:"heartbeat,omitempty"`
	Dropped   uint64 `json:"dropped,omitempty"`
}

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
	// PrevHash and Hash chain the record (see package audit).
	PrevHash string `json:"prevHash"`
	Hash     string `json:"hash"`
}

// AuditResponse is a page of the audit log.
type AuditResponse struct {
	Items []AuditRecord `json:"items"`
}

// AuditCheckpoint is a signed checkpoint of the audit log.
type AuditCheckpoint struct {
	Seq       int64     `json:"seq"`
	Hash      string    `json:"hash"`
	Time      time.Time `json:"time"`
	KeyID     string    `json:"keyID"`
	Signature []byte    `json:"signature"`
}

// AuditCheckpointsResponse is what verifying the log needs besides its
// records.
type AuditCheckpointsResponse struct {
	// PublicKeyPEM is the server's checkpoint public key (checkpoint.pub).
	// A verifier that wants to trust less than the server pins its own copy.
	PublicKeyPEM string `json:"publicKeyPEM"`
	// Stored are the checkpoints of the store's table, oldest first.
	Stored []AuditCheckpoint `json:"stored"`
	// File is the content of the server's checkpoint file as it is on disk
	// (FileError says why it could not be read).
	FileName  string `json:"fileName"`
	File      string `json:"file"`
	FileError string `json:"fileError,omitempty"`
	// HighWater, if the store tracks it, is the highest sequence number it
	// ever assigned.
	HighWater int64 `json:"highWater,omitempty"`
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
	// Replica is the server replica the proxy is connected to, when
	// several share a database. A proxy connected to another replica is
	// listed from that replica's presence: ready, without versions.
	Replica string `json:"replica,omitempty"`
}

// ProxiesResponse lists connected proxies.
type ProxiesResponse struct {
	Items []Proxy `json:"items"`
}

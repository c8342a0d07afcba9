package server

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/trustmesh/trustmesh/internal/audit"
	"github.com/trustmesh/trustmesh/internal/ca"
	"github.com/trustmesh/trustmesh/internal/server/adminapi"
	"github.com/trustmesh/trustmesh/internal/store"
)

// operator is the authenticated caller of the admin API.
type operator struct {
	name, role, requestID string
}

func (o operator) actor() string { return o.name + " (" + o.role + ")" }

// adminTLSConfig requires a client certificate from the admin CA. The
// workload trust bundle is deliberately not accepted here.
func (s *Server) adminTLSConfig() *tls.Config {
	pool := x509.NewCertPool()
	pool.AddCert(s.ca.AdminCACert())
	return &tls.Config{
		MinVersion: tls.VersionTLS13,
		ClientAuth: tls.RequireAndVerifyClientCert,
		ClientCAs:  pool,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			return s.ids.adminCert.Load(), nil
		},
		NextProtos: []string{"h2", "http/1.1"},
	}
}

func (s *Server) runAdminAPI(ctx context.Context) error {
	srv := &http.Server{
		Handler:           s.adminHandler(),
		TLSConfig:         s.adminTLSConfig(),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      60 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		// Handshake failures (no or foreign client certificate) are routine
		// probes: keep them in the structured log at debug level.
		ErrorLog: slog.NewLogLogger(s.log.With("component", "adminapi").Handler(), slog.LevelDebug),
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.ServeTLS(s.adminLis, "", "") }()
	select {
	case err := <-errc:
		return fmt.Errorf("admin API: %w", err)
	case <-ctx.Done():
	}
	shutCtx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	err := srv.Shutdown(shutCtx)
	if serr := <-errc; !errors.Is(serr, http.ErrServerClosed) {
		return fmt.Errorf("admin API: %w", serr)
	}
	if err != nil && !errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("admin API shutdown: %w", err)
	}
	return nil
}

// route is one endpoint: the roles allowed and the handler.
type route struct {
	method  string
	path    string
	roles   []string
	handler func(http.ResponseWriter, *http.Request, operator)
}

var (
	everyone    = adminapi.Roles
	writers     = []string{adminapi.RoleAdmin, adminapi.RolePolicyAuthor}
	adminsOnly  = []string{adminapi.RoleAdmin}
	responders  = []string{adminapi.RoleAdmin, adminapi.RoleResponder}
	auditReader = []string{adminapi.RoleAdmin, adminapi.RoleAuditor}
)

func (s *Server) adminHandler() http.Handler {
	routes := []route{
		{http.MethodGet, adminapi.PathWhoAmI, everyone, s.handleWhoAmI},
		{http.MethodPost, adminapi.PathApply, writers, s.handleApply},
		{http.MethodGet, adminapi.PathObjects, everyone, s.handleGet},
		{http.MethodDelete, adminapi.PathObjects, writers, s.handleDelete},
		{http.MethodGet, adminapi.PathHistory, everyone, s.handleHistory},
		{http.MethodPost, adminapi.PathTokens, adminsOnly, s.handleTokenCreate},
		{http.MethodPost, adminapi.PathAdminIssue, adminsOnly, s.handleAdminIssue},
		{http.MethodPost, adminapi.PathRevocations, responders, s.handleRevoke},
		{http.MethodGet, adminapi.PathRevocations, everyone, s.handleRevocations},
		{http.MethodGet, adminapi.PathCA, everyone, s.handleCAStatus},
		{http.MethodPost, adminapi.PathCARotate, adminsOnly, s.handleCARotate},
		{http.MethodGet, adminapi.PathBundle, everyone, s.handleBundle},
		{http.MethodGet, adminapi.PathNodes, everyone, s.handleNodes},
		{http.MethodGet, adminapi.PathAudit, auditReader, s.handleAudit},
		{http.MethodGet, adminapi.PathAuditCheckpoints, auditReader, s.handleAuditCheckpoints},
		{http.MethodGet, adminapi.PathProxies, everyone, s.handleProxies},
		{http.MethodPost, adminapi.PathRollback, writers, s.handleRollback},
		{http.MethodPost, adminapi.PathExplain, everyone, s.handleExplain},
		{http.MethodGet, adminapi.PathTap, auditReader, s.handleTap},
	}
	mux := http.NewServeMux()
	for _, rt := range routes {
		mux.HandleFunc(rt.method+" "+rt.path, s.authorize(rt))
	}
	return mux
}

// authorize authenticates the operator from the verified client certificate
// and checks the route's roles. Every refusal is audited.
func (s *Server) authorize(rt route) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		reqID := newRequestID()
		w.Header().Set("X-Request-Id", reqID)
		if r.TLS == nil || len(r.TLS.VerifiedChains) == 0 {
			// Unreachable with RequireAndVerifyClientCert; kept so the
			// handler never runs unauthenticated if the TLS config changes.
			writeError(w, http.StatusUnauthorized, "a client certificate from the admin CA is required")
			return
		}
		leaf := r.TLS.VerifiedChains[0][0]
		op := operator{name: leaf.Subject.CommonName, requestID: reqID}
		if ous := leaf.Subject.OrganizationalUnit; len(ous) == 1 && adminapi.ValidRole(ous[0]) {
			op.role = ous[0]
		}
		action := "admin." + strings.ToLower(rt.method) + " " + rt.path
		if op.role == "" {
			s.auditAdmin(r.Context(), op, action, "", audit.OutcomeDenied, "credential carries no valid role")
			writeError(w, http.StatusForbidden, "the client certificate carries no valid role")
			return
		}
		if revoked, why := s.reg.current().revoked.Revoked(leaf); revoked {
			s.auditAdmin(r.Context(), op, action, "", audit.OutcomeDenied, "revoked credential: "+why)
			writeError(w, http.StatusForbidden, "this credential is revoked")
			return
		}
		if !slices.Contains(rt.roles, op.role) {
			s.auditAdmin(r.Context(), op, action, "", audit.OutcomeDenied, "role "+op.role+" lacks permission")
			writeError(w, http.StatusForbidden, fmt.Sprintf("role %q may not %s %s; allowed roles: %s", op.role, rt.method, rt.path, strings.Join(rt.roles, ", ")))
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, 16<<20)
		rt.handler(w, r, op)
	}
}

func newRequestID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func (s *Server) auditAdmin(ctx context.Context, op operator, action, object, outcome, reason string) {
	_ = s.audit.Record(ctx, store.AuditRecord{Actor: op.actor(), Action: action, Object: object, Outcome: outcome, Reason: reason, RequestID: op.requestID})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, adminapi.Error{Error: msg})
}

func readJSON(w http.ResponseWriter, r *http.Request, v any) bool {
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		writeError(w, http.StatusBadRequest, "invalid request body: "+err.Error())
		return false
	}
	return true
}

func (s *Server) handleWhoAmI(w http.ResponseWriter, _ *http.Request, op operator) {
	writeJSON(w, http.StatusOK, adminapi.WhoAmI{Name: op.name, Role: op.role})
}

var nodeNameRE = regexp.MustCompile(`^[a-z0-9]([a-z0-9._-]{0,61}[a-z0-9])?$`)

const maxTokenTTL = 7 * 24 * time.Hour

func (s *Server) handleTokenCreate(w http.ResponseWriter, r *http.Request, op operator) {
	var req adminapi.TokenRequest
	if !readJSON(w, r, &req) {
		return
	}
	if !nodeNameRE.MatchString(req.Node) || strings.Contains(req.Node, "..") {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("--node %q: use 1-63 lowercase letters, digits, '.', '-' or '_', starting and ending with a letter or digit", req.Node))
		return
	}
	if req.TTL < time.Minute || req.TTL > maxTokenTTL {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("--ttl %s: must be between 1m and %s", req.TTL, maxTokenTTL))
		return
	}
	id, err := spiffeid.FromPath(s.td, NodePathPrefix+req.Node)
	if err != nil {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("--node %q: %v", req.Node, err))
		return
	}
	var secret [32]byte
	if _, err := rand.Read(secret[:]); err != nil {
		writeError(w, http.StatusInternalServerError, "could not generate a token")
		return
	}
	token := base64.RawURLEncoding.EncodeToString(secret[:])
	now := s.cfg.Now()
	t := store.JoinToken{Hash: hashToken(token), Node: req.Node, CreatedAt: now, ExpiresAt: now.Add(req.TTL), CreatedBy: op.actor()}
	if err := s.store.CreateJoinToken(r.Context(), t); err != nil {
		s.log.Error("create join token", "error", err)
		writeError(w, http.StatusInternalServerError, "could not store the token; see the server log")
		return
	}
	s.auditAdmin(r.Context(), op, "token.create", "join-token:"+t.Hash[:12], audit.OutcomeSuccess, "for node "+req.Node+", expires "+t.ExpiresAt.UTC().Format(time.RFC3339))
	writeJSON(w, http.StatusCreated, adminapi.TokenResponse{Token: token, Node: req.Node, SPIFFEID: id.String(), ExpiresAt: t.ExpiresAt})
}

var operatorNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$`)

const maxOperatorTTL = 365 * 24 * time.Hour

func (s *Server) handleAdminIssue(w http.ResponseWriter, r *http.Request, op operator) {
	var req adminapi.AdminIssueRequest
	if !readJSON(w, r, &req) {
		return
	}
	if !adminapi.ValidRole(req.Role) {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("--role %q: want one of %s", req.Role, strings.Join(adminapi.Roles, ", ")))
		return
	}
	if !operatorNameRE.MatchString(req.Name) {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("--name %q: use 1-64 letters, digits, '.', '_', '@' or '-'", req.Name))
		return
	}
	if req.TTL < time.Minute || req.TTL > maxOperatorTTL {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("--ttl %s: must be between 1m and %s", req.TTL, maxOperatorTTL))
		return
	}
	block, _ := pem.Decode([]byte(req.CSR))
	if block == nil || block.Type != "CERTIFICATE REQUEST" {
		writeError(w, http.StatusBadRequest, "csr: want a PEM CERTIFICATE REQUEST")
		return
	}
	csr, err := parseCSR(block.Bytes)
	if err != nil {
		writeError(w, http.StatusBadRequest, "csr: "+err.Error())
		return
	}
	cert, err := s.ca.SignAdmin(csr.PublicKey, req.Name, req.Role, req.TTL)
	if err != nil {
		s.log.Error("sign operator credential", "error", err)
		writeError(w, http.StatusInternalServerError, "could not sign the credential; see the server log")
		return
	}
	if err := s.store.RecordIssued(r.Context(), []store.Issued{{Serial: serialString(cert.SerialNumber), SPIFFEID: uriOf(cert), Kind: "admin",
		NotBefore: cert.NotBefore, NotAfter: cert.NotAfter}}); err != nil {
		s.log.Error("record operator credential", "error", err)
		writeError(w, http.StatusInternalServerError, "could not record the credential; see the server log")
		return
	}
	s.auditAdmin(r.Context(), op, "admin.issue", req.Name+"/"+req.Role, audit.OutcomeSuccess, "serial "+serialString(cert.SerialNumber))
	writeJSON(w, http.StatusCreated, adminapi.AdminIssueResponse{
		CertPEM: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw})),
		CAPEM:   string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: s.ca.AdminCACert().Raw})),
		Serial:  serialString(cert.SerialNumber),
	})
}

func (s *Server) handleRevoke(w http.ResponseWriter, r *http.Request, op operator) {
	var req adminapi.RevokeRequest
	if !readJSON(w, r, &req) {
		return
	}
	rv := store.Revocation{RevokedAt: s.cfg.Now(), Reason: req.Reason, Actor: op.actor()}
	switch {
	case (req.Serial == "") == (req.SPIFFEID == ""):
		writeError(w, http.StatusBadRequest, "give exactly one of --serial and --spiffe-id")
		return
	case req.Serial != "":
		n, ok := parseSerial(req.Serial)
		if !ok {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("--serial %q: want a decimal number or hex with 0x prefix or colons (as `trustmesh cert inspect` prints)", req.Serial))
			return
		}
		rv.Serial = n
	default:
		id, err := spiffeid.FromString(req.SPIFFEID)
		if err != nil {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("--spiffe-id %q: %v", req.SPIFFEID, err))
			return
		}
		if id.TrustDomain() != s.td {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("--spiffe-id %q is not in trust domain %s", req.SPIFFEID, s.td))
			return
		}
		if id.Path() == ServerPath {
			writeError(w, http.StatusBadRequest, "the server's own identity cannot be revoked; rotate the CA instead (`trustmesh ca rotate`)")
			return
		}
		rv.SPIFFEID = id.String()
	}
	if err := s.store.AddRevocation(r.Context(), rv); err != nil {
		s.log.Error("add revocation", "error", err)
		writeError(w, http.StatusInternalServerError, "could not store the revocation; see the server log")
		return
	}
	s.metrics.revocations.Inc()
	obj := rv.SPIFFEID
	if rv.Serial != "" {
		obj = "serial:" + rv.Serial
	}
	s.auditAdmin(r.Context(), op, "cert.revoke", obj, audit.OutcomeSuccess, req.Reason)
	writeJSON(w, http.StatusCreated, toAPIRevocation(rv))
}

// parseSerial accepts decimal, 0x-hex and colon-separated hex serials and
// returns the decimal form revocations are keyed by.
func parseSerial(s string) (string, bool) {
	s = strings.TrimSpace(s)
	if strings.Contains(s, ":") || strings.HasPrefix(s, "0x") || strings.HasPrefix(s, "0X") {
		h := strings.ReplaceAll(strings.TrimPrefix(strings.TrimPrefix(s, "0x"), "0X"), ":", "")
		b, err := hex.DecodeString(h)
		if err != nil || len(b) == 0 || len(b) > 20 {
			return "", false
		}
		n := new(big.Int).SetBytes(b)
		if n.Sign() <= 0 {
			return "", false
		}
		return n.String(), true
	}
	// X.509 serials are positive and at most 20 octets (RFC 5280 4.1.2.2).
	n, ok := new(big.Int).SetString(s, 10)
	if !ok || n.Sign() <= 0 || n.BitLen() > 160 {
		return "", false
	}
	return n.String(), true
}

func toAPIRevocation(r store.Revocation) adminapi.Revocation {
	return adminapi.Revocation{Serial: r.Serial, SPIFFEID: r.SPIFFEID, RevokedAt: r.RevokedAt, Reason: r.Reason, Actor: r.Actor}
}

func (s *Server) handleRevocations(w http.ResponseWriter, r *http.Request, _ operator) {
	revs, err := s.store.ListRevocations(r.Context())
	if err != nil {
		writeError(w, http.StatusInternalServerError, "could not read revocations; see the server log")
		return
	}
	out := adminapi.RevocationsResponse{Items: []adminapi.Revocation{}}
	for _, rv := range revs {
		out.Items = append(out.Items, toAPIRevocation(rv))
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) caStatus() adminapi.CAStatus {
	st := adminapi.CAStatus{TrustDomain: s.td.Name(), Authorities: []adminapi.Authority{}}
	for _, a := range s.ca.Authorities() {
		api := adminapi.Authority{ID: a.ID, State: string(a.State), Subject: a.CertSubject, NotBefore: a.NotBefore, NotAfter: a.NotAfter,
			ActivatedAt: a.ActivatedAt, RetiredAt: a.RetiredAt, RemoveAfter: a.RemoveAfter, JWTKeyID: a.JWTKeyID}
		if a.State == "prepared" {
			api.ActivatesAt = a.CreatedAt.Add(s.cfg.CAPropagationDelay)
		}
		st.Authorities = append(st.Authorities, api)
	}
	return st
}

func (s *Server) handleCAStatus(w http.ResponseWriter, _ *http.Request, _ operator) {
	writeJSON(w, http.StatusOK, s.caStatus())
}

func (s *Server) handleCARotate(w http.ResponseWriter, r *http.Request, op operator) {
	a, err := s.ca.Prepare()
	if errors.Is(err, ca.ErrAlreadyPrepared) {
		s.auditAdmin(r.Context(), op, "ca.prepare", "", audit.OutcomeError, err.Error())
		writeError(w, http.StatusConflict, "a rotation is already in progress: the prepared authority starts signing after the propagation delay; see `trustmesh ca status`")
		return
	} else if err != nil {
		s.auditAdmin(r.Context(), op, "ca.prepare", "", audit.OutcomeError, err.Error())
		s.log.Error("prepare CA authority", "error", err)
		writeError(w, http.StatusInternalServerError, "cannot prepare a new CA authority; see the server log")
		return
	}
	s.auditAdmin(r.Context(), op, "ca.prepare", a.ID, audit.OutcomeSuccess, "published in the bundle; signs after "+s.cfg.CAPropagationDelay.String())
	s.bundleChanged(r.Context())
	writeJSON(w, http.StatusOK, s.caStatus())
}

// handleBundle serves the trust bundle: PEM by default, the SPIFFE bundle
// (JWKS with the JWT-SVID keys) with ?format=spiffe.
func (s *Server) handleBundle(w http.ResponseWriter, r *http.Request, _ operator) {
	switch r.URL.Query().Get("format") {
	case "", "pem":
		w.Header().Set("Content-Type", "application/x-pem-file")
		_, _ = w.Write(s.ca.BundlePEM())
	case "spiffe", "jwks":
		doc, err := s.ca.Bundle().Marshal()
		if err != nil {
			writeError(w, http.StatusInternalServerError, "could not encode the bundle")
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(doc)
	default:
		writeError(w, http.StatusBadRequest, "format: want pem or spiffe")
	}
}

func (s *Server) handleNodes(w http.ResponseWriter, r *http.Request, _ operator) {
	nodes, err := s.store.ListNodes(r.Context())
	if err != nil {
		writeError(w, http.StatusInternalServerError, "could not read nodes; see the server log")
		return
	}
	out := adminapi.NodesResponse{Items: []adminapi.Node{}}
	for _, n := range nodes {
		out.Items = append(out.Items, adminapi.Node{Name: n.Name, SPIFFEID: n.SPIFFEID, AttestedAt: n.AttestedAt, Serial: n.Serial, ExpiresAt: n.ExpiresAt})
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) handleAudit(w http.ResponseWriter, r *http.Request, _ operator) {
	after, _ := strconv.ParseInt(r.URL.Query().Get("after"), 10, 64)
	limit, _ := strconv.Atoi(r.URL.Query().Get("limit"))
	if limit <= 0 || limit > 10000 {
		limit = 1000
	}
	recs, err := s.store.ListAudit(r.Context(), after, limit)
	if err != nil {
		writeError(w, http.StatusInternalServerError, "could not read the audit log; see the server log")
		return
	}
	out := adminapi.AuditResponse{Items: []adminapi.AuditRecord{}}
	for _, a := range recs {
		out.Items = append(out.Items, adminapi.AuditRecord{Seq: a.Seq, Time: a.Time, Actor: a.Actor, Action: a.Action, Object: a.Object,
			Revision: a.Revision, Outcome: a.Outcome, Reason: a.Reason, RequestID: a.RequestID, PrevHash: a.PrevHash, Hash: a.Hash})
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) handleProxies(w http.ResponseWriter, _ *http.Request, _ operator) {
	out := adminapi.ProxiesResponse{Items: []adminapi.Proxy{}}
	for _, p := range s.push.Proxies() {
		ap := adminapi.Proxy{ID: p.ID, SPIFFEID: p.SPIFFEID.String(), Mode: p.Mode, Version: p.Version, Ready: p.Ready,
			ConnectedAt: p.ConnectedAt, SentVersion: p.SentVersion, AckedVersion: p.AckedVersion, LastAckAt: p.LastAckAt,
			NackVersion: p.NackVersion, NackReason: p.NackReason}
		for _, l := range p.Inbound {
			ap.Inbound = append(ap.Inbound, l.GetAddress())
		}
		if s.shared {
			ap.Replica = s.replica
		}
		out.Items = append(out.Items, ap)
	}
	for _, rp := range s.remoteProxies() {
		ap := adminapi.Proxy{ID: rp.info.ID, SPIFFEID: rp.info.SPIFFEID.String(), Mode: rp.info.Mode, Version: rp.info.Version,
			Ready: rp.info.Ready, Replica: rp.replica}
		for _, l := range rp.info.Inbound {
			ap.Inbound = append(ap.Inbound, l.GetAddress())
		}
		out.Items = append(out.Items, ap)
	}
	writeJSON(w, http.StatusOK, out)
}

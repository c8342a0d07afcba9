package server

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	configsyncv1 "github.com/trustmesh/trustmesh/api/configsync/v1"
	nodev1 "github.com/trustmesh/trustmesh/api/node/v1"
	"github.com/trustmesh/trustmesh/internal/attest"
	"github.com/trustmesh/trustmesh/internal/audit"
	"github.com/trustmesh/trustmesh/internal/ca"
	"github.com/trustmesh/trustmesh/internal/store"
)

func isNotFound(err error) bool { return errors.Is(err, store.ErrNotFound) }

// nodeTLSConfig serves the server SVID and verifies any client certificate
// as an X.509-SVID of our trust domain against the current bundle. A client
// certificate is optional at the TLS layer because Attest with a join token
// is the one call made before a node has an SVID; every other call requires
// one (see requireNode).
func (s *Server) nodeTLSConfig() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS13,
		ClientAuth: tls.RequestClientCert,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			return s.ids.nodeCert.Load(), nil
		},
		NextProtos: []string{"h2"},
		// VerifyConnection, unlike VerifyPeerCertificate, also runs on
		// resumed sessions, so a resumption never skips the bundle check.
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return nil
			}
			_, _, err := x509svid.Verify(cs.PeerCertificates, s.x509Bundle())
			return err
		},
	}
}

func (s *Server) x509Bundle() *x509bundle.Bundle {
	return s.ca.Bundle().X509Bundle()
}

func (s *Server) runNodeAPI(ctx context.Context) error {
	gs := grpc.NewServer(
		grpc.Creds(credentials.NewTLS(s.nodeTLSConfig())),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 10 * time.Second, PermitWithoutStream: true}),
		grpc.MaxRecvMsgSize(4<<20),
	)
	api := &nodeAPI{s: s, k8s: s.k8sAttest}
	nodev1.RegisterNodeServer(gs, api)
	configsyncv1.RegisterConfigSyncServer(gs, s.push)
	errc := make(chan error, 1)
	go func() { errc <- gs.Serve(s.nodeLis) }()
	select {
	case err := <-errc:
		return fmt.Errorf("node API: %w", err)
	case <-ctx.Done():
	}
	stopped := make(chan struct{})
	go func() { gs.GracefulStop(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(3 * time.Second):
		gs.Stop()
		<-stopped
	}
	if err := <-errc; err != nil && !errors.Is(err, grpc.ErrServerStopped) {
		return fmt.Errorf("node API: %w", err)
	}
	return nil
}

// nodeAPI implements nodev1.NodeServer.
type nodeAPI struct {
	nodev1.UnimplementedNodeServer
	s *Server
	// k8s checks service-account tokens (--kubernetes only; else nil).
	k8s *k8sAttestor
}

// peerSVID returns the verified client certificate of the call, if any.
func peerSVID(ctx context.Context) (*x509.Certificate, spiffeid.ID, bool) {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return nil, spiffeid.ID{}, false
	}
	ti, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok || len(ti.State.PeerCertificates) == 0 {
		return nil, spiffeid.ID{}, false
	}
	leaf := ti.State.PeerCertificates[0]
	id, err := x509svid.IDFromCert(leaf)
	if err != nil {
		return nil, spiffeid.ID{}, false
	}
	return leaf, id, true
}

// requireNode authenticates a node call: a verified, unrevoked node SVID of
// our trust domain.
func (n *nodeAPI) requireNode(ctx context.Context) (spiffeid.ID, string, error) {
	leaf, id, ok := peerSVID(ctx)
	if !ok {
		return spiffeid.ID{}, "", status.Error(codes.Unauthenticated, "a node SVID is required: attest with a join token first")
	}
	name, ok := strings.CutPrefix(id.Path(), NodePathPrefix)
	if !ok || id.TrustDomain() != n.s.td || name == "" {
		return spiffeid.ID{}, "", status.Errorf(codes.PermissionDenied, "%s is not a node identity", id)
	}
	if !n.s.cfg.Now().Before(leaf.NotAfter) {
		return spiffeid.ID{}, "", status.Error(codes.Unauthenticated, "node SVID expired; re-join with a new token")
	}
	if revoked, why := n.s.reg.current().revoked.Revoked(leaf); revoked {
		n.s.recordAudit(ctx, id.String(), "node.call", id.String(), audit.OutcomeDenied, why)
		return spiffeid.ID{}, "", status.Errorf(codes.PermissionDenied, "node SVID revoked: %s; re-join with a new token", why)
	}
	return id, name, nil
}

func hashToken(t string) string {
	sum := sha256.Sum256([]byte(t))
	return hex.EncodeToString(sum[:])
}

func (n *nodeAPI) Attest(ctx context.Context, req *nodev1.AttestRequest) (*nodev1.AttestResponse, error) {
	s := n.s
	var nodeName, actor, how string
	if req.GetJoinToken() != "" && req.GetK8SPsat() != "" {
		return nil, status.Error(codes.InvalidArgument, "set join_token or k8s_psat, not both")
	}
	if req.GetK8SPsat() != "" {
		if n.k8s == nil {
			return nil, status.Error(codes.FailedPrecondition, "this server does not attest Kubernetes nodes: run it with --kubernetes")
		}
		name, id, err := n.k8s.attestNode(ctx, req.GetK8SPsat())
		if err != nil {
			return nil, n.k8sDenied(ctx, peerAddr(ctx), "node.attest", k8sObject(id), err)
		}
		nodeName, actor, how = name, "k8s:"+id.Namespace+"/"+id.ServiceAccount, "Kubernetes service-account token of pod "+id.Namespace+"/"+id.PodName
	} else if req.GetJoinToken() != "" {
		tok, err := s.store.UseJoinToken(ctx, hashToken(req.GetJoinToken()), s.cfg.Now())
		if err != nil {
			reason := "unknown join token"
			switch {
			case errors.Is(err, store.ErrTokenUsed):
				reason = "join token already used"
			case errors.Is(err, store.ErrTokenExpired):
				reason = "join token expired"
			case !isNotFound(err):
				s.log.Error("consume join token", "error", err)
				return nil, status.Error(codes.Internal, "could not check the join token; see the server log")
			}
			s.recordAudit(ctx, peerAddr(ctx), "node.attest", "join-token:"+hashToken(req.GetJoinToken())[:12], audit.OutcomeDenied, reason)
			// The caller learns only that the token was refused: whether it
			// exists is not theirs to probe.
			return nil, status.Error(codes.PermissionDenied, "join token refused (unknown, expired or already used); create a new one with `trustmesh token create`")
		}
		nodeName, actor, how = tok.Node, "join-token:"+tok.Hash[:12], "join token"
	} else {
		id, name, err := n.requireNode(ctx)
		if err != nil {
			return nil, err
		}
		nodeName, actor, how = name, id.String(), "node SVID"
	}
	id, err := spiffeid.FromPath(s.td, NodePathPrefix+nodeName)
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "node name %q: %v", nodeName, err)
	}
	csr, err := parseCSR(req.GetCsr())
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "csr: %v", err)
	}
	chain, authority, err := s.ca.SignX509SVID(ca.X509Params{ID: id, PublicKey: csr.PublicKey, TTL: s.cfg.NodeSVIDTTL})
	if err != nil {
		s.log.Error("sign node SVID", "node", nodeName, "error", err)
		return nil, status.Error(codes.Internal, "could not sign the node SVID; see the server log")
	}
	leaf := chain[0]
	if err := s.issued.record(ctx, []store.Issued{{Serial: serialString(leaf.SerialNumber), SPIFFEID: id.String(), Kind: "node-svid",
		Node: nodeName, Authority: authority, NotBefore: leaf.NotBefore, NotAfter: leaf.NotAfter}}); err != nil {
		s.log.Error("record node SVID", "error", err)
		return nil, status.Error(codes.Internal, "could not record the node SVID; see the server log")
	}
	if err := s.store.PutNode(ctx, store.Node{Name: nodeName, SPIFFEID: id.String(), AttestedAt: s.cfg.Now(), Serial: serialString(leaf.SerialNumber), ExpiresAt: leaf.NotAfter}); err != nil {
		s.log.Error("record node", "error", err)
		return nil, status.Error(codes.Internal, "could not record the node; see the server log")
	}
	s.recordAudit(ctx, actor, "node.attest", id.String(), audit.OutcomeSuccess, "attested by "+how+", serial "+serialString(leaf.SerialNumber))
	return &nodev1.AttestResponse{SpiffeId: id.String(), SvidChain: rawChain(chain), X509Authorities: rawChain(s.x509Bundle().X509Authorities())}, nil
}

func peerAddr(ctx context.Context) string {
	if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
		return "peer:" + p.Addr.String()
	}
	return "peer:unknown"
}

func parseCSR(der []byte) (*x509.CertificateRequest, error) {
	if len(der) == 0 {
		return nil, errors.New("missing")
	}
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		return nil, fmt.Errorf("not a DER PKCS#10 request: %w", err)
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, fmt.Errorf("bad signature: %w", err)
	}
	return csr, nil
}

func rawChain(certs []*x509.Certificate) [][]byte {
	out := make([][]byte, len(certs))
	for i, c := range certs {
		out[i] = c.Raw
	}
	return out
}

// Sync streams the node's state, sending again whenever it changes.
func (n *nodeAPI) Sync(_ *nodev1.SyncRequest, stream nodev1.Node_SyncServer) error {
	ctx := stream.Context()
	id, _, err := n.requireNode(ctx)
	if err != nil {
		return err
	}
	var last *nodev1.SyncResponse
	for {
		v := n.s.reg.current()
		if leaf, _, _ := peerSVID(ctx); leaf != nil {
			if revoked, why := v.revoked.Revoked(leaf); revoked {
				return status.Errorf(codes.PermissionDenied, "node SVID revoked: %s; re-join with a new token", why)
			}
		}
		msg, err := n.s.syncState(v, id)
		if err != nil {
			return err
		}
		if last == nil || !proto.Equal(stripRevision(last), stripRevision(msg)) {
			if err := stream.Send(msg); err != nil {
				return err
			}
			last = msg
		}
		select {
		case <-ctx.Done():
			return nil
		case <-v.changed:
		}
	}
}

func stripRevision(m *nodev1.SyncResponse) *nodev1.SyncResponse {
	c := proto.Clone(m).(*nodev1.SyncResponse)
	c.Revision = 0
	return c
}

func (s *Server) syncState(v *view, node spiffeid.ID) (*nodev1.SyncResponse, error) {
	b := s.ca.Bundle()
	doc, err := b.Marshal()
	if err != nil {
		return nil, status.Error(codes.Internal, "encode bundle")
	}
	return &nodev1.SyncResponse{
		Revision:        v.revision,
		X509Authorities: rawChain(b.X509Authorities()),
		SpiffeBundle:    doc,
		Registrations:   v.byNode[node],
		Revocations:     v.revocations,
	}, nil
}

func (n *nodeAPI) MintX509SVIDs(ctx context.Context, req *nodev1.MintX509SVIDsRequest) (*nodev1.MintX509SVIDsResponse, error) {
	node, nodeName, err := n.requireNode(ctx)
	if err != nil {
		return nil, err
	}
	if len(req.GetRequests()) > 1000 {
		return nil, status.Error(codes.InvalidArgument, "at most 1000 requests per call")
	}
	v := n.s.reg.current()
	regs := v.byNode[node]
	resp := &nodev1.MintX509SVIDsResponse{}
	var issued []store.Issued
	for _, r := range req.GetRequests() {
		res := &nodev1.X509SVIDResult{EntryId: r.GetEntryId()}
		resp.Results = append(resp.Results, res)
		i := slices.IndexFunc(regs, func(g *nodev1.Registration) bool { return g.EntryId == r.GetEntryId() })
		if i < 0 {
			res.Error = "not registered to this node"
			n.s.recordAudit(ctx, node.String(), "svid.mint", r.GetEntryId(), audit.OutcomeDenied, "workload not registered to node "+nodeName)
			continue
		}
		reg := regs[i]
		csr, err := parseCSR(r.GetCsr())
		if err != nil {
			res.Error = "csr: " + err.Error()
			continue
		}
		id, err := spiffeid.FromString(reg.SpiffeId)
		if err != nil {
			res.Error = "registration has a bad SPIFFE ID"
			continue
		}
		chain, authority, err := n.s.ca.SignX509SVID(ca.X509Params{ID: id, PublicKey: csr.PublicKey,
			TTL: time.Duration(reg.X509SvidTtlSeconds) * time.Second, DNSNames: reg.DnsNames})
		if err != nil {
			n.s.log.Error("sign X.509-SVID", "spiffe_id", id, "error", err)
			res.Error = "signing failed; see the server log"
			continue
		}
		res.SvidChain = rawChain(chain)
		issued = append(issued, store.Issued{Serial: serialString(chain[0].SerialNumber), SPIFFEID: id.String(), Kind: "x509-svid",
			Node: nodeName, Authority: authority, NotBefore: chain[0].NotBefore, NotAfter: chain[0].NotAfter})
	}
	if len(issued) > 0 {
		// Persist before handing out: an SVID the store does not know
		// could not be found for revocation by SPIFFE ID or audited.
		if err := n.s.issued.record(ctx, issued); err != nil {
			n.s.log.Error("record issued SVIDs", "error", err)
			return nil, status.Error(codes.Internal, "could not record issued SVIDs; see the server log")
		}
	}
	return resp, nil
}

func (n *nodeAPI) MintJWTSVID(ctx context.Context, req *nodev1.MintJWTSVIDRequest) (*nodev1.MintJWTSVIDResponse, error) {
	node, nodeName, err := n.requireNode(ctx)
	if err != nil {
		return nil, err
	}
	if len(req.GetAudience()) == 0 || slices.Contains(req.GetAudience(), "") {
		return nil, status.Error(codes.InvalidArgument, "audience is required and may not contain empty values")
	}
	v := n.s.reg.current()
	i := slices.IndexFunc(v.byNode[node], func(g *nodev1.Registration) bool { return g.SpiffeId == req.GetSpiffeId() })
	if i < 0 {
		n.s.recordAudit(ctx, node.String(), "jwt-svid.mint", req.GetSpiffeId(), audit.OutcomeDenied, "SPIFFE ID not registered to node "+nodeName)
		return nil, status.Errorf(codes.PermissionDenied, "%q is not registered to this node", req.GetSpiffeId())
	}
	reg := v.byNode[node][i]
	ttl := time.Duration(reg.JwtSvidTtlSeconds) * time.Second
	if t := time.Duration(req.GetTtlSeconds()) * time.Second; t > 0 && t < ttl {
		ttl = t
	}
	id, err := spiffeid.FromString(reg.SpiffeId)
	if err != nil {
		return nil, status.Error(codes.Internal, "registration has a bad SPIFFE ID")
	}
	token, exp, authority, err := n.s.ca.SignJWTSVID(id, req.GetAudience(), ttl)
	if err != nil {
		n.s.log.Error("sign JWT-SVID", "spiffe_id", id, "error", err)
		return nil, status.Error(codes.Internal, "signing failed; see the server log")
	}
	if err := n.s.issued.record(ctx, []store.Issued{{SPIFFEID: id.String(), Kind: "jwt-svid", Node: nodeName, Authority: authority,
		NotBefore: n.s.cfg.Now(), NotAfter: exp}}); err != nil {
		n.s.log.Error("record JWT-SVID", "error", err)
		return nil, status.Error(codes.Internal, "could not record the JWT-SVID; see the server log")
	}
	return &nodev1.MintJWTSVIDResponse{Token: token, ExpiresAtUnix: exp.Unix()}, nil
}

// k8sObject names what a refused service-account token claimed to be, for
// the audit log.
func k8sObject(id attest.K8sIdentity) string {
	if id.Namespace == "" {
		return "k8s-token"
	}
	if id.PodName != "" {
		return "k8s:" + id.Namespace + "/" + id.ServiceAccount + " pod " + id.PodName
	}
	return "k8s:" + id.Namespace + "/" + id.ServiceAccount
}

// k8sDenied audits a refused service-account token and translates the
// refusal for the caller: a refusal says why; an API server that could not
// be asked fails closed, as Unavailable so the agent retries.
func (n *nodeAPI) k8sDenied(ctx context.Context, actor, action, object string, err error) error {
	var r *k8sRefusal
	if errors.As(err, &r) {
		n.s.recordAudit(ctx, actor, action, object, audit.OutcomeDenied, r.reason)
		return status.Errorf(codes.PermissionDenied, "service-account token refused: %s", r.reason)
	}
	n.s.log.Error("kubernetes token review", "action", action, "error", err)
	n.s.recordAudit(ctx, actor, action, object, audit.OutcomeDenied, "kubernetes API server unreachable: token not checked")
	return status.Error(codes.Unavailable, "could not check the service-account token with the Kubernetes API server; see the server log")
}

// MintK8SX509SVID signs spiffe://TD/ns/NS/sa/SA for a pod on the calling
// node, proven by the pod's service-account token (see k8sattest.go for
// who may ask for what).
func (n *nodeAPI) MintK8SX509SVID(ctx context.Context, req *nodev1.MintK8SX509SVIDRequest) (*nodev1.MintK8SX509SVIDResponse, error) {
	node, nodeName, err := n.requireNode(ctx)
	if err != nil {
		return nil, err
	}
	if n.k8s == nil {
		return nil, status.Error(codes.FailedPrecondition, "this server does not attest Kubernetes workloads: run it with --kubernetes")
	}
	k8sNode, ok := strings.CutPrefix(nodeName, k8sNodePrefix)
	if !ok {
		n.s.recordAudit(ctx, node.String(), "svid.mint", "k8s-token", audit.OutcomeDenied, "node "+nodeName+" was not attested by Kubernetes")
		return nil, status.Errorf(codes.PermissionDenied, "node %s was not attested with a Kubernetes token: only such nodes may present pod tokens", nodeName)
	}
	k8sID, sels, err := n.k8s.attestWorkload(ctx, k8sNode, req.GetToken())
	if err != nil {
		return nil, n.k8sDenied(ctx, node.String(), "svid.mint", k8sObject(k8sID), err)
	}
	id, err := spiffeid.FromPath(n.s.td, k8sID.SPIFFEPath())
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "service account %s/%s: %v", k8sID.Namespace, k8sID.ServiceAccount, err)
	}
	csr, err := parseCSR(req.GetCsr())
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "csr: %v", err)
	}
	ttl := time.Duration(n.s.reg.current().mesh.X509SVIDTTL)
	chain, authority, err := n.s.ca.SignX509SVID(ca.X509Params{ID: id, PublicKey: csr.PublicKey, TTL: ttl})
	if err != nil {
		n.s.log.Error("sign X.509-SVID", "spiffe_id", id, "error", err)
		return nil, status.Error(codes.Internal, "signing failed; see the server log")
	}
	leaf := chain[0]
	if err := n.s.issued.record(ctx, []store.Issued{{Serial: serialString(leaf.SerialNumber), SPIFFEID: id.String(), Kind: "x509-svid",
		Node: nodeName, Authority: authority, NotBefore: leaf.NotBefore, NotAfter: leaf.NotAfter}}); err != nil {
		n.s.log.Error("record issued SVID", "error", err)
		return nil, status.Error(codes.Internal, "could not record the issued SVID; see the server log")
	}
	resp := &nodev1.MintK8SX509SVIDResponse{SpiffeId: id.String(), SvidChain: rawChain(chain)}
	for _, s := range sels {
		resp.Selectors = append(resp.Selectors, s.String())
	}
	n.s.recordAudit(ctx, node.String(), "svid.mint", id.String(), audit.OutcomeSuccess,
		"Kubernetes service-account token of pod "+k8sID.Namespace+"/"+k8sID.PodName+", serial "+serialString(leaf.SerialNumber))
	return resp, nil
}

package server

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/trustmesh/trustmesh/internal/audit"
	"github.com/trustmesh/trustmesh/internal/ca"
	"github.com/trustmesh/trustmesh/internal/server/adminapi"
	"github.com/trustmesh/trustmesh/internal/store"
)

// ServerPath is the SPIFFE ID path of the control plane's own SVID.
const ServerPath = "/trustmesh/server"

// NodePathPrefix is the SPIFFE ID path prefix of node SVIDs.
const NodePathPrefix = "/trustmesh/node/"

// identities holds the server's two certificates, swapped in place when
// renewed: the node API SVID and the admin API certificate.
type identities struct {
	ca        *ca.CA
	id        spiffeid.ID
	nodeAddr  string
	adminAddr string
	now       func() time.Time
	nodeCert  atomic.Pointer[tls.Certificate]
	adminCert atomic.Pointer[tls.Certificate]
}

func newIdentities(c *ca.CA, td spiffeid.TrustDomain, nodeAddr, adminAddr string, now func() time.Time) (*identities, error) {
	id, err := spiffeid.FromPath(td, ServerPath)
	if err != nil {
		return nil, fmt.Errorf("server SPIFFE ID: %w", err)
	}
	ids := &identities{ca: c, id: id, nodeAddr: nodeAddr, adminAddr: adminAddr, now: now}
	if err := ids.renewNode(); err != nil {
		return nil, err
	}
	if err := ids.renewAdmin(); err != nil {
		return nil, err
	}
	return ids, nil
}

// names returns the DNS names and IPs a server certificate carries so that
// standard clients (curl, openssl) can verify it by address too.
func names(addrs ...string) ([]string, []net.IP) {
	dns := []string{"trustmesh-server", "localhost"}
	var ips []net.IP
	for _, a := range addrs {
		host, _, err := net.SplitHostPort(a)
		if err != nil {
			continue
		}
		if ip := net.ParseIP(host); ip != nil {
			if !ip.IsUnspecified() {
				ips = append(ips, ip)
			}
		} else if host != "" {
			dns = append(dns, host)
		}
	}
	ips = append(ips, net.IPv4(127, 0, 0, 1), net.IPv6loopback)
	return dns, ips
}

func (ids *identities) renewNode() error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return fmt.Errorf("generate server key: %w", err)
	}
	dns, ips := names(ids.nodeAddr)
	chain, _, err := ids.ca.SignX509SVID(ca.X509Params{ID: ids.id, PublicKey: key.Public(), TTL: serverSVIDTTL, DNSNames: dns, IPAddresses: ips})
	if err != nil {
		return fmt.Errorf("sign server SVID: %w", err)
	}
	ids.nodeCert.Store(tlsCert(chain, key))
	return nil
}

func (ids *identities) renewAdmin() error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return fmt.Errorf("generate admin server key: %w", err)
	}
	dns, ips := names(ids.adminAddr)
	cert, err := ids.ca.SignAdminServer(key.Public(), dns, ips, serverSVIDTTL)
	if err != nil {
		return fmt.Errorf("sign admin server certificate: %w", err)
	}
	ids.adminCert.Store(tlsCert([]*x509.Certificate{cert}, key))
	return nil
}

// renewIfDue renews a certificate past half its lifetime. One signed by a
// retired CA authority stays valid: the authority stays in the bundle until
// everything it signed has expired.
func (ids *identities) renewIfDue() error {
	var errs []error
	if due(ids.nodeCert.Load(), ids.now()) {
		errs = append(errs, ids.renewNode())
	}
	if due(ids.adminCert.Load(), ids.now()) {
		errs = append(errs, ids.renewAdmin())
	}
	return errors.Join(errs...)
}

func due(c *tls.Certificate, now time.Time) bool {
	if c == nil || c.Leaf == nil {
		return true
	}
	return !now.Before(ca.RenewAt(c.Leaf))
}

func tlsCert(chain []*x509.Certificate, key crypto.Signer) *tls.Certificate {
	c := &tls.Certificate{PrivateKey: key, Leaf: chain[0]}
	for _, cert := range chain {
		c.Certificate = append(c.Certificate, cert.Raw)
	}
	return c
}

// ensureLocalAdmin writes DIR/admin/, the local operator credential (role
// admin), when it is missing, expiring within 30 days, or points at another
// address. It is the root of operator access: everything else is minted
// through it.
func (s *Server) ensureLocalAdmin(ctx context.Context) error {
	dir := filepath.Join(s.cfg.DataDir, "admin")
	if c, err := tls.LoadX509KeyPair(filepath.Join(dir, adminapi.CertFile), filepath.Join(dir, adminapi.KeyFile)); err == nil {
		addr, _ := os.ReadFile(filepath.Join(dir, adminapi.ServerFile))
		leaf, perr := x509.ParseCertificate(c.Certificate[0])
		if perr == nil && leaf.NotAfter.Sub(s.cfg.Now()) > 30*24*time.Hour &&
			strings.TrimSpace(string(addr)) == s.AdminAddr() && leaf.CheckSignatureFrom(s.ca.AdminCACert()) == nil {
			return nil
		}
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return fmt.Errorf("generate admin key: %w", err)
	}
	cert, err := s.ca.SignAdmin(key.Public(), "admin", adminapi.RoleAdmin, adminCredentialTTL)
	if err != nil {
		return fmt.Errorf("sign local admin credential: %w", err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return fmt.Errorf("encode admin key: %w", err)
	}
	if err := adminapi.WriteCredentials(dir,
		pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}),
		pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: s.ca.AdminCACert().Raw}),
		s.AdminAddr()); err != nil {
		return fmt.Errorf("write local admin credential: %w", err)
	}
	if err := s.store.RecordIssued(ctx, []store.Issued{{Serial: cert.SerialNumber.String(), SPIFFEID: uriOf(cert), Kind: "admin",
		NotBefore: cert.NotBefore, NotAfter: cert.NotAfter}}); err != nil {
		return fmt.Errorf("record local admin credential: %w", err)
	}
	s.recordAudit(ctx, "server", "admin.issue", "admin/admin", audit.OutcomeSuccess, "local admin credential written to "+dir)
	return nil
}

func uriOf(c *x509.Certificate) string {
	if len(c.URIs) == 1 {
		return c.URIs[0].String()
	}
	return ""
}

// recordAudit is the short form of an audit record for server actions.
func (s *Server) recordAudit(ctx context.Context, actor, action, object, outcome, reason string) {
	_ = s.audit.Record(ctx, store.AuditRecord{Actor: actor, Action: action, Object: object, Outcome: outcome, Reason: reason})
}

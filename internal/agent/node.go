package agent

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	nodev1 "github.com/trustmesh/trustmesh/api/node/v1"
	"github.com/trustmesh/trustmesh/internal/atomicfile"
	"github.com/trustmesh/trustmesh/internal/serveraddr"
)

// Files in the agent's data dir. Only the node's own credential is kept on
// disk (so a restarted agent re-joins without a new token); workload SVIDs
// live in memory only.
const (
	nodeCertFile   = "node.crt.pem"
	nodeKeyFile    = "node.key.pem"
	bundleFile     = "bundle.pem"
	serverPath     = "/trustmesh/server"
	nodePathPrefix = "/trustmesh/node/"
)

// nodeCreds is the agent's view of its own identity and of whom to trust.
// Both are swapped in place: TLS callbacks read them on every handshake.
type nodeCreds struct {
	svid  atomic.Pointer[x509svid.SVID]
	roots atomic.Pointer[[]*x509.Certificate]
	pinTD atomic.Pointer[spiffeid.TrustDomain]
	dir   string
}

func (n *nodeCreds) setRoots(certs []*x509.Certificate) { n.roots.Store(&certs) }

func (n *nodeCreds) trustDomain() (spiffeid.TrustDomain, bool) {
	if td := n.pinTD.Load(); td != nil {
		return *td, true
	}
	return spiffeid.TrustDomain{}, false
}

// tlsConfig dials the server: it presents the node SVID when there is one
// and accepts only the server's SVID (spiffe://<td>/trustmesh/server) chained
// to the trusted roots. The trust domain is pinned once known (from the
// node SVID); before the first join it is learned from the server's SVID,
// whose chain must still verify against the operator-provided bundle.
func (n *nodeCreds) tlsConfig() *tls.Config {
	return &tls.Config{
		MinVersion:         tls.VersionTLS13,
		InsecureSkipVerify: true, //nolint:gosec // verification is VerifyPeerCertificate below: SPIFFE ID based, not hostname based
		NextProtos:         []string{"h2"},
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			s := n.svid.Load()
			if s == nil {
				return &tls.Certificate{}, nil
			}
			c := &tls.Certificate{PrivateKey: s.PrivateKey, Leaf: s.Certificates[0]}
			for _, cert := range s.Certificates {
				c.Certificate = append(c.Certificate, cert.Raw)
			}
			return c, nil
		},
		// VerifyConnection also runs on resumed sessions.
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return errors.New("server presented no certificate")
			}
			id, err := x509svid.IDFromCert(cs.PeerCertificates[0])
			if err != nil {
				return fmt.Errorf("server certificate is not an SVID: %w", err)
			}
			if td, ok := n.trustDomain(); ok && id.TrustDomain() != td {
				return fmt.Errorf("server is %s, want trust domain %s", id, td)
			}
			if id.Path() != serverPath {
				return fmt.Errorf("peer is %s, not the trustmesh server", id)
			}
			roots := n.roots.Load()
			if roots == nil {
				return errors.New("no trust bundle")
			}
			_, _, err = x509svid.Verify(cs.PeerCertificates, x509bundle.FromX509Authorities(id.TrustDomain(), *roots))
			return err
		},
	}
}

// dial connects to the server: any of addrs, failing over between them
// (package serveraddr).
func dial(addrs []string, n *nodeCreds) (*grpc.ClientConn, error) {
	conn, err := serveraddr.Dial(serveraddr.Config{Addrs: addrs, Credentials: credentials.NewTLS(n.tlsConfig())})
	if err != nil {
		return nil, fmt.Errorf("dial server: %w", err)
	}
	return conn, nil
}

// newCSR makes a fresh P-256 key and a CSR for it. The subject is empty:
// the server decides the SPIFFE ID.
func newCSR() (crypto.Signer, []byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("generate key: %w", err)
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{}}, key)
	if err != nil {
		return nil, nil, fmt.Errorf("create CSR: %w", err)
	}
	return key, csr, nil
}

// svidFromChain builds an SVID from DER certificates and its key, checking
// the SPIFFE ID and that the key matches.
func svidFromChain(der [][]byte, key crypto.Signer) (*x509svid.SVID, error) {
	var certs []*x509.Certificate
	for _, d := range der {
		c, err := x509.ParseCertificate(d)
		if err != nil {
			return nil, fmt.Errorf("parse SVID: %w", err)
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		return nil, errors.New("empty SVID chain")
	}
	id, err := x509svid.IDFromCert(certs[0])
	if err != nil {
		return nil, fmt.Errorf("SVID: %w", err)
	}
	if pub, ok := certs[0].PublicKey.(interface{ Equal(crypto.PublicKey) bool }); !ok || !pub.Equal(key.Public()) {
		return nil, errors.New("SVID does not match the requested key")
	}
	return &x509svid.SVID{ID: id, Certificates: certs, PrivateKey: key}, nil
}

func parseDER(der [][]byte) ([]*x509.Certificate, error) {
	out := make([]*x509.Certificate, 0, len(der))
	for _, d := range der {
		c, err := x509.ParseCertificate(d)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, nil
}

// loadSaved reads the node SVID saved by a previous run, if still valid.
func (n *nodeCreds) loadSaved(now time.Time) (*x509svid.SVID, error) {
	s, err := x509svid.Load(filepath.Join(n.dir, nodeCertFile), filepath.Join(n.dir, nodeKeyFile))
	if err != nil {
		return nil, err
	}
	if !now.Before(s.Certificates[0].NotAfter) {
		return nil, fmt.Errorf("saved node SVID expired at %s", s.Certificates[0].NotAfter.UTC().Format(time.RFC3339))
	}
	return s, nil
}

// save persists the node SVID (key 0600) so a restart can re-join with it.
func (n *nodeCreds) save(s *x509svid.SVID) error {
	certs, key, err := s.Marshal()
	if err != nil {
		return fmt.Errorf("encode node SVID: %w", err)
	}
	if err := atomicfile.Write(filepath.Join(n.dir, nodeKeyFile), key, 0o600); err != nil {
		return err
	}
	return atomicfile.Write(filepath.Join(n.dir, nodeCertFile), certs, 0o644)
}

func (n *nodeCreds) saveBundle(roots []*x509.Certificate) error {
	var out []byte
	for _, c := range roots {
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	return atomicfile.Write(filepath.Join(n.dir, bundleFile), out, 0o644)
}

func loadPEMCerts(path string) ([]*x509.Certificate, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var out []*x509.Certificate
	for {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			break
		}
		if blk.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s holds no PEM certificate", path)
	}
	return out, nil
}

// attestNode obtains a node SVID: with the join token if given, else with the
// current node SVID (mTLS).
func attestNode(ctx context.Context, client nodev1.NodeClient, token string) (*x509svid.SVID, []*x509.Certificate, error) {
	return attestNodeWith(ctx, client, &nodev1.AttestRequest{JoinToken: token})
}

// attestNodeWith sends req (its proof of identity, if any) with a CSR for a
// fresh key.
func attestNodeWith(ctx context.Context, client nodev1.NodeClient, req *nodev1.AttestRequest) (*x509svid.SVID, []*x509.Certificate, error) {
	key, csr, err := newCSR()
	if err != nil {
		return nil, nil, err
	}
	req.Csr = csr
	resp, err := client.Attest(ctx, req)
	if err != nil {
		return nil, nil, err
	}
	s, err := svidFromChain(resp.GetSvidChain(), key)
	if err != nil {
		return nil, nil, err
	}
	roots, err := parseDER(resp.GetX509Authorities())
	if err != nil {
		return nil, nil, fmt.Errorf("parse trust bundle: %w", err)
	}
	return s, roots, nil
}

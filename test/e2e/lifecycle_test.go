package e2e

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"
)

// newSource opens a go-spiffe X509Source on the agent's socket.
func newSource(t *testing.T, a *agent) *workloadapi.X509Source {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	src, err := workloadapi.NewX509Source(ctx, workloadapi.WithClientOptions(workloadapi.WithAddr("unix://"+a.socket)))
	if err != nil {
		t.Fatalf("X509Source: %v\n%s", err, a.out)
	}
	t.Cleanup(func() { src.Close() })
	return src
}

// waitSVID waits until the source's SVID satisfies cond.
func waitSVID(t *testing.T, src *workloadapi.X509Source, what string, cond func(*x509svid.SVID) bool) *x509svid.SVID {
	t.Helper()
	deadline := time.After(30 * time.Second)
	for {
		if s, err := src.GetX509SVID(); err == nil && cond(s) {
			return s
		}
		select {
		case <-src.Updated():
		case <-deadline:
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// TestRevocationReachesAgent: revoking a workload's SPIFFE ID makes the
// agent replace the SVID at once; revoking the node cuts the agent off.
func TestRevocationReachesAgent(t *testing.T) {
	t.Parallel()
	s := startServer(t, "revoke.example")
	s.apply(t, workloadYAML(s.td, "web", "node-1", uidSelector()))
	a := startAgent(t, s, filepath.Join(t.TempDir(), "agent"), s.token(t, "node-1"))
	src := newSource(t, a)
	first, err := src.GetX509SVID()
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	mustCLI(t, "cert", "revoke", "--spiffe-id", first.ID.String(), "--reason", "e2e", "--data-dir", s.dir)
	second := waitSVID(t, src, "a replacement SVID", func(v *x509svid.SVID) bool {
		return v.Certificates[0].SerialNumber.Cmp(first.Certificates[0].SerialNumber) != 0
	})
	t.Logf("replacement SVID served %s after the revocation", time.Since(start))
	if second.ID != first.ID {
		t.Errorf("got %s, want %s", second.ID, first.ID)
	}
	audit := mustCLI(t, "audit", "tail", "-o", "json", "--data-dir", s.dir)
	if !strings.Contains(audit, `"action":"cert.revoke"`) {
		t.Errorf("revocation not audited:\n%s", audit)
	}
	if list := mustCLI(t, "cert", "revocations", "--data-dir", s.dir); !strings.Contains(list, first.ID.String()) || !strings.Contains(list, "e2e") {
		t.Errorf("cert revocations lacks the revocation:\n%s", list)
	}
	if nodes := mustCLI(t, "node", "list", "--data-dir", s.dir); !strings.Contains(nodes, "spiffe://revoke.example/trustmesh/node/node-1") {
		t.Errorf("node list lacks node-1:\n%s", nodes)
	}

	mustCLI(t, "cert", "revoke", "--spiffe-id", "spiffe://revoke.example/trustmesh/node/node-1", "--data-dir", s.dir)
	waitFor(t, "the agent to be cut off", 30*time.Second, func() bool {
		return strings.Contains(a.out.String(), "node SVID revoked")
	})
}

// TestCARotation: a prepared authority is published before it signs, new
// SVIDs chain to it after the propagation delay, and the old one stays
// trusted meanwhile.
func TestCARotation(t *testing.T) {
	t.Parallel()
	s := startServer(t, "ca.example", "--ca-propagation-delay", "3s")
	s.apply(t, workloadYAML(s.td, "web", "node-1", uidSelector()))
	a := startAgent(t, s, filepath.Join(t.TempDir(), "agent"), s.token(t, "node-1"))
	src := newSource(t, a)
	first, _ := src.GetX509SVID()
	oldRoots := loadBundle(t, s).X509Authorities()
	if len(oldRoots) != 1 {
		t.Fatalf("got %d roots before rotation, want 1", len(oldRoots))
	}

	out := mustCLI(t, "ca", "rotate", "--data-dir", s.dir)
	if !strings.Contains(out, "prepared") || !strings.Contains(out, "signs from") {
		t.Fatalf("ca rotate output:\n%s", out)
	}
	// Published at once: bundle.pem and the agent's bundle carry both keys.
	if n := len(loadBundle(t, s).X509Authorities()); n != 2 {
		t.Fatalf("got %d roots in bundle.pem after prepare, want 2", n)
	}
	td := spiffeid.RequireTrustDomainFromString(s.td)
	waitFor(t, "the agent's bundle to carry both keys", 30*time.Second, func() bool {
		b, err := src.GetX509BundleForTrustDomain(td)
		return err == nil && len(b.X509Authorities()) == 2
	})

	// After activation new SVIDs chain to the new key; force one by revoking.
	waitFor(t, "activation", 30*time.Second, func() bool {
		return strings.Contains(mustCLI(t, "ca", "status", "--data-dir", s.dir), "retired")
	})
	mustCLI(t, "cert", "revoke", "--spiffe-id", first.ID.String(), "--data-dir", s.dir)
	second := waitSVID(t, src, "an SVID from the new key", func(v *x509svid.SVID) bool {
		return v.Certificates[0].SerialNumber.Cmp(first.Certificates[0].SerialNumber) != 0
	})
	if _, _, err := x509svid.Verify(second.Certificates, x509bundle.FromX509Authorities(td, oldRoots)); err == nil {
		t.Error("the new SVID still chains to the old key")
	}
	if _, _, err := x509svid.Verify(second.Certificates, loadBundle(t, s)); err != nil {
		t.Errorf("the new SVID does not verify against bundle.pem: %v", err)
	}
	// The old key is still trusted: SVIDs it signed are still valid.
	if _, _, err := x509svid.Verify(first.Certificates, loadBundle(t, s)); err != nil {
		t.Errorf("the old SVID no longer verifies against bundle.pem: %v", err)
	}
}

// TestUpstreamCA: under --upstream-ca the bundle is the upstream root and
// SVIDs chain to it through our intermediate.
func TestUpstreamCA(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	certFile, keyFile := writeRoot(t, dir)
	s := startServer(t, "upstream.example", "--upstream-ca", certFile+","+keyFile)
	bundle, err := os.ReadFile(filepath.Join(s.dir, "bundle.pem"))
	if err != nil {
		t.Fatal(err)
	}
	root, err := os.ReadFile(certFile)
	if err != nil {
		t.Fatal(err)
	}
	if strings.TrimSpace(string(bundle)) != strings.TrimSpace(string(root)) {
		t.Fatalf("bundle.pem is not the upstream root:\n%s", bundle)
	}
	s.apply(t, workloadYAML(s.td, "web", "node-1", uidSelector()))
	a := startAgent(t, s, filepath.Join(t.TempDir(), "agent"), s.token(t, "node-1"))
	svid, err := workloadapi.FetchX509SVID(fetchCtx(t), workloadapi.WithAddr("unix://"+a.socket))
	if err != nil {
		t.Fatal(err)
	}
	if len(svid.Certificates) < 2 {
		t.Fatalf("got a chain of %d, want leaf + intermediate", len(svid.Certificates))
	}
	if _, _, err := x509svid.Verify(svid.Certificates, loadBundle(t, s)); err != nil {
		t.Fatalf("SVID does not chain to the upstream root: %v", err)
	}
}

func writeRoot(t *testing.T, dir string) (string, string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "corp root"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * 365 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile := filepath.Join(dir, "root.pem"), filepath.Join(dir, "root.key")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

// TestObjectsCLI: apply, get, history and delete through the CLI, and bad
// input rejected with a message naming the field, writing nothing.
func TestObjectsCLI(t *testing.T) {
	t.Parallel()
	s := startServer(t, "objects.example")
	web := workloadYAML(s.td, "web", "node-1", uidSelector())
	if out := s.apply(t, web); !strings.Contains(out, "Workload default/web created (revision 1)") {
		t.Errorf("apply: %q", out)
	}
	if out := s.apply(t, web); !strings.Contains(out, "unchanged (revision 1)") {
		t.Errorf("re-apply: %q", out)
	}
	if out := s.apply(t, strings.Replace(web, uidSelector(), uidSelector()+`", "unix:gid:0`, 1)); !strings.Contains(out, "configured (revision 2)") {
		t.Errorf("update: %q", out)
	}
	y := mustCLI(t, "get", "workload", "web", "-o", "yaml", "--data-dir", s.dir)
	for _, w := range []string{"revision: 2", "creationRevision: 1", "spiffeID: spiffe://objects.example/ns/default/sa/web"} {
		if !strings.Contains(y, w) {
			t.Errorf("get -o yaml lacks %q:\n%s", w, y)
		}
	}
	if h := mustCLI(t, "get", "workload", "web", "--history", "--data-dir", s.dir); strings.Count(h, "\n") != 3 {
		t.Errorf("history: want a header and 2 revisions:\n%s", h)
	}

	bad := []struct {
		name, doc, want string
	}{
		{"unknown field", strings.Replace(web, "selectors:", "selectr:", 1), `unknown field "spec.selectr"`},
		{"spiffe id with a dot segment", strings.Replace(web, "/sa/web", "/sa/../web", 1), "spec.spiffeID"},
		{"spiffe id with a query", strings.Replace(web, "/sa/web", "/sa/web?x=1", 1), "spec.spiffeID"},
		{"uppercase trust domain", strings.Replace(web, "spiffe://objects.example/ns", "spiffe://Objects.example/ns", 1), "spec.spiffeID"},
		{"empty selectors", strings.Replace(web, `["`+uidSelector()+`"]`, "[]", 1), "spec.selectors"},
		{"reserved path", strings.Replace(web, "/ns/default/sa/web", "/trustmesh/node/node-1", 1), "reserved"},
		{"other trust domain", strings.Replace(web, "spiffe://objects.example/ns", "spiffe://evil.example/ns", 1), "trust domain"},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			doc := workloadYAML(s.td, "first", "node-1", uidSelector()) + "---\n" + strings.Replace(tc.doc, "name: web", "name: second", 1)
			_, errOut, err := cli(t, doc, "apply", "-f", "-", "--data-dir", s.dir)
			if err == nil || !strings.Contains(errOut, tc.want) {
				t.Fatalf("got %v %q, want an error naming %q", err, errOut, tc.want)
			}
			if strings.Count(strings.TrimSpace(errOut), "\n") > 10 {
				t.Errorf("error is not short:\n%s", errOut)
			}
			// All or nothing: the valid first document was not written.
			if _, _, err := cli(t, "", "get", "workload", "first", "--data-dir", s.dir); err == nil {
				t.Error("a valid document was applied alongside an invalid one")
			}
		})
	}

	if out := mustCLI(t, "delete", "workload", "web", "--data-dir", s.dir); !strings.Contains(out, "deleted (revision 3)") {
		t.Errorf("delete: %q", out)
	}
	_, errOut, err := cli(t, "", "get", "workload", "web", "--data-dir", s.dir)
	if err == nil || !strings.Contains(errOut, "not found") {
		t.Errorf("get after delete: %v %q", err, errOut)
	}
	if h := mustCLI(t, "get", "workload", "web", "--history", "--data-dir", s.dir); !strings.Contains(h, "(deleted)") {
		t.Errorf("history lacks the tombstone:\n%s", h)
	}
}

// TestServerOutage: agents ride out a control-plane restart. A running
// agent keeps serving and reconnects; an agent started while the server is
// down waits for it instead of exiting.
func TestServerOutage(t *testing.T) {
	t.Parallel()
	s := startServer(t, "outage.example")
	s.apply(t, workloadYAML(s.td, "web", "node-1", uidSelector()))
	a := startAgent(t, s, filepath.Join(t.TempDir(), "agent"), s.token(t, "node-1"))
	src := newSource(t, a)
	first, err := src.GetX509SVID()
	if err != nil {
		t.Fatal(err)
	}

	tokenB := s.token(t, "node-2")
	if err := s.stop(); err != nil {
		t.Fatalf("server stop: %v", err)
	}
	// The agent still serves what it holds while the server is away.
	if _, err := workloadapi.FetchX509SVID(fetchCtx(t), workloadapi.WithAddr("unix://"+a.socket)); err != nil {
		t.Fatalf("fetch during the outage: %v", err)
	}
	// An agent started now waits for the server.
	b := startAgent(t, s, filepath.Join(t.TempDir(), "agent-b"), tokenB)
	waitFor(t, "agent b to wait for the server", 30*time.Second, func() bool {
		return strings.Contains(b.out.String(), "server unreachable; retrying")
	})

	s.launch(t)
	waitFor(t, "agent b to join once the server is back", 30*time.Second, func() bool {
		return strings.Contains(b.out.String(), "joined with a join token")
	})
	// The running agent reconnected its sync stream: a revocation made after
	// the restart reaches it.
	mustCLI(t, "cert", "revoke", "--spiffe-id", first.ID.String(), "--data-dir", s.dir)
	waitSVID(t, src, "a replacement SVID after the restart", func(v *x509svid.SVID) bool {
		return v.Certificates[0].SerialNumber.Cmp(first.Certificates[0].SerialNumber) != 0
	})
}

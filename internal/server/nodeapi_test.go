package server

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	nodev1 "github.com/trustmesh/trustmesh/api/node/v1"
	"github.com/trustmesh/trustmesh/internal/server/adminapi"
)

// nodeClient joins a node through the real node API and returns a client
// authenticated with its SVID.
func nodeClient(t testing.TB, s *Server, node string) nodev1.NodeClient {
	t.Helper()
	admin, err := adminapi.NewClient(filepath.Join(s.cfg.DataDir, "admin"), "")
	if err != nil {
		t.Fatal(err)
	}
	var tok adminapi.TokenResponse
	if err := admin.Do(context.Background(), http.MethodPost, adminapi.PathTokens, nil, adminapi.TokenRequest{Node: node, TTL: time.Hour}, &tok); err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	for _, c := range s.ca.Bundle().X509Authorities() {
		roots.AddCert(c)
	}
	dial := func(cert *tls.Certificate) *grpc.ClientConn {
		conf := &tls.Config{MinVersion: tls.VersionTLS13, RootCAs: roots, ServerName: "trustmesh-server"}
		if cert != nil {
			conf.Certificates = []tls.Certificate{*cert}
		}
		conn, err := grpc.NewClient(s.NodeAddr(), grpc.WithTransportCredentials(credentials.NewTLS(conf)))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		return conn
	}
	key, csr := testCSR(t)
	resp, err := nodev1.NewNodeClient(dial(nil)).Attest(context.Background(), &nodev1.AttestRequest{JoinToken: tok.Token, Csr: csr})
	if err != nil {
		t.Fatalf("attest: %v", err)
	}
	return nodev1.NewNodeClient(dial(&tls.Certificate{Certificate: resp.GetSvidChain(), PrivateKey: key}))
}

func testCSR(t testing.TB) (*ecdsa.PrivateKey, []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
	if err != nil {
		t.Fatal(err)
	}
	return key, csr
}

func applyWorkload(t testing.TB, s *Server, name, node string) {
	t.Helper()
	admin, err := adminapi.NewClient(filepath.Join(s.cfg.DataDir, "admin"), "")
	if err != nil {
		t.Fatal(err)
	}
	doc := "apiVersion: trustmesh.dev/v1\nkind: Workload\nmetadata: {name: " + name + "}\nspec:\n  spiffeID: spiffe://unit.example/" + name +
		"\n  parentID: spiffe://unit.example/trustmesh/node/" + node + "\n  selectors: [\"unix:uid:1000\"]\n"
	if err := admin.Do(context.Background(), http.MethodPost, adminapi.PathApply, nil, adminapi.ApplyRequest{Document: doc}, nil); err != nil {
		t.Fatal(err)
	}
	// The registry follows the store asynchronously.
	deadline := time.Now().Add(5 * time.Second)
	for s.reg.current().parentOf["default/"+name].IsZero() {
		if time.Now().After(deadline) {
			t.Fatal("registration not picked up")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestNodeMayOnlyMintItsOwnWorkloads: a node gets SVIDs for registrations
// whose parentID is itself, never another node's.
func TestNodeMayOnlyMintItsOwnWorkloads(t *testing.T) {
	s := startTestServer(t)
	applyWorkload(t, s, "mine", "node-a")
	applyWorkload(t, s, "theirs", "node-b")
	a := nodeClient(t, s, "node-a")
	_, csr := testCSR(t)
	resp, err := a.MintX509SVIDs(context.Background(), &nodev1.MintX509SVIDsRequest{Requests: []*nodev1.X509SVIDRequest{
		{EntryId: "default/mine", Csr: csr}, {EntryId: "default/theirs", Csr: csr}, {EntryId: "default/nobody", Csr: csr},
	}})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, r := range resp.GetResults() {
		got[r.GetEntryId()] = r.GetError()
	}
	if got["default/mine"] != "" {
		t.Errorf("own workload refused: %s", got["default/mine"])
	}
	for _, e := range []string{"default/theirs", "default/nobody"} {
		if got[e] == "" {
			t.Errorf("%s: got an SVID, want a refusal", e)
		}
	}
	_, err = a.MintJWTSVID(context.Background(), &nodev1.MintJWTSVIDRequest{SpiffeId: "spiffe://unit.example/theirs", Audience: []string{"x"}})
	if status.Code(err) != codes.PermissionDenied {
		t.Errorf("JWT-SVID for another node's workload: got %v, want PermissionDenied", err)
	}
	_, err = a.MintJWTSVID(context.Background(), &nodev1.MintJWTSVIDRequest{SpiffeId: "spiffe://unit.example/mine"})
	if status.Code(err) != codes.InvalidArgument {
		t.Errorf("JWT-SVID without audience: got %v, want InvalidArgument", err)
	}
}

// BenchmarkMintX509SVIDs is the in-process twin of the end-to-end issuance
// benchmark, for profiling: go test -bench MintX509 -cpuprofile cpu.out.
func BenchmarkMintX509SVIDs(b *testing.B) {
	s := startTestServer(b)
	applyWorkload(b, s, "web", "bench")
	c := nodeClient(b, s, "bench")
	_, csr := testCSR(b)
	req := &nodev1.MintX509SVIDsRequest{Requests: []*nodev1.X509SVIDRequest{{EntryId: "default/web", Csr: csr}}}
	b.SetParallelism(8)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := c.MintX509SVIDs(context.Background(), req); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "svids/s")
}

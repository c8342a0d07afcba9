package e2e

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	nodev1 "github.com/trustmesh/trustmesh/api/node/v1"
)

// BenchmarkSVIDIssuance measures X.509-SVIDs issued per second through a
// real server process: gRPC over mTLS, signing, and persistence of every
// issued record in SQLite. The client plays a node agent (a node SVID from a
// join token) and sends pre-made CSRs, so agent-side key generation is not
// counted.
func BenchmarkSVIDIssuance(b *testing.B) {
	s := startServer(b, "bench.example", "--log-level", "warn")
	s.apply(b, workloadYAML(s.td, "web", "bench", uidSelector()))
	token := s.token(b, "bench")

	roots := x509.NewCertPool()
	for _, c := range loadBundleTB(b, s).X509Authorities() {
		roots.AddCert(c)
	}
	ctx := context.Background()
	conn := benchDial(b, s.nodeAddr, roots, nil)
	key, csr := benchCSR(b)
	resp, err := nodev1.NewNodeClient(conn).Attest(ctx, &nodev1.AttestRequest{JoinToken: token, Csr: csr})
	if err != nil {
		b.Fatalf("attest: %v", err)
	}
	conn.Close()
	nodeCert := &tls.Certificate{Certificate: resp.GetSvidChain(), PrivateKey: key}
	conn = benchDial(b, s.nodeAddr, roots, nodeCert)
	defer conn.Close()
	client := nodev1.NewNodeClient(conn)

	// The registry view follows the store asynchronously; wait until the
	// workload is served.
	waitFor(b, "registration", 10*time.Second, func() bool {
		r, err := client.MintX509SVIDs(ctx, &nodev1.MintX509SVIDsRequest{Requests: []*nodev1.X509SVIDRequest{{EntryId: "default/web", Csr: csr}}})
		return err == nil && r.GetResults()[0].GetError() == ""
	})

	for _, batch := range []int{1, 100} {
		b.Run(map[int]string{1: "one-per-call", 100: "batch-100"}[batch], func(b *testing.B) {
			reqs := make([]*nodev1.X509SVIDRequest, batch)
			for i := range reqs {
				reqs[i] = &nodev1.X509SVIDRequest{EntryId: "default/web", Csr: csr}
			}
			var issued atomic.Int64
			b.SetParallelism(8)
			b.ResetTimer()
			start := time.Now()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					r, err := client.MintX509SVIDs(ctx, &nodev1.MintX509SVIDsRequest{Requests: reqs})
					if err != nil {
						b.Error(err)
						return
					}
					for _, res := range r.GetResults() {
						if res.GetError() != "" {
							b.Error(res.GetError())
							return
						}
					}
					issued.Add(int64(len(r.GetResults())))
				}
			})
			b.ReportMetric(float64(issued.Load())/time.Since(start).Seconds(), "svids/s")
		})
	}
}

func benchCSR(b testing.TB) (*ecdsa.PrivateKey, []byte) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		b.Fatal(err)
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
	if err != nil {
		b.Fatal(err)
	}
	return key, csr
}

func benchDial(b testing.TB, addr string, roots *x509.CertPool, cert *tls.Certificate) *grpc.ClientConn {
	conf := &tls.Config{MinVersion: tls.VersionTLS13, RootCAs: roots, ServerName: "trustmesh-server"}
	if cert != nil {
		conf.Certificates = []tls.Certificate{*cert}
	}
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(conf)))
	if err != nil {
		b.Fatal(err)
	}
	return conn
}

func loadBundleTB(b testing.TB, s *server) *x509bundle.Bundle {
	b.Helper()
	return loadBundleFile(b, filepath.Join(s.dir, "bundle.pem"), s.td)
}

package agent

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"log/slog"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	nodev1 "github.com/trustmesh/trustmesh/api/node/v1"
)

// nodeReplica is a stand-in for one server replica's node API: it joins
// any token as node-1, signed by the shared CA, and serves each Sync with
// the bundle, reporting the stream on syncs.
type nodeReplica struct {
	nodev1.UnimplementedNodeServer
	ca    *testCA
	name  string
	addr  string
	syncs chan<- string // name, per Sync stream opened
	srv   *grpc.Server
	done  chan struct{}
	once  sync.Once
}

func (r *nodeReplica) Attest(_ context.Context, req *nodev1.AttestRequest) (*nodev1.AttestResponse, error) {
	csr, err := x509.ParseCertificateRequest(req.GetCsr())
	if err != nil {
		return nil, err
	}
	sn, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 64))
	if err != nil {
		return nil, err
	}
	id := spiffeid.RequireFromPath(td, "/trustmesh/node/node-1")
	tmpl := &x509.Certificate{
		SerialNumber: sn, URIs: []*url.URL{id.URL()},
		NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(time.Hour),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, r.ca.cert, csr.PublicKey, r.ca.key)
	if err != nil {
		return nil, err
	}
	return &nodev1.AttestResponse{SpiffeId: id.String(), SvidChain: [][]byte{der}, X509Authorities: [][]byte{r.ca.cert.Raw}}, nil
}

func (r *nodeReplica) Sync(_ *nodev1.SyncRequest, stream grpc.ServerStreamingServer[nodev1.SyncResponse]) error {
	b, err := spiffebundle.FromX509Authorities(td, []*x509.Certificate{r.ca.cert}).Marshal()
	if err != nil {
		return err
	}
	if err := stream.Send(&nodev1.SyncResponse{Revision: 1, X509Authorities: [][]byte{r.ca.cert.Raw}, SpiffeBundle: b}); err != nil {
		return err
	}
	r.syncs <- r.name
	<-stream.Context().Done()
	return nil
}

func startNodeReplica(t *testing.T, ca *testCA, name string, syncs chan<- string) *nodeReplica {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := ca.svid(t, spiffeid.RequireFromPath(td, serverPath))
	cert := tls.Certificate{Certificate: [][]byte{s.Certificates[0].Raw}, PrivateKey: s.PrivateKey}
	tlsConf := &tls.Config{MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{cert}, ClientAuth: tls.RequestClientCert}
	r := &nodeReplica{ca: ca, name: name, addr: l.Addr().String(), syncs: syncs,
		srv: grpc.NewServer(grpc.Creds(credentials.NewTLS(tlsConf))), done: make(chan struct{})}
	nodev1.RegisterNodeServer(r.srv, r)
	go func() {
		defer close(r.done)
		_ = r.srv.Serve(l)
	}()
	t.Cleanup(r.stop)
	return r
}

// stop closes the listener and every connection, as an exiting server
// process does.
func (r *nodeReplica) stop() {
	r.once.Do(r.srv.Stop)
	<-r.done
}

// TestAgentFailsOver runs the real agent against two replicas, stops the
// one its Sync stream is on and expects the stream back on the other
// within a few seconds, with the agent's own retry loop.
func TestAgentFailsOver(t *testing.T) {
	ca := newTestCA(t)
	syncs := make(chan string, 16)
	replicas := map[string]*nodeReplica{"a": startNodeReplica(t, ca, "a", syncs), "b": startNodeReplica(t, ca, "b", syncs)}

	// t.TempDir paths can pass the 107-byte socket limit; this one cannot.
	dir, err := os.MkdirTemp("", "fo")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	bundlePath := filepath.Join(dir, "bundle.pem")
	if err := os.WriteFile(bundlePath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.cert.Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	logs := &logBuffer{}
	a, err := New(Config{
		ServerAddrs: []string{replicas["a"].addr, replicas["b"].addr}, JoinToken: "token", TrustBundleFile: bundlePath,
		SocketPath: filepath.Join(dir, "agent.sock"), DataDir: filepath.Join(dir, "data"),
		Logger: slog.New(slog.NewJSONHandler(logs, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run returned %v, want nil", err)
		}
		if t.Failed() {
			t.Logf("agent logs:\n%s", logs)
		}
	})

	next := func() string {
		t.Helper()
		select {
		case name := <-syncs:
			return name
		case <-time.After(waitTimeout):
			t.Fatalf("no Sync stream within %s", waitTimeout)
			return ""
		}
	}
	first := next()
	other := map[string]string{"a": "b", "b": "a"}[first]
	start := time.Now()
	replicas[first].stop()
	if got := next(); got != other {
		t.Fatalf("after stopping replica %s: Sync stream on %s, want %s", first, got, other)
	}
	t.Logf("sync stream back on the other replica %s after stopping the first", time.Since(start))
	// The agent logs the stream after the server has seen it: wait.
	want := `"server":"` + replicas[other].addr + `"`
	for deadline := time.Now().Add(waitTimeout); !strings.Contains(logs.String(), want); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("logs do not name the server in use (%s):\n%s", want, logs)
		}
	}
}

package configsync

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"log/slog"
	"math/big"
	"net"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	configsyncv1 "github.com/trustmesh/trustmesh/api/configsync/v1"
)

// waitTimeout bounds every wait; a healthy run never gets near it.
const waitTimeout = 10 * time.Second

// testPKI is a throwaway CA of example.org that issues SVIDs.
type testPKI struct {
	td   spiffeid.TrustDomain
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

func newTestPKI(t *testing.T) *testPKI {
	t.Helper()
	td := spiffeid.RequireTrustDomainFromString("example.org")
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), URIs: []*url.URL{td.ID().URL()},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &testPKI{td: td, cert: cert, key: key}
}

// source is an x509svid.Source and x509bundle.Source with fixed contents.
type source struct {
	svid   *x509svid.SVID
	bundle *x509bundle.Bundle
}

func (s source) GetX509SVID() (*x509svid.SVID, error) { return s.svid, nil }
func (s source) GetX509BundleForTrustDomain(spiffeid.TrustDomain) (*x509bundle.Bundle, error) {
	return s.bundle, nil
}

// source issues an SVID for path and pairs it with the CA's bundle.
func (p *testPKI) source(t *testing.T, path string) source {
	t.Helper()
	id, err := spiffeid.FromPath(p.td, path)
	if err != nil {
		t.Fatal(err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 64))
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial, URIs: []*url.URL{id.URL()},
		NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(time.Hour),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.cert, &key.PublicKey, p.key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return source{
		svid:   &x509svid.SVID{ID: id, Certificates: []*x509.Certificate{cert}, PrivateKey: key},
		bundle: x509bundle.FromX509Authorities(p.td, []*x509.Certificate{p.cert}),
	}
}

// replica is a stand-in server: it answers every stream's Hello with one
// snapshot whose version is its own number, then reads acks.
type replica struct {
	configsyncv1.UnimplementedConfigSyncServer
	version uint64
	addr    string
	srv     *grpc.Server
	done    chan struct{}
	once    sync.Once
}

func (r *replica) Stream(stream grpc.BidiStreamingServer[configsyncv1.ProxyMessage, configsyncv1.Snapshot]) error {
	if _, err := stream.Recv(); err != nil {
		return err
	}
	if err := stream.Send(&configsyncv1.Snapshot{Version: r.version}); err != nil {
		return err
	}
	for {
		if _, err := stream.Recv(); err != nil {
			return err
		}
	}
}

func startReplica(t *testing.T, pki *testPKI, version uint64) *replica {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	src := pki.source(t, "/trustmesh/server")
	tlsConf := tlsconfig.MTLSServerConfig(src, src, tlsconfig.AuthorizeAny())
	tlsConf.MinVersion = tls.VersionTLS13
	r := &replica{version: version, addr: l.Addr().String(), srv: grpc.NewServer(grpc.Creds(credentials.NewTLS(tlsConf))), done: make(chan struct{})}
	configsyncv1.RegisterConfigSyncServer(r.srv, r)
	go func() {
		defer close(r.done)
		_ = r.srv.Serve(l)
	}()
	t.Cleanup(r.stop)
	return r
}

// stop closes the listener and every connection, as an exiting server
// process does.
func (r *replica) stop() {
	r.once.Do(r.srv.Stop)
	<-r.done
}

// applier records the versions it applies.
type applier struct {
	applied chan uint64
}

func (a *applier) Apply(s *configsyncv1.Snapshot) error {
	a.applied <- s.GetVersion()
	return nil
}
func (a *applier) InboundListeners() []*configsyncv1.InboundListener { return nil }
func (a *applier) Ready() bool                                       { return true }

// syncBuffer is a log sink safe for the client's goroutine and the test's.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// TestClientFailsOver runs the real client against two replicas, stops the
// one it streams from and expects a snapshot from the other within a few
// seconds, with the client's own retry loop.
func TestClientFailsOver(t *testing.T) {
	pki := newTestPKI(t)
	replicas := map[uint64]*replica{1: startReplica(t, pki, 1), 2: startReplica(t, pki, 2)}
	app := &applier{applied: make(chan uint64, 16)}
	logs := &syncBuffer{}
	c, err := NewClient(ClientConfig{
		ServerAddrs: []string{replicas[1].addr + "," + replicas[2].addr},
		Source:      pki.source(t, "/ns/default/sa/web"), ProxyID: "web-1", Applier: app,
		Logger: slog.New(slog.NewJSONHandler(logs, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run returned %v, want nil", err)
		}
		if t.Failed() {
			t.Logf("client logs:\n%s", logs)
		}
	})

	next := func() uint64 {
		t.Helper()
		select {
		case v := <-app.applied:
			return v
		case <-time.After(waitTimeout):
			t.Fatalf("no snapshot applied within %s", waitTimeout)
			return 0
		}
	}
	first := next()
	other := 3 - first // the replica that is left
	start := time.Now()
	replicas[first].stop()
	if got := next(); got != other {
		t.Fatalf("after stopping replica %d: applied a snapshot from replica %d, want %d", first, got, other)
	}
	t.Logf("config stream back on the other replica %s after stopping the first", time.Since(start))
	// The client logs the stream after the server has seen it: wait.
	want := `"server":"` + replicas[other].addr + `"`
	for deadline := time.Now().Add(waitTimeout); !strings.Contains(logs.String(), want); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("logs do not name the server in use (%s):\n%s", want, logs)
		}
	}
}

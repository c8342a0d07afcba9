package proxy

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	configsyncv1 "github.com/trustmesh/trustmesh/api/configsync/v1"
	"github.com/trustmesh/trustmesh/internal/ca"
)

var (
	td       = spiffeid.RequireTrustDomainFromString("example.org")
	clientID = "spiffe://example.org/ns/default/sa/client"
	serverID = "spiffe://example.org/ns/default/sa/server"
)

// testCA is a throwaway CA minting real X.509-SVIDs.
type testCA struct {
	td   spiffeid.TrustDomain
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

func newTestCA(t testing.TB, trustDomain string) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	d := spiffeid.RequireTrustDomainFromString(trustDomain)
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{Organization: []string{"test"}, CommonName: "test CA " + trustDomain},
		URIs:                  []*url.URL{d.ID().URL()},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &testCA{td: d, cert: cert, key: key}
}

func (c *testCA) bundle() *x509bundle.Bundle {
	return x509bundle.FromX509Authorities(c.td, []*x509.Certificate{c.cert})
}

// mint issues an X.509-SVID for id, backdated like the real CA does.
func (c *testCA) mint(t testing.TB, id string) *x509svid.SVID {
	t.Helper()
	sid := spiffeid.RequireFromString(id)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 64))
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		URIs:         []*url.URL{sid.URL()},
		NotBefore:    time.Now().Add(-ca.Backdate),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, c.cert, &key.PublicKey, c.key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &x509svid.SVID{ID: sid, Certificates: []*x509.Certificate{cert}, PrivateKey: key}
}

// fakeSource is a static Source whose SVID can be swapped.
type fakeSource struct {
	mu      sync.Mutex
	svid    *x509svid.SVID
	bundles map[spiffeid.TrustDomain]*x509bundle.Bundle
}

var _ Source = (*fakeSource)(nil)

func newFakeSource(svid *x509svid.SVID, bundles ...*x509bundle.Bundle) *fakeSource {
	s := &fakeSource{svid: svid, bundles: make(map[spiffeid.TrustDomain]*x509bundle.Bundle)}
	for _, b := range bundles {
		s.bundles[b.TrustDomain()] = b
	}
	return s
}

func (s *fakeSource) GetX509SVID() (*x509svid.SVID, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.svid == nil {
		return nil, errors.New("no SVID yet")
	}
	return s.svid, nil
}

func (s *fakeSource) GetX509BundleForTrustDomain(d spiffeid.TrustDomain) (*x509bundle.Bundle, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	b, ok := s.bundles[d]
	if !ok {
		return nil, fmt.Errorf("no bundle for trust domain %q", d)
	}
	return b, nil
}

// startProxy builds and runs a proxy for the test's lifetime.
func startProxy(t testing.TB, cfg Config) *Proxy {
	t.Helper()
	if cfg.TrustDomain.IsZero() {
		cfg.TrustDomain = td
	}
	if cfg.Registry == nil {
		cfg.Registry = prometheus.NewRegistry()
	}
	p, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(15 * time.Second):
			t.Errorf("Run did not return after cancel")
		}
	})
	return p
}

func mustApply(t testing.TB, p *Proxy, s *configsyncv1.Snapshot) {
	t.Helper()
	if err := p.Apply(s); err != nil {
		t.Fatalf("Apply: %v", err)
	}
}

func inboundAddr(p *Proxy) string { return p.inbound[0].ln.Addr().String() }

func outboundAddr(p *Proxy, i int) string { return p.outbound[i].ln.Addr().String() }

// echoApp is an HTTP/1.1 and h2c app that reports what it received.
func echoApp(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header()["X-Seen-Identity"] = r.Header.Values(headerPeerIdentity)
		w.Header().Set("X-Seen-Xfcc", strings.Join(r.Header.Values(headerXFCC), ","))
		w.Header().Set("X-Seen-Proto", r.Proto)
		w.Header().Set("X-Seen-Host", r.Host)
		body, _ := io.ReadAll(r.Body)
		_, _ = fmt.Fprintf(w, "%s %s %d", r.Method, r.URL.Path, len(body))
	})}
	srv.Protocols = new(http.Protocols)
	srv.Protocols.SetHTTP1(true)
	srv.Protocols.SetUnencryptedHTTP2(true)
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return ln.Addr().String()
}

// tcpEchoApp echoes bytes and half-closes after its input ends.
func tcpEchoApp(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { _ = ln.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				_, _ = io.Copy(c, c)
				_ = c.(*net.TCPConn).CloseWrite()
				_, _ = io.Copy(io.Discard, c)
			})
		}
	})
	return ln.Addr().String()
}

// meshClient is an HTTP client that talks mTLS with svid directly to an
// inbound listener, as a peer proxy would.
func meshClient(svid *x509svid.SVID, bundle *x509bundle.Bundle, proto string) *http.Client {
	cfg := tlsconfig.MTLSClientConfig(svid, bundle, tlsconfig.AuthorizeAny())
	cfg.MinVersion = tls.VersionTLS13
	cfg.NextProtos = []string{proto}
	var hp http.Protocols
	if proto == "h2" {
		hp.SetHTTP2(true)
	} else {
		hp.SetHTTP1(true)
	}
	return &http.Client{Transport: &http.Transport{TLSClientConfig: cfg, Protocols: &hp, ForceAttemptHTTP2: proto == "h2"}, Timeout: 10 * time.Second}
}

func dialMeshRaw(t testing.TB, addr string, svid *x509svid.SVID, bundle *x509bundle.Bundle, proto string) (*tls.Conn, error) {
	t.Helper()
	cfg := tlsconfig.MTLSClientConfig(svid, bundle, tlsconfig.AuthorizeAny())
	cfg.MinVersion = tls.VersionTLS13
	if proto != "" {
		cfg.NextProtos = []string{proto}
	}
	d := &net.Dialer{Timeout: 5 * time.Second}
	c, err := tls.DialWithDialer(d, "tcp", addr, cfg)
	if err != nil {
		return nil, err
	}
	// TLS 1.3 client certs are checked after the client's handshake
	// completes: a refusal shows up on the first read.
	return c, nil
}

// rawRequest writes one HTTP/1.1 request on c and reads the response.
func rawRequest(c net.Conn, br *bufio.Reader, path string) (int, error) {
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: app\r\n\r\n", path); err != nil {
		return 0, err
	}
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return 0, err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	return resp.StatusCode, nil
}

// Snapshots.

func inboundSnapshot(version uint64, defaultMode string, portModes map[uint32]string, revs ...*configsyncv1.Revocation) *configsyncv1.Snapshot {
	return &configsyncv1.Snapshot{
		Version:     version,
		SpiffeId:    serverID,
		Inbound:     &configsyncv1.InboundSettings{DefaultMode: defaultMode, PortModes: portModes},
		Revocations: revs,
	}
}

func serviceSnapshot(version uint64, svcs ...*configsyncv1.Service) *configsyncv1.Snapshot {
	return &configsyncv1.Snapshot{
		Version:  version,
		SpiffeId: clientID,
		Services: svcs,
		Inbound:  &configsyncv1.InboundSettings{DefaultMode: "STRICT"},
	}
}

func svcFor(name, protocol string, port uint32, endpoint string, ids ...string) *configsyncv1.Service {
	return &configsyncv1.Service{
		Name:      name,
		Namespace: "default",
		Ports:     []*configsyncv1.ServicePort{{Name: "main", Port: port, Protocol: protocol, TargetPort: port}},
		Endpoints: []*configsyncv1.Endpoint{{Address: endpoint, Port: port}},
		SpiffeIds: ids,
		Hosts:     []string{name, name + ".default", name + ".default.svc"},
	}
}

func appPortOf(t testing.TB, addr string) uint32 {
	t.Helper()
	p, err := appPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func counterValue(t testing.TB, c prometheus.Counter) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}

// mesh is two proxies and an app: client → A (outbound) → B (inbound) → app.
type mesh struct {
	ca       *testCA
	a, b     *Proxy
	aSrc     *fakeSource
	bSrc     *fakeSource
	app      string
	outbound string
}

// newMesh runs B in front of app and A with one outbound listener to the
// service "echo" (protocol, port 80) served by B.
func newMesh(t testing.TB, app, protocol string, aExtra func(*Config)) *mesh {
	t.Helper()
	c := newTestCA(t, "example.org")
	m := &mesh{ca: c, app: app}
	m.bSrc = newFakeSource(c.mint(t, serverID), c.bundle())
	m.b = startProxy(t, Config{Source: m.bSrc, Inbound: []InboundSpec{{Listen: "127.0.0.1:0", App: app}}})
	mustApply(t, m.b, inboundSnapshot(1, "STRICT", nil))

	m.aSrc = newFakeSource(c.mint(t, clientID), c.bundle())
	cfg := Config{Source: m.aSrc, Outbound: []OutboundSpec{{Listen: "127.0.0.1:0", Service: "echo", Port: 80}}}
	if aExtra != nil {
		aExtra(&cfg)
	}
	m.a = startProxy(t, cfg)
	mustApply(t, m.a, serviceSnapshot(1, svcFor("echo", protocol, 80, inboundAddr(m.b), serverID)))
	m.outbound = outboundAddr(m.a, 0)
	return m
}

// serveOn serves srv on a fresh loopback port until the test ends.
func serveOn(t testing.TB, srv *http.Server) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return ln.Addr().String()
}

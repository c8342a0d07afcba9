package e2e

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// TestForeignTrustDomainRefused: an X.509-SVID of another trust domain,
// valid in its own, is refused by an inbound listener at the handshake and
// counted; an SVID of the proxy's own trust domain is accepted on the same
// listener, so the refusal is about the trust domain.
func TestForeignTrustDomainRefused(t *testing.T) {
	t.Parallel()
	sa := startServer(t, "a.example")
	sb := startServer(t, "b.example")
	appAddr, appPort := echoApp(t)
	sa.apply(t, meshYAML(sa.td, appPort))
	sb.apply(t, workloadYAML(sb.td, "frontend", "node-1", uidSelector()))
	aa := startAgent(t, sa, filepath.Join(t.TempDir(), "agent-a"), sa.token(t, "node-1"))
	ab := startAgent(t, sb, filepath.Join(t.TempDir(), "agent-b"), sb.token(t, "node-1"))

	inbound := freeAddr(t)
	orders := startProxy(t, sa, aa, "spiffe://a.example/ns/default/sa/orders", "--inbound", inbound+"="+appAddr)

	own, foreign := filepath.Join(t.TempDir(), "svid-a"), filepath.Join(t.TempDir(), "svid-b")
	mustCLI(t, "cert", "fetch", "--socket", aa.socket, "--write", own)
	mustCLI(t, "cert", "fetch", "--socket", ab.socket, "--write", foreign)
	if id := svidID(t, foreign); !strings.HasPrefix(id, "spiffe://b.example/") {
		t.Fatalf("got %s from agent B, want an SVID of b.example", id)
	}

	// tryMTLS skips verifying the proxy's certificate (the server side
	// only): the test is about the proxy verifying the client.
	mtlsDial(t, inbound, own, sa)
	before := orders.metric(t, "trustmesh_peers_refused_total", `direction="inbound"`, `reason="foreign_trust_domain"`)
	if _, err := tryMTLS(inbound, foreign, sa); err == nil {
		t.Fatal("an SVID of b.example reached the app behind a.example's proxy")
	} else {
		if strings.HasPrefix(err.Error(), "HTTP ") {
			t.Errorf("got %v, want the connection refused at the TLS handshake", err)
		}
		t.Logf("foreign SVID refused: %v", err)
	}
	waitFor(t, "the refusal to be counted", 10*time.Second, func() bool {
		return orders.metric(t, "trustmesh_peers_refused_total", `direction="inbound"`, `reason="foreign_trust_domain"`) > before
	})
	// The listener still serves its own trust domain afterwards.
	mtlsDial(t, inbound, own, sa)
	if !strings.Contains(orders.out.String(), "foreign_trust_domain") {
		t.Errorf("the refusal is not logged with its reason:\n%s", orders.out)
	}
}

// svidID returns the SPIFFE ID of the svid.pem written to dir.
func svidID(t *testing.T, dir string) string {
	t.Helper()
	leaf := readLeaf(t, filepath.Join(dir, "svid.pem"))
	if len(leaf.URIs) != 1 {
		t.Fatalf("got %d URI SANs, want 1", len(leaf.URIs))
	}
	return leaf.URIs[0].String()
}

// TestGRPCThroughProxies: a grpc-go client → outbound proxy (h2c) → mTLS h2
// → inbound proxy → grpc-go server (h2c): a unary call, a server stream that
// carries an update made while it is open, and a gRPC error status, all
// end to end; the server sees the caller's SPIFFE ID.
func TestGRPCThroughProxies(t *testing.T) {
	t.Parallel()
	s := startServer(t, "grpc.example")

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var caller atomic.Value // string: the identity header of the last call
	record := func(ctx context.Context) {
		md, _ := metadata.FromIncomingContext(ctx)
		caller.Store(strings.Join(md.Get("x-trustmesh-peer-identity"), ","))
	}
	gs := grpc.NewServer(
		grpc.UnaryInterceptor(func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			record(ctx)
			return h(ctx, req)
		}),
		grpc.StreamInterceptor(func(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, h grpc.StreamHandler) error {
			record(ss.Context())
			return h(srv, ss)
		}))
	hs := health.NewServer()
	hs.SetServingStatus("orders", healthpb.HealthCheckResponse_SERVING)
	healthpb.RegisterHealthServer(gs, hs)
	go func() { _ = gs.Serve(ln) }()
	t.Cleanup(gs.Stop) // Stop, not GracefulStop: a Watch stream may be open
	appAddr := ln.Addr().String()
	appPort := ln.Addr().(*net.TCPAddr).Port

	s.apply(t, meshYAMLFor(s.td, "GRPC", 50051, appPort))
	a := startAgent(t, s, filepath.Join(t.TempDir(), "agent"), s.token(t, "node-1"))
	inbound, outbound := freeAddr(t), freeAddr(t)
	startProxy(t, s, a, "spiffe://grpc.example/ns/default/sa/orders", "--inbound", inbound+"="+appAddr)
	front := startProxy(t, s, a, "spiffe://grpc.example/ns/default/sa/frontend", "--outbound", outbound+"=orders:50051")

	// The app-to-local-proxy hop is plaintext h2c by design; the proxies
	// carry it over mTLS.
	conn, err := grpc.NewClient(outbound, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	client := healthpb.NewHealthClient(conn)

	t.Run("unary Check", func(t *testing.T) {
		var resp *healthpb.HealthCheckResponse
		var err error
		// The orders proxy becomes an endpoint once it has ACKed.
		waitFor(t, "a successful Check", 20*time.Second, func() bool {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			resp, err = client.Check(ctx, &healthpb.HealthCheckRequest{Service: "orders"})
			return err == nil
		})
		if resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			t.Errorf("got %v, want SERVING", resp.GetStatus())
		}
		if got, want := caller.Load(), "spiffe://grpc.example/ns/default/sa/frontend"; got != want {
			t.Errorf("the gRPC server saw caller %q, want %q", got, want)
		}
	})

	t.Run("NOT_FOUND status passes through", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, err := client.Check(ctx, &healthpb.HealthCheckRequest{Service: "no-such-service"})
		if got := status.Code(err); got != codes.NotFound {
			t.Fatalf("got %v (%v), want NotFound", got, err)
		}
		if msg := status.Convert(err).Message(); !strings.Contains(msg, "unknown service") {
			t.Errorf("got message %q, want the server's own", msg)
		}
	})

	t.Run("server-streaming Watch sees an update", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		stream, err := client.Watch(ctx, &healthpb.HealthCheckRequest{Service: "orders"})
		if err != nil {
			t.Fatal(err)
		}
		first, err := stream.Recv()
		if err != nil {
			t.Fatalf("first Watch message: %v", err)
		}
		if first.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			t.Fatalf("got %v, want SERVING", first.GetStatus())
		}
		// The update is made while the stream is open: it must be flushed
		// through both proxies as it happens, not at the end of the stream.
		hs.SetServingStatus("orders", healthpb.HealthCheckResponse_NOT_SERVING)
		next, err := stream.Recv()
		if err != nil {
			t.Fatalf("Watch update: %v", err)
		}
		if next.GetStatus() != healthpb.HealthCheckResponse_NOT_SERVING {
			t.Errorf("got %v, want NOT_SERVING", next.GetStatus())
		}
		hs.SetServingStatus("orders", healthpb.HealthCheckResponse_SERVING)
		if again, err := stream.Recv(); err != nil || again.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			t.Errorf("second update: got %v %v, want SERVING", again.GetStatus(), err)
		}
	})

	// Every call is a forwarded request, the Watch included, whatever code
	// it ends with (the client cancelled it): a stream is counted when it
	// ends, which the client's cancel starts.
	counted := func() bool { return front.metric(t, "trustmesh_requests_total", `direction="outbound"`) >= 3 }
	if !poll(10*time.Second, counted) {
		n := front.metric(t, "trustmesh_requests_total", `direction="outbound"`)
		t.Errorf("got %v outbound requests counted in trustmesh_requests_total, want 3 (Check, Check NOT_FOUND, Watch)", n)
	}
}

// poll is waitFor that reports a timeout instead of failing the test, for
// checks that should not stop the rest of it.
func poll(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(50 * time.Millisecond)
	}
	return true
}

// loadSeconds is how long TestRotationUnderLoad drives traffic.
func loadSeconds(t *testing.T) time.Duration {
	t.Helper()
	v := os.Getenv("TRUSTMESH_E2E_LOAD_SECONDS")
	if v == "" {
		return 180 * time.Second
	}
	n, err := strconv.Atoi(v)
	if err != nil || n <= 0 {
		t.Fatalf("TRUSTMESH_E2E_LOAD_SECONDS=%q: want a positive number of seconds", v)
	}
	return time.Duration(n) * time.Second
}

// TestRotationUnderLoad: with 1-minute SVIDs both proxies rotate their
// identity several times while traffic flows through them, on reused
// keep-alive connections, on a new connection per request, and on new mTLS
// connections straight to the inbound listener, and not one request fails.
//
// It drives traffic for TRUSTMESH_E2E_LOAD_SECONDS (default 180): the
// longest test of the suite, it runs in parallel with the rest (t.Parallel),
// so it adds little to the suite's wall time.
func TestRotationUnderLoad(t *testing.T) {
	t.Parallel()
	duration := loadSeconds(t)
	s := startServer(t, "load.example")
	appAddr, appPort := echoApp(t)
	s.apply(t, `apiVersion: trustmesh.dev/v1
kind: MeshConfig
metadata: {name: default}
spec: {x509SVIDTTL: 1m}
---
`+meshYAML(s.td, appPort))
	a := startAgent(t, s, filepath.Join(t.TempDir(), "agent"), s.token(t, "node-1"))
	inbound, outbound := freeAddr(t), freeAddr(t)
	orders := startProxy(t, s, a, "spiffe://load.example/ns/default/sa/orders", "--inbound", inbound+"="+appAddr)
	front := startProxy(t, s, a, "spiffe://load.example/ns/default/sa/frontend", "--outbound", outbound+"=orders:80")
	url := "http://" + outbound + "/orders/1"
	waitForRequest(t, url)
	for _, p := range []*proxyProc{orders, front} {
		d := configDump(t, p)
		if ttl := d.SVID.NotAfter.Sub(d.SVID.NotBefore); ttl > 2*time.Minute {
			t.Fatalf("%s: got SVID lifetime %s, want 1m (+backdate)", d.SVID.ID, ttl)
		}
	}

	// Watch both proxies' serials while the load runs.
	watchCtx, stopWatch := context.WithCancel(context.Background())
	serials := map[*proxyProc]map[string]bool{orders: {}, front: {}}
	var watched sync.WaitGroup
	t.Cleanup(func() { stopWatch(); watched.Wait() })
	watched.Go(func() {
		tick := time.NewTicker(500 * time.Millisecond)
		defer tick.Stop()
		for {
			for p, seen := range serials {
				if d, err := fetchConfigDump(p); err == nil && d.SVID != nil {
					seen[d.SVID.Serial] = true
				}
			}
			select {
			case <-watchCtx.Done():
				return
			case <-tick.C:
			}
		}
	})

	// A third client speaks mTLS to the inbound listener directly, a new
	// connection per request (resuming TLS sessions when it can), with an
	// identity of its own from the agent that rotates too, and verifies the
	// orders proxy's SVID: every handshake meets the current certificates.
	src := newSource(t, a)
	tlsConf := tlsconfig.MTLSClientConfig(src, src, tlsconfig.AuthorizeID(spiffeid.RequireFromString("spiffe://load.example/ns/default/sa/orders")))
	tlsConf.ClientSessionCache = tls.NewLRUClientSessionCache(16)
	direct := &loadClient{name: "direct-mtls", url: "https://" + inbound + "/orders/1",
		client: &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: tlsConf, DisableKeepAlives: true}}}
	handshakes := func(resumed string) float64 {
		return orders.metric(t, "trustmesh_tls_handshakes_total", `direction="inbound"`, `resumed="`+resumed+`"`)
	}
	full, resumed := handshakes("false"), handshakes("true")

	start := time.Now()
	l := startLoad(t, url, duration, direct)
	l.wait()
	stopWatch()
	watched.Wait()
	t.Logf("%s of load: %s", time.Since(start).Round(time.Second), l)
	t.Logf("orders proxy inbound handshakes during the load: %v full, %v resumed", handshakes("false")-full, handshakes("true")-resumed)
	l.check(t)
	for p, seen := range serials {
		if rotations := len(seen) - 1; rotations < 2 {
			t.Errorf("%s: got %d SVID rotations during the load, want at least 2 (serials %v)", p.name, rotations, keys(seen))
		} else {
			t.Logf("%s: %d SVID rotations", p.name, rotations)
		}
	}
}

func keys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}

// TestControlPlaneDownMidTraffic: with the server stopped the proxies keep
// their last good snapshot and traffic keeps flowing; when it is back they
// reconnect without a failed request, and a change applied after the
// restart takes effect.
func TestControlPlaneDownMidTraffic(t *testing.T) {
	t.Parallel()
	s := startServer(t, "cpdown.example")
	appAddr, appPort := echoApp(t)
	s.apply(t, meshYAML(s.td, appPort))
	a := startAgent(t, s, filepath.Join(t.TempDir(), "agent"), s.token(t, "node-1"))
	inbound, outbound := freeAddr(t), freeAddr(t)
	// The orders proxy reaches the server through a relay, so that the
	// test can make it reconnect after the frontend proxy.
	r := startRelay(t, s.nodeAddr)
	orders := startProxy(t, s, a, "spiffe://cpdown.example/ns/default/sa/orders", "--inbound", inbound+"="+appAddr, "--server", r.addr())
	front := startProxy(t, s, a, "spiffe://cpdown.example/ns/default/sa/frontend", "--outbound", outbound+"=orders:80")
	url := "http://" + outbound + "/orders/1"
	const ordersID, frontID = "spiffe://cpdown.example/ns/default/sa/orders", "spiffe://cpdown.example/ns/default/sa/frontend"
	waitForRequest(t, url)
	waitProxiesReady(t, s, ordersID, frontID)
	if plaintextAccepted(inbound) {
		t.Fatal("plaintext accepted on a STRICT port before the change")
	}
	versions := map[*proxyProc]uint64{orders: configDump(t, orders).Snapshot.Version, front: configDump(t, front).Snapshot.Version}

	// No subtests below: the server is relaunched on t, so that it lives as
	// long as the test.
	l := startLoad(t, url, 10*time.Second)
	if err := s.stop(); err != nil {
		t.Fatalf("server stop: %v", err)
	}
	l.wait()
	t.Logf("server down: %s", l)
	l.check(t)
	for p, v := range versions {
		if d := configDump(t, p); !d.Ready || d.Snapshot == nil || d.Snapshot.Version != v {
			t.Errorf("%s: got ready=%v snapshot %+v during the outage, want still ready with version %d", p.name, d.Ready, d.Snapshot, v)
		}
	}
	if !strings.Contains(front.out.String(), "keeping the last good snapshot") {
		t.Errorf("the frontend proxy did not say it keeps its snapshot:\n%s", front.out)
	}

	// Traffic keeps flowing while the server comes back and the proxies
	// reconnect. They reconnect on their own backoff schedules (at most 2s
	// apart), so in any order; the test makes it the frontend first (the
	// orders proxy's attempts are refused until then): a restarted server
	// knows no proxy yet, and must not push the frontend a snapshot without
	// the orders endpoint, which still serves. The server holds first
	// snapshots for its settle window (configsync.DefaultSettle) after a
	// restart; a proxy that stays away longer than that loses its endpoints
	// until it is back (persisting endpoints with a lease is the fix, with
	// the highly available control plane).
	r.hold(true)
	l = startLoad(t, url, 90*time.Second)
	s.launch(t)
	// Connected, not ACKed: the server holds every first push until the
	// proxies that were serving before the restart are all back.
	waitProxiesConnected(t, s, frontID)
	r.hold(false)
	released := time.Now()
	waitProxiesReady(t, s, ordersID, frontID)
	t.Logf("the orders proxy reconnected %s after the relay let it through", time.Since(released).Round(10*time.Millisecond))
	waitFor(t, "the frontend's snapshot to list the orders endpoint", 30*time.Second, func() bool {
		d, err := fetchConfigDump(front)
		return err == nil && d.Snapshot != nil && strings.Contains(string(d.Snapshot.Contents), inbound)
	})
	l.stop()
	t.Logf("server restart and reconnection: %s", l)
	l.check(t)

	// A change applied after the restart reaches the proxies.
	s.apply(t, `apiVersion: trustmesh.dev/v1
kind: PeerAuthentication
metadata: {name: orders, namespace: default}
spec:
  selector: {matchLabels: {app: orders}}
  mtls: {mode: PERMISSIVE}
`)
	waitFor(t, "plaintext accepted on the PERMISSIVE port", 20*time.Second, func() bool {
		return plaintextAccepted(inbound)
	})
	if n := orders.metric(t, "trustmesh_plaintext_connections_total", `action="accepted"`); n < 1 {
		t.Errorf("accepted plaintext not counted (got %v)", n)
	}
}

// relay forwards TCP connections to target; while held it refuses new
// ones (accepts and closes them), as a server that is not reachable yet.
type relay struct {
	ln     net.Listener
	target string
	held   atomic.Bool
	wg     sync.WaitGroup

	mu     sync.Mutex
	closed bool
	conns  map[net.Conn]struct{}
}

// startRelay listens on a loopback port until the test ends.
func startRelay(t *testing.T, target string) *relay {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &relay{ln: ln, target: target, conns: map[net.Conn]struct{}{}}
	r.wg.Go(r.accept)
	t.Cleanup(r.close)
	return r
}

func (r *relay) addr() string { return r.ln.Addr().String() }

// hold refuses (true) or forwards (false) new connections; open ones are
// not affected.
func (r *relay) hold(on bool) { r.held.Store(on) }

func (r *relay) accept() {
	for {
		c, err := r.ln.Accept()
		if err != nil {
			return // closed
		}
		if r.held.Load() {
			c.Close()
			continue
		}
		r.wg.Go(func() { r.forward(c) })
	}
}

func (r *relay) forward(c net.Conn) {
	up, err := net.DialTimeout("tcp", r.target, 5*time.Second)
	if err != nil {
		c.Close()
		return
	}
	if !r.track(c, up) {
		return
	}
	done := make(chan struct{}, 2)
	r.wg.Go(func() { _, _ = io.Copy(up, c); done <- struct{}{} })
	r.wg.Go(func() { _, _ = io.Copy(c, up); done <- struct{}{} })
	<-done // either side ended: end both
	r.untrack(c, up)
}

// track registers open connections, or closes them if the relay is closed.
func (r *relay) track(cs ...net.Conn) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		for _, c := range cs {
			c.Close()
		}
		return false
	}
	for _, c := range cs {
		r.conns[c] = struct{}{}
	}
	return true
}

func (r *relay) untrack(cs ...net.Conn) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, c := range cs {
		delete(r.conns, c)
		c.Close()
	}
}

// close stops accepting, closes every open connection and waits for the
// relay's goroutines.
func (r *relay) close() {
	r.ln.Close()
	r.mu.Lock()
	r.closed = true
	for c := range r.conns {
		c.Close()
	}
	r.mu.Unlock()
	r.wg.Wait()
}

// plaintextAccepted reports whether a plaintext HTTP request to an inbound
// listener reaches the app.
func plaintextAccepted(inbound string) bool {
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Get("http://" + inbound + "/")
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode == http.StatusOK && strings.Contains(string(body), "hello from orders")
}

// waitForRequest waits until a request through the outbound listener
// succeeds (the orders proxy is an endpoint once it has ACKed).
func waitForRequest(t *testing.T, url string) {
	t.Helper()
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	waitFor(t, "a request through both proxies", 20*time.Second, func() bool {
		return request(c, url) == nil
	})
}

// request makes one GET through the mesh and checks the app answered.
func request(c *http.Client, url string) error {
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	return doRequest(c, req)
}

// proxiesJSON is what `get proxies -o json` prints.
type proxiesJSON struct {
	Items []struct {
		SPIFFEID     string `json:"spiffeID"`
		Ready        bool   `json:"ready"`
		AckedVersion uint64 `json:"ackedVersion"`
	} `json:"items"`
}

// waitProxiesReady waits until `trustmesh get proxies` lists a ready proxy
// for every id.
func waitProxiesReady(t *testing.T, s *server, ids ...string) {
	t.Helper()
	waitProxies(t, s, true, ids...)
}

// waitProxiesConnected waits until get proxies lists every id as serving
// (ready), whether or not it has ACKed a snapshot from this server yet.
func waitProxiesConnected(t *testing.T, s *server, ids ...string) {
	t.Helper()
	waitProxies(t, s, false, ids...)
}

func waitProxies(t *testing.T, s *server, acked bool, ids ...string) {
	t.Helper()
	start := time.Now()
	waitFor(t, "get proxies to list "+strings.Join(ids, ", ")+" ready", 60*time.Second, func() bool {
		out, _, err := cli(t, "", "get", "proxies", "-o", "json", "--data-dir", s.dir)
		if err != nil {
			return false // the admin API is not up yet
		}
		var got proxiesJSON
		if err := json.Unmarshal([]byte(out), &got); err != nil {
			t.Fatalf("get proxies -o json: %v\n%s", err, out)
		}
		ready := map[string]bool{}
		for _, p := range got.Items {
			ready[p.SPIFFEID] = ready[p.SPIFFEID] || (p.Ready && (!acked || p.AckedVersion > 0))
		}
		for _, id := range ids {
			if !ready[id] {
				return false
			}
		}
		return true
	})
	t.Logf("get proxies: all ready after %s", time.Since(start).Round(10*time.Millisecond))
}

// dump is the part of a proxy's /config_dump the tests read.
type dump struct {
	Ready bool `json:"ready"`
	SVID  *struct {
		ID        string    `json:"id"`
		Serial    string    `json:"serial"`
		NotBefore time.Time `json:"not_before"`
		NotAfter  time.Time `json:"not_after"`
	} `json:"svid"`
	Snapshot *struct {
		Version  uint64          `json:"version"`
		Contents json.RawMessage `json:"contents"`
	} `json:"snapshot"`
}

func fetchConfigDump(p *proxyProc) (*dump, error) {
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get("http://" + p.admin + "/config_dump")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("config_dump: HTTP %d", resp.StatusCode)
	}
	var d dump
	if err := json.NewDecoder(resp.Body).Decode(&d); err != nil {
		return nil, fmt.Errorf("config_dump: %w", err)
	}
	return &d, nil
}

func configDump(t *testing.T, p *proxyProc) *dump {
	t.Helper()
	d, err := fetchConfigDump(p)
	if err != nil {
		t.Fatalf("%s: %v", p.name, err)
	}
	if d.SVID == nil {
		t.Fatalf("%s: config_dump has no SVID", p.name)
	}
	return d
}

// load drives sequential requests from several clients at once, by
// default two through one URL: one reusing a keep-alive connection, one
// opening a new connection per request.
type load struct {
	cancel  context.CancelFunc
	done    sync.WaitGroup
	clients []*loadClient
}

type loadClient struct {
	name, url string
	client    *http.Client
	ok, fail  atomic.Int64
	mu        sync.Mutex
	errs      []string // the first few failures, with their time
}

// startLoad runs the two default clients on url, and extra, until stop,
// or for at most d; the test's end stops it too.
func startLoad(t *testing.T, url string, d time.Duration, extra ...*loadClient) *load {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	l := &load{cancel: cancel, clients: append([]*loadClient{
		{name: "keep-alive", url: url, client: &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 1}}},
		{name: "new-connection", url: url, client: &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}},
	}, extra...)}
	for _, c := range l.clients {
		l.done.Go(func() { c.run(ctx) })
	}
	t.Cleanup(l.stop)
	return l
}

// run is a bounded loop: it ends with ctx.
func (c *loadClient) run(ctx context.Context) {
	defer c.client.CloseIdleConnections()
	for ctx.Err() == nil {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.url, nil)
		if err != nil {
			c.failed(err)
			return
		}
		err = doRequest(c.client, req)
		switch {
		case ctx.Err() != nil:
			// Cut short by the end of the load: neither success nor failure.
		case err != nil:
			c.failed(err)
		default:
			c.ok.Add(1)
		}
	}
}

func doRequest(c *http.Client, req *http.Request) error {
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("read body: %w", err)
	}
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "hello from orders") {
		return fmt.Errorf("HTTP %d: %.200s", resp.StatusCode, strings.TrimSpace(string(body)))
	}
	return nil
}

func (c *loadClient) failed(err error) {
	c.fail.Add(1)
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.errs) < 10 {
		c.errs = append(c.errs, time.Now().Format("15:04:05.000")+" "+err.Error())
	}
}

// wait waits for the load's duration to end; stop ends it now.
func (l *load) wait() { l.done.Wait(); l.cancel() }
func (l *load) stop() { l.cancel(); l.done.Wait() }

func (l *load) String() string {
	var b strings.Builder
	for i, c := range l.clients {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%s: %d requests ok, %d failed", c.name, c.ok.Load(), c.fail.Load())
	}
	return b.String()
}

// check requires that every request succeeded, and that there were some.
func (l *load) check(t *testing.T) {
	t.Helper()
	for _, c := range l.clients {
		if n := c.fail.Load(); n > 0 {
			c.mu.Lock()
			t.Errorf("%s: %d requests failed, want 0; first failures:\n%s", c.name, n, strings.Join(c.errs, "\n"))
			c.mu.Unlock()
		}
		if c.ok.Load() == 0 {
			t.Errorf("%s: no request succeeded", c.name)
		}
	}
}

package proxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	configsyncv1 "github.com/trustmesh/trustmesh/api/configsync/v1"
)

func TestOutboundHTTP1ThroughProxies(t *testing.T) {
	m := newMesh(t, echoApp(t), "HTTP", nil)
	client := &http.Client{Timeout: 10 * time.Second}
	for i := range 3 { // several requests: pooled connection reuse
		resp, err := client.Post("http://"+m.outbound+"/orders", "text/plain", strings.NewReader("hello"))
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || string(body) != "POST /orders 5" {
			t.Fatalf("request %d: got %d %q, want 200 %q", i, resp.StatusCode, body, "POST /orders 5")
		}
		if got := resp.Header.Get("X-Seen-Identity"); got != clientID {
			t.Errorf("app saw identity %q, want %q", got, clientID)
		}
		if got := resp.Header.Get("X-Seen-Proto"); got != "HTTP/1.1" {
			t.Errorf("app saw %s, want HTTP/1.1 for an HTTP port", got)
		}
	}
	// One full handshake each way, then pooled reuse.
	if got := counterValue(t, m.a.metrics.handshakes.WithLabelValues(dirOutbound, "X25519MLKEM768", "false")); got != 1 {
		t.Errorf("outbound handshakes = %v, want 1 (pooled)", got)
	}
	// A static endpoint has no identity of its own: destination unknown.
	if got := counterValue(t, m.a.metrics.requests.WithLabelValues(dirOutbound, "echo.default", "200", mtlsOn, clientID, "", "")); got != 3 {
		t.Errorf("outbound requests_total = %v, want 3", got)
	}
	if got := counterValue(t, m.b.metrics.requests.WithLabelValues(dirInbound, m.app, "200", mtlsOn, clientID, serverID, "allow")); got != 3 {
		t.Errorf("inbound requests_total{source=%s,destination=%s,decision=allow} = %v, want 3", clientID, serverID, got)
	}
}

func TestNegotiatedGroupIsHybridPQ(t *testing.T) {
	m := newMesh(t, echoApp(t), "HTTP", nil)
	resp, err := http.Get("http://" + m.outbound + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	for _, p := range []*Proxy{m.a, m.b} {
		dir := dirOutbound
		if p == m.b {
			dir = dirInbound
		}
		if got := counterValue(t, p.metrics.handshakes.WithLabelValues(dir, "X25519MLKEM768", "false")); got < 1 {
			t.Errorf("%s handshakes with X25519MLKEM768 = %v, want >= 1", dir, got)
		}
	}
	// And directly, as a peer sees it.
	conn, err := dialMeshRaw(t, inboundAddr(m.b), m.ca.mint(t, clientID), m.ca.bundle(), "http/1.1")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if got := conn.ConnectionState().CurveID; got != tls.X25519MLKEM768 {
		t.Errorf("negotiated group %v, want X25519MLKEM768", got)
	}
	if got := conn.ConnectionState().Version; got != tls.VersionTLS13 {
		t.Errorf("TLS version %x, want 1.3", got)
	}
}

func TestInboundRefusesTLS12(t *testing.T) {
	m := newMesh(t, echoApp(t), "HTTP", nil)
	cfg := &tls.Config{InsecureSkipVerify: true, MaxVersion: tls.VersionTLS12}
	conn, err := tls.Dial("tcp", inboundAddr(m.b), cfg)
	if err == nil {
		conn.Close()
		t.Fatal("TLS 1.2 handshake succeeded, want refused")
	}
}

func TestGRPCThroughProxies(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	hs := health.NewServer()
	healthpb.RegisterHealthServer(srv, hs)
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(srv.Stop)
	hs.SetServingStatus("orders", healthpb.HealthCheckResponse_SERVING)

	m := newMesh(t, ln.Addr().String(), "GRPC", nil)
	cc, err := grpc.NewClient(m.outbound, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	client := healthpb.NewHealthClient(cc)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	// Unary.
	resp, err := client.Check(ctx, &healthpb.HealthCheckRequest{Service: "orders"})
	if err != nil {
		t.Fatalf("Check: %v", err)
	}
	if resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Errorf("Check: got %v, want SERVING", resp.GetStatus())
	}
	// Error status travels in trailers.
	if _, err := client.Check(ctx, &healthpb.HealthCheckRequest{Service: "nope"}); status.Code(err) != codes.NotFound {
		t.Errorf("Check(unknown): got %v, want NotFound", err)
	}

	// Server streaming: updates arrive while the stream is open.
	stream, err := client.Watch(ctx, &healthpb.HealthCheckRequest{Service: "orders"})
	if err != nil {
		t.Fatalf("Watch: %v", err)
	}
	first, err := stream.Recv()
	if err != nil || first.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("Watch first: %v, %v; want SERVING", first, err)
	}
	hs.SetServingStatus("orders", healthpb.HealthCheckResponse_NOT_SERVING)
	second, err := stream.Recv()
	if err != nil || second.GetStatus() != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Fatalf("Watch second: %v, %v; want NOT_SERVING", second, err)
	}
	hs.Shutdown() // ends streams? It sets NOT_SERVING; cancel the stream instead.
	cancel()
	if _, err := stream.Recv(); status.Code(err) != codes.Canceled {
		t.Errorf("Watch after cancel: got %v, want Canceled", err)
	}
}

func TestTCPPassthroughThroughProxies(t *testing.T) {
	m := newMesh(t, tcpEchoApp(t), "TCP", nil)
	conn, err := net.Dial("tcp", m.outbound)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	payload := strings.Repeat("0123456789", 10000)
	go func() {
		_, _ = io.WriteString(conn, payload)
		_ = conn.(*net.TCPConn).CloseWrite() // half-close must propagate
	}()
	got, err := io.ReadAll(conn)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != payload {
		t.Fatalf("got %d bytes back, want %d echoed", len(got), len(payload))
	}
}

func TestOutboundRefusesDisallowedPeer(t *testing.T) {
	app := echoApp(t)
	tests := []struct {
		name string
		svc  func(addr string) *configsyncv1.Service
	}{
		{name: "service allows another ID", svc: func(addr string) *configsyncv1.Service {
			return svcFor("echo", "HTTP", 80, addr, "spiffe://example.org/ns/default/sa/other")
		}},
		{name: "endpoint expects another ID", svc: func(addr string) *configsyncv1.Service {
			s := svcFor("echo", "HTTP", 80, addr, serverID, "spiffe://example.org/ns/default/sa/other")
			s.Endpoints[0].SpiffeId = "spiffe://example.org/ns/default/sa/other"
			return s
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := newMesh(t, app, "HTTP", nil)
			mustApply(t, m.a, serviceSnapshot(2, tt.svc(inboundAddr(m.b))))
			resp, err := http.Get("http://" + m.outbound + "/")
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusBadGateway {
				t.Errorf("got %d, want 502", resp.StatusCode)
			}
			if got := counterValue(t, m.a.metrics.refused.WithLabelValues(dirOutbound, refuseNotAllow)); got < 1 {
				t.Errorf("refused{not_allowed} = %v, want >= 1", got)
			}
		})
	}
}

func TestOutboundNoEndpoints(t *testing.T) {
	m := newMesh(t, echoApp(t), "HTTP", nil)
	s := svcFor("echo", "HTTP", 80, inboundAddr(m.b), serverID)
	s.Endpoints = nil
	mustApply(t, m.a, serviceSnapshot(2, s))
	resp, err := http.Get("http://" + m.outbound + "/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 503 || !strings.Contains(string(body), "echo.default") {
		t.Errorf("got %d %q, want 503 naming echo.default", resp.StatusCode, body)
	}
	mustApply(t, m.a, serviceSnapshot(3))
	resp, err = http.Get("http://" + m.outbound + "/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 503 || !strings.Contains(string(body), "echo.default") {
		t.Errorf("unknown service: got %d %q, want 503 naming echo.default", resp.StatusCode, body)
	}
}

func TestHTTPProxyByHost(t *testing.T) {
	m := newMesh(t, echoApp(t), "HTTP", func(c *Config) { c.HTTPProxy = "127.0.0.1:0" })
	proxyURL := &url.URL{Scheme: "http", Host: m.a.httpProxy.ln.Addr().String()}
	client := &http.Client{Transport: &http.Transport{Proxy: http.ProxyURL(proxyURL)}, Timeout: 10 * time.Second}
	tests := []struct {
		url      string
		wantCode int
		wantBody string
	}{
		{url: "http://echo/a", wantCode: 200, wantBody: "GET /a 0"},
		{url: "http://ECHO.default./b", wantCode: 200, wantBody: "GET /b 0"},
		{url: "http://echo.default.svc:80/c", wantCode: 200, wantBody: "GET /c 0"},
		{url: "http://echo:8080/d", wantCode: 502, wantBody: "no HTTP port 8080"},
		{url: "http://unknown.example/", wantCode: 502, wantBody: `no service in the mesh has host "unknown.example"`},
	}
	for _, tt := range tests {
		t.Run(tt.url, func(t *testing.T) {
			resp, err := client.Get(tt.url)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tt.wantCode || !strings.Contains(string(body), tt.wantBody) {
				t.Errorf("got %d %q, want %d containing %q", resp.StatusCode, body, tt.wantCode, tt.wantBody)
			}
			if tt.wantCode == 200 && resp.Header.Get("X-Seen-Identity") != clientID {
				t.Errorf("identity %q, want %q", resp.Header.Get("X-Seen-Identity"), clientID)
			}
		})
	}
	t.Run("CONNECT", func(t *testing.T) {
		conn, err := net.Dial("tcp", proxyURL.Host)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		fmt.Fprintf(conn, "CONNECT echo:443 HTTP/1.1\r\nHost: echo:443\r\n\r\n")
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusMethodNotAllowed {
			t.Errorf("CONNECT: got %d, want 405", resp.StatusCode)
		}
	})
}

func TestHeaderLimits(t *testing.T) {
	m := newMesh(t, echoApp(t), "HTTP", nil)
	tests := []struct {
		name     string
		headers  int
		size     int
		wantCode int
	}{
		{name: "100 headers", headers: 100, wantCode: 200},
		{name: "101 headers", headers: 101, wantCode: 431},
		{name: "60 KiB header", headers: 1, size: 60 << 10, wantCode: 200},
		{name: "80 KiB header", headers: 1, size: 80 << 10, wantCode: 431},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequest("GET", "http://"+m.outbound+"/", nil)
			for i := range tt.headers {
				req.Header.Add(fmt.Sprintf("X-H-%d", i), strings.Repeat("v", max(tt.size, 1)))
			}
			// User-Agent and Accept-Encoding are added by the client.
			req.Header.Set("User-Agent", "")
			resp, err := (&http.Client{Transport: &http.Transport{DisableCompression: true}}).Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tt.wantCode {
				t.Errorf("got %d, want %d", resp.StatusCode, tt.wantCode)
			}
		})
	}
}

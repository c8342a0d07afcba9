package e2e

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

// proxyProc is a running trustmesh proxy.
type proxyProc struct {
	*proc
	admin string
}

// startProxy starts a proxy using identity id from agent a and waits until
// /ready answers 200 (an SVID and a snapshot).
func startProxy(t *testing.T, s *server, a *agent, id string, args ...string) *proxyProc {
	t.Helper()
	p := &proxyProc{admin: freeAddr(t)}
	all := []string{"proxy", "--socket", a.socket, "--admin", p.admin, "--spiffe-id", id, "--log-level", "debug"}
	if !slices.Contains(args, "--server") { // a repeated --server adds to the list
		all = append(all, "--server", s.nodeAddr)
	}
	all = append(all, args...)
	p.proc = start(t, "proxy "+id, all...)
	waitFor(t, "proxy ready", 30*time.Second, func() bool {
		select {
		case <-p.done:
			t.Fatalf("proxy exited: %v\n%s", p.err, p.out)
		default:
		}
		resp, err := http.Get("http://" + p.admin + "/ready")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	return p
}

// metric returns the sum of a Prometheus metric's samples whose labels
// contain every part of match.
func (p *proxyProc) metric(t *testing.T, name string, match ...string) float64 {
	t.Helper()
	resp, err := http.Get("http://" + p.admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var sum float64
	for _, line := range strings.Split(string(body), "\n") {
		if !strings.HasPrefix(line, name+"{") && !strings.HasPrefix(line, name+" ") {
			continue
		}
		ok := true
		for _, m := range match {
			ok = ok && strings.Contains(line, m)
		}
		if !ok {
			continue
		}
		f := strings.Fields(line)
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		if err == nil {
			sum += v
		}
	}
	return sum
}

// echoApp is the application behind the inbound proxy: it answers with the
// identity header the proxy set.
func echoApp(t *testing.T) (addr string, port int) {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hello from orders; caller=%s; path=%s", r.Header.Get("X-Trustmesh-Peer-Identity"), r.URL.Path)
	}))
	t.Cleanup(srv.Close)
	host := strings.TrimPrefix(srv.URL, "http://")
	_, p, _ := net.SplitHostPort(host)
	port, _ = strconv.Atoi(p)
	return host, port
}

// meshYAML declares the orders and frontend workloads and an HTTP orders
// service on port 80 in front of appPort.
func meshYAML(td string, appPort int) string {
	return meshYAMLFor(td, "HTTP", 80, appPort)
}

// meshYAMLFor is meshYAML with the orders service's protocol and port.
func meshYAMLFor(td, protocol string, port, appPort int) string {
	return fmt.Sprintf(`apiVersion: trustmesh.dev/v1
kind: Workload
metadata: {name: orders, labels: {app: orders}}
spec:
  spiffeID: spiffe://%[1]s/ns/default/sa/orders
  parentID: spiffe://%[1]s/trustmesh/node/node-1
  selectors: ["%[2]s"]
---
apiVersion: trustmesh.dev/v1
kind: Workload
metadata: {name: frontend, labels: {app: frontend}}
spec:
  spiffeID: spiffe://%[1]s/ns/default/sa/frontend
  parentID: spiffe://%[1]s/trustmesh/node/node-1
  selectors: ["%[2]s"]
---
apiVersion: trustmesh.dev/v1
kind: Service
metadata: {name: orders}
spec:
  ports: [{name: main, port: %[5]d, protocol: %[4]s, targetPort: %[3]d}]
  selector: {matchLabels: {app: orders}}
  spiffeIDs: ["spiffe://%[1]s/ns/default/sa/orders"]
`, td, uidSelector(), appPort, protocol, port)
}

// TestMTLSBetweenProxies: curl → outbound proxy → mTLS → inbound proxy →
// app, configured by the server; plaintext refused on a STRICT port,
// accepted and counted on PERMISSIVE; a revoked SVID refused within 2 s.
func TestMTLSBetweenProxies(t *testing.T) {
	t.Parallel()
	s := startServer(t, "mesh.example")
	appAddr, appPort := echoApp(t)
	s.apply(t, meshYAML(s.td, appPort))
	a := startAgent(t, s, filepath.Join(t.TempDir(), "agent"), s.token(t, "node-1"))

	inbound, outbound := freeAddr(t), freeAddr(t)
	orders := startProxy(t, s, a, "spiffe://mesh.example/ns/default/sa/orders", "--inbound", inbound+"="+appAddr)
	front := startProxy(t, s, a, "spiffe://mesh.example/ns/default/sa/frontend", "--outbound", outbound+"=orders:80")

	t.Run("curl through both proxies", func(t *testing.T) {
		var out []byte
		var err error
		// The orders proxy becomes an endpoint once it has ACKed; the
		// frontend proxy learns it with the next snapshot.
		waitFor(t, "a successful request", 20*time.Second, func() bool {
			out, err = exec.Command("curl", "-sS", "--fail", "--max-time", "5", "http://"+outbound+"/orders/1").CombinedOutput()
			return err == nil
		})
		if !strings.Contains(string(out), "caller=spiffe://mesh.example/ns/default/sa/frontend") {
			t.Fatalf("app did not see the caller's identity: %s", out)
		}
		if !strings.Contains(string(out), "path=/orders/1") {
			t.Errorf("path lost: %s", out)
		}
	})

	t.Run("client-supplied identity header is replaced", func(t *testing.T) {
		out, err := exec.Command("curl", "-sS", "--fail", "--max-time", "5", "-H", "X-Trustmesh-Peer-Identity: spiffe://mesh.example/admin",
			"http://"+outbound+"/").CombinedOutput()
		if err != nil || strings.Contains(string(out), "caller=spiffe://mesh.example/admin") {
			t.Fatalf("forged header reached the app: %v %s", err, out)
		}
	})

	t.Run("plaintext refused on a STRICT port", func(t *testing.T) {
		out, err := exec.Command("curl", "-sS", "--max-time", "5", "http://"+inbound+"/").CombinedOutput()
		if err == nil && strings.Contains(string(out), "hello from orders") {
			t.Fatalf("plaintext reached the app on a STRICT port: %s", out)
		}
		if n := orders.metric(t, "trustmesh_plaintext_connections_total", `action="refused"`); n < 1 {
			t.Errorf("refused plaintext not counted (got %v)", n)
		}
	})

	t.Run("hybrid post-quantum group negotiated", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "svid")
		mustCLI(t, "cert", "fetch", "--socket", a.socket, "--write", dir)
		cs := mtlsDial(t, inbound, dir, s)
		if cs.Version != tls.VersionTLS13 {
			t.Errorf("got TLS version %x, want 1.3", cs.Version)
		}
		if cs.CurveID != tls.X25519MLKEM768 {
			t.Errorf("got group %v, want X25519MLKEM768", cs.CurveID)
		}
	})

	t.Run("openssl s_client sees TLS 1.3", func(t *testing.T) {
		// Debian 12's OpenSSL 3.0 has no ML-KEM: it negotiates the X25519
		// fallback, which the proxy must still offer.
		dir := filepath.Join(t.TempDir(), "svid")
		mustCLI(t, "cert", "fetch", "--socket", a.socket, "--write", dir)
		cmd := exec.Command("openssl", "s_client", "-connect", inbound, "-cert", filepath.Join(dir, "svid.pem"),
			"-key", filepath.Join(dir, "key.pem"), "-CAfile", filepath.Join(dir, "bundle.pem"), "-brief")
		cmd.Stdin = strings.NewReader("")
		out, _ := cmd.CombinedOutput()
		if !strings.Contains(string(out), "TLSv1.3") || !strings.Contains(string(out), "X25519") {
			t.Errorf("openssl s_client: want TLSv1.3 with X25519:\n%s", out)
		}
	})

	t.Run("PERMISSIVE accepts and counts plaintext", func(t *testing.T) {
		s.apply(t, `apiVersion: trustmesh.dev/v1
kind: PeerAuthentication
metadata: {name: orders, namespace: default}
spec:
  selector: {matchLabels: {app: orders}}
  mtls: {mode: PERMISSIVE}
`)
		var out []byte
		waitFor(t, "plaintext accepted", 20*time.Second, func() bool {
			out, _ = exec.Command("curl", "-sS", "--max-time", "5", "http://"+inbound+"/").CombinedOutput()
			return strings.Contains(string(out), "hello from orders")
		})
		if !strings.Contains(string(out), "caller=;") {
			t.Errorf("a plaintext caller got an identity header: %s", out)
		}
		if n := orders.metric(t, "trustmesh_plaintext_connections_total", `action="accepted"`); n < 1 {
			t.Errorf("accepted plaintext not counted (got %v)", n)
		}
	})

	t.Run("get proxies shows both with their ACKs", func(t *testing.T) {
		out := mustCLI(t, "get", "proxies", "--data-dir", s.dir)
		for _, w := range []string{"sa/orders", "sa/frontend", "true"} {
			if !strings.Contains(out, w) {
				t.Errorf("get proxies lacks %q:\n%s", w, out)
			}
		}
	})

	t.Run("revoked SVID refused within 2s", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "svid")
		mustCLI(t, "cert", "fetch", "--socket", a.socket, "--write", dir)
		mtlsDial(t, inbound, dir, s) // works before
		leaf := readLeaf(t, filepath.Join(dir, "svid.pem"))
		mustCLI(t, "cert", "revoke", "--serial", leaf.SerialNumber.String(), "--data-dir", s.dir)
		start := time.Now()
		waitFor(t, "the revoked SVID to be refused", 2*time.Second, func() bool {
			_, err := tryMTLS(inbound, dir, s)
			return err != nil
		})
		t.Logf("refused %s after cert revoke", time.Since(start))
	})
	if n := front.metric(t, "trustmesh_tls_handshakes_total", `group="X25519MLKEM768"`); n < 1 {
		t.Errorf("the frontend proxy's handshakes with the hybrid group are not counted (got %v)", n)
	}
}

func readLeaf(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	certs, err := x509svid.Load(path, strings.Replace(path, "svid.pem", "key.pem", 1))
	if err != nil {
		t.Fatal(err)
	}
	return certs.Certificates[0]
}

// tryMTLS makes one HTTPS request to addr with the SVID in dir and returns
// the connection state.
func tryMTLS(addr, dir string, s *server) (tls.ConnectionState, error) {
	cert, err := tls.LoadX509KeyPair(filepath.Join(dir, "svid.pem"), filepath.Join(dir, "key.pem"))
	if err != nil {
		return tls.ConnectionState{}, err
	}
	conf := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS13,
		// The test checks the handshake and the refusal, not the server's name.
		InsecureSkipVerify: true}
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: conf, DisableKeepAlives: true}}
	resp, err := c.Get("https://" + addr + "/")
	if err != nil {
		return tls.ConnectionState{}, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return tls.ConnectionState{}, fmt.Errorf("HTTP %d", resp.StatusCode)
	}
	return *resp.TLS, nil
}

func mtlsDial(t *testing.T, addr, dir string, s *server) tls.ConnectionState {
	t.Helper()
	cs, err := tryMTLS(addr, dir, s)
	if err != nil {
		t.Fatalf("mTLS request to %s: %v", addr, err)
	}
	return cs
}

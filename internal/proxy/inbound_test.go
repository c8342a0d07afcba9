package proxy

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strconv"
	"testing"
	"time"

	configsyncv1 "github.com/trustmesh/trustmesh/api/configsync/v1"
)

func TestInboundPlaintextByMode(t *testing.T) {
	tests := []struct {
		name      string
		snapshot  func(appPort uint32) *configsyncv1.Snapshot
		wantOK    bool
		wantCount string // action label counted
	}{
		{name: "no snapshot is strict", snapshot: nil, wantOK: false, wantCount: "refused"},
		{name: "strict", snapshot: func(uint32) *configsyncv1.Snapshot { return inboundSnapshot(1, "STRICT", nil) }, wantOK: false, wantCount: "refused"},
		{name: "permissive by port", snapshot: func(port uint32) *configsyncv1.Snapshot {
			return inboundSnapshot(1, "STRICT", map[uint32]string{port: "PERMISSIVE"})
		}, wantOK: true, wantCount: "accepted"},
		{name: "disable", snapshot: func(uint32) *configsyncv1.Snapshot { return inboundSnapshot(1, "DISABLE", nil) }, wantOK: true, wantCount: "accepted"},
		{name: "permissive default, strict port", snapshot: func(port uint32) *configsyncv1.Snapshot {
			return inboundSnapshot(1, "PERMISSIVE", map[uint32]string{port: "STRICT"})
		}, wantOK: false, wantCount: "refused"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newTestCA(t, "example.org")
			app := echoApp(t)
			port := appPortOf(t, app)
			p := startProxy(t, Config{Source: newFakeSource(c.mint(t, serverID), c.bundle()), Inbound: []InboundSpec{{Listen: "127.0.0.1:0", App: app}}})
			if tt.snapshot != nil {
				mustApply(t, p, tt.snapshot(port))
			}
			client := &http.Client{Timeout: 5 * time.Second}
			resp, err := client.Get("http://" + inboundAddr(p) + "/plain")
			if tt.wantOK {
				if err != nil {
					t.Fatalf("plaintext request: %v, want 200", err)
				}
				defer resp.Body.Close()
				if resp.StatusCode != 200 {
					t.Fatalf("got status %d, want 200", resp.StatusCode)
				}
				if got := resp.Header.Values("X-Seen-Identity"); len(got) != 0 {
					t.Errorf("app saw identity %q on plaintext, want none", got)
				}
			} else if err == nil {
				resp.Body.Close()
				t.Fatalf("plaintext request got status %d, want the connection refused", resp.StatusCode)
			}
			label := strconv.FormatUint(uint64(port), 10)
			if got := counterValue(t, p.metrics.plaintext.WithLabelValues(label, tt.wantCount)); got < 1 {
				t.Errorf("trustmesh_plaintext_connections_total{action=%q} = %v, want >= 1", tt.wantCount, got)
			}
		})
	}
}

func TestInboundPlaintextTCPAndH2C(t *testing.T) {
	c := newTestCA(t, "example.org")
	app := tcpEchoApp(t)
	p := startProxy(t, Config{Source: newFakeSource(c.mint(t, serverID), c.bundle()), Inbound: []InboundSpec{{Listen: "127.0.0.1:0", App: app}}})
	mustApply(t, p, inboundSnapshot(1, "PERMISSIVE", nil))
	conn, err := net.Dial("tcp", inboundAddr(p))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := conn.Write([]byte("\x00\x01binary")); err != nil {
		t.Fatal(err)
	}
	_ = conn.(*net.TCPConn).CloseWrite()
	got, err := io.ReadAll(conn)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != "\x00\x01binary" {
		t.Errorf("got %q, want the bytes echoed", got)
	}
}

func TestInboundPeerVerification(t *testing.T) {
	c := newTestCA(t, "example.org")
	other := newTestCA(t, "other.org")
	app := echoApp(t)
	p := startProxy(t, Config{Source: newFakeSource(c.mint(t, serverID), c.bundle(), other.bundle()), Inbound: []InboundSpec{{Listen: "127.0.0.1:0", App: app}}})
	good := c.mint(t, clientID)
	revoked := c.mint(t, clientID)
	mustApply(t, p, inboundSnapshot(1, "STRICT", nil, &configsyncv1.Revocation{Serial: revoked.Certificates[0].SerialNumber.String()}))

	tests := []struct {
		name   string
		client *http.Client
		wantOK bool
		reason string
	}{
		{name: "valid SVID", client: meshClient(good, c.bundle(), "http/1.1"), wantOK: true},
		{name: "other trust domain", client: meshClient(other.mint(t, "spiffe://other.org/client"), c.bundle(), "http/1.1"), reason: refuseForeignTD},
		{name: "wrong-domain ID from our CA", client: meshClient(c.mint(t, "spiffe://other.org/client"), c.bundle(), "http/1.1"), reason: refuseForeignTD},
		{name: "untrusted CA claiming our domain", client: meshClient(newTestCA(t, "example.org").mint(t, clientID), c.bundle(), "http/1.1"), reason: refuseUntrusted},
		{name: "revoked serial", client: meshClient(revoked, c.bundle(), "http/1.1"), reason: refuseRevoked},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := 0.0
			if tt.reason != "" {
				before = counterValue(t, p.metrics.refused.WithLabelValues(dirInbound, tt.reason))
			}
			resp, err := tt.client.Get("https://" + inboundAddr(p) + "/x")
			if tt.wantOK {
				if err != nil {
					t.Fatalf("request: %v", err)
				}
				resp.Body.Close()
				if resp.StatusCode != 200 {
					t.Fatalf("got %d, want 200", resp.StatusCode)
				}
				return
			}
			if err == nil {
				resp.Body.Close()
				t.Fatalf("got status %d, want the handshake refused", resp.StatusCode)
			}
			if got := counterValue(t, p.metrics.refused.WithLabelValues(dirInbound, tt.reason)); got != before+1 {
				t.Errorf("refused{reason=%q} = %v, want %v", tt.reason, got, before+1)
			}
		})
	}
}

func TestInboundIdentityHeader(t *testing.T) {
	c := newTestCA(t, "example.org")
	app := echoApp(t)
	p := startProxy(t, Config{Source: newFakeSource(c.mint(t, serverID), c.bundle()), Inbound: []InboundSpec{{Listen: "127.0.0.1:0", App: app}}})
	mustApply(t, p, inboundSnapshot(1, "STRICT", nil))
	for _, proto := range []string{"http/1.1", "h2"} {
		t.Run(proto, func(t *testing.T) {
			req, _ := http.NewRequest("GET", "https://"+inboundAddr(p)+"/who", nil)
			req.Header.Add(headerPeerIdentity, "spiffe://example.org/forged")
			req.Header.Add("x-trustmesh-peer-identity", "spiffe://example.org/forged2")
			req.Header.Set(headerXFCC, "By=spiffe://example.org/forged")
			resp, err := meshClient(c.mint(t, clientID), c.bundle(), proto).Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if got := resp.Header.Values("X-Seen-Identity"); len(got) != 1 || got[0] != clientID {
				t.Errorf("app saw %s %q, want exactly [%s]", headerPeerIdentity, got, clientID)
			}
			if got := resp.Header.Get("X-Seen-Xfcc"); got != "" {
				t.Errorf("app saw %s %q, want it stripped", headerXFCC, got)
			}
			// The app is spoken to in the protocol the peer used.
			if got, want := resp.Header.Get("X-Seen-Proto"), map[string]string{"http/1.1": "HTTP/1.1", "h2": "HTTP/2.0"}[proto]; got != want {
				t.Errorf("app saw %s, want %s", got, want)
			}
		})
	}
}

// TestInboundRevocationClosesOpenConnections proves an SVID revoked while
// connections are open stops working on them: a keep-alive HTTP connection
// and a TCP passthrough stream.
func TestInboundRevocationClosesOpenConnections(t *testing.T) {
	c := newTestCA(t, "example.org")
	httpApp := echoApp(t)
	tcpApp := tcpEchoApp(t)
	p := startProxy(t, Config{Source: newFakeSource(c.mint(t, serverID), c.bundle()), Inbound: []InboundSpec{
		{Listen: "127.0.0.1:0", App: httpApp},
		{Listen: "127.0.0.1:0", App: tcpApp},
	}})
	mustApply(t, p, inboundSnapshot(1, "STRICT", nil))
	svid := c.mint(t, clientID)

	hc, err := dialMeshRaw(t, p.inbound[0].ln.Addr().String(), svid, c.bundle(), "http/1.1")
	if err != nil {
		t.Fatal(err)
	}
	defer hc.Close()
	br := bufio.NewReader(hc)
	code, err := rawRequest(hc, br, "/before")
	if err != nil || code != 200 {
		t.Fatalf("before revocation: %v, %v; want 200", code, err)
	}

	tc, err := dialMeshRaw(t, p.inbound[1].ln.Addr().String(), svid, c.bundle(), alpnTCP)
	if err != nil {
		t.Fatal(err)
	}
	defer tc.Close()
	_ = tc.SetDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 4)
	if _, err := tc.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(tc, buf); err != nil || string(buf) != "ping" {
		t.Fatalf("tcp before revocation: %q, %v", buf, err)
	}

	mustApply(t, p, inboundSnapshot(2, "STRICT", nil, &configsyncv1.Revocation{SpiffeId: clientID, RevokedAtUnixNano: time.Now().UnixNano()}))

	_ = hc.SetDeadline(time.Now().Add(2 * time.Second))
	if code, err := rawRequest(hc, br, "/after"); err == nil && code == 200 {
		t.Errorf("keep-alive request after revocation: got 200, want refused")
	}
	_ = tc.SetDeadline(time.Now().Add(2 * time.Second))
	_, _ = tc.Write([]byte("pong"))
	if n, err := io.ReadFull(tc, buf); err == nil {
		t.Errorf("tcp after revocation: read %q, want the stream closed", buf[:n])
	}
	// New connections are refused at the handshake.
	if resp, err := meshClient(svid, c.bundle(), "http/1.1").Get("https://" + p.inbound[0].ln.Addr().String() + "/new"); err == nil {
		resp.Body.Close()
		t.Errorf("new connection after revocation: got %d, want refused", resp.StatusCode)
	}
}

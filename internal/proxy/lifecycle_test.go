package proxy

import (
	"context"
	"fmt"
	"net/http"
	"runtime"
	"testing"
	"time"

	configsyncv1 "github.com/trustmesh/trustmesh/api/configsync/v1"
)

func TestSVIDRotationAppliesToNewConnections(t *testing.T) {
	c := newTestCA(t, "example.org")
	first := c.mint(t, serverID)
	src := newFakeSource(first, c.bundle())
	p := startProxy(t, Config{Source: src, Inbound: []InboundSpec{{Listen: "127.0.0.1:0", App: echoApp(t)}}})
	mustApply(t, p, inboundSnapshot(1, "STRICT", nil))
	client := c.mint(t, clientID)

	old, err := dialMeshRaw(t, inboundAddr(p), client, c.bundle(), "http/1.1")
	if err != nil {
		t.Fatal(err)
	}
	defer old.Close()
	second := c.mint(t, serverID)
	src.mu.Lock()
	src.svid = second
	src.mu.Unlock()
	fresh, err := dialMeshRaw(t, inboundAddr(p), client, c.bundle(), "http/1.1")
	if err != nil {
		t.Fatal(err)
	}
	defer fresh.Close()
	if got, want := fresh.ConnectionState().PeerCertificates[0].SerialNumber, second.Certificates[0].SerialNumber; got.Cmp(want) != 0 {
		t.Errorf("new connection got serial %v, want the rotated SVID's %v", got, want)
	}
	if got, want := old.ConnectionState().PeerCertificates[0].SerialNumber, first.Certificates[0].SerialNumber; got.Cmp(want) != 0 {
		t.Errorf("old connection serial %v, want %v", got, want)
	}
}

func TestOutboundResumesSessions(t *testing.T) {
	m := newMesh(t, echoApp(t), "HTTP", nil)
	for i := range 2 {
		resp, err := http.Get("http://" + m.outbound + "/")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if i == 0 {
			m.a.upstreams.closeIdle() // force a new mesh connection
		}
	}
	if got := counterValue(t, m.a.metrics.handshakes.WithLabelValues(dirOutbound, "X25519MLKEM768", "true")); got != 1 {
		t.Errorf("resumed outbound handshakes = %v, want 1", got)
	}
	if got := counterValue(t, m.b.metrics.handshakes.WithLabelValues(dirInbound, "X25519MLKEM768", "true")); got != 1 {
		t.Errorf("resumed inbound handshakes = %v, want 1", got)
	}
}

func TestRunReturnsAndLeavesNoGoroutines(t *testing.T) {
	before := runtime.NumGoroutine()
	func() {
		c := newTestCA(t, "example.org")
		app := tcpEchoApp(t)
		p, err := New(Config{Source: newFakeSource(c.mint(t, serverID), c.bundle()), TrustDomain: td, Admin: "127.0.0.1:0",
			Inbound: []InboundSpec{{Listen: "127.0.0.1:0", App: app}}})
		if err != nil {
			t.Fatal(err)
		}
		mustApply(t, p, inboundSnapshot(1, "STRICT", nil))
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- p.Run(ctx) }()
		// An open TCP passthrough stream must not block shutdown.
		conn, err := dialMeshRaw(t, inboundAddr(p), c.mint(t, clientID), c.bundle(), alpnTCP)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		_, _ = conn.Write([]byte("x"))
		buf := make([]byte, 1)
		_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := conn.Read(buf); err != nil {
			t.Fatal(err)
		}
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("Run returned %v, want nil", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("Run did not return")
		}
		if err := p.Run(context.Background()); err == nil {
			t.Error("second Run: got nil, want an error")
		}
	}()
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before+2 && time.Now().Before(deadline) {
		runtime.Gosched()
		time.Sleep(10 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > before+2 {
		buf := make([]byte, 1<<16)
		t.Errorf("%d goroutines after Run returned, %d before:\n%s", n, before, buf[:runtime.Stack(buf, true)])
	}
}

// TestRevokedClientRecoversWithNewSVID: a client whose SVID was revoked,
// and which has a new one from its agent, must not be locked out by the
// session ticket it cached with the old one: the inbound side refuses to
// resume that session and the client completes a full handshake with its
// current SVID.
func TestRevokedClientRecoversWithNewSVID(t *testing.T) {
	m := newMesh(t, echoApp(t), "HTTP", nil)
	get := func() error {
		resp, err := http.Get("http://" + m.outbound + "/")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("HTTP %d", resp.StatusCode)
		}
		return nil
	}
	if err := get(); err != nil {
		t.Fatal(err)
	}
	m.a.upstreams.closeIdle() // the next request resumes, or tries to
	m.aSrc.mu.Lock()
	old := m.aSrc.svid
	m.aSrc.svid = m.ca.mint(t, clientID)
	m.aSrc.mu.Unlock()
	mustApply(t, m.b, inboundSnapshot(2, "STRICT", nil, &configsyncv1.Revocation{Serial: old.Certificates[0].SerialNumber.String()}))
	if err := get(); err != nil {
		t.Fatalf("request with the new SVID after the old one was revoked: %v", err)
	}
	if got := counterValue(t, m.b.metrics.handshakes.WithLabelValues(dirInbound, "X25519MLKEM768", "true")); got != 0 {
		t.Errorf("resumed inbound handshakes = %v, want 0 (the revoked session must not resume)", got)
	}
}

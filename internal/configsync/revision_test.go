package configsync

import (
	"context"
	"crypto/tls"
	"net"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	configsyncv1 "github.com/trustmesh/trustmesh/api/configsync/v1"
	"github.com/trustmesh/trustmesh/internal/policy"
)

// TestAckedRevision: a proxy's AckedRevision follows the world revisions
// it is current with: the one its ACKed snapshot came from, and later ones
// that changed nothing it is sent.
func TestAckedRevision(t *testing.T) {
	pki := newTestPKI(t)
	hub := NewServer(ServerConfig{TrustDomain: pki.td, Debounce: time.Millisecond})
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	go func() { _ = hub.Run(ctx) }()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srvSrc := pki.source(t, "/trustmesh/server")
	srvTLS := tlsconfig.MTLSServerConfig(srvSrc, srvSrc, tlsconfig.AuthorizeAny())
	srvTLS.MinVersion = tls.VersionTLS13
	gs := grpc.NewServer(grpc.Creds(credentials.NewTLS(srvTLS)))
	configsyncv1.RegisterConfigSyncServer(gs, hub)
	go func() { _ = gs.Serve(l) }()
	defer gs.Stop()

	cliSrc := pki.source(t, "/ns/default/sa/web")
	cliTLS := tlsconfig.MTLSClientConfig(cliSrc, cliSrc, tlsconfig.AuthorizeID(spiffeid.RequireFromString("spiffe://example.org/trustmesh/server")))
	cliTLS.MinVersion = tls.VersionTLS13
	conn, err := grpc.NewClient(l.Addr().String(), grpc.WithTransportCredentials(credentials.NewTLS(cliTLS)))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	stream, err := configsyncv1.NewConfigSyncClient(conn).Stream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&configsyncv1.ProxyMessage{Msg: &configsyncv1.ProxyMessage_Hello{Hello: &configsyncv1.Hello{ProxyId: "web-1"}}}); err != nil {
		t.Fatal(err)
	}
	ackNext := func() {
		t.Helper()
		snap, err := stream.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if err := stream.Send(&configsyncv1.ProxyMessage{Msg: &configsyncv1.ProxyMessage_Ack{Ack: &configsyncv1.Ack{Version: snap.GetVersion()}}}); err != nil {
			t.Fatal(err)
		}
	}
	acked := func(want int64) {
		t.Helper()
		deadline := time.Now().Add(waitTimeout)
		for {
			ps := hub.Proxies()
			if len(ps) == 1 && ps[0].AckedRevision == want {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("AckedRevision: got %+v, want %d", ps, want)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}

	hub.SetWorld(&World{Revision: 3, Mesh: policyDefaults()})
	ackNext()
	acked(3)
	// A world whose change does not reach this proxy's snapshot: current
	// as of revision 4 without a push.
	hub.SetWorld(&World{Revision: 4, Mesh: policyDefaults()})
	acked(4)
	// A change it is sent: acknowledged once it ACKs.
	hub.SetWorld(&World{Revision: 5, Mesh: policyDefaults(), Services: []*policy.Service{{Metadata: policy.Metadata{Name: "orders", Namespace: "default"}}}})
	ackNext()
	acked(5)
}

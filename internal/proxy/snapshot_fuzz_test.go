package proxy

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/proto"

	configsyncv1 "github.com/trustmesh/trustmesh/api/configsync/v1"
)

// FuzzApplySnapshot feeds arbitrary bytes through the snapshot decoder (the
// protobuf wire format the server pushes) and Apply: never a panic, and a
// rejected snapshot leaves the current one in force.
func FuzzApplySnapshot(f *testing.F) {
	seeds := []*configsyncv1.Snapshot{
		inboundSnapshot(1, "STRICT", map[uint32]string{8080: "PERMISSIVE"}, &configsyncv1.Revocation{Serial: "42"}),
		serviceSnapshot(2, svcFor("orders", "HTTP", 80, "127.0.0.1:15006", "spiffe://"+td.Name()+"/orders")),
		serviceSnapshot(3, svcFor("db", "TCP", 5432, "[::1]:5432", "spiffe://"+td.Name()+"/db")),
		{Version: 4, Inbound: &configsyncv1.InboundSettings{DefaultMode: "BOGUS"}},
	}
	for _, s := range seeds {
		b, err := proto.Marshal(s)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	ca := newTestCA(f, td.Name())
	p, err := New(Config{Source: newFakeSource(ca.mint(f, clientID), ca.bundle()), TrustDomain: td,
		Inbound: []InboundSpec{{Listen: "127.0.0.1:0", App: "127.0.0.1:9"}}, Registry: prometheus.NewRegistry()})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { _ = p.Close() })
	good := inboundSnapshot(1, "STRICT", nil)
	f.Fuzz(func(t *testing.T, data []byte) {
		var snap configsyncv1.Snapshot
		if err := proto.Unmarshal(data, &snap); err != nil {
			return
		}
		if err := p.Apply(good); err != nil {
			t.Fatalf("the known-good snapshot was rejected: %v", err)
		}
		before := p.view.Load()
		if err := p.Apply(&snap); err != nil && p.view.Load() != before {
			t.Fatalf("a rejected snapshot (%v) replaced the current one", err)
		}
	})
}

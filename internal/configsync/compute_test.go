package configsync

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/protobuf/testing/protocmp"

	configsyncv1 "github.com/trustmesh/trustmesh/api/configsync/v1"
	"github.com/trustmesh/trustmesh/internal/policy"
)

func decodeAll(t *testing.T, doc string) []policy.Object {
	t.Helper()
	objs, err := policy.Decode([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	return objs
}

func worldOf(t *testing.T, doc string) *World {
	t.Helper()
	w := &World{Mesh: policy.DefaultMeshConfig().Effective()}
	for i, o := range decodeAll(t, doc) {
		o.GetMeta().CreationRevision = int64(i + 1)
		switch o := o.(type) {
		case *policy.Service:
			w.Services = append(w.Services, o)
		case *policy.Workload:
			w.Workloads = append(w.Workloads, o)
		case *policy.PeerAuthentication:
			w.PeerAuths = append(w.PeerAuths, o)
		}
	}
	return w
}

const world = `
apiVersion: trustmesh.dev/v1
kind: Workload
metadata: {name: orders, labels: {app: orders}}
spec:
  spiffeID: spiffe://td.example/ns/default/sa/orders
  parentID: spiffe://td.example/trustmesh/node/n1
  selectors: ["unix:uid:1"]
---
apiVersion: trustmesh.dev/v1
kind: Workload
metadata: {name: rogue, labels: {app: orders}}
spec:
  spiffeID: spiffe://td.example/ns/default/sa/rogue
  parentID: spiffe://td.example/trustmesh/node/n1
  selectors: ["unix:uid:2"]
---
apiVersion: trustmesh.dev/v1
kind: Service
metadata: {name: orders}
spec:
  ports: [{name: http, port: 80, protocol: HTTP, targetPort: 8080}]
  selector: {matchLabels: {app: orders}}
  endpoints: [{address: "10.0.0.9:15006"}]
  spiffeIDs: ["spiffe://td.example/ns/default/sa/orders"]
---
apiVersion: trustmesh.dev/v1
kind: PeerAuthentication
metadata: {name: orders, namespace: default}
spec:
  selector: {matchLabels: {app: orders}}
  mtls: {mode: STRICT}
  portLevelMtls:
    9090: {mode: PERMISSIVE}
`

func TestComputeEndpoints(t *testing.T) {
	w := worldOf(t, world)
	orders := spiffeid.RequireFromString("spiffe://td.example/ns/default/sa/orders")
	rogue := spiffeid.RequireFromString("spiffe://td.example/ns/default/sa/rogue")
	in := func(addr string, port uint32) []*configsyncv1.InboundListener {
		return []*configsyncv1.InboundListener{{Address: addr, AppPort: port}}
	}
	tests := []struct {
		name    string
		proxies []ProxyInfo
		want    []*configsyncv1.Endpoint
	}{
		{"static only when no proxy is connected", nil,
			[]*configsyncv1.Endpoint{{Address: "10.0.0.9:15006", Port: 80}}},
		{"a ready proxy of a selected workload is an endpoint",
			[]ProxyInfo{{ID: "a", SPIFFEID: orders, Inbound: in("127.0.0.1:15006", 8080), Ready: true}},
			[]*configsyncv1.Endpoint{{Address: "10.0.0.9:15006", Port: 80}, {Address: "127.0.0.1:15006", Port: 80, SpiffeId: orders.String()}}},
		{"a proxy that has not ACKed yet is not",
			[]ProxyInfo{{ID: "a", SPIFFEID: orders, Inbound: in("127.0.0.1:15006", 8080)}},
			[]*configsyncv1.Endpoint{{Address: "10.0.0.9:15006", Port: 80}}},
		{"a selected workload whose identity the service does not allow is not",
			[]ProxyInfo{{ID: "r", SPIFFEID: rogue, Inbound: in("127.0.0.1:15007", 8080), Ready: true}},
			[]*configsyncv1.Endpoint{{Address: "10.0.0.9:15006", Port: 80}}},
		{"a listener for another app port is not used when there are several",
			[]ProxyInfo{{ID: "a", SPIFFEID: orders, Ready: true, Inbound: []*configsyncv1.InboundListener{
				{Address: "127.0.0.1:1", AppPort: 7070}, {Address: "127.0.0.1:2", AppPort: 8080}}}},
			[]*configsyncv1.Endpoint{{Address: "10.0.0.9:15006", Port: 80}, {Address: "127.0.0.1:2", Port: 80, SpiffeId: orders.String()}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			snap := Compute(w, tc.proxies, ProxyInfo{SPIFFEID: rogue})
			if len(snap.Services) != 1 {
				t.Fatalf("got %d services, want 1", len(snap.Services))
			}
			if diff := cmp.Diff(tc.want, snap.Services[0].Endpoints, protocmp.Transform()); diff != "" {
				t.Errorf("endpoints (-want +got):\n%s", diff)
			}
		})
	}
}

func TestComputeInbound(t *testing.T) {
	w := worldOf(t, world)
	got := Compute(w, nil, ProxyInfo{SPIFFEID: spiffeid.RequireFromString("spiffe://td.example/ns/default/sa/orders")}).Inbound
	want := &configsyncv1.InboundSettings{DefaultMode: "STRICT", PortModes: map[uint32]string{9090: "PERMISSIVE"}}
	if diff := cmp.Diff(want, got, protocmp.Transform()); diff != "" {
		t.Errorf("inbound (-want +got):\n%s", diff)
	}
	// An identity without a registration gets the mesh default.
	got = Compute(w, nil, ProxyInfo{SPIFFEID: spiffeid.RequireFromString("spiffe://td.example/unregistered")}).Inbound
	if got.DefaultMode != "STRICT" || len(got.PortModes) != 0 {
		t.Errorf("unregistered: got %v, want the STRICT mesh default", got)
	}
}

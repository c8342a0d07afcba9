package configsync

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	configsyncv1 "github.com/trustmesh/trustmesh/api/configsync/v1"
)

func TestPresenceRoundTrip(t *testing.T) {
	td := spiffeid.RequireTrustDomainFromString("example.org")
	in := []ProxyInfo{
		{ID: "p1", SPIFFEID: spiffeid.RequireFromString("spiffe://example.org/ns/prod/sa/web"), Mode: "sidecar", Version: "v1", Ready: true,
			Inbound: []*configsyncv1.InboundListener{{Address: "127.0.0.1:9001", AppPort: 8080}}},
		{ID: "p2", SPIFFEID: spiffeid.RequireFromString("spiffe://example.org/ns/prod/sa/db"), Ready: true},
	}
	b, err := EncodePresence(in)
	if err != nil {
		t.Fatal(err)
	}
	out, err := DecodePresence(b, td)
	if err != nil {
		t.Fatal(err)
	}
	if len(out) != len(in) {
		t.Fatalf("got %d proxies, want %d", len(out), len(in))
	}
	for i := range in {
		if !sameInfo(in[i], out[i]) {
			t.Errorf("proxy %d: got %+v, want %+v", i, out[i], in[i])
		}
	}
}

func TestDecodePresenceRefuses(t *testing.T) {
	td := spiffeid.RequireTrustDomainFromString("example.org")
	for _, tc := range []struct{ name, doc, want string }{
		{"not JSON", `{`, "decode proxy presence"},
		{"unknown version", `{"version":2,"proxies":[]}`, "version 2"},
		{"other trust domain", `{"version":1,"proxies":[{"id":"p","spiffeID":"spiffe://evil.org/x"}]}`, "not a workload of trust domain example.org"},
		{"control-plane identity", `{"version":1,"proxies":[{"id":"p","spiffeID":"spiffe://example.org/trustmesh/server"}]}`, "not a workload"},
		{"bad ID", `{"version":1,"proxies":[{"id":"p","spiffeID":"http://x"}]}`, "proxies[0].spiffeID"},
		{"no proxy ID", `{"version":1,"proxies":[{"spiffeID":"spiffe://example.org/a"}]}`, "proxies[0].id is empty"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := DecodePresence([]byte(tc.doc), td)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

func TestRemoteProxiesJoinEndpoints(t *testing.T) {
	s := NewServer(ServerConfig{TrustDomain: spiffeid.RequireTrustDomainFromString("example.org")})
	id := spiffeid.RequireFromString("spiffe://example.org/ns/prod/sa/web")
	local := &proxyConn{status: ProxyStatus{ProxyInfo: ProxyInfo{ID: "moved", SPIFFEID: id, Ready: true,
		Inbound: []*configsyncv1.InboundListener{{Address: "127.0.0.1:2", AppPort: 80}}}}}
	s.proxies[local] = struct{}{}
	s.SetRemote([]ProxyInfo{
		{ID: "remote", SPIFFEID: id, Ready: true, Inbound: []*configsyncv1.InboundListener{{Address: "127.0.0.1:1", AppPort: 80}}},
		// The replica it left still lists it, with its old address.
		{ID: "moved", SPIFFEID: id, Ready: true, Inbound: []*configsyncv1.InboundListener{{Address: "127.0.0.1:3", AppPort: 80}}},
	})
	got := s.proxyInfos()
	var addrs []string
	for _, p := range got {
		addrs = append(addrs, p.ID+"@"+p.Inbound[0].GetAddress())
	}
	if want := "moved@127.0.0.1:2 remote@127.0.0.1:1"; strings.Join(addrs, " ") != want {
		t.Errorf("proxies: got %q, want %q", strings.Join(addrs, " "), want)
	}
	if ready := s.LocalReady(); len(ready) != 1 || ready[0].ID != "moved" {
		t.Errorf("LocalReady: got %+v, want only the local proxy", ready)
	}
}

// TestSettleCountsRemoteProxies: after a restart, a proxy that was serving
// here and reconnected to another replica is back (its endpoints come from
// that replica's presence), so first pushes do not wait for it.
func TestSettleCountsRemoteProxies(t *testing.T) {
	s := NewServer(ServerConfig{TrustDomain: spiffeid.RequireTrustDomainFromString("example.org"),
		Expect: []string{"moved", "here"}, Settle: time.Hour})
	id := spiffeid.RequireFromString("spiffe://example.org/ns/prod/sa/web")
	s.proxies[&proxyConn{status: ProxyStatus{ProxyInfo: ProxyInfo{ID: "here", SPIFFEID: id, Ready: true}}}] = struct{}{}
	settled := func() bool {
		ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
		defer cancel()
		return s.settle(ctx, nil) == nil
	}
	if settled() {
		t.Fatal("settled with an expected proxy missing")
	}
	// Listed by another replica too, "here" must not count twice.
	s.SetRemote([]ProxyInfo{{ID: "here", SPIFFEID: id, Ready: true}})
	if settled() {
		t.Fatal("settled with an expected proxy missing (one proxy counted twice)")
	}
	s.SetRemote([]ProxyInfo{{ID: "moved", SPIFFEID: id, Ready: true}})
	if !settled() {
		t.Error("not settled although the missing proxy is connected to another replica")
	}
}

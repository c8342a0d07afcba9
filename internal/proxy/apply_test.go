package proxy

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	configsyncv1 "github.com/trustmesh/trustmesh/api/configsync/v1"
)

func TestApplyRejectsInvalidSnapshots(t *testing.T) {
	c := newTestCA(t, "example.org")
	p := startProxy(t, Config{Source: newFakeSource(c.mint(t, clientID), c.bundle()), Outbound: []OutboundSpec{{Listen: "127.0.0.1:0", Service: "echo"}}})
	good := serviceSnapshot(7, svcFor("echo", "HTTP", 80, "10.0.0.1:15006", serverID))
	mustApply(t, p, good)

	tests := []struct {
		name    string
		mutate  func(s *configsyncv1.Snapshot)
		wantErr string
	}{
		{name: "bad snapshot spiffe id", mutate: func(s *configsyncv1.Snapshot) { s.SpiffeId = "http://x" }, wantErr: "spiffe_id"},
		{name: "service id bad", mutate: func(s *configsyncv1.Snapshot) {
			s.Services[0].SpiffeIds = []string{"spiffe://example.org/ok", "not an id"}
		}, wantErr: "services[0].spiffe_ids[1]"},
		{name: "service id foreign", mutate: func(s *configsyncv1.Snapshot) { s.Services[0].SpiffeIds = []string{"spiffe://evil.org/x"} }, wantErr: "not in trust domain"},
		{name: "service name", mutate: func(s *configsyncv1.Snapshot) { s.Services[0].Name = "Bad_Name" }, wantErr: "services[0].name"},
		{name: "duplicate service", mutate: func(s *configsyncv1.Snapshot) {
			s.Services = append(s.Services, proto.Clone(s.Services[0]).(*configsyncv1.Service))
		}, wantErr: "duplicate service"},
		{name: "protocol", mutate: func(s *configsyncv1.Snapshot) { s.Services[0].Ports[0].Protocol = "UDP" }, wantErr: "services[0].ports[0].protocol"},
		{name: "empty protocol", mutate: func(s *configsyncv1.Snapshot) { s.Services[0].Ports[0].Protocol = "" }, wantErr: "services[0].ports[0].protocol"},
		{name: "port zero", mutate: func(s *configsyncv1.Snapshot) { s.Services[0].Ports[0].Port = 0 }, wantErr: "services[0].ports[0].port"},
		{name: "port too big", mutate: func(s *configsyncv1.Snapshot) { s.Services[0].Ports[0].Port = 70000 }, wantErr: "services[0].ports[0].port"},
		{name: "endpoint address", mutate: func(s *configsyncv1.Snapshot) { s.Services[0].Endpoints[0].Address = "10.0.0.1" }, wantErr: "services[0].endpoints[0].address"},
		{name: "endpoint port text", mutate: func(s *configsyncv1.Snapshot) { s.Services[0].Endpoints[0].Address = "10.0.0.1:http" }, wantErr: "services[0].endpoints[0].address"},
		{name: "endpoint service port", mutate: func(s *configsyncv1.Snapshot) { s.Services[0].Endpoints[0].Port = 81 }, wantErr: "services[0].endpoints[0].port"},
		{name: "endpoint id not allowed", mutate: func(s *configsyncv1.Snapshot) { s.Services[0].Endpoints[0].SpiffeId = "spiffe://example.org/other" }, wantErr: "not one of the service's spiffe_ids"},
		{name: "host", mutate: func(s *configsyncv1.Snapshot) { s.Services[0].Hosts = []string{"echo:80"} }, wantErr: "services[0].hosts[0]"},
		{name: "default mode", mutate: func(s *configsyncv1.Snapshot) { s.Inbound.DefaultMode = "strict" }, wantErr: "inbound.default_mode"},
		{name: "port mode", mutate: func(s *configsyncv1.Snapshot) { s.Inbound.PortModes = map[uint32]string{8080: "OFF"} }, wantErr: "inbound.port_modes[8080]"},
		{name: "revocation both", mutate: func(s *configsyncv1.Snapshot) {
			s.Revocations = []*configsyncv1.Revocation{{Serial: "1", SpiffeId: clientID}}
		}, wantErr: "revocations[0]: want exactly one"},
		{name: "revocation serial", mutate: func(s *configsyncv1.Snapshot) { s.Revocations = []*configsyncv1.Revocation{{Serial: "0x1f"}} }, wantErr: "revocations[0].serial"},
		{name: "revocation id", mutate: func(s *configsyncv1.Snapshot) {
			s.Revocations = []*configsyncv1.Revocation{{SpiffeId: "spiffe://", RevokedAtUnixNano: 1}}
		}, wantErr: "revocations[0].spiffe_id"},
		{name: "revocation time", mutate: func(s *configsyncv1.Snapshot) { s.Revocations = []*configsyncv1.Revocation{{SpiffeId: clientID}} }, wantErr: "revoked_at_unix_nano"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			bad := proto.Clone(good).(*configsyncv1.Snapshot)
			bad.Version = 8
			tt.mutate(bad)
			checkErr(t, p.Apply(bad), tt.wantErr)
			if got := p.view.Load().version; got != 7 {
				t.Errorf("after a rejected snapshot the version is %d, want 7 kept", got)
			}
		})
	}
	if err := p.Apply(nil); err == nil {
		t.Error("Apply(nil): got no error")
	}
}

func TestAdminEndpoints(t *testing.T) {
	c := newTestCA(t, "example.org")
	src := newFakeSource(nil, c.bundle())
	p := startProxy(t, Config{Source: src, Admin: "127.0.0.1:0", Inbound: []InboundSpec{{Listen: "127.0.0.1:0", App: "127.0.0.1:8080"}}})
	base := "http://" + p.admin.ln.Addr().String()
	get := func(path string) (int, string) {
		t.Helper()
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, _ := get("/healthz"); code != 200 {
		t.Errorf("/healthz: got %d, want 200", code)
	}
	if code, body := get("/ready"); code != 503 || !strings.Contains(body, "no SVID") {
		t.Errorf("/ready without SVID: got %d %q, want 503 saying no SVID", code, body)
	}
	src.mu.Lock()
	src.svid = c.mint(t, serverID)
	src.mu.Unlock()
	if code, body := get("/ready"); code != 503 || !strings.Contains(body, "snapshot") {
		t.Errorf("/ready without snapshot: got %d %q, want 503 saying no snapshot", code, body)
	}
	if p.Ready() {
		t.Error("Ready() = true before a snapshot")
	}
	mustApply(t, p, inboundSnapshot(42, "PERMISSIVE", nil))
	if code, _ := get("/ready"); code != 200 || !p.Ready() {
		t.Errorf("/ready: got %d, want 200", code)
	}

	code, body := get("/config_dump")
	if code != 200 {
		t.Fatalf("/config_dump: got %d", code)
	}
	var dump struct {
		SVID struct {
			ID string `json:"id"`
		} `json:"svid"`
		Listeners struct {
			Inbound []struct {
				Mode string `json:"mode"`
			} `json:"inbound"`
		} `json:"listeners"`
		Snapshot struct {
			Version  uint64 `json:"version"`
			Contents struct {
				SpiffeID string `json:"spiffeId"`
			} `json:"contents"`
		} `json:"snapshot"`
	}
	if err := json.Unmarshal([]byte(body), &dump); err != nil {
		t.Fatalf("config_dump is not JSON: %v\n%s", err, body)
	}
	if dump.SVID.ID != serverID || dump.Snapshot.Version != 42 || dump.Snapshot.Contents.SpiffeID != serverID ||
		len(dump.Listeners.Inbound) != 1 || dump.Listeners.Inbound[0].Mode != "PERMISSIVE" {
		t.Errorf("config_dump = %+v, want svid %s, version 42, one PERMISSIVE inbound", dump, serverID)
	}
	if strings.Contains(body, "PRIVATE") || strings.Contains(body, "private") {
		t.Error("config_dump mentions a private key")
	}
	if got := p.InboundListeners(); len(got) != 1 || got[0].GetAppPort() != 8080 || got[0].GetAddress() != inboundAddr(p) {
		t.Errorf("InboundListeners() = %v, want the bound address and app port 8080", got)
	}
	// Vectors with no samples are not exported; make one.
	p.metrics.plaintext.WithLabelValues("8080", "accepted").Inc()
	if code, body := get("/metrics"); code != 200 || !strings.Contains(body, `trustmesh_plaintext_connections_total{action="accepted",port="8080"} 1`) {
		t.Errorf("/metrics: got %d, want the plaintext counter:\n%s", code, body)
	}
}

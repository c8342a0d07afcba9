package policy

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestResolveKind(t *testing.T) {
	for _, tc := range []struct {
		in, want string
	}{
		{"MeshConfig", KindMeshConfig},
		{"meshconfig", KindMeshConfig},
		{"meshconfigs", KindMeshConfig},
		{"Workload", KindWorkload},
		{"workload", KindWorkload},
		{"workloads", KindWorkload},
		{"wl", KindWorkload},
		{"WORKLOADS", KindWorkload},
		{"Service", KindService},
		{"service", KindService},
		{"services", KindService},
		{"svc", KindService},
		{"PeerAuthentication", KindPeerAuthentication},
		{"peerauthentication", KindPeerAuthentication},
		{"peerauthentications", KindPeerAuthentication},
		{"pa", KindPeerAuthentication},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, err := ResolveKind(tc.in)
			if err != nil || got != tc.want {
				t.Errorf("ResolveKind(%q) = %q, %v; want %q, nil", tc.in, got, err, tc.want)
			}
		})
	}
	for _, in := range []string{"", "gateway", "wls", "mesh", "svcs", "peerauth"} {
		t.Run("unknown-"+in, func(t *testing.T) {
			got, err := ResolveKind(in)
			want := "(known kinds: AuthorizationPolicy, MeshConfig, PeerAuthentication, RequestAuthentication, Service, Workload)"
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("ResolveKind(%q) = %q, %v; want an error containing %q", in, got, err, want)
			}
		})
	}
}

func TestKinds(t *testing.T) {
	got := Kinds()
	if diff := cmp.Diff([]string{KindAuthorizationPolicy, KindMeshConfig, KindPeerAuthentication, KindRequestAuthentication, KindService, KindWorkload}, got); diff != "" {
		t.Errorf("Kinds() (-want +got):\n%s", diff)
	}
	got[0] = "changed"
	if Kinds()[0] != KindAuthorizationPolicy {
		t.Error("Kinds() returns a slice that aliases the registry")
	}
}

// TestRegistry checks that each registry entry makes objects of its kind,
// that its names resolve to it, and that the registry is sorted.
func TestRegistry(t *testing.T) {
	for i, k := range registry {
		obj := k.new()
		if obj.GetKind() != k.kind {
			t.Errorf("registry entry %q makes objects of kind %q", k.kind, obj.GetKind())
		}
		for _, name := range append([]string{k.plural}, k.short...) {
			if got, err := ResolveKind(name); got != k.kind || err != nil {
				t.Errorf("ResolveKind(%q) = %q, %v; want %q", name, got, err, k.kind)
			}
		}
		if i > 0 && registry[i-1].kind >= k.kind {
			t.Errorf("registry is not sorted: %q before %q", registry[i-1].kind, k.kind)
		}
	}
}

func TestEffective(t *testing.T) {
	defaults := MeshConfigSpec{
		DefaultMTLSMode: MTLSStrict,
		X509SVIDTTL:     Duration(time.Hour),
		JWTSVIDTTL:      Duration(5 * time.Minute),
	}
	for _, tc := range []struct {
		name string
		m    *MeshConfig
		want MeshConfigSpec
	}{
		{"nil", nil, defaults},
		{"empty", emptyMeshConfig(), defaults},
		{"default", DefaultMeshConfig(), defaults},
		{"set", validMeshConfig(), validMeshConfig().Spec},
		{"partly-set", &MeshConfig{Spec: MeshConfigSpec{JWTSVIDTTL: Duration(time.Minute)}}, MeshConfigSpec{
			DefaultMTLSMode: MTLSStrict,
			X509SVIDTTL:     Duration(time.Hour),
			JWTSVIDTTL:      Duration(time.Minute),
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if diff := cmp.Diff(tc.want, tc.m.Effective()); diff != "" {
				t.Errorf("Effective() (-want +got):\n%s", diff)
			}
		})
	}
}

func TestSVIDTTLs(t *testing.T) {
	mesh := &MeshConfig{Spec: MeshConfigSpec{X509SVIDTTL: Duration(2 * time.Hour)}}
	for _, tc := range []struct {
		name            string
		w               *Workload
		mesh            *MeshConfig
		wantX509, wantJ time.Duration
	}{
		{"defaults", apiWorkload(), nil, time.Hour, 5 * time.Minute},
		{"mesh", apiWorkload(), mesh, 2 * time.Hour, 5 * time.Minute},
		{"workload-overrides", validWorkload(), mesh, 30 * time.Minute, 5 * time.Minute},
	} {
		t.Run(tc.name, func(t *testing.T) {
			x, j := tc.w.SVIDTTLs(tc.mesh)
			if x != tc.wantX509 || j != tc.wantJ {
				t.Errorf("SVIDTTLs() = %v, %v; want %v, %v", x, j, tc.wantX509, tc.wantJ)
			}
		})
	}
}

func TestDurationString(t *testing.T) {
	for _, tc := range []struct {
		d    time.Duration
		want string
	}{
		{time.Hour, "1h"},
		{90 * time.Minute, "1h30m"},
		{time.Hour + time.Second, "1h0m1s"},
		{10 * time.Minute, "10m"},
		{90 * time.Second, "1m30s"},
		{1500 * time.Millisecond, "1.5s"},
		{0, "0s"},
	} {
		if got := Duration(tc.d).String(); got != tc.want {
			t.Errorf("Duration(%v).String() = %q, want %q", tc.d, got, tc.want)
		}
		if tc.d == 0 {
			continue
		}
		if back, err := parseDuration(Duration(tc.d).String()); err != nil || back != Duration(tc.d) {
			t.Errorf("parseDuration(%q) = %v, %v; want %v", Duration(tc.d), back, err, tc.d)
		}
	}
}

func TestDurationJSON(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    Duration
		wantErr string
	}{
		{`"30m"`, Duration(30 * time.Minute), ""},
		{`null`, 0, ""},
		{`30`, 0, `want a duration such as "30m" or "1h", got a number (30)`},
		{`true`, 0, `got a boolean (true)`},
		{`"soon"`, 0, `invalid duration "soon"`},
		{`""`, 0, "got an empty string"},
		{`"-1m"`, 0, `duration "-1m" must be positive`},
	} {
		t.Run(tc.in, func(t *testing.T) {
			var d Duration
			err := json.Unmarshal([]byte(tc.in), &d)
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("Unmarshal(%s): %v", tc.in, err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Fatalf("Unmarshal(%s): got error %v, want one containing %q", tc.in, err, tc.wantErr)
			}
			if d != tc.want {
				t.Errorf("Unmarshal(%s) = %v, want %v", tc.in, d, tc.want)
			}
		})
	}
	b, err := json.Marshal(Duration(90 * time.Minute))
	if err != nil || string(b) != `"1h30m"` {
		t.Errorf(`Marshal(90m) = %s, %v; want "1h30m"`, b, err)
	}
}

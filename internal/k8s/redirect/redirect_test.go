package redirect

import (
	"flag"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// injected is what the injector asks of trustmesh-init by default.
var injected = Config{
	ProxyUID:            1337,
	InboundPort:         15006,
	InboundPorts:        AllPorts,
	ExcludeInboundPorts: []uint16{15000},
}

func TestRulesGolden(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
	}{
		{"inbound-all", injected},
		{"inbound-listed-ports", Config{ProxyUID: 1337, InboundPort: 15006, InboundPorts: Ports{List: []uint16{9090, 8080, 8080}}}},
		{"outbound-only", Config{ProxyUID: 1337, ProxyGID: 1337, OutboundPort: 15001, OutboundPorts: AllPorts,
			ExcludeOutboundPorts: []uint16{5432}, ExcludeOutboundCIDRs: []netip.Prefix{netip.MustParsePrefix("169.254.169.254/32"), netip.MustParsePrefix("10.1.2.3/8")}}},
		{"inbound-and-outbound-ports", Config{ProxyUID: 1337, InboundPort: 15006, InboundPorts: AllPorts, ExcludeInboundPorts: []uint16{15000, 9100},
			OutboundPort: 15001, OutboundPorts: Ports{List: []uint16{80, 8080}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Rules(tt.cfg)
			if err != nil {
				t.Fatalf("Rules: %v", err)
			}
			golden(t, filepath.Join("testdata", tt.name+".golden"), got)
		})
	}
}

func golden(t *testing.T, path string, got []byte) {
	t.Helper()
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if diff := cmp.Diff(string(want), string(got)); diff != "" {
		t.Errorf("%s: rules differ (-want +got; go test -update rewrites it):\n%s", path, diff)
	}
}

func TestRulesInvalid(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		want string
	}{
		{"no uid", Config{InboundPort: 15006, InboundPorts: AllPorts}, "proxy uid: required"},
		{"nothing", Config{ProxyUID: 1337}, "nothing to redirect"},
		{"inbound without ports", Config{ProxyUID: 1337, InboundPort: 15006}, "no inbound ports"},
		{"outbound without ports", Config{ProxyUID: 1337, OutboundPort: 15001}, "no outbound ports"},
		{"same port", Config{ProxyUID: 1337, InboundPort: 15006, InboundPorts: AllPorts, OutboundPort: 15006, OutboundPorts: AllPorts}, "both 15006"},
		{"port 0", Config{ProxyUID: 1337, InboundPort: 15006, InboundPorts: Ports{List: []uint16{0}}}, "0 is not a port"},
		{"ipv6 cidr", Config{ProxyUID: 1337, OutboundPort: 15001, OutboundPorts: AllPorts, ExcludeOutboundCIDRs: []netip.Prefix{netip.MustParsePrefix("fd00::/8")}}, "want an IPv4 CIDR"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Rules(tt.cfg)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("got error %v, want one containing %q", err, tt.want)
			}
		})
	}
}

func TestParse(t *testing.T) {
	tests := []struct {
		in      string
		want    Ports
		wantErr bool
	}{
		{"", Ports{}, false},
		{"*", AllPorts, false},
		{" 8080, 80,80 ", Ports{List: []uint16{80, 8080}}, false},
		{"0", Ports{}, true},
		{"65536", Ports{}, true},
		{"http", Ports{}, true},
	}
	for _, tt := range tests {
		got, err := ParsePorts(tt.in)
		if (err != nil) != tt.wantErr {
			t.Errorf("ParsePorts(%q): got error %v, want error %v", tt.in, err, tt.wantErr)
			continue
		}
		if diff := cmp.Diff(tt.want, got); diff != "" {
			t.Errorf("ParsePorts(%q) (-want +got):\n%s", tt.in, diff)
		}
		if err == nil {
			if back, _ := ParsePorts(got.String()); !cmp.Equal(back, got) {
				t.Errorf("ParsePorts(%q).String() = %q does not read back", tt.in, got.String())
			}
		}
	}
	cidrs, err := ParseCIDRs("10.0.0.0/8, 169.254.169.254")
	if err != nil {
		t.Fatal(err)
	}
	if want := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("169.254.169.254/32")}; !cmp.Equal(cidrs, want, cmp.Comparer(func(a, b netip.Prefix) bool { return a == b })) {
		t.Errorf("ParseCIDRs: got %v, want %v", cidrs, want)
	}
	if _, err := ParseCIDRs("10.0.0.0/33"); err == nil {
		t.Error("ParseCIDRs(10.0.0.0/33): got no error")
	}
}

// uncomment drops the comment lines of iptables-restore input or
// iptables-save output.
func uncomment(b []byte) string {
	var out []string
	for l := range strings.SplitSeq(string(b), "\n") {
		if l != "" && !strings.HasPrefix(l, "#") {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

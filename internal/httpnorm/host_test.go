package httpnorm

import (
	"strings"
	"testing"
)

func TestHost(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    string
		wantErr bool
	}{
		{name: "already normal", in: "example.com", want: "example.com"},
		{name: "uppercase and trailing dot", in: "Example.COM.", want: "example.com"},
		{name: "port", in: "example.com:8080", want: "example.com"},
		{name: "port with leading zero", in: "example.com:080", want: "example.com"},
		{name: "max port", in: "example.com:65535", want: "example.com"},
		{name: "trailing dot and port", in: "example.com.:443", want: "example.com"},
		{name: "single label", in: "localhost", want: "localhost"},
		{name: "underscore", in: "_svc._tcp.example.com", want: "_svc._tcp.example.com"},
		{name: "punycode", in: "xn--bcher-kva.example", want: "xn--bcher-kva.example"},
		{name: "leading digit label", in: "1a.example.com", want: "1a.example.com"},
		{name: "ipv4", in: "127.0.0.1", want: "127.0.0.1"},
		{name: "ipv4 port", in: "10.0.0.1:15006", want: "10.0.0.1"},
		{name: "ipv4 trailing dot", in: "10.0.0.1.", want: "10.0.0.1"},
		{name: "ipv6 port", in: "[::1]:80", want: "[::1]"},
		{name: "ipv6", in: "[::1]", want: "[::1]"},
		{name: "ipv6 long form", in: "[0:0:0:0:0:0:0:1]", want: "[::1]"},
		{name: "ipv6 uppercase", in: "[2001:DB8::A]:443", want: "[2001:db8::a]"},
		{name: "ipv6 mapped ipv4", in: "[::FFFF:10.0.0.1]", want: "[::ffff:10.0.0.1]"},

		{name: "userinfo", in: "a@b", wantErr: true},
		{name: "userinfo with port", in: "user:pass@example.com:80", wantErr: true},
		{name: "empty", in: "", wantErr: true},
		{name: "only dot", in: ".", wantErr: true},
		{name: "only port", in: ":80", wantErr: true},
		{name: "space", in: "exa mple", wantErr: true},
		{name: "tab", in: "example.com\t", wantErr: true},
		{name: "leading space", in: " example.com", wantErr: true},
		{name: "null", in: "example.com\x00.evil", wantErr: true},
		{name: "CRLF", in: "example.com\r\nX: y", wantErr: true},
		{name: "DEL", in: "example\x7f.com", wantErr: true},
		{name: "non-ASCII", in: "bücher.example", wantErr: true},
		{name: "port out of range", in: "example.com:99999", wantErr: true},
		{name: "port too long", in: "example.com:000080", wantErr: true},
		{name: "port zero", in: "example.com:0", wantErr: true},
		{name: "empty port", in: "example.com:", wantErr: true},
		{name: "port sign", in: "example.com:+80", wantErr: true},
		{name: "port hex", in: "example.com:0x50", wantErr: true},
		{name: "two ports", in: "example.com:80:80", wantErr: true},
		{name: "unbracketed ipv6", in: "::1", wantErr: true},
		{name: "two trailing dots", in: "example.com..", wantErr: true},
		{name: "empty label", in: "a..b", wantErr: true},
		{name: "leading dot", in: ".example.com", wantErr: true},
		{name: "label too long", in: strings.Repeat("a", 64) + ".com", wantErr: true},
		{name: "name too long", in: strings.Repeat("a.", 127) + "com", wantErr: true},
		{name: "comma", in: "a.com,b.com", wantErr: true},
		{name: "percent", in: "ex%61mple.com", wantErr: true},
		{name: "slash", in: "example.com/evil", wantErr: true},
		{name: "backslash", in: `example.com\evil`, wantErr: true},
		{name: "question mark", in: "example.com?x", wantErr: true},
		{name: "hash", in: "example.com#x", wantErr: true},
		{name: "short ipv4", in: "127.1", wantErr: true},
		{name: "hex ipv4", in: "0x7f.0.0.1", wantErr: true},
		{name: "octal ipv4", in: "0177.0.0.1", wantErr: true},
		{name: "decimal ipv4", in: "2130706433", wantErr: true},
		{name: "leading zero ipv4", in: "10.0.0.01", wantErr: true},
		{name: "ipv4 too big", in: "256.0.0.1", wantErr: true},
		{name: "numeric last label", in: "example.1", wantErr: true},
		{name: "hex last label", in: "example.0x1", wantErr: true},
		{name: "bare hex prefix", in: "example.0x", wantErr: true},
		{name: "ipv6 unclosed", in: "[::1", wantErr: true},
		{name: "ipv6 junk after", in: "[::1]x", wantErr: true},
		{name: "ipv6 empty port", in: "[::1]:", wantErr: true},
		{name: "ipv6 bad port", in: "[::1]:99999", wantErr: true},
		{name: "ipv6 zone", in: "[fe80::1%25eth0]", wantErr: true},
		{name: "ipv4 in brackets", in: "[127.0.0.1]", wantErr: true},
		{name: "ipvfuture", in: "[v1.x]", wantErr: true},
		{name: "empty brackets", in: "[]", wantErr: true},
		{name: "ipv6 trailing dot", in: "[::1].", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Host(tt.in)
			if tt.wantErr {
				if ReasonOf(err) != ReasonBadHost {
					t.Fatalf("Host(%q) = %q, %v; want a %q error", tt.in, got, err, ReasonBadHost)
				}
				return
			}
			if err != nil {
				t.Fatalf("Host(%q): got error %v, want %q", tt.in, err, tt.want)
			}
			if got != tt.want {
				t.Errorf("Host(%q): got %q, want %q", tt.in, got, tt.want)
			}
			if again, err := Host(got); err != nil || again != got {
				t.Errorf("Host(%q) = %q, %v; want %q (idempotent)", got, again, err, got)
			}
		})
	}
}

func TestHostNormalDoesNotAllocate(t *testing.T) {
	for _, in := range []string{"example.com", "10.0.0.1", "[::1]", "orders.default.svc.cluster.local"} {
		allocs := testing.AllocsPerRun(100, func() {
			_, _ = Host(in)
		})
		if allocs != 0 {
			t.Errorf("Host(%q): got %v allocations, want 0", in, allocs)
		}
	}
}

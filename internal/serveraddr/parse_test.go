package serveraddr

import (
	"fmt"
	"net"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParse(t *testing.T) {
	tests := []struct {
		name   string
		values []string
		want   []string
	}{
		{"one", []string{"127.0.0.1:8443"}, []string{"127.0.0.1:8443"}},
		{"list", []string{"10.0.0.1:8443,10.0.0.2:8443"}, []string{"10.0.0.1:8443", "10.0.0.2:8443"}},
		{"repeated flag", []string{"10.0.0.1:8443", "10.0.0.2:8443"}, []string{"10.0.0.1:8443", "10.0.0.2:8443"}},
		{"repeated lists keep order", []string{"c:1,a:1", "b:1"}, []string{"c:1", "a:1", "b:1"}},
		{"spaces around entries", []string{" a.example:8443 , b.example:8443 "}, []string{"a.example:8443", "b.example:8443"}},
		{"ipv6", []string{"[fd00::1]:8443,[::1]:8443"}, []string{"[fd00::1]:8443", "[::1]:8443"}},
		{"ipv6 with zone", []string{"[fe80::1%eth0]:8443"}, []string{"[fe80::1%eth0]:8443"}},
		{"ipv4-mapped ipv6", []string{"[::ffff:10.0.0.1]:8443"}, []string{"[::ffff:10.0.0.1]:8443"}},
		{"dns names", []string{"cp-0.cp.trustmesh.svc.cluster.local.:8443,localhost:8443,_grpc.example:1"},
			[]string{"cp-0.cp.trustmesh.svc.cluster.local.:8443", "localhost:8443", "_grpc.example:1"}},
		{"highest port", []string{"a:65535"}, []string{"a:65535"}},
		{"as many as allowed", []string{strings.Join(nAddrs(MaxAddrs), ",")}, nAddrs(MaxAddrs)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Parse(tt.values...)
			if err != nil {
				t.Fatalf("Parse(%q): %v", tt.values, err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Parse(%q) (-want +got):\n%s", tt.values, diff)
			}
		})
	}
}

func TestParseRefuses(t *testing.T) {
	tests := []struct {
		name   string
		values []string
		// want are substrings of the error: the entry, what is wrong.
		want []string
	}{
		{"nothing", nil, []string{"no server address given", "e.g. 10.0.0.1:8443"}},
		{"empty flag", []string{""}, []string{"no server address given"}},
		{"only spaces", []string{" ", " "}, []string{"no server address given"}},
		{"empty entry", []string{"a:1,,b:1"}, []string{"server address 2 is empty", "e.g. 10.0.0.1:8443"}},
		{"trailing comma", []string{"a:1,"}, []string{"server address 2 is empty"}},
		{"leading comma", []string{",a:1"}, []string{"server address 1 is empty"}},
		{"empty second flag", []string{"a:1", ""}, []string{"server address 2 is empty"}},
		{"no port", []string{"a:1,10.0.0.2"}, []string{`server address 2 "10.0.0.2"`, "missing :PORT", "e.g. 10.0.0.1:8443"}},
		{"no port ipv6", []string{"[fd00::1]"}, []string{`"[fd00::1]"`, "missing :PORT"}},
		{"empty port", []string{"a:"}, []string{`port ""`}},
		{"port zero", []string{"a:0"}, []string{`port "0" is not a number from 1 to 65535`}},
		{"port too big", []string{"a:65536"}, []string{`port "65536"`}},
		{"named port", []string{"a:https"}, []string{`port "https"`}},
		{"signed port", []string{"a:+80"}, []string{`port "+80"`}},
		{"no host", []string{":8443"}, []string{`":8443"`, "missing HOST"}},
		{"ipv6 without brackets", []string{"fd00::1:8443"}, []string{`"fd00::1:8443"`, "too many colons (an IPv6 address must be in brackets)"}},
		{"host and two ports", []string{"a:1:2"}, []string{"too many colons"}},
		{"zone with a space", []string{"[fe80::1%a b]:1"}, []string{`zone "a b"`}},
		{"ipv4 in brackets", []string{"[10.0.0.1]:8443"}, []string{"brackets are for IPv6 addresses only"}},
		{"name in brackets", []string{"[cp.example]:8443"}, []string{"not an IPv6 address"}},
		{"unclosed bracket", []string{"[fd00::1:8443"}, []string{`"[fd00::1:8443"`, "missing ']'"}},
		{"scheme", []string{"https://cp.example:8443"}, []string{`"https://cp.example:8443"`}},
		{"path", []string{"cp.example:8443/x"}, []string{`port "8443/x"`}},
		{"space inside", []string{"cp example:8443"}, []string{"neither an IP address nor a DNS name"}},
		{"empty label", []string{"cp..example:8443"}, []string{"empty label"}},
		{"leading hyphen", []string{"-cp.example:8443"}, []string{"starting or ending with '-'"}},
		{"long label", []string{strings.Repeat("a", 64) + ":1"}, []string{"longer than 63"}},
		{"long name", []string{strings.Repeat("a.", 127) + "a:1"}, []string{"longer than 253"}},
		{"short ipv4", []string{"10.0.0:8443"}, []string{"not a valid IPv4 address"}},
		{"octal ipv4", []string{"010.0.0.1:8443"}, []string{"not a valid IPv4 address"}},
		{"duplicate", []string{"a:1,b:1,a:1"}, []string{`server address 3 "a:1" is the same as address 1`}},
		{"duplicate across flags", []string{"a:1", "a:1"}, []string{`server address 2 "a:1" is the same as address 1`}},
		{"duplicate name case", []string{"CP.example:1,cp.example.:1"}, []string{"is the same as address 1"}},
		{"duplicate ipv6 spelling", []string{"[fd00::1]:1,[fd00:0::1]:1"}, []string{"is the same as address 1"}},
		{"duplicate port spelling", []string{"a:80,a:080"}, []string{"is the same as address 1"}},
		{"too many", []string{strings.Join(nAddrs(MaxAddrs+1), ",")}, []string{fmt.Sprintf("more than %d server addresses", MaxAddrs)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Parse(tt.values...)
			if err == nil {
				t.Fatalf("Parse(%q) = %q, want an error", tt.values, got)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Parse(%q) error %q, want it to contain %q", tt.values, err, w)
				}
			}
		})
	}
}

func nAddrs(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("10.0.0.%d:8443", i+1)
	}
	return out
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"127.0.0.1:8443", "a:1,b:2", " a:1 , b:2 ", "[fd00::1]:8443", "[fe80::1%eth0]:1", "fd00::1:8443",
		"a:1,,b:1", "a:1,a:1", "[10.0.0.1]:1", ":1", "a:0", "a:65536", "cp.example.:8443", "010.0.0.1:1", "",
	} {
		f.Add(s, "")
	}
	f.Add("a:1", "b:1")
	f.Fuzz(func(t *testing.T, v1, v2 string) {
		got, err := Parse(v1, v2)
		if err != nil {
			return
		}
		if len(got) == 0 || len(got) > MaxAddrs {
			t.Fatalf("Parse(%q, %q) = %d addresses, want 1 to %d", v1, v2, len(got), MaxAddrs)
		}
		for _, a := range got {
			if a == "" || strings.Contains(a, ",") || strings.IndexFunc(a, func(r rune) bool { return r <= ' ' || r > '~' }) >= 0 {
				t.Fatalf("Parse(%q, %q) gave entry %q: empty, a comma, or not printable ASCII", v1, v2, a)
			}
			if _, _, err := net.SplitHostPort(a); err != nil {
				t.Fatalf("Parse(%q, %q) gave entry %q that is not HOST:PORT: %v", v1, v2, a, err)
			}
		}
		// The result is valid input and parses to itself.
		again, err := Parse(got...)
		if err != nil {
			t.Fatalf("Parse(Parse(%q, %q)) = %v", v1, v2, err)
		}
		if diff := cmp.Diff(got, again); diff != "" {
			t.Fatalf("Parse not idempotent (-first +second):\n%s", diff)
		}
		if joined, err := Parse(strings.Join(got, ",")); err != nil || !cmp.Equal(got, joined) {
			t.Fatalf("Parse(joined %q) = %q, %v", got, joined, err)
		}
	})
}

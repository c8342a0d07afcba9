package proxy

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParseInbound(t *testing.T) {
	tests := []struct {
		in      string
		want    InboundSpec
		wantErr string
	}{
		{in: "0.0.0.0:15006=127.0.0.1:8080", want: InboundSpec{Listen: "0.0.0.0:15006", App: "127.0.0.1:8080"}},
		{in: ":15006=localhost:8080", want: InboundSpec{Listen: ":15006", App: "localhost:8080"}},
		{in: "[::1]:15006=[::1]:8080", want: InboundSpec{Listen: "[::1]:15006", App: "[::1]:8080"}},
		{in: "15006=127.0.0.1:8080", wantErr: "listen address"},
		{in: ":15006", wantErr: "want LISTEN=APP_ADDR"},
		{in: ":15006=:8080", wantErr: "host is empty"},
		{in: ":15006=127.0.0.1:0", wantErr: "want a number from 1 to 65535"},
		{in: ":15006=127.0.0.1:http", wantErr: "want a number"},
		{in: ":99999=127.0.0.1:80", wantErr: "listen address"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseInbound(tt.in)
			checkErr(t, err, tt.wantErr)
			if diff := cmp.Diff(tt.want, got); tt.wantErr == "" && diff != "" {
				t.Errorf("ParseInbound(%q) mismatch (-want +got):\n%s", tt.in, diff)
			}
		})
	}
}

func TestParseOutbound(t *testing.T) {
	tests := []struct {
		in      string
		want    OutboundSpec
		wantErr string
	}{
		{in: "127.0.0.1:9001=orders", want: OutboundSpec{Listen: "127.0.0.1:9001", Service: "orders"}},
		{in: "127.0.0.1:9001=orders.shop", want: OutboundSpec{Listen: "127.0.0.1:9001", Service: "orders", Namespace: "shop"}},
		{in: "127.0.0.1:9001=orders.shop:8080", want: OutboundSpec{Listen: "127.0.0.1:9001", Service: "orders", Namespace: "shop", Port: 8080}},
		{in: "127.0.0.1:9001=orders:8080", want: OutboundSpec{Listen: "127.0.0.1:9001", Service: "orders", Port: 8080}},
		{in: "127.0.0.1:9001", wantErr: "want LISTEN=SERVICE"},
		{in: "127.0.0.1:9001=", wantErr: "service"},
		{in: "127.0.0.1:9001=Orders", wantErr: "DNS label"},
		{in: "127.0.0.1:9001=orders.shop.svc", wantErr: "namespace"},
		{in: "127.0.0.1:9001=orders:0", wantErr: "port"},
		{in: "127.0.0.1:9001=orders:70000", wantErr: "port"},
		{in: "nope=orders", wantErr: "listen address"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseOutbound(tt.in)
			checkErr(t, err, tt.wantErr)
			if diff := cmp.Diff(tt.want, got); tt.wantErr == "" && diff != "" {
				t.Errorf("ParseOutbound(%q) mismatch (-want +got):\n%s", tt.in, diff)
			}
		})
	}
}

func TestNewValidatesAndBinds(t *testing.T) {
	c := newTestCA(t, "example.org")
	src := newFakeSource(c.mint(t, serverID), c.bundle())
	t.Run("invalid config", func(t *testing.T) {
		_, err := New(Config{Source: src, TrustDomain: td})
		checkErr(t, err, "at least one")
		_, err = New(Config{TrustDomain: td, Inbound: []InboundSpec{{Listen: "127.0.0.1:0", App: "127.0.0.1:1"}}})
		checkErr(t, err, "source is required")
	})
	t.Run("port conflict fails at start", func(t *testing.T) {
		p := startProxy(t, Config{Source: src, Inbound: []InboundSpec{{Listen: "127.0.0.1:0", App: "127.0.0.1:1"}}})
		_, err := New(Config{Source: src, TrustDomain: td, Admin: "127.0.0.1:0", Inbound: []InboundSpec{{Listen: inboundAddr(p), App: "127.0.0.1:1"}}})
		checkErr(t, err, "inbound listener")
	})
	t.Run("close without run", func(t *testing.T) {
		p, err := New(Config{Source: src, TrustDomain: td, Inbound: []InboundSpec{{Listen: "127.0.0.1:0", App: "127.0.0.1:1"}}})
		if err != nil {
			t.Fatal(err)
		}
		if err := p.Close(); err != nil {
			t.Fatal(err)
		}
		if err := p.Close(); err != nil {
			t.Fatalf("second Close: %v", err)
		}
	})
}

func checkErr(t *testing.T, err error, want string) {
	t.Helper()
	switch {
	case want == "" && err != nil:
		t.Fatalf("got error %v, want none", err)
	case want != "" && err == nil:
		t.Fatalf("got no error, want one containing %q", want)
	case want != "" && !strings.Contains(err.Error(), want):
		t.Fatalf("got error %q, want one containing %q", err, want)
	}
}

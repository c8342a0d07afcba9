package proxy

import (
	"bytes"
	"net"
	"testing"
	"time"
)

func TestSniff(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want kind
	}{
		{name: "empty", in: "", want: kindUnknown},
		{name: "tls client hello", in: "\x16\x03\x01\x02\x00\x01", want: kindTLS},
		{name: "tls one byte", in: "\x16", want: kindUnknown},
		{name: "0x16 not tls", in: "\x16\x02", want: kindTCP},
		{name: "get", in: "GET / HTTP/1.1\r\n", want: kindHTTP1},
		{name: "get lf only", in: "GET /x HTTP/1.0\n", want: kindHTTP1},
		{name: "post partial", in: "POST /orders HTTP/1.", want: kindUnknown},
		{name: "method only", in: "DELETE", want: kindUnknown},
		{name: "absolute form", in: "GET http://orders/x?y=1 HTTP/1.1\r\n", want: kindHTTP1},
		{name: "http2 version in request line", in: "GET / HTTP/2.0\r\n", want: kindTCP},
		{name: "lowercase method", in: "get / HTTP/1.1\r\n", want: kindTCP},
		{name: "no target", in: "GET  HTTP/1.1\r\n", want: kindTCP},
		{name: "h2 preface", in: string(h2Preface), want: kindH2C},
		{name: "h2 preface partial", in: "PRI * HTTP/2", want: kindUnknown},
		{name: "PRI as http1 method", in: "PRI /x HTTP/1.1\r\n", want: kindHTTP1},
		{name: "redis", in: "*1\r\n$4\r\nPING\r\n", want: kindTCP},
		{name: "postgres startup", in: "\x00\x00\x00\x08\x04\xd2\x16\x2f", want: kindTCP},
		{name: "ssh", in: "SSH-2.0-OpenSSH_9.6\r\n", want: kindTCP},
		{name: "long method", in: "ABCDEFGHIJKLMNOPQRSTUVWXYZ / HTTP/1.1\r\n", want: kindTCP},
		{name: "bad version end", in: "GET / HTTP/1.1\rX", want: kindTCP},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := sniff([]byte(tt.in)); got != tt.want {
				t.Errorf("sniff(%q) = %v, want %v", tt.in, got, tt.want)
			}
		})
	}
}

func TestSniffConnReplaysBytes(t *testing.T) {
	tests := []struct {
		name   string
		chunks []string
		want   kind
	}{
		{name: "http in pieces", chunks: []string{"GE", "T /a", " HTTP/1.1", "\r\nHost: x\r\n\r\n"}, want: kindHTTP1},
		{name: "tls", chunks: []string{"\x16", "\x03\x01"}, want: kindTLS},
		{name: "tcp then eof", chunks: []string{"PR"}, want: kindTCP},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, b := net.Pipe()
			defer a.Close()
			go func() {
				for _, c := range tt.chunks {
					_, _ = b.Write([]byte(c))
				}
				_ = b.Close()
			}()
			k, prefix, err := sniffConn(a, time.Now().Add(5*time.Second))
			if err != nil {
				t.Fatal(err)
			}
			if k != tt.want {
				t.Errorf("kind %v, want %v", k, tt.want)
			}
			all := []byte{}
			for _, c := range tt.chunks {
				all = append(all, c...)
			}
			if !bytes.HasPrefix(all, prefix) {
				t.Errorf("prefix %q is not a prefix of the stream %q", prefix, all)
			}
		})
	}
	t.Run("silent client is tcp after the deadline", func(t *testing.T) {
		a, b := net.Pipe()
		defer a.Close()
		defer b.Close()
		k, prefix, err := sniffConn(a, time.Now().Add(20*time.Millisecond))
		if err != nil || k != kindTCP || len(prefix) != 0 {
			t.Errorf("got %v %q %v, want tcp with no bytes", k, prefix, err)
		}
	})
}

// FuzzSniff checks that the sniffer never panics, never reads past its
// input, and that a decision, once made on a prefix, holds for the longer
// input (below the sniff limit).
func FuzzSniff(f *testing.F) {
	for _, s := range []string{
		"GET / HTTP/1.1\r\n", "\x16\x03\x01", string(h2Preface), "PRI * HTTP/1.1\r\n",
		"*1\r\n$4\r\nPING\r\n", "POST http://x/ HTTP/1.0\n", "", "\x16",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) >= sniffLimit {
			b = b[:sniffLimit-1]
		}
		full := sniff(b)
		for i := 0; i <= len(b); i++ {
			if k := sniff(b[:i]); k != kindUnknown {
				if k != full {
					t.Fatalf("sniff(%q) = %v but sniff(%q) = %v", b[:i], k, b, full)
				}
				break
			}
		}
	})
}

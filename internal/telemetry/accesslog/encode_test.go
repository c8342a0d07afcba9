package accesslog

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 123456789, time.FixedZone("CET", 3600))

func fullEntry() Entry {
	return Entry{
		Time:            t0,
		Direction:       "inbound",
		Protocol:        "HTTP/2",
		SourceID:        "spiffe://example.org/ns/shop/sa/web",
		DestinationID:   "spiffe://example.org/ns/shop/sa/orders",
		SourceAddr:      "10.0.0.7:53412",
		DestinationAddr: "10.0.0.9:8443",
		Service:         "orders",
		Method:          "POST",
		Path:            "/orders/7/items",
		Status:          201,
		BytesIn:         1234,
		BytesOut:        56,
		Duration:        1234567 * time.Nanosecond,
		Decision:        "allow",
		Policy:          "shop/allow-web",
		Reason:          "allow-match",
		TLSGroup:        "X25519MLKEM768",
		RequestID:       "c0ffee-1",
		TraceID:         "4bf92f3577b34da6a3ce929d0e0e4736",
	}
}

func TestEncodeGolden(t *testing.T) {
	tests := []struct {
		name  string
		entry Entry
	}{
		{"http-inbound-allow", fullEntry()},
		{"tcp-outbound", Entry{
			Time: t0, Direction: "outbound", Protocol: "TCP",
			SourceID: "spiffe://example.org/ns/shop/sa/web", DestinationID: "spiffe://example.org/ns/db/sa/postgres",
			SourceAddr: "127.0.0.1:40000", DestinationAddr: "10.0.0.12:5432", Service: "postgres.db",
			BytesIn: 4096, BytesOut: 1 << 20, Duration: 90 * time.Second, TLSGroup: "X25519MLKEM768",
		}},
		{"plaintext-deny", Entry{
			Time: t0, Direction: "inbound", Protocol: "HTTP/1.1", SourceAddr: "192.0.2.1:1234",
			Service: "orders", Method: "DELETE", Path: "/admin", Status: 403,
			Duration: 80 * time.Microsecond, Decision: "deny", Reason: "no-allow-match",
		}},
		{"zero", Entry{}},
		{"hostile-strings", Entry{
			Time: t0, Direction: "inbound", Protocol: "HTTP/1.1", Service: "orders",
			Method: "GET\r\nX-Injected: 1", Path: "/a\"b\\c/\x1b[31mred\u202e/\xff", Status: 400,
			RequestID: "id\u2028next", Reason: "bad-path-invalid",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := append(appendEntry(nil, &tt.entry), '\n')
			if !json.Valid(got) {
				t.Fatalf("invalid JSON: %s", got)
			}
			golden := filepath.Join("testdata", tt.name+".golden")
			if *update {
				if err := os.WriteFile(golden, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test -update to create it)", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("got\n%s\nwant\n%s", got, want)
			}
		})
	}
}

// TestEncodeFieldOrder checks the documented key order and names against
// the encoder, by decoding the full entry in order.
func TestEncodeFieldOrder(t *testing.T) {
	e := fullEntry()
	dec := json.NewDecoder(bytes.NewReader(appendEntry(nil, &e)))
	if _, err := dec.Token(); err != nil {
		t.Fatal(err)
	}
	var keys []string
	for dec.More() {
		k, err := dec.Token()
		if err != nil {
			t.Fatal(err)
		}
		keys = append(keys, k.(string))
		if _, err := dec.Token(); err != nil {
			t.Fatal(err)
		}
	}
	want := []string{"time", "direction", "protocol", "source_id", "destination_id", "source_addr",
		"destination_addr", "service", "method", "path", "status", "bytes_in", "bytes_out", "duration_s",
		"decision", "policy", "reason", "tls_group", "request_id", "trace_id"}
	if diff := cmp.Diff(want, keys); diff != "" {
		t.Errorf("keys (-want +got):\n%s", diff)
	}
}

func TestEncodeValues(t *testing.T) {
	e := fullEntry()
	var got map[string]any
	if err := json.Unmarshal(appendEntry(nil, &e), &got); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"time": "2026-03-01T11:00:00.123456789Z", "direction": "inbound", "protocol": "HTTP/2",
		"source_id": e.SourceID, "destination_id": e.DestinationID, "source_addr": e.SourceAddr,
		"destination_addr": e.DestinationAddr, "service": "orders", "method": "POST", "path": e.Path,
		"status": 201.0, "bytes_in": 1234.0, "bytes_out": 56.0, "duration_s": 0.001234567,
		"decision": "allow", "policy": "shop/allow-web", "reason": "allow-match", "tls_group": "X25519MLKEM768",
		"request_id": "c0ffee-1", "trace_id": e.TraceID,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("decoded (-want +got):\n%s", diff)
	}
}

func TestEscape(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{"empty", "", `""`},
		{"plain", "/orders/7?x=1", `"/orders/7?x=1"`},
		{"quote", `a"b`, `"a\"b"`},
		{"backslash", `a\b`, `"a\\b"`},
		{"newline", "a\nb", `"a\nb"`},
		{"carriage-return", "a\rb", `"a\rb"`},
		{"tab", "a\tb", `"a\tb"`},
		{"nul", "a\x00b", `"a\u0000b"`},
		{"escape-char", "\x1b[2J", `"\u001b[2J"`},
		{"unit-separator", "\x1f", `"\u001f"`},
		{"del", "\x7f", `"\u007f"`},
		{"slash-unescaped", "</script>", `"</script>"`},
		{"html-unescaped", "<a&b>", `"<a&b>"`},
		{"utf8", "héllo, 世界, 🦀", `"héllo, 世界, 🦀"`},
		{"c1-csi", "\u009b31m", `"\u009b31m"`},
		{"c1-first", "\u0080", `"\u0080"`},
		{"latin1-nbsp-kept", "\u00a0", "\"\u00a0\""},
		{"line-separator", "a\u2028b", `"a\u2028b"`},
		{"paragraph-separator", "a\u2029b", `"a\u2029b"`},
		{"rlo", "txt\u202egpj.exe", `"txt\u202egpj.exe"`},
		{"lre-pdf", "\u202a\u202c", `"\u202a\u202c"`},
		{"isolates", "\u2066\u2067\u2068\u2069", `"\u2066\u2067\u2068\u2069"`},
		{"marks", "\u200e\u200f\u061c", `"\u200e\u200f\u061c"`},
		{"zwj-kept", "\u200d", "\"\u200d\""},
		{"invalid-byte", "a\xffb", `"a\ufffdb"`},
		{"invalid-each-byte", "\xff\xfe", `"\ufffd\ufffd"`},
		{"truncated-rune", "\xe4\xb8", `"\ufffd\ufffd"`},
		{"surrogate-half", "\xed\xa0\x80", `"\ufffd\ufffd\ufffd"`},
		{"overlong-slash", "\xc0\xaf", `"\ufffd\ufffd"`},
		{"replacement-char-kept", "\ufffd", "\"\ufffd\""},
		{"mixed", "x\"\n\xff\u202ey", `"x\"\n\ufffd\u202ey"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := string(appendQuoted(nil, tt.in))
			if got != tt.want {
				t.Errorf("appendQuoted(%q) = %s, want %s", tt.in, got, tt.want)
			}
			if !json.Valid([]byte(got)) {
				t.Errorf("appendQuoted(%q) = %s: not valid JSON", tt.in, got)
			}
		})
	}
}

// FuzzEncode checks that any entry encodes to one line of valid JSON that
// decodes to the entry's strings, with invalid UTF-8 replaced byte by
// byte as encoding/json replaces it.
func FuzzEncode(f *testing.F) {
	f.Add("inbound", "/orders/7", "spiffe://example.org/ns/a/sa/b", 200, int64(1), t0.UnixNano())
	f.Add("\x00\x1f\x7f", "\xff\xfe\xc0\xaf", "\u2028\u202e\u009b", -1, int64(-5), int64(0))
	f.Add(`"\\"`, "\xed\xa0\x80", "🦀\r\n\t", 1<<31-1, int64(1)<<62, int64(-1)<<62)
	f.Fuzz(func(t *testing.T, a, b, c string, status int, n, unixNano int64) {
		e := Entry{
			Time: time.Unix(0, unixNano), Direction: a, Protocol: b, SourceID: c, DestinationID: a,
			SourceAddr: b, DestinationAddr: c, Service: a, Method: b, Path: c, Status: status,
			BytesIn: n, BytesOut: -n, Duration: time.Duration(n), Decision: a, Policy: b, Reason: c,
			TLSGroup: a, RequestID: b, TraceID: c,
		}
		line := appendEntry(nil, &e)
		if !json.Valid(line) {
			t.Fatalf("invalid JSON: %q", line)
		}
		if bytes.IndexByte(line, '\n') >= 0 || bytes.IndexByte(line, '\r') >= 0 {
			t.Fatalf("line break in %q", line)
		}
		var got map[string]any
		if err := json.Unmarshal(line, &got); err != nil {
			t.Fatal(err)
		}
		for key, in := range map[string]string{"direction": a, "protocol": b, "path": c} {
			want := roundTrip(t, in)
			if in == "" {
				if _, ok := got[key]; ok {
					t.Errorf("%s: empty string written", key)
				}
				continue
			}
			if got[key] != want {
				t.Errorf("%s: got %q, want %q", key, got[key], want)
			}
		}
		if got["status"] != float64(status) {
			t.Errorf("status: got %v, want %d", got["status"], status)
		}
		if _, err := time.Parse(time.RFC3339Nano, got["time"].(string)); err != nil {
			t.Errorf("time: %v", err)
		}
	})
}

// roundTrip is what encoding/json decodes s to after encoding it.
func roundTrip(t *testing.T, s string) string {
	t.Helper()
	b, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	var out string
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

func BenchmarkEncode(b *testing.B) {
	e := fullEntry()
	buf := make([]byte, 0, 1024)
	b.ReportAllocs()
	for b.Loop() {
		buf = appendEntry(buf[:0], &e)
	}
	b.SetBytes(int64(len(buf)))
}

func BenchmarkEncodeHostile(b *testing.B) {
	e := fullEntry()
	e.Path = strings.Repeat("/a\x1b\u202e\xff", 20)
	buf := make([]byte, 0, 1024)
	b.ReportAllocs()
	for b.Loop() {
		buf = appendEntry(buf[:0], &e)
	}
	b.SetBytes(int64(len(buf)))
}

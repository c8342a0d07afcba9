package httpnorm

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
)

const hostileFile = "testdata/hostile-paths.tsv"

// hostileCase is one row of testdata/hostile-paths.tsv.
type hostileCase struct {
	line    int
	target  string // request-target, as sent
	want    string // normalized path, if wantErr is ""
	wantErr string // the Reason, for a REJECT row
	comment string
}

// readHostile parses testdata/hostile-paths.tsv. Its format is documented
// in the file's header; a malformed row fails the test rather than being
// skipped, so a typo cannot silently drop a case.
func readHostile(tb testing.TB) []hostileCase {
	tb.Helper()
	f, err := os.Open(hostileFile)
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	var cases []hostileCase
	sc := bufio.NewScanner(f)
	for line := 1; sc.Scan(); line++ {
		text := sc.Text()
		if text == "" || strings.HasPrefix(text, "#") {
			continue
		}
		cols := strings.Split(text, "\t")
		if len(cols) != 3 {
			tb.Fatalf("%s:%d: got %d tab-separated columns, want 3", hostileFile, line, len(cols))
		}
		for i, c := range cols[:2] {
			if strings.HasPrefix(c, `"`) {
				u, err := strconv.Unquote(c)
				if err != nil {
					tb.Fatalf("%s:%d: column %d: %v", hostileFile, line, i+1, err)
				}
				cols[i] = u
			}
		}
		c := hostileCase{line: line, target: cols[0], want: cols[1], comment: cols[2]}
		if reason, ok := strings.CutPrefix(c.want, "REJECT:"); ok {
			c.want, c.wantErr = "", reason
		}
		cases = append(cases, c)
	}
	if err := sc.Err(); err != nil {
		tb.Fatal(err)
	}
	return cases
}

// splitAndNormalize is what the proxy does with a request-target.
func splitAndNormalize(target string, opt Options) (string, error) {
	p, _, err := Split(target)
	if err != nil {
		return "", err
	}
	return Path(p, opt)
}

func TestHostilePaths(t *testing.T) {
	cases := readHostile(t)
	if len(cases) < 60 {
		t.Fatalf("got %d cases in %s, want at least 60", len(cases), hostileFile)
	}
	for _, c := range cases {
		t.Run(fmt.Sprintf("line%d", c.line), func(t *testing.T) {
			got, err := splitAndNormalize(c.target, Options{})
			checkResult(t, c.target, got, err, c.want, c.wantErr)
			if err != nil && len(c.target) > 5 && strings.Contains(err.Error(), c.target) {
				t.Errorf("%q: error %q repeats the path", c.target, err)
			}
		})
	}
}

// checkResult compares a Path result with a wanted path or Reason.
func checkResult(t *testing.T, in, got string, err error, want, wantReason string) {
	t.Helper()
	if wantReason != "" {
		var e *Error
		if !errors.As(err, &e) {
			t.Fatalf("Path(%q) = %q, %v; want rejection %q", in, got, err, wantReason)
		}
		if e.Reason != wantReason {
			t.Errorf("Path(%q): got reason %q (%v), want %q", in, e.Reason, err, wantReason)
		}
		return
	}
	if err != nil {
		t.Fatalf("Path(%q): got error %v, want %q", in, err, want)
	}
	if got != want {
		t.Errorf("Path(%q): got %q, want %q", in, got, want)
	}
}

func TestPathOptions(t *testing.T) {
	keep := Options{EncodedSlashes: KeepEncodedSlashes}
	decode := Options{EncodedSlashes: DecodeEncodedSlashes}
	decodeAll := Options{EncodedSlashes: DecodeEncodedSlashes, Backslashes: BackslashToSlash}
	backslash := Options{Backslashes: BackslashToSlash}
	dup := Options{KeepDuplicateSlashes: true}
	params := Options{PathParams: KeepPathParams}
	lower := Options{LowercasePath: true}
	tests := []struct {
		name       string
		opt        Options
		in         string
		want       string
		wantReason string
	}{
		{name: "keep slash opaque", opt: keep, in: "/a%2fb", want: "/a%2Fb"},
		{name: "keep slash no traversal", opt: keep, in: "/public/..%2fadmin", want: "/public/..%2Fadmin"},
		{name: "keep slash encoded dots", opt: keep, in: "/a/%2e%2e%2fadmin", want: "/a/..%2Fadmin"},
		{name: "keep backslash opaque", opt: keep, in: "/a%5cb", want: "/a%5Cb"},
		{name: "keep slash not merged", opt: keep, in: "/a%2F%2F", want: "/a%2F%2F"},
		{name: "keep slash raw backslash still rejected", opt: keep, in: `/a\b`, wantReason: ReasonBackslash},

		{name: "decode slash", opt: decode, in: "/a%2fb", want: "/a/b"},
		{name: "decode slash traversal", opt: decode, in: "/public/..%2fadmin", want: "/admin"},
		{name: "decode slash whole traversal", opt: decode, in: "/public%2F..%2Fadmin", want: "/admin"},
		{name: "decode slash merged", opt: decode, in: "/a%2F%2F/b", want: "/a/b"},
		{name: "decode slash above root", opt: decode, in: "/%2F..%2Fadmin", wantReason: ReasonDotSegmentAboveRoot},
		{name: "decode backslash rejected by backslash policy", opt: decode, in: "/a%5cb", wantReason: ReasonBackslash},
		{name: "decode backslash to slash", opt: decodeAll, in: "/a%5cb", want: "/a/b"},
		{name: "decode backslash traversal", opt: decodeAll, in: "/public%5c..%5cadmin", want: "/admin"},

		{name: "backslash to slash", opt: backslash, in: `/a\b`, want: "/a/b"},
		{name: "backslash traversal", opt: backslash, in: `/public\..\admin`, want: "/admin"},
		{name: "backslash merged", opt: backslash, in: `/\\admin`, want: "/admin"},
		{name: "backslash above root", opt: backslash, in: `/\..\admin`, wantReason: ReasonDotSegmentAboveRoot},
		{name: "backslash encoded still rejected", opt: backslash, in: "/a%5Cb", wantReason: ReasonEncodedSlash},

		{name: "dup leading", opt: dup, in: "//admin", want: "//admin"},
		{name: "dup inside", opt: dup, in: "/a//b", want: "/a//b"},
		{name: "dup dot-dot removes empty segment", opt: dup, in: "/a//../b", want: "/a/b"},
		{name: "dup dot-dot to root", opt: dup, in: "//..", want: "/"},
		{name: "dup dot then empty", opt: dup, in: "/.//a", want: "//a"},
		{name: "dup above root", opt: dup, in: "/./../a", wantReason: ReasonDotSegmentAboveRoot},
		{name: "dup already normal", opt: dup, in: "/a/", want: "/a/"},

		{name: "params kept", opt: params, in: "/admin;x", want: "/admin;x"},
		{name: "params in middle", opt: params, in: "/a;b=1/c", want: "/a;b=1/c"},
		{name: "params empty name", opt: params, in: "/;x", want: "/;x"},
		{name: "params encoded kept encoded", opt: params, in: "/a%3bb", want: "/a%3Bb"},
		{name: "params tomcat dot-dot", opt: params, in: "/public/..;/admin", wantReason: ReasonPathParameter},
		{name: "params tomcat dot", opt: params, in: "/public/.;x/admin", wantReason: ReasonPathParameter},
		{name: "params encoded tomcat dot-dot", opt: params, in: "/public/..%3b/admin", wantReason: ReasonPathParameter},
		{name: "params tomcat dot-dot at end", opt: params, in: "/..;", wantReason: ReasonPathParameter},
		{name: "params encoded dots and param", opt: params, in: "/a/%2e%2e;x", wantReason: ReasonPathParameter},
		{name: "params dots inside name", opt: params, in: "/a..;x", want: "/a..;x"},

		{name: "lower letters", opt: lower, in: "/ADMIN", want: "/admin"},
		{name: "lower encoded letters", opt: lower, in: "/%41DMIN", want: "/admin"},
		{name: "lower keeps hex uppercase", opt: lower, in: "/A%7cB", want: "/a%7Cb"},
		{name: "lower keeps slash hex uppercase", opt: Options{LowercasePath: true, EncodedSlashes: KeepEncodedSlashes}, in: "/A%2fB", want: "/a%2Fb"},
		{name: "lower non-ASCII not folded", opt: lower, in: "/CAF%C3%89", want: "/caf%C3%89"},
		{name: "lower kelvin sign", opt: lower, in: "/%E2%84%AAey", wantReason: ReasonAmbiguousCase},
		{name: "lower long s", opt: lower, in: "/admin%C5%BF", wantReason: ReasonAmbiguousCase},
		{name: "lower dotted capital i", opt: lower, in: "/adm%C4%B0n", wantReason: ReasonAmbiguousCase},
		{name: "lower dotless i", opt: lower, in: "/adm%C4%B1n", wantReason: ReasonAmbiguousCase},
		{name: "lower already normal", opt: lower, in: "/admin/x", want: "/admin/x"},
		{name: "case-sensitive kelvin is data", opt: Options{}, in: "/%E2%84%AAey", want: "/%E2%84%AAey"},

		{name: "unknown slash policy is strict", opt: Options{EncodedSlashes: 9}, in: "/a%2F", wantReason: ReasonEncodedSlash},
		{name: "unknown backslash policy is strict", opt: Options{Backslashes: 9}, in: `/a\`, wantReason: ReasonBackslash},
		{name: "unknown param policy is strict", opt: Options{PathParams: 9}, in: "/a;", wantReason: ReasonPathParameter},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Path(tt.in, tt.opt)
			checkResult(t, tt.in, got, err, tt.want, tt.wantReason)
			if err == nil {
				again, err := Path(got, tt.opt)
				if err != nil || again != got {
					t.Errorf("Path(%q) = %q, %v; want %q (idempotent)", got, again, err, got)
				}
			}
		})
	}
}

func TestSplit(t *testing.T) {
	tests := []struct {
		name       string
		in         string
		wantPath   string
		wantQuery  string
		wantReason string
	}{
		{name: "no query", in: "/a/b", wantPath: "/a/b"},
		{name: "query", in: "/a/b?x=1&y=2", wantPath: "/a/b", wantQuery: "x=1&y=2"},
		{name: "empty query", in: "/a?", wantPath: "/a"},
		{name: "second question mark is query", in: "/a?b?c", wantPath: "/a", wantQuery: "b?c"},
		{name: "query kept raw", in: "/a?%2e%2e/../x", wantPath: "/a", wantQuery: "%2e%2e/../x"},
		{name: "fragment", in: "/a#b", wantReason: ReasonFragment},
		{name: "fragment in query", in: "/a?x#b", wantReason: ReasonFragment},
		{name: "empty", in: "", wantReason: ReasonNotOriginForm},
		{name: "asterisk", in: "*", wantReason: ReasonNotOriginForm},
		{name: "absolute", in: "http://example.com/a", wantReason: ReasonNotOriginForm},
		{name: "authority", in: "example.com:443", wantReason: ReasonNotOriginForm},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path, query, err := Split(tt.in)
			if tt.wantReason != "" {
				if got := ReasonOf(err); got != tt.wantReason {
					t.Fatalf("Split(%q): got reason %q (%v), want %q", tt.in, got, err, tt.wantReason)
				}
				return
			}
			if err != nil {
				t.Fatalf("Split(%q): got error %v", tt.in, err)
			}
			if path != tt.wantPath || query != tt.wantQuery {
				t.Errorf("Split(%q): got %q, %q, want %q, %q", tt.in, path, query, tt.wantPath, tt.wantQuery)
			}
		})
	}
}

// TestPathNormalDoesNotAllocate holds Path to its promise that the common
// case, a path that is already normal, is free: the input comes back as is.
func TestPathNormalDoesNotAllocate(t *testing.T) {
	tests := []struct {
		name string
		opt  Options
		in   string
	}{
		{name: "root", in: "/"},
		{name: "api", in: "/api/v1/orders/12345/items"},
		{name: "trailing slash", in: "/static/css/"},
		{name: "escapes", in: "/files/caf%C3%A9%20menu.pdf"},
		{name: "sub-delims", in: "/a:b@c!$&'()*+,="},
		{name: "dots in names", in: "/.well-known/a..b/..."},
		{name: "keep slashes", opt: Options{EncodedSlashes: KeepEncodedSlashes}, in: "/repos/a%2Fb"},
		{name: "keep params", opt: Options{PathParams: KeepPathParams}, in: "/a;v=1/b"},
		{name: "keep duplicates", opt: Options{KeepDuplicateSlashes: true}, in: "/a//b"},
		{name: "lowercase", opt: Options{LowercasePath: true}, in: "/api/v1/orders"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Path(tt.in, tt.opt)
			if err != nil || got != tt.in {
				t.Fatalf("Path(%q) = %q, %v; want it unchanged", tt.in, got, err)
			}
			allocs := testing.AllocsPerRun(100, func() {
				_, _ = Path(tt.in, tt.opt)
			})
			if allocs != 0 {
				t.Errorf("Path(%q): got %v allocations, want 0", tt.in, allocs)
			}
		})
	}
}

func TestErrorAndReasonOf(t *testing.T) {
	_, err := Path("/admin%00", Options{})
	wrapped := fmt.Errorf("normalize request path: %w", err)
	if got := ReasonOf(wrapped); got != ReasonNullByte {
		t.Errorf("ReasonOf(%v): got %q, want %q", wrapped, got, ReasonNullByte)
	}
	if got, want := err.Error(), "null-byte: '%00' at byte 6"; got != want {
		t.Errorf("Error(): got %q, want %q", got, want)
	}
	if got := ReasonOf(errors.New("other")); got != "" {
		t.Errorf("ReasonOf(other): got %q, want \"\"", got)
	}
	if got := ReasonOf(nil); got != "" {
		t.Errorf("ReasonOf(nil): got %q, want \"\"", got)
	}
}

func BenchmarkPath(b *testing.B) {
	benchmarks := []struct {
		name string
		in   string
	}{
		{name: "normal", in: "/api/v1/orders/12345/items/67890"},
		{name: "dirty", in: "//api/./v1/%6frders/x/../12345/items%2d%7c/67890/"},
	}
	for _, bm := range benchmarks {
		b.Run(bm.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(bm.in)))
			for b.Loop() {
				if _, err := Path(bm.in, Options{}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

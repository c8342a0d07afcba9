package httpnorm

import (
	"net/url"
	"path"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"
)

var allReasons = []string{
	ReasonNotOriginForm, ReasonFragment, ReasonControlCharacter, ReasonNullByte,
	ReasonNonASCII, ReasonInvalidPercent, ReasonInvalidUTF8, ReasonEncodedSlash,
	ReasonBackslash, ReasonPathParameter, ReasonDotSegmentAboveRoot,
	ReasonAmbiguousCase, ReasonBadHost,
}

// fuzzOptions maps a fuzzed byte to Options, so that every combination is
// explored; 0 is the default.
func fuzzOptions(b byte) Options {
	return Options{
		EncodedSlashes:       SlashPolicy(b & 3 % 3),
		Backslashes:          BackslashPolicy(b >> 2 & 1),
		KeepDuplicateSlashes: b&8 != 0,
		PathParams:           ParamPolicy(b >> 4 & 1),
		LowercasePath:        b&32 != 0,
	}
}

// FuzzPath checks the properties the proxy relies on: a normalized path is a
// fixed point, has no dot segments, decodes to valid UTF-8 without controls,
// and (with the default options) has none of the constructs the default
// rejects. It also checks that spelling the result differently (escaping
// unreserved characters, lowercase hex) normalizes to the same result, which
// is what makes a policy match one path instead of many.
func FuzzPath(f *testing.F) {
	for _, c := range readHostile(f) {
		p, _, _ := strings.Cut(c.target, "?")
		f.Add(p, byte(0))
		f.Add(p, byte(0xff))
	}
	f.Fuzz(func(t *testing.T, in string, flags byte) {
		opt := fuzzOptions(flags)
		p, err := Path(in, opt)
		if err != nil {
			if r := ReasonOf(err); !slices.Contains(allReasons, r) {
				t.Fatalf("Path(%q): got error %v with unknown reason %q", in, err, r)
			}
			return
		}
		if again, err := Path(p, opt); err != nil || again != p {
			t.Fatalf("Path(%q) = %q; Path(%q) = %q, %v; want idempotent (opt %+v)", in, p, p, again, err, opt)
		}
		if p == "" || p[0] != '/' {
			t.Fatalf("Path(%q) = %q, want a leading '/'", in, p)
		}
		for _, seg := range strings.Split(p, "/") {
			if seg == "." || seg == ".." {
				t.Fatalf("Path(%q) = %q, want no dot segments", in, p)
			}
		}
		for i := 0; i < len(p); i++ {
			c := p[i]
			if c == '%' && (i+2 >= len(p) || !isUpperHex(p[i+1]) || !isUpperHex(p[i+2])) {
				t.Fatalf("Path(%q) = %q, want every escape in uppercase hex", in, p)
			}
			if c <= ' ' || c >= 0x7f || strings.IndexByte("\"#<>?[]^`{|}\\", c) >= 0 {
				t.Fatalf("Path(%q) = %q, want no raw %q", in, p, c)
			}
		}
		decoded, err := url.PathUnescape(p)
		if err != nil {
			t.Fatalf("Path(%q) = %q, which does not unescape: %v", in, p, err)
		}
		if !utf8.ValidString(decoded) {
			t.Fatalf("Path(%q) = %q, which decodes to invalid UTF-8", in, p)
		}
		if strings.ContainsFunc(decoded, func(r rune) bool { return r < ' ' || r == 0x7f }) {
			t.Fatalf("Path(%q) = %q, which decodes to a control character", in, p)
		}
		if opt == (Options{}) {
			for _, bad := range []string{"//", "%2F", "%5C", ";", "%3B"} {
				if strings.Contains(p, bad) {
					t.Fatalf("Path(%q) = %q, want no %q with the default options", in, p, bad)
				}
			}
		}
		// Differential check against Go's path.Clean, which is what a Go
		// application does to the decoded path: it must see the same
		// path in the input and in the output.
		if opt.EncodedSlashes != KeepEncodedSlashes && opt.Backslashes == RejectBackslashes &&
			!opt.KeepDuplicateSlashes && !opt.LowercasePath {
			raw, err := url.PathUnescape(in)
			if err != nil {
				t.Fatalf("Path(%q) accepted what url.PathUnescape rejects: %v", in, err)
			}
			if got, want := path.Clean(decoded), path.Clean(raw); got != want {
				t.Fatalf("Path(%q) = %q: path.Clean of decoded output %q, of decoded input %q", in, p, got, want)
			}
		}
		if opt.LowercasePath && strings.ContainsFunc(p, func(r rune) bool { return 'A' <= r && r <= 'Z' && !strings.ContainsRune(upperHex, r) }) {
			t.Fatalf("Path(%q) = %q, want no uppercase letters outside escapes", in, p)
		}
		for _, variant := range []string{escapeUnreserved(p), lowerHex(p)} {
			if got, err := Path(variant, opt); err != nil || got != p {
				t.Fatalf("Path(%q) = %q; Path(%q) = %q, %v; want the same path", in, p, variant, got, err)
			}
		}
	})
}

func isUpperHex(c byte) bool {
	return '0' <= c && c <= '9' || 'A' <= c && c <= 'F'
}

// escapeUnreserved percent-encodes every unreserved character of p outside
// its escapes, in lowercase hex: another spelling of the same path.
func escapeUnreserved(p string) string {
	var b strings.Builder
	for i := 0; i < len(p); i++ {
		if p[i] == '%' && i+2 < len(p) {
			b.WriteString(p[i : i+3])
			i += 2
			continue
		}
		if c := p[i]; isUnreserved(c) {
			b.WriteByte('%')
			b.WriteByte("0123456789abcdef"[c>>4])
			b.WriteByte("0123456789abcdef"[c&0xf])
			continue
		}
		b.WriteByte(p[i])
	}
	return b.String()
}

// lowerHex rewrites the escapes of p in lowercase hex.
func lowerHex(p string) string {
	b := []byte(p)
	for i := 0; i+2 < len(b); i++ {
		if b[i] == '%' {
			b[i+1] = toLowerASCII(b[i+1])
			b[i+2] = toLowerASCII(b[i+2])
			i += 2
		}
	}
	return string(b)
}

func toLowerASCII(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

// FuzzHost checks that Host never panics, only fails with "bad-host", and
// returns a fixed point with no port, no uppercase and no trailing dot.
func FuzzHost(f *testing.F) {
	for _, s := range []string{
		"example.com", "Example.COM.", "example.com:8080", "[::1]:80", "[::1]",
		"[0:0::1]", "[::ffff:1.2.3.4]", "a@b", "", "exa mple", "example.com:99999",
		"example.com:", "127.1", "0x7f.0.0.1", "10.0.0.1:80", "[fe80::1%25eth0]",
		"_svc.example", "a..b", "example.com..",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		h, err := Host(in)
		if err != nil {
			if r := ReasonOf(err); r != ReasonBadHost {
				t.Fatalf("Host(%q): got error %v with reason %q, want %q", in, err, r, ReasonBadHost)
			}
			return
		}
		if again, err := Host(h); err != nil || again != h {
			t.Fatalf("Host(%q) = %q; Host(%q) = %q, %v; want idempotent", in, h, h, again, err)
		}
		if h == "" || strings.HasSuffix(h, ".") || strings.ToLower(h) != h {
			t.Fatalf("Host(%q) = %q, want non-empty, lowercase, no trailing dot", in, h)
		}
		if !strings.HasPrefix(h, "[") && strings.Contains(h, ":") {
			t.Fatalf("Host(%q) = %q, want no port", in, h)
		}
		if strings.HasPrefix(h, "[") && !strings.HasSuffix(h, "]") {
			t.Fatalf("Host(%q) = %q, want no port after an IPv6 literal", in, h)
		}
	})
}

package httpnorm

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Split splits an origin-form request-target ("/a/b?x=1") into its path and
// raw query, at the first '?'. A '#' anywhere is an error: clients never
// send fragments, so one is an attempt to make the proxy and the application
// disagree on where the path ends. Absolute-form ("http://h/p") and
// asterisk-form ("*") targets are rejected as "not-origin-form": the proxy
// handles them, if at all, before it gets here. The query is returned as
// received.
func Split(requestTarget string) (path, rawQuery string, err error) {
	if requestTarget == "" || requestTarget[0] != '/' {
		return "", "", rejectAt(ReasonNotOriginForm, 0, "request-target does not start with '/'")
	}
	if i := strings.IndexByte(requestTarget, '#'); i >= 0 {
		return "", "", rejectAt(ReasonFragment, i, "'#'")
	}
	path, rawQuery, _ = strings.Cut(requestTarget, "?")
	return path, rawQuery, nil
}

// Path normalizes the path of a request-target, in the escaped form it was
// received in (the path part of r.RequestURI, from Split, or
// r.URL.EscapedPath()) and without the query, by the rules of the package
// documentation. It returns the normalized path, still escaped, to match
// policies against and to forward to the application. An already-normal
// path is returned as is, without allocating.
func Path(escaped string, opt Options) (string, error) {
	if escaped == "" || escaped[0] != '/' {
		return "", rejectAt(ReasonNotOriginForm, 0, "path does not start with '/'")
	}
	n := normalizer{in: escaped, opt: opt, out: lazybuf{s: escaped}}
	n.out.append('/')
	n.i = 1
	for {
		start := n.out.w
		more, err := n.segment()
		if err != nil {
			return "", err
		}
		switch dots, err := n.dotSegment(start); {
		case err != nil:
			return "", err
		case dots == 1:
			// Drop "." but keep the slash before it, so "/a/." is "/a/".
			n.out.w = start
		case dots == 2:
			if start == 1 {
				return "", rejectAt(ReasonDotSegmentAboveRoot, n.i, "'..' above the root")
			}
			// Drop ".." and the segment before it, keeping the slash
			// before that one: "/a/b/.." is "/a/".
			n.out.w = n.out.lastSlash(start-1) + 1
		case more && (n.out.w > start || n.opt.KeepDuplicateSlashes):
			// An empty segment followed by a separator is a
			// duplicate slash: it writes nothing unless kept.
			n.out.append('/')
		}
		if !more {
			return n.out.string(), nil
		}
	}
}

// normalizer is the state of one Path call: the read offset in the input
// and the output so far. It lives on the caller's stack.
type normalizer struct {
	in  string
	i   int
	opt Options
	out lazybuf
}

// segment copies one segment, canonicalized, from the input to the output,
// and consumes the separator that ends it, if any. more reports whether a
// separator ended the segment (another segment follows, perhaps empty).
func (n *normalizer) segment() (more bool, err error) {
	for n.i < len(n.in) {
		c := n.in[n.i]
		switch class[c] {
		case plain:
			n.literal(c)
			n.i++
		case slash:
			n.i++
			return true, nil
		case percent:
			if n.i+2 >= len(n.in) {
				return false, rejectAt(ReasonInvalidPercent, n.i, "'%' without two hex digits")
			}
			v, ok := unhex(n.in[n.i+1], n.in[n.i+2])
			if !ok {
				return false, rejectAt(ReasonInvalidPercent, n.i, "'%' without two hex digits")
			}
			sep, err := n.escape(v)
			if err != nil || sep {
				return sep, err
			}
		case backslash:
			if n.opt.Backslashes != BackslashToSlash {
				return false, rejectAt(ReasonBackslash, n.i, "'\\'")
			}
			n.i++
			return true, nil
		case semicolon:
			if n.opt.PathParams != KeepPathParams {
				return false, rejectAt(ReasonPathParameter, n.i, "';'")
			}
			n.out.append(c)
			n.i++
		case encode:
			n.encoded(c)
			n.i++
		case hash:
			return false, rejectAt(ReasonFragment, n.i, "'#'")
		case question:
			return false, rejectAt(ReasonNotOriginForm, n.i, "'?' in the path: split the query off first")
		case nul:
			return false, rejectAt(ReasonNullByte, n.i, "raw NUL")
		case control:
			return false, rejectAt(ReasonControlCharacter, n.i, "raw byte 0x"+hexByte(c))
		default: // high
			return false, rejectAt(ReasonNonASCII, n.i, "raw byte 0x"+hexByte(c)+" (must be percent-encoded)")
		}
	}
	return false, nil
}

// escape handles the escape "%XX" at n.i, of byte v. sep reports that it was
// a separator, decoded by the options, and has been consumed.
func (n *normalizer) escape(v byte) (sep bool, err error) {
	switch {
	case isUnreserved(v):
		n.literal(v)
	case v == '/' || v == '\\':
		switch n.opt.EncodedSlashes {
		case KeepEncodedSlashes:
			n.encoded(v)
		case DecodeEncodedSlashes:
			if v == '\\' && n.opt.Backslashes != BackslashToSlash {
				return false, rejectAt(ReasonBackslash, n.i, "'%5C' decodes to '\\'")
			}
			n.i += 3
			return true, nil
		default:
			return false, rejectAt(ReasonEncodedSlash, n.i, "'%"+hexByte(v)+"'")
		}
	case v == 0:
		return false, rejectAt(ReasonNullByte, n.i, "'%00'")
	case v < 0x20 || v == 0x7f:
		return false, rejectAt(ReasonControlCharacter, n.i, "'%"+hexByte(v)+"'")
	case v == ';':
		if n.opt.PathParams != KeepPathParams {
			return false, rejectAt(ReasonPathParameter, n.i, "'%3B'")
		}
		n.encoded(v)
	case v >= utf8.RuneSelf:
		return false, n.utf8Sequence(v)
	default:
		// Reserved and other characters keep their escape: decoding
		// "%3F" or "%23" would change where the path ends, and "%25"
		// would invite a second decoding.
		n.encoded(v)
	}
	n.i += 3
	return false, nil
}

// utf8Sequence checks that the escape at n.i, of byte lead, starts a valid
// UTF-8 sequence of escapes, copies the sequence with uppercase hex and
// consumes it. utf8.DecodeRune rejects overlong forms, surrogates and code
// points above U+10FFFF, which is what makes "%C0%AE" fail instead of
// becoming a '.' in some lenient decoder downstream.
func (n *normalizer) utf8Sequence(lead byte) error {
	size := utf8SeqLen(lead)
	if size == 0 {
		return rejectAt(ReasonInvalidUTF8, n.i, "'%"+hexByte(lead)+"' does not start a UTF-8 sequence")
	}
	var seq [utf8.UTFMax]byte
	seq[0] = lead
	for k := 1; k < size; k++ {
		j := n.i + 3*k
		if j >= len(n.in) || n.in[j] != '%' {
			return rejectAt(ReasonInvalidUTF8, n.i, "truncated UTF-8 sequence")
		}
		if j+2 >= len(n.in) {
			return rejectAt(ReasonInvalidPercent, j, "'%' without two hex digits")
		}
		v, ok := unhex(n.in[j+1], n.in[j+2])
		if !ok {
			return rejectAt(ReasonInvalidPercent, j, "'%' without two hex digits")
		}
		seq[k] = v
	}
	// An invalid sequence decodes as one byte of RuneError; a valid one
	// (even an encoded U+FFFD) as all of its bytes.
	r, got := utf8.DecodeRune(seq[:size])
	if got != size {
		return rejectAt(ReasonInvalidUTF8, n.i, "invalid UTF-8 sequence (overlong, surrogate or out of range)")
	}
	if n.opt.LowercasePath && foldsToASCII(r) {
		return rejectAt(ReasonAmbiguousCase, n.i, fmt.Sprintf("code point %U case-folds to ASCII", r))
	}
	for k := range size {
		n.encoded(seq[k])
	}
	n.i += 3 * size
	return nil
}

// dotSegment reports whether the output from start is the dot segment "."
// (1) or ".." (2). With KeepPathParams it rejects a segment that would be
// one once a server strips its parameters ("..;x", "..%3Bx").
func (n *normalizer) dotSegment(start int) (int, error) {
	end := n.out.w
	if n.opt.PathParams == KeepPathParams {
		for k := start; k < end; k++ {
			isParam := n.out.at(k) == ';' ||
				k+2 < end && n.out.at(k) == '%' && n.out.at(k+1) == '3' && n.out.at(k+2) == 'B'
			if isParam {
				if dots := n.out.dots(start, k); dots > 0 {
					return 0, rejectAt(ReasonPathParameter, n.i, "dot segment with a path parameter")
				}
				break
			}
		}
	}
	return n.out.dots(start, end), nil
}

// literal writes a character that stands for itself.
func (n *normalizer) literal(c byte) {
	if n.opt.LowercasePath && 'A' <= c && c <= 'Z' {
		c += 'a' - 'A'
	}
	n.out.append(c)
}

// encoded writes the escape of v, with uppercase hex.
func (n *normalizer) encoded(v byte) {
	n.out.append('%')
	n.out.append(upperHex[v>>4])
	n.out.append(upperHex[v&0xf])
}

// lazybuf is the output of Path. As long as what is written equals the
// input at the same offset, it is only a length over the input, so an
// already-normal path is returned without copying; the first differing byte
// copies the prefix into a buffer. This is the trick of path.Clean, and it
// lets the fast case and the slow case be the same code, so they cannot
// disagree. Moving w back (dot segments) keeps the invariant: the output is
// always in[:w] or buf[:w].
type lazybuf struct {
	s   string
	buf []byte
	w   int
}

func (b *lazybuf) append(c byte) {
	if b.buf == nil {
		if b.w < len(b.s) && b.s[b.w] == c {
			b.w++
			return
		}
		// Escaping can grow the path; a little headroom avoids a
		// second allocation for the common case of a few escapes.
		b.buf = make([]byte, b.w, len(b.s)+16)
		copy(b.buf, b.s[:b.w])
	}
	b.buf = append(b.buf[:b.w], c)
	b.w++
}

func (b *lazybuf) at(i int) byte {
	if b.buf == nil {
		return b.s[i]
	}
	return b.buf[i]
}

// dots reports whether out[start:end] is "." (1) or ".." (2).
func (b *lazybuf) dots(start, end int) int {
	switch {
	case end-start == 1 && b.at(start) == '.':
		return 1
	case end-start == 2 && b.at(start) == '.' && b.at(start+1) == '.':
		return 2
	}
	return 0
}

// lastSlash returns the offset of the last '/' before end. The output
// always starts with '/', so there is one.
func (b *lazybuf) lastSlash(end int) int {
	i := end - 1
	for i > 0 && b.at(i) != '/' {
		i--
	}
	return i
}

func (b *lazybuf) string() string {
	if b.buf == nil {
		return b.s[:b.w]
	}
	return string(b.buf[:b.w])
}

// Byte classes of the raw input, so that the common byte costs one table
// lookup.
const (
	plain     = iota // stands for itself
	slash            // '/'
	percent          // '%'
	backslash        // '\'
	semicolon        // ';'
	encode           // allowed raw by clients but not by RFC 3986: escaped
	hash             // '#'
	question         // '?'
	nul              // 0x00
	control          // 0x01-0x20, 0x7F
	high             // 0x80-0xFF
)

var class = func() (t [256]uint8) {
	for c := range 256 {
		switch {
		case c == 0:
			t[c] = nul
		case c < 0x21 || c == 0x7f:
			t[c] = control
		case c >= 0x80:
			t[c] = high
		}
	}
	t['/'] = slash
	t['%'] = percent
	t['\\'] = backslash
	t[';'] = semicolon
	t['#'] = hash
	t['?'] = question
	for _, c := range []byte("\"<>[]^`{|}") {
		t[c] = encode
	}
	return t
}()

// isUnreserved reports whether c is an RFC 3986 unreserved character, whose
// escape means the same as the character itself.
func isUnreserved(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
		c == '-' || c == '.' || c == '_' || c == '~'
}

// utf8SeqLen is the length of the UTF-8 sequence that lead starts, or 0 if
// it cannot start one (a continuation byte, or 0xC0, 0xC1, 0xF5-0xFF which
// only ever start overlong or out-of-range forms).
func utf8SeqLen(lead byte) int {
	switch {
	case lead >= 0xc2 && lead <= 0xdf:
		return 2
	case lead >= 0xe0 && lead <= 0xef:
		return 3
	case lead >= 0xf0 && lead <= 0xf4:
		return 4
	}
	return 0
}

// foldsToASCII reports whether a non-ASCII code point has an ASCII letter
// among its case mappings or its case-folding orbit (U+212A KELVIN SIGN,
// U+017F LATIN SMALL LETTER LONG S, U+0130, U+0131), computed rather than
// listed so that it follows the Unicode tables.
func foldsToASCII(r rune) bool {
	if unicode.ToLower(r) < utf8.RuneSelf || unicode.ToUpper(r) < utf8.RuneSelf || unicode.ToTitle(r) < utf8.RuneSelf {
		return true
	}
	for f := unicode.SimpleFold(r); f != r; f = unicode.SimpleFold(f) {
		if f < utf8.RuneSelf {
			return true
		}
	}
	return false
}

const upperHex = "0123456789ABCDEF"

func unhex(hi, lo byte) (byte, bool) {
	h, ok1 := fromHex(hi)
	l, ok2 := fromHex(lo)
	return h<<4 | l, ok1 && ok2
}

func fromHex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

func hexByte(c byte) string {
	return string([]byte{upperHex[c>>4], upperHex[c&0xf]})
}

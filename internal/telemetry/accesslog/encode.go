package accesslog

import (
	"strconv"
	"time"
	"unicode/utf8"
)

// appendEntry appends e as one JSON object, without the newline. It
// allocates nothing when b has room.
func appendEntry(b []byte, e *Entry) []byte {
	b = append(b, `{"time":"`...)
	b = e.Time.UTC().AppendFormat(b, time.RFC3339Nano)
	b = append(b, '"')
	b = appendString(b, `,"direction":`, e.Direction)
	b = appendString(b, `,"protocol":`, e.Protocol)
	b = appendString(b, `,"source_id":`, e.SourceID)
	b = appendString(b, `,"destination_id":`, e.DestinationID)
	b = appendString(b, `,"source_addr":`, e.SourceAddr)
	b = appendString(b, `,"destination_addr":`, e.DestinationAddr)
	b = appendString(b, `,"service":`, e.Service)
	b = appendString(b, `,"method":`, e.Method)
	b = appendString(b, `,"path":`, e.Path)
	b = append(b, `,"status":`...)
	b = strconv.AppendInt(b, int64(e.Status), 10)
	b = appendInt(b, `,"bytes_in":`, e.BytesIn)
	b = appendInt(b, `,"bytes_out":`, e.BytesOut)
	if e.Duration != 0 {
		b = append(b, `,"duration_s":`...)
		b = strconv.AppendFloat(b, e.Duration.Seconds(), 'f', -1, 64)
	}
	b = appendString(b, `,"decision":`, e.Decision)
	b = appendString(b, `,"policy":`, e.Policy)
	b = appendString(b, `,"reason":`, e.Reason)
	b = appendString(b, `,"tls_group":`, e.TLSGroup)
	b = appendString(b, `,"request_id":`, e.RequestID)
	b = appendString(b, `,"trace_id":`, e.TraceID)
	return append(b, '}')
}

// appendString appends key (the comma, the quoted name and the colon) and
// s quoted, unless s is empty.
func appendString(b []byte, key, s string) []byte {
	if s == "" {
		return b
	}
	b = append(b, key...)
	return appendQuoted(b, s)
}

// appendInt appends key and n, unless n is zero.
func appendInt(b []byte, key string, n int64) []byte {
	if n == 0 {
		return b
	}
	b = append(b, key...)
	return strconv.AppendInt(b, n, 10)
}

const hexDigits = "0123456789abcdef"

// appendQuoted appends s as a JSON string. Besides what JSON requires
// (quote, backslash, C0 controls), it escapes what could mislead a
// human reading the log in a terminal or an editor: DEL, the C1 controls,
// U+2028 and U+2029 (line breaks to JavaScript) and the bidirectional
// controls. Each byte of invalid UTF-8 becomes \ufffd.
func appendQuoted(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0 // s[start:i] is pending, copied verbatim
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && c != 0x7f {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i++
			start = i
			continue
		}
		if mustEscape(r) {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u',
				hexDigits[r>>12&0xf], hexDigits[r>>8&0xf], hexDigits[r>>4&0xf], hexDigits[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// mustEscape reports whether a valid non-ASCII rune is written as a \u
// escape: C1 controls, line and paragraph separators, bidirectional
// formatting characters. All are in the Basic Multilingual Plane.
func mustEscape(r rune) bool {
	switch {
	case r <= 0x9f: // C1 controls (0x80-0x9f)
		return true
	case r == 0x061c, // ARABIC LETTER MARK
		r == 0x200e, r == 0x200f, // LRM, RLM
		0x2028 <= r && r <= 0x202e, // LINE and PARAGRAPH SEPARATOR, LRE, RLE, PDF, LRO, RLO
		0x2066 <= r && r <= 0x2069: // LRI, RLI, FSI, PDI
		return true
	}
	return false
}

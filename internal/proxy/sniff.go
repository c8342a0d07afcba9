package proxy

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"time"
)

// kind is what a connection's first bytes look like.
type kind uint8

const (
	kindUnknown kind = iota // need more bytes
	kindTLS                 // a TLS record: handshake (0x16) with major version 3
	kindHTTP1               // an HTTP/1.x request line
	kindH2C                 // the HTTP/2 connection preface
	kindTCP                 // anything else
)

func (k kind) String() string {
	return [...]string{"unknown", "tls", "http/1", "h2c", "tcp"}[k]
}

// sniffLimit bounds how many bytes are read to classify a connection. An
// HTTP/1 request line longer than this is still classified as HTTP/1 when
// everything seen so far fits one (the HTTP server then rejects it).
const sniffLimit = 8 << 10

var h2Preface = []byte("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")

// sniff classifies the first bytes b of a stream. It returns kindUnknown
// when b is a proper prefix of something it recognises and more bytes
// would decide. It never reads past b and never panics.
func sniff(b []byte) kind {
	if len(b) == 0 {
		return kindUnknown
	}
	if b[0] == 0x16 {
		if len(b) < 2 {
			return kindUnknown
		}
		if b[1] == 0x03 {
			return kindTLS
		}
		return kindTCP
	}
	if n := min(len(b), len(h2Preface)); bytes.Equal(b[:n], h2Preface[:n]) {
		if n == len(h2Preface) {
			return kindH2C
		}
		return kindUnknown
	}
	return sniffHTTP1(b)
}

// sniffHTTP1 matches an HTTP/1.x request line: METHOD SP TARGET SP
// HTTP/1.D (CR)LF, with METHOD an uppercase token of at most 24 bytes.
func sniffHTTP1(b []byte) kind {
	i := 0
	for ; i < len(b) && b[i] != ' '; i++ {
		c := b[i]
		if (c < 'A' || c > 'Z') && c != '-' && c != '_' || i >= 24 {
			return kindTCP
		}
	}
	if i == len(b) {
		return kindUnknown
	}
	if i == 0 {
		return kindTCP
	}
	i++ // SP
	start := i
	for ; i < len(b) && b[i] != ' '; i++ {
		if c := b[i]; c <= 0x20 || c == 0x7f {
			return kindTCP
		}
	}
	if i == len(b) {
		if len(b) >= sniffLimit {
			return kindHTTP1
		}
		return kindUnknown
	}
	if i == start {
		return kindTCP
	}
	i++ // SP
	const version = "HTTP/1."
	rest := b[i:]
	n := min(len(rest), len(version))
	if string(rest[:n]) != version[:n] {
		return kindTCP
	}
	if len(rest) <= len(version) {
		return kindUnknown
	}
	if d := rest[len(version)]; d < '0' || d > '9' {
		return kindTCP
	}
	rest = rest[len(version)+1:]
	switch {
	case len(rest) == 0:
		return kindUnknown
	case rest[0] == '\n':
		return kindHTTP1
	case rest[0] != '\r':
		return kindTCP
	case len(rest) == 1:
		return kindUnknown
	case rest[1] == '\n':
		return kindHTTP1
	}
	return kindTCP
}

var sniffBufs = sync.Pool{New: func() any { b := make([]byte, sniffLimit); return &b }}

// sniffConn reads from c until its first bytes are classified, the
// deadline passes or the stream ends, and returns the kind and the bytes
// read (to be replayed). A stream that sends nothing before the deadline is
// kindTCP with no bytes (a server-speaks-first protocol); one that ends
// before sending anything is an error.
func sniffConn(c net.Conn, deadline time.Time) (kind, []byte, error) {
	if err := c.SetReadDeadline(deadline); err != nil {
		return 0, nil, err
	}
	bp := sniffBufs.Get().(*[]byte)
	defer sniffBufs.Put(bp)
	buf := *bp
	n := 0
	k := kindUnknown
	for k == kindUnknown {
		m, err := c.Read(buf[n:])
		n += m
		if k = sniff(buf[:n]); k != kindUnknown {
			break
		}
		if err != nil {
			if n == 0 && !errors.Is(err, os.ErrDeadlineExceeded) {
				return 0, nil, err
			}
			if errors.Is(err, io.EOF) || errors.Is(err, os.ErrDeadlineExceeded) {
				k = kindTCP
				break
			}
			return 0, nil, err
		}
		if n == len(buf) {
			k = kindTCP
		}
	}
	// A failure to clear the deadline (the peer is gone) shows on the next read.
	_ = c.SetReadDeadline(time.Time{})
	return k, bytes.Clone(buf[:n]), nil
}

// prefixConn replays bytes already read from a connection before reading
// from it again.
type prefixConn struct {
	net.Conn
	prefix []byte
}

func (c *prefixConn) Read(b []byte) (int, error) {
	if len(c.prefix) > 0 {
		n := copy(b, c.prefix)
		c.prefix = c.prefix[n:]
		return n, nil
	}
	return c.Conn.Read(b)
}

// CloseWrite half-closes the underlying connection if it can.
func (c *prefixConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

func withPrefix(c net.Conn, prefix []byte) net.Conn {
	if len(prefix) == 0 {
		return c
	}
	return &prefixConn{Conn: c, prefix: prefix}
}

package proxy

import (
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/trustmesh/trustmesh/internal/ca"
)

// connSet tracks open mesh connections by their peer so that a snapshot
// revoking a peer closes its connections at once. The mutex guards only the
// map; connections are closed after it is released.
type connSet struct {
	mu sync.Mutex
	m  map[*trackedConn]struct{}
}

// trackedConn is one mesh connection: closing it closes the mesh side and,
// for TCP passthrough, the other side too.
type trackedConn struct {
	peer *peer // nil for plaintext

	mu      sync.Mutex
	closers []io.Closer
	closed  bool
}

// attach adds closers to t. If t is already closed it closes them and
// returns false.
func (t *trackedConn) attach(cs ...io.Closer) bool {
	t.mu.Lock()
	if !t.closed {
		t.closers = append(t.closers, cs...)
		t.mu.Unlock()
		return true
	}
	t.mu.Unlock()
	for _, c := range cs {
		_ = c.Close()
	}
	return false
}

// close closes everything attached, once; it does no I/O under the lock.
func (t *trackedConn) close() {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return
	}
	t.closed = true
	cs := t.closers
	t.closers = nil
	t.mu.Unlock()
	for _, c := range cs {
		_ = c.Close()
	}
}

// add registers t. The caller then checks revocation against the current
// snapshot: a snapshot applied before add is seen by that check, one applied
// after add is seen by sweep.
func (s *connSet) add(t *trackedConn) {
	s.mu.Lock()
	if s.m == nil {
		s.m = make(map[*trackedConn]struct{})
	}
	s.m[t] = struct{}{}
	s.mu.Unlock()
}

func (s *connSet) remove(t *trackedConn) {
	s.mu.Lock()
	delete(s.m, t)
	s.mu.Unlock()
}

// sweep closes every connection whose peer rl revokes, and returns how many.
func (s *connSet) sweep(rl *ca.RevocationList) int {
	if rl.Len() == 0 {
		return 0
	}
	var victims []*trackedConn
	s.mu.Lock()
	for t := range s.m {
		if t.peer == nil {
			continue // plaintext
		}
		if revoked, _ := rl.Revoked(t.peer.leaf); revoked {
			victims = append(victims, t)
		}
	}
	s.mu.Unlock()
	for _, t := range victims {
		t.close()
	}
	return len(victims)
}

// closeAll closes every tracked connection (at shutdown).
func (s *connSet) closeAll() {
	s.mu.Lock()
	all := make([]*trackedConn, 0, len(s.m))
	for t := range s.m {
		all = append(all, t)
	}
	s.mu.Unlock()
	for _, t := range all {
		t.close()
	}
}

var spliceBufs = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// splice copies a↔b until both directions end, half-closing each
// direction's destination when its source reaches EOF. A connection on
// which neither direction moves a byte for idle is closed. It returns the
// bytes copied a→b and b→a, and closes both connections.
func splice(a, b net.Conn, idle time.Duration) (aToB, bToA int64) {
	var last atomic.Int64
	last.Store(time.Now().UnixNano())
	done := make(chan int64, 1)
	go func() { done <- copyIdle(b, a, idle, &last) }()
	bToA = copyIdle(a, b, idle, &last)
	aToB = <-done
	_ = a.Close()
	_ = b.Close()
	return aToB, bToA
}

// copyIdle copies src to dst. On a clean EOF it half-closes dst; on any
// error it closes both, which also ends the other direction.
func copyIdle(dst, src net.Conn, idle time.Duration, last *atomic.Int64) int64 {
	bp := spliceBufs.Get().(*[]byte)
	defer spliceBufs.Put(bp)
	buf := *bp
	var total int64
	for {
		_ = src.SetReadDeadline(time.Now().Add(idle))
		n, err := src.Read(buf)
		if n > 0 {
			last.Store(time.Now().UnixNano())
			_ = dst.SetWriteDeadline(time.Now().Add(idle))
			w, werr := dst.Write(buf[:n])
			total += int64(w)
			if werr != nil {
				_ = src.Close()
				_ = dst.Close()
				return total
			}
		}
		if err == nil {
			continue
		}
		if errors.Is(err, os.ErrDeadlineExceeded) && time.Since(time.Unix(0, last.Load())) < idle {
			continue // the other direction is active
		}
		if errors.Is(err, io.EOF) {
			if cw, ok := dst.(interface{ CloseWrite() error }); ok {
				if cw.CloseWrite() == nil {
					return total
				}
			}
		}
		_ = src.Close()
		_ = dst.Close()
		return total
	}
}

package proxy

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"strconv"
	"sync"
	"time"
)

// newHTTPServer builds an http.Server with the proxy's limits. It serves
// HTTP/1.1 and HTTP/2 with prior knowledge on the connections it is given:
// mesh TLS is terminated before (see meshConn), so to net/http every
// connection is unencrypted and h2 is recognised by its preface.
func (p *Proxy) newHTTPServer(h http.Handler, what string) *http.Server {
	var protos http.Protocols
	protos.SetHTTP1(true)
	protos.SetUnencryptedHTTP2(true)
	return &http.Server{
		Handler:           h,
		Protocols:         &protos,
		ReadHeaderTimeout: readHeaderTimeout,
		IdleTimeout:       httpIdleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		HTTP2: &http.HTTP2Config{
			MaxConcurrentStreams:      h2MaxStreams,
			MaxDecoderHeaderTableSize: h2HeaderTableSize,
			MaxEncoderHeaderTableSize: h2HeaderTableSize,
			MaxReadFrameSize:          h2MaxFrameSize,
		},
		ConnContext: connContext,
		ErrorLog:    slog.NewLogLogger(p.log.With(slog.String(logListener, what)).Handler(), slog.LevelDebug),
	}
}

// meshConn is a connection handed to an http.Server after the proxy has
// sniffed it and, for mesh traffic, terminated TLS: it replays the sniffed
// bytes and carries the verified peer (nil for plaintext).
type meshConn struct {
	net.Conn
	prefix  []byte
	peer    *peer
	tracked *trackedConn
	set     *connSet
	once    sync.Once
}

func (c *meshConn) Read(b []byte) (int, error) {
	if len(c.prefix) > 0 {
		n := copy(b, c.prefix)
		c.prefix = c.prefix[n:]
		return n, nil
	}
	return c.Conn.Read(b)
}

func (c *meshConn) Close() error {
	c.once.Do(func() {
		if c.tracked != nil {
			c.set.remove(c.tracked)
		}
	})
	return c.Conn.Close()
}

type ctxKey struct{}

// connInfo is what a request's context knows about its connection.
type connInfo struct {
	peer *peer // nil: plaintext
}

var plaintextInfo = &connInfo{}

func connContext(ctx context.Context, c net.Conn) context.Context {
	if mc, ok := c.(*meshConn); ok && mc.peer != nil {
		return context.WithValue(ctx, ctxKey{}, &connInfo{peer: mc.peer})
	}
	return context.WithValue(ctx, ctxKey{}, plaintextInfo)
}

func peerFrom(ctx context.Context) *peer {
	if ci, ok := ctx.Value(ctxKey{}).(*connInfo); ok {
		return ci.peer
	}
	return nil
}

// connQueue is a net.Listener fed by the proxy's own accept loops, so that
// an http.Server serves connections the proxy has already classified.
type connQueue struct {
	addr net.Addr
	ch   chan net.Conn
	done chan struct{}
	once sync.Once
}

func newConnQueue(addr net.Addr) *connQueue {
	return &connQueue{addr: addr, ch: make(chan net.Conn), done: make(chan struct{})}
}

func (q *connQueue) Accept() (net.Conn, error) {
	select {
	case c := <-q.ch:
		return c, nil
	case <-q.done:
		return nil, net.ErrClosed
	}
}

// push hands c to the server, or closes it if the queue is closed.
func (q *connQueue) push(c net.Conn) {
	select {
	case q.ch <- c:
	case <-q.done:
		_ = c.Close()
	}
}

func (q *connQueue) Close() error {
	q.once.Do(func() { close(q.done) })
	return nil
}

func (q *connQueue) Addr() net.Addr { return q.addr }

// headerCount counts header field lines.
func headerCount(h http.Header) int {
	n := 0
	for _, vs := range h {
		n += len(vs)
	}
	return n
}

// checkLimits answers 431 and returns false when a request carries more
// than maxHeaderCount header fields. (Header bytes are limited by the
// server's MaxHeaderBytes.)
func checkLimits(w http.ResponseWriter, r *http.Request) bool {
	if headerCount(r.Header) > maxHeaderCount {
		http.Error(w, "trustmesh: more than "+strconv.Itoa(maxHeaderCount)+" header fields", http.StatusRequestHeaderFieldsTooLarge)
		return false
	}
	return true
}

// Headers that only the proxy may set on requests to the app.
const (
	headerPeerIdentity = "X-Trustmesh-Peer-Identity"
	headerXFCC         = "X-Forwarded-Client-Cert"
)

// route is the per-request forwarding decision, passed from the handler
// to the ReverseProxy's Rewrite, Transport and ModifyResponse.
type route struct {
	target    string // host:port to send to
	tls       bool   // dial target with mesh mTLS (https: the transport's DialTLSContext)
	transport http.RoundTripper
	peer      *peer  // inbound: the verified client; nil for plaintext
	mesh      bool   // inbound: the request arrived over mTLS
	code      int    // response code, set by ModifyResponse/ErrorHandler
	service   string // metric label
	direction string
	meta      reqMeta // metric labels beyond direction, service and mesh
}

type routeKey struct{}

func routeFrom(r *http.Request) *route {
	rt, _ := r.Context().Value(routeKey{}).(*route)
	return rt
}

// newReverseProxy builds the forwarding half shared by every listener of
// a direction; the route in the request context says where to.
// copyBuffers recycles the body-copy buffers of every reverse proxy:
// without a pool, ReverseProxy allocates 32 KiB per response (72% of the
// proxy's allocations in a profile of 1 KB request/response traffic).
var copyBuffers = &bufferPool{pool: sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}}

type bufferPool struct{ pool sync.Pool }

func (b *bufferPool) Get() []byte  { return *b.pool.Get().(*[]byte) }
func (b *bufferPool) Put(p []byte) { b.pool.Put(&p) }

var _ httputil.BufferPool = (*bufferPool)(nil)

func (p *Proxy) newReverseProxy() *httputil.ReverseProxy {
	return &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			rt := routeFrom(pr.In)
			pr.Out.URL.Scheme = "http"
			if rt.tls {
				pr.Out.URL.Scheme = "https"
			}
			pr.Out.URL.Host = rt.target
			pr.Out.Header.Del(headerXFCC)
			pr.Out.Header.Del(headerPeerIdentity)
			if rt.meta.span != nil {
				rt.meta.span.Inject(pr.Out.Header)
			}
			if rt.peer != nil {
				pr.Out.Header.Set(headerPeerIdentity, rt.peer.idS)
			}
		},
		Transport:  routeTransport{},
		BufferPool: copyBuffers,
		// Zero: ReverseProxy already flushes every write of a streaming
		// response (ContentLength -1: gRPC, server-sent events). Forcing a
		// flush per write for every response cost a syscall each (13% of
		// proxy CPU in a profile of 1 KB request/response traffic).
		FlushInterval: 0,
		ModifyResponse: func(resp *http.Response) error {
			if rt := routeFrom(resp.Request); rt != nil {
				rt.code = resp.StatusCode
			}
			return nil
		},
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			rt := routeFrom(r)
			code := http.StatusBadGateway
			msg := "trustmesh: upstream " + rt.service + " failed"
			if r.Context().Err() != nil {
				code = 499 // the client went away; nothing to write to
			} else if errors.Is(err, errRevoked) {
				msg = "trustmesh: upstream " + rt.service + " presented a revoked SVID"
			}
			rt.code = code
			p.log.Warn("forward failed", slog.String(logDirection, rt.direction), slog.String(logService, rt.service),
				slog.String("target", rt.target), slog.Any(logError, err))
			if code != 499 {
				http.Error(w, msg, code)
			}
		},
		ErrorLog: slog.NewLogLogger(p.log.Handler(), slog.LevelDebug),
	}
}

// routeTransport sends a request through its route's transport.
type routeTransport struct{}

func (routeTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	return routeFrom(r).transport.RoundTrip(r)
}

// forward sends r along rt and records its metrics.
func (p *Proxy) forward(rp *httputil.ReverseProxy, w http.ResponseWriter, r *http.Request, rt *route) {
	start := time.Now()
	// Deferred: ReverseProxy aborts a response whose copy fails (a gRPC
	// stream cancelled by the client) with panic(http.ErrAbortHandler), which
	// would skip the metrics. A request with no upstream status yet is
	// recorded as 499 (client closed request).
	defer func() {
		code := rt.code
		if code == 0 {
			code = 499
		}
		m := rt.meta
		m.dir, m.service, m.mesh = rt.direction, rt.service, rt.mesh
		m.grpc, m.req = isGRPC(r), r
		p.observe(m, code, start)
	}()
	rp.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), routeKey{}, rt)))
}

// reply writes a short plain-text answer from the proxy itself and
// records it.
func (p *Proxy) reply(w http.ResponseWriter, dir, service string, mesh bool, code int, msg string) {
	p.replyMeta(w, reqMeta{dir: dir, service: service, mesh: mesh}, code, msg)
}

// replyMeta is reply with full metric labels.
func (p *Proxy) replyMeta(w http.ResponseWriter, m reqMeta, code int, msg string) {
	http.Error(w, msg, code)
	p.observe(m, code, time.Now())
}

// drainClose reads a little of r and closes it, so a keep-alive
// connection can be reused.
func drainClose(r io.ReadCloser) {
	_, _ = io.CopyN(io.Discard, r, 4<<10)
	_ = r.Close()
}

package proxy

import (
	"context"
	"crypto/tls"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"strconv"
	"time"

	"github.com/trustmesh/trustmesh/internal/telemetry/tracing"
)

// inbound is one --inbound listener: mesh traffic (or, by mode, plaintext)
// for the local application.
type inbound struct {
	p         *Proxy
	spec      InboundSpec
	ln        net.Listener
	appPort   uint32
	portLabel string

	queue  *connQueue // classified HTTP connections, served by server
	server *http.Server
	rp     *httputil.ReverseProxy
	h1     *http.Transport // HTTP/1.1 to the app
	h2c    *http.Transport // HTTP/2 with prior knowledge to the app
}

func newInbound(p *Proxy, spec InboundSpec, ln net.Listener) *inbound {
	port, _ := appPort(spec.App) // validated
	in := &inbound{
		p:         p,
		spec:      spec,
		ln:        ln,
		appPort:   port,
		portLabel: strconv.FormatUint(uint64(port), 10),
		queue:     newConnQueue(ln.Addr()),
		rp:        p.newReverseProxy(),
		h1:        newAppTransport(false),
		h2c:       newAppTransport(true),
	}
	in.server = p.newHTTPServer(in, "inbound "+ln.Addr().String())
	return in
}

// newAppTransport is the pooled transport to a local app: HTTP/1.1, or
// HTTP/2 with prior knowledge (h2c).
func newAppTransport(h2c bool) *http.Transport {
	var protos http.Protocols
	if h2c {
		protos.SetUnencryptedHTTP2(true)
	} else {
		protos.SetHTTP1(true)
	}
	d := &net.Dialer{Timeout: dialTime, KeepAlive: 30 * time.Second}
	return &http.Transport{
		Protocols:           &protos,
		DialContext:         d.DialContext,
		MaxIdleConns:        512,
		MaxIdleConnsPerHost: 256, // one app: the per-host limit is the limit
		IdleConnTimeout:     90 * time.Second,
		// A proxy must not add Accept-Encoding nor decompress.
		DisableCompression: true,
		HTTP2: &http.HTTP2Config{
			MaxReadFrameSize:          h2MaxFrameSize,
			MaxDecoderHeaderTableSize: h2HeaderTableSize,
		},
	}
}

// handle classifies one accepted connection and serves it.
func (in *inbound) handle(c net.Conn) {
	p := in.p
	stop := context.AfterFunc(p.ctx, func() { _ = c.Close() })
	k, prefix, err := sniffConn(c, time.Now().Add(sniffTimeout))
	if err != nil {
		stop()
		_ = c.Close()
		return
	}
	if k != kindTLS {
		stop()
		in.plaintext(c, k, prefix)
		return
	}

	tc := tls.Server(withPrefix(c, prefix), p.serverTLS)
	hctx, cancel := context.WithTimeout(p.ctx, handshakeTimeout)
	err = tc.HandshakeContext(hctx)
	cancel()
	if err != nil {
		stop()
		_ = c.Close()
		p.log.Debug("inbound handshake failed", slog.String(logRemote, c.RemoteAddr().String()), slog.Any(logError, err))
		return
	}
	cs := tc.ConnectionState()
	p.observeHandshake(dirInbound, cs, c.RemoteAddr())
	pr, err := peerFromState(cs)
	if err != nil { // cannot happen after VerifyConnection
		stop()
		_ = tc.Close()
		return
	}

	k = kindTCP
	prefix = nil
	switch cs.NegotiatedProtocol {
	case alpnH2, alpnH1:
		k = kindHTTP1 // the server tells h2 from HTTP/1 by the preface
	case alpnTCP:
	default:
		k, prefix, err = sniffConn(tc, time.Now().Add(sniffTimeout))
		if err != nil {
			stop()
			_ = tc.Close()
			return
		}
	}
	stop()

	t := &trackedConn{peer: pr}
	var conn net.Conn
	if k == kindHTTP1 || k == kindH2C {
		conn = &meshConn{Conn: tc, prefix: prefix, peer: pr, tracked: t, set: &p.conns}
	} else {
		conn = withPrefix(tc, prefix)
	}
	t.attach(conn)
	p.conns.add(t)
	if revoked, _ := p.view.Load().revocations().Revoked(pr.leaf); revoked {
		// Revoked between the handshake and add, so sweep did not see it.
		p.conns.remove(t)
		t.close()
		return
	}
	if mc, ok := conn.(*meshConn); ok {
		in.queue.push(mc)
		return
	}
	if !in.authorizeTCP(conn, pr) {
		p.conns.remove(t)
		t.close()
		return
	}
	in.passthrough(conn, t)
}

// plaintext serves a connection that did not start with a TLS handshake,
// if the app port's mode allows it.
func (in *inbound) plaintext(c net.Conn, k kind, prefix []byte) {
	p := in.p
	mode := p.view.Load().mode(in.appPort)
	if mode == modeStrict {
		p.metrics.plaintext.WithLabelValues(in.portLabel, "refused").Inc()
		p.log.Info("plaintext connection refused", slog.String(logRemote, c.RemoteAddr().String()),
			slog.String(logPort, in.portLabel), slog.String(logMode, mode.String()))
		_ = c.Close()
		return
	}
	p.metrics.plaintext.WithLabelValues(in.portLabel, "accepted").Inc()
	t := &trackedConn{}
	if k == kindHTTP1 || k == kindH2C {
		mc := &meshConn{Conn: c, prefix: prefix, tracked: t, set: &p.conns}
		t.attach(mc)
		p.conns.add(t)
		in.queue.push(mc)
		return
	}
	c = withPrefix(c, prefix)
	t.attach(c)
	p.conns.add(t)
	if !in.authorizeTCP(c, nil) {
		p.conns.remove(t)
		t.close()
		return
	}
	in.passthrough(c, t)
}

// passthrough splices a mesh (or plaintext) stream, tracked by t, to the
// app.
func (in *inbound) passthrough(c net.Conn, t *trackedConn) {
	p := in.p
	defer p.conns.remove(t)
	d := net.Dialer{Timeout: dialTime}
	app, err := d.DialContext(p.ctx, "tcp", in.spec.App)
	if err != nil {
		p.log.Warn("dial app", slog.String("app", in.spec.App), slog.Any(logError, err))
		_ = c.Close()
		return
	}
	if !t.attach(app) {
		return // revoked or shutting down meanwhile
	}
	start := time.Now()
	rx, tx := splice(c, app, tcpIdleTimeout)
	m := reqMeta{dir: dirInbound, service: in.spec.App, mesh: t.peer != nil, destination: p.view.Load().selfID(), decision: "allow"}
	if t.peer != nil {
		m.source, m.tlsGroup = t.peer.idS, t.peer.group
	}
	p.observeTCP(m, rx, tx)
	if p.view.Load().tapping() {
		p.tapTCP(&m, time.Since(start))
	}
}

// ServeHTTP forwards a request to the app with the peer's identity.
func (in *inbound) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p := in.p
	ctx, span := p.cfg.Tracer.Start(r.Context(), r, tracing.Inbound, in.spec.App)
	defer span.End()
	r = r.WithContext(ctx)
	pr := peerFrom(r.Context())
	if !checkLimits(w, r) {
		p.observeRequest(dirInbound, in.spec.App, http.StatusRequestHeaderFieldsTooLarge, pr != nil, time.Now())
		return
	}
	if pr != nil {
		// The connection may predate a revocation: check every request.
		if revoked, why := p.view.Load().revocations().Revoked(pr.leaf); revoked {
			p.metrics.refused.WithLabelValues(dirInbound, refuseRevoked).Inc()
			p.log.Warn("request refused", slog.String(logPeer, pr.idS), slog.String(logReason, why))
			if r.ProtoMajor == 1 {
				w.Header().Set("Connection", "close")
			}
			p.reply(w, dirInbound, in.spec.App, true, http.StatusForbidden, "trustmesh: peer SVID is revoked")
			return
		}
	}
	m, ok := in.authorizeHTTP(w, r, pr, span)
	if !ok {
		return
	}
	rt := &route{target: in.spec.App, transport: in.h1, peer: pr, mesh: pr != nil, service: in.spec.App, direction: dirInbound, meta: m}
	if r.ProtoMajor == 2 {
		rt.transport = in.h2c
	}
	p.forward(in.rp, w, r, rt)
}

package proxy

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"strconv"
	"sync"
	"time"

	"github.com/trustmesh/trustmesh/internal/telemetry/tracing"
)

// outbound is one --outbound listener: the local app connects in
// plaintext and the proxy forwards to the named service over mTLS.
type outbound struct {
	p      *Proxy
	spec   OutboundSpec
	ln     net.Listener
	queue  *connQueue
	server *http.Server
	rp     *httputil.ReverseProxy
	label  string // name.namespace[:port] for messages
}

func newOutbound(p *Proxy, spec OutboundSpec, ln net.Listener) *outbound {
	if spec.Namespace == "" {
		spec.Namespace = "default"
	}
	o := &outbound{p: p, spec: spec, ln: ln, queue: newConnQueue(ln.Addr()), rp: p.newReverseProxy()}
	o.label = spec.Service + "." + spec.Namespace
	if spec.Port != 0 {
		o.label += ":" + strconv.FormatUint(uint64(spec.Port), 10)
	}
	o.server = p.newHTTPServer(o, "outbound "+ln.Addr().String())
	return o
}

// resolve finds the listener's service port in the current snapshot.
func (o *outbound) resolve() *servicePort {
	svc := o.p.view.Load().service(o.spec.Service, o.spec.Namespace)
	if svc == nil {
		return nil
	}
	return svc.port(o.spec.Port)
}

// handle serves one connection from the local app: TCP ports are spliced
// to an endpoint, HTTP ports go to the L7 server.
func (o *outbound) handle(c net.Conn) {
	sp := o.resolve()
	switch {
	case sp != nil && sp.protocol.isHTTP():
		o.queue.push(c)
	case sp != nil:
		o.p.dialAndSplice(c, sp)
	default:
		// Unknown service: answer HTTP clients 503, close anything else.
		stop := context.AfterFunc(o.p.ctx, func() { _ = c.Close() })
		k, prefix, err := sniffConn(c, time.Now().Add(sniffTimeout))
		stop()
		if err != nil || (k != kindHTTP1 && k != kindH2C) {
			o.p.log.Info("outbound connection closed: service not in the current snapshot", slog.String(logService, o.label))
			_ = c.Close()
			return
		}
		o.queue.push(&meshConn{Conn: c, prefix: prefix})
	}
}

// ServeHTTP forwards a request from the local app to the service.
func (o *outbound) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p := o.p
	ctx, span := p.cfg.Tracer.Start(r.Context(), r, tracing.Outbound, o.label)
	defer span.End()
	r = r.WithContext(ctx)
	if !checkLimits(w, r) {
		p.observeRequest(dirOutbound, o.label, http.StatusRequestHeaderFieldsTooLarge, true, time.Now())
		return
	}
	v := p.view.Load()
	svc := v.service(o.spec.Service, o.spec.Namespace)
	if svc == nil {
		p.reply(w, dirOutbound, o.label, true, http.StatusServiceUnavailable,
			"trustmesh: service "+o.spec.Service+"."+o.spec.Namespace+" has no endpoints (not in the current config)")
		return
	}
	sp := svc.port(o.spec.Port)
	if sp == nil {
		p.reply(w, dirOutbound, svc.label, true, http.StatusServiceUnavailable,
			"trustmesh: service "+svc.label+" has no port "+strconv.FormatUint(uint64(o.spec.Port), 10))
		return
	}
	p.forwardToService(o.rp, w, r, sp, span)
}

// forwardToService forwards r to the next endpoint of sp over pooled mTLS.
func (p *Proxy) forwardToService(rp *httputil.ReverseProxy, w http.ResponseWriter, r *http.Request, sp *servicePort, span tracing.Span) {
	ep, ok := sp.pick()
	if !ok {
		p.reply(w, dirOutbound, sp.svc.label, true, http.StatusServiceUnavailable,
			"trustmesh: service "+sp.svc.label+" port "+strconv.FormatUint(uint64(sp.port), 10)+" has no endpoints")
		return
	}
	span.SetIdentity(p.view.Load().selfID(), ep.idS)
	rt := &route{
		target:    ep.address,
		tls:       true,
		transport: p.upstreams.get(upstreamKey{namespace: sp.svc.key.namespace, name: sp.svc.key.name, port: sp.port, h2: sp.protocol.wantsH2()}),
		mesh:      true,
		service:   sp.svc.label,
		direction: dirOutbound,
		meta:      reqMeta{source: p.view.Load().selfID(), destination: ep.idS, span: span},
	}
	p.forward(rp, w, r, rt)
}

// dialAndSplice forwards a TCP connection from the local app to the next
// endpoint of sp.
func (p *Proxy) dialAndSplice(c net.Conn, sp *servicePort) {
	ep, ok := sp.pick()
	if !ok {
		p.log.Info("outbound connection closed: no endpoints", slog.String(logService, sp.svc.label))
		_ = c.Close()
		return
	}
	up := upstreamKey{namespace: sp.svc.key.namespace, name: sp.svc.key.name, port: sp.port}
	tc, pr, err := p.dialMesh(p.ctx, up, ep.address, []string{alpnTCP})
	if err != nil {
		p.log.Warn("outbound dial failed", slog.String(logService, sp.svc.label), slog.Any(logError, err))
		_ = c.Close()
		return
	}
	t := &trackedConn{peer: pr}
	t.attach(c, tc)
	p.conns.add(t)
	defer p.conns.remove(t)
	if revoked, _ := p.view.Load().revocations().Revoked(pr.leaf); revoked {
		t.close()
		return
	}
	rx, tx := splice(c, tc, tcpIdleTimeout)
	p.observeTCP(reqMeta{dir: dirOutbound, service: sp.svc.label, mesh: true, source: p.view.Load().selfID(), destination: pr.idS}, rx, tx)
}

// upstreamKey identifies a pool of mesh connections: one per service port
// and wire protocol, so a connection verified for one service is never
// reused for another.
type upstreamKey struct {
	namespace, name string
	port            uint32
	h2              bool
}

// upstreams holds the pooled mTLS transports. The mutex guards only the
// map; it is never held across I/O.
type upstreams struct {
	p  *Proxy
	mu sync.Mutex
	m  map[upstreamKey]*upstreamTransport
}

func (u *upstreams) get(k upstreamKey) *upstreamTransport {
	u.mu.Lock()
	defer u.mu.Unlock()
	if t, ok := u.m[k]; ok {
		return t
	}
	if u.m == nil {
		u.m = make(map[upstreamKey]*upstreamTransport)
	}
	t := u.p.newUpstreamTransport(k)
	u.m[k] = t
	return t
}

func (u *upstreams) closeIdle() {
	u.mu.Lock()
	ts := make([]*upstreamTransport, 0, len(u.m))
	for _, t := range u.m {
		ts = append(ts, t)
	}
	u.mu.Unlock()
	for _, t := range ts {
		t.CloseIdleConnections()
	}
}

// upstreamTransport is an http.Transport dialing mesh endpoints with mTLS,
// that also refuses a response from a peer revoked since the dial.
type upstreamTransport struct {
	*http.Transport
	p *Proxy
}

func (p *Proxy) newUpstreamTransport(k upstreamKey) *upstreamTransport {
	protos := []string{alpnH1}
	var hp http.Protocols
	if k.h2 {
		protos = []string{alpnH2}
		hp.SetHTTP2(true)
	} else {
		hp.SetHTTP1(true)
	}
	t := &http.Transport{
		Protocols: &hp,
		DialTLSContext: func(ctx context.Context, _, addr string) (net.Conn, error) {
			tc, _, err := p.dialMesh(ctx, k, addr, protos)
			if err != nil {
				return nil, err
			}
			return tc, nil
		},
		ForceAttemptHTTP2:   k.h2,
		MaxIdleConns:        1024,
		MaxIdleConnsPerHost: 64,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
		HTTP2: &http.HTTP2Config{
			MaxReadFrameSize:          h2MaxFrameSize,
			MaxDecoderHeaderTableSize: h2HeaderTableSize,
			SendPingTimeout:           30 * time.Second,
			PingTimeout:               15 * time.Second,
		},
	}
	return &upstreamTransport{Transport: t, p: p}
}

func (t *upstreamTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := t.Transport.RoundTrip(r)
	if err != nil {
		return nil, err
	}
	if resp.TLS != nil && len(resp.TLS.PeerCertificates) > 0 {
		if revoked, why := t.p.view.Load().revocations().Revoked(resp.TLS.PeerCertificates[0]); revoked {
			drainClose(resp.Body)
			t.CloseIdleConnections()
			t.p.metrics.refused.WithLabelValues(dirOutbound, refuseRevoked).Inc()
			return nil, fmt.Errorf("%w: %s", errRevoked, why)
		}
	}
	return resp, nil
}

var _ http.RoundTripper = (*upstreamTransport)(nil)

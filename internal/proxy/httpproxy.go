package proxy

import (
	"net"
	"net/http"
	"net/http/httputil"
	"strconv"
	"time"

	"github.com/trustmesh/trustmesh/internal/telemetry/tracing"
)

// httpProxy is the --http-proxy listener: apps set HTTP_PROXY to it and
// requests are routed by Host to services.
type httpProxy struct {
	p      *Proxy
	ln     net.Listener
	server *http.Server
	rp     *httputil.ReverseProxy
}

const httpProxyLabel = "http-proxy"

func newHTTPProxy(p *Proxy, ln net.Listener) *httpProxy {
	h := &httpProxy{p: p, ln: ln, rp: p.newReverseProxy()}
	h.server = p.newHTTPServer(h, "http-proxy "+ln.Addr().String())
	return h
}

// ServeHTTP routes by host: the absolute-form URL's host, else the Host
// header; lowercased, trailing dot removed. The port is the URL's, else 80,
// else the service's only port. CONNECT (HTTPS through the proxy) is not
// supported yet: 405.
func (h *httpProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p := h.p
	if r.Method == http.MethodConnect {
		w.Header().Set("Allow", "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS")
		p.reply(w, dirOutbound, httpProxyLabel, true, http.StatusMethodNotAllowed,
			"trustmesh: CONNECT is not supported; send plain http:// requests through the proxy, the mesh encrypts them")
		return
	}
	if !checkLimits(w, r) {
		p.observeRequest(dirOutbound, httpProxyLabel, http.StatusRequestHeaderFieldsTooLarge, true, time.Now())
		return
	}
	hostport := r.URL.Host
	if hostport == "" {
		hostport = r.Host
	}
	host, port, explicit := splitHostPort(hostport)
	if port == 0 {
		p.reply(w, dirOutbound, httpProxyLabel, true, http.StatusBadRequest, "trustmesh: bad port in host "+strconv.Quote(hostport))
		return
	}
	svc := p.view.Load().hostService(host)
	if svc == nil {
		p.reply(w, dirOutbound, httpProxyLabel, true, http.StatusBadGateway,
			"trustmesh: no service in the mesh has host "+strconv.Quote(host))
		return
	}
	sp := svc.port(port)
	if sp == nil && !explicit && len(svc.ports) == 1 {
		sp = svc.ports[0]
	}
	if sp == nil || !sp.protocol.isHTTP() {
		p.reply(w, dirOutbound, svc.label, true, http.StatusBadGateway,
			"trustmesh: service "+svc.label+" has no HTTP port "+strconv.FormatUint(uint64(port), 10))
		return
	}
	ctx, span := p.cfg.Tracer.Start(r.Context(), r, tracing.Outbound, svc.label)
	defer span.End()
	p.forwardToService(h.rp, w, r.WithContext(ctx), sp, span)
}

// splitHostPort splits a Host value into a normalized host and a port (80
// when absent, 0 when invalid) and reports whether the port was explicit.
func splitHostPort(hostport string) (host string, port uint32, explicit bool) {
	host = hostport
	if h, ps, err := net.SplitHostPort(hostport); err == nil {
		n, perr := strconv.ParseUint(ps, 10, 16)
		if perr != nil || n == 0 {
			return normalizeHost(h), 0, true
		}
		return normalizeHost(h), uint32(n), true
	}
	return normalizeHost(host), 80, false
}

// hostService returns the service with host h (normalized), if any.
func (v *view) hostService(h string) *service {
	if v == nil {
		return nil
	}
	return v.hosts[h]
}

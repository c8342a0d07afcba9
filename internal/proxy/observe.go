package proxy

import (
	"net/http"
	"strings"
	"time"

	configsyncv1 "github.com/trustmesh/trustmesh/api/configsync/v1"
	"github.com/trustmesh/trustmesh/internal/telemetry/accesslog"
	"github.com/trustmesh/trustmesh/internal/telemetry/tracing"
)

// reqMeta is what a request's (or TCP connection's) metrics are labelled
// with.
type reqMeta struct {
	dir, service string
	mesh         bool
	// source and destination are SPIFFE IDs, "" when unknown (plaintext,
	// or before the upstream is chosen).
	source, destination string
	// decision is the inbound authorization decision: allow, deny, or ""
	// where none was made (outbound, refusals before authorization).
	decision string
	// host is the request's (normalized) host, for Istio's
	// destination_service on inbound; grpc marks gRPC requests.
	host string
	grpc bool
	// req, reason and policy feed tap summaries and access logs.
	req    *http.Request
	reason string
	policy string
	// span is the request's trace span (a no-op when tracing is off).
	span tracing.Span
	// tlsGroup is the mesh hop's key exchange group, "" for plaintext.
	tlsGroup string
}

// observeRequest records a request known only by direction and service
// (refused before routing).
func (p *Proxy) observeRequest(dir, service string, code int, mesh bool, start time.Time) {
	p.observe(reqMeta{dir: dir, service: service, mesh: mesh}, code, start)
}

// observe records one request.
func (p *Proxy) observe(m reqMeta, code int, start time.Time) {
	if code == 0 {
		code = http.StatusBadGateway
	}
	d := time.Since(start)
	if m.dir == dirInbound && p.view.Load().tapping() {
		p.tap(&m, code, d)
	}
	if m.span != nil {
		m.span.SetStatus(code)
	}
	if p.cfg.AccessLog != nil {
		p.accessLog(&m, code, start, d)
	}
	if p.metrics.istio {
		l := istioValues(m, "http")
		if m.grpc {
			l[10] = "grpc"
		}
		l[11] = statusLabel(code)
		p.metrics.requests.WithLabelValues(l[:]...).Inc()
		p.metrics.duration.WithLabelValues(l[:]...).Observe(float64(d) / float64(time.Millisecond))
		return
	}
	mode := mtlsOff
	if m.mesh {
		mode = mtlsOn
	}
	p.metrics.requests.WithLabelValues(m.dir, m.service, statusLabel(code), mode, m.source, m.destination, m.decision).Inc()
	p.metrics.duration.WithLabelValues(m.dir, m.service, statusLabel(code), mode, m.source, m.destination, m.decision).Observe(d.Seconds())
}

// observeTCP records one finished TCP passthrough connection.
func (p *Proxy) observeTCP(m reqMeta, rx, tx int64) {
	if p.cfg.AccessLog != nil {
		p.cfg.AccessLog.Log(&accesslog.Entry{Time: time.Now(), Direction: m.dir, Protocol: "TCP", SourceID: m.source, DestinationID: m.destination,
			Service: m.service, BytesIn: rx, BytesOut: tx, Decision: m.decision, TLSGroup: m.tlsGroup})
	}
	if p.metrics.istio {
		full := istioValues(m, "tcp")
		l := append(full[:11:11], full[12:]...) // without response_code
		p.metrics.tcpConns.WithLabelValues(l...).Inc()
		p.metrics.tcpRecv.WithLabelValues(l...).Add(float64(rx))
		p.metrics.tcpBytes.WithLabelValues(l...).Add(float64(tx))
		return
	}
	p.metrics.tcpConns.WithLabelValues(m.dir, m.service, m.source, m.destination).Inc()
	p.metrics.tcpBytes.WithLabelValues(m.dir, m.service, "rx", m.source, m.destination).Add(float64(rx))
	p.metrics.tcpBytes.WithLabelValues(m.dir, m.service, "tx", m.source, m.destination).Add(float64(tx))
}

// istioValues are Istio's standard label values (istioLabels order) for m;
// response_code is left for the caller.
func istioValues(m reqMeta, protocol string) [14]string {
	reporter := "source"
	if m.dir == dirInbound {
		reporter = "destination"
	}
	srcWL, srcNS := workloadOf(m.source)
	dstWL, dstNS := workloadOf(m.destination)
	svc, svcName, svcNS := m.service, m.service, ""
	if m.dir == dirInbound {
		// Inbound knows the app's address, not the service: Istio reports
		// the host the client asked for.
		svc, svcName = m.host, m.host
	}
	if name, ns, ok := strings.Cut(svcName, "."); ok {
		svcName, svcNS = name, strings.TrimSuffix(ns, ".svc")
	}
	policy := "none"
	if m.mesh {
		policy = "mutual_tls"
	}
	return [14]string{reporter, orUnknown(srcWL), orUnknown(srcNS), orUnknown(m.source),
		orUnknown(dstWL), orUnknown(dstNS), orUnknown(m.destination),
		orUnknown(svc), orUnknown(svcName), orUnknown(svcNS),
		protocol, "", "-", policy}
}

// workloadOf maps a SPIFFE ID to Istio's workload and namespace: the
// service account (the last path segment) and the /ns/NAME/ segment.
func workloadOf(id string) (workload, namespace string) {
	if id == "" {
		return "", ""
	}
	path := strings.TrimPrefix(id, "spiffe://")
	if i := strings.IndexByte(path, '/'); i >= 0 {
		path = path[i:]
	} else {
		return "", ""
	}
	if rest, ok := strings.CutPrefix(path, "/ns/"); ok {
		namespace, _, _ = strings.Cut(rest, "/")
	}
	workload = path[strings.LastIndexByte(path, '/')+1:]
	return workload, namespace
}

func orUnknown(s string) string {
	if s == "" {
		return "unknown"
	}
	return s
}

// isGRPC reports whether r is a gRPC request.
func isGRPC(r *http.Request) bool {
	return r.ProtoMajor == 2 && strings.HasPrefix(r.Header.Get("Content-Type"), "application/grpc")
}

// accessLog writes the request's access-log line.
func (p *Proxy) accessLog(m *reqMeta, code int, start time.Time, d time.Duration) {
	e := accesslog.Entry{Time: start, Direction: m.dir, Protocol: "HTTP/1.1", SourceID: m.source, DestinationID: m.destination,
		Service: m.service, Status: code, Duration: d, Decision: m.decision, Policy: m.policy, Reason: m.reason, TLSGroup: m.tlsGroup}
	if m.req != nil {
		if m.req.ProtoMajor == 2 {
			e.Protocol = "HTTP/2"
		}
		e.Method, e.Path, e.SourceAddr, e.RequestID = m.req.Method, m.req.URL.EscapedPath(), m.req.RemoteAddr, m.req.Header.Get("X-Request-Id")
	}
	if m.span != nil {
		e.TraceID = m.span.TraceID()
	}
	p.cfg.AccessLog.Log(&e)
}

// tap adds a request summary to the tap buffer.
func (p *Proxy) tap(m *reqMeta, code int, d time.Duration) {
	rs := &configsyncv1.RequestSummary{TimeUnixNano: time.Now().UnixNano(), Direction: m.dir, Source: m.source, Destination: m.destination,
		Host: m.host, Protocol: "http", Status: uint32(code), DurationNanos: d.Nanoseconds(), Decision: m.decision, Reason: m.reason} //nolint:gosec // G115: an HTTP status
	if m.grpc {
		rs.Protocol = "grpc"
	}
	if m.req != nil {
		rs.Method, rs.Path = m.req.Method, m.req.URL.EscapedPath()
	}
	p.taps.add(rs)
}

// tapTCP adds a TCP connection's summary to the tap buffer.
func (p *Proxy) tapTCP(m *reqMeta, d time.Duration) {
	p.taps.add(&configsyncv1.RequestSummary{TimeUnixNano: time.Now().UnixNano(), Direction: m.dir, Source: m.source, Destination: m.destination,
		Protocol: "tcp", DurationNanos: d.Nanoseconds(), Decision: m.decision, Reason: m.reason})
}

package proxy

import (
	"crypto/tls"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// Metric label values.
const (
	dirInbound  = "inbound"
	dirOutbound = "outbound"

	mtlsOn  = "mtls"
	mtlsOff = "plaintext"
)

// metrics are the proxy's Prometheus collectors. Label sets are small and
// bounded: services come from the snapshot, ports from the config.
type metrics struct {
	requests   *prometheus.CounterVec   // direction, service, code, mtls
	duration   *prometheus.HistogramVec // direction, service
	tcpBytes   *prometheus.CounterVec   // direction, service, flow
	tcpConns   *prometheus.CounterVec   // direction, service
	handshakes *prometheus.CounterVec   // direction, group, resumed
	plaintext  *prometheus.CounterVec   // port, action
	refused    *prometheus.CounterVec   // direction, reason
	decisions  *prometheus.CounterVec   // decision, reason, policy
	// eventsDropped counts decision events lost because the buffer for the
	// audit log was full (the server unreachable for too long).
	eventsDropped prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "trustmesh_requests_total",
			Help: "HTTP requests forwarded, by direction, service, response code and whether the mesh hop used mTLS.",
		}, []string{"direction", "service", "code", "mtls"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "trustmesh_request_duration_seconds",
			Help:    "Time to the response headers of forwarded HTTP requests.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"direction", "service"}),
		tcpBytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "trustmesh_tcp_bytes_total",
			Help: "Bytes spliced on TCP passthrough connections; flow is rx (from the client side) or tx (to it).",
		}, []string{"direction", "service", "flow"}),
		tcpConns: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "trustmesh_tcp_connections_total",
			Help: "TCP passthrough connections.",
		}, []string{"direction", "service"}),
		handshakes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "trustmesh_tls_handshakes_total",
			Help: "Completed mesh TLS handshakes by direction, negotiated key exchange group and session resumption.",
		}, []string{"direction", "group", "resumed"}),
		plaintext: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "trustmesh_plaintext_connections_total",
			Help: "Plaintext connections seen on inbound listeners, by app port and whether they were accepted or refused.",
		}, []string{"port", "action"}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "trustmesh_peers_refused_total",
			Help: "Mesh connections or requests refused because of the peer's identity (untrusted, wrong trust domain, revoked, not allowed).",
		}, []string{"direction", "reason"}),
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "trustmesh_authz_decisions_total",
			Help: "Inbound authorization decisions: decision (allow, deny, audit, dry-run-deny, dry-run-allow), reason code and the deciding policy (namespace/name, empty for a default).",
		}, []string{"decision", "reason", "policy"}),
		eventsDropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "trustmesh_decision_events_dropped_total",
			Help: "Decision events for the audit log dropped because the proxy's buffer was full while the server was unreachable.",
		}),
	}
	for _, c := range []prometheus.Collector{m.requests, m.duration, m.tcpBytes, m.tcpConns, m.handshakes, m.plaintext, m.refused, m.decisions, m.eventsDropped} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register metrics: %w", err)
		}
	}
	return m, nil
}

// groupName names a TLS key exchange group for labels and logs.
func groupName(id tls.CurveID) string {
	switch id {
	case 0:
		return "none"
	case tls.X25519MLKEM768:
		return "X25519MLKEM768"
	case tls.X25519:
		return "X25519"
	}
	return id.String()
}

// statusText returns code as a label value without allocating for the
// common codes.
func statusLabel(code int) string {
	switch code {
	case 200:
		return "200"
	case 204:
		return "204"
	case 400:
		return "400"
	case 403:
		return "403"
	case 404:
		return "404"
	case 431:
		return "431"
	case 500:
		return "500"
	case 502:
		return "502"
	case 503:
		return "503"
	}
	return fmt.Sprint(code)
}

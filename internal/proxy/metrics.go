package proxy

import (
	"crypto/tls"
	"fmt"
	"slices"

	"github.com/prometheus/client_golang/prometheus"
)

// Metric label values.
const (
	dirInbound  = "inbound"
	dirOutbound = "outbound"

	mtlsOn  = "mtls"
	mtlsOff = "plaintext"
)

// Metric naming schemes (Config.MetricsNaming).
const (
	NamingTrustmesh = "trustmesh"
	NamingIstio     = "istio"
)

// metrics are the proxy's Prometheus collectors. Label sets are small and
// bounded: services come from the snapshot, identities from the mesh's
// workloads, ports from the config. With Istio naming, the request and
// TCP metrics are Istio's standard ones instead (istio_requests_total and
// friends, with Istio's labels), so existing dashboards and Kiali work.
type metrics struct {
	istio    bool
	requests *prometheus.CounterVec   // trustmesh: direction, service, code, mtls, source, destination, decision
	duration *prometheus.HistogramVec // same labels (seconds; Istio: milliseconds)
	tcpBytes *prometheus.CounterVec   // direction, service, flow (Istio: sent/received vectors)
	tcpConns *prometheus.CounterVec   // direction, service
	tcpRecv  *prometheus.CounterVec   // Istio only

	handshakes *prometheus.CounterVec // direction, group, resumed
	plaintext  *prometheus.CounterVec // port, action
	refused    *prometheus.CounterVec // direction, reason
	decisions  *prometheus.CounterVec // decision, reason, policy
	// eventsDropped counts decision events lost because the buffer for the
	// audit log was full (the server unreachable for too long).
	eventsDropped prometheus.Counter
}

// requestLabels are the labels of trustmesh_requests_total and
// trustmesh_request_duration_seconds.
var requestLabels = []string{"direction", "service", "code", "mtls", "source", "destination", "decision"}

// istioLabels are Istio's standard labels, in this order.
var istioLabels = []string{"reporter", "source_workload", "source_workload_namespace", "source_principal",
	"destination_workload", "destination_workload_namespace", "destination_principal",
	"destination_service", "destination_service_name", "destination_service_namespace",
	"request_protocol", "response_code", "response_flags", "connection_security_policy"}

func newMetrics(reg prometheus.Registerer, naming string) (*metrics, error) {
	m := &metrics{istio: naming == NamingIstio}
	if m.istio {
		m.requests = prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "istio_requests_total",
			Help: "Requests, with Istio's standard labels (trustmesh proxy, --metrics-naming istio).",
		}, istioLabels)
		m.duration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "istio_request_duration_milliseconds",
			Help:    "Request duration in milliseconds, with Istio's standard labels.",
			Buckets: []float64{1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 300000, 600000, 1800000, 3600000},
		}, istioLabels)
		tcpLabels := slices.DeleteFunc(slices.Clone(istioLabels), func(l string) bool { return l == "response_code" })
		m.tcpBytes = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "istio_tcp_sent_bytes_total", Help: "TCP bytes sent toward the client side, with Istio's standard labels."}, tcpLabels)
		m.tcpRecv = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "istio_tcp_received_bytes_total", Help: "TCP bytes received from the client side, with Istio's standard labels."}, tcpLabels)
		m.tcpConns = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "istio_tcp_connections_opened_total", Help: "TCP connections opened, with Istio's standard labels."}, tcpLabels)
	} else {
		m.requests = prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "trustmesh_requests_total",
			Help: "HTTP requests, by direction, service, response code, whether the mesh hop used mTLS, source and destination SPIFFE IDs (\"\" if unknown) and the authorization decision (inbound: allow or deny; \"\" where none was made).",
		}, requestLabels)
		m.duration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "trustmesh_request_duration_seconds",
			Help:    "Time to the response headers of HTTP requests, with the labels of trustmesh_requests_total.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, requestLabels)
		m.tcpBytes = prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "trustmesh_tcp_bytes_total",
			Help: "Bytes spliced on TCP passthrough connections; flow is rx (from the client side) or tx (to it).",
		}, []string{"direction", "service", "flow", "source", "destination"})
		m.tcpConns = prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "trustmesh_tcp_connections_total",
			Help: "TCP passthrough connections, with source and destination SPIFFE IDs.",
		}, []string{"direction", "service", "source", "destination"})
	}
	m.fixedMetrics()
	cs := []prometheus.Collector{m.requests, m.duration, m.tcpBytes, m.tcpConns, m.handshakes, m.plaintext, m.refused, m.decisions, m.eventsDropped}
	if m.tcpRecv != nil {
		cs = append(cs, m.tcpRecv)
	}
	for _, c := range cs {
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

// fixedMetrics builds the collectors that are the same in both namings.
func (m *metrics) fixedMetrics() {
	m.handshakes = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "trustmesh_tls_handshakes_total",
		Help: "Completed mesh TLS handshakes by direction, negotiated key exchange group and session resumption.",
	}, []string{"direction", "group", "resumed"})
	m.plaintext = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "trustmesh_plaintext_connections_total",
		Help: "Plaintext connections seen on inbound listeners, by app port and whether they were accepted or refused.",
	}, []string{"port", "action"})
	m.refused = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "trustmesh_peers_refused_total",
		Help: "Mesh connections or requests refused because of the peer's identity (untrusted, wrong trust domain, revoked, not allowed).",
	}, []string{"direction", "reason"})
	m.decisions = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "trustmesh_authz_decisions_total",
		Help: "Inbound authorization decisions: decision (allow, deny, audit, dry-run-deny, dry-run-allow), reason code and the deciding policy (namespace/name, empty for a default).",
	}, []string{"decision", "reason", "policy"})
	m.eventsDropped = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "trustmesh_decision_events_dropped_total",
		Help: "Decision events for the audit log dropped because the proxy's buffer was full while the server was unreachable.",
	})
}

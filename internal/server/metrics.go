package server

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/trustmesh/trustmesh/internal/store"
)

// serverMetrics are the control plane's own collectors; the config push
// hub registers its own (snapshot pushes, ACK/NACK, latency, proxies).
type serverMetrics struct {
	reg         *prometheus.Registry
	issued      *prometheus.CounterVec // kind
	revocations prometheus.Counter
	audit       prometheus.Counter
	storeOps    *prometheus.HistogramVec // op
	singleton   *prometheus.GaugeVec     // role
}

func newServerMetrics() *serverMetrics {
	m := &serverMetrics{
		reg: prometheus.NewRegistry(),
		issued: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "trustmesh_server_svids_issued_total",
			Help: "Credentials issued, by kind (x509-svid, jwt-svid, node-svid, admin)."}, []string{"kind"}),
		revocations: prometheus.NewCounter(prometheus.CounterOpts{Name: "trustmesh_server_revocations_total", Help: "Revocations recorded."}),
		audit:       prometheus.NewCounter(prometheus.CounterOpts{Name: "trustmesh_server_decision_events_total", Help: "Decision events from proxies recorded in the audit log (the chain's length is trustmesh_server_audit_chain_length)."}),
		storeOps: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "trustmesh_server_store_seconds",
			Help: "Latency of store writes on the hot paths: issued-credential records and audit appends.", Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, 1}}, []string{"op"}),
		singleton: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "trustmesh_server_singleton_role",
			Help: "1 while this replica holds a singleton role (ca-lifecycle, audit-checkpoints, expiry-sweeps), else 0."}, []string{"role"}),
	}
	m.reg.MustRegister(m.issued, m.revocations, m.audit, m.storeOps, m.singleton,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// registerChainLength adds the audit chain's length (its head's sequence
// number), read from the store at scrape time.
func (m *serverMetrics) registerChainLength(st store.Store) {
	m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "trustmesh_server_audit_chain_length",
		Help: "Sequence number of the audit log's last record (0 for an empty log)."}, func() float64 {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		head, err := st.AuditHead(ctx)
		if err != nil {
			return 0
		}
		return float64(head.Seq)
	}))
}

// countIssued counts committed issued-credential records and times the
// write.
func (m *serverMetrics) countIssued(recs []store.Issued, d time.Duration) {
	for _, r := range recs {
		m.issued.WithLabelValues(r.Kind).Inc()
	}
	m.storeOps.WithLabelValues("issued").Observe(d.Seconds())
}

// observeStore times one store write.
func (m *serverMetrics) observeStore(op string, start time.Time) {
	m.storeOps.WithLabelValues(op).Observe(time.Since(start).Seconds())
}

// serveMetrics serves /metrics on addr (plain HTTP: bind it to loopback or
// a scrape network) until ctx ends.
func (m *serverMetrics) serveMetrics(ctx context.Context, ln net.Listener) error {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{}))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("metrics listener: %w", err)
	}
	return nil
}

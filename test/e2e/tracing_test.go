package e2e

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	collectortrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracev1 "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/grpc"
)

// otlpCollector is a real OTLP/gRPC trace receiver on a loopback port.
type otlpCollector struct {
	collectortrace.UnimplementedTraceServiceServer
	mu    sync.Mutex
	spans []*tracev1.Span
}

func (c *otlpCollector) Export(_ context.Context, req *collectortrace.ExportTraceServiceRequest) (*collectortrace.ExportTraceServiceResponse, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, rs := range req.GetResourceSpans() {
		for _, ss := range rs.GetScopeSpans() {
			c.spans = append(c.spans, ss.GetSpans()...)
		}
	}
	return &collectortrace.ExportTraceServiceResponse{}, nil
}

// pair returns an inbound span and the outbound span of the same trace
// (the first requests may have failed before the inbound proxy was an
// endpoint: their outbound spans have no inbound partner).
func (c *otlpCollector) pair() (in, out *tracev1.Span) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, i := range c.spans {
		if !strings.HasPrefix(i.GetName(), "inbound") {
			continue
		}
		for _, o := range c.spans {
			if strings.HasPrefix(o.GetName(), "outbound") && string(o.GetTraceId()) == string(i.GetTraceId()) {
				return i, o
			}
		}
	}
	return nil, nil
}

func attr(s *tracev1.Span, key string) string {
	for _, kv := range s.GetAttributes() {
		if kv.GetKey() == key {
			return kv.GetValue().GetStringValue()
		}
	}
	return ""
}

// TestTracesThroughProxies: with --otlp-endpoint both proxies export a
// span per request to a real OTLP receiver, one trace across the hops,
// with the identities and the decision; the app receives the trace context.
func TestTracesThroughProxies(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	col := &otlpCollector{}
	gs := grpc.NewServer()
	collectortrace.RegisterTraceServiceServer(gs, col)
	go func() { _ = gs.Serve(ln) }()
	t.Cleanup(gs.Stop)

	var seen sync.Map
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen.Store("traceparent", r.Header.Get("Traceparent"))
		fmt.Fprint(w, "ok")
	}))
	t.Cleanup(app.Close)
	_, port, _ := net.SplitHostPort(strings.TrimPrefix(app.URL, "http://"))
	var appPort int
	fmt.Sscan(port, &appPort)

	s := startServer(t, "trace.example")
	s.apply(t, meshYAML(s.td, appPort))
	a := startAgent(t, s, filepath.Join(t.TempDir(), "agent"), s.token(t, "node-1"))
	inbound, outbound := freeAddr(t), freeAddr(t)
	otlp := []string{"--otlp-endpoint", ln.Addr().String(), "--otlp-insecure"}
	orders := startProxy(t, s, a, "spiffe://trace.example/ns/default/sa/orders", append([]string{"--inbound", inbound + "=" + strings.TrimPrefix(app.URL, "http://")}, otlp...)...)
	front := startProxy(t, s, a, "spiffe://trace.example/ns/default/sa/frontend", append([]string{"--outbound", outbound + "=orders:80"}, otlp...)...)
	waitFor(t, "a request through both proxies", 20*time.Second, func() bool {
		resp, err := http.Get("http://" + outbound + "/traced")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})
	// Spans are batched: stopping the proxies flushes them.
	_ = front.stop()
	_ = orders.stop()
	var in, out *tracev1.Span
	waitFor(t, "an inbound and an outbound span of one trace at the collector", 10*time.Second, func() bool {
		in, out = col.pair()
		return in != nil
	})
	if string(in.GetParentSpanId()) != string(out.GetSpanId()) {
		t.Errorf("the inbound span's parent is %x, want the outbound span %x", in.GetParentSpanId(), out.GetSpanId())
	}
	for key, want := range map[string]string{
		"trustmesh.source.principal":      "spiffe://trace.example/ns/default/sa/frontend",
		"trustmesh.destination.principal": "spiffe://trace.example/ns/default/sa/orders",
		"trustmesh.decision":              "allow",
	} {
		if got := attr(in, key); got != want {
			t.Errorf("inbound span %s = %q, want %q", key, got, want)
		}
	}
	if tp, _ := seen.Load("traceparent"); tp == nil || !strings.Contains(tp.(string), fmt.Sprintf("%x", in.GetTraceId())) {
		t.Errorf("the app received traceparent %v, want one of trace %x", tp, in.GetTraceId())
	}
}

package tracing

import (
	"context"
	"encoding/hex"
	"net"
	"runtime"
	"sync"
	"testing"
	"time"

	collectortrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/grpc"
)

// collector is an in-process OTLP/gRPC trace receiver.
type collector struct {
	collectortrace.UnimplementedTraceServiceServer
	mu    sync.Mutex
	spans []*tracepb.Span
	svc   []string // service.name of each resource received
}

func (c *collector) Export(_ context.Context, req *collectortrace.ExportTraceServiceRequest) (*collectortrace.ExportTraceServiceResponse, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, rs := range req.GetResourceSpans() {
		for _, kv := range rs.GetResource().GetAttributes() {
			if kv.GetKey() == "service.name" {
				c.svc = append(c.svc, kv.GetValue().GetStringValue())
			}
		}
		for _, ss := range rs.GetScopeSpans() {
			c.spans = append(c.spans, ss.GetSpans()...)
		}
	}
	return &collectortrace.ExportTraceServiceResponse{}, nil
}

// startCollector serves a collector on a loopback port until stop (or
// the end of the test).
func startCollector(t *testing.T) (c *collector, addr string, stop func()) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c = &collector{}
	srv := grpc.NewServer()
	collectortrace.RegisterTraceServiceServer(srv, c)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(ln)
	}()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			srv.Stop()
			<-done
		})
	}
	t.Cleanup(stop)
	return c, ln.Addr().String(), stop
}

// waitGoroutines waits until at most n goroutines run, polling until a
// deadline: exporter and gRPC goroutines exit asynchronously after
// Shutdown returns.
func waitGoroutines(t *testing.T, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for runtime.NumGoroutine() > n {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("%d goroutines, want at most %d:\n%s", runtime.NumGoroutine(), n, buf[:runtime.Stack(buf, true)])
		}
		<-tick.C
	}
}

func stringAttr(kvs []*commonpb.KeyValue, key string) string {
	for _, kv := range kvs {
		if kv.GetKey() == key {
			return kv.GetValue().GetStringValue()
		}
	}
	return ""
}

// TestOTLPExport sends a span to a real OTLP/gRPC receiver: Shutdown
// flushes the batch, so the receiver has it when Shutdown returns, and
// stops every goroutine the exporter started.
func TestOTLPExport(t *testing.T) {
	before := runtime.NumGoroutine()
	c, addr, stop := startCollector(t)
	tr, err := New(context.Background(), Config{Endpoint: addr, Insecure: true, ServiceName: "orders-proxy"})
	if err != nil {
		t.Fatal(err)
	}
	r := request("GET", "/orders/7", map[string]string{"Traceparent": "00-" + incomingTrace + "-" + incomingParent + "-01"})
	_, span := tr.Start(context.Background(), r, Inbound, "orders")
	span.SetIdentity(web, orders)
	span.SetDecision("deny", "shop/deny-all")
	span.SetStatus(403)
	span.End()
	if err := tr.Shutdown(context.Background()); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	stop()
	waitGoroutines(t, before) // Shutdown leaves nothing behind

	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.spans) != 1 {
		t.Fatalf("collector got %d spans, want 1", len(c.spans))
	}
	s := c.spans[0]
	if s.GetName() != "inbound orders" || s.GetKind() != tracepb.Span_SPAN_KIND_SERVER {
		t.Errorf("span %q kind %v, want \"inbound orders\" server", s.GetName(), s.GetKind())
	}
	if got := hex.EncodeToString(s.GetTraceId()); got != incomingTrace {
		t.Errorf("trace %s, want %s", got, incomingTrace)
	}
	if got := hex.EncodeToString(s.GetParentSpanId()); got != incomingParent {
		t.Errorf("parent %s, want %s", got, incomingParent)
	}
	for key, want := range map[string]string{
		"trustmesh.source.principal": web, "trustmesh.decision": "deny", "trustmesh.policy": "shop/deny-all",
	} {
		if got := stringAttr(s.GetAttributes(), key); got != want {
			t.Errorf("%s = %q, want %q", key, got, want)
		}
	}
	if len(c.svc) != 1 || c.svc[0] != "orders-proxy" {
		t.Errorf("service.name %v, want [orders-proxy]", c.svc)
	}
}

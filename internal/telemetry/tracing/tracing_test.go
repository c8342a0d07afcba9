package tracing

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
)

const (
	incomingTrace  = "4bf92f3577b34da6a3ce929d0e0e4736"
	incomingParent = "00f067aa0ba902b7"
	web            = "spiffe://example.org/ns/shop/sa/web"
	orders         = "spiffe://example.org/ns/shop/sa/orders"
)

func newTestTracer(t *testing.T, cfg Config) (*Tracer, *tracetest.InMemoryExporter) {
	t.Helper()
	exp := tracetest.NewInMemoryExporter()
	if cfg.ServiceName == "" {
		cfg.ServiceName = "orders-proxy"
	}
	tr, err := newTracer(context.Background(), cfg, withExporter(exp))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := tr.Shutdown(context.Background()); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
	})
	return tr, exp
}

func request(method, target string, header map[string]string) *http.Request {
	r := httptest.NewRequest(method, target, nil)
	for k, v := range header {
		r.Header.Set(k, v)
	}
	return r
}

// attrs is a span's attributes as a map.
func attrs(kvs []attribute.KeyValue) map[string]any {
	m := map[string]any{}
	for _, kv := range kvs {
		m[string(kv.Key)] = kv.Value.AsInterface()
	}
	return m
}

func TestInboundSpanContinuesTrace(t *testing.T) {
	tr, exp := newTestTracer(t, Config{})
	r := request("POST", "/orders/%2e%2e/7", map[string]string{
		"Traceparent": "00-" + incomingTrace + "-" + incomingParent + "-01",
		"Tracestate":  "vendor=x",
		"Baggage":     "tenant=acme",
	})
	ctx, span := tr.Start(context.Background(), r, Inbound, "orders")
	span.SetIdentity(web, orders)
	span.SetPath("/7")
	span.SetDecision("allow", "shop/allow-web")
	out := http.Header{}
	span.Inject(out)
	span.SetStatus(201)
	if got := span.TraceID(); got != incomingTrace {
		t.Errorf("TraceID() = %q, want %q", got, incomingTrace)
	}
	span.End()

	spans := exp.GetSpans()
	if len(spans) != 1 {
		t.Fatalf("got %d spans, want 1", len(spans))
	}
	s := spans[0]
	if s.Name != "inbound orders" || s.SpanKind != trace.SpanKindServer {
		t.Errorf("span %q kind %v, want %q server", s.Name, s.SpanKind, "inbound orders")
	}
	if got := s.Parent.SpanID().String(); got != incomingParent || !s.Parent.IsRemote() {
		t.Errorf("parent %s (remote %v), want remote %s", got, s.Parent.IsRemote(), incomingParent)
	}
	if got := s.SpanContext.TraceID().String(); got != incomingTrace {
		t.Errorf("trace %s, want %s", got, incomingTrace)
	}
	want := map[string]any{
		"http.request.method":             "POST",
		"url.path":                        "/7",
		"http.response.status_code":       int64(201),
		"trustmesh.source.principal":      web,
		"trustmesh.destination.principal": orders,
		"trustmesh.decision":              "allow",
		"trustmesh.policy":                "shop/allow-web",
	}
	if diff := cmp.Diff(want, attrs(s.Attributes)); diff != "" {
		t.Errorf("attributes (-want +got):\n%s", diff)
	}
	if s.Status.Code != codes.Unset {
		t.Errorf("status %v, want unset", s.Status.Code)
	}
	if want := attribute.String("service.name", "orders-proxy"); !hasAttr(s.Resource.Attributes(), want) {
		t.Errorf("resource %v lacks %v", s.Resource.Attributes(), want)
	}

	// The forwarded request continues the trace with our span as parent.
	wantTP := "00-" + incomingTrace + "-" + s.SpanContext.SpanID().String() + "-01"
	if got := out.Get("Traceparent"); got != wantTP {
		t.Errorf("traceparent %q, want %q", got, wantTP)
	}
	if got := out.Get("Tracestate"); got != "vendor=x" {
		t.Errorf("tracestate %q, want vendor=x", got)
	}
	if got := out.Get("Baggage"); got != "tenant=acme" {
		t.Errorf("baggage %q, want tenant=acme", got)
	}
	if trace.SpanFromContext(ctx).SpanContext().SpanID() != s.SpanContext.SpanID() {
		t.Error("the returned context does not carry the span")
	}
}

func hasAttr(kvs []attribute.KeyValue, want attribute.KeyValue) bool {
	for _, kv := range kvs {
		if kv == want {
			return true
		}
	}
	return false
}

func TestRootSpan(t *testing.T) {
	tr, exp := newTestTracer(t, Config{})
	_, span := tr.Start(context.Background(), request("GET", "/", nil), Inbound, "orders")
	id := span.TraceID()
	span.End()
	s := exp.GetSpans()[0]
	if s.Parent.IsValid() {
		t.Errorf("parent %v, want none", s.Parent)
	}
	if len(id) != 32 || id != s.SpanContext.TraceID().String() {
		t.Errorf("TraceID() = %q, want the span's %s", id, s.SpanContext.TraceID())
	}
}

func TestStatusAndKind(t *testing.T) {
	tests := []struct {
		name      string
		direction string
		code      int
		kind      trace.SpanKind
		status    codes.Code
	}{
		{"inbound-ok", Inbound, 200, trace.SpanKindServer, codes.Unset},
		{"inbound-denied-is-not-an-error", Inbound, 403, trace.SpanKindServer, codes.Unset},
		{"inbound-bad-gateway", Inbound, 502, trace.SpanKindServer, codes.Error},
		{"outbound-ok", Outbound, 204, trace.SpanKindClient, codes.Unset},
		{"outbound-not-found", Outbound, 404, trace.SpanKindClient, codes.Error},
		{"outbound-unavailable", Outbound, 503, trace.SpanKindClient, codes.Error},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr, exp := newTestTracer(t, Config{})
			_, span := tr.Start(context.Background(), request("GET", "/x", nil), tt.direction, "payments.shop")
			span.SetStatus(tt.code)
			span.End()
			s := exp.GetSpans()[0]
			if want := tt.direction + " payments.shop"; s.Name != want {
				t.Errorf("name %q, want %q", s.Name, want)
			}
			if s.SpanKind != tt.kind || s.Status.Code != tt.status {
				t.Errorf("kind %v status %v, want %v %v", s.SpanKind, s.Status.Code, tt.kind, tt.status)
			}
		})
	}
}

func TestMethodBounded(t *testing.T) {
	tr, exp := newTestTracer(t, Config{})
	_, span := tr.Start(context.Background(), request("BREW", "/pot", nil), Inbound, "coffee")
	span.SetIdentity("", "")
	span.SetDecision("", "")
	span.SetPath("")
	span.End()
	got := attrs(exp.GetSpans()[0].Attributes)
	want := map[string]any{"http.request.method": "_OTHER", "url.path": "/pot"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("attributes (-want +got):\n%s", diff)
	}
}

func TestParentBasedSampling(t *testing.T) {
	tr, exp := newTestTracer(t, Config{})
	r := request("GET", "/", map[string]string{"Traceparent": "00-" + incomingTrace + "-" + incomingParent + "-00"})
	_, span := tr.Start(context.Background(), r, Inbound, "orders")
	out := http.Header{}
	span.Inject(out)
	span.End()
	if n := len(exp.GetSpans()); n != 0 {
		t.Errorf("exported %d spans of an unsampled trace, want 0", n)
	}
	if got := out.Get("Traceparent"); !strings.HasPrefix(got, "00-"+incomingTrace+"-") || !strings.HasSuffix(got, "-00") {
		t.Errorf("traceparent %q, want the same trace, not sampled", got)
	}
	if got := span.TraceID(); got != incomingTrace {
		t.Errorf("TraceID() = %q, want %q (logged even when not sampled)", got, incomingTrace)
	}
}

func TestOff(t *testing.T) {
	off, err := New(context.Background(), Config{})
	if err != nil {
		t.Fatal(err)
	}
	for name, tr := range map[string]*Tracer{"no-endpoint": off, "nil": nil} {
		t.Run(name, func(t *testing.T) {
			if tr.Enabled() {
				t.Error("Enabled() = true")
			}
			r := request("GET", "/", map[string]string{"Traceparent": "00-" + incomingTrace + "-" + incomingParent + "-01"})
			h := http.Header{"Traceparent": {"kept"}}
			ctx := context.Background()
			n := testing.AllocsPerRun(100, func() {
				c, span := tr.Start(ctx, r, Inbound, "orders")
				span.SetIdentity(web, orders)
				span.SetPath("/")
				span.SetDecision("allow", "shop/allow-web")
				span.SetStatus(200)
				span.Inject(h)
				if span.TraceID() != "" || c != ctx {
					t.Fatal("a span while off")
				}
				span.End()
			})
			if n != 0 {
				t.Errorf("%v allocations per request, want 0", n)
			}
			if got := h.Get("Traceparent"); got != "kept" {
				t.Errorf("traceparent %q: changed while off", got)
			}
			if err := tr.Shutdown(ctx); err != nil {
				t.Errorf("Shutdown: %v", err)
			}
		})
	}
}

func TestConfigErrors(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		want string
	}{
		{"negative-ratio", Config{Endpoint: "127.0.0.1:4317", ServiceName: "p", SampleRatio: -0.1}, "sample ratio"},
		{"ratio-above-one", Config{Endpoint: "127.0.0.1:4317", ServiceName: "p", SampleRatio: 1.5}, "sample ratio"},
		{"no-service-name", Config{Endpoint: "127.0.0.1:4317"}, "service name"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr, err := New(context.Background(), tt.cfg)
			if err == nil {
				_ = tr.Shutdown(context.Background())
				t.Fatal("got nil error")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("got %q, want it to contain %q", err, tt.want)
			}
		})
	}
}

func BenchmarkStartOff(b *testing.B) {
	var tr *Tracer
	r := request("GET", "/orders/7", nil)
	ctx := context.Background()
	h := http.Header{}
	b.ReportAllocs()
	for b.Loop() {
		_, span := tr.Start(ctx, r, Inbound, "orders")
		span.SetIdentity(web, orders)
		span.Inject(h)
		span.SetStatus(200)
		span.End()
	}
}

// BenchmarkStartOn is a sampled request with the batch processor the OTLP
// exporter uses, exporting to nowhere.
func BenchmarkStartOn(b *testing.B) {
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(tracetest.NewNoopExporter()))
	b.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	tr := &Tracer{tp: tp, tracer: tp.Tracer(instrumentation), prop: propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})}
	r := request("GET", "/orders/7", map[string]string{"Traceparent": "00-" + incomingTrace + "-" + incomingParent + "-01"})
	ctx := context.Background()
	h := http.Header{}
	b.ReportAllocs()
	for b.Loop() {
		_, span := tr.Start(ctx, r, Inbound, "orders")
		span.SetIdentity(web, orders)
		span.SetDecision("allow", "shop/allow-web")
		span.Inject(h)
		span.SetStatus(200)
		_ = span.TraceID()
		span.End()
	}
}

// flakyExporter fails while fail is set.
type flakyExporter struct {
	tracetest.NoopExporter
	fail bool
}

func (e *flakyExporter) ExportSpans(context.Context, []sdktrace.ReadOnlySpan) error {
	if e.fail {
		return errors.New("connection refused")
	}
	return nil
}

func TestExportFailuresLoggedOnce(t *testing.T) {
	var logs bytes.Buffer
	flaky := &flakyExporter{fail: true}
	e := &loggingExporter{SpanExporter: flaky, log: slog.New(slog.NewTextHandler(&logs, nil)), endpoint: "collector:4317"}
	for range 3 {
		if err := e.ExportSpans(context.Background(), nil); err != nil {
			t.Errorf("ExportSpans: %v, want nil (logged instead)", err)
		}
	}
	flaky.fail = false
	for range 2 {
		if err := e.ExportSpans(context.Background(), nil); err != nil {
			t.Errorf("ExportSpans: %v", err)
		}
	}
	got := logs.String()
	if n := strings.Count(got, "trace export failed"); n != 1 {
		t.Errorf("failure logged %d times, want once:\n%s", n, got)
	}
	for _, want := range []string{"connection refused", "collector:4317", "trace export succeeds again"} {
		if !strings.Contains(got, want) {
			t.Errorf("logs lack %q:\n%s", want, got)
		}
	}
}

// Package tracing gives the proxy OpenTelemetry spans: one per proxied
// HTTP request, continuing the caller's W3C trace context and handing it
// on to the next hop, exported over OTLP/gRPC in batches.
//
// # Model
//
// [New] builds a [Tracer] from a [Config]. With no Endpoint, tracing is
// off: [Tracer.Start] returns the context unchanged and a Span whose
// methods do nothing, without allocating, and incoming trace headers pass
// through untouched. A nil *Tracer behaves the same. With an Endpoint,
// Start extracts traceparent, tracestate and baggage from the request and
// starts a span named "inbound SERVICE" (kind server) or "outbound
// SERVICE" (kind client: the proxy is the client of the upstream) with
// the attributes http.request.method and url.path; the Span then records
// the peers' SPIFFE IDs (trustmesh.source.principal,
// trustmesh.destination.principal), the authorization outcome
// (trustmesh.decision, trustmesh.policy) and http.response.status_code,
// and [Span.Inject] writes the span's context into the forwarded request.
// Root spans are sampled with SampleRatio; a span with a parent follows
// the parent's decision.
//
// # Trust
//
// The trace context comes from the caller, which may be a plaintext
// client (PERMISSIVE): it chooses the trace ID and whether the request is
// sampled, and its baggage reaches the app. Trace data is evidence of
// what was said, not of who said it; the principals on the span are the
// verified ones.
//
// # Concurrency
//
// A Tracer is safe for concurrent use; a Span belongs to its request's
// goroutine. Finished spans are queued (2048) and exported in the
// background by the SDK's batch processor, which drops spans when the
// queue is full: the request path never waits for the collector. Export
// failures are logged once per run of failures, not per batch.
// [Tracer.Shutdown] exports what is queued and stops the exporter; call
// it once, after the proxy has stopped serving.
package tracing

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
)

// Config configures a Tracer. The OTLP exporter's environment variables
// (OTEL_EXPORTER_OTLP_HEADERS, _TIMEOUT, _COMPRESSION …) still apply, but
// not to the endpoint or the transport security, which are the config's.
type Config struct {
	// Endpoint is the OTLP/gRPC collector as host:port. Empty turns
	// tracing off.
	Endpoint string
	// Insecure sends to the collector without TLS. Otherwise TLS is
	// verified against the system roots.
	Insecure bool
	// ServiceName is the service.name of the proxy's spans, such as the
	// workload's SPIFFE ID or service. Required with an Endpoint.
	ServiceName string
	// SampleRatio is the fraction of root spans (requests without a
	// sampled parent decision) that are sampled, in (0, 1]. Zero means 1.
	SampleRatio float64
	// Logger receives export errors. Nil discards them.
	Logger *slog.Logger
}

// Direction values for Start.
const (
	Inbound  = "inbound"
	Outbound = "outbound"
)

// Span attribute keys of our own; the others are OpenTelemetry semantic
// conventions.
const (
	AttrSourcePrincipal      = attribute.Key("trustmesh.source.principal")
	AttrDestinationPrincipal = attribute.Key("trustmesh.destination.principal")
	AttrDecision             = attribute.Key("trustmesh.decision")
	AttrPolicy               = attribute.Key("trustmesh.policy")
)

// instrumentation is the tracer's instrumentation scope name.
const instrumentation = "github.com/trustmesh/trustmesh/internal/telemetry/tracing"

// Log attribute keys.
const (
	logComponent = "component"
	logEndpoint  = "endpoint"
	logError     = "error"
)

// Tracer starts the proxy's spans. The zero Tracer and a nil *Tracer
// trace nothing.
type Tracer struct {
	tp     *sdktrace.TracerProvider // nil: tracing off
	tracer trace.Tracer
	prop   propagation.TextMapPropagator
}

// option is a setting for tests.
type option func(*options)

type options struct {
	exporter sdktrace.SpanExporter // exported synchronously, Endpoint ignored
}

// withExporter sends every span to exp as it ends, instead of the OTLP
// batch exporter.
func withExporter(exp sdktrace.SpanExporter) option {
	return func(o *options) { o.exporter = exp }
}

// New validates cfg and builds a Tracer. It does not connect: the
// exporter dials the collector on first use and retries in the background.
func New(ctx context.Context, cfg Config) (*Tracer, error) {
	return newTracer(ctx, cfg)
}

func newTracer(ctx context.Context, cfg Config, opts ...option) (*Tracer, error) {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	if cfg.Endpoint == "" && o.exporter == nil {
		return &Tracer{}, nil
	}
	if cfg.SampleRatio < 0 || cfg.SampleRatio > 1 {
		return nil, fmt.Errorf("tracing config: sample ratio %v: want a number in (0, 1]", cfg.SampleRatio)
	}
	if cfg.ServiceName == "" {
		return nil, errors.New("tracing config: a service name is required")
	}
	ratio := cfg.SampleRatio
	if ratio == 0 {
		ratio = 1
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With(slog.String(logComponent, "tracing"))

	res, err := resource.Merge(resource.Default(), resource.NewSchemaless(semconv.ServiceName(cfg.ServiceName)))
	if err != nil {
		return nil, fmt.Errorf("tracing resource: %w", err)
	}
	tpOpts := []sdktrace.TracerProviderOption{
		sdktrace.WithResource(res),
		sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.TraceIDRatioBased(ratio))),
	}
	if o.exporter != nil {
		tpOpts = append(tpOpts, sdktrace.WithSyncer(o.exporter))
	} else {
		// Credentials are set either way, so that the OTEL_EXPORTER_OTLP_*
		// environment variables cannot change them behind the config's back.
		creds := credentials.NewTLS(&tls.Config{MinVersion: tls.VersionTLS12})
		if cfg.Insecure {
			creds = insecure.NewCredentials()
		}
		exp, err := otlptracegrpc.New(ctx, otlptracegrpc.WithEndpoint(cfg.Endpoint), otlptracegrpc.WithTLSCredentials(creds))
		if err != nil {
			return nil, fmt.Errorf("otlp exporter for %s: %w", cfg.Endpoint, err)
		}
		tpOpts = append(tpOpts, sdktrace.WithBatcher(&loggingExporter{SpanExporter: exp, log: log, endpoint: cfg.Endpoint}))
	}
	tp := sdktrace.NewTracerProvider(tpOpts...)
	return &Tracer{
		tp:     tp,
		tracer: tp.Tracer(instrumentation),
		prop:   propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}),
	}, nil
}

// Enabled reports whether t records spans.
func (t *Tracer) Enabled() bool { return t != nil && t.tp != nil }

// Start starts the span of request r in direction (Inbound or Outbound)
// for service, continuing the trace context of r's headers. The returned
// context carries the span. The caller must call End.
func (t *Tracer) Start(ctx context.Context, r *http.Request, direction, service string) (context.Context, Span) {
	if !t.Enabled() {
		return ctx, noopSpan{}
	}
	ctx = t.prop.Extract(ctx, propagation.HeaderCarrier(r.Header))
	kind := trace.SpanKindServer
	if direction == Outbound {
		kind = trace.SpanKindClient
	}
	ctx, s := t.tracer.Start(ctx, direction+" "+service,
		trace.WithSpanKind(kind),
		trace.WithAttributes(methodAttr(r.Method), semconv.URLPath(r.URL.Path)),
	)
	return ctx, &otelSpan{span: s, ctx: ctx, prop: t.prop, client: kind == trace.SpanKindClient}
}

// methodAttr is http.request.method: a known method, else "_OTHER" as the
// semantic conventions require (a peer must not create unbounded values).
func methodAttr(m string) attribute.KeyValue {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
		http.MethodDelete, http.MethodConnect, http.MethodOptions, http.MethodTrace:
		return semconv.HTTPRequestMethodKey.String(m)
	}
	return semconv.HTTPRequestMethodOther
}

// Shutdown exports the spans still queued and stops the exporter, within
// ctx. A Tracer that is off has nothing to do. Further spans are dropped.
func (t *Tracer) Shutdown(ctx context.Context) error {
	if !t.Enabled() {
		return nil
	}
	if err := t.tp.Shutdown(ctx); err != nil {
		return fmt.Errorf("shut down tracing: %w", err)
	}
	return nil
}

// loggingExporter logs export failures itself, once per run of failures,
// and hides them from the batch processor, which would report each one
// to OpenTelemetry's global error handler (the standard logger).
type loggingExporter struct {
	sdktrace.SpanExporter
	log      *slog.Logger
	endpoint string

	mu      sync.Mutex
	failing bool
}

func (e *loggingExporter) ExportSpans(ctx context.Context, spans []sdktrace.ReadOnlySpan) error {
	err := e.SpanExporter.ExportSpans(ctx, spans)
	e.mu.Lock()
	defer e.mu.Unlock()
	switch {
	case err != nil && !e.failing:
		e.failing = true
		e.log.Warn("trace export failed; spans are dropped until it succeeds",
			slog.String(logEndpoint, e.endpoint), slog.Any(logError, err))
	case err == nil && e.failing:
		e.failing = false
		e.log.Info("trace export succeeds again", slog.String(logEndpoint, e.endpoint))
	}
	return nil
}

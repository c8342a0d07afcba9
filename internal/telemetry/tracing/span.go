package tracing

import (
	"context"
	"net/http"

	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
)

// Span is the span of one proxied request. Its methods are called from
// the request's goroutine; empty arguments record nothing.
type Span interface {
	// SetIdentity records the SPIFFE IDs of the hop's two ends; empty for
	// a plaintext end.
	SetIdentity(source, destination string)
	// SetPath replaces url.path with the normalized path, once the proxy
	// has normalized it.
	SetPath(path string)
	// SetDecision records the authorization outcome and deciding policy.
	SetDecision(decision, policy string)
	// SetStatus records the response status; 5xx (and, on outbound spans,
	// 4xx) marks the span as an error.
	SetStatus(code int)
	// Inject writes the span's trace context (traceparent, tracestate,
	// baggage) into the headers of the forwarded request.
	Inject(h http.Header)
	// TraceID is the hex trace ID, or "" when tracing is off.
	TraceID() string
	// End ends the span.
	End()
}

var (
	_ Span = noopSpan{}
	_ Span = (*otelSpan)(nil)
)

// noopSpan is the span when tracing is off. It is a zero-size value, so
// returning it in the interface does not allocate.
type noopSpan struct{}

func (noopSpan) SetIdentity(string, string) {}
func (noopSpan) SetPath(string)             {}
func (noopSpan) SetDecision(string, string) {}
func (noopSpan) SetStatus(int)              {}
func (noopSpan) Inject(http.Header)         {}
func (noopSpan) TraceID() string            { return "" }
func (noopSpan) End()                       {}

type otelSpan struct {
	span   trace.Span
	ctx    context.Context // carries the span and the caller's baggage
	prop   propagation.TextMapPropagator
	client bool
}

func (s *otelSpan) SetIdentity(source, destination string) {
	if source != "" {
		s.span.SetAttributes(AttrSourcePrincipal.String(source))
	}
	if destination != "" {
		s.span.SetAttributes(AttrDestinationPrincipal.String(destination))
	}
}

func (s *otelSpan) SetPath(path string) {
	if path != "" {
		s.span.SetAttributes(semconv.URLPath(path))
	}
}

func (s *otelSpan) SetDecision(decision, policy string) {
	if decision != "" {
		s.span.SetAttributes(AttrDecision.String(decision))
	}
	if policy != "" {
		s.span.SetAttributes(AttrPolicy.String(policy))
	}
}

func (s *otelSpan) SetStatus(code int) {
	s.span.SetAttributes(semconv.HTTPResponseStatusCode(code))
	if code >= 500 || (s.client && code >= 400) {
		s.span.SetStatus(codes.Error, "")
	}
}

func (s *otelSpan) Inject(h http.Header) {
	s.prop.Inject(s.ctx, propagation.HeaderCarrier(h))
}

func (s *otelSpan) TraceID() string {
	id := s.span.SpanContext().TraceID()
	if !id.IsValid() {
		return ""
	}
	return id.String()
}

func (s *otelSpan) End() { s.span.End() }

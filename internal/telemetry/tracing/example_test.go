package tracing_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"

	"github.com/trustmesh/trustmesh/internal/telemetry/tracing"
)

// With no endpoint, tracing is off: the same calls cost nothing and the
// caller's trace headers pass through untouched.
func Example() {
	tr, err := tracing.New(context.Background(), tracing.Config{
		Endpoint:    "", // e.g. "otel-collector:4317" from --otlp-endpoint
		ServiceName: "orders",
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer tr.Shutdown(context.Background())

	r := httptest.NewRequest("GET", "/orders/7", nil)
	r.Header.Set("Traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")

	ctx, span := tr.Start(r.Context(), r, tracing.Inbound, "orders")
	defer span.End()
	span.SetIdentity("spiffe://example.org/ns/shop/sa/web", "spiffe://example.org/ns/shop/sa/orders")
	span.SetDecision("allow", "shop/allow-web")
	out := r.Clone(ctx) // the request forwarded to the app
	span.Inject(out.Header)
	span.SetStatus(http.StatusOK)

	fmt.Println(tr.Enabled(), span.TraceID() == "", out.Header.Get("Traceparent"))
	// Output: false true 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01
}

package proxy

import (
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"
)

// TestIstioMetricNaming: with --metrics-naming istio the request metrics
// are Istio's standard ones, with its labels filled from the SPIFFE IDs.
func TestIstioMetricNaming(t *testing.T) {
	c := newTestCA(t, "example.org")
	reg := prometheus.NewRegistry()
	p := startProxy(t, Config{Source: newFakeSource(c.mint(t, serverID), c.bundle()), Inbound: []InboundSpec{{Listen: "127.0.0.1:0", App: echoApp(t)}},
		MetricsNaming: NamingIstio, Registry: reg})
	mustApply(t, p, policySnapshot(t, 1, denyAdmin))
	client := meshClient(c.mint(t, clientID), c.bundle(), "http/1.1")
	for _, path := range []string{"/ok", "/admin"} {
		req, _ := http.NewRequest("GET", "https://"+inboundAddr(p)+path, nil)
		req.Host = "echo.default"
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var text strings.Builder
	for _, mf := range mfs {
		if _, err := expfmt.MetricFamilyToText(&text, mf); err != nil {
			t.Fatal(err)
		}
	}
	out := text.String()
	for _, want := range []string{
		`istio_requests_total{connection_security_policy="mutual_tls",destination_principal="spiffe://example.org/ns/default/sa/server",destination_service="echo.default",destination_service_name="echo",destination_service_namespace="default",destination_workload="server",destination_workload_namespace="default",reporter="destination",request_protocol="http",response_code="200",response_flags="-",source_principal="spiffe://example.org/ns/default/sa/client",source_workload="client",source_workload_namespace="default"} 1`,
		`response_code="403"`,
		`istio_request_duration_milliseconds_bucket{`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("metrics lack %s\n%s", want, grepLines(out, "istio_requests_total"))
		}
	}
	if strings.Contains(out, "trustmesh_requests_total") {
		t.Error("trustmesh_requests_total is exported too with Istio naming")
	}
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

package proxy

import (
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"testing"
)

// BenchmarkHTTPThroughProxies measures client → outbound proxy → (mTLS) →
// inbound proxy → app with a 1 KiB request and response body. allocs/op
// counts the whole process: client, both proxies and the app.
func BenchmarkHTTPThroughProxies(b *testing.B) {
	for _, tc := range []struct {
		name, protocol string
		authz          bool
	}{
		{"HTTP1", "HTTP", false},
		{"HTTP2", "HTTP2", false},
		{"HTTP1-10-rules", "HTTP", true},
	} {
		b.Run(tc.name, func(b *testing.B) {
			body := bytes.Repeat([]byte("x"), 1024)
			app := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				_, _ = io.Copy(io.Discard, r.Body)
				_, _ = w.Write(body)
			})}
			app.Protocols = new(http.Protocols)
			app.Protocols.SetHTTP1(true)
			app.Protocols.SetUnencryptedHTTP2(true)
			addr := serveOn(b, app)
			// Errors only: a failed forward is logged with its cause.
			m := newMesh(b, addr, tc.protocol, func(c *Config) {
				c.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))
			})
			if tc.authz {
				mustApply(b, m.b, policySnapshot(b, 2, benchPolicies()))
			}
			client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64, DisableCompression: true}}
			url := "http://" + m.outbound + "/bench"
			b.ReportAllocs()
			b.SetBytes(int64(2 * len(body)))
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					resp, err := client.Post(url, "application/octet-stream", bytes.NewReader(body))
					if err != nil {
						b.Error(err)
						return
					}
					n, cerr := io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode != 200 || n != int64(len(body)) {
						b.Errorf("got %d with %d bytes (%v) %v", resp.StatusCode, n, cerr, resp.Header)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "req/s")
		})
	}
}

// benchPolicies are 10 L7 rules on the inbound side, the one that allows
// the benchmark's request last, plus a mesh-wide style DENY.
func benchPolicies() string {
	var b strings.Builder
	b.WriteString("apiVersion: trustmesh.dev/v1\nkind: AuthorizationPolicy\nmetadata: {name: bench, namespace: default}\nspec:\n  rules:\n")
	for i := range 9 {
		fmt.Fprintf(&b, "  - from: [{source: {principals: [\"spiffe://example.org/ns/default/sa/other%d\"]}}]\n    to: [{operation: {methods: [GET], paths: [\"/api/v%d/*\"]}}]\n", i, i)
	}
	fmt.Fprintf(&b, "  - from: [{source: {principals: [%q]}}]\n    to: [{operation: {methods: [POST], paths: [\"/bench\"]}}]\n", clientID)
	b.WriteString("---\napiVersion: trustmesh.dev/v1\nkind: AuthorizationPolicy\nmetadata: {name: deny-admin, namespace: default}\nspec:\n  action: DENY\n  rules:\n  - to: [{operation: {paths: [\"/admin/*\"]}}]\n")
	return b.String()
}

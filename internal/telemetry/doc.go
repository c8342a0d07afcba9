// Package telemetry is the root of the proxy's evidence outputs: access
// logs (package accesslog) and traces (package tracing). Metrics are the
// Prometheus collectors of internal/proxy; the Grafana dashboard that reads
// them lives in deploy/grafana and is checked against their names by this
// package's tests.
package telemetry

// Package e2e holds end-to-end tests: they build the real trustmesh binary,
// start servers and agents as processes on loopback, and drive them with the
// CLI and with real clients (go-spiffe's Workload API client, curl, openssl).
package e2e

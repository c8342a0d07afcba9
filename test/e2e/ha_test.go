package e2e

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestHighAvailability: two servers share one PostgreSQL database. The
// agent and the proxies are given both addresses and connect to the first;
// writes through the second (a policy, a revocation) reach them within a
// second or two; the first is killed under traffic and they move to the
// second without a failed request; the database restarts under traffic and
// the servers reconnect with nothing lost; the audit chain, written through
// both replicas, verifies.
func TestHighAvailability(t *testing.T) {
	t.Parallel()
	dsn := postgresDB(t)
	kek := filepath.Join(t.TempDir(), "kek")
	mustCLI(t, "kek", "generate", "--out", kek)
	const td = "ha.example"
	a := startServer(t, td, "--store", dsn, "--kek-file", kek, "--ca-propagation-delay", "3s")
	bMetrics := freeAddr(t)
	b := newServer(t, td, "--store", dsn, "--kek-file", kek, "--ca-propagation-delay", "3s", "--metrics-listen", bMetrics)
	servers := a.nodeAddr + "," + b.nodeAddr

	// The agent and proxies are given both addresses while only A is up,
	// so they connect to A (each otherwise picks a replica at random).
	appAddr, appPort := echoApp(t)
	a.apply(t, meshYAML(td, appPort))
	ag := startAgentAt(t, a, servers, filepath.Join(t.TempDir(), "agent"), a.token(t, "node-1"))
	const ordersID, frontID = "spiffe://" + td + "/ns/default/sa/orders", "spiffe://" + td + "/ns/default/sa/frontend"
	inbound, outbound := freeAddr(t), freeAddr(t)
	orders := startProxy(t, a, ag, ordersID, "--inbound", inbound+"="+appAddr, "--server", servers)
	url := "http://" + outbound + "/orders/1"
	waitProxiesReady(t, a, ordersID)

	b.launch(t)
	bundleA, errA := os.ReadFile(filepath.Join(a.dir, "bundle.pem"))
	bundleB, errB := os.ReadFile(filepath.Join(b.dir, "bundle.pem"))
	if errA != nil || errB != nil || !bytes.Equal(bundleA, bundleB) {
		t.Fatalf("the replicas publish different trust bundles (errors %v, %v): one CA is shared, so they must be equal", errA, errB)
	}
	// The frontend proxy connects to B only: its snapshot must still list
	// the orders endpoint, whose proxy is connected to A (presence).
	front := startProxy(t, b, ag, frontID, "--outbound", outbound+"=orders:80", "--server", b.nodeAddr)
	waitForRequest(t, url)
	waitProxiesReady(t, b, frontID)
	// get proxies through B lists the whole fleet, with each proxy's replica.
	if out := mustCLI(t, "get", "proxies", "--data-dir", b.dir); !strings.Contains(out, "REPLICA") ||
		!regexp.MustCompile(`sa/orders .*/`+regexp.QuoteMeta(a.nodeAddr)).MatchString(out) {
		t.Errorf("get proxies through B does not list the orders proxy on A with its replica:\n%s", out)
	}

	// Bad input: a replica with another KEK, or none, is refused with a
	// message that says why, and starts nothing.
	other := filepath.Join(t.TempDir(), "other-kek")
	mustCLI(t, "kek", "generate", "--out", other)
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"another KEK", []string{"--kek-file", other}, "every server must load the same KEK file"},
		{"no KEK", nil, "--kek-file is required with a PostgreSQL store"},
	} {
		args := append([]string{"server", "--data-dir", filepath.Join(t.TempDir(), "bad"), "--store", dsn,
			"--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"}, tc.args...)
		_, errOut, err := cli(t, "", args...)
		if err == nil || !strings.Contains(errOut, tc.want) {
			t.Errorf("%s: server got error %v, stderr %q; want a refusal containing %q", tc.name, err, errOut, tc.want)
		}
		if strings.Contains(errOut, "PRIVATE KEY") {
			t.Errorf("%s: the refusal shows key material: %s", tc.name, errOut)
		}
	}

	// A policy applied through B is enforced by proxies connected to A.
	deny := fmt.Sprintf(`apiVersion: trustmesh.dev/v1
kind: AuthorizationPolicy
metadata: {name: no-orders, namespace: default}
spec:
  selector: {matchLabels: {app: orders}}
  action: DENY
  rules:
  - from: [{source: {principals: ["%s"]}}]
    to: [{operation: {paths: ["/orders/*"]}}]
`, frontID)
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	start := time.Now()
	b.apply(t, deny)
	waitFor(t, "the DENY applied through B to be enforced", 5*time.Second, func() bool {
		err := request(c, url)
		return err != nil && strings.Contains(err.Error(), "HTTP 403")
	})
	t.Logf("policy applied through B enforced by the proxies on A %s after apply started", time.Since(start).Round(time.Millisecond))
	// Removed through A: writes through both replicas.
	mustCLI(t, "delete", "AuthorizationPolicy", "no-orders", "-n", "default", "--data-dir", a.dir)
	waitForRequest(t, url)

	// A revocation through B reaches the proxies on A.
	svid := filepath.Join(t.TempDir(), "svid")
	mustCLI(t, "cert", "fetch", "--socket", ag.socket, "--write", svid)
	mtlsDial(t, inbound, svid, a)
	leaf := readLeaf(t, filepath.Join(svid, "svid.pem"))
	start = time.Now()
	mustCLI(t, "cert", "revoke", "--serial", leaf.SerialNumber.String(), "--reason", "ha e2e", "--data-dir", b.dir)
	waitFor(t, "the SVID revoked through B to be refused", 2*time.Second, func() bool {
		_, err := tryMTLS(inbound, svid, a)
		return err != nil
	})
	t.Logf("revocation through B enforced by the proxies on A %s after revoke started", time.Since(start).Round(time.Millisecond))

	// A CA rotation started through B is published by A at once and
	// activated by the replica elected for the CA lifecycle (A, the first
	// up); both serve the same bundle throughout, and traffic flows.
	mustCLI(t, "ca", "rotate", "--data-dir", b.dir)
	waitFor(t, "A's bundle.pem to carry the authority B prepared", 10*time.Second, func() bool {
		return len(loadBundleFile(t, filepath.Join(a.dir, "bundle.pem"), td).X509Authorities()) == 2
	})
	waitFor(t, "the prepared authority to be activated, as seen through B", 30*time.Second, func() bool {
		return strings.Contains(mustCLI(t, "ca", "status", "--data-dir", b.dir), "retired")
	})
	if !strings.Contains(a.out.String(), "action=ca.activate") {
		t.Errorf("A, elected for the CA lifecycle, did not activate the authority")
	}
	waitForRequest(t, url)

	// The first replica dies under traffic: the proxies move to B and no
	// request fails (the data plane never calls the control plane).
	l := startLoad(t, url, 90*time.Second)
	time.Sleep(500 * time.Millisecond)
	killed := time.Now()
	a.kill()
	waitProxiesReady(t, b, ordersID, frontID)
	t.Logf("both proxies connected to B and ACKed %s after A was killed", time.Since(killed).Round(10*time.Millisecond))
	// Connected to B: a change through B reaches them.
	b.apply(t, `apiVersion: trustmesh.dev/v1
kind: PeerAuthentication
metadata: {name: orders, namespace: default}
spec:
  selector: {matchLabels: {app: orders}}
  mtls: {mode: PERMISSIVE}
`)
	waitFor(t, "plaintext accepted on the PERMISSIVE port", 10*time.Second, func() bool { return plaintextAccepted(inbound) })
	// The singleton work moved to B.
	waitFor(t, "B to take every singleton role", 30*time.Second, func() bool {
		resp, err := http.Get("http://" + bMetrics + "/metrics")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		for _, role := range []string{"ca-lifecycle", "audit-checkpoints", "expiry-sweeps"} {
			if !strings.Contains(string(body), `trustmesh_server_singleton_role{role="`+role+`"} 1`) {
				return false
			}
		}
		return true
	})
	l.stop()
	t.Logf("replica A killed: %s", l)
	l.check(t)

	// The database restarts under traffic: the servers reconnect and the
	// next write goes through.
	l = startLoad(t, url, 90*time.Second)
	restartPostgres(t)
	strict := `apiVersion: trustmesh.dev/v1
kind: PeerAuthentication
metadata: {name: orders, namespace: default}
spec:
  selector: {matchLabels: {app: orders}}
  mtls: {mode: STRICT}
`
	restarted := time.Now()
	waitFor(t, "an apply through B after the database restart", 60*time.Second, func() bool {
		_, _, err := cli(t, strict, "apply", "-f", "-", "--data-dir", b.dir)
		return err == nil
	})
	t.Logf("apply through B succeeded %s after the database restart", time.Since(restarted).Round(10*time.Millisecond))
	waitFor(t, "plaintext refused on the STRICT port again", 10*time.Second, func() bool { return !plaintextAccepted(inbound) })
	l.stop()
	t.Logf("database restart: %s", l)
	l.check(t)
	if d := configDump(t, front); !d.Ready {
		t.Errorf("frontend proxy not ready after the database restart")
	}
	_ = orders

	// Nothing was lost: the objects written before the restart, the
	// revocation, and an audit chain written through both replicas that
	// verifies, with checkpoints signed by both.
	if out := mustCLI(t, "get", "services", "--data-dir", b.dir); !strings.Contains(out, "orders") {
		t.Errorf("get services after the restart lacks orders:\n%s", out)
	}
	if out := mustCLI(t, "cert", "revocations", "--data-dir", b.dir); !strings.Contains(out, leaf.SerialNumber.String()) {
		t.Errorf("cert revocations after the restart lacks the revoked serial:\n%s", out)
	}
	out := mustCLI(t, "audit", "verify", "--data-dir", b.dir)
	if !strings.Contains(out, "chain intact") {
		t.Errorf("audit verify through B: %s", out)
	}
	t.Logf("audit verify: %s", strings.TrimSpace(out))
	tail := mustCLI(t, "audit", "tail", "-o", "json", "--data-dir", b.dir)
	for _, want := range []string{`"action":"object.delete"`, `"action":"cert.revoke"`, `"action":"object.created"`, `"action":"object.configured"`} {
		if !strings.Contains(tail, want) {
			t.Errorf("audit log lacks %s:\n%s", want, tail)
		}
	}
}

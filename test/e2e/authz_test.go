package e2e

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// ordersPolicyV1 allows the frontend to GET orders, denies /admin to
// everyone, and requires a JWT under /jwt/.
func ordersPolicyV1(td string) string {
	return fmt.Sprintf(`apiVersion: trustmesh.dev/v1
kind: AuthorizationPolicy
metadata: {name: orders-allow, namespace: default}
spec:
  selector: {matchLabels: {app: orders}}
  rules:
  - from: [{source: {principals: ["spiffe://%[1]s/ns/default/sa/frontend"]}}]
    to: [{operation: {methods: ["GET"], paths: ["/orders/*"]}}]
  - from: [{source: {requestPrincipals: ["https://idp.example/*"]}}]
    to: [{operation: {paths: ["/jwt/*"]}}]
---
apiVersion: trustmesh.dev/v1
kind: AuthorizationPolicy
metadata: {name: deny-admin, namespace: default}
spec:
  action: DENY
  rules:
  - to: [{operation: {paths: ["/admin", "/admin/*"]}}]
`, td)
}

// ordersPolicyV2 also allows DELETE.
func ordersPolicyV2(td string) string {
	return strings.Replace(ordersPolicyV1(td), `methods: ["GET"]`, `methods: ["GET", "DELETE"]`, 1)
}

// jwtIssuer is an RSA key and its inline JWKS.
type jwtIssuer struct {
	key  *rsa.PrivateKey
	jwks string
}

func newJWTIssuer(t *testing.T) *jwtIssuer {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	b64 := base64.RawURLEncoding.EncodeToString
	jwk := map[string]any{"kty": "RSA", "kid": "k1", "alg": "RS256", "use": "sig",
		"n": b64(k.N.Bytes()), "e": b64(big.NewInt(int64(k.E)).Bytes())}
	jwks, _ := json.Marshal(map[string]any{"keys": []any{jwk}})
	return &jwtIssuer{key: k, jwks: string(jwks)}
}

// token signs RS256 claims.
func (j *jwtIssuer) token(t *testing.T, claims map[string]any) string {
	t.Helper()
	b64 := base64.RawURLEncoding.EncodeToString
	hdr, _ := json.Marshal(map[string]any{"alg": "RS256", "typ": "JWT", "kid": "k1"})
	body, _ := json.Marshal(claims)
	signing := b64(hdr) + "." + b64(body)
	sum := sha256.Sum256([]byte(signing))
	sig, err := rsa.SignPKCS1v15(rand.Reader, j.key, crypto.SHA256, sum[:])
	if err != nil {
		t.Fatal(err)
	}
	return signing + "." + b64(sig)
}

// TestAuthorizationLifecycle: policies applied through the server are
// enforced by running proxies (measured: the time until the first request
// sees the new decision), explained by the CLI, rolled back in one command.
func TestAuthorizationLifecycle(t *testing.T) {
	t.Parallel()
	metricsAddr := freeAddr(t)
	s := startServer(t, "authz.example", "--metrics-listen", metricsAddr)
	appAddr, appPort := echoApp(t)
	s.apply(t, meshYAML(s.td, appPort))
	iss := newJWTIssuer(t)
	s.apply(t, fmt.Sprintf(`apiVersion: trustmesh.dev/v1
kind: RequestAuthentication
metadata: {name: idp, namespace: default}
spec:
  selector: {matchLabels: {app: orders}}
  jwtRules:
  - issuer: https://idp.example
    audiences: [orders]
    jwks: '%s'
`, iss.jwks))
	a := startAgent(t, s, filepath.Join(t.TempDir(), "agent"), s.token(t, "node-1"))
	inbound, outbound := freeAddr(t), freeAddr(t)
	accessLog := filepath.Join(t.TempDir(), "access.log")
	orders := startProxy(t, s, a, "spiffe://authz.example/ns/default/sa/orders", "--inbound", inbound+"="+appAddr, "--access-log", accessLog)
	startProxy(t, s, a, "spiffe://authz.example/ns/default/sa/frontend", "--outbound", outbound+"=orders:80")
	base := "http://" + outbound

	client := &http.Client{Timeout: 5 * time.Second}
	do := func(method, path string, hdr ...string) (int, string, string) {
		req, _ := http.NewRequest(method, base+path, nil)
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		resp, err := client.Do(req)
		if err != nil {
			return 0, "", err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, resp.Header.Get("X-Trustmesh-Denied-By"), string(b)
	}
	waitFor(t, "a request through both proxies", 20*time.Second, func() bool {
		code, _, _ := do("GET", "/orders/1")
		return code == http.StatusOK
	})
	if code, _, _ := do("DELETE", "/orders/1"); code != http.StatusOK {
		t.Fatalf("before any AuthorizationPolicy: DELETE got %d, want 200", code)
	}

	// enforcedWithin applies doc and measures until cond holds.
	enforcedWithin := func(what, doc string, cond func() bool) {
		t.Helper()
		start := time.Now()
		s.apply(t, doc)
		waitFor(t, what, 10*time.Second, cond)
		t.Logf("%s: enforced %v after apply returned", what, time.Since(start).Round(time.Millisecond))
	}
	enforcedWithin("policy v1", ordersPolicyV1(s.td), func() bool {
		code, _, _ := do("DELETE", "/orders/1")
		return code == http.StatusForbidden
	})

	t.Run("v1 decisions", func(t *testing.T) {
		for _, c := range []struct {
			method, path string
			hdr          []string
			code         int
			why          string
		}{
			{"GET", "/orders/1", nil, 200, ""},
			{"DELETE", "/orders/1", nil, 403, "no-allow-match"},
			{"GET", "/admin/users", nil, 403, "deny-policy"},
			{"GET", "/orders/../admin/users", nil, 403, "deny-policy"},
			{"GET", "/orders/%2e%2e/admin", nil, 403, "deny-policy"},
			{"GET", "/orders/..%2fadmin", nil, 400, "bad-path-encoded-slash"},
			{"GET", "/jwt/x", nil, 403, "no-allow-match"},
			{"GET", "/jwt/x", []string{"Authorization", "Bearer " + iss.token(t, map[string]any{"iss": "https://idp.example", "sub": "alice", "aud": "orders", "exp": time.Now().Add(time.Hour).Unix()})}, 200, ""},
			{"GET", "/jwt/x", []string{"Authorization", "Bearer " + iss.token(t, map[string]any{"iss": "https://idp.example", "sub": "alice", "aud": "orders", "exp": time.Now().Add(-time.Hour).Unix()})}, 401, "jwt-expired"},
			{"GET", "/jwt/x", []string{"Authorization", "Bearer " + iss.token(t, map[string]any{"iss": "https://idp.example", "sub": "alice", "aud": "billing", "exp": time.Now().Add(time.Hour).Unix()})}, 401, "jwt-wrong-audience"},
			{"GET", "/jwt/x", []string{"Authorization", "Bearer eyJhbGciOiJub25lIn0.eyJpc3MiOiJodHRwczovL2lkcC5leGFtcGxlIiwic3ViIjoiYWxpY2UifQ."}, 401, ""},
		} {
			code, why, body := do(c.method, c.path, c.hdr...)
			if code != c.code || (c.why != "" && why != c.why) {
				t.Errorf("%s %s: got %d %q (%s), want %d %q", c.method, c.path, code, why, strings.TrimSpace(body), c.code, c.why)
			}
			if code == 403 && strings.Contains(body, "orders-allow") {
				t.Errorf("%s %s: the 403 body leaks policy text: %q", c.method, c.path, body)
			}
		}
		// The app receives the normalized path.
		if _, _, body := do("GET", "/orders//./1"); !strings.Contains(body, "path=/orders/1") {
			t.Errorf("app did not receive the normalized path: %q", body)
		}
	})

	t.Run("metrics carry identities and decisions; access log lines", func(t *testing.T) {
		if n := orders.metric(t, "trustmesh_requests_total", `direction="inbound"`, `source="spiffe://authz.example/ns/default/sa/frontend"`,
			`destination="spiffe://authz.example/ns/default/sa/orders"`, `decision="deny"`, `code="403"`); n < 1 {
			t.Errorf("no inbound 403 with identities and decision=deny in trustmesh_requests_total (got %v)", n)
		}
		if n := orders.metric(t, "trustmesh_request_duration_seconds_count", `decision="allow"`, `code="200"`); n < 1 {
			t.Errorf("no allowed request in the duration histogram (got %v)", n)
		}
		var lines string
		waitFor(t, "access log lines", 5*time.Second, func() bool {
			b, _ := os.ReadFile(accessLog)
			lines = string(b)
			return strings.Contains(lines, `"path":"/admin/users"`)
		})
		for _, want := range []string{`"direction":"inbound"`, `"source_id":"spiffe://authz.example/ns/default/sa/frontend"`, `"status":403`, `"decision":"deny"`, `"reason":"deny-policy"`, `"policy":"default/deny-admin"`, `"decision":"allow"`, `"tls_group":"X25519MLKEM768"`} {
			if !strings.Contains(lines, want) {
				t.Errorf("access log lacks %s:\n%s", want, lines)
			}
		}
		for i, l := range strings.Split(strings.TrimSpace(lines), "\n") {
			if !json.Valid([]byte(l)) {
				t.Fatalf("access log line %d is not JSON: %s", i+1, l)
			}
		}
	})

	t.Run("denials are decision events and metrics", func(t *testing.T) {
		if n := orders.metric(t, "trustmesh_authz_decisions_total", `decision="deny"`, `reason="deny-policy"`, `policy="default/deny-admin"`); n < 1 {
			t.Errorf("deny-policy denials not counted (got %v)", n)
		}
		waitFor(t, "decision event in the proxy log", 5*time.Second, func() bool {
			return regexp.MustCompile(`authorization decision.*decision=deny.*reason=deny-policy.*policy=default/deny-admin.*policy_revision=\d+`).MatchString(orders.out.String())
		})
		// The proxy batches its events to the server, which audits them
		// with the policy and its revision.
		var audit string
		waitFor(t, "decision events in the server's audit log", 10*time.Second, func() bool {
			audit = mustCLI(t, "audit", "tail", "-n", "200", "-o", "json", "--data-dir", s.dir)
			return strings.Contains(audit, `"action":"authz.deny"`) && strings.Contains(audit, "AuthorizationPolicy/default/deny-admin")
		})
		for _, want := range []string{`"outcome":"denied"`, "deny-policy (rule 0): GET /admin/users from spiffe://authz.example/ns/default/sa/frontend", "spiffe://authz.example/ns/default/sa/orders (proxy "} {
			if !strings.Contains(audit, want) {
				t.Errorf("audit log lacks %q:\n%s", want, audit)
			}
		}
	})

	t.Run("explain", func(t *testing.T) {
		out := mustCLI(t, "explain", "--from", "spiffe://authz.example/ns/default/sa/frontend", "--to", "orders",
			"--method", "DELETE", "--path", "/orders/1", "--data-dir", s.dir)
		for _, want := range []string{"decision:  DENY (no-allow-match)", "default/orders-allow", "spec.rules[0].to[0].operation.methods", `"DELETE" does not match ["GET"]`} {
			if !strings.Contains(out, want) {
				t.Errorf("explain output lacks %q:\n%s", want, out)
			}
		}
		out = mustCLI(t, "explain", "--from", "spiffe://authz.example/ns/default/sa/frontend", "--to", "orders",
			"--path", "/admin/x", "--data-dir", s.dir)
		if !strings.Contains(out, "policy:    default/deny-admin") || !strings.Contains(out, "rule 0") {
			t.Errorf("explain of a DENY does not name the policy and rule:\n%s", out)
		}
		tok := iss.token(t, map[string]any{"iss": "https://idp.example", "sub": "bob", "aud": "orders", "exp": time.Now().Add(time.Hour).Unix()})
		out = mustCLI(t, "explain", "--to", "orders", "--path", "/jwt/a", "--jwt", tok, "--data-dir", s.dir)
		if !strings.Contains(out, "ALLOW (allow-policy)") || !strings.Contains(out, "https://idp.example/bob") {
			t.Errorf("explain with a JWT:\n%s", out)
		}
		_, errOut, err := cli(t, "", "explain", "--to", "nosuch", "--data-dir", s.dir)
		if err == nil || !strings.Contains(errOut, `no Service "nosuch"`) {
			t.Errorf("explain of an unknown service: err=%v %s", err, errOut)
		}
	})

	t.Run("tap sees a denied request", func(t *testing.T) {
		tap := start(t, "tap", "tap", "--to", "orders", "--denied", "-o", "json", "--data-dir", s.dir)
		defer func() { _ = tap.stop() }()
		// Proxies start sending once the tap is registered and the next
		// snapshot reaches them: keep asking until one arrives.
		waitFor(t, "a denied request in the tap", 15*time.Second, func() bool {
			do("GET", "/admin/tapped")
			do("GET", "/orders/allowed-not-shown")
			return strings.Contains(tap.out.String(), `"path":"/admin/tapped"`)
		})
		out := tap.out.String()
		for _, want := range []string{`"decision":"deny"`, `"reason":"deny-policy"`, `"source":"spiffe://authz.example/ns/default/sa/frontend"`, `"destination":"spiffe://authz.example/ns/default/sa/orders"`, `"status":403`} {
			if !strings.Contains(out, want) {
				t.Errorf("tap output lacks %s:\n%s", want, out)
			}
		}
		if strings.Contains(out, "allowed-not-shown") {
			t.Errorf("--denied showed an allowed request:\n%s", out)
		}
		// A policy author may not tap.
		pat := filepath.Join(t.TempDir(), "pat")
		mustCLI(t, "admin", "issue", "--role", "policy-author", "--name", "pat", "--out", pat, "--data-dir", s.dir)
		_, errOut, err := cli(t, "", "tap", "--credentials", pat, "--server", s.adminAddr)
		if err == nil || !strings.Contains(errOut, "403") {
			t.Errorf("tap as policy-author: err=%v %s", err, errOut)
		}
	})

	// Change, then roll back: the old behaviour returns.
	enforcedWithin("policy v2", ordersPolicyV2(s.td), func() bool {
		code, _, _ := do("DELETE", "/orders/1")
		return code == http.StatusOK
	})
	hist := mustCLI(t, "policy", "history", "orders-allow", "--data-dir", s.dir)
	revs := regexp.MustCompile(`(?m)^(\d+)\s`).FindAllStringSubmatch(hist, -1)
	if len(revs) != 2 || !strings.Contains(hist, "admin (admin)") {
		t.Fatalf("history: want 2 revisions written by admin:\n%s", hist)
	}
	diff := mustCLI(t, "policy", "diff", "orders-allow", "--revision", revs[0][1], "--data-dir", s.dir)
	if !strings.Contains(diff, `-    - GET`) && !strings.Contains(diff, "DELETE") {
		t.Errorf("diff against revision %s does not show the change:\n%s", revs[0][1], diff)
	}
	start := time.Now()
	out := mustCLI(t, "policy", "rollback", "orders-allow", "--to", revs[0][1], "--data-dir", s.dir)
	if !strings.Contains(out, "configured") {
		t.Errorf("rollback: %s", out)
	}
	waitFor(t, "rolled-back policy enforced", 10*time.Second, func() bool {
		code, _, _ := do("DELETE", "/orders/1")
		return code == http.StatusForbidden
	})
	t.Logf("rollback: enforced %v after the command started", time.Since(start).Round(time.Millisecond))
	if audit := mustCLI(t, "audit", "tail", "--data-dir", s.dir); !strings.Contains(audit, "object.rollback") {
		t.Errorf("rollback not in the audit log:\n%s", audit)
	}

	t.Run("server metrics", func(t *testing.T) {
		resp, err := http.Get("http://" + metricsAddr + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		for _, re := range []string{
			`trustmesh_server_svids_issued_total\{kind="x509-svid"\} [1-9]`,
			`trustmesh_server_connected_proxies 2`,
			`trustmesh_server_snapshot_acks_total [1-9]`,
			`trustmesh_server_push_ack_seconds_count [1-9]`,
			`trustmesh_server_audit_chain_length [1-9]`,
			`trustmesh_server_decision_events_total [1-9]`,
		} {
			if !regexp.MustCompile(re).Match(body) {
				t.Errorf("server /metrics lacks %s", re)
			}
		}
	})

	t.Run("the audit chain verifies after all of it", func(t *testing.T) {
		out := mustCLI(t, "audit", "verify", "--data-dir", s.dir)
		if !strings.Contains(out, "chain intact") {
			t.Errorf("audit verify: %s", out)
		}
	})

	t.Run("bad input", func(t *testing.T) {
		_, errOut, err := cli(t, "", "policy", "rollback", "orders-allow", "--to", "999999", "--data-dir", s.dir)
		if err == nil || !strings.Contains(errOut, "has no revision 999999; its revisions are") {
			t.Errorf("rollback to a missing revision: err=%v %s", err, errOut)
		}
		_, errOut, err = cli(t, `apiVersion: trustmesh.dev/v1
kind: AuthorizationPolicy
metadata: {name: ext, namespace: default}
spec:
  action: CUSTOM
  provider:
    rego: |
      package ext
      allow if http.send({"method": "GET", "url": "http://x"}).status_code == 200
`, "apply", "-f", "-", "--data-dir", s.dir)
		if err == nil || !strings.Contains(errOut, "http.send") {
			t.Errorf("apply of Rego calling http.send: err=%v %s", err, errOut)
		}
	})
}

// TestDecisionEventsSurviveOutage: denials while the control plane is down
// are enforced from the last snapshot, buffered by the proxy, and reach
// the audit log once the server is back.
func TestDecisionEventsSurviveOutage(t *testing.T) {
	t.Parallel()
	s := startServer(t, "outage.example")
	appAddr, appPort := echoApp(t)
	s.apply(t, meshYAML(s.td, appPort))
	s.apply(t, ordersPolicyV1(s.td))
	a := startAgent(t, s, filepath.Join(t.TempDir(), "agent"), s.token(t, "node-1"))
	inbound, outbound := freeAddr(t), freeAddr(t)
	startProxy(t, s, a, "spiffe://outage.example/ns/default/sa/orders", "--inbound", inbound+"="+appAddr)
	startProxy(t, s, a, "spiffe://outage.example/ns/default/sa/frontend", "--outbound", outbound+"=orders:80")
	client := &http.Client{Timeout: 5 * time.Second}
	get := func(path, id string) int {
		req, _ := http.NewRequest("GET", "http://"+outbound+path, nil)
		req.Header.Set("X-Request-Id", id)
		resp, err := client.Do(req)
		if err != nil {
			return 0
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	waitFor(t, "the policy in force", 20*time.Second, func() bool { return get("/orders/1", "warmup") == 200 && get("/admin", "warmup") == 403 })

	if err := s.stop(); err != nil {
		t.Logf("server stop: %v", err)
	}
	for i := range 5 {
		if code := get("/admin/x", fmt.Sprintf("outage-%d", i)); code != http.StatusForbidden {
			t.Errorf("denied request %d while the server is down: got %d, want 403 from the last snapshot", i, code)
		}
	}
	s.launch(t)
	waitFor(t, "the outage's denials in the audit log", 30*time.Second, func() bool {
		out, _, err := cli(t, "", "audit", "tail", "-n", "500", "-o", "json", "--data-dir", s.dir)
		if err != nil {
			return false
		}
		for i := range 5 {
			if !strings.Contains(out, fmt.Sprintf(`"requestID":"outage-%d"`, i)) {
				return false
			}
		}
		return true
	})
}

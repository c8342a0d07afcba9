package proxy

import (
	"bufio"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	configsyncv1 "github.com/trustmesh/trustmesh/api/configsync/v1"
	"github.com/trustmesh/trustmesh/internal/policy"
)

// policySnapshot is an inbound snapshot carrying the YAML policies.
func policySnapshot(t testing.TB, version uint64, docs string) *configsyncv1.Snapshot {
	t.Helper()
	s := inboundSnapshot(version, "STRICT", nil)
	if docs == "" {
		return s
	}
	objs, err := policy.Decode([]byte(docs))
	if err != nil {
		t.Fatal(err)
	}
	for i, o := range objs {
		o.GetMeta().Revision = int64(10 + i)
		data, err := policy.Marshal(o)
		if err != nil {
			t.Fatal(err)
		}
		s.Policies = append(s.Policies, &configsyncv1.PolicyObject{Kind: o.GetKind(), Json: data})
	}
	return s
}

const denyAdmin = `apiVersion: trustmesh.dev/v1
kind: AuthorizationPolicy
metadata: {name: deny-admin, namespace: default}
spec:
  action: DENY
  rules:
  - to: [{operation: {paths: ["/admin", "/admin/*"]}}]
`

// hostileRow is one line of httpnorm's hostile-path table.
type hostileRow struct {
	line           int
	target, want   string
	reject, reason string
}

func hostileRows(t *testing.T) []hostileRow {
	t.Helper()
	data, err := os.ReadFile("../httpnorm/testdata/hostile-paths.tsv")
	if err != nil {
		t.Fatal(err)
	}
	unq := func(s string) string {
		if strings.HasPrefix(s, `"`) {
			u, err := strconv.Unquote(s)
			if err != nil {
				t.Fatalf("bad literal %s: %v", s, err)
			}
			return u
		}
		return s
	}
	var rows []hostileRow
	for i, l := range strings.Split(string(data), "\n") {
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		cols := strings.Split(l, "\t")
		if len(cols) < 2 {
			t.Fatalf("line %d: want tab-separated columns", i+1)
		}
		r := hostileRow{line: i + 1, target: unq(cols[0]), want: unq(cols[1])}
		if reason, ok := strings.CutPrefix(r.want, "REJECT:"); ok {
			r.reject, r.reason = "yes", reason
		}
		rows = append(rows, r)
	}
	return rows
}

// TestHostilePathsAgainstDeny sends every hostile request-target of the
// httpnorm table through a real inbound proxy with a DENY rule on /admin:
// none may reach the app at a path the rule covers, rejected ones get 400,
// and what the app receives is exactly the normalized path.
func TestHostilePathsAgainstDeny(t *testing.T) {
	c := newTestCA(t, "example.org")
	app := echoApp(t)
	p := startProxy(t, Config{Source: newFakeSource(c.mint(t, serverID), c.bundle()), Inbound: []InboundSpec{{Listen: "127.0.0.1:0", App: app}}})
	mustApply(t, p, policySnapshot(t, 1, denyAdmin))
	svid := c.mint(t, clientID)
	for _, row := range hostileRows(t) {
		t.Run(fmt.Sprintf("line%d", row.line), func(t *testing.T) {
			conn, err := dialMeshRaw(t, inboundAddr(p), svid, c.bundle(), "http/1.1")
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
			if _, err := fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: app\r\nConnection: close\r\n\r\n", row.target); err != nil {
				t.Fatal(err)
			}
			resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
			if err != nil {
				t.Fatalf("%q: read response: %v", row.target, err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			switch {
			case row.reject != "":
				if resp.StatusCode != http.StatusBadRequest {
					t.Fatalf("%q: got %d %q, want 400 (%s)", row.target, resp.StatusCode, body, row.reason)
				}
			case row.want == "/admin" || strings.HasPrefix(row.want, "/admin/"):
				if resp.StatusCode != http.StatusForbidden || resp.Header.Get(headerDeniedBy) != "deny-policy" {
					t.Fatalf("%q (normalized %s): got %d %s=%q, want 403 deny-policy", row.target, row.want, resp.StatusCode, headerDeniedBy, resp.Header.Get(headerDeniedBy))
				}
			default:
				if resp.StatusCode != http.StatusOK {
					t.Fatalf("%q (normalized %s): got %d %q, want 200", row.target, row.want, resp.StatusCode, body)
				}
				want, _ := url.PathUnescape(row.want)
				if got := strings.TrimSuffix(strings.TrimPrefix(string(body), "GET "), " 0"); got != want {
					t.Errorf("%q: app received path %q, want the normalized %q", row.target, got, want)
				}
			}
		})
	}
}

// TestAuthorizationEnforcedAndReplaced runs with and without the
// decision cache: a snapshot change must never be answered from the cache
// of the old one.
func TestAuthorizationEnforcedAndReplaced(t *testing.T) {
	for _, size := range []int{0, 100} {
		t.Run(fmt.Sprintf("cache=%d", size), func(t *testing.T) { testAuthorizationEnforced(t, size) })
	}
}

func testAuthorizationEnforced(t *testing.T, cacheSize int) {
	c := newTestCA(t, "example.org")
	app := echoApp(t)
	p := startProxy(t, Config{Source: newFakeSource(c.mint(t, serverID), c.bundle()), Inbound: []InboundSpec{{Listen: "127.0.0.1:0", App: app}}, AuthzCacheSize: cacheSize})
	client := meshClient(c.mint(t, clientID), c.bundle(), "h2")
	status := func(method, path string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(method, "https://"+inboundAddr(p)+path, nil)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode, resp.Header.Get(headerDeniedBy)
	}

	// Before any snapshot: fail closed.
	if code, why := status("GET", "/x"); code != http.StatusServiceUnavailable || why != reasonNoConfig {
		t.Errorf("before the first snapshot: got %d %q, want 503 %s", code, why, reasonNoConfig)
	}

	mustApply(t, p, policySnapshot(t, 1, `apiVersion: trustmesh.dev/v1
kind: AuthorizationPolicy
metadata: {name: allow-get, namespace: default}
spec:
  rules:
  - from: [{source: {principals: ["`+clientID+`"]}}]
    to: [{operation: {methods: ["GET"]}}]
`))
	if (p.view.Load().sec.cache != nil) != (cacheSize > 0) {
		t.Errorf("cache in use: %v, want %v", p.view.Load().sec.cache != nil, cacheSize > 0)
	}
	for range 2 { // the second time from the cache, if on
		if code, _ := status("GET", "/x"); code != http.StatusOK {
			t.Errorf("GET: got %d, want 200", code)
		}
		if code, why := status("DELETE", "/x"); code != http.StatusForbidden || why != "no-allow-match" {
			t.Errorf("DELETE: got %d %q, want 403 no-allow-match", code, why)
		}
	}
	if n := counterValue(t, p.metrics.decisions.WithLabelValues("deny", "no-allow-match", "")); n != 2 {
		t.Errorf("deny counted %v times, want 2", n)
	}

	// An invalid policy is NACKed and the last good one stays.
	bad := policySnapshot(t, 2, "")
	bad.Policies = []*configsyncv1.PolicyObject{{Kind: policy.KindAuthorizationPolicy, Json: []byte(`{"apiVersion":"trustmesh.dev/v1","kind":"AuthorizationPolicy","metadata":{"name":"x","namespace":"default"},"spec":{"action":"MAYBE"}}`)}}
	if err := p.Apply(bad); err == nil || !strings.Contains(err.Error(), "MAYBE") {
		t.Errorf("Apply of an invalid policy: got %v, want an error naming the action", err)
	}
	if code, _ := status("DELETE", "/x"); code != http.StatusForbidden {
		t.Errorf("after the rejected snapshot: DELETE got %d, want the old policy's 403", code)
	}

	// Removing the policies allows everything again.
	mustApply(t, p, policySnapshot(t, 3, ""))
	if code, _ := status("DELETE", "/x"); code != http.StatusOK {
		t.Errorf("without policies: DELETE got %d, want 200", code)
	}
}

func TestAuthorizationTCP(t *testing.T) {
	c := newTestCA(t, "example.org")
	app := tcpEchoApp(t)
	p := startProxy(t, Config{Source: newFakeSource(c.mint(t, serverID), c.bundle()), Inbound: []InboundSpec{{Listen: "127.0.0.1:0", App: app}}})
	mustApply(t, p, policySnapshot(t, 1, `apiVersion: trustmesh.dev/v1
kind: AuthorizationPolicy
metadata: {name: only-client, namespace: default}
spec:
  rules:
  - from: [{source: {principals: ["`+clientID+`"]}}]
`))
	echo := func(id string) error {
		conn, err := dialMeshRaw(t, inboundAddr(p), c.mint(t, id), c.bundle(), alpnTCP)
		if err != nil {
			return err
		}
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := conn.Write([]byte("ping")); err != nil {
			return err
		}
		buf := make([]byte, 4)
		_, err = io.ReadFull(conn, buf)
		return err
	}
	if err := echo(clientID); err != nil {
		t.Errorf("allowed principal: %v", err)
	}
	if err := echo("spiffe://example.org/ns/default/sa/intruder"); err == nil {
		t.Errorf("a principal no ALLOW rule names got through TCP passthrough")
	}
}

// TestRemoteJWKS: a RequestAuthentication's jwksUri is fetched by the
// proxy; tokens verify once it is, and an issuer whose JWKS cannot be
// fetched fails closed (401 jwks-unavailable), never open.
func TestRemoteJWKS(t *testing.T) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	b64 := base64.RawURLEncoding.EncodeToString
	jwks := fmt.Sprintf(`{"keys":[{"kty":"RSA","kid":"k","alg":"RS256","n":%q,"e":%q}]}`, b64(key.N.Bytes()), b64(big.NewInt(int64(key.E)).Bytes()))
	idp := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, jwks) }))
	defer idp.Close()
	down := httptest.NewServer(http.NotFoundHandler())
	down.Close() // a JWKS URI nothing answers

	token := func(iss string) string {
		hdr := b64([]byte(`{"alg":"RS256","kid":"k"}`))
		body := b64([]byte(fmt.Sprintf(`{"iss":%q,"sub":"alice","exp":%d}`, iss, time.Now().Add(time.Hour).Unix())))
		sum := sha256.Sum256([]byte(hdr + "." + body))
		sig, err := rsa.SignPKCS1v15(rand.Reader, key, crypto.SHA256, sum[:])
		if err != nil {
			t.Fatal(err)
		}
		return hdr + "." + body + "." + b64(sig)
	}

	c := newTestCA(t, "example.org")
	p := startProxy(t, Config{Source: newFakeSource(c.mint(t, serverID), c.bundle()), Inbound: []InboundSpec{{Listen: "127.0.0.1:0", App: echoApp(t)}}})
	mustApply(t, p, policySnapshot(t, 1, fmt.Sprintf(`apiVersion: trustmesh.dev/v1
kind: RequestAuthentication
metadata: {name: idp, namespace: default}
spec:
  jwtRules:
  - {issuer: https://idp.example, jwksUri: %q}
  - {issuer: https://down.example, jwksUri: %q}
---
apiVersion: trustmesh.dev/v1
kind: AuthorizationPolicy
metadata: {name: need-jwt, namespace: default}
spec:
  rules:
  - from: [{source: {requestPrincipals: ["*"]}}]
`, idp.URL+"/keys", down.URL+"/keys")))
	client := meshClient(c.mint(t, clientID), c.bundle(), "http/1.1")
	get := func(tok string) (int, string) {
		req, _ := http.NewRequest("GET", "https://"+inboundAddr(p)+"/x", nil)
		if tok != "" {
			req.Header.Set("Authorization", "Bearer "+tok)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode, resp.Header.Get(headerDeniedBy)
	}
	deadline := time.Now().Add(10 * time.Second)
	for code, _ := get(token("https://idp.example")); code != http.StatusOK; code, _ = get(token("https://idp.example")) {
		if time.Now().After(deadline) {
			t.Fatalf("a valid token was never accepted (got %d): the JWKS was not fetched", code)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if code, why := get(token("https://down.example")); code != http.StatusUnauthorized || why != "jwt-jwks-unavailable" {
		t.Errorf("issuer with an unreachable JWKS: got %d %q, want 401 jwt-jwks-unavailable", code, why)
	}
	if code, why := get(""); code != http.StatusForbidden || why != "no-allow-match" {
		t.Errorf("no token where a request principal is required: got %d %q, want 403 no-allow-match", code, why)
	}
}

func TestAuthorizationSNI(t *testing.T) {
	c := newTestCA(t, "example.org")
	p := startProxy(t, Config{Source: newFakeSource(c.mint(t, serverID), c.bundle()), Inbound: []InboundSpec{{Listen: "127.0.0.1:0", App: echoApp(t)}}})
	mustApply(t, p, policySnapshot(t, 1, `apiVersion: trustmesh.dev/v1
kind: AuthorizationPolicy
metadata: {name: sni, namespace: default}
spec:
  rules:
  - when: [{key: connection.sni, values: ["orders.example"]}]
`))
	for _, tc := range []struct {
		sni  string
		want int
	}{{"orders.example", http.StatusOK}, {"", http.StatusForbidden}, {"other.example", http.StatusForbidden}} {
		client := meshClient(c.mint(t, clientID), c.bundle(), "http/1.1")
		client.Transport.(*http.Transport).TLSClientConfig.ServerName = tc.sni
		resp, err := client.Get("https://" + inboundAddr(p) + "/")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.want {
			t.Errorf("SNI %q: got %d, want %d", tc.sni, resp.StatusCode, tc.want)
		}
	}
}

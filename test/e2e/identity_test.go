package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/jwtsvid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func uidSelector() string { return fmt.Sprintf("unix:uid:%d", os.Getuid()) }

func loadBundle(t testing.TB, s *server) *x509bundle.Bundle {
	t.Helper()
	return loadBundleFile(t, filepath.Join(s.dir, "bundle.pem"), s.td)
}

func loadBundleFile(t testing.TB, path, td string) *x509bundle.Bundle {
	t.Helper()
	b, err := x509bundle.Load(spiffeid.RequireTrustDomainFromString(td), path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func fetchCtx(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// TestIdentityPlane walks the main path: a join, a workload registered for
// the test's uid fetching X.509- and JWT-SVIDs through go-spiffe's own client,
// its chain verified against the server's bundle.pem, a reused token refused,
// and an agent restart that keeps serving without a new token.
func TestIdentityPlane(t *testing.T) {
	t.Parallel()
	s := startServer(t, "e2e.example")
	s.apply(t, workloadYAML(s.td, "web", "node-1", uidSelector()))
	token := s.token(t, "node-1")
	agentDir := filepath.Join(t.TempDir(), "agent")
	a := startAgent(t, s, agentDir, token)
	addr := workloadapi.WithAddr("unix://" + a.socket)

	want := spiffeid.RequireFromString("spiffe://e2e.example/ns/default/sa/web")
	t.Run("x509-svid via go-spiffe client", func(t *testing.T) {
		svid, err := workloadapi.FetchX509SVID(fetchCtx(t), addr)
		if err != nil {
			t.Fatalf("FetchX509SVID: %v", err)
		}
		if svid.ID != want {
			t.Fatalf("got SPIFFE ID %s, want %s", svid.ID, want)
		}
		if _, _, err := x509svid.Verify(svid.Certificates, loadBundle(t, s)); err != nil {
			t.Fatalf("SVID does not verify against bundle.pem: %v", err)
		}
		if ttl := svid.Certificates[0].NotAfter.Sub(svid.Certificates[0].NotBefore); ttl < 59*time.Minute || ttl > 61*time.Minute {
			t.Errorf("got SVID lifetime %s, want the 1h default (plus backdating)", ttl)
		}
	})

	t.Run("jwt-svid via go-spiffe client", func(t *testing.T) {
		ctx := fetchCtx(t)
		client, err := workloadapi.New(ctx, addr)
		if err != nil {
			t.Fatal(err)
		}
		defer client.Close()
		jwt, err := client.FetchJWTSVID(ctx, jwtsvid.Params{Audience: "billing"})
		if err != nil {
			t.Fatalf("FetchJWTSVID: %v", err)
		}
		if jwt.ID != want {
			t.Fatalf("got JWT-SVID for %s, want %s", jwt.ID, want)
		}
		got, err := client.ValidateJWTSVID(ctx, jwt.Marshal(), "billing")
		if err != nil {
			t.Fatalf("ValidateJWTSVID: %v", err)
		}
		if got.ID != want {
			t.Errorf("validated ID %s, want %s", got.ID, want)
		}
		if _, err := client.ValidateJWTSVID(ctx, jwt.Marshal(), "other-audience"); err == nil {
			t.Error("a JWT-SVID validated for an audience it was not minted for")
		}
		bundles, err := client.FetchJWTBundles(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := jwtsvid.ParseAndValidate(jwt.Marshal(), bundles, []string{"billing"}); err != nil {
			t.Errorf("JWT-SVID does not validate against the JWT bundle: %v", err)
		}
		// The server publishes the JWT keys in the SPIFFE bundle file too.
		published, err := spiffebundle.Load(spiffeid.RequireTrustDomainFromString(s.td), filepath.Join(s.dir, "bundle.spiffe.json"))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := jwtsvid.ParseAndValidate(jwt.Marshal(), published, []string{"billing"}); err != nil {
			t.Errorf("JWT-SVID does not validate against bundle.spiffe.json: %v", err)
		}
	})

	t.Run("openssl verifies the chain", func(t *testing.T) {
		if _, err := exec.LookPath("openssl"); err != nil {
			t.Fatalf("openssl is needed for this test: %v", err)
		}
		dir := filepath.Join(t.TempDir(), "svid")
		mustCLI(t, "cert", "fetch", "--socket", a.socket, "--write", dir)
		out, err := exec.Command("openssl", "verify", "-CAfile", filepath.Join(s.dir, "bundle.pem"), filepath.Join(dir, "svid.pem")).CombinedOutput()
		if err != nil || !strings.Contains(string(out), "OK") {
			t.Fatalf("openssl verify: %v\n%s", err, out)
		}
		if fi, err := os.Stat(filepath.Join(dir, "key.pem")); err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("key.pem mode: %v %v, want 0600", fi.Mode().Perm(), err)
		}

		// A workload SVID is not an operator credential: the admin API
		// trusts only the admin CA.
		creds := filepath.Join(t.TempDir(), "creds")
		if err := os.MkdirAll(creds, 0o700); err != nil {
			t.Fatal(err)
		}
		for src, dst := range map[string]string{filepath.Join(dir, "svid.pem"): "cert.pem", filepath.Join(dir, "key.pem"): "key.pem",
			filepath.Join(s.dir, "admin", "ca.pem"): "ca.pem", filepath.Join(s.dir, "admin", "server"): "server"} {
			b, err := os.ReadFile(src)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(creds, dst), b, 0o600); err != nil {
				t.Fatal(err)
			}
		}
		_, errOut, err := cli(t, "", "get", "workloads", "--credentials", creds)
		if err == nil {
			t.Fatal("the admin API accepted a workload SVID as an operator credential")
		}
		if !strings.Contains(errOut, "certificate") {
			t.Errorf("got %q, want a TLS certificate refusal", errOut)
		}
	})

	t.Run("cert fetch json", func(t *testing.T) {
		out := mustCLI(t, "cert", "fetch", "--socket", a.socket, "-o", "json")
		for _, w := range []string{`"spiffeID": "spiffe://e2e.example/ns/default/sa/web"`, `"keyAlgorithm": "ECDSA P-256"`, `"serial"`} {
			if !strings.Contains(out, w) {
				t.Errorf("cert fetch -o json lacks %s:\n%s", w, out)
			}
		}
	})

	t.Run("reused join token refused and audited", func(t *testing.T) {
		out, errOut, err := cli(t, "", "agent", "--server", s.nodeAddr, "--join-token", token,
			"--trust-bundle", filepath.Join(s.dir, "bundle.pem"), "--socket", filepath.Join(t.TempDir(), "a.sock"),
			"--data-dir", filepath.Join(t.TempDir(), "agent2"))
		if err == nil {
			t.Fatalf("an agent joined with a used token\n%s%s", out, errOut)
		}
		if !strings.Contains(errOut, "join token refused") {
			t.Errorf("got error %q, want it to say the join token was refused", errOut)
		}
		audit := mustCLI(t, "audit", "tail", "-n", "100", "-o", "json", "--data-dir", s.dir)
		if !strings.Contains(audit, `"reason":"join token already used"`) {
			t.Errorf("audit log lacks the refused reuse:\n%s", audit)
		}
	})

	t.Run("socket in use refused before the token is spent", func(t *testing.T) {
		fresh := s.token(t, "node-2")
		_, errOut, err := cli(t, "", "agent", "--server", s.nodeAddr, "--join-token", fresh,
			"--trust-bundle", filepath.Join(s.dir, "bundle.pem"), "--socket", a.socket, "--data-dir", filepath.Join(t.TempDir(), "agent-b"))
		if err == nil || !strings.Contains(errOut, "another process is serving") {
			t.Fatalf("got %v %q, want a refusal naming the busy socket", err, errOut)
		}
		_, errOut, err = cli(t, "", "agent", "--server", s.nodeAddr, "--join-token", fresh,
			"--trust-bundle", filepath.Join(s.dir, "bundle.pem"), "--socket", a.socket, "--data-dir", agentDir)
		if err == nil || !strings.Contains(errOut, "in use by another trustmesh agent") {
			t.Fatalf("got %v %q, want a refusal naming the busy data dir", err, errOut)
		}
		b := startAgent(t, s, filepath.Join(t.TempDir(), "agent-c"), fresh)
		waitFor(t, "the token to still work", 30*time.Second, func() bool {
			return strings.Contains(b.out.String(), "joined with a join token")
		})
	})

	t.Run("unknown join token refused", func(t *testing.T) {
		_, errOut, err := cli(t, "", "agent", "--server", s.nodeAddr, "--join-token", "not-a-token",
			"--trust-bundle", filepath.Join(s.dir, "bundle.pem"), "--socket", filepath.Join(t.TempDir(), "a.sock"),
			"--data-dir", filepath.Join(t.TempDir(), "agent3"))
		if err == nil || !strings.Contains(errOut, "join token refused") {
			t.Fatalf("got %v %q, want a refusal", err, errOut)
		}
	})

	t.Run("agent restart keeps serving without a token", func(t *testing.T) {
		before, err := workloadapi.FetchX509SVID(fetchCtx(t), addr)
		if err != nil {
			t.Fatal(err)
		}
		if err := a.stop(); err != nil {
			t.Fatalf("agent stop: %v", err)
		}
		a2 := startAgent(t, s, agentDir, "")
		after, err := workloadapi.FetchX509SVID(fetchCtx(t), workloadapi.WithAddr("unix://"+a2.socket))
		if err != nil {
			t.Fatalf("fetch after restart: %v\n%s", err, a2.out)
		}
		if after.ID != want {
			t.Errorf("got %s after restart, want %s", after.ID, want)
		}
		if after.Certificates[0].SerialNumber.Cmp(before.Certificates[0].SerialNumber) == 0 {
			t.Error("workload SVID survived the restart: SVIDs must be kept in memory only")
		}
		if !strings.Contains(a2.out.String(), "re-joined with the saved node SVID") {
			t.Errorf("agent did not re-join with its saved SVID:\n%s", a2.out)
		}
	})
}

// TestSelectorsMustAllMatch: a workload whose registrations do not match it
// is refused, never handed someone else's identity.
func TestSelectorsMustAllMatch(t *testing.T) {
	t.Parallel()
	s := startServer(t, "nomatch.example")
	s.apply(t, workloadYAML(s.td, "other-user", "node-1", fmt.Sprintf("unix:uid:%d", os.Getuid()+4242))+"---\n"+
		workloadYAML(s.td, "wrong-binary", "node-1", uidSelector(), "unix:sha256:"+strings.Repeat("ab", 32)))
	a := startAgent(t, s, filepath.Join(t.TempDir(), "agent"), s.token(t, "node-1"))
	// Wait until the agent holds both SVIDs, so a refusal is about matching
	// and not about timing.
	waitFor(t, "agent to hold two SVIDs", 30*time.Second, func() bool {
		return strings.Count(a.out.String(), "workload SVID issued") >= 2
	})
	_, err := workloadapi.FetchX509SVID(fetchCtx(t), workloadapi.WithAddr("unix://"+a.socket))
	if status.Code(err) != codes.PermissionDenied {
		t.Fatalf("got %v, want PermissionDenied", err)
	}
	_, errOut, err := cli(t, "", "cert", "fetch", "--socket", a.socket, "--timeout", "5s")
	if err == nil || !strings.Contains(errOut, "PermissionDenied") {
		t.Errorf("cert fetch: got %v %q, want PermissionDenied", err, errOut)
	}
}

// TestSVIDRotation: with a 1-minute TTL the agent rotates at half-life and
// go-spiffe's X509Source sees the new SVID without reconnecting.
func TestSVIDRotation(t *testing.T) {
	t.Parallel()
	s := startServer(t, "rotate.example")
	s.apply(t, `apiVersion: trustmesh.dev/v1
kind: MeshConfig
metadata: {name: default}
spec: {x509SVIDTTL: 1m}
---
`+workloadYAML(s.td, "web", "node-1", uidSelector()))
	a := startAgent(t, s, filepath.Join(t.TempDir(), "agent"), s.token(t, "node-1"))
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	source, err := workloadapi.NewX509Source(ctx, workloadapi.WithClientOptions(workloadapi.WithAddr("unix://"+a.socket)))
	if err != nil {
		t.Fatal(err)
	}
	defer source.Close()
	first, err := source.GetX509SVID()
	if err != nil {
		t.Fatal(err)
	}
	if ttl := first.Certificates[0].NotAfter.Sub(first.Certificates[0].NotBefore); ttl > 2*time.Minute {
		t.Fatalf("got lifetime %s, want 1m (+backdate)", ttl)
	}
	changed := make(chan struct{}, 1)
	_ = watchSource(ctx, source, first.Certificates[0].SerialNumber.String(), changed)
	select {
	case <-changed:
	case <-ctx.Done():
		t.Fatalf("no rotation seen within 120s\n%s", a.out)
	}
	second, _ := source.GetX509SVID()
	if !second.Certificates[0].NotBefore.After(first.Certificates[0].NotBefore) {
		t.Errorf("rotated SVID is not newer")
	}
	if second.Certificates[0].NotBefore.Sub(first.Certificates[0].NotBefore) > 45*time.Second {
		t.Errorf("rotation came %s after issuance, want about half of the 1m TTL", second.Certificates[0].NotBefore.Sub(first.Certificates[0].NotBefore))
	}
}

// watchSource signals changed once the source's SVID serial differs from serial.
func watchSource(ctx context.Context, source *workloadapi.X509Source, serial string, changed chan<- struct{}) error {
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-source.Updated():
			}
			if s, err := source.GetX509SVID(); err == nil && s.Certificates[0].SerialNumber.String() != serial {
				changed <- struct{}{}
				return
			}
		}
	}()
	return nil
}

// TestAdminAPIAccess: the admin API refuses callers without a client
// certificate, and each role only does what it may.
func TestAdminAPIAccess(t *testing.T) {
	t.Parallel()
	s := startServer(t, "admin.example")
	ca, err := os.ReadFile(filepath.Join(s.dir, "admin", "ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca)

	t.Run("no client certificate", func(t *testing.T) {
		c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS13}}}
		resp, err := c.Get("https://" + s.adminAddr + "/v1/whoami")
		if err == nil {
			resp.Body.Close()
			t.Fatalf("got HTTP %d without a client certificate, want a TLS refusal", resp.StatusCode)
		}
	})

	t.Run("curl without certificate", func(t *testing.T) {
		if _, err := exec.LookPath("curl"); err != nil {
			t.Fatalf("curl is needed: %v", err)
		}
		out, err := exec.Command("curl", "-sS", "--cacert", filepath.Join(s.dir, "admin", "ca.pem"), "https://"+s.adminAddr+"/v1/whoami").CombinedOutput()
		if err == nil {
			t.Fatalf("curl without a client certificate succeeded: %s", out)
		}
	})

	t.Run("curl with the admin credential", func(t *testing.T) {
		d := filepath.Join(s.dir, "admin")
		out, err := exec.Command("curl", "-sS", "--fail", "--cacert", filepath.Join(d, "ca.pem"), "--cert", filepath.Join(d, "cert.pem"),
			"--key", filepath.Join(d, "key.pem"), "https://"+s.adminAddr+"/v1/whoami").CombinedOutput()
		if err != nil || !strings.Contains(string(out), `"role":"admin"`) {
			t.Fatalf("curl whoami: %v %s", err, out)
		}
	})

	auditor := filepath.Join(t.TempDir(), "alice")
	mustCLI(t, "admin", "issue", "--role", "auditor", "--name", "alice", "--out", auditor, "--data-dir", s.dir)
	if fi, err := os.Stat(filepath.Join(auditor, "key.pem")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("operator key mode: %v, want 0600", err)
	}

	t.Run("auditor may read", func(t *testing.T) {
		if out := mustCLI(t, "admin", "whoami", "--credentials", auditor); !strings.Contains(out, "alice (role auditor)") {
			t.Errorf("whoami: %q", out)
		}
		mustCLI(t, "get", "workloads", "--credentials", auditor)
		mustCLI(t, "audit", "tail", "--credentials", auditor)
	})

	t.Run("auditor may not write", func(t *testing.T) {
		_, errOut, err := cli(t, workloadYAML(s.td, "web", "node-1", uidSelector()), "apply", "-f", "-", "--credentials", auditor)
		if err == nil || !strings.Contains(errOut, `role "auditor" may not`) || !strings.Contains(errOut, "403") {
			t.Fatalf("auditor apply: got %v %q, want a 403 naming the role", err, errOut)
		}
		_, errOut, err = cli(t, "", "token", "create", "--node", "n1", "--credentials", auditor)
		if err == nil || !strings.Contains(errOut, "403") {
			t.Fatalf("auditor token create: got %v %q, want 403", err, errOut)
		}
		audit := mustCLI(t, "audit", "tail", "-n", "50", "-o", "json", "--data-dir", s.dir)
		if !strings.Contains(audit, `"outcome":"denied"`) || !strings.Contains(audit, "alice (auditor)") {
			t.Errorf("refusal not audited:\n%s", audit)
		}
	})

	responder := filepath.Join(t.TempDir(), "bob")
	mustCLI(t, "admin", "issue", "--role", "responder", "--name", "bob", "--out", responder, "--data-dir", s.dir)
	t.Run("responder may revoke but not read the audit log", func(t *testing.T) {
		mustCLI(t, "cert", "revoke", "--spiffe-id", "spiffe://admin.example/ns/default/sa/x", "--credentials", responder)
		_, errOut, err := cli(t, "", "audit", "tail", "--credentials", responder)
		if err == nil || !strings.Contains(errOut, "403") {
			t.Fatalf("responder audit tail: got %v %q, want 403", err, errOut)
		}
	})

	t.Run("revoked operator credential refused", func(t *testing.T) {
		out := mustCLI(t, "cert", "inspect", filepath.Join(responder, "cert.pem"), "-o", "json")
		serial := between(out, `"serial": "`, `"`)
		mustCLI(t, "cert", "revoke", "--serial", serial, "--data-dir", s.dir)
		_, errOut, err := cli(t, "", "admin", "whoami", "--credentials", responder)
		if err == nil || !strings.Contains(errOut, "revoked") {
			t.Fatalf("revoked credential: got %v %q, want a refusal", err, errOut)
		}
	})
}

func between(s, a, b string) string {
	_, rest, ok := strings.Cut(s, a)
	if !ok {
		return ""
	}
	v, _, _ := strings.Cut(rest, b)
	return v
}

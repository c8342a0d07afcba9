package server

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/trustmesh/trustmesh/internal/server/adminapi"
)

// startTestServer runs a real server on loopback ports in a temp dir.
func startTestServer(t testing.TB) *Server {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	s, err := New(ctx, Config{DataDir: t.TempDir(), TrustDomain: "unit.example", ListenAddr: "127.0.0.1:0",
		AdminListenAddr: "127.0.0.1:0", Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return s
}

// credential mints an operator credential with role through the API.
func credential(t *testing.T, s *Server, admin *adminapi.Client, role string) *adminapi.Client {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
	if err != nil {
		t.Fatal(err)
	}
	var resp adminapi.AdminIssueResponse
	if err := admin.Do(context.Background(), http.MethodPost, adminapi.PathAdminIssue, nil, adminapi.AdminIssueRequest{
		Name: "op-" + role, Role: role, TTL: time.Hour,
		CSR: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: csr}))}, &resp); err != nil {
		t.Fatalf("issue %s: %v", role, err)
	}
	keyDER, _ := x509.MarshalPKCS8PrivateKey(key)
	dir := filepath.Join(t.TempDir(), role)
	if err := adminapi.WriteCredentials(dir, []byte(resp.CertPEM), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), []byte(resp.CAPEM), s.AdminAddr()); err != nil {
		t.Fatal(err)
	}
	c, err := adminapi.NewClient(dir, "")
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestRoleMatrix checks every endpoint against every role: a role either
// gets past authorization (any status but 403) or is refused with 403.
func TestRoleMatrix(t *testing.T) {
	s := startTestServer(t)
	admin, err := adminapi.NewClient(filepath.Join(s.cfg.DataDir, "admin"), "")
	if err != nil {
		t.Fatal(err)
	}
	clients := map[string]*adminapi.Client{}
	for _, r := range adminapi.Roles {
		clients[r] = credential(t, s, admin, r)
	}
	type call struct {
		method, path string
		query        url.Values
		allowed      []string
	}
	all := adminapi.Roles
	calls := []call{
		{http.MethodGet, adminapi.PathWhoAmI, nil, all},
		{http.MethodPost, adminapi.PathApply, nil, []string{"admin", "policy-author"}},
		{http.MethodGet, adminapi.PathObjects, url.Values{"kind": {"Workload"}}, all},
		{http.MethodGet, adminapi.PathHistory, url.Values{"kind": {"Workload"}, "name": {"x"}}, all},
		{http.MethodDelete, adminapi.PathObjects, url.Values{"kind": {"Workload"}, "name": {"x"}}, []string{"admin", "policy-author"}},
		{http.MethodPost, adminapi.PathTokens, nil, []string{"admin"}},
		{http.MethodPost, adminapi.PathAdminIssue, nil, []string{"admin"}},
		{http.MethodPost, adminapi.PathRevocations, nil, []string{"admin", "responder"}},
		{http.MethodGet, adminapi.PathRevocations, nil, all},
		{http.MethodGet, adminapi.PathCA, nil, all},
		{http.MethodPost, adminapi.PathCARotate, nil, []string{"admin"}},
		{http.MethodGet, adminapi.PathBundle, nil, all},
		{http.MethodGet, adminapi.PathNodes, nil, all},
		{http.MethodGet, adminapi.PathProxies, nil, all},
		{http.MethodGet, adminapi.PathAudit, nil, []string{"admin", "auditor"}},
		{http.MethodGet, adminapi.PathAuditCheckpoints, nil, []string{"admin", "auditor"}},
		{http.MethodPost, adminapi.PathRollback, nil, []string{"admin", "policy-author"}},
		{http.MethodPost, adminapi.PathExplain, nil, all},
		// PathTap streams until the client goes away; its refusal of other
		// roles is tested end to end (test/e2e TestAuthorizationLifecycle).
	}
	for _, c := range calls {
		for _, role := range adminapi.Roles {
			t.Run(role+" "+c.method+" "+c.path, func(t *testing.T) {
				allowed := false
				for _, a := range c.allowed {
					allowed = allowed || a == role
				}
				// An empty JSON body: allowed calls fail validation (400), not
				// authorization.
				var body any
				if c.method == http.MethodPost {
					body = map[string]any{}
				}
				var out any
				err := clients[role].Do(context.Background(), c.method, c.path, c.query, body, &out)
				var se *adminapi.StatusError
				forbidden := errors.As(err, &se) && se.Code == http.StatusForbidden
				if allowed && forbidden {
					t.Errorf("role %s refused: %v", role, err)
				}
				if !allowed && !forbidden {
					t.Errorf("role %s got %v, want 403", role, err)
				}
			})
		}
	}
}

func TestParseSerial(t *testing.T) {
	tests := []struct {
		in, want string
		ok       bool
	}{
		{"12345", "12345", true},
		{"0x3039", "12345", true},
		{"30:39", "12345", true},
		{"340282366920938463463374607431768211455", "340282366920938463463374607431768211455", true},
		{"", "", false},
		{"-5", "", false},
		{"0", "", false},
		{"zz:zz", "", false},
		{"00:00", "", false},
		{"12a", "", false},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			got, ok := parseSerial(tc.in)
			if ok != tc.ok || got != tc.want {
				t.Errorf("parseSerial(%q) = %q, %v; want %q, %v", tc.in, got, ok, tc.want, tc.ok)
			}
		})
	}
}

// TestNewFailsCleanly: start-up errors are reported, never a panic, and a
// second server cannot take a data dir in use.
func TestNewFailsCleanly(t *testing.T) {
	s := startTestServer(t)
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	recorded := t.TempDir()
	if err := os.WriteFile(filepath.Join(recorded, trustDomainFile), []byte("first.example\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		cfg  Config
		want string
	}{
		{"data dir in use", Config{DataDir: s.cfg.DataDir, ListenAddr: "127.0.0.1:0", AdminListenAddr: "127.0.0.1:0"}, "in use by another trustmesh server"},
		{"port in use", Config{DataDir: t.TempDir(), TrustDomain: "x.example", ListenAddr: s.NodeAddr(), AdminListenAddr: "127.0.0.1:0"}, "listen on --listen"},
		{"no trust domain", Config{DataDir: t.TempDir()}, "--trust-domain is required"},
		{"trust domain changed", Config{DataDir: recorded, TrustDomain: "other.example"}, "does not match"},
		{"half an upstream CA", Config{DataDir: t.TempDir(), TrustDomain: "x.example", UpstreamCertFile: "ca.pem"}, "--upstream-ca needs both"},
		{"audit checkpoint interval too short", Config{DataDir: t.TempDir(), TrustDomain: "x.example", ListenAddr: "127.0.0.1:0", AdminListenAddr: "127.0.0.1:0",
			AuditCheckpointInterval: time.Millisecond}, "--audit-checkpoint-interval 1ms: want 1s or more"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.cfg.Logger = quiet
			_, err := New(context.Background(), tc.cfg)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

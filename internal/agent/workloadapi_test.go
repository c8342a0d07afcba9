package agent

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"errors"
	"log/slog"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/spiffe/go-spiffe/v2/bundle/jwtbundle"
	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/proto/spiffe/workload"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/jwtsvid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/trustmesh/trustmesh/internal/attest"
)

var (
	td      = spiffeid.RequireTrustDomainFromString("example.org")
	webID   = spiffeid.RequireFromString("spiffe://example.org/ns/default/web")
	adminID = spiffeid.RequireFromString("spiffe://example.org/ns/default/web-admin")
	dbID    = spiffeid.RequireFromString("spiffe://example.org/ns/default/db")
)

// waitTimeout bounds every wait on the server; a healthy run never gets near.
const waitTimeout = 10 * time.Second

// ownUID and otherUID select the test process and somebody else.
func ownUID() attest.Selector {
	return attest.Selector{Type: "unix", Value: "uid:" + strconv.Itoa(os.Geteuid())}
}

func otherUID() attest.Selector {
	return attest.Selector{Type: "unix", Value: "uid:" + strconv.Itoa(os.Geteuid()+1)}
}

// testCA is a throwaway X.509 CA for the test trust domain.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

func newKey(t *testing.T) *ecdsa.PrivateKey {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return key
}

func serial(t *testing.T) *big.Int {
	t.Helper()
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 64))
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func newTestCA(t *testing.T) *testCA {
	t.Helper()
	key := newKey(t)
	tmpl := &x509.Certificate{
		SerialNumber:          serial(t),
		Subject:               pkix.Name{Organization: []string{"trustmesh test"}},
		URIs:                  []*url.URL{td.ID().URL()},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &testCA{cert: cert, key: key}
}

// svid issues an X.509-SVID for id.
func (ca *testCA) svid(t *testing.T, id spiffeid.ID) *x509svid.SVID {
	t.Helper()
	key := newKey(t)
	tmpl := &x509.Certificate{
		SerialNumber:          serial(t),
		URIs:                  []*url.URL{id.URL()},
		NotBefore:             time.Now().Add(-time.Minute),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &x509svid.SVID{ID: id, Certificates: []*x509.Certificate{cert}, PrivateKey: key}
}

// jwtSigner signs ES256 JWT-SVIDs by hand, independently of the library
// that verifies them.
type jwtSigner struct {
	kid string
	key *ecdsa.PrivateKey
}

func newJWTSigner(t *testing.T, kid string) *jwtSigner {
	t.Helper()
	return &jwtSigner{kid: kid, key: newKey(t)}
}

func (s *jwtSigner) sign(sub spiffeid.ID, audience []string, exp time.Time) (string, error) {
	enc := base64.RawURLEncoding
	header, err := json.Marshal(map[string]string{"alg": "ES256", "kid": s.kid, "typ": "JWT"})
	if err != nil {
		return "", err
	}
	// No iat: tests run the minter on a fake clock, and a token issued "in
	// the future" of the validator's real clock is rejected.
	claims, err := json.Marshal(map[string]any{"sub": sub.String(), "aud": audience, "exp": exp.Unix(), "team": "payments"})
	if err != nil {
		return "", err
	}
	input := enc.EncodeToString(header) + "." + enc.EncodeToString(claims)
	digest := sha256.Sum256([]byte(input))
	r, ss, err := ecdsa.Sign(rand.Reader, s.key, digest[:])
	if err != nil {
		return "", err
	}
	sig := make([]byte, 64)
	r.FillBytes(sig[:32])
	ss.FillBytes(sig[32:])
	return input + "." + enc.EncodeToString(sig), nil
}

// fakeMinter is the JWTMinter: it signs real JWT-SVIDs and counts calls.
type fakeMinter struct {
	mu     sync.Mutex
	signer *jwtSigner
	now    func() time.Time
	err    error
	calls  atomic.Int32
}

func (m *fakeMinter) MintJWTSVID(_ context.Context, id spiffeid.ID, audience []string, ttl time.Duration) (string, error) {
	m.calls.Add(1)
	m.mu.Lock()
	signer, err := m.signer, m.err
	m.mu.Unlock()
	if err != nil {
		return "", err
	}
	if ttl == 0 {
		ttl = time.Hour
	}
	return signer.sign(id, audience, m.now().Add(ttl))
}

func (m *fakeMinter) setSigner(s *jwtSigner) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.signer = s
}

// fakeClock is a clock tests move by hand.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// logBuffer collects JSON log lines.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// records returns the log records whose message is msg.
func (b *logBuffer) records(t *testing.T, msg string) []map[string]any {
	t.Helper()
	var out []map[string]any
	sc := bufio.NewScanner(strings.NewReader(b.String()))
	for sc.Scan() {
		var r map[string]any
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("log line %q: %v", sc.Text(), err)
		}
		if r["msg"] == msg {
			out = append(out, r)
		}
	}
	return out
}

// fixture is a Workload API server on a real unix socket, with its CA,
// JWT key, state and minter.
type fixture struct {
	ca     *testCA
	jwt    *jwtSigner
	clock  *fakeClock
	minter *fakeMinter
	holder *StateHolder
	logs   *logBuffer
	api    *WorkloadAPI
	socket string
	addr   string // unix://socket, for go-spiffe clients
}

// newFixture starts a server; configure may change its config. The server is
// stopped at the end of the test, which checks that Run returned nil,
// removed the socket and left no handler running.
func newFixture(t *testing.T, configure func(*WorkloadAPIConfig)) *fixture {
	t.Helper()
	// t.TempDir paths can pass the 107-byte socket limit; this one cannot.
	dir, err := os.MkdirTemp("", "wl")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })

	f := &fixture{
		ca:     newTestCA(t),
		jwt:    newJWTSigner(t, "jwt-key-1"),
		clock:  &fakeClock{now: time.Now()},
		holder: NewStateHolder(),
		logs:   &logBuffer{},
		socket: filepath.Join(dir, "agent.sock"),
	}
	f.addr = "unix://" + f.socket
	f.minter = &fakeMinter{signer: f.jwt, now: f.clock.Now}
	cfg := WorkloadAPIConfig{
		SocketPath: f.socket,
		State:      f.holder,
		JWT:        f.minter,
		Now:        f.clock.Now,
		Logger:     slog.New(slog.NewJSONHandler(f.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	if configure != nil {
		configure(&cfg)
	}
	f.api, err = NewWorkloadAPI(cfg)
	if err != nil {
		t.Fatal(err)
	}
	f.socket = cfg.SocketPath
	f.addr = "unix://" + f.socket

	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan error, 1)
	go func() { ran <- f.api.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-ran:
			if err != nil {
				t.Errorf("Run returned %v, want nil", err)
			}
		case <-time.After(waitTimeout):
			t.Fatal("Run did not return after cancel")
		}
		if _, err := os.Lstat(f.socket); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("socket still there after Run: %v", err)
		}
		checkNoHandlers(t)
	})
	select {
	case <-f.api.ready:
	case err := <-ran:
		t.Fatalf("Run: %v", err)
	case <-time.After(waitTimeout):
		t.Fatal("server not listening")
	}
	return f
}

// checkNoHandlers fails if a Workload API handler is still running, or a
// gRPC server goroutine outlives Run: Run must wait for everything it
// started. Our handlers have returned by the time Run does (strict); gRPC's
// per-stream goroutine still runs its own deferred bookkeeping just after the
// handler returns, so gRPC frames get a moment to settle, as goleak allows.
func checkNoHandlers(t *testing.T) {
	t.Helper()
	ours := func(g string) bool {
		return strings.Contains(g, "agent.(*WorkloadAPI)") || strings.Contains(g, "agent.serveStream")
	}
	grpcServer := func(g string) bool { return strings.Contains(g, "grpc.(*Server)") }

	for _, g := range goroutines() {
		if ours(g) {
			t.Errorf("handler left running after Run returned:\n%s", g)
		}
	}
	deadline := time.Now().Add(2 * time.Second)
	for {
		var left []string
		for _, g := range goroutines() {
			if grpcServer(g) {
				left = append(left, g)
			}
		}
		if len(left) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("gRPC server goroutines left running after Run returned:\n%s", strings.Join(left, "\n\n"))
			return
		}
		runtime.Gosched()
		time.Sleep(time.Millisecond)
	}
}

// goroutines returns the stacks of all goroutines, without their "created
// by" lines: a goroutine whose function has returned (only runtime.goexit
// left) is not running anybody's code.
func goroutines() []string {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	var out []string
	for _, g := range strings.Split(string(buf), "\n\n") {
		lines := strings.Split(g, "\n")
		kept := lines[:0]
		for i := 0; i < len(lines); i++ {
			if strings.HasPrefix(lines[i], "created by ") {
				i++ // and its file:line
				continue
			}
			kept = append(kept, lines[i])
		}
		out = append(out, strings.Join(kept, "\n"))
	}
	return out
}

func (f *fixture) identity(t *testing.T, entry string, id spiffeid.ID, sel attest.Selector) Identity {
	t.Helper()
	return Identity{EntryID: entry, SPIFFEID: id, Selectors: []attest.Selector{sel}, SVID: f.ca.svid(t, id), Hint: entry}
}

// bundle returns a bundle with the given X.509 authorities and JWT signers.
func bundle(t *testing.T, cas []*testCA, signers ...*jwtSigner) *spiffebundle.Bundle {
	t.Helper()
	b := spiffebundle.New(td)
	for _, ca := range cas {
		b.AddX509Authority(ca.cert)
	}
	for _, s := range signers {
		if err := b.AddJWTAuthority(s.kid, &s.key.PublicKey); err != nil {
			t.Fatal(err)
		}
	}
	return b
}

// set publishes identities with the fixture's CA and JWT key.
func (f *fixture) set(t *testing.T, ids ...Identity) {
	t.Helper()
	f.setWith(t, bundle(t, []*testCA{f.ca}, f.jwt), ids...)
}

func (f *fixture) setWith(t *testing.T, b *spiffebundle.Bundle, ids ...Identity) {
	t.Helper()
	if err := f.holder.Set(&State{Identities: ids, Bundle: b}); err != nil {
		t.Fatalf("Set: %v", err)
	}
}

func (f *fixture) client(t *testing.T) workload.SpiffeWorkloadAPIClient {
	t.Helper()
	conn, err := grpc.NewClient(f.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return workload.NewSpiffeWorkloadAPIClient(conn)
}

// withHeader adds the Workload API security header, as every client must.
func withHeader(ctx context.Context) context.Context {
	return metadata.AppendToOutgoingContext(ctx, "workload.spiffe.io", "true")
}

func testContext(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), waitTimeout)
	t.Cleanup(cancel)
	return ctx
}

func wantCode(t *testing.T, err error, want codes.Code) {
	t.Helper()
	if got := status.Code(err); got != want {
		t.Fatalf("got %v (%v), want %v", got, err, want)
	}
}

func TestNewWorkloadAPIValidatesConfig(t *testing.T) {
	good := WorkloadAPIConfig{SocketPath: "/run/trustmesh/agent.sock", State: NewStateHolder(), JWT: &fakeMinter{}}
	tests := []struct {
		name   string
		change func(*WorkloadAPIConfig)
		want   string
	}{
		{"no socket", func(c *WorkloadAPIConfig) { c.SocketPath = "" }, "socket path is required"},
		{"relative socket", func(c *WorkloadAPIConfig) { c.SocketPath = "agent.sock" }, "must be absolute"},
		{"socket too long", func(c *WorkloadAPIConfig) { c.SocketPath = "/" + strings.Repeat("a", 107) }, "at most 107"},
		{"no state", func(c *WorkloadAPIConfig) { c.State = nil }, "state holder is required"},
		{"no minter", func(c *WorkloadAPIConfig) { c.JWT = nil }, "JWT minter is required"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := good
			tt.change(&cfg)
			_, err := NewWorkloadAPI(cfg)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("got %v, want an error containing %q", err, tt.want)
			}
		})
	}
	if _, err := NewWorkloadAPI(good); err != nil {
		t.Errorf("good config: %v", err)
	}
}

func isClosed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

func TestStateHolder(t *testing.T) {
	ca := newTestCA(t)
	b := bundle(t, []*testCA{ca})
	web := Identity{EntryID: "default/web", SPIFFEID: webID, Selectors: []attest.Selector{ownUID()}, SVID: ca.svid(t, webID)}
	h := NewStateHolder()

	if h.Current() != nil {
		t.Fatal("Current before Set is not nil")
	}
	first := h.Changed(nil)
	if isClosed(first) {
		t.Fatal("Changed(nil) closed before the first Set")
	}
	s1 := &State{Identities: []Identity{web}, Bundle: b}
	if err := h.Set(s1); err != nil {
		t.Fatal(err)
	}
	if !isClosed(first) {
		t.Error("first Set did not close Changed(nil)")
	}
	if h.Current() != s1 {
		t.Error("Current is not the State just Set")
	}
	c1 := h.Changed(s1)
	if isClosed(c1) {
		t.Error("Changed(current) is closed")
	}
	if !isClosed(h.Changed(nil)) {
		t.Error("Changed(superseded) is open")
	}
	if err := h.Set(&State{Bundle: b}); err != nil {
		t.Fatal(err)
	}
	if !isClosed(c1) {
		t.Error("Set did not close Changed(previous)")
	}

	other := spiffeid.RequireFromString("spiffe://other.org/web")
	wrongKey := web
	wrongKey.SVID = &x509svid.SVID{ID: webID, Certificates: web.SVID.Certificates, PrivateKey: newKey(t)}
	bad := []struct {
		name  string
		state *State
	}{
		{"nil", nil},
		{"no bundle", &State{Identities: []Identity{web}}},
		{"bundle without X.509 authorities", &State{Bundle: spiffebundle.New(td)}},
		{"no entry ID", &State{Bundle: b, Identities: []Identity{{SPIFFEID: webID, Selectors: web.Selectors, SVID: web.SVID}}}},
		{"no selectors", &State{Bundle: b, Identities: []Identity{{EntryID: "x", SPIFFEID: webID, SVID: web.SVID}}}},
		{"no SVID", &State{Bundle: b, Identities: []Identity{{EntryID: "x", SPIFFEID: webID, Selectors: web.Selectors}}}},
		{"SVID for another ID", &State{Bundle: b, Identities: []Identity{{EntryID: "x", SPIFFEID: dbID, Selectors: web.Selectors, SVID: web.SVID}}}},
		{"foreign trust domain", &State{Bundle: b, Identities: []Identity{{EntryID: "x", SPIFFEID: other, Selectors: web.Selectors, SVID: ca.svid(t, other)}}}},
		{"key does not match", &State{Bundle: b, Identities: []Identity{wrongKey}}},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			before := h.Current()
			if err := h.Set(tt.state); err == nil {
				t.Fatal("Set accepted an invalid State")
			}
			if h.Current() != before {
				t.Error("a refused Set replaced the State")
			}
		})
	}
}

func TestX509SourceGetsOwnSVID(t *testing.T) {
	f := newFixture(t, nil)
	web := f.identity(t, "default/web", webID, ownUID())
	f.set(t, web, f.identity(t, "default/db", dbID, otherUID()))

	src, err := workloadapi.NewX509Source(testContext(t), workloadapi.WithClientOptions(workloadapi.WithAddr(f.addr)))
	if err != nil {
		t.Fatalf("NewX509Source: %v", err)
	}
	t.Cleanup(func() { _ = src.Close() })

	got, err := src.GetX509SVID()
	if err != nil {
		t.Fatal(err)
	}
	if got.ID != webID {
		t.Errorf("SVID for %s, want %s", got.ID, webID)
	}
	if !got.Certificates[0].Equal(web.SVID.Certificates[0]) {
		t.Error("served leaf is not the registration's")
	}
	if got.Hint != "default/web" {
		t.Errorf("hint %q, want default/web", got.Hint)
	}
	if _, _, err := x509svid.Verify(got.Certificates, src); err != nil {
		t.Errorf("served chain does not verify against the served bundle: %v", err)
	}
	b, err := src.GetX509BundleForTrustDomain(td)
	if err != nil {
		t.Fatal(err)
	}
	if auth := b.X509Authorities(); len(auth) != 1 || !auth[0].Equal(f.ca.cert) {
		t.Errorf("bundle authorities = %d certs, want the test CA", len(auth))
	}
}

func TestX509SVIDDeniedToOthers(t *testing.T) {
	f := newFixture(t, nil)
	db := f.identity(t, "default/db", dbID, otherUID())
	f.set(t, db)

	_, err := workloadapi.FetchX509SVID(testContext(t), workloadapi.WithAddr(f.addr))
	wantCode(t, err, codes.PermissionDenied)
	if msg := status.Convert(err).Message(); msg != "no identity issued" {
		t.Errorf("message %q, want %q", msg, "no identity issued")
	}

	denials := f.logs.records(t, "workload api request denied")
	if len(denials) != 1 {
		t.Fatalf("got %d denial records, want 1; logs:\n%s", len(denials), f.logs)
	}
	d := denials[0]
	want := map[string]any{
		"component": "workloadapi",
		"level":     "INFO",
		"rpc":       "FetchX509SVID",
		"pid":       float64(os.Getpid()),
		"uid":       float64(os.Geteuid()),
		"reason":    "no registration matches the caller",
	}
	for k, v := range want {
		if d[k] != v {
			t.Errorf("denial %s = %v, want %v", k, d[k], v)
		}
	}
	sels, _ := d["selectors"].([]any)
	if !containsValue(sels, ownUID().String()) {
		t.Errorf("denial selectors %v lack %s", sels, ownUID())
	}
	key, err := x509.MarshalPKCS8PrivateKey(db.SVID.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(f.logs.String(), base64.StdEncoding.EncodeToString(key)) {
		t.Error("a private key was logged")
	}
}

func containsValue(list []any, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

func TestAttestationFailureIsPermissionDenied(t *testing.T) {
	f := newFixture(t, func(c *WorkloadAPIConfig) {
		c.Attest = func(attest.PeerInfo) ([]attest.Selector, error) { return nil, errors.New("process is gone") }
	})
	// Even a registration the caller would match by uid is not served.
	f.set(t, f.identity(t, "default/web", webID, ownUID()))

	ctx := withHeader(testContext(t))
	c := f.client(t)
	calls := []struct {
		name string
		call func() error
	}{
		{"FetchX509SVID", func() error {
			s, err := c.FetchX509SVID(ctx, &workload.X509SVIDRequest{})
			if err != nil {
				return err
			}
			_, err = s.Recv()
			return err
		}},
		{"FetchJWTSVID", func() error {
			_, err := c.FetchJWTSVID(ctx, &workload.JWTSVIDRequest{Audience: []string{"a"}})
			return err
		}},
		{"FetchX509Bundles", func() error {
			s, err := c.FetchX509Bundles(ctx, &workload.X509BundlesRequest{})
			if err != nil {
				return err
			}
			_, err = s.Recv()
			return err
		}},
	}
	for _, tt := range calls {
		t.Run(tt.name, func(t *testing.T) {
			wantCode(t, tt.call(), codes.PermissionDenied)
		})
	}
	for _, d := range f.logs.records(t, "workload api request denied") {
		if d["reason"] != "attestation failed" || d["error"] != "process is gone" {
			t.Errorf("denial record %v, want reason and cause of the attestation failure", d)
		}
	}
}

func TestX509SourceFollowsRotation(t *testing.T) {
	f := newFixture(t, nil)
	f.set(t, f.identity(t, "default/web", webID, ownUID()))

	src, err := workloadapi.NewX509Source(testContext(t), workloadapi.WithClientOptions(workloadapi.WithAddr(f.addr)))
	if err != nil {
		t.Fatalf("NewX509Source: %v", err)
	}
	t.Cleanup(func() { _ = src.Close() })

	rotated := f.identity(t, "default/web", webID, ownUID())
	f.set(t, rotated)
	select {
	case <-src.Updated():
	case <-time.After(waitTimeout):
		t.Fatal("X509Source saw no update after rotation")
	}
	got, err := src.GetX509SVID()
	if err != nil {
		t.Fatal(err)
	}
	if !got.Certificates[0].Equal(rotated.SVID.Certificates[0]) {
		t.Error("X509Source still holds the old SVID")
	}
}

func TestFetchX509SVIDStream(t *testing.T) {
	f := newFixture(t, nil)
	web := f.identity(t, "default/web", webID, ownUID())
	db := f.identity(t, "default/db", dbID, otherUID())
	f.set(t, web, db)

	stream, err := f.client(t).FetchX509SVID(withHeader(testContext(t)), &workload.X509SVIDRequest{})
	if err != nil {
		t.Fatal(err)
	}
	recv := func() *workload.X509SVIDResponse {
		t.Helper()
		resp, err := stream.Recv()
		if err != nil {
			t.Fatalf("Recv: %v", err)
		}
		return resp
	}
	ids := func(resp *workload.X509SVIDResponse) []string {
		var out []string
		for _, s := range resp.GetSvids() {
			out = append(out, s.GetSpiffeId())
		}
		return out
	}

	first := recv()
	if diff := cmp.Diff([]string{webID.String()}, ids(first)); diff != "" {
		t.Errorf("first response (-want +got):\n%s", diff)
	}
	svid := first.GetSvids()[0]
	if !bytes.Equal(svid.GetBundle(), f.ca.cert.Raw) {
		t.Error("bundle is not the CA's DER")
	}
	key, err := x509.MarshalPKCS8PrivateKey(web.SVID.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(svid.GetX509Svid(), web.SVID.Certificates[0].Raw) || !bytes.Equal(svid.GetX509SvidKey(), key) {
		t.Error("SVID or key is not the registration's")
	}

	// Nothing this caller gets changes: no message. Then the bundle gains
	// an authority: exactly one message, and it is that one.
	f.set(t, web, f.identity(t, "default/db", dbID, otherUID()))
	ca2 := newTestCA(t)
	f.setWith(t, bundle(t, []*testCA{f.ca, ca2}, f.jwt), web, db)
	if got, want := recv().GetSvids()[0].GetBundle(), append(bytes.Clone(f.ca.cert.Raw), ca2.cert.Raw...); !bytes.Equal(got, want) {
		t.Error("response after the bundle change does not carry both authorities")
	}

	// A registration added for this caller.
	admin := f.identity(t, "default/web-admin", adminID, ownUID())
	f.set(t, web, admin, db)
	if diff := cmp.Diff([]string{webID.String(), adminID.String()}, ids(recv())); diff != "" {
		t.Errorf("after adding a registration (-want +got):\n%s", diff)
	}

	// Registrations removed: the stream ends.
	f.set(t, db)
	_, err = stream.Recv()
	wantCode(t, err, codes.PermissionDenied)
}

func TestSecurityHeaderRequired(t *testing.T) {
	f := newFixture(t, nil)
	f.set(t, f.identity(t, "default/web", webID, ownUID()))
	c := f.client(t)
	ctx := testContext(t)
	wrong := metadata.AppendToOutgoingContext(ctx, "workload.spiffe.io", "yes")

	calls := []struct {
		name string
		call func(context.Context) error
	}{
		{"FetchX509SVID", func(ctx context.Context) error {
			s, err := c.FetchX509SVID(ctx, &workload.X509SVIDRequest{})
			if err != nil {
				return err
			}
			_, err = s.Recv()
			return err
		}},
		{"FetchX509Bundles", func(ctx context.Context) error {
			s, err := c.FetchX509Bundles(ctx, &workload.X509BundlesRequest{})
			if err != nil {
				return err
			}
			_, err = s.Recv()
			return err
		}},
		{"FetchJWTBundles", func(ctx context.Context) error {
			s, err := c.FetchJWTBundles(ctx, &workload.JWTBundlesRequest{})
			if err != nil {
				return err
			}
			_, err = s.Recv()
			return err
		}},
		{"FetchJWTSVID", func(ctx context.Context) error {
			_, err := c.FetchJWTSVID(ctx, &workload.JWTSVIDRequest{Audience: []string{"a"}})
			return err
		}},
		{"ValidateJWTSVID", func(ctx context.Context) error {
			_, err := c.ValidateJWTSVID(ctx, &workload.ValidateJWTSVIDRequest{Audience: "a", Svid: "x.y.z"})
			return err
		}},
	}
	for _, tt := range calls {
		for name, ctx := range map[string]context.Context{"missing": ctx, "not true": wrong} {
			t.Run(tt.name+"/"+name, func(t *testing.T) {
				err := tt.call(ctx)
				wantCode(t, err, codes.InvalidArgument)
				if msg := status.Convert(err).Message(); msg != "security header missing from request" {
					t.Errorf("message %q", msg)
				}
			})
		}
	}
}

func TestBundleStreams(t *testing.T) {
	f := newFixture(t, nil)
	web := f.identity(t, "default/web", webID, ownUID())
	f.set(t, web)
	ctx := withHeader(testContext(t))
	c := f.client(t)

	x509s, err := c.FetchX509Bundles(ctx, &workload.X509BundlesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	jwts, err := c.FetchJWTBundles(ctx, &workload.JWTBundlesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	recvX509 := func() map[string][]byte {
		t.Helper()
		resp, err := x509s.Recv()
		if err != nil {
			t.Fatalf("FetchX509Bundles: %v", err)
		}
		return resp.GetBundles()
	}
	recvJWT := func() *jwtbundle.Bundle {
		t.Helper()
		resp, err := jwts.Recv()
		if err != nil {
			t.Fatalf("FetchJWTBundles: %v", err)
		}
		if len(resp.GetBundles()) != 1 {
			t.Fatalf("got %d JWT bundles, want 1", len(resp.GetBundles()))
		}
		b, err := jwtbundle.Parse(td, resp.GetBundles()[td.IDString()])
		if err != nil {
			t.Fatalf("JWKS for %s: %v", td.IDString(), err)
		}
		return b
	}

	if diff := cmp.Diff(map[string][]byte{td.IDString(): f.ca.cert.Raw}, recvX509()); diff != "" {
		t.Errorf("X.509 bundles (-want +got):\n%s", diff)
	}
	if b := recvJWT(); !b.HasJWTAuthority(f.jwt.kid) || len(b.JWTAuthorities()) != 1 {
		t.Errorf("JWT bundle authorities %v, want only %s", b.JWTAuthorities(), f.jwt.kid)
	}

	// The JWT key rotates: the JWT stream updates; the X.509 one has nothing
	// new, so its next message is the X.509 change that follows.
	next := newJWTSigner(t, "jwt-key-2")
	f.setWith(t, bundle(t, []*testCA{f.ca}, f.jwt, next), web)
	if b := recvJWT(); !b.HasJWTAuthority(next.kid) {
		t.Error("JWT bundle update lacks the new key")
	}
	ca2 := newTestCA(t)
	f.setWith(t, bundle(t, []*testCA{f.ca, ca2}, f.jwt, next), web)
	if got := recvX509()[td.IDString()]; !bytes.Equal(got, append(bytes.Clone(f.ca.cert.Raw), ca2.cert.Raw...)) {
		t.Error("X.509 bundle update lacks the new authority")
	}
}

func TestBundlesRequireAnIdentity(t *testing.T) {
	for _, allow := range []bool{false, true} {
		t.Run("AllowUnauthenticatedVerifiers="+strconv.FormatBool(allow), func(t *testing.T) {
			f := newFixture(t, func(c *WorkloadAPIConfig) { c.AllowUnauthenticatedVerifiers = allow })
			f.set(t, f.identity(t, "default/db", dbID, otherUID()))
			want := codes.PermissionDenied
			if allow {
				want = codes.OK
			}
			_, err := workloadapi.FetchX509Bundles(testContext(t), workloadapi.WithAddr(f.addr))
			wantCode(t, err, want)
			_, err = workloadapi.FetchJWTBundles(testContext(t), workloadapi.WithAddr(f.addr))
			wantCode(t, err, want)
		})
	}
}

func TestJWTSVIDs(t *testing.T) {
	f := newFixture(t, nil)
	f.set(t, f.identity(t, "default/web", webID, ownUID()), f.identity(t, "default/db", dbID, otherUID()))
	ctx := testContext(t)
	const aud = "spiffe://example.org/ns/default/api"

	src, err := workloadapi.NewJWTSource(ctx, workloadapi.WithClientOptions(workloadapi.WithAddr(f.addr)))
	if err != nil {
		t.Fatalf("NewJWTSource: %v", err)
	}
	t.Cleanup(func() { _ = src.Close() })

	svid, err := src.FetchJWTSVID(ctx, jwtsvid.Params{Audience: aud})
	if err != nil {
		t.Fatalf("FetchJWTSVID: %v", err)
	}
	if svid.ID != webID {
		t.Errorf("JWT-SVID for %s, want %s", svid.ID, webID)
	}
	if _, err := jwtsvid.ParseAndValidate(svid.Marshal(), src, []string{aud}); err != nil {
		t.Errorf("JWT-SVID does not validate against the served JWT bundle: %v", err)
	}

	again, err := src.FetchJWTSVID(ctx, jwtsvid.Params{Audience: aud})
	if err != nil {
		t.Fatal(err)
	}
	if again.Marshal() != svid.Marshal() {
		t.Error("second fetch minted a new token; want the cached one")
	}
	if n := f.minter.calls.Load(); n != 1 {
		t.Errorf("minter called %d times for two fetches, want 1", n)
	}

	// The agent validates too, for the audience the token carries only.
	got, err := workloadapi.ValidateJWTSVID(ctx, svid.Marshal(), aud, workloadapi.WithAddr(f.addr))
	if err != nil {
		t.Fatalf("ValidateJWTSVID: %v", err)
	}
	if got.ID != webID {
		t.Errorf("validated ID %s, want %s", got.ID, webID)
	}
	_, err = workloadapi.ValidateJWTSVID(ctx, svid.Marshal(), "spiffe://example.org/ns/default/other", workloadapi.WithAddr(f.addr))
	wantCode(t, err, codes.InvalidArgument)

	// Claims come back as a Struct.
	resp, err := f.client(t).ValidateJWTSVID(withHeader(ctx), &workload.ValidateJWTSVIDRequest{Audience: aud, Svid: svid.Marshal()})
	if err != nil {
		t.Fatal(err)
	}
	if resp.GetSpiffeId() != webID.String() || resp.GetClaims().GetFields()["team"].GetStringValue() != "payments" {
		t.Errorf("ValidateJWTSVID = %v", resp)
	}

	// A token signed by a key outside the bundle is refused.
	forged, err := newJWTSigner(t, f.jwt.kid).sign(webID, []string{aud}, time.Now().Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	_, err = workloadapi.ValidateJWTSVID(ctx, forged, aud, workloadapi.WithAddr(f.addr))
	wantCode(t, err, codes.InvalidArgument)
}

func TestFetchJWTSVIDRequests(t *testing.T) {
	f := newFixture(t, nil)
	f.set(t,
		f.identity(t, "default/web", webID, ownUID()),
		f.identity(t, "default/web-admin", adminID, ownUID()),
		f.identity(t, "default/db", dbID, otherUID()),
	)
	c := f.client(t)
	ctx := withHeader(testContext(t))

	tests := []struct {
		name     string
		req      *workload.JWTSVIDRequest
		wantCode codes.Code
		wantIDs  []string
	}{
		{"no audience", &workload.JWTSVIDRequest{}, codes.InvalidArgument, nil},
		{"empty audience", &workload.JWTSVIDRequest{Audience: []string{"a", ""}}, codes.InvalidArgument, nil},
		{"malformed SPIFFE ID", &workload.JWTSVIDRequest{Audience: []string{"a"}, SpiffeId: "web"}, codes.InvalidArgument, nil},
		{"someone else's SPIFFE ID", &workload.JWTSVIDRequest{Audience: []string{"a"}, SpiffeId: dbID.String()}, codes.PermissionDenied, nil},
		{"one of ours", &workload.JWTSVIDRequest{Audience: []string{"a"}, SpiffeId: adminID.String()}, codes.OK, []string{adminID.String()}},
		{"all of ours", &workload.JWTSVIDRequest{Audience: []string{"a"}}, codes.OK, []string{webID.String(), adminID.String()}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, err := c.FetchJWTSVID(ctx, tt.req)
			wantCode(t, err, tt.wantCode)
			var ids []string
			for _, s := range resp.GetSvids() {
				ids = append(ids, s.GetSpiffeId())
				if _, err := jwtsvid.ParseInsecure(s.GetSvid(), tt.req.GetAudience()); err != nil {
					t.Errorf("token for %s: %v", s.GetSpiffeId(), err)
				}
			}
			if diff := cmp.Diff(tt.wantIDs, ids); diff != "" {
				t.Errorf("SPIFFE IDs (-want +got):\n%s", diff)
			}
		})
	}

	t.Run("audience order does not matter", func(t *testing.T) {
		before := f.minter.calls.Load()
		a, err := c.FetchJWTSVID(ctx, &workload.JWTSVIDRequest{Audience: []string{"x", "y"}, SpiffeId: webID.String()})
		if err != nil {
			t.Fatal(err)
		}
		b, err := c.FetchJWTSVID(ctx, &workload.JWTSVIDRequest{Audience: []string{"y", "x", "x"}, SpiffeId: webID.String()})
		if err != nil {
			t.Fatal(err)
		}
		if a.GetSvids()[0].GetSvid() != b.GetSvids()[0].GetSvid() {
			t.Error("same audience set in another order minted a new token")
		}
		if n := f.minter.calls.Load() - before; n != 1 {
			t.Errorf("minter called %d times, want 1", n)
		}
	})

	t.Run("minter failure", func(t *testing.T) {
		f.minter.mu.Lock()
		f.minter.err = errors.New("server unreachable")
		f.minter.mu.Unlock()
		t.Cleanup(func() {
			f.minter.mu.Lock()
			f.minter.err = nil
			f.minter.mu.Unlock()
		})
		_, err := c.FetchJWTSVID(ctx, &workload.JWTSVIDRequest{Audience: []string{"fresh"}})
		wantCode(t, err, codes.Unavailable)
		if strings.Contains(err.Error(), "server unreachable") {
			t.Error("the minter's error crossed the API boundary")
		}
	})
}

func TestJWTSVIDCacheLifetime(t *testing.T) {
	f := newFixture(t, nil)
	web := f.identity(t, "default/web", webID, ownUID())
	web.JWTTTL = time.Hour
	f.set(t, web)
	c := f.client(t)
	ctx := withHeader(testContext(t))
	fetch := func() string {
		t.Helper()
		resp, err := c.FetchJWTSVID(ctx, &workload.JWTSVIDRequest{Audience: []string{"api"}})
		if err != nil {
			t.Fatal(err)
		}
		return resp.GetSvids()[0].GetSvid()
	}
	wantCalls := func(want int32) {
		t.Helper()
		if got := f.minter.calls.Load(); got != want {
			t.Errorf("minter called %d times, want %d", got, want)
		}
	}

	first := fetch()
	f.clock.Advance(29 * time.Minute)
	if fetch() != first {
		t.Error("token replaced before half its lifetime")
	}
	wantCalls(1)
	f.clock.Advance(2 * time.Minute)
	second := fetch()
	if second == first {
		t.Error("token served past half its lifetime")
	}
	wantCalls(2)

	// A new JWT authority: tokens signed with the old key are not reused.
	next := newJWTSigner(t, "jwt-key-2")
	f.minter.setSigner(next)
	f.setWith(t, bundle(t, []*testCA{f.ca}, f.jwt, next), web)
	fetch()
	wantCalls(3)
}

func TestJWTCacheIsBounded(t *testing.T) {
	c := newJWTCache(2)
	now := time.Now()
	key := func(s string) jwtCacheKey { return jwtCacheKey{spiffeID: s} }
	c.put(key("soon"), "t1", now.Add(time.Minute), now)
	c.put(key("late"), "t2", now.Add(time.Hour), now)
	c.put(key("new"), "t3", now.Add(time.Hour), now)
	if c.len() != 2 {
		t.Fatalf("cache holds %d entries, want 2", c.len())
	}
	if _, ok := c.get(key("soon"), now); ok {
		t.Error("the entry due soonest was kept")
	}
	for _, k := range []string{"late", "new"} {
		if _, ok := c.get(key(k), now); !ok {
			t.Errorf("entry %q was evicted", k)
		}
	}
	// Due entries go first.
	later := now.Add(2 * time.Hour)
	c.put(key("after"), "t4", later.Add(time.Hour), later)
	if c.len() != 1 {
		t.Errorf("cache holds %d entries after expiry, want 1", c.len())
	}
}

func TestUnaryBeforeFirstState(t *testing.T) {
	f := newFixture(t, nil)
	_, err := f.client(t).FetchJWTSVID(withHeader(testContext(t)), &workload.JWTSVIDRequest{Audience: []string{"a"}})
	wantCode(t, err, codes.Unavailable)
}

func TestStreamWaitsForFirstState(t *testing.T) {
	f := newFixture(t, nil)
	stream, err := f.client(t).FetchX509SVID(withHeader(testContext(t)), &workload.X509SVIDRequest{})
	if err != nil {
		t.Fatal(err)
	}
	f.set(t, f.identity(t, "default/web", webID, ownUID()))
	resp, err := stream.Recv()
	if err != nil {
		t.Fatalf("Recv: %v", err)
	}
	if len(resp.GetSvids()) != 1 {
		t.Errorf("got %d SVIDs, want 1", len(resp.GetSvids()))
	}
}

func TestSocket(t *testing.T) {
	dir, err := os.MkdirTemp("", "wl")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	sockDir := filepath.Join(dir, "run")
	f := newFixture(t, func(c *WorkloadAPIConfig) { c.SocketPath = filepath.Join(sockDir, "agent.sock") })

	fi, err := os.Lstat(f.socket)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Type() != os.ModeSocket || fi.Mode().Perm() != 0o777 {
		t.Errorf("socket mode %v, want a socket with 0777", fi.Mode())
	}
	di, err := os.Stat(sockDir)
	if err != nil {
		t.Fatal(err)
	}
	if di.Mode().Perm() != 0o755 {
		t.Errorf("socket directory mode %v, want 0755", di.Mode().Perm())
	}

	if err := f.api.Run(t.Context()); err == nil || !strings.Contains(err.Error(), "twice") {
		t.Errorf("second Run = %v, want an error", err)
	}
}

func TestRunReplacesOnlyStaleSockets(t *testing.T) {
	tests := []struct {
		name    string
		prepare func(t *testing.T, path string)
		wantErr string
	}{
		{
			name: "stale socket",
			prepare: func(t *testing.T, path string) {
				l, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
				if err != nil {
					t.Fatal(err)
				}
				l.SetUnlinkOnClose(false)
				if err := l.Close(); err != nil {
					t.Fatal(err)
				}
			},
		},
		{
			name: "regular file",
			prepare: func(t *testing.T, path string) {
				if err := os.WriteFile(path, []byte("keep me"), 0o600); err != nil {
					t.Fatal(err)
				}
			},
			wantErr: "is not a socket",
		},
		{
			name: "socket in use",
			prepare: func(t *testing.T, path string) {
				l, err := net.Listen("unix", path)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { _ = l.Close() })
			},
			wantErr: "another process is serving",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir, err := os.MkdirTemp("", "wl")
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = os.RemoveAll(dir) })
			path := filepath.Join(dir, "agent.sock")
			tt.prepare(t, path)

			if tt.wantErr == "" {
				f := newFixture(t, func(c *WorkloadAPIConfig) { c.SocketPath = path })
				f.set(t, f.identity(t, "default/web", webID, ownUID()))
				if _, err := workloadapi.FetchX509SVID(testContext(t), workloadapi.WithAddr(f.addr)); err != nil {
					t.Errorf("FetchX509SVID over the replaced socket: %v", err)
				}
				return
			}
			api, err := NewWorkloadAPI(WorkloadAPIConfig{SocketPath: path, State: NewStateHolder(), JWT: &fakeMinter{}})
			if err != nil {
				t.Fatal(err)
			}
			err = api.Run(t.Context())
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("Run = %v, want an error containing %q", err, tt.wantErr)
			}
			if _, err := os.Lstat(path); err != nil {
				t.Errorf("Run removed what was at the socket path: %v", err)
			}
		})
	}
}

func TestRunEndsStreamsOnCancel(t *testing.T) {
	dir, err := os.MkdirTemp("", "wl")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	holder := NewStateHolder()
	api, err := NewWorkloadAPI(WorkloadAPIConfig{SocketPath: filepath.Join(dir, "agent.sock"), State: holder, JWT: &fakeMinter{}})
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{ca: newTestCA(t), jwt: newJWTSigner(t, "k"), holder: holder, addr: "unix://" + filepath.Join(dir, "agent.sock")}
	f.set(t, f.identity(t, "default/web", webID, ownUID()))

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ran := make(chan error, 1)
	go func() { ran <- api.Run(ctx) }()
	<-api.ready

	stream, err := f.client(t).FetchX509SVID(withHeader(testContext(t)), &workload.X509SVIDRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); err != nil {
		t.Fatal(err)
	}

	cancel()
	cancelled := time.Now()
	_, err = stream.Recv()
	wantCode(t, err, codes.Unavailable)
	select {
	case err := <-ran:
		if err != nil {
			t.Errorf("Run = %v, want nil", err)
		}
		// Ended streams let the graceful stop finish at once; only an RPC
		// still running would hold it for the whole grace period.
		if waited := time.Since(cancelled); waited >= shutdownGrace {
			t.Errorf("Run took %s to stop, want the open stream ended at once", waited)
		}
	case <-time.After(waitTimeout):
		t.Fatal("Run did not return")
	}
	checkNoHandlers(t)
	if _, err := os.Lstat(filepath.Join(dir, "agent.sock")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket not removed: %v", err)
	}
}

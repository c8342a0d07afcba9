package ca

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"errors"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/jwtsvid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

var testTD = spiffeid.RequireTrustDomainFromString("example.org")

// fakeClock is an injected clock. It starts at the real current time
// (rounded down to the second, the precision of certificates) because
// jwtsvid.ParseAndValidate checks exp and iat against the real clock.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *fakeClock {
	return &fakeClock{t: time.Now().Truncate(time.Second)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func (c *fakeClock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = t
}

// testConfig returns a config for a CA in dir with clock.
func testConfig(dir string, clock *fakeClock) Config {
	return Config{TrustDomain: testTD, Dir: dir, Now: clock.Now}
}

func mustNew(t testing.TB, cfg Config) *CA {
	t.Helper()
	c, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return c
}

func mustKey(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return key
}

func mustID(t testing.TB, path string) spiffeid.ID {
	t.Helper()
	id, err := spiffeid.FromPath(testTD, path)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// signLeaf signs an X.509-SVID for /workload with ttl.
func signLeaf(t testing.TB, c *CA, ttl time.Duration) ([]*x509.Certificate, string) {
	t.Helper()
	chain, authorityID, err := c.SignX509SVID(X509Params{ID: mustID(t, "/workload"), PublicKey: mustKey(t).Public(), TTL: ttl})
	if err != nil {
		t.Fatalf("SignX509SVID: %v", err)
	}
	return chain, authorityID
}

func signJWT(t testing.TB, c *CA, ttl time.Duration) (string, string) {
	t.Helper()
	token, _, authorityID, err := c.SignJWTSVID(mustID(t, "/workload"), []string{"aud"}, ttl)
	if err != nil {
		t.Fatalf("SignJWTSVID: %v", err)
	}
	return token, authorityID
}

func readTestMetadata(t *testing.T, dir string) *metadata {
	t.Helper()
	md, _, err := readMetadata(t.Context(), newDirStorage(dir))
	if err != nil || md == nil {
		t.Fatalf("readMetadata: %v, %v", md, err)
	}
	return md
}

func exists(t *testing.T, path string) bool {
	t.Helper()
	_, err := os.Stat(path)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		t.Fatal(err)
	}
	return err == nil
}

func states(infos []AuthorityInfo) []AuthorityState {
	var s []AuthorityState
	for _, i := range infos {
		s = append(s, i.State)
	}
	return s
}

func TestNewCreatesFiles(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ca")
	c := mustNew(t, testConfig(dir, newClock()))

	fi, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got := fi.Mode().Perm(); got != 0o700 {
		t.Errorf("dir mode = %04o, want 0700", got)
	}
	id := c.Authorities()[0].ID
	tests := []struct {
		name string
		mode fs.FileMode
	}{
		{metadataFile, 0o600},
		{id + ".crt.pem", 0o644},
		{id + ".key.pem", 0o600},
		{id + ".jwt.key.pem", 0o600},
		{"admin-ca.crt.pem", 0o644},
		{"admin-ca.key.pem", 0o600},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fi, err := os.Stat(filepath.Join(dir, tt.name))
			if err != nil {
				t.Fatal(err)
			}
			if got := fi.Mode().Perm(); got != tt.mode {
				t.Errorf("mode = %04o, want %04o", got, tt.mode)
			}
		})
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != len(tests) {
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		t.Errorf("dir holds %v, want exactly the %d files above", names, len(tests))
	}
	md, err := os.ReadFile(filepath.Join(dir, metadataFile))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(md), "-----BEGIN") || strings.Contains(string(md), "PRIVATE") {
		t.Errorf("%s holds PEM data:\n%s", metadataFile, md)
	}
}

func TestNewFirstStart(t *testing.T) {
	clock := newClock()
	c := mustNew(t, testConfig(t.TempDir(), clock))
	now := clock.Now()

	infos := c.Authorities()
	if len(infos) != 1 {
		t.Fatalf("got %d authorities, want 1", len(infos))
	}
	a := infos[0]
	want := AuthorityInfo{
		ID:          a.ID,
		State:       StateActive,
		CertSubject: "CN=trustmesh CA " + a.ID + ",O=trustmesh",
		NotBefore:   now.Add(-30 * time.Second),
		NotAfter:    now.Add(10 * 365 * 24 * time.Hour),
		CreatedAt:   now,
		ActivatedAt: now,
		JWTKeyID:    a.JWTKeyID,
	}
	if diff := cmp.Diff(want, a); diff != "" {
		t.Errorf("authority (-want +got):\n%s", diff)
	}

	b := c.Bundle()
	roots := b.X509Authorities()
	if len(roots) != 1 {
		t.Fatalf("bundle has %d X.509 authorities, want 1", len(roots))
	}
	root := roots[0]
	switch {
	case !root.IsCA:
		t.Error("root is not a CA")
	case root.KeyUsage != x509.KeyUsageCertSign|x509.KeyUsageCRLSign:
		t.Errorf("root key usage = %v, want certSign|crlSign", root.KeyUsage)
	case root.MaxPathLen != 0 || !root.MaxPathLenZero:
		t.Errorf("root MaxPathLen = %d (zero %v), want 0", root.MaxPathLen, root.MaxPathLenZero)
	case len(root.URIs) != 1 || root.URIs[0].String() != "spiffe://example.org":
		t.Errorf("root URIs = %v, want [spiffe://example.org]", root.URIs)
	case len(root.SubjectKeyId) == 0:
		t.Error("root has no SubjectKeyId")
	}
	if _, ok := root.PublicKey.(*ecdsa.PublicKey); !ok {
		t.Errorf("root key is %T, want ECDSA", root.PublicKey)
	}
	if len(b.JWTAuthorities()) != 1 {
		t.Errorf("bundle has %d JWT authorities, want 1", len(b.JWTAuthorities()))
	}
	if _, ok := b.FindJWTAuthority(a.JWTKeyID); !ok {
		t.Errorf("bundle lacks JWT authority %q", a.JWTKeyID)
	}
	if seq, ok := b.SequenceNumber(); !ok || seq != 1 {
		t.Errorf("sequence number = %d, %v; want 1, true", seq, ok)
	}
	if hint, ok := b.RefreshHint(); !ok || hint <= 0 {
		t.Errorf("refresh hint = %s, %v; want a positive hint", hint, ok)
	}
	if got, want := string(c.BundlePEM()), string(encodeCertPEM(root)); got != want {
		t.Errorf("BundlePEM = %q, want %q", got, want)
	}
	if got := c.TrustDomain(); got != testTD {
		t.Errorf("TrustDomain = %s, want %s", got, testTD)
	}
	if _, ok := c.PreparedSince(); ok {
		t.Error("PreparedSince reports a prepared authority on first start")
	}
}

func TestBundleIsACopy(t *testing.T) {
	c := mustNew(t, testConfig(t.TempDir(), newClock()))
	b := c.Bundle()
	b.SetX509Authorities(nil)
	b.SetSequenceNumber(99)
	if got := len(c.Bundle().X509Authorities()); got != 1 {
		t.Errorf("after modifying a returned bundle, CA bundle has %d X.509 authorities, want 1", got)
	}
	p := c.BundlePEM()
	p[0] = 'X'
	if c.BundlePEM()[0] == 'X' {
		t.Error("BundlePEM returns the CA's own slice")
	}
}

func TestNewConfigErrors(t *testing.T) {
	tests := []struct {
		name    string
		cfg     func(dir string) Config
		wantErr string
	}{
		{
			name:    "no trust domain",
			cfg:     func(dir string) Config { return Config{Dir: dir} },
			wantErr: "trust domain is required",
		},
		{
			name:    "no dir",
			cfg:     func(string) Config { return Config{TrustDomain: testTD} },
			wantErr: "directory is required",
		},
		{
			name:    "negative max TTL",
			cfg:     func(dir string) Config { return Config{TrustDomain: testTD, Dir: dir, MaxSVIDTTL: -time.Hour} },
			wantErr: "negative",
		},
		{
			name:    "max TTL below a minute",
			cfg:     func(dir string) Config { return Config{TrustDomain: testTD, Dir: dir, MaxSVIDTTL: 30 * time.Second} },
			wantErr: "below the minimum",
		},
		{
			name: "upstream cert without key",
			cfg: func(dir string) Config {
				return Config{TrustDomain: testTD, Dir: dir, UpstreamCertFile: "/nonexistent/up.crt"}
			},
			wantErr: "set both or neither",
		},
		{
			name: "upstream key without cert",
			cfg: func(dir string) Config {
				return Config{TrustDomain: testTD, Dir: dir, UpstreamKeyFile: "/nonexistent/up.key"}
			},
			wantErr: "set both or neither",
		},
		{
			name: "upstream files missing",
			cfg: func(dir string) Config {
				return Config{TrustDomain: testTD, Dir: dir, UpstreamCertFile: "/nonexistent/up.crt", UpstreamKeyFile: "/nonexistent/up.key"}
			},
			wantErr: "read upstream certificate",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "ca")
			_, err := New(tt.cfg(dir))
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("New: got error %v, want one containing %q", err, tt.wantErr)
			}
			if exists(t, dir) {
				t.Errorf("New wrote %s despite a config error", dir)
			}
		})
	}
}

func TestNewDirErrors(t *testing.T) {
	tests := []struct {
		name    string
		setup   func(t *testing.T, dir string) // runs after a first successful New
		cfg     func(cfg Config) Config
		wantErr string
	}{
		{
			name:    "dir writable by others",
			setup:   func(t *testing.T, dir string) { chmod(t, dir, 0o777) },
			wantErr: "group or others can write to it",
		},
		{
			name:    "dir writable by group",
			setup:   func(t *testing.T, dir string) { chmod(t, dir, 0o770) },
			wantErr: "group or others can write to it",
		},
		{
			name: "key file readable by others",
			setup: func(t *testing.T, dir string) {
				matches, _ := filepath.Glob(filepath.Join(dir, "*.jwt.key.pem"))
				chmod(t, matches[0], 0o644)
			},
			wantErr: "want 0600",
		},
		{
			name:    "admin key file readable by others",
			setup:   func(t *testing.T, dir string) { chmod(t, filepath.Join(dir, adminKeyFile), 0o640) },
			wantErr: "want 0600",
		},
		{
			name: "other trust domain",
			cfg: func(cfg Config) Config {
				cfg.TrustDomain = spiffeid.RequireTrustDomainFromString("other.org")
				return cfg
			},
			wantErr: `created for trust domain "example.org"`,
		},
		{
			name: "corrupt metadata",
			setup: func(t *testing.T, dir string) {
				writeTestFile(t, filepath.Join(dir, metadataFile), []byte("{"), 0o600)
			},
			wantErr: "parse authorities.json",
		},
		{
			name: "authority file missing",
			setup: func(t *testing.T, dir string) {
				matches, _ := filepath.Glob(filepath.Join(dir, "*.crt.pem"))
				for _, m := range matches {
					if filepath.Base(m) != adminCertFile {
						if err := os.Remove(m); err != nil {
							t.Fatal(err)
						}
					}
				}
			},
			wantErr: "no such file",
		},
		{
			name: "key swapped",
			setup: func(t *testing.T, dir string) {
				// The admin key is a valid key, but not this authority's.
				matches, _ := filepath.Glob(filepath.Join(dir, "*[0-9a-f].key.pem"))
				b, err := os.ReadFile(filepath.Join(dir, adminKeyFile))
				if err != nil {
					t.Fatal(err)
				}
				for _, m := range matches {
					if !strings.HasSuffix(m, ".jwt.key.pem") && filepath.Base(m) != adminKeyFile {
						writeTestFile(t, m, b, 0o600)
					}
				}
			},
			wantErr: "key does not match the certificate",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "ca")
			cfg := testConfig(dir, newClock())
			mustNew(t, cfg)
			if tt.setup != nil {
				tt.setup(t, dir)
			}
			if tt.cfg != nil {
				cfg = tt.cfg(cfg)
			}
			_, err := New(cfg)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("New: got error %v, want one containing %q", err, tt.wantErr)
			}
		})
	}
}

func chmod(t *testing.T, path string, mode fs.FileMode) {
	t.Helper()
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
}

func writeTestFile(t *testing.T, path string, data []byte, mode fs.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, data, mode); err != nil {
		t.Fatal(err)
	}
}

func TestRestartKeepsState(t *testing.T) {
	dir := t.TempDir()
	clock := newClock()
	c1 := mustNew(t, testConfig(dir, clock))
	leaf, id1 := signLeaf(t, c1, time.Hour)
	token, _ := signJWT(t, c1, time.Hour)

	clock.Add(time.Minute)
	c2 := mustNew(t, testConfig(dir, clock))
	if diff := cmp.Diff(c1.Authorities(), c2.Authorities()); diff != "" {
		t.Errorf("authorities after restart (-before +after):\n%s", diff)
	}
	if !c1.Bundle().Equal(c2.Bundle()) {
		t.Error("bundle changed across restart")
	}
	if !c1.AdminCACert().Equal(c2.AdminCACert()) {
		t.Error("admin CA changed across restart")
	}
	if _, _, err := x509svid.Verify(leaf, c2.Bundle(), x509svid.WithTime(clock.Now())); err != nil {
		t.Errorf("leaf from before restart does not verify: %v", err)
	}
	if _, err := jwtsvid.ParseAndValidate(token, c2.Bundle(), []string{"aud"}); err != nil {
		t.Errorf("JWT from before restart does not validate: %v", err)
	}
	// Same key: what c2 signs verifies against c1's bundle.
	leaf2, id2 := signLeaf(t, c2, time.Hour)
	if id2 != id1 {
		t.Errorf("signing authority after restart = %s, want %s", id2, id1)
	}
	if _, _, err := x509svid.Verify(leaf2, c1.Bundle(), x509svid.WithTime(clock.Now())); err != nil {
		t.Errorf("leaf from after restart does not verify against the old bundle: %v", err)
	}
	if !c1.active.key.Equal(c2.active.key) || !c1.active.jwtKey.Equal(c2.active.jwtKey) {
		t.Error("keys changed across restart")
	}
}

func TestNewTightensReadableDir(t *testing.T) {
	dir := t.TempDir()
	chmod(t, dir, 0o755)
	mustNew(t, testConfig(dir, newClock()))
	fi, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got := fi.Mode().Perm(); got != 0o700 {
		t.Errorf("dir mode = %04o, want 0700", got)
	}
}

func TestRemovesTempFiles(t *testing.T) {
	dir := t.TempDir()
	mustNew(t, testConfig(dir, newClock()))
	tmp := filepath.Join(dir, ".tmp-123")
	writeTestFile(t, tmp, []byte("secret"), 0o600)
	mustNew(t, testConfig(dir, newClock()))
	if exists(t, tmp) {
		t.Errorf("%s survived a restart", tmp)
	}
}

func TestRotation(t *testing.T) {
	dir := t.TempDir()
	clock := newClock()
	t0 := clock.Now()
	c := mustNew(t, testConfig(dir, clock))
	oldID := c.Authorities()[0].ID

	// Before rotation: the reservation covers this leaf.
	oldLeaf, id := signLeaf(t, c, time.Hour)
	if id != oldID {
		t.Fatalf("signed by %s, want %s", id, oldID)
	}
	oldToken, _ := signJWT(t, c, time.Hour)

	if _, err := c.Activate(); !errors.Is(err, ErrNotPrepared) {
		t.Errorf("Activate with nothing prepared: got %v, want ErrNotPrepared", err)
	}

	// Step 1: prepare.
	clock.Add(10 * time.Second)
	prepared, err := c.Prepare()
	if err != nil {
		t.Fatalf("Prepare: %v", err)
	}
	newID := prepared.ID
	if prepared.State != StatePrepared || !prepared.CreatedAt.Equal(clock.Now()) {
		t.Errorf("prepared = %+v, want state prepared created now", prepared)
	}
	if since, ok := c.PreparedSince(); !ok || !since.Equal(clock.Now()) {
		t.Errorf("PreparedSince = %s, %v; want %s, true", since, ok, clock.Now())
	}
	if _, err := c.Prepare(); !errors.Is(err, ErrAlreadyPrepared) {
		t.Errorf("second Prepare: got %v, want ErrAlreadyPrepared", err)
	}
	b := c.Bundle()
	if got := len(b.X509Authorities()); got != 2 {
		t.Errorf("bundle has %d X.509 authorities after Prepare, want 2", got)
	}
	if got := len(b.JWTAuthorities()); got != 2 {
		t.Errorf("bundle has %d JWT authorities after Prepare, want 2", got)
	}
	if seq, _ := b.SequenceNumber(); seq != 2 {
		t.Errorf("sequence number after Prepare = %d, want 2", seq)
	}
	if _, id := signLeaf(t, c, time.Hour); id != oldID {
		t.Errorf("after Prepare, leaf signed by %s, want the old authority %s", id, oldID)
	}
	if _, id := signJWT(t, c, time.Hour); id != oldID {
		t.Errorf("after Prepare, JWT signed by %s, want the old authority %s", id, oldID)
	}

	// Step 2: activate.
	clock.Add(10 * time.Second)
	activated, err := c.Activate()
	if err != nil {
		t.Fatalf("Activate: %v", err)
	}
	if activated.ID != newID || activated.State != StateActive || !activated.ActivatedAt.Equal(clock.Now()) {
		t.Errorf("activated = %+v, want %s active since now", activated, newID)
	}
	if _, ok := c.PreparedSince(); ok {
		t.Error("PreparedSince reports a prepared authority after Activate")
	}
	if seq, _ := c.Bundle().SequenceNumber(); seq != 2 {
		t.Errorf("sequence number after Activate = %d, want 2 (bundle unchanged)", seq)
	}
	newLeaf, id := signLeaf(t, c, time.Hour)
	if id != newID {
		t.Errorf("after Activate, leaf signed by %s, want %s", id, newID)
	}
	newToken, id := signJWT(t, c, time.Hour)
	if id != newID {
		t.Errorf("after Activate, JWT signed by %s, want %s", id, newID)
	}
	for name, leaf := range map[string][]*x509.Certificate{"old": oldLeaf, "new": newLeaf} {
		if _, _, err := x509svid.Verify(leaf, c.Bundle(), x509svid.WithTime(clock.Now())); err != nil {
			t.Errorf("%s leaf does not verify after Activate: %v", name, err)
		}
	}
	for name, token := range map[string]string{"old": oldToken, "new": newToken} {
		if _, err := jwtsvid.ParseAndValidate(token, c.Bundle(), []string{"aud"}); err != nil {
			t.Errorf("%s JWT does not validate after Activate: %v", name, err)
		}
	}
	infos := c.Authorities()
	if diff := cmp.Diff([]AuthorityState{StateRetired, StateActive}, states(infos)); diff != "" {
		t.Fatalf("states (-want +got):\n%s", diff)
	}
	// The first leaf (t0+1h) bumped the reservation to t0+1h+10m; nothing
	// signed later by the old authority went past it.
	wantRemoveAfter := t0.Add(time.Hour + reservationSlack)
	if got := infos[0].RemoveAfter; !got.Equal(wantRemoveAfter) {
		t.Errorf("RemoveAfter = %s, want %s", got, wantRemoveAfter)
	}
	if !infos[0].RemoveAfter.After(oldLeaf[0].NotAfter) {
		t.Errorf("RemoveAfter %s is not after the old leaf's NotAfter %s", infos[0].RemoveAfter, oldLeaf[0].NotAfter)
	}
	if !infos[0].RetiredAt.Equal(clock.Now()) {
		t.Errorf("RetiredAt = %s, want %s", infos[0].RetiredAt, clock.Now())
	}

	// Tidy: too early, then just in time.
	tidySteps := []struct {
		name        string
		at          time.Time
		wantChanged bool
		wantStates  []AuthorityState
	}{
		{"before RemoveAfter", wantRemoveAfter.Add(-time.Second), false, []AuthorityState{StateRetired, StateActive}},
		{"at RemoveAfter", wantRemoveAfter, true, []AuthorityState{StateActive}},
		{"nothing left to remove", wantRemoveAfter.Add(time.Hour), false, []AuthorityState{StateActive}},
	}
	for _, step := range tidySteps {
		clock.Set(step.at)
		changed, err := c.Tidy()
		if err != nil || changed != step.wantChanged {
			t.Errorf("%s: Tidy = %v, %v; want %v, nil", step.name, changed, err, step.wantChanged)
		}
		if diff := cmp.Diff(step.wantStates, states(c.Authorities())); diff != "" {
			t.Errorf("%s: states (-want +got):\n%s", step.name, diff)
		}
		oldFilesExist := exists(t, filepath.Join(dir, certFileName(oldID))) || exists(t, filepath.Join(dir, keyFileName(oldID))) || exists(t, filepath.Join(dir, jwtKeyFileName(oldID)))
		if wantFiles := len(step.wantStates) == 2; oldFilesExist != wantFiles {
			t.Errorf("%s: old authority files exist = %v, want %v", step.name, oldFilesExist, wantFiles)
		}
	}
	b = c.Bundle()
	if got := len(b.X509Authorities()); got != 1 || !b.X509Authorities()[0].Equal(newLeafIssuer(t, c)) {
		t.Errorf("bundle has %d X.509 authorities after Tidy, want only the new one", got)
	}
	if got := len(b.JWTAuthorities()); got != 1 {
		t.Errorf("bundle has %d JWT authorities after Tidy, want 1", got)
	}
	if seq, _ := b.SequenceNumber(); seq != 3 {
		t.Errorf("sequence number after Tidy = %d, want 3", seq)
	}
	if _, _, err := x509svid.Verify(oldLeaf, b, x509svid.WithTime(t0.Add(time.Minute))); err == nil {
		t.Error("old leaf still verifies after its authority was removed")
	}
	// The removal is persisted.
	c2 := mustNew(t, testConfig(dir, clock))
	if diff := cmp.Diff(c.Authorities(), c2.Authorities()); diff != "" {
		t.Errorf("authorities after restart (-before +after):\n%s", diff)
	}
}

// newLeafIssuer returns the CA certificate of the active authority.
func newLeafIssuer(t *testing.T, c *CA) *x509.Certificate {
	t.Helper()
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.active.cert
}

func TestRotationUnusedAuthority(t *testing.T) {
	// An authority that never signed anything may leave the bundle at once.
	clock := newClock()
	c := mustNew(t, testConfig(t.TempDir(), clock))
	if _, err := c.Prepare(); err != nil {
		t.Fatal(err)
	}
	clock.Add(time.Minute)
	if _, err := c.Activate(); err != nil {
		t.Fatal(err)
	}
	if got := c.Authorities()[0].RemoveAfter; !got.Equal(clock.Now()) {
		t.Errorf("RemoveAfter = %s, want now (%s)", got, clock.Now())
	}
	if changed, err := c.Tidy(); !changed || err != nil {
		t.Errorf("Tidy = %v, %v; want true, nil", changed, err)
	}
}

func TestRestartMidRotation(t *testing.T) {
	dir := t.TempDir()
	clock := newClock()
	c := mustNew(t, testConfig(dir, clock))
	oldLeaf, oldID := signLeaf(t, c, 2*time.Hour)
	clock.Add(time.Minute)
	prepared, err := c.Prepare()
	if err != nil {
		t.Fatal(err)
	}

	restart := func(t *testing.T, before *CA) *CA {
		t.Helper()
		after := mustNew(t, testConfig(dir, clock))
		if diff := cmp.Diff(before.Authorities(), after.Authorities()); diff != "" {
			t.Errorf("authorities after restart (-before +after):\n%s", diff)
		}
		if !before.Bundle().Equal(after.Bundle()) {
			t.Error("bundle changed across restart")
		}
		return after
	}

	c = restart(t, c)
	if since, ok := c.PreparedSince(); !ok || !since.Equal(prepared.CreatedAt) {
		t.Errorf("PreparedSince after restart = %s, %v; want %s, true", since, ok, prepared.CreatedAt)
	}
	if _, id := signLeaf(t, c, time.Hour); id != oldID {
		t.Errorf("after restart with a prepared authority, leaf signed by %s, want %s", id, oldID)
	}

	clock.Add(time.Minute)
	if _, err := c.Activate(); err != nil {
		t.Fatal(err)
	}
	c = restart(t, c)
	if _, id := signLeaf(t, c, time.Hour); id != prepared.ID {
		t.Errorf("after restart, leaf signed by %s, want the activated %s", id, prepared.ID)
	}
	if ra := c.Authorities()[0].RemoveAfter; ra.Before(oldLeaf[0].NotAfter) {
		t.Errorf("RemoveAfter %s is before the old leaf's NotAfter %s", ra, oldLeaf[0].NotAfter)
	}
	if _, _, err := x509svid.Verify(oldLeaf, c.Bundle(), x509svid.WithTime(clock.Now())); err != nil {
		t.Errorf("old leaf does not verify after restart: %v", err)
	}
}

func TestReservation(t *testing.T) {
	dir := t.TempDir()
	clock := newClock()
	t0 := clock.Now()
	c := mustNew(t, testConfig(dir, clock))
	caNotAfter := c.Authorities()[0].NotAfter

	steps := []struct {
		name         string
		at           time.Time
		ttl          time.Duration
		jwt          bool
		wantReserved time.Time
		wantWrite    bool
	}{
		{"first leaf reserves NotAfter+10m", t0, time.Hour, false, t0.Add(70 * time.Minute), true},
		{"within the slack: no write", t0.Add(9 * time.Minute), time.Hour, false, t0.Add(70 * time.Minute), false},
		{"shorter TTL later: no write", t0.Add(30 * time.Minute), time.Minute, false, t0.Add(70 * time.Minute), false},
		{"past the slack: bump", t0.Add(11 * time.Minute), time.Hour, false, t0.Add(81 * time.Minute), true},
		{"JWT bumps too", t0.Add(30 * time.Minute), time.Hour, true, t0.Add(100 * time.Minute), true},
		{"capped at the CA NotAfter", caNotAfter.Add(-time.Hour), 24 * time.Hour, false, caNotAfter, true},
	}
	for _, step := range steps {
		clock.Set(step.at)
		before, err := os.ReadFile(filepath.Join(dir, metadataFile))
		if err != nil {
			t.Fatal(err)
		}
		var notAfter time.Time
		if step.jwt {
			_, notAfter, _, err = c.SignJWTSVID(mustID(t, "/w"), []string{"aud"}, step.ttl)
		} else {
			var chain []*x509.Certificate
			chain, _, err = c.SignX509SVID(X509Params{ID: mustID(t, "/w"), PublicKey: mustKey(t).Public(), TTL: step.ttl})
			if err == nil {
				notAfter = chain[0].NotAfter
			}
		}
		if err != nil {
			t.Fatalf("%s: sign: %v", step.name, err)
		}
		md := readTestMetadata(t, dir)
		got := md.Authorities[0].ReservedNotAfter
		if !got.Equal(step.wantReserved) {
			t.Errorf("%s: persisted reservation = %s, want %s", step.name, got, step.wantReserved)
		}
		if got.Before(notAfter) {
			t.Errorf("%s: persisted reservation %s is before the SVID's NotAfter %s", step.name, got, notAfter)
		}
		after, err := os.ReadFile(filepath.Join(dir, metadataFile))
		if err != nil {
			t.Fatal(err)
		}
		if wrote := string(before) != string(after); wrote != step.wantWrite {
			t.Errorf("%s: %s rewritten = %v, want %v", step.name, metadataFile, wrote, step.wantWrite)
		}
	}
}

func TestReservationWriteFailure(t *testing.T) {
	dir := t.TempDir()
	c := mustNew(t, testConfig(dir, newClock()))
	// A directory in place of authorities.json makes the atomic rename fail,
	// even for root.
	md := filepath.Join(dir, metadataFile)
	if err := os.Remove(md); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(md, 0o700); err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.SignX509SVID(X509Params{ID: mustID(t, "/w"), PublicKey: mustKey(t).Public(), TTL: time.Hour}); err == nil {
		t.Error("X.509 signing succeeded although the reservation could not be persisted")
	}
	if _, _, _, err := c.SignJWTSVID(mustID(t, "/w"), []string{"aud"}, time.Hour); err == nil {
		t.Error("JWT signing succeeded although the reservation could not be persisted")
	}
	if got := c.Authorities()[0]; !c.active.meta.ReservedNotAfter.IsZero() {
		t.Errorf("in-memory reservation of %s = %s after a failed write, want zero", got.ID, c.active.meta.ReservedNotAfter)
	}
	matches, _ := filepath.Glob(filepath.Join(dir, ".tmp-*"))
	if len(matches) != 0 {
		t.Errorf("failed writes left temporary files %v", matches)
	}
}

func TestMetadataJSON(t *testing.T) {
	// authorities.json is read by operators too: keep its shape stable.
	dir := t.TempDir()
	clock := newClock()
	c := mustNew(t, testConfig(dir, clock))
	signLeaf(t, c, time.Hour)
	b, err := os.ReadFile(filepath.Join(dir, metadataFile))
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	auth := got["authorities"].([]any)[0].(map[string]any)
	var keys []string
	for k := range auth {
		keys = append(keys, k)
	}
	want := []string{"activatedAt", "createdAt", "id", "jwtKeyID", "reservedNotAfter", "state"}
	slices.Sort(keys)
	if diff := cmp.Diff(want, keys); diff != "" {
		t.Errorf("authority keys (-want +got):\n%s", diff)
	}
	if got["trustDomain"] != "example.org" || got["mode"] != "self-signed" || got["version"] != 1.0 {
		t.Errorf("header = %v, want trust domain, mode and version", got)
	}
}

func TestLogEvents(t *testing.T) {
	var buf bytes.Buffer
	dir := filepath.Join(t.TempDir(), "ca")
	clock := newClock()
	cfg := testConfig(dir, clock)
	cfg.Logger = slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))

	c := mustNew(t, cfg)
	oldID := c.Authorities()[0].ID
	signLeaf(t, c, time.Hour)
	prepared, err := c.Prepare()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Activate(); err != nil {
		t.Fatal(err)
	}
	clock.Add(2 * time.Hour)
	if _, err := c.Tidy(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.SignAdmin(mustKey(t).Public(), "alice", "admin", time.Hour); err != nil {
		t.Fatal(err)
	}
	orphan := filepath.Join(dir, strings.Repeat("ab", 20)+".key.pem")
	writeTestFile(t, orphan, []byte("stray"), 0o600)
	mustNew(t, cfg)

	type record map[string]any
	var records []record
	for line := range strings.Lines(buf.String()) {
		var r record
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		if r["component"] != "ca" {
			t.Errorf("log record without component=ca: %v", r)
		}
		records = append(records, r)
	}
	want := []record{
		{"msg": "admin CA created"},
		{"msg": "CA created", "authority_id": oldID, "mode": "self-signed"},
		{"msg": "authority reservation extended", "authority_id": oldID},
		{"msg": "authority prepared", "authority_id": prepared.ID, "jwt_key_id": prepared.JWTKeyID},
		{"msg": "authority activated", "authority_id": prepared.ID, "previous_authority_id": oldID},
		{"msg": "authority removed", "authority_id": oldID},
		{"msg": "admin certificate issued", "admin_name": "alice", "role": "admin"},
		{"msg": "CA loaded", "authority_id": prepared.ID},
		{"msg": "file of an unknown authority in the CA directory", "path": orphan},
	}
	if len(records) != len(want) {
		t.Fatalf("got %d log records, want %d:\n%s", len(records), len(want), buf.String())
	}
	for i, w := range want {
		for k, v := range w {
			if records[i][k] != v {
				t.Errorf("record %d %q: %s = %v, want %v", i, records[i]["msg"], k, records[i][k], v)
			}
		}
	}
	if strings.Contains(buf.String(), "PRIVATE") || strings.Contains(buf.String(), "-----BEGIN") {
		t.Errorf("logs hold PEM data:\n%s", buf.String())
	}
}

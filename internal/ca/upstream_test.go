package ca

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/svid/jwtsvid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

// testPKI is a throwaway upstream PKI.
type testPKI struct {
	root       *x509.Certificate
	chain      []*x509.Certificate // written to the cert file, signing cert first
	signingKey crypto.Signer
	certFile   string
	keyFile    string
}

// caOpts shapes one test CA certificate.
type caOpts struct {
	name        string
	notBefore   time.Time
	notAfter    time.Time
	notCA       bool
	pathLenZero bool // MaxPathLen 0; otherwise unlimited
	excludeURI  string
}

func newTestCACert(t *testing.T, o caOpts, pub crypto.PublicKey, parent *x509.Certificate, parentKey crypto.Signer) *x509.Certificate {
	t.Helper()
	serial, err := randomSerial()
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: o.name},
		NotBefore:             o.notBefore,
		NotAfter:              o.notAfter,
		IsCA:                  !o.notCA,
		BasicConstraintsValid: true,
		MaxPathLen:            -1,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
	}
	if o.pathLenZero {
		tmpl.MaxPathLen, tmpl.MaxPathLenZero = 0, true
	}
	if o.excludeURI != "" {
		tmpl.ExcludedURIDomains = []string{o.excludeURI}
	}
	if parent == nil {
		parent = tmpl
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, parentKey)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

type pkiOpts struct {
	keyType      string // "ecdsa" (PKCS#8), "ec-sec1", "rsa" (PKCS#1), "ed25519"
	intermediate bool   // chain file holds an upstream intermediate + root
	rootNotAfter time.Time
	signer       caOpts // overrides for the signing certificate
}

func newTestPKI(t *testing.T, now time.Time, o pkiOpts) *testPKI {
	t.Helper()
	dir := t.TempDir()
	newKey := func() crypto.Signer {
		switch o.keyType {
		case "rsa":
			k, err := rsa.GenerateKey(rand.Reader, 2048)
			if err != nil {
				t.Fatal(err)
			}
			return k
		case "ed25519":
			_, k, err := ed25519.GenerateKey(rand.Reader)
			if err != nil {
				t.Fatal(err)
			}
			return k
		default:
			return mustKey(t)
		}
	}
	rootNotAfter := o.rootNotAfter
	if rootNotAfter.IsZero() {
		rootNotAfter = now.Add(365 * 24 * time.Hour)
	}
	signerOpts := o.signer
	if signerOpts.notBefore.IsZero() {
		signerOpts.notBefore = now.Add(-time.Hour)
	}
	if signerOpts.notAfter.IsZero() {
		signerOpts.notAfter = rootNotAfter
	}

	pki := &testPKI{certFile: filepath.Join(dir, "upstream.crt.pem"), keyFile: filepath.Join(dir, "upstream.key.pem")}
	if o.intermediate {
		rootKey := mustKey(t)
		pki.root = newTestCACert(t, caOpts{name: "test root", notBefore: now.Add(-time.Hour), notAfter: rootNotAfter}, rootKey.Public(), nil, rootKey)
		pki.signingKey = newKey()
		signerOpts.name = "test upstream intermediate"
		inter := newTestCACert(t, signerOpts, pki.signingKey.Public(), pki.root, rootKey)
		pki.chain = []*x509.Certificate{inter, pki.root}
	} else {
		pki.signingKey = newKey()
		signerOpts.name = "test root"
		pki.root = newTestCACert(t, signerOpts, pki.signingKey.Public(), nil, pki.signingKey)
		pki.chain = []*x509.Certificate{pki.root}
	}
	writeTestFile(t, pki.certFile, encodeCertPEM(pki.chain...), 0o644)
	var block *pem.Block
	switch k := pki.signingKey.(type) {
	case *rsa.PrivateKey:
		block = &pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(k)}
	case *ecdsa.PrivateKey:
		if o.keyType == "ec-sec1" {
			der, err := x509.MarshalECPrivateKey(k)
			if err != nil {
				t.Fatal(err)
			}
			block = &pem.Block{Type: "EC PRIVATE KEY", Bytes: der}
		}
	}
	if block == nil {
		der, err := x509.MarshalPKCS8PrivateKey(pki.signingKey)
		if err != nil {
			t.Fatal(err)
		}
		block = &pem.Block{Type: "PRIVATE KEY", Bytes: der}
	}
	writeTestFile(t, pki.keyFile, pem.EncodeToMemory(block), 0o600)
	return pki
}

func TestUpstream(t *testing.T) {
	tests := []struct {
		name string
		opts pkiOpts
	}{
		{"root only, ECDSA PKCS#8 key", pkiOpts{keyType: "ecdsa"}},
		{"root only, ECDSA SEC 1 key", pkiOpts{keyType: "ec-sec1"}},
		{"root only, RSA PKCS#1 key", pkiOpts{keyType: "rsa"}},
		{"root only, Ed25519 key", pkiOpts{keyType: "ed25519"}},
		{"upstream intermediate and root", pkiOpts{keyType: "ecdsa", intermediate: true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clock := newClock()
			now := clock.Now()
			pki := newTestPKI(t, now, tt.opts)
			dir := t.TempDir()
			cfg := testConfig(dir, clock)
			cfg.UpstreamCertFile, cfg.UpstreamKeyFile = pki.certFile, pki.keyFile
			c := mustNew(t, cfg)

			// The bundle's X.509 part is the upstream root, and only it.
			if roots := c.Bundle().X509Authorities(); len(roots) != 1 || !roots[0].Equal(pki.root) {
				t.Fatalf("bundle X.509 authorities = %d certs, want only the upstream root", len(roots))
			}
			if got, want := string(c.BundlePEM()), string(encodeCertPEM(pki.root)); got != want {
				t.Errorf("BundlePEM = %q, want only the upstream root %q", got, want)
			}

			chain, authorityID := signLeaf(t, c, time.Hour)
			wantLen := 2 + len(pki.chain) - 1 // leaf, ours, upstream intermediates
			if len(chain) != wantLen {
				t.Fatalf("chain has %d certificates, want %d", len(chain), wantLen)
			}
			ours := chain[1]
			for i, up := range pki.chain[:len(pki.chain)-1] {
				if !chain[2+i].Equal(up) {
					t.Errorf("chain[%d] is not upstream intermediate %d", 2+i, i)
				}
			}
			switch {
			case !ours.IsCA || ours.MaxPathLen != 0 || !ours.MaxPathLenZero:
				t.Errorf("our intermediate: IsCA %v MaxPathLen %d; want a CA with path length 0", ours.IsCA, ours.MaxPathLen)
			case len(ours.URIs) != 1 || ours.URIs[0].String() != "spiffe://example.org":
				t.Errorf("our intermediate URIs = %v, want [spiffe://example.org]", ours.URIs)
			case ours.NotAfter.After(pki.root.NotAfter):
				t.Errorf("our intermediate expires %s, after the upstream root %s", ours.NotAfter, pki.root.NotAfter)
			case !ours.NotAfter.Equal(pki.chain[0].NotAfter):
				t.Errorf("our intermediate expires %s, want capped at the upstream's %s", ours.NotAfter, pki.chain[0].NotAfter)
			}
			if authorityID != c.Authorities()[0].ID {
				t.Errorf("authority ID = %s, want %s", authorityID, c.Authorities()[0].ID)
			}
			if _, _, err := x509svid.Verify(chain, c.Bundle(), x509svid.WithTime(now)); err != nil {
				t.Fatalf("x509svid.Verify against the bundle: %v", err)
			}
			// And against nothing but the upstream root, as a peer configured
			// with the organisation's PKI would.
			if _, _, err := x509svid.Verify(chain, bundleOf(pki.root), x509svid.WithTime(now)); err != nil {
				t.Fatalf("x509svid.Verify against the upstream root: %v", err)
			}
			token, _ := signJWT(t, c, time.Hour)
			if _, err := jwtsvid.ParseAndValidate(token, c.Bundle(), []string{"aud"}); err != nil {
				t.Errorf("JWT does not validate: %v", err)
			}

			// Rotation re-signs our intermediate; the X.509 bundle stays put.
			clock.Add(10 * time.Second)
			if _, err := c.Prepare(); err != nil {
				t.Fatal(err)
			}
			b := c.Bundle()
			if roots := b.X509Authorities(); len(roots) != 1 || !roots[0].Equal(pki.root) {
				t.Errorf("after Prepare, bundle X.509 authorities = %d certs, want only the upstream root", len(roots))
			}
			if got := len(b.JWTAuthorities()); got != 2 {
				t.Errorf("after Prepare, bundle has %d JWT authorities, want 2", got)
			}
			clock.Add(10 * time.Second)
			if _, err := c.Activate(); err != nil {
				t.Fatal(err)
			}
			newChain, newID := signLeaf(t, c, time.Hour)
			if newID == authorityID || newChain[1].Equal(ours) {
				t.Error("after Activate, the leaf is still signed by the old intermediate")
			}
			for name, ch := range map[string][]*x509.Certificate{"old": chain, "new": newChain} {
				if _, _, err := x509svid.Verify(ch, c.Bundle(), x509svid.WithTime(clock.Now())); err != nil {
					t.Errorf("%s chain does not verify after rotation: %v", name, err)
				}
			}

			// Restart keeps upstream mode and the intermediates.
			c2 := mustNew(t, cfg)
			if !c2.Bundle().Equal(c.Bundle()) {
				t.Error("bundle changed across restart")
			}
			chain2, id2 := signLeaf(t, c2, time.Hour)
			if id2 != newID || !chain2[1].Equal(newChain[1]) {
				t.Errorf("after restart, signed by %s, want %s", id2, newID)
			}
		})
	}
}

func bundleOf(roots ...*x509.Certificate) *x509bundle.Bundle {
	return x509bundle.FromX509Authorities(testTD, roots)
}

func TestUpstreamErrors(t *testing.T) {
	clock := newClock()
	now := clock.Now()
	tests := []struct {
		name    string
		pki     func(t *testing.T) *testPKI
		wantErr string
	}{
		{
			name: "key does not match the certificate",
			pki: func(t *testing.T) *testPKI {
				pki := newTestPKI(t, now, pkiOpts{})
				other := newTestPKI(t, now, pkiOpts{})
				pki.keyFile = other.keyFile
				return pki
			},
			wantErr: "does not match",
		},
		{
			name: "not a CA",
			pki: func(t *testing.T) *testPKI {
				return newTestPKI(t, now, pkiOpts{intermediate: true, signer: caOpts{notCA: true}})
			},
			wantErr: "is not a CA",
		},
		{
			name: "path length 0",
			pki: func(t *testing.T) *testPKI {
				return newTestPKI(t, now, pkiOpts{intermediate: true, signer: caOpts{pathLenZero: true}})
			},
			wantErr: "path length 0",
		},
		{
			name: "expired",
			pki: func(t *testing.T) *testPKI {
				return newTestPKI(t, now, pkiOpts{signer: caOpts{notBefore: now.Add(-2 * time.Hour), notAfter: now.Add(-time.Hour)}})
			},
			wantErr: "expired",
		},
		{
			name: "name constraints exclude the trust domain",
			pki: func(t *testing.T) *testPKI {
				return newTestPKI(t, now, pkiOpts{intermediate: true, signer: caOpts{excludeURI: "example.org"}})
			},
			wantErr: "does not verify against the upstream root",
		},
		{
			name: "key file readable by others",
			pki: func(t *testing.T) *testPKI {
				pki := newTestPKI(t, now, pkiOpts{})
				chmod(t, pki.keyFile, 0o644)
				return pki
			},
			wantErr: "want 0600",
		},
		{
			name: "no certificate in the file",
			pki: func(t *testing.T) *testPKI {
				pki := newTestPKI(t, now, pkiOpts{})
				writeTestFile(t, pki.certFile, []byte("not PEM"), 0o644)
				return pki
			},
			wantErr: "no PEM CERTIFICATE block",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pki := tt.pki(t)
			dir := filepath.Join(t.TempDir(), "ca")
			cfg := testConfig(dir, clock)
			cfg.UpstreamCertFile, cfg.UpstreamKeyFile = pki.certFile, pki.keyFile
			_, err := New(cfg)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("New: got error %v, want one containing %q", err, tt.wantErr)
			}
			// Caught before anything is written.
			if _, err := os.Stat(dir); err == nil {
				t.Errorf("New wrote %s despite a bad upstream", dir)
			}
		})
	}
}

func TestUpstreamModeSwitch(t *testing.T) {
	clock := newClock()
	pki := newTestPKI(t, clock.Now(), pkiOpts{})
	upstreamCfg := func(dir string) Config {
		cfg := testConfig(dir, clock)
		cfg.UpstreamCertFile, cfg.UpstreamKeyFile = pki.certFile, pki.keyFile
		return cfg
	}
	tests := []struct {
		name    string
		first   func(dir string) Config
		second  func(dir string) Config
		wantErr string
	}{
		{
			name:    "self-signed dir started in upstream mode",
			first:   func(dir string) Config { return testConfig(dir, clock) },
			second:  upstreamCfg,
			wantErr: "created in self-signed mode",
		},
		{
			name:    "upstream dir started self-signed",
			first:   upstreamCfg,
			second:  func(dir string) Config { return testConfig(dir, clock) },
			wantErr: "created in upstream mode",
		},
		{
			name:  "upstream key replaced",
			first: upstreamCfg,
			second: func(dir string) Config {
				other := newTestPKI(t, clock.Now(), pkiOpts{})
				cfg := testConfig(dir, clock)
				cfg.UpstreamCertFile, cfg.UpstreamKeyFile = other.certFile, other.keyFile
				return cfg
			},
			wantErr: "not signed by the upstream CA",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			mustNew(t, tt.first(dir))
			_, err := New(tt.second(dir))
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("New: got error %v, want one containing %q", err, tt.wantErr)
			}
		})
	}
}

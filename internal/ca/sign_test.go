package ca

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/jwtsvid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

func TestSignX509SVID(t *testing.T) {
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	edPub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	p384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name         string
		pub          crypto.PublicKey
		dnsNames     []string
		ips          []net.IP
		wantKeyUsage x509.KeyUsage
	}{
		{"ECDSA P-256", mustKey(t).Public(), nil, nil, x509.KeyUsageDigitalSignature},
		{"ECDSA P-384", p384.Public(), nil, nil, x509.KeyUsageDigitalSignature},
		{"RSA", rsaKey.Public(), nil, nil, x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment},
		{"Ed25519", edPub, nil, nil, x509.KeyUsageDigitalSignature},
		{
			name:         "with DNS and IP SANs",
			pub:          mustKey(t).Public(),
			dnsNames:     []string{"api.example.org", "localhost"},
			ips:          []net.IP{net.IPv4(127, 0, 0, 1).To4(), net.IPv6loopback},
			wantKeyUsage: x509.KeyUsageDigitalSignature,
		},
	}
	clock := newClock()
	c := mustNew(t, testConfig(t.TempDir(), clock))
	now := clock.Now()
	id := mustID(t, "/ns/default/sa/api")
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			chain, authorityID, err := c.SignX509SVID(X509Params{
				ID: id, PublicKey: tt.pub, TTL: time.Hour, DNSNames: tt.dnsNames, IPAddresses: tt.ips,
			})
			if err != nil {
				t.Fatalf("SignX509SVID: %v", err)
			}
			if len(chain) != 1 {
				t.Fatalf("chain has %d certificates, want 1 (the root is in the bundle)", len(chain))
			}
			if want := c.Authorities()[0].ID; authorityID != want {
				t.Errorf("authority ID = %s, want %s", authorityID, want)
			}
			gotID, _, err := x509svid.Verify(chain, c.Bundle(), x509svid.WithTime(now))
			if err != nil {
				t.Fatalf("x509svid.Verify: %v", err)
			}
			if gotID != id {
				t.Errorf("verified ID = %s, want %s", gotID, id)
			}
			leaf := chain[0]
			if len(leaf.URIs) != 1 || leaf.URIs[0].String() != id.String() {
				t.Errorf("URIs = %v, want exactly [%s]", leaf.URIs, id)
			}
			if leaf.IsCA || !leaf.BasicConstraintsValid {
				t.Errorf("IsCA = %v, BasicConstraintsValid = %v; want false, true", leaf.IsCA, leaf.BasicConstraintsValid)
			}
			if leaf.KeyUsage != tt.wantKeyUsage {
				t.Errorf("KeyUsage = %v, want %v", leaf.KeyUsage, tt.wantKeyUsage)
			}
			if diff := cmp.Diff([]x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}, leaf.ExtKeyUsage); diff != "" {
				t.Errorf("ExtKeyUsage (-want +got):\n%s", diff)
			}
			if leaf.SerialNumber.Sign() <= 0 || leaf.SerialNumber.BitLen() != 128 {
				t.Errorf("serial %x: sign %d, %d bits; want positive, 128 bits", leaf.SerialNumber, leaf.SerialNumber.Sign(), leaf.SerialNumber.BitLen())
			}
			if got, want := leaf.Subject.String(), "O=trustmesh"; got != want {
				t.Errorf("subject = %q, want %q", got, want)
			}
			if !leaf.NotBefore.Equal(now.Add(-30*time.Second)) || !leaf.NotAfter.Equal(now.Add(time.Hour)) {
				t.Errorf("validity = %s..%s, want %s..%s", leaf.NotBefore, leaf.NotAfter, now.Add(-30*time.Second), now.Add(time.Hour))
			}
			if diff := cmp.Diff(tt.dnsNames, leaf.DNSNames); diff != "" {
				t.Errorf("DNSNames (-want +got):\n%s", diff)
			}
			if len(leaf.IPAddresses) != len(tt.ips) {
				t.Errorf("IPAddresses = %v, want %v", leaf.IPAddresses, tt.ips)
			}
			for i := range min(len(tt.ips), len(leaf.IPAddresses)) {
				if !leaf.IPAddresses[i].Equal(tt.ips[i]) {
					t.Errorf("IPAddresses[%d] = %v, want %v", i, leaf.IPAddresses[i], tt.ips[i])
				}
			}
			if !publicKeyEqual(leaf.PublicKey, tt.pub) {
				t.Error("leaf public key is not the requested key")
			}
		})
	}
}

func publicKeyEqual(a, b crypto.PublicKey) bool {
	k, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && k.Equal(b)
}

func TestSignX509SVIDSerialsDiffer(t *testing.T) {
	c := mustNew(t, testConfig(t.TempDir(), newClock()))
	seen := make(map[string]bool)
	for range 50 {
		chain, _ := signLeaf(t, c, time.Hour)
		s := chain[0].SerialNumber.String()
		if seen[s] {
			t.Fatalf("serial %s issued twice", s)
		}
		seen[s] = true
	}
}

func TestSVIDTTL(t *testing.T) {
	tests := []struct {
		name    string
		maxTTL  time.Duration // Config.MaxSVIDTTL
		ttl     time.Duration
		want    time.Duration // NotAfter - now
		wantErr string
	}{
		{name: "minimum", ttl: time.Minute, want: time.Minute},
		{name: "one hour", ttl: time.Hour, want: time.Hour},
		{name: "default max", ttl: 24 * time.Hour, want: 24 * time.Hour},
		{name: "capped at default max", ttl: 48 * time.Hour, want: 24 * time.Hour},
		{name: "capped at configured max", maxTTL: 2 * time.Hour, ttl: 3 * time.Hour, want: 2 * time.Hour},
		{name: "configured max above default", maxTTL: 72 * time.Hour, ttl: 48 * time.Hour, want: 48 * time.Hour},
		{name: "below minimum", ttl: 59 * time.Second, wantErr: "below the minimum"},
		{name: "zero", ttl: 0, wantErr: "below the minimum"},
		{name: "negative", ttl: -time.Hour, wantErr: "below the minimum"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clock := newClock()
			cfg := testConfig(t.TempDir(), clock)
			cfg.MaxSVIDTTL = tt.maxTTL
			c := mustNew(t, cfg)
			now := clock.Now()

			t.Run("X.509", func(t *testing.T) {
				chain, _, err := c.SignX509SVID(X509Params{ID: mustID(t, "/w"), PublicKey: mustKey(t).Public(), TTL: tt.ttl})
				if tt.wantErr != "" {
					if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
						t.Fatalf("got error %v, want one containing %q", err, tt.wantErr)
					}
					return
				}
				if err != nil {
					t.Fatal(err)
				}
				if got := chain[0].NotAfter.Sub(now); got != tt.want {
					t.Errorf("lifetime = %s, want %s", got, tt.want)
				}
			})
			t.Run("JWT", func(t *testing.T) {
				_, exp, _, err := c.SignJWTSVID(mustID(t, "/w"), []string{"aud"}, tt.ttl)
				if tt.wantErr != "" {
					if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
						t.Fatalf("got error %v, want one containing %q", err, tt.wantErr)
					}
					return
				}
				if err != nil {
					t.Fatal(err)
				}
				if got := exp.Sub(now); got != tt.want {
					t.Errorf("lifetime = %s, want %s", got, tt.want)
				}
			})
		})
	}
}

func TestSVIDCappedAtCAExpiry(t *testing.T) {
	clock := newClock()
	c := mustNew(t, testConfig(t.TempDir(), clock))
	caNotAfter := c.Authorities()[0].NotAfter

	clock.Set(caNotAfter.Add(-time.Hour))
	chain, _ := signLeaf(t, c, 24*time.Hour)
	if !chain[0].NotAfter.Equal(caNotAfter) {
		t.Errorf("leaf NotAfter = %s, want the CA's %s", chain[0].NotAfter, caNotAfter)
	}
	_, exp, _, err := c.SignJWTSVID(mustID(t, "/w"), []string{"aud"}, 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if !exp.Equal(caNotAfter) {
		t.Errorf("JWT exp = %s, want the CA's %s", exp, caNotAfter)
	}

	clock.Set(caNotAfter)
	if _, _, err := c.SignX509SVID(X509Params{ID: mustID(t, "/w"), PublicKey: mustKey(t).Public(), TTL: time.Hour}); err == nil || !strings.Contains(err.Error(), "expired") {
		t.Errorf("signing with an expired CA: got %v, want an expiry error", err)
	}
	if _, _, _, err := c.SignJWTSVID(mustID(t, "/w"), []string{"aud"}, time.Hour); err == nil || !strings.Contains(err.Error(), "expired") {
		t.Errorf("JWT signing with an expired CA: got %v, want an expiry error", err)
	}
}

func TestSignX509SVIDErrors(t *testing.T) {
	c := mustNew(t, testConfig(t.TempDir(), newClock()))
	rsaSmall, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	p224, err := ecdsa.GenerateKey(elliptic.P224(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	good := X509Params{ID: mustID(t, "/w"), PublicKey: mustKey(t).Public(), TTL: time.Hour}
	tests := []struct {
		name    string
		modify  func(p *X509Params)
		wantErr string
	}{
		{"zero ID", func(p *X509Params) { p.ID = spiffeid.ID{} }, "SPIFFE ID is required"},
		{"other trust domain", func(p *X509Params) { p.ID = spiffeid.RequireFromString("spiffe://other.org/w") }, "not in trust domain"},
		{"trust domain ID", func(p *X509Params) { p.ID = testTD.ID() }, "has no path"},
		{"admin ID", func(p *X509Params) { p.ID = mustID(t, "/trustmesh/admin/alice") }, "reserved for operator"},
		{"admin prefix itself", func(p *X509Params) { p.ID = mustID(t, "/trustmesh/admin") }, "reserved for operator"},
		{"nil key", func(p *X509Params) { p.PublicKey = nil }, "public key is required"},
		{"nil ECDSA key", func(p *X509Params) { p.PublicKey = (*ecdsa.PublicKey)(nil) }, "public key is required"},
		{"private key", func(p *X509Params) { p.PublicKey = mustKey(t) }, "unsupported public key type"},
		{"P-224", func(p *X509Params) { p.PublicKey = p224.Public() }, "unsupported ECDSA curve"},
		{"RSA 1024", func(p *X509Params) { p.PublicKey = rsaSmall.Public() }, "shorter than 2048"},
		{"short Ed25519", func(p *X509Params) { p.PublicKey = ed25519.PublicKey{1, 2, 3} }, "invalid Ed25519"},
		{"empty DNS name", func(p *X509Params) { p.DNSNames = []string{""} }, "empty DNS name"},
		{"bad IP", func(p *X509Params) { p.IPAddresses = []net.IP{{1, 2, 3}} }, "invalid IP"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := good
			tt.modify(&p)
			chain, _, err := c.SignX509SVID(p)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("got %d certificates and error %v, want an error containing %q", len(chain), err, tt.wantErr)
			}
		})
	}
	// A workload path that merely starts like the admin prefix is fine.
	p := good
	p.ID = mustID(t, "/trustmesh/administrator")
	if _, _, err := c.SignX509SVID(p); err != nil {
		t.Errorf("/trustmesh/administrator: %v", err)
	}
}

func TestSignJWTSVID(t *testing.T) {
	clock := newClock()
	c := mustNew(t, testConfig(t.TempDir(), clock))
	now := clock.Now()
	id := mustID(t, "/ns/default/sa/api")
	audience := []string{"spiffe://example.org/db", "billing"}

	token, exp, authorityID, err := c.SignJWTSVID(id, audience, time.Hour)
	if err != nil {
		t.Fatalf("SignJWTSVID: %v", err)
	}
	active := c.Authorities()[0]
	if authorityID != active.ID {
		t.Errorf("authority ID = %s, want %s", authorityID, active.ID)
	}
	if !exp.Equal(now.Add(time.Hour)) {
		t.Errorf("expiresAt = %s, want %s", exp, now.Add(time.Hour))
	}

	validate := []struct {
		name     string
		audience []string
		wantErr  bool
	}{
		{"first audience", []string{"spiffe://example.org/db"}, false},
		{"second audience", []string{"billing"}, false},
		{"wrong audience", []string{"other"}, true},
	}
	for _, tt := range validate {
		t.Run(tt.name, func(t *testing.T) {
			svid, err := jwtsvid.ParseAndValidate(token, c.Bundle(), tt.audience)
			if tt.wantErr {
				if err == nil {
					t.Fatal("token validated, want an error")
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseAndValidate: %v", err)
			}
			if svid.ID != id {
				t.Errorf("ID = %s, want %s", svid.ID, id)
			}
			if diff := cmp.Diff(audience, svid.Audience); diff != "" {
				t.Errorf("audience (-want +got):\n%s", diff)
			}
			if !svid.Expiry.Equal(exp) {
				t.Errorf("expiry = %s, want %s", svid.Expiry, exp)
			}
		})
	}

	t.Run("header and claims", func(t *testing.T) {
		parts := strings.Split(token, ".")
		if len(parts) != 3 {
			t.Fatalf("token has %d parts, want 3", len(parts))
		}
		var header map[string]any
		decodeJSONPart(t, parts[0], &header)
		wantHeader := map[string]any{"alg": "ES256", "kid": active.JWTKeyID, "typ": "JWT"}
		if diff := cmp.Diff(wantHeader, header); diff != "" {
			t.Errorf("header (-want +got):\n%s", diff)
		}
		var claims map[string]any
		decodeJSONPart(t, parts[1], &claims)
		wantClaims := map[string]any{
			"sub": id.String(),
			"aud": []any{audience[0], audience[1]},
			"exp": float64(now.Add(time.Hour).Unix()),
			"iat": float64(now.Unix()),
		}
		if diff := cmp.Diff(wantClaims, claims); diff != "" {
			t.Errorf("claims (-want +got):\n%s", diff)
		}
		sig, err := base64.RawURLEncoding.DecodeString(parts[2])
		if err != nil || len(sig) != 64 {
			t.Errorf("signature: %d bytes, %v; want 64 bytes", len(sig), err)
		}
	})

	t.Run("single audience is still an array", func(t *testing.T) {
		token, _, _, err := c.SignJWTSVID(id, []string{"one"}, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		var claims map[string]any
		decodeJSONPart(t, strings.Split(token, ".")[1], &claims)
		if _, ok := claims["aud"].([]any); !ok {
			t.Errorf("aud = %#v, want an array", claims["aud"])
		}
	})

	t.Run("other CA's bundle", func(t *testing.T) {
		other := mustNew(t, testConfig(t.TempDir(), clock))
		if _, err := jwtsvid.ParseAndValidate(token, other.Bundle(), audience); err == nil {
			t.Error("token validated against another CA's bundle")
		}
	})
}

func decodeJSONPart(t *testing.T, part string, v any) {
	t.Helper()
	b, err := base64.RawURLEncoding.DecodeString(part)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatal(err)
	}
}

func TestSignJWTSVIDErrors(t *testing.T) {
	c := mustNew(t, testConfig(t.TempDir(), newClock()))
	tests := []struct {
		name     string
		id       spiffeid.ID
		audience []string
		ttl      time.Duration
		wantErr  string
	}{
		{"no audience", mustID(t, "/w"), nil, time.Hour, "audience is required"},
		{"empty audience list", mustID(t, "/w"), []string{}, time.Hour, "audience is required"},
		{"empty audience string", mustID(t, "/w"), []string{"a", ""}, time.Hour, "empty string"},
		{"zero ID", spiffeid.ID{}, []string{"a"}, time.Hour, "SPIFFE ID is required"},
		{"other trust domain", spiffeid.RequireFromString("spiffe://other.org/w"), []string{"a"}, time.Hour, "not in trust domain"},
		{"admin ID", mustID(t, "/trustmesh/admin/alice"), []string{"a"}, time.Hour, "reserved for operator"},
		{"TTL too short", mustID(t, "/w"), []string{"a"}, time.Second, "below the minimum"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			token, _, _, err := c.SignJWTSVID(tt.id, tt.audience, tt.ttl)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("got token %q and error %v, want an error containing %q", token, err, tt.wantErr)
			}
		})
	}
}

func TestJWTKeyID(t *testing.T) {
	// RFC 7638 §3.1 uses an RSA key; this is the P-256 key of RFC 7517
	// appendix A.1, whose thumbprint was computed independently (Python's
	// hashlib over the canonical JWK members).
	x, _ := base64.RawURLEncoding.DecodeString("MKBCTNIcKUSDii11ySs3526iDZ8AiTo7Tu6KPAqv7D4")
	y, _ := base64.RawURLEncoding.DecodeString("4Etl6SRW2YiLUrN5vfvVHuhp7x8PxltmWWlbbM4IFyM")
	pub, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), append(append([]byte{4}, x...), y...))
	if err != nil {
		t.Fatal(err)
	}
	got, err := jwtKeyID(pub)
	if err != nil {
		t.Fatal(err)
	}
	if want := "cn-I_WNMClehiVp51i_0VpOENW1upEerA8sEam5hn-s"; got != want {
		t.Errorf("jwtKeyID = %s, want %s", got, want)
	}
}

func TestConcurrentSigning(t *testing.T) {
	clock := newClock()
	c := mustNew(t, testConfig(t.TempDir(), clock))
	id := mustID(t, "/worker")
	key := mustKey(t).Public()

	const workers, perWorker = 8, 25
	type result struct {
		chain       []*x509.Certificate
		token       string
		authorityID string
	}
	results := make(chan result, workers*perWorker)
	errs := make(chan error, workers*perWorker)
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for range perWorker {
				chain, authorityID, err := c.SignX509SVID(X509Params{ID: id, PublicKey: key, TTL: time.Hour})
				if err != nil {
					errs <- err
					continue
				}
				token, _, _, err := c.SignJWTSVID(id, []string{"aud"}, time.Hour)
				if err != nil {
					errs <- err
					continue
				}
				results <- result{chain, token, authorityID}
				_ = c.Bundle()
				_ = c.BundlePEM()
				_ = c.Authorities()
			}
		})
	}
	// Rotate while they sign; small clock steps keep the JWTs' iat within
	// go-jose's one-minute leeway of the real clock.
	for range 3 {
		clock.Add(5 * time.Second)
		if _, err := c.Prepare(); err != nil {
			t.Errorf("Prepare: %v", err)
		}
		clock.Add(5 * time.Second)
		if _, err := c.Activate(); err != nil {
			t.Errorf("Activate: %v", err)
		}
		if _, err := c.Tidy(); err != nil {
			t.Errorf("Tidy: %v", err)
		}
	}
	wg.Wait()
	close(results)
	close(errs)
	for err := range errs {
		t.Errorf("signing: %v", err)
	}

	bundle := c.Bundle()
	lastNotAfter := make(map[string]time.Time) // by authority ID
	n := 0
	for r := range results {
		n++
		if _, _, err := x509svid.Verify(r.chain, bundle, x509svid.WithTime(clock.Now())); err != nil {
			t.Errorf("leaf signed by %s does not verify against the final bundle: %v", r.authorityID, err)
		}
		if _, err := jwtsvid.ParseAndValidate(r.token, bundle, []string{"aud"}); err != nil {
			t.Errorf("JWT does not validate against the final bundle: %v", err)
		}
		if na := r.chain[0].NotAfter; na.After(lastNotAfter[r.authorityID]) {
			lastNotAfter[r.authorityID] = na
		}
	}
	if n != workers*perWorker {
		t.Errorf("got %d results, want %d", n, workers*perWorker)
	}
	for _, info := range c.Authorities() {
		if last, ok := lastNotAfter[info.ID]; ok && info.State == StateRetired && info.RemoveAfter.Before(last) {
			t.Errorf("retired authority %s: RemoveAfter %s is before the NotAfter %s of a leaf it signed", info.ID, info.RemoveAfter, last)
		}
	}
}

// The benchmarks measure the steady state: the CA is created and the first
// reservation written (one fsync) before the timer starts.

func newBenchCA(b *testing.B) (*CA, X509Params) {
	b.Helper()
	c := mustNew(b, Config{TrustDomain: testTD, Dir: b.TempDir()})
	p := X509Params{ID: mustID(b, "/bench"), PublicKey: mustKey(b).Public(), TTL: time.Hour}
	if _, _, err := c.SignX509SVID(p); err != nil {
		b.Fatal(err)
	}
	return c, p
}

func BenchmarkSignX509SVID(b *testing.B) {
	c, p := newBenchCA(b)
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := c.SignX509SVID(p); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkSignX509SVIDParallel(b *testing.B) {
	c, p := newBenchCA(b)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, _, err := c.SignX509SVID(p); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

func BenchmarkSignJWTSVID(b *testing.B) {
	c, p := newBenchCA(b)
	aud := []string{"spiffe://example.org/db"}
	b.ReportAllocs()
	for b.Loop() {
		if _, _, _, err := c.SignJWTSVID(p.ID, aud, time.Hour); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkSignJWTSVIDParallel(b *testing.B) {
	c, p := newBenchCA(b)
	aud := []string{"spiffe://example.org/db"}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, _, _, err := c.SignJWTSVID(p.ID, aud, time.Hour); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

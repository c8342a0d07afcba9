package ca

import (
	"crypto/ecdsa"
	"crypto/x509"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

func TestSignAdmin(t *testing.T) {
	clock := newClock()
	dir := t.TempDir()
	c := mustNew(t, testConfig(dir, clock))
	now := clock.Now()

	cert, err := c.SignAdmin(mustKey(t).Public(), "alice", "admin", 8*time.Hour)
	if err != nil {
		t.Fatalf("SignAdmin: %v", err)
	}
	if got, want := cert.Subject.String(), "CN=alice,OU=admin,O=trustmesh"; got != want {
		t.Errorf("subject = %q, want %q", got, want)
	}
	if len(cert.URIs) != 1 || cert.URIs[0].String() != "spiffe://example.org/trustmesh/admin/alice" {
		t.Errorf("URIs = %v, want [spiffe://example.org/trustmesh/admin/alice]", cert.URIs)
	}
	if diff := cmp.Diff([]x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, cert.ExtKeyUsage); diff != "" {
		t.Errorf("ExtKeyUsage (-want +got):\n%s", diff)
	}
	if cert.IsCA || cert.KeyUsage != x509.KeyUsageDigitalSignature {
		t.Errorf("IsCA %v, KeyUsage %v; want a leaf with digitalSignature", cert.IsCA, cert.KeyUsage)
	}
	if !cert.NotAfter.Equal(now.Add(8 * time.Hour)) {
		t.Errorf("NotAfter = %s, want %s", cert.NotAfter, now.Add(8*time.Hour))
	}
	if cert.SerialNumber.BitLen() != 128 {
		t.Errorf("serial has %d bits, want 128", cert.SerialNumber.BitLen())
	}

	adminRoots := x509.NewCertPool()
	adminRoots.AddCert(c.AdminCACert())
	bundleRoots := x509.NewCertPool()
	for _, r := range c.Bundle().X509Authorities() {
		bundleRoots.AddCert(r)
	}
	workload, _ := signLeaf(t, c, time.Hour)

	tests := []struct {
		name   string
		cert   *x509.Certificate
		roots  *x509.CertPool
		usage  x509.ExtKeyUsage
		wantOK bool
	}{
		{"admin cert against the admin CA", cert, adminRoots, x509.ExtKeyUsageClientAuth, true},
		{"admin cert used as a server cert", cert, adminRoots, x509.ExtKeyUsageServerAuth, false},
		{"admin cert against the SPIFFE bundle", cert, bundleRoots, x509.ExtKeyUsageClientAuth, false},
		{"workload SVID against the admin CA", workload[0], adminRoots, x509.ExtKeyUsageClientAuth, false},
		{"workload SVID against the SPIFFE bundle", workload[0], bundleRoots, x509.ExtKeyUsageClientAuth, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := tt.cert.Verify(x509.VerifyOptions{Roots: tt.roots, KeyUsages: []x509.ExtKeyUsage{tt.usage}, CurrentTime: now})
			if gotOK := err == nil; gotOK != tt.wantOK {
				t.Errorf("verifies = %v (%v), want %v", gotOK, err, tt.wantOK)
			}
		})
	}
	if _, _, err := x509svid.Verify([]*x509.Certificate{cert}, c.Bundle(), x509svid.WithTime(now)); err == nil {
		t.Error("admin certificate verifies as an X.509-SVID against the bundle")
	}
	for _, r := range c.Bundle().X509Authorities() {
		if r.Equal(c.AdminCACert()) {
			t.Error("the admin CA is in the SPIFFE bundle")
		}
	}

	ca := c.AdminCACert()
	if !ca.IsCA || ca.MaxPathLen != 0 || !ca.MaxPathLenZero || len(ca.URIs) != 0 {
		t.Errorf("admin CA: IsCA %v MaxPathLen %d URIs %v; want a CA with path length 0 and no URI SAN", ca.IsCA, ca.MaxPathLen, ca.URIs)
	}
	if _, ok := ca.PublicKey.(*ecdsa.PublicKey); !ok {
		t.Errorf("admin CA key is %T, want ECDSA", ca.PublicKey)
	}

	// The admin CA survives restarts and rotations of the SPIFFE CA.
	if _, err := c.Prepare(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Activate(); err != nil {
		t.Fatal(err)
	}
	c2 := mustNew(t, testConfig(dir, clock))
	if !c2.AdminCACert().Equal(ca) {
		t.Error("admin CA changed across restart and rotation")
	}
	if _, err := cert.Verify(x509.VerifyOptions{Roots: adminRoots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, CurrentTime: now}); err != nil {
		t.Errorf("admin cert no longer verifies after rotation: %v", err)
	}
}

func TestSignAdminErrors(t *testing.T) {
	c := mustNew(t, testConfig(t.TempDir(), newClock()))
	tests := []struct {
		name, adminName, role string
		ttl                   time.Duration
		nilKey                bool
		wantErr               string
	}{
		{name: "empty name", adminName: "", role: "admin", ttl: time.Hour, wantErr: "invalid admin name"},
		{name: "slash in name", adminName: "a/b", role: "admin", ttl: time.Hour, wantErr: "invalid admin name"},
		{name: "dot-dot name", adminName: "..", role: "admin", ttl: time.Hour, wantErr: "invalid admin name"},
		{name: "long name", adminName: strings.Repeat("a", 65), role: "admin", ttl: time.Hour, wantErr: "longer than 64"},
		{name: "empty role", adminName: "alice", role: "", ttl: time.Hour, wantErr: "invalid admin role"},
		{name: "role with comma", adminName: "alice", role: "admin,viewer", ttl: time.Hour, wantErr: "invalid admin role"},
		{name: "TTL too short", adminName: "alice", role: "admin", ttl: 30 * time.Second, wantErr: "below the minimum"},
		{name: "no key", adminName: "alice", role: "admin", ttl: time.Hour, nilKey: true, wantErr: "public key is required"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var pub any = mustKey(t).Public()
			if tt.nilKey {
				pub = nil
			}
			cert, err := c.SignAdmin(pub, tt.adminName, tt.role, tt.ttl)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("got cert %v and error %v, want an error containing %q", cert != nil, err, tt.wantErr)
			}
		})
	}
}

package ca

import (
	"crypto/x509"
	"net"
	"testing"
	"time"
)

func TestSignAdminServer(t *testing.T) {
	clock := newClock()
	c := mustNew(t, testConfig(t.TempDir(), clock))
	cert, err := c.SignAdminServer(mustKey(t).Public(), []string{"localhost"}, []net.IP{net.IPv4(127, 0, 0, 1)}, time.Hour)
	if err != nil {
		t.Fatalf("SignAdminServer: %v", err)
	}
	adminRoots := x509.NewCertPool()
	adminRoots.AddCert(c.AdminCACert())
	bundleRoots := x509.NewCertPool()
	for _, r := range c.Bundle().X509Authorities() {
		bundleRoots.AddCert(r)
	}
	tests := []struct {
		name   string
		opts   x509.VerifyOptions
		wantOK bool
	}{
		{"server auth for 127.0.0.1 under the admin CA", x509.VerifyOptions{Roots: adminRoots, DNSName: "127.0.0.1"}, true},
		{"server auth for localhost under the admin CA", x509.VerifyOptions{Roots: adminRoots, DNSName: "localhost"}, true},
		{"another name", x509.VerifyOptions{Roots: adminRoots, DNSName: "example.com"}, false},
		{"used as a client certificate", x509.VerifyOptions{Roots: adminRoots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}, false},
		{"against the SPIFFE bundle", x509.VerifyOptions{Roots: bundleRoots, DNSName: "localhost"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.opts.CurrentTime = clock.Now()
			_, err := cert.Verify(tt.opts)
			if gotOK := err == nil; gotOK != tt.wantOK {
				t.Errorf("verifies = %v (%v), want %v", gotOK, err, tt.wantOK)
			}
		})
	}
	if _, err := c.SignAdminServer(mustKey(t).Public(), nil, nil, time.Second); err == nil {
		t.Error("a TTL below the minimum was accepted")
	}
}

package ca

import (
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"net"
	"time"
)

// SignAdminServer issues the admin API's TLS server certificate from the
// admin CA, so operator credentials (whose ca.pem is the admin CA) verify
// the server without trusting the workload bundle, and the admin plane's
// trust survives workload CA rotation. Extended key usage serverAuth only.
func (c *CA) SignAdminServer(pub crypto.PublicKey, dnsNames []string, ips []net.IP, ttl time.Duration) (*x509.Certificate, error) {
	if ttl < minTTL {
		return nil, fmt.Errorf("ttl %s is below the minimum of %s", ttl, minTTL)
	}
	keyUsage, err := leafKeyUsage(pub)
	if err != nil {
		return nil, err
	}
	serial, err := randomSerial()
	if err != nil {
		return nil, err
	}
	now := c.now()
	notAfter := now.Add(ttl)
	if c.admin.cert.NotAfter.Before(notAfter) {
		notAfter = c.admin.cert.NotAfter
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{Organization: []string{organization}, CommonName: "trustmesh-server"},
		NotBefore:             now.Add(-clockSkew),
		NotAfter:              notAfter,
		BasicConstraintsValid: true,
		KeyUsage:              keyUsage,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:              dnsNames,
		IPAddresses:           ips,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, c.admin.cert, pub, c.admin.key)
	if err != nil {
		return nil, fmt.Errorf("sign admin server certificate: %w", err)
	}
	return x509.ParseCertificate(der)
}

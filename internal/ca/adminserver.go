package ca

import (
	"crypto"
	"crypto/x509"
	"crypto/x509/pkix"
	"net"
	"time"
)

// SignAdminServer issues the admin API's TLS server certificate from the
// admin CA, so operator credentials (whose ca.pem is the admin CA) verify
// the server without trusting the workload bundle, and the admin plane's
// trust survives workload CA rotation. Extended key usage serverAuth only.
func (c *CA) SignAdminServer(pub crypto.PublicKey, dnsNames []string, ips []net.IP, ttl time.Duration) (*x509.Certificate, error) {
	return c.signWithAdminCA(pub, ttl, func(tmpl *x509.Certificate) {
		tmpl.Subject = pkix.Name{Organization: []string{organization}, CommonName: "trustmesh-server"}
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		tmpl.DNSNames = dnsNames
		tmpl.IPAddresses = ips
	})
}

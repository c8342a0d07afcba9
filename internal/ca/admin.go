package ca

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// adminPathPrefix is the SPIFFE ID path under which operator certificates are
// named. SignX509SVID and SignJWTSVID refuse it.
const adminPathPrefix = "/trustmesh/admin"

// maxNameLen bounds operator names and roles: a CommonName holds at most 64
// characters.
const maxNameLen = 64

// adminCA is the separate CA of operator client certificates.
type adminCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

// loadOrCreateAdminCA loads the admin CA from dir, or creates it if neither of
// its files exists.
func loadOrCreateAdminCA(dir string, now time.Time) (_ *adminCA, created bool, _ error) {
	certFile, keyFile := filepath.Join(dir, adminCertFile), filepath.Join(dir, adminKeyFile)
	_, certErr := os.Stat(certFile)
	_, keyErr := os.Stat(keyFile)
	switch {
	case errors.Is(certErr, fs.ErrNotExist) && errors.Is(keyErr, fs.ErrNotExist):
		ca, err := newAdminCA(now)
		if err != nil {
			return nil, false, err
		}
		// Key first: a certificate without its key is never left behind.
		if err := writeKey(keyFile, ca.key); err != nil {
			return nil, false, fmt.Errorf("write admin CA key: %w", err)
		}
		if err := writeCert(certFile, ca.cert); err != nil {
			return nil, false, fmt.Errorf("write admin CA certificate: %w", err)
		}
		return ca, true, nil
	case certErr != nil:
		return nil, false, fmt.Errorf("admin CA certificate: %w", certErr)
	case keyErr != nil:
		return nil, false, fmt.Errorf("admin CA key: %w", keyErr)
	}
	cert, err := readCert(certFile)
	if err != nil {
		return nil, false, fmt.Errorf("admin CA certificate: %w", err)
	}
	key, err := readECKey(keyFile)
	if err != nil {
		return nil, false, fmt.Errorf("admin CA key: %w", err)
	}
	if !key.PublicKey.Equal(cert.PublicKey) {
		return nil, false, fmt.Errorf("admin CA key %s does not match %s", keyFile, certFile)
	}
	if !cert.IsCA {
		return nil, false, fmt.Errorf("admin CA certificate %s is not a CA", certFile)
	}
	return &adminCA{cert: cert, key: key}, false, nil
}

func newAdminCA(now time.Time) (*adminCA, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate admin CA key: %w", err)
	}
	skid, err := subjectKeyID(&key.PublicKey)
	if err != nil {
		return nil, err
	}
	serial, err := randomSerial()
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject: pkix.Name{
			Organization: []string{organization},
			CommonName:   "trustmesh admin CA",
		},
		NotBefore:             now.Add(-clockSkew),
		NotAfter:              now.Add(caLifetime),
		IsCA:                  true,
		BasicConstraintsValid: true,
		MaxPathLen:            0,
		MaxPathLenZero:        true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		SubjectKeyId:          skid,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("sign admin CA certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("parse admin CA certificate: %w", err)
	}
	return &adminCA{cert: cert, key: key}, nil
}

// SignAdmin issues an operator client certificate from the admin CA: subject
// CN=name, O=trustmesh, OU=role; URI SAN spiffe://<td>/trustmesh/admin/<name>;
// extended key usage clientAuth only. The admin CA is never in the SPIFFE
// bundle, so the certificate does not verify as an SVID, and no SVID verifies
// against [CA.AdminCACert].
//
// name must be a valid SPIFFE ID path segment and role a non-empty word of
// letters, digits, '.', '-' and '_', each at most 64 characters. ttl must be
// at least a minute; the certificate expires at now+ttl or when the admin CA
// does, whichever is first. It is not capped by Config.MaxSVIDTTL: the caller
// chooses how long operator credentials live.
func (c *CA) SignAdmin(pub crypto.PublicKey, name, role string, ttl time.Duration) (*x509.Certificate, error) {
	if len(name) > maxNameLen {
		return nil, fmt.Errorf("admin name is longer than %d characters", maxNameLen)
	}
	id, err := spiffeid.FromSegments(c.td, "trustmesh", "admin", name)
	if err != nil {
		return nil, fmt.Errorf("invalid admin name %q: %w", name, err)
	}
	if !validRole(role) {
		return nil, fmt.Errorf("invalid admin role %q: want 1-%d letters, digits, '.', '-' or '_'", role, maxNameLen)
	}
	cert, err := c.signWithAdminCA(pub, ttl, func(tmpl *x509.Certificate) {
		tmpl.Subject = pkix.Name{
			Organization:       []string{organization},
			OrganizationalUnit: []string{role},
			CommonName:         name,
		}
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
		tmpl.URIs = []*url.URL{id.URL()}
	})
	if err != nil {
		return nil, err
	}
	c.log.Info("admin certificate issued",
		attrAdminName, name, attrRole, role, attrSerial, cert.SerialNumber.Text(16), attrNotAfter, cert.NotAfter)
	return cert, nil
}

// AdminCACert returns the admin CA certificate: the only trust anchor of the
// admin API. Callers must not modify it.
func (c *CA) AdminCACert() *x509.Certificate {
	return c.admin.cert
}

func validRole(role string) bool {
	if role == "" || len(role) > maxNameLen {
		return false
	}
	for _, r := range role {
		ok := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '-' || r == '_'
		if !ok {
			return false
		}
	}
	return true
}

// signWithAdminCA issues a leaf from the admin CA: lifetime ttl (at least a
// minute, capped at the admin CA's expiry), random serial, key usage for the
// key type; fill sets the subject, names and extended key usage.
func (c *CA) signWithAdminCA(pub crypto.PublicKey, ttl time.Duration, fill func(*x509.Certificate)) (*x509.Certificate, error) {
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
	if !notAfter.After(now) {
		return nil, fmt.Errorf("admin CA expired at %s", c.admin.cert.NotAfter.Format(time.RFC3339))
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		NotBefore:             now.Add(-clockSkew),
		NotAfter:              notAfter,
		BasicConstraintsValid: true,
		KeyUsage:              keyUsage,
	}
	fill(tmpl)
	der, err := x509.CreateCertificate(rand.Reader, tmpl, c.admin.cert, pub, c.admin.key)
	if err != nil {
		return nil, fmt.Errorf("sign admin certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("parse admin certificate: %w", err)
	}
	return cert, nil
}

package ca

import (
	"context"
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

// maxAdminAttempts bounds loadOrCreateAdminCA's loop: it only repeats when
// another server creates the admin CA at the same time.
const maxAdminAttempts = 4

// loadOrCreateAdminCA loads the admin CA from s, or creates it if neither of
// its values exists. The key is written first and is the commit point: the
// key never changes once written, and a key without its certificate (another
// server is creating it, or one crashed in between) is completed with a new
// self-signed certificate for that key. Certificates for the same key and
// subject are interchangeable (the same SubjectKeyId), and the first one
// written is the one every server uses. created reports that this call wrote
// the key.
func loadOrCreateAdminCA(ctx context.Context, s Storage, now time.Time) (_ *adminCA, created bool, _ error) {
	for range maxAdminAttempts {
		// The certificate first: it is written after the key, so a key read
		// after a certificate was seen finds the key another replica wrote
		// between the two reads.
		certPEM, _, certErr := s.Read(ctx, adminCertFile, ClassPublic)
		keyPEM, _, keyErr := s.Read(ctx, adminKeyFile, ClassSecret)
		switch {
		case errors.Is(keyErr, fs.ErrNotExist) && errors.Is(certErr, fs.ErrNotExist):
			key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
			if err != nil {
				return nil, false, fmt.Errorf("generate admin CA key: %w", err)
			}
			err = writeKeyTo(ctx, s, adminKeyFile, key)
			if errors.Is(err, ErrConcurrentChange) {
				continue // another server created it first: use its key
			}
			if err != nil {
				return nil, false, fmt.Errorf("write admin CA key: %w", err)
			}
			created = true
			continue // read it back, then write its certificate
		case errors.Is(certErr, fs.ErrNotExist) && keyErr == nil:
			key, err := parseECKey(keyPEM, s.Locate(adminKeyFile))
			if err != nil {
				return nil, false, fmt.Errorf("admin CA key: %w", err)
			}
			ca, err := newAdminCA(key, now)
			if err != nil {
				return nil, false, err
			}
			err = writeCertTo(ctx, s, adminCertFile, ca.cert)
			if errors.Is(err, ErrConcurrentChange) {
				continue // another server completed it first: use its certificate
			}
			if err != nil {
				return nil, false, fmt.Errorf("write admin CA certificate: %w", err)
			}
			return ca, created, nil
		case keyErr != nil:
			return nil, false, fmt.Errorf("admin CA key: %w", keyErr)
		case certErr != nil:
			return nil, false, fmt.Errorf("admin CA certificate: %w", certErr)
		}
		cert, err := parseCert(certPEM, s.Locate(adminCertFile))
		if err != nil {
			return nil, false, fmt.Errorf("admin CA certificate: %w", err)
		}
		key, err := parseECKey(keyPEM, s.Locate(adminKeyFile))
		if err != nil {
			return nil, false, fmt.Errorf("admin CA key: %w", err)
		}
		if !key.PublicKey.Equal(cert.PublicKey) {
			return nil, false, fmt.Errorf("admin CA key %s does not match %s", s.Locate(adminKeyFile), s.Locate(adminCertFile))
		}
		if !cert.IsCA {
			return nil, false, fmt.Errorf("admin CA certificate %s is not a CA", s.Locate(adminCertFile))
		}
		return &adminCA{cert: cert, key: key}, created, nil
	}
	return nil, false, fmt.Errorf("load admin CA: %w", ErrConcurrentChange)
}

// newAdminCA makes the self-signed admin CA certificate of key.
func newAdminCA(key *ecdsa.PrivateKey, now time.Time) (*adminCA, error) {
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

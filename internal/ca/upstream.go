package ca

import (
	"crypto"
	"crypto/x509"
	"fmt"
	"time"
)

// upstream is an existing PKI that our intermediates are signed by.
type upstream struct {
	// cert and key sign our intermediates.
	cert *x509.Certificate
	key  crypto.Signer
	// chain is cert and the upstream intermediates above it, up to but
	// excluding root; empty if cert is the root itself.
	chain []*x509.Certificate
	// root is the trust anchor published in the bundle.
	root *x509.Certificate
	// notAfter is the earliest NotAfter of the upstream chain: no
	// intermediate of ours may outlive it.
	notAfter time.Time
}

// loadUpstream reads and checks the upstream certificate chain and key. The
// chain file lists the signing certificate first and the root last; a single
// certificate is the root itself.
func loadUpstream(certFile, keyFile string, now time.Time) (*upstream, error) {
	certs, err := readCerts(certFile)
	if err != nil {
		return nil, fmt.Errorf("read upstream certificate: %w", err)
	}
	key, err := readKey(keyFile, true)
	if err != nil {
		return nil, fmt.Errorf("read upstream key: %w", err)
	}
	up := &upstream{
		cert:     certs[0],
		key:      key,
		root:     certs[len(certs)-1],
		notAfter: certs[0].NotAfter,
	}
	if len(certs) > 1 {
		up.chain = certs[:len(certs)-1]
	}
	for _, c := range certs {
		if c.NotAfter.Before(up.notAfter) {
			up.notAfter = c.NotAfter
		}
	}
	pub, ok := key.Public().(interface{ Equal(crypto.PublicKey) bool })
	switch {
	case !ok || !pub.Equal(up.cert.PublicKey):
		return nil, fmt.Errorf("upstream key %s does not match the first certificate of %s", keyFile, certFile)
	case !up.cert.IsCA || !up.cert.BasicConstraintsValid:
		return nil, fmt.Errorf("upstream certificate %q is not a CA", up.cert.Subject)
	case up.cert.KeyUsage != 0 && up.cert.KeyUsage&x509.KeyUsageCertSign == 0:
		return nil, fmt.Errorf("upstream certificate %q lacks the certSign key usage", up.cert.Subject)
	case up.cert.MaxPathLen == 0 && up.cert.MaxPathLenZero:
		return nil, fmt.Errorf("upstream certificate %q has path length 0: it cannot sign an intermediate CA", up.cert.Subject)
	}
	if _, err := up.cert.Verify(up.verifyOptions(now)); err != nil {
		return nil, fmt.Errorf("upstream certificate chain in %s: %w", certFile, err)
	}
	return up, nil
}

func (up *upstream) verifyOptions(now time.Time) x509.VerifyOptions {
	roots := x509.NewCertPool()
	roots.AddCert(up.root)
	inter := x509.NewCertPool()
	for _, c := range up.chain {
		inter.AddCert(c)
	}
	return x509.VerifyOptions{
		Roots:         roots,
		Intermediates: inter,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
		CurrentTime:   now,
	}
}

// verifyIntermediate checks that a freshly signed intermediate chains to the
// upstream root under the upstream's own constraints (path length, name
// constraints), so that a bad upstream fails here and not in every verifier.
func (up *upstream) verifyIntermediate(cert *x509.Certificate, now time.Time) error {
	if _, err := cert.Verify(up.verifyOptions(now)); err != nil {
		return fmt.Errorf("new intermediate does not verify against the upstream root: %w", err)
	}
	return nil
}

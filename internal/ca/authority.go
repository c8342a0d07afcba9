package ca

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"net/url"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// AuthorityState is where an authority is in its lifecycle (see the package
// documentation).
type AuthorityState string

// The states of an authority.
const (
	// StatePrepared: published in the bundle, not signing yet.
	StatePrepared AuthorityState = "prepared"
	// StateActive: signs every new SVID. Exactly one authority is active.
	StateActive AuthorityState = "active"
	// StateRetired: no longer signs; stays in the bundle until RemoveAfter.
	StateRetired AuthorityState = "retired"
)

// AuthorityInfo describes one authority, for operators and for the server's
// rotation schedule. It carries no key material.
type AuthorityInfo struct {
	// ID identifies the authority: the hex SubjectKeyId of its CA certificate.
	ID    string
	State AuthorityState
	// CertSubject is the subject of the authority's X.509 CA certificate.
	CertSubject string
	// NotBefore and NotAfter are the validity of the X.509 CA certificate; no
	// SVID the authority signs outlives NotAfter.
	NotBefore, NotAfter time.Time
	// CreatedAt is when Prepare (or the first start) made the authority;
	// ActivatedAt and RetiredAt are zero until those transitions happen.
	CreatedAt, ActivatedAt, RetiredAt time.Time
	// RemoveAfter is set for a retired authority: the latest expiry of
	// anything it may have signed. It leaves the bundle then, on Tidy.
	RemoveAfter time.Time
	// JWTKeyID is the key ID ("kid") of the authority's JWT signing key.
	JWTKeyID string
}

const (
	// caLifetime is the requested validity of a CA certificate (self-signed
	// root, intermediate under an upstream CA, admin CA).
	caLifetime = 10 * 365 * 24 * time.Hour
	// clockSkew backdates every certificate's NotBefore.
	clockSkew = 30 * time.Second
	// organization is the subject O of every certificate we issue.
	organization = "trustmesh"
)

// authority is one X.509 CA key + certificate and one JWT signing key.
type authority struct {
	// meta is guarded by CA.mu; everything else is immutable.
	meta authorityMetadata

	cert   *x509.Certificate
	key    *ecdsa.PrivateKey
	jwtKey *ecdsa.PrivateKey
	// chain is what follows the leaf in an X.509-SVID chain signed by this
	// authority: empty for a self-signed root; the intermediate and any
	// upstream intermediates in upstream mode.
	chain []*x509.Certificate
	// jwtHeader is the encoded JWS protected header of JWT-SVIDs it signs.
	jwtHeader string
}

func (a *authority) info() AuthorityInfo {
	return AuthorityInfo{
		ID:          a.meta.ID,
		State:       a.meta.State,
		CertSubject: a.cert.Subject.String(),
		NotBefore:   a.cert.NotBefore,
		NotAfter:    a.cert.NotAfter,
		CreatedAt:   a.meta.CreatedAt,
		ActivatedAt: a.meta.ActivatedAt,
		RetiredAt:   a.meta.RetiredAt,
		RemoveAfter: a.meta.RemoveAfter,
		JWTKeyID:    a.meta.JWTKeyID,
	}
}

// newAuthority generates the keys and CA certificate of a new authority. The
// certificate is self-signed, or signed by up if up is not nil. Nothing is
// written.
func newAuthority(td spiffeid.TrustDomain, up *upstream, now time.Time) (*authority, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate CA key: %w", err)
	}
	jwtKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate JWT key: %w", err)
	}
	skid, err := subjectKeyID(&key.PublicKey)
	if err != nil {
		return nil, err
	}
	serial, err := randomSerial()
	if err != nil {
		return nil, err
	}
	id := hex.EncodeToString(skid)
	notAfter := now.Add(caLifetime)
	if up != nil && up.notAfter.Before(notAfter) {
		notAfter = up.notAfter
	}
	if !notAfter.After(now) {
		return nil, fmt.Errorf("upstream CA expired at %s", up.notAfter.Format(time.RFC3339))
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject: pkix.Name{
			Organization: []string{organization},
			CommonName:   "trustmesh CA " + id,
		},
		NotBefore:             now.Add(-clockSkew),
		NotAfter:              notAfter,
		IsCA:                  true,
		BasicConstraintsValid: true,
		MaxPathLen:            0,
		MaxPathLenZero:        true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		URIs:                  []*url.URL{td.ID().URL()},
		SubjectKeyId:          skid,
	}
	parent, signer := tmpl, crypto.Signer(key)
	if up != nil {
		parent, signer = up.cert, up.key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, signer)
	if err != nil {
		return nil, fmt.Errorf("sign CA certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("parse CA certificate: %w", err)
	}
	if up != nil {
		if err := up.verifyIntermediate(cert, now); err != nil {
			return nil, err
		}
	}
	a := &authority{
		meta: authorityMetadata{
			ID:        id,
			CreatedAt: now,
		},
		cert:   cert,
		key:    key,
		jwtKey: jwtKey,
	}
	if err := a.init(up); err != nil {
		return nil, err
	}
	return a, nil
}

// init fills in the derived fields: the JWT key ID (unless loaded), the
// SVID chain and the JWT header.
func (a *authority) init(up *upstream) error {
	kid, err := jwtKeyID(&a.jwtKey.PublicKey)
	if err != nil {
		return err
	}
	switch a.meta.JWTKeyID {
	case "":
		a.meta.JWTKeyID = kid
	case kid:
	default:
		return fmt.Errorf("JWT key ID %q does not match the JWT key", a.meta.JWTKeyID)
	}
	if up != nil {
		a.chain = append([]*x509.Certificate{a.cert}, up.chain...)
	}
	header, err := json.Marshal(struct {
		Alg string `json:"alg"`
		Kid string `json:"kid"`
		Typ string `json:"typ"`
	}{"ES256", a.meta.JWTKeyID, "JWT"})
	if err != nil {
		return err
	}
	a.jwtHeader = base64.RawURLEncoding.EncodeToString(header)
	return nil
}

// check verifies that a loaded authority is consistent: the key matches the
// certificate, the certificate is a CA for td with the ID as SubjectKeyId,
// and it is signed by itself or by the upstream CA.
func (a *authority) check(td spiffeid.TrustDomain, up *upstream) error {
	c := a.cert
	switch {
	case !a.key.PublicKey.Equal(c.PublicKey):
		return errors.New("key does not match the certificate")
	case hex.EncodeToString(c.SubjectKeyId) != a.meta.ID:
		return errors.New("certificate SubjectKeyId does not match the authority ID")
	case !c.IsCA || !c.BasicConstraintsValid:
		return errors.New("certificate is not a CA")
	case len(c.URIs) != 1 || c.URIs[0].String() != td.IDString():
		return fmt.Errorf("certificate URI SAN is not %s", td.IDString())
	case a.key.Curve != elliptic.P256():
		return errors.New("CA key is not ECDSA P-256")
	}
	if up == nil {
		if err := c.CheckSignatureFrom(c); err != nil {
			return fmt.Errorf("certificate is not self-signed: %w", err)
		}
		return nil
	}
	if err := c.CheckSignatureFrom(up.cert); err != nil {
		return fmt.Errorf("certificate is not signed by the upstream CA (did the upstream key change?): %w", err)
	}
	return nil
}

// subjectKeyID is RFC 7093 method 1: the leftmost 160 bits of the SHA-256
// hash of the subjectPublicKey.
func subjectKeyID(pub *ecdsa.PublicKey) ([]byte, error) {
	b, err := pub.Bytes()
	if err != nil {
		return nil, fmt.Errorf("encode public key: %w", err)
	}
	sum := sha256.Sum256(b)
	return sum[:20], nil
}

// jwtKeyID is the RFC 7638 JWK thumbprint (SHA-256, base64url) of pub.
func jwtKeyID(pub *ecdsa.PublicKey) (string, error) {
	if pub.Curve != elliptic.P256() {
		return "", errors.New("JWT key is not ECDSA P-256")
	}
	b, err := pub.Bytes() // 0x04 || X || Y, 32 bytes each
	if err != nil {
		return "", fmt.Errorf("encode JWT public key: %w", err)
	}
	enc := base64.RawURLEncoding
	// Members in lexicographic order, no whitespace (RFC 7638 §3).
	jwk := `{"crv":"P-256","kty":"EC","x":"` + enc.EncodeToString(b[1:33]) + `","y":"` + enc.EncodeToString(b[33:65]) + `"}`
	sum := sha256.Sum256([]byte(jwk))
	return enc.EncodeToString(sum[:]), nil
}

// randomSerial returns a random positive 128-bit serial number (the top bit
// is set so that every serial has the same size; 127 bits are random).
func randomSerial() (*big.Int, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return nil, fmt.Errorf("generate serial number: %w", err)
	}
	b[0] |= 0x80
	return new(big.Int).SetBytes(b[:]), nil
}

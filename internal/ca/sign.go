package ca

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

const (
	// minTTL is the shortest SVID (or admin certificate) TTL accepted.
	minTTL = time.Minute
	// reservationSlack is how far past the NotAfter that triggered it a
	// reservation is moved, so that reservation writes are rare.
	reservationSlack = 10 * time.Minute
	// minRSABits is the smallest RSA key accepted in a leaf.
	minRSABits = 2048
	// maxReserveAttempts bounds the reserve-then-sign loop; it only repeats
	// if a rotation or a slow clock jump races with signing.
	maxReserveAttempts = 4
)

// X509Params is a request for an X.509-SVID.
type X509Params struct {
	// ID is the SPIFFE ID of the SVID: in the CA's trust domain, with a
	// non-empty path outside /trustmesh/admin.
	ID spiffeid.ID
	// PublicKey is the subject's key: ECDSA P-256/P-384/P-521, RSA of at
	// least 2048 bits, or Ed25519.
	PublicKey crypto.PublicKey
	// TTL is the requested lifetime: at least a minute, capped at
	// Config.MaxSVIDTTL and at the signing CA's expiry.
	TTL time.Duration
	// DNSNames and IPAddresses are optional extra SANs.
	DNSNames    []string
	IPAddresses []net.IP
}

// SignX509SVID signs an X.509-SVID with the active authority. The chain is
// the leaf followed by the intermediates up to, excluding, the bundle's
// root: just the leaf for a self-signed CA; leaf, our intermediate and any
// upstream intermediates in upstream mode. authorityID is the ID of the
// signing authority. Callers must not modify the returned certificates.
func (c *CA) SignX509SVID(p X509Params) (chain []*x509.Certificate, authorityID string, err error) {
	if err := c.checkSVIDID(p.ID); err != nil {
		return nil, "", err
	}
	keyUsage, err := leafKeyUsage(p.PublicKey)
	if err != nil {
		return nil, "", err
	}
	ttl, err := c.clampTTL(p.TTL)
	if err != nil {
		return nil, "", err
	}
	for _, name := range p.DNSNames {
		if name == "" {
			return nil, "", errors.New("empty DNS name")
		}
	}
	for _, ip := range p.IPAddresses {
		if len(ip) != net.IPv4len && len(ip) != net.IPv6len {
			return nil, "", fmt.Errorf("invalid IP address %v", ip)
		}
	}
	serial, err := randomSerial()
	if err != nil {
		return nil, "", err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{Organization: []string{organization}},
		BasicConstraintsValid: true,
		IsCA:                  false,
		KeyUsage:              keyUsage,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		URIs:                  []*url.URL{p.ID.URL()},
		DNSNames:              p.DNSNames,
		IPAddresses:           p.IPAddresses,
	}

	var (
		der  []byte
		rest []*x509.Certificate
	)
	err = c.withReservation(ttl, func(a *authority, now, notAfter time.Time) error {
		tmpl.NotBefore = now.Add(-clockSkew)
		tmpl.NotAfter = notAfter
		var err error
		der, err = x509.CreateCertificate(rand.Reader, tmpl, a.cert, p.PublicKey, a.key)
		if err != nil {
			return fmt.Errorf("sign X.509-SVID for %s: %w", p.ID, err)
		}
		rest, authorityID = a.chain, a.meta.ID
		return nil
	})
	if err != nil {
		return nil, "", err
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, "", fmt.Errorf("parse X.509-SVID: %w", err)
	}
	chain = make([]*x509.Certificate, 0, 1+len(rest))
	chain = append(chain, leaf)
	chain = append(chain, rest...)
	return chain, authorityID, nil
}

// SignJWTSVID signs a JWT-SVID (JWS compact, ES256, typ JWT, kid = the
// active authority's JWT key ID) with claims sub, aud, exp and iat. The
// audience must be non-empty and hold no empty string; ttl follows the rules
// of X509Params.TTL. expiresAt is the exp claim.
func (c *CA) SignJWTSVID(id spiffeid.ID, audience []string, ttl time.Duration) (token string, expiresAt time.Time, authorityID string, err error) {
	if err := c.checkSVIDID(id); err != nil {
		return "", time.Time{}, "", err
	}
	if len(audience) == 0 {
		return "", time.Time{}, "", errors.New("audience is required")
	}
	for _, aud := range audience {
		if aud == "" {
			return "", time.Time{}, "", errors.New("audience contains an empty string")
		}
	}
	ttl, err = c.clampTTL(ttl)
	if err != nil {
		return "", time.Time{}, "", err
	}
	err = c.withReservation(ttl, func(a *authority, now, notAfter time.Time) error {
		// exp is whole seconds; rounding down keeps it within notAfter.
		expiresAt = time.Unix(notAfter.Unix(), 0)
		claims, err := json.Marshal(jwtClaims{
			Subject:  id.String(),
			Audience: audience,
			Expiry:   expiresAt.Unix(),
			IssuedAt: now.Unix(),
		})
		if err != nil {
			return err
		}
		token, err = signJWS(a.jwtHeader, claims, a.jwtKey)
		if err != nil {
			return fmt.Errorf("sign JWT-SVID for %s: %w", id, err)
		}
		authorityID = a.meta.ID
		return nil
	})
	if err != nil {
		return "", time.Time{}, "", err
	}
	return token, expiresAt, authorityID, nil
}

type jwtClaims struct {
	Subject  string   `json:"sub"`
	Audience []string `json:"aud"`
	Expiry   int64    `json:"exp"`
	IssuedAt int64    `json:"iat"`
}

// signJWS returns the JWS compact serialization of payload under the encoded
// protected header, signed with ES256 (RFC 7518 §3.4: R || S, 32 bytes each).
func signJWS(header string, payload []byte, key *ecdsa.PrivateKey) (string, error) {
	enc := base64.RawURLEncoding
	var b strings.Builder
	b.Grow(len(header) + 1 + enc.EncodedLen(len(payload)) + 1 + enc.EncodedLen(64))
	b.WriteString(header)
	b.WriteByte('.')
	b.WriteString(enc.EncodeToString(payload))
	digest := sha256.Sum256([]byte(b.String()))
	r, s, err := ecdsa.Sign(rand.Reader, key, digest[:])
	if err != nil {
		return "", err
	}
	var sig [64]byte
	r.FillBytes(sig[:32])
	s.FillBytes(sig[32:])
	b.WriteByte('.')
	b.WriteString(enc.EncodeToString(sig[:]))
	return b.String(), nil
}

// withReservation runs sign under the read lock with the active authority,
// the current time and the SVID's NotAfter (now+ttl capped at the
// authority's CA NotAfter), after making sure the authority's persisted
// reservation covers that NotAfter.
func (c *CA) withReservation(ttl time.Duration, sign func(a *authority, now, notAfter time.Time) error) error {
	for range maxReserveAttempts {
		now := c.now()
		c.mu.RLock()
		a := c.active
		caNotAfter := a.cert.NotAfter
		if !now.Before(caNotAfter) {
			id := a.meta.ID
			c.mu.RUnlock()
			return fmt.Errorf("active authority %s expired at %s: rotate the CA (prepare, then activate)", id, caNotAfter.Format(time.RFC3339))
		}
		notAfter := now.Add(ttl)
		if caNotAfter.Before(notAfter) {
			notAfter = caNotAfter
		}
		if notAfter.After(a.meta.ReservedNotAfter) {
			c.mu.RUnlock()
			if err := c.reserve(a, notAfter); err != nil {
				return err
			}
			continue
		}
		// Sign while holding the read lock: Activate, which turns the
		// reservation into RemoveAfter, waits for us.
		err := sign(a, now, notAfter)
		c.mu.RUnlock()
		return err
	}
	return errors.New("could not reserve the signing authority: rotation in progress, try again")
}

// reserve moves a's reservation past notAfter and persists it, unless a is
// no longer active (the caller then retries with the new active authority)
// or the reservation already covers notAfter. If another server wrote the
// metadata first, reserve reloads it and tries again from there: it never
// lowers a reservation another server made, nor undoes its changes.
func (c *CA) reserve(a *authority, notAfter time.Time) error {
	ctx, cancel := context.WithTimeout(context.Background(), storageTimeout)
	defer cancel()
	for range maxReserveAttempts {
		c.mu.Lock()
		id := a.meta.ID
		if c.active != a || !notAfter.After(a.meta.ReservedNotAfter) {
			c.mu.Unlock()
			return nil
		}
		reserved := notAfter.Add(reservationSlack)
		if a.cert.NotAfter.Before(reserved) {
			// Nothing signed by a outlives its certificate.
			reserved = a.cert.NotAfter
		}
		md := c.metadataLocked()
		for i := range md.Authorities {
			if m := &md.Authorities[i]; m.ID == id && reserved.After(m.ReservedNotAfter) {
				m.ReservedNotAfter = reserved
			}
		}
		err := c.commitLocked(ctx, md)
		c.mu.Unlock()
		if err == nil {
			c.log.Debug("authority reservation extended", attrAuthority, id, attrReservedNotAfter, reserved)
			return nil
		}
		if !errors.Is(err, ErrConcurrentChange) {
			return fmt.Errorf("persist reservation of authority %s: %w", id, err)
		}
		// Another server wrote first: merge with what it wrote.
		if _, err := c.reload(ctx); err != nil {
			return fmt.Errorf("persist reservation of authority %s: %w", id, err)
		}
	}
	return fmt.Errorf("persist reservation: %w", ErrConcurrentChange)
}

// checkSVIDID checks that id may be the subject of an SVID.
func (c *CA) checkSVIDID(id spiffeid.ID) error {
	switch {
	case id.IsZero():
		return errors.New("SPIFFE ID is required")
	case !id.MemberOf(c.td):
		return fmt.Errorf("SPIFFE ID %s is not in trust domain %s", id, c.td)
	case id.Path() == "":
		return fmt.Errorf("SPIFFE ID %s has no path: the trust domain ID is not a workload", id)
	case id.Path() == adminPathPrefix || strings.HasPrefix(id.Path(), adminPathPrefix+"/"):
		return fmt.Errorf("SPIFFE ID %s is reserved for operator certificates", id)
	}
	return nil
}

// clampTTL applies the TTL rules: at least minTTL, at most MaxSVIDTTL.
func (c *CA) clampTTL(ttl time.Duration) (time.Duration, error) {
	if ttl < minTTL {
		return 0, fmt.Errorf("ttl %s is below the minimum of %s", ttl, minTTL)
	}
	return min(ttl, c.maxTTL), nil
}

// leafKeyUsage checks a subject public key and returns the key usage of a
// leaf certificate for it.
func leafKeyUsage(pub crypto.PublicKey) (x509.KeyUsage, error) {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		if k == nil {
			break
		}
		switch k.Curve {
		case elliptic.P256(), elliptic.P384(), elliptic.P521():
			return x509.KeyUsageDigitalSignature, nil
		}
		return 0, errors.New("unsupported ECDSA curve: want P-256, P-384 or P-521")
	case *rsa.PublicKey:
		if k == nil {
			break
		}
		if k.N == nil || k.N.BitLen() < minRSABits {
			return 0, fmt.Errorf("RSA key is shorter than %d bits", minRSABits)
		}
		return x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment, nil
	case ed25519.PublicKey:
		if len(k) != ed25519.PublicKeySize {
			return 0, errors.New("invalid Ed25519 public key")
		}
		return x509.KeyUsageDigitalSignature, nil
	case nil:
	default:
		return 0, fmt.Errorf("unsupported public key type %T", pub)
	}
	return 0, errors.New("public key is required")
}

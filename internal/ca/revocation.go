package ca

import (
	"crypto/x509"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// Backdate is how far before its issuance an SVID's NotBefore is set, to
// tolerate clock skew. Revocation by SPIFFE ID compares issuance times, so
// it adds Backdate back.
const Backdate = clockSkew

// RenewAt is when a certificate this CA signed is half way through its
// life, counted from its issuance: NotBefore is backdated by Backdate, which
// would otherwise make a 1-minute SVID due for renewal after 15 s, not 30 s.
func RenewAt(c *x509.Certificate) time.Time {
	issued := c.NotBefore.Add(Backdate)
	if !issued.Before(c.NotAfter) {
		issued = c.NotBefore
	}
	return issued.Add(c.NotAfter.Sub(issued) / 2)
}

// RevocationList answers "is this certificate revoked?". It is immutable:
// build a new one when the list changes and swap it in.
type RevocationList struct {
	serials map[string]struct{}
	// byID maps a SPIFFE ID to the latest revocation time: every SVID of that
	// ID issued at or before it is revoked.
	byID map[spiffeid.ID]time.Time
}

// RevokedSerial and RevokedID are the two forms of a revocation.
type (
	RevokedSerial = string
	RevokedID     struct {
		ID        spiffeid.ID
		RevokedAt time.Time
	}
)

// NewRevocationList builds a list from revoked serials (decimal) and IDs.
func NewRevocationList(serials []RevokedSerial, ids []RevokedID) *RevocationList {
	l := &RevocationList{serials: make(map[string]struct{}, len(serials)), byID: make(map[spiffeid.ID]time.Time, len(ids))}
	for _, s := range serials {
		l.serials[s] = struct{}{}
	}
	for _, r := range ids {
		if r.RevokedAt.After(l.byID[r.ID]) {
			l.byID[r.ID] = r.RevokedAt
		}
	}
	return l
}

// Len is the number of entries.
func (l *RevocationList) Len() int {
	if l == nil {
		return 0
	}
	return len(l.serials) + len(l.byID)
}

// Revoked reports whether cert is revoked, and why. A nil list revokes nothing.
func (l *RevocationList) Revoked(cert *x509.Certificate) (bool, string) {
	if l == nil || cert == nil {
		return false, ""
	}
	if _, ok := l.serials[cert.SerialNumber.String()]; ok {
		return true, "serial " + cert.SerialNumber.String() + " is revoked"
	}
	for _, u := range cert.URIs {
		id, err := spiffeid.FromURI(u)
		if err != nil {
			continue
		}
		if at, ok := l.byID[id]; ok && !cert.NotBefore.Add(Backdate).After(at) {
			return true, "every SVID of " + id.String() + " issued before " + at.UTC().Format(time.RFC3339) + " is revoked"
		}
	}
	return false, ""
}

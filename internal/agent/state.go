package agent

import (
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/trustmesh/trustmesh/internal/attest"
)

// Identity is one SVID the agent holds for a registration on this node.
type Identity struct {
	// EntryID is the registration (Workload object) key, e.g. "default/web".
	EntryID string
	// SPIFFEID is the identity issued; it must equal SVID.ID.
	SPIFFEID spiffeid.ID
	// Selectors must all be among a caller's attested selectors for the
	// caller to get this identity. Empty never matches.
	Selectors []attest.Selector
	// SVID is the current X.509-SVID: chain (leaf first) and private key.
	SVID *x509svid.SVID
	// Hint tells a workload holding several identities which is for what.
	Hint string
	// JWTTTL is the lifetime asked of the JWT minter; zero lets it choose.
	JWTTTL time.Duration
}

// State is an immutable snapshot of what the agent can serve: it is never
// modified once Set, and a new State replaces the old one as a whole.
type State struct {
	// Identities in the order the Workload API returns them; a workload that
	// wants one SVID takes the first it is entitled to.
	Identities []Identity
	// Bundle is our trust domain's X.509 and JWT authorities. Every identity
	// is in its trust domain.
	Bundle *spiffebundle.Bundle
}

// StateHolder publishes States to the Workload API streams. Set replaces the
// State, Current reads it (an atomic load), and Changed lets a stream sleep
// until the next one. Safe for concurrent use; the zero value is not usable,
// call NewStateHolder.
type StateHolder struct {
	cur atomic.Pointer[published]
}

// published is one State as served: the State, its wire forms computed once
// in Set, and a channel closed when a newer State replaces it.
type published struct {
	state *State
	next  chan struct{}

	trustDomainID string   // "spiffe://example.org", the key of bundle maps
	x509Bundle    []byte   // DER of the X.509 authorities, concatenated
	jwks          []byte   // JWT authorities as a JWKS document
	jwksSum       [32]byte // sha256 of jwks: JWT-SVIDs cached under one JWKS are not served under another
	identities    []servedIdentity
}

// servedIdentity is an Identity with its SVID in wire form.
type servedIdentity struct {
	*Identity
	chain []byte // DER certificates, leaf first, concatenated
	key   []byte // PKCS#8 DER
}

// closed is returned by Changed for a State that is already superseded.
var closed = func() chan struct{} {
	c := make(chan struct{})
	close(c)
	return c
}()

// NewStateHolder returns a holder with no State yet.
func NewStateHolder() *StateHolder {
	h := &StateHolder{}
	h.cur.Store(&published{next: make(chan struct{})})
	return h
}

// Set validates s and makes it the current State, waking everything waiting
// in Changed. The holder takes ownership: s must not be modified afterwards.
// An invalid s is refused with the reason and the current State is kept.
func (h *StateHolder) Set(s *State) error {
	p, err := publish(s)
	if err != nil {
		return fmt.Errorf("agent state: %w", err)
	}
	old := h.cur.Swap(p)
	close(old.next)
	return nil
}

// Current returns the current State, nil until the first Set.
func (h *StateHolder) Current() *State { return h.cur.Load().state }

// Changed returns a channel that is closed once a State newer than s is Set.
// If s is no longer current the channel is already closed. Changed(nil)
// before the first Set waits for the first State. A wake-up means "look
// again", not "something relevant changed": setting an equal State wakes
// waiters too.
func (h *StateHolder) Changed(s *State) <-chan struct{} {
	p := h.cur.Load()
	if p.state != s {
		return closed
	}
	return p.next
}

// load returns the current published State (its state is nil before the
// first Set).
func (h *StateHolder) load() *published { return h.cur.Load() }

// publish validates s and computes what the Workload API serves from it.
func publish(s *State) (*published, error) {
	if s == nil {
		return nil, errors.New("nil state")
	}
	if s.Bundle == nil {
		return nil, errors.New("no trust bundle")
	}
	td := s.Bundle.TrustDomain()
	authorities := s.Bundle.X509Authorities()
	if len(authorities) == 0 {
		return nil, fmt.Errorf("trust bundle for %q has no X.509 authorities", td)
	}
	p := &published{
		state:         s,
		next:          make(chan struct{}),
		trustDomainID: td.IDString(),
		x509Bundle:    concatDER(authorities),
	}
	jwks, err := s.Bundle.JWTBundle().Marshal()
	if err != nil {
		return nil, fmt.Errorf("trust bundle for %q: JWT authorities: %w", td, err)
	}
	p.jwks = jwks
	p.jwksSum = sha256.Sum256(jwks)

	p.identities = make([]servedIdentity, 0, len(s.Identities))
	for i := range s.Identities {
		id := &s.Identities[i]
		served, err := serve(id, td)
		if err != nil {
			return nil, fmt.Errorf("identity %d (%q): %w", i, id.EntryID, err)
		}
		p.identities = append(p.identities, served)
	}
	return p, nil
}

func serve(id *Identity, td spiffeid.TrustDomain) (servedIdentity, error) {
	switch {
	case id.EntryID == "":
		return servedIdentity{}, errors.New("no entry ID")
	case id.SPIFFEID.IsZero():
		return servedIdentity{}, errors.New("no SPIFFE ID")
	case !id.SPIFFEID.MemberOf(td):
		return servedIdentity{}, fmt.Errorf("%s is not in trust domain %q", id.SPIFFEID, td)
	case len(id.Selectors) == 0:
		return servedIdentity{}, errors.New("no selectors")
	case id.SVID == nil || len(id.SVID.Certificates) == 0 || id.SVID.PrivateKey == nil:
		return servedIdentity{}, errors.New("no X.509-SVID")
	case id.SVID.ID != id.SPIFFEID:
		return servedIdentity{}, fmt.Errorf("X.509-SVID is for %s, not %s", id.SVID.ID, id.SPIFFEID)
	case id.JWTTTL < 0:
		return servedIdentity{}, fmt.Errorf("negative JWT TTL %s", id.JWTTTL)
	}
	chain := concatDER(id.SVID.Certificates)
	key, err := x509.MarshalPKCS8PrivateKey(id.SVID.PrivateKey)
	if err != nil {
		return servedIdentity{}, fmt.Errorf("X.509-SVID private key: %w", err)
	}
	// What a workload will do with it: refuse now rather than serve an SVID
	// no client can parse (wrong key, key usage, SPIFFE ID).
	if _, err := x509svid.ParseRaw(chain, key); err != nil {
		return servedIdentity{}, fmt.Errorf("X.509-SVID: %w", err)
	}
	return servedIdentity{Identity: id, chain: chain, key: key}, nil
}

func concatDER(certs []*x509.Certificate) []byte {
	var n int
	for _, c := range certs {
		n += len(c.Raw)
	}
	out := make([]byte, 0, n)
	for _, c := range certs {
		out = append(out, c.Raw...)
	}
	return out
}

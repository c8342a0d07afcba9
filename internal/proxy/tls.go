package proxy

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"net/url"
	"strconv"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

// ALPN protocols offered and accepted on mesh connections. alpnTCP marks a
// TCP passthrough stream so the inbound side need not sniff it (a
// server-speaks-first protocol would otherwise wait for the sniff deadline).
const (
	alpnH2   = "h2"
	alpnH1   = "http/1.1"
	alpnTCP  = "trustmesh-tcp"
	minTLS   = tls.VersionTLS13
	dialTime = 5 * time.Second
)

// curvePreferences prefers the hybrid post-quantum group.
var curvePreferences = []tls.CurveID{tls.X25519MLKEM768, tls.X25519}

// Reasons a peer is refused, as metric labels.
const (
	refuseNoCert    = "no_certificate"
	refuseForeignTD = "foreign_trust_domain"
	refuseUntrusted = "untrusted"
	refuseRevoked   = "revoked"
	refuseNotAllow  = "not_allowed"
)

// errRevoked is returned when a peer's SVID is revoked.
var errRevoked = errors.New("peer SVID is revoked")

// peer is the verified identity of the other side of a mesh connection.
type peer struct {
	id   spiffeid.ID
	idS  string // id.String(), computed once per connection
	leaf *x509.Certificate
	sni  string // the TLS server name the peer sent (inbound), for connection.sni
	// group is the negotiated key exchange group, for access logs.
	group string
}

// refusal is a peer verification failure with its metric reason.
type refusal struct {
	reason string
	err    error
}

func (r *refusal) Error() string { return r.err.Error() }
func (r *refusal) Unwrap() error { return r.err }

// verifyPeer checks a handshake's peer: an X.509-SVID chaining to the
// source's bundle, in our trust domain, not revoked per the current
// snapshot, and accepted by allow (if set). It runs in VerifyConnection, so
// on resumed sessions too.
func (p *Proxy) verifyPeer(dir string, cs tls.ConnectionState, allow func(spiffeid.ID) error) error {
	err := p.checkPeer(cs.PeerCertificates, allow)
	if err != nil {
		reason := refuseUntrusted
		var r *refusal
		if errors.As(err, &r) {
			reason = r.reason
		}
		p.metrics.refused.WithLabelValues(dir, reason).Inc()
		p.log.Warn("peer refused", slog.String(logDirection, dir), slog.String(logReason, reason), slog.Any(logError, err))
	}
	return err
}

func (p *Proxy) checkPeer(certs []*x509.Certificate, allow func(spiffeid.ID) error) error {
	if len(certs) == 0 {
		return &refusal{refuseNoCert, errors.New("peer presented no certificate")}
	}
	id, err := x509svid.IDFromCert(certs[0])
	if err != nil {
		return &refusal{refuseUntrusted, fmt.Errorf("peer certificate is not an X.509-SVID: %w", err)}
	}
	if !id.MemberOf(p.cfg.TrustDomain) {
		return &refusal{refuseForeignTD, fmt.Errorf("peer %s is not in trust domain %s", id, p.cfg.TrustDomain)}
	}
	if _, _, err := x509svid.Verify(certs, p.cfg.Source); err != nil {
		return &refusal{refuseUntrusted, fmt.Errorf("peer %s: %w", id, err)}
	}
	if revoked, why := p.view.Load().revocations().Revoked(certs[0]); revoked {
		return &refusal{refuseRevoked, fmt.Errorf("peer %s: %w: %s", id, errRevoked, why)}
	}
	if allow != nil {
		if err := allow(id); err != nil {
			return &refusal{refuseNotAllow, err}
		}
	}
	return nil
}

// peerFromState returns the verified peer of a completed handshake.
func peerFromState(cs tls.ConnectionState) (*peer, error) {
	if len(cs.PeerCertificates) == 0 {
		return nil, errors.New("no peer certificate")
	}
	id, err := x509svid.IDFromCert(cs.PeerCertificates[0])
	if err != nil {
		return nil, err
	}
	return &peer{id: id, idS: id.String(), leaf: cs.PeerCertificates[0], sni: cs.ServerName, group: groupName(cs.CurveID)}, nil
}

// observeHandshake records a completed handshake's negotiated group.
func (p *Proxy) observeHandshake(dir string, cs tls.ConnectionState, remote net.Addr) {
	group := groupName(cs.CurveID)
	p.metrics.handshakes.WithLabelValues(dir, group, strconv.FormatBool(cs.DidResume)).Inc()
	if p.log.Enabled(context.Background(), slog.LevelDebug) {
		p.log.Debug("tls handshake", slog.String(logDirection, dir), slog.String(logGroup, group),
			slog.Bool(logResumed, cs.DidResume), slog.String(logRemote, remote.String()))
	}
}

// newServerTLS is the single inbound TLS config. It lives as long as the
// proxy so that its session ticket keys stay valid.
func (p *Proxy) newServerTLS() *tls.Config {
	cfg := &tls.Config{
		MinVersion:       minTLS,
		CurvePreferences: curvePreferences,
		GetCertificate:   tlsconfig.GetCertificate(p.cfg.Source),
		// The chain is verified in VerifyConnection against the SPIFFE
		// bundle (not a Web PKI pool), on full and resumed handshakes.
		ClientAuth: tls.RequireAnyClientCert,
		NextProtos: []string{alpnH2, alpnH1, alpnTCP},
		VerifyConnection: func(cs tls.ConnectionState) error {
			return p.verifyPeer(dirInbound, cs, nil)
		},
	}
	// A resumed session carries the client certificate of its original full
	// handshake. SVIDs live minutes to hours and rotate at half-life, so a
	// client could resume with a certificate that has expired since and be
	// refused as "bad certificate" (seen in the rotation-under-load test).
	// Tickets record the client certificate's expiry, and a session whose
	// certificate expires within sessionMargin is not resumed: the client
	// falls back to a full handshake with its current SVID.
	//
	// Likewise a session whose client certificate was revoked after the
	// ticket was issued is not resumed: the client (whose agent has minted
	// it a new SVID by then) falls back to a full handshake with its
	// current certificate. Refusing the resumption outright instead would
	// lock the client out until its cached ticket aged out, since a TLS
	// client keeps offering the ticket it has. Tickets record what the
	// revocation list matches on: serial, SPIFFE ID and NotBefore.
	cfg.WrapSession = func(cs tls.ConnectionState, ss *tls.SessionState) ([]byte, error) {
		if len(cs.PeerCertificates) > 0 {
			leaf := cs.PeerCertificates[0]
			ss.Extra = append(ss.Extra, encodeSessionNotAfter(leaf.NotAfter), encodeSessionPeer(leaf))
		}
		return cfg.EncryptTicket(cs, ss)
	}
	cfg.UnwrapSession = func(identity []byte, cs tls.ConnectionState) (*tls.SessionState, error) {
		ss, err := cfg.DecryptTicket(identity, cs)
		if err != nil || ss == nil {
			return nil, err
		}
		notAfter, ok := sessionNotAfter(ss.Extra)
		if !ok || !time.Now().Add(sessionMargin).Before(notAfter) {
			return nil, nil // full handshake
		}
		leaf, ok := sessionPeer(ss.Extra)
		if !ok {
			return nil, nil
		}
		if revoked, _ := p.view.Load().revocations().Revoked(leaf); revoked {
			return nil, nil
		}
		return ss, nil
	}
	return cfg
}

const sessionPeerTag = "trustmesh-peer:"

// encodeSessionPeer records a client certificate's serial, NotBefore and
// URI SAN (its SPIFFE ID) in a ticket: tag, 8-byte NotBefore, 2-byte serial
// length, serial, URI.
func encodeSessionPeer(leaf *x509.Certificate) []byte {
	serial := leaf.SerialNumber.Bytes()
	var uri string
	if len(leaf.URIs) > 0 {
		uri = leaf.URIs[0].String()
	}
	b := make([]byte, 0, len(sessionPeerTag)+10+len(serial)+len(uri))
	b = append(b, sessionPeerTag...)
	b = binary.BigEndian.AppendUint64(b, uint64(leaf.NotBefore.Unix())) //nolint:gosec // G115: certificate times are after 1970
	b = binary.BigEndian.AppendUint16(b, uint16(len(serial)))           //nolint:gosec // G115: serials are at most 20 bytes (RFC 5280)
	b = append(b, serial...)
	return append(b, uri...)
}

// sessionPeer rebuilds what encodeSessionPeer recorded as a certificate
// that the revocation list can be asked about.
func sessionPeer(extra [][]byte) (*x509.Certificate, bool) {
	for _, e := range extra {
		v, ok := bytes.CutPrefix(e, []byte(sessionPeerTag))
		if !ok || len(v) < 10 {
			continue
		}
		notBefore := time.Unix(int64(binary.BigEndian.Uint64(v)), 0) //nolint:gosec // G115: written by encodeSessionPeer
		n := int(binary.BigEndian.Uint16(v[8:]))
		if len(v) < 10+n {
			return nil, false
		}
		leaf := &x509.Certificate{SerialNumber: new(big.Int).SetBytes(v[10 : 10+n]), NotBefore: notBefore}
		if rest := string(v[10+n:]); rest != "" {
			u, err := url.Parse(rest)
			if err != nil {
				return nil, false
			}
			leaf.URIs = []*url.URL{u}
		}
		return leaf, true
	}
	return nil, false
}

// sessionMargin: a session is not resumed when its client certificate
// expires sooner than this.
const sessionMargin = 5 * time.Second

const sessionNotAfterTag = "trustmesh-peer-not-after:"

func encodeSessionNotAfter(t time.Time) []byte {
	b := make([]byte, 0, len(sessionNotAfterTag)+8)
	b = append(b, sessionNotAfterTag...)
	return binary.BigEndian.AppendUint64(b, uint64(t.Unix())) //nolint:gosec // G115: certificate times are after 1970
}

func sessionNotAfter(extra [][]byte) (time.Time, bool) {
	for _, e := range extra {
		if v, ok := bytes.CutPrefix(e, []byte(sessionNotAfterTag)); ok && len(v) == 8 {
			return time.Unix(int64(binary.BigEndian.Uint64(v)), 0), true //nolint:gosec // G115: written by encodeSessionNotAfter
		}
	}
	return time.Time{}, false
}

// newClientTLS is the base outbound TLS config; dialMesh clones it per
// dial to set the ALPN list and the allowed peer identities.
func (p *Proxy) newClientTLS() *tls.Config {
	return &tls.Config{
		MinVersion:           minTLS,
		CurvePreferences:     curvePreferences,
		GetClientCertificate: tlsconfig.GetClientCertificate(p.cfg.Source),
		// Server names do not identify mesh peers, SPIFFE IDs do: the chain
		// and the ID are verified in VerifyConnection.
		InsecureSkipVerify: true, //nolint:gosec // verified in VerifyConnection against the SPIFFE bundle
		ClientSessionCache: tls.NewLRUClientSessionCache(1024),
	}
}

// dialMesh dials addr, an endpoint of up, with mTLS offering nextProtos,
// and accepts only a peer that up allows at this moment.
func (p *Proxy) dialMesh(ctx context.Context, up upstreamKey, addr string, nextProtos []string) (*tls.Conn, *peer, error) {
	cfg := p.clientTLS.Clone()
	cfg.NextProtos = nextProtos
	cfg.VerifyConnection = func(cs tls.ConnectionState) error {
		return p.verifyPeer(dirOutbound, cs, func(id spiffeid.ID) error { return p.allowUpstream(up, addr, id) })
	}
	d := net.Dialer{Timeout: dialTime, KeepAlive: 30 * time.Second}
	raw, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, nil, fmt.Errorf("dial %s: %w", addr, err)
	}
	hctx, cancel := context.WithTimeout(ctx, handshakeTimeout)
	defer cancel()
	tc := tls.Client(raw, cfg)
	if err := tc.HandshakeContext(hctx); err != nil {
		_ = raw.Close()
		return nil, nil, fmt.Errorf("tls handshake with %s: %w", addr, err)
	}
	cs := tc.ConnectionState()
	p.observeHandshake(dirOutbound, cs, raw.RemoteAddr())
	pr, err := peerFromState(cs)
	if err != nil {
		_ = tc.Close()
		return nil, nil, err
	}
	return tc, pr, nil
}

// allowUpstream reports whether id may serve up at endpoint addr: one of
// the service's spiffe_ids, and the endpoint's own spiffe_id when it has
// one. It reads the current snapshot.
func (p *Proxy) allowUpstream(up upstreamKey, addr string, id spiffeid.ID) error {
	svc := p.view.Load().service(up.name, up.namespace)
	if svc == nil {
		return fmt.Errorf("service %s.%s is not in the current snapshot", up.name, up.namespace)
	}
	if _, ok := svc.ids[id]; !ok {
		return fmt.Errorf("peer %s is not allowed to serve %s", id, svc.label)
	}
	if sp := svc.port(up.port); sp != nil {
		if want, ok := sp.endpointID(addr); ok && !want.IsZero() && want != id {
			return fmt.Errorf("peer %s at %s: endpoint expects %s", id, addr, want)
		}
	}
	return nil
}

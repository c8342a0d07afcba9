package proxy

import (
	"errors"
	"fmt"
	"math/big"
	"net"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/protobuf/proto"

	configsyncv1 "github.com/trustmesh/trustmesh/api/configsync/v1"
	"github.com/trustmesh/trustmesh/internal/authn"
	"github.com/trustmesh/trustmesh/internal/ca"
)

// mtlsMode is an inbound port's PeerAuthentication mode.
type mtlsMode uint8

const (
	modeStrict mtlsMode = iota
	modePermissive
	modeDisable
)

func (m mtlsMode) String() string {
	switch m {
	case modePermissive:
		return "PERMISSIVE"
	case modeDisable:
		return "DISABLE"
	default:
		return "STRICT"
	}
}

func parseMode(s string) (mtlsMode, error) {
	switch s {
	case "STRICT":
		return modeStrict, nil
	case "PERMISSIVE":
		return modePermissive, nil
	case "DISABLE":
		return modeDisable, nil
	}
	return 0, fmt.Errorf("mode %q: want STRICT, PERMISSIVE or DISABLE", s)
}

// protocol is a service port's application protocol.
type protocol uint8

const (
	protoTCP protocol = iota
	protoHTTP
	protoHTTP2
	protoGRPC
)

func (p protocol) String() string {
	return [...]string{"TCP", "HTTP", "HTTP2", "GRPC"}[p]
}

// isHTTP reports whether the protocol is forwarded at L7.
func (p protocol) isHTTP() bool { return p != protoTCP }

// wantsH2 reports whether the protocol is carried over HTTP/2 between
// proxies (and h2c to the app).
func (p protocol) wantsH2() bool { return p == protoHTTP2 || p == protoGRPC }

func parseProtocol(s string) (protocol, error) {
	switch s {
	case "TCP":
		return protoTCP, nil
	case "HTTP":
		return protoHTTP, nil
	case "HTTP2":
		return protoHTTP2, nil
	case "GRPC":
		return protoGRPC, nil
	}
	return 0, fmt.Errorf("protocol %q: want HTTP, HTTP2, GRPC or TCP", s)
}

// view is the compiled, immutable form of a snapshot. It is built once by
// compile and then only read, from any goroutine, through
// Proxy.view (an atomic.Pointer). The only mutable parts are the
// round-robin counters, which are atomics.
type view struct {
	version   uint64
	snapshot  *configsyncv1.Snapshot // a private clone, for /config_dump
	appliedAt time.Time

	services map[serviceKey]*service
	hosts    map[string]*service

	defaultMode mtlsMode
	portModes   map[uint32]mtlsMode

	revoked *ca.RevocationList

	// sec is the compiled authorization config.
	sec *security
	// self is the SPIFFE ID the snapshot was computed for (this proxy's).
	self string
	// tap: an operator is watching; send request summaries.
	tap bool
}

type serviceKey struct{ namespace, name string }

func (k serviceKey) String() string { return k.name + "." + k.namespace }

type service struct {
	key   serviceKey
	label string // "name.namespace", for metrics and messages
	ids   map[spiffeid.ID]struct{}
	// ports in snapshot order; the first is the default port.
	ports []*servicePort
}

func (s *service) port(p uint32) *servicePort {
	if p == 0 {
		if len(s.ports) == 0 {
			return nil
		}
		return s.ports[0]
	}
	for _, sp := range s.ports {
		if sp.port == p {
			return sp
		}
	}
	return nil
}

type servicePort struct {
	svc       *service
	port      uint32
	protocol  protocol
	endpoints []endpoint
	next      atomic.Uint32 // round robin
}

type endpoint struct {
	address string
	id      spiffeid.ID // zero: any of the service's IDs
	idS     string      // id.String(), for metric labels
}

// pick returns the next endpoint in round-robin order.
func (sp *servicePort) pick() (endpoint, bool) {
	n := len(sp.endpoints)
	if n == 0 {
		return endpoint{}, false
	}
	i := sp.next.Add(1) - 1
	return sp.endpoints[int(i%uint32(n))], true //nolint:gosec // G115: n is a slice length, far below 2^32
}

// endpointID returns the expected identity of the endpoint at addr, or the
// zero ID if any of the service's IDs is acceptable.
func (sp *servicePort) endpointID(addr string) (spiffeid.ID, bool) {
	for _, ep := range sp.endpoints {
		if ep.address == addr {
			return ep.id, true
		}
	}
	return spiffeid.ID{}, false
}

// mode returns the mTLS mode for an application port.
func (v *view) mode(appPort uint32) mtlsMode {
	if v == nil {
		return modeStrict // no snapshot yet: fail closed
	}
	if m, ok := v.portModes[appPort]; ok {
		return m
	}
	return v.defaultMode
}

func (v *view) service(name, namespace string) *service {
	if v == nil {
		return nil
	}
	if namespace == "" {
		namespace = "default"
	}
	return v.services[serviceKey{namespace: namespace, name: name}]
}

// compile validates s completely and builds its view. Every error names the
// offending field, e.g. "services[1].endpoints[0].address".
func compile(s *configsyncv1.Snapshot, td spiffeid.TrustDomain, keys *authn.KeySets, cacheSize int, now time.Time) (*view, error) {
	if s == nil {
		return nil, errors.New("snapshot is nil")
	}
	var errs []error
	fail := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }

	parseID := func(field, raw string) (spiffeid.ID, bool) {
		id, err := spiffeid.FromString(raw)
		if err != nil {
			fail("%s %q: %v", field, raw, err)
			return spiffeid.ID{}, false
		}
		if !id.MemberOf(td) {
			fail("%s %q: not in trust domain %q", field, raw, td.Name())
			return spiffeid.ID{}, false
		}
		return id, true
	}

	v := &view{
		tap:       s.GetTap(),
		version:   s.GetVersion(),
		snapshot:  proto.Clone(s).(*configsyncv1.Snapshot),
		appliedAt: now,
		services:  make(map[serviceKey]*service, len(s.GetServices())),
		hosts:     make(map[string]*service),
		portModes: make(map[uint32]mtlsMode),
	}
	if s.GetSpiffeId() != "" {
		if _, ok := parseID("spiffe_id", s.GetSpiffeId()); ok {
			v.self = s.GetSpiffeId()
		}
	}

	for i, ps := range s.GetServices() {
		f := fmt.Sprintf("services[%d]", i)
		if ps == nil {
			fail("%s: nil", f)
			continue
		}
		svc := &service{ids: make(map[spiffeid.ID]struct{}, len(ps.GetSpiffeIds()))}
		if err := validateName(ps.GetName()); err != nil {
			fail("%s.name %q: %v", f, ps.GetName(), err)
		}
		ns := ps.GetNamespace()
		if ns == "" {
			ns = "default"
		} else if err := validateName(ns); err != nil {
			fail("%s.namespace %q: %v", f, ns, err)
		}
		svc.key = serviceKey{namespace: ns, name: ps.GetName()}
		svc.label = svc.key.String()
		if _, dup := v.services[svc.key]; dup {
			fail("%s: duplicate service %s", f, svc.label)
		}
		v.services[svc.key] = svc

		for j, raw := range ps.GetSpiffeIds() {
			if id, ok := parseID(fmt.Sprintf("%s.spiffe_ids[%d]", f, j), raw); ok {
				svc.ids[id] = struct{}{}
			}
		}
		for j, pp := range ps.GetPorts() {
			pf := fmt.Sprintf("%s.ports[%d]", f, j)
			if pp == nil {
				fail("%s: nil", pf)
				continue
			}
			if pp.GetPort() == 0 || pp.GetPort() > 65535 {
				fail("%s.port %d: want 1 to 65535", pf, pp.GetPort())
			}
			if pp.GetTargetPort() > 65535 {
				fail("%s.target_port %d: want 0 to 65535", pf, pp.GetTargetPort())
			}
			proto, err := parseProtocol(pp.GetProtocol())
			if err != nil {
				fail("%s.protocol: %v", pf, err)
			}
			if svc.port(pp.GetPort()) != nil {
				fail("%s.port %d: duplicate", pf, pp.GetPort())
			}
			svc.ports = append(svc.ports, &servicePort{svc: svc, port: pp.GetPort(), protocol: proto})
		}
		for j, pe := range ps.GetEndpoints() {
			ef := fmt.Sprintf("%s.endpoints[%d]", f, j)
			if pe == nil {
				fail("%s: nil", ef)
				continue
			}
			if err := validateEndpointAddr(pe.GetAddress()); err != nil {
				fail("%s.address %q: %v", ef, pe.GetAddress(), err)
			}
			ep := endpoint{address: pe.GetAddress()}
			if raw := pe.GetSpiffeId(); raw != "" {
				if id, ok := parseID(ef+".spiffe_id", raw); ok {
					if _, allowed := svc.ids[id]; !allowed {
						fail("%s.spiffe_id %q: not one of the service's spiffe_ids", ef, raw)
					}
					ep.id, ep.idS = id, id.String()
				}
			}
			sp := svc.port(pe.GetPort())
			if pe.GetPort() == 0 || sp == nil {
				fail("%s.port %d: not a port of the service", ef, pe.GetPort())
				continue
			}
			sp.endpoints = append(sp.endpoints, ep)
		}
		for j, h := range ps.GetHosts() {
			host := normalizeHost(h)
			if err := validateHost(host); err != nil {
				fail("%s.hosts[%d] %q: %v", f, j, h, err)
				continue
			}
			if other, dup := v.hosts[host]; dup && other != svc {
				fail("%s.hosts[%d] %q: also a host of service %s", f, j, h, other.label)
				continue
			}
			v.hosts[host] = svc
		}
	}

	in := s.GetInbound()
	v.defaultMode = modeStrict
	if dm := in.GetDefaultMode(); dm != "" {
		m, err := parseMode(dm)
		if err != nil {
			fail("inbound.default_mode: %v", err)
		}
		v.defaultMode = m
	}
	for port, raw := range in.GetPortModes() {
		if port == 0 || port > 65535 {
			fail("inbound.port_modes[%d]: port out of range", port)
			continue
		}
		m, err := parseMode(raw)
		if err != nil {
			fail("inbound.port_modes[%d]: %v", port, err)
			continue
		}
		v.portModes[port] = m
	}

	var serials []ca.RevokedSerial
	var ids []ca.RevokedID
	for i, r := range s.GetRevocations() {
		f := fmt.Sprintf("revocations[%d]", i)
		switch {
		case r == nil:
			fail("%s: nil", f)
		case (r.GetSerial() == "") == (r.GetSpiffeId() == ""):
			fail("%s: want exactly one of serial and spiffe_id", f)
		case r.GetSerial() != "":
			n, ok := new(big.Int).SetString(r.GetSerial(), 10)
			if !ok || n.Sign() < 0 {
				fail("%s.serial %q: want a non-negative decimal number", f, r.GetSerial())
				continue
			}
			serials = append(serials, n.String())
		default:
			// Revoked IDs may be of any trust domain: refusing more is safe.
			id, err := spiffeid.FromString(r.GetSpiffeId())
			if err != nil {
				fail("%s.spiffe_id %q: %v", f, r.GetSpiffeId(), err)
				continue
			}
			if r.GetRevokedAtUnixNano() <= 0 {
				fail("%s.revoked_at_unix_nano: required with spiffe_id", f)
				continue
			}
			ids = append(ids, ca.RevokedID{ID: id, RevokedAt: time.Unix(0, r.GetRevokedAtUnixNano())})
		}
	}
	v.revoked = ca.NewRevocationList(serials, ids)

	sec, err := compileSecurity(s.GetPolicies(), td, keys, cacheSize)
	if err != nil {
		fail("%v", err)
	}
	v.sec = sec

	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return v, nil
}

// validateEndpointAddr checks a dialable host:port.
func validateEndpointAddr(s string) error {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return errors.New("want host:port")
	}
	if host == "" {
		return errors.New("host is empty")
	}
	if err := validateHost(strings.ToLower(host)); err != nil && net.ParseIP(host) == nil {
		return err
	}
	if p, err := strconv.ParseUint(port, 10, 16); err != nil || p == 0 {
		return fmt.Errorf("port %q: want a number from 1 to 65535", port)
	}
	return nil
}

// normalizeHost lowercases a host and removes a trailing dot. The input
// must not carry a port.
func normalizeHost(h string) string {
	h = strings.TrimSuffix(h, ".")
	return strings.ToLower(h)
}

// validateHost checks a normalized DNS name (letters, digits, '-', '.').
func validateHost(h string) error {
	if h == "" || len(h) > 253 {
		return errors.New("want a DNS name of 1 to 253 characters")
	}
	for _, label := range strings.Split(h, ".") {
		if label == "" || len(label) > 63 {
			return errors.New("empty or too long label")
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '-' && c != '_' {
				return errors.New("want lowercase letters, digits, '-' and '.'")
			}
		}
	}
	return nil
}

// revocations returns the revocation list; nil (revoking nothing) before
// the first snapshot.
func (v *view) revocations() *ca.RevocationList {
	if v == nil {
		return nil
	}
	return v.revoked
}

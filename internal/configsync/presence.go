package configsync

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	configsyncv1 "github.com/trustmesh/trustmesh/api/configsync/v1"
)

// Several server replicas share one database; a proxy is connected to one
// of them. So that every replica's snapshots carry the endpoints of every
// serving proxy, each replica publishes its ready proxies (its presence)
// and passes the others' to SetRemote. Only what the snapshots need is
// published: identity, listeners, mode.

// presenceVersion is the version of the encoding below; a replica refuses
// another's presence in a version it does not know (a mixed-version
// upgrade then loses remote endpoints for its duration, loudly, rather than
// misreading them).
const presenceVersion = 1

type presenceDoc struct {
	Version int             `json:"version"`
	Proxies []presenceProxy `json:"proxies"`
}

type presenceProxy struct {
	ID       string             `json:"id"`
	SPIFFEID string             `json:"spiffeID"`
	Mode     string             `json:"mode,omitempty"`
	Version  string             `json:"version,omitempty"`
	Inbound  []presenceListener `json:"inbound,omitempty"`
}

type presenceListener struct {
	Address string `json:"address"`
	AppPort uint32 `json:"appPort"`
}

// EncodePresence encodes ready proxies for the other replicas.
func EncodePresence(ps []ProxyInfo) ([]byte, error) {
	doc := presenceDoc{Version: presenceVersion, Proxies: make([]presenceProxy, 0, len(ps))}
	for _, p := range ps {
		pp := presenceProxy{ID: p.ID, SPIFFEID: p.SPIFFEID.String(), Mode: p.Mode, Version: p.Version}
		for _, l := range p.Inbound {
			pp.Inbound = append(pp.Inbound, presenceListener{Address: l.GetAddress(), AppPort: l.GetAppPort()})
		}
		doc.Proxies = append(doc.Proxies, pp)
	}
	return json.Marshal(doc)
}

// DecodePresence decodes another replica's presence. Every proxy must be a
// workload of td, as the hub's own authentication requires of a direct
// connection, so a row written by hand into the database cannot add an
// endpoint for an identity outside the trust domain.
func DecodePresence(b []byte, td spiffeid.TrustDomain) ([]ProxyInfo, error) {
	var doc presenceDoc
	if err := json.Unmarshal(b, &doc); err != nil {
		return nil, fmt.Errorf("decode proxy presence: %w", err)
	}
	if doc.Version != presenceVersion {
		return nil, fmt.Errorf("proxy presence version %d: this server reads version %d (replicas of different versions?)", doc.Version, presenceVersion)
	}
	out := make([]ProxyInfo, 0, len(doc.Proxies))
	for i, pp := range doc.Proxies {
		id, err := spiffeid.FromString(pp.SPIFFEID)
		if err != nil {
			return nil, fmt.Errorf("proxy presence: proxies[%d].spiffeID: %w", i, err)
		}
		if id.TrustDomain() != td || strings.HasPrefix(id.Path(), "/trustmesh/") {
			return nil, fmt.Errorf("proxy presence: proxies[%d].spiffeID %s is not a workload of trust domain %s", i, id, td)
		}
		if pp.ID == "" {
			return nil, fmt.Errorf("proxy presence: proxies[%d].id is empty", i)
		}
		p := ProxyInfo{ID: pp.ID, SPIFFEID: id, Mode: pp.Mode, Version: pp.Version, Ready: true}
		for _, l := range pp.Inbound {
			p.Inbound = append(p.Inbound, &configsyncv1.InboundListener{Address: l.Address, AppPort: l.AppPort})
		}
		out = append(out, p)
	}
	return out, nil
}

// LocalReady returns the ready proxies connected to this hub, ordered by
// proxy ID: this replica's presence.
func (s *Server) LocalReady() []ProxyInfo {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]ProxyInfo, 0, len(s.proxies))
	for c := range s.proxies {
		if c.status.Ready {
			out = append(out, c.status.ProxyInfo)
		}
	}
	slices.SortFunc(out, func(a, b ProxyInfo) int { return strings.Compare(a.ID, b.ID) })
	return out
}

// LocalChanges is signalled (coalesced) whenever the set of ready local
// proxies may have changed, so that the presence is republished promptly.
func (s *Server) LocalChanges() <-chan struct{} { return s.localChanged }

func (s *Server) signalLocalChange() {
	select {
	case s.localChanged <- struct{}{}:
	default:
	}
}

// SetRemote replaces the proxies connected to other replicas. A proxy also
// connected here (it moved, and the replica it left has not yet expired
// its presence) is taken from here.
func (s *Server) SetRemote(ps []ProxyInfo) {
	slices.SortFunc(ps, func(a, b ProxyInfo) int { return strings.Compare(a.ID, b.ID) })
	s.mu.Lock()
	same := slices.EqualFunc(s.remote, ps, sameInfo)
	if !same {
		s.remote = ps
	}
	s.mu.Unlock()
	if !same {
		s.markDirty()
	}
}

func sameInfo(a, b ProxyInfo) bool {
	return a.ID == b.ID && a.SPIFFEID == b.SPIFFEID && a.Mode == b.Mode && a.Version == b.Version && a.Ready == b.Ready &&
		slices.EqualFunc(a.Inbound, b.Inbound, func(x, y *configsyncv1.InboundListener) bool {
			return x.GetAddress() == y.GetAddress() && x.GetAppPort() == y.GetAppPort()
		})
}

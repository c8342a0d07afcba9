// Package redirect generates and applies the iptables rules that send a
// pod's TCP traffic through its trustmesh proxy, as istio-init does for
// Envoy: inbound connections to the pod are redirected to the proxy's
// inbound listener, and the app's outbound connections to the proxy's
// outbound listener, except the proxy's own (matched by its uid), so that
// the proxy's connections to other pods leave as they are.
//
// The rules live in the nat table of the pod's network namespace, in chains
// of their own (TRUSTMESH_*). Rules renders them as iptables-restore input
// for the whole nat table, so applying them replaces whatever the table
// held: running trustmesh-init twice in one pod leaves one set of rules.
// Only IPv4 TCP is redirected: IPv6 and UDP (DNS among it) pass untouched.
package redirect

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os/exec"
	"slices"
	"strconv"
	"strings"
)

// The chains the rules add to the nat table.
const (
	// ChainInbound holds the rules for connections arriving at the pod.
	ChainInbound = "TRUSTMESH_INBOUND"
	// ChainInRedirect redirects to the proxy's inbound port.
	ChainInRedirect = "TRUSTMESH_IN_REDIRECT"
	// ChainOutput holds the rules for connections the pod opens.
	ChainOutput = "TRUSTMESH_OUTPUT"
	// ChainRedirect redirects to the proxy's outbound port.
	ChainRedirect = "TRUSTMESH_REDIRECT"
)

// Ports is a set of TCP destination ports: all of them, or a list.
// The zero value is no port.
type Ports struct {
	// All means every port; List is then ignored.
	All bool
	// List holds the ports, each from 1 to 65535.
	List []uint16
}

// AllPorts is the set of every port.
var AllPorts = Ports{All: true}

// ParsePorts parses "*" (every port), "" (none) or a comma-separated list
// of ports such as "80,8080".
func ParsePorts(s string) (Ports, error) {
	s = strings.TrimSpace(s)
	switch s {
	case "":
		return Ports{}, nil
	case "*":
		return AllPorts, nil
	}
	list, err := ParsePortList(s)
	if err != nil {
		return Ports{}, err
	}
	return Ports{List: list}, nil
}

// ParsePortList parses a comma-separated list of ports; "" is none.
// Duplicates are dropped and the list is sorted.
func ParsePortList(s string) ([]uint16, error) {
	var out []uint16
	for f := range strings.SplitSeq(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		n, err := strconv.ParseUint(f, 10, 16)
		if err != nil || n == 0 {
			return nil, fmt.Errorf("port %q: want a number from 1 to 65535", f)
		}
		out = append(out, uint16(n))
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

// ParseCIDRs parses a comma-separated list of IPv4 CIDRs such as
// "10.0.0.0/8,169.254.169.254/32"; a bare address is a /32.
func ParseCIDRs(s string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for f := range strings.SplitSeq(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		var p netip.Prefix
		var err error
		if strings.Contains(f, "/") {
			p, err = netip.ParsePrefix(f)
		} else {
			var a netip.Addr
			if a, err = netip.ParseAddr(f); err == nil {
				p = netip.PrefixFrom(a, a.BitLen())
			}
		}
		if err != nil {
			return nil, fmt.Errorf("CIDR %q: %w", f, err)
		}
		out = append(out, p)
	}
	return out, nil
}

// String is the form ParsePorts reads.
func (p Ports) String() string {
	if p.All {
		return "*"
	}
	return JoinPorts(p.List)
}

// Empty reports whether the set holds no port.
func (p Ports) Empty() bool { return !p.All && len(p.List) == 0 }

// JoinPorts writes ports as a comma-separated list.
func JoinPorts(ports []uint16) string {
	s := make([]string, len(ports))
	for i, p := range ports {
		s[i] = strconv.FormatUint(uint64(p), 10)
	}
	return strings.Join(s, ",")
}

// Config says what to redirect where. Ports are TCP destination ports;
// UDP (DNS among it) is never redirected.
type Config struct {
	// ProxyUID is the uid the proxy runs as: its connections are never
	// redirected. Required, and not 0: root's traffic is not exempt.
	ProxyUID uint32
	// ProxyGID, if not 0, exempts the connections of this group too.
	ProxyGID uint32

	// InboundPort is the proxy's inbound listener; 0 redirects no inbound
	// traffic.
	InboundPort uint16
	// InboundPorts are the destination ports of inbound connections to
	// redirect to InboundPort.
	InboundPorts Ports
	// ExcludeInboundPorts are never redirected (the proxy's admin port,
	// a metrics port scraped in plaintext).
	ExcludeInboundPorts []uint16

	// OutboundPort is the proxy's outbound listener; 0 redirects no
	// outbound traffic.
	OutboundPort uint16
	// OutboundPorts are the destination ports of outbound connections to
	// redirect to OutboundPort.
	OutboundPorts Ports
	// ExcludeOutboundPorts are never redirected.
	ExcludeOutboundPorts []uint16
	// ExcludeOutboundCIDRs are destinations never redirected (IPv4).
	ExcludeOutboundCIDRs []netip.Prefix
}

// Validate checks c and says which field is wrong.
func (c Config) Validate() error {
	var errs []error
	if c.ProxyUID == 0 {
		errs = append(errs, errors.New("proxy uid: required, and not 0 (the proxy must not run as root)"))
	}
	if c.InboundPort == 0 && c.OutboundPort == 0 {
		errs = append(errs, errors.New("nothing to redirect: give an inbound port, an outbound port or both"))
	}
	if c.InboundPort != 0 && c.InboundPorts.Empty() {
		errs = append(errs, fmt.Errorf("inbound port %d: no inbound ports to redirect to it (want * or a list)", c.InboundPort))
	}
	if c.OutboundPort != 0 && c.OutboundPorts.Empty() {
		errs = append(errs, fmt.Errorf("outbound port %d: no outbound ports to redirect to it (want * or a list)", c.OutboundPort))
	}
	if c.InboundPort != 0 && c.InboundPort == c.OutboundPort {
		errs = append(errs, fmt.Errorf("inbound and outbound port are both %d: the proxy needs two listeners", c.InboundPort))
	}
	for _, p := range append(slices.Clone(c.InboundPorts.List), c.ExcludeInboundPorts...) {
		if p == 0 {
			errs = append(errs, errors.New("inbound ports: 0 is not a port"))
		}
	}
	for _, p := range append(slices.Clone(c.OutboundPorts.List), c.ExcludeOutboundPorts...) {
		if p == 0 {
			errs = append(errs, errors.New("outbound ports: 0 is not a port"))
		}
	}
	for _, p := range c.ExcludeOutboundCIDRs {
		if !p.IsValid() || !p.Addr().Is4() {
			errs = append(errs, fmt.Errorf("exclude outbound CIDR %s: want an IPv4 CIDR (only IPv4 is redirected)", p))
		}
	}
	return errors.Join(errs...)
}

// Rules returns the iptables-restore input that installs c in the nat
// table, replacing the table's rules. The output is deterministic: the
// same Config gives the same bytes.
func Rules(c Config) ([]byte, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	var b bytes.Buffer
	w := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	w("# trustmesh redirect: the nat table of this pod's network namespace")
	w("*nat")
	for _, ch := range []string{"PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"} {
		w(":%s ACCEPT [0:0]", ch)
	}
	if c.InboundPort != 0 {
		w(":%s - [0:0]", ChainInbound)
		w(":%s - [0:0]", ChainInRedirect)
	}
	if c.OutboundPort != 0 {
		w(":%s - [0:0]", ChainOutput)
		w(":%s - [0:0]", ChainRedirect)
	}

	// iptables-save lists the rules chain by chain, the built-in chains
	// first, in the order above; so are they written here, and the input
	// reads back the same.
	if c.InboundPort != 0 {
		w("# inbound: connections to the pod go to the proxy's inbound listener")
		w("-A PREROUTING -p tcp -j %s", ChainInbound)
	}
	if c.OutboundPort != 0 {
		w("# outbound: the app's connections go to the proxy's outbound listener")
		w("-A OUTPUT -p tcp -j %s", ChainOutput)
	}
	if c.InboundPort != 0 {
		for _, p := range sortedUnique(c.ExcludeInboundPorts) {
			w("-A %s -p tcp -m tcp --dport %d -j RETURN", ChainInbound, p)
		}
		if c.InboundPorts.All {
			w("-A %s -p tcp -j %s", ChainInbound, ChainInRedirect)
		} else {
			for _, p := range sortedUnique(c.InboundPorts.List) {
				w("-A %s -p tcp -m tcp --dport %d -j %s", ChainInbound, p, ChainInRedirect)
			}
		}
		w("-A %s -p tcp -j REDIRECT --to-ports %d", ChainInRedirect, c.InboundPort)
	}
	if c.OutboundPort != 0 {
		// The proxy's own connections (to other pods, to the server)
		// leave as they are.
		w("-A %s -m owner --uid-owner %d -j RETURN", ChainOutput, c.ProxyUID)
		if c.ProxyGID != 0 {
			w("-A %s -m owner --gid-owner %d -j RETURN", ChainOutput, c.ProxyGID)
		}
		// Loopback: the app talking to itself or to the proxy's listeners.
		w("-A %s -o lo -j RETURN", ChainOutput)
		w("-A %s -d 127.0.0.0/8 -j RETURN", ChainOutput)
		for _, p := range c.ExcludeOutboundCIDRs {
			w("-A %s -d %s -j RETURN", ChainOutput, p.Masked())
		}
		for _, p := range sortedUnique(c.ExcludeOutboundPorts) {
			w("-A %s -p tcp -m tcp --dport %d -j RETURN", ChainOutput, p)
		}
		if c.OutboundPorts.All {
			w("-A %s -p tcp -j %s", ChainOutput, ChainRedirect)
		} else {
			for _, p := range sortedUnique(c.OutboundPorts.List) {
				w("-A %s -p tcp -m tcp --dport %d -j %s", ChainOutput, p, ChainRedirect)
			}
		}
		w("-A %s -p tcp -j REDIRECT --to-ports %d", ChainRedirect, c.OutboundPort)
	}
	w("COMMIT")
	return b.Bytes(), nil
}

func sortedUnique(ports []uint16) []uint16 {
	s := slices.Clone(ports)
	slices.Sort(s)
	return slices.Compact(s)
}

// DefaultRestore is the iptables-restore command Apply runs by default.
const DefaultRestore = "iptables-restore"

// Apply runs iptables-restore (restore, or DefaultRestore if empty) with
// rules on its standard input. It needs CAP_NET_ADMIN in the network
// namespace it changes, the one of the calling thread.
func Apply(ctx context.Context, restore string, rules []byte) error {
	if restore == "" {
		restore = DefaultRestore
	}
	cmd := exec.CommandContext(ctx, restore) // #nosec G204 -- the operator names the binary
	cmd.Stdin = bytes.NewReader(rules)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(out.String())
		if msg == "" {
			return fmt.Errorf("%s: %w", restore, err)
		}
		return fmt.Errorf("%s: %w: %s", restore, err, msg)
	}
	return nil
}

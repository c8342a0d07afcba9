package policy

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// Service is a name clients address, served by the proxies of the Workloads
// it selects, by static endpoints, or both. Only the identities in
// spec.spiffeIDs may serve it: a client's proxy checks the server's SVID
// against them.
type Service struct {
	APIVersion string      `json:"apiVersion"`
	Kind       string      `json:"kind"`
	Metadata   Metadata    `json:"metadata"`
	Spec       ServiceSpec `json:"spec"`
}

// ServiceSpec is the body of a Service.
type ServiceSpec struct {
	// Ports are the ports clients address. At least one is required; each
	// needs a name when there are several.
	Ports []ServicePort `json:"ports,omitempty"`
	// Selector selects the Workloads of the service's namespace whose
	// inbound proxies serve it. A selector or Endpoints (or both) is
	// required.
	Selector *Selector `json:"selector,omitempty"`
	// Endpoints are static servers: an mTLS server (a trustmesh inbound
	// proxy or any SPIFFE server) at a fixed address.
	Endpoints []ServiceEndpoint `json:"endpoints,omitempty"`
	// SPIFFEIDs are the identities allowed to serve the service, workload
	// IDs in the server's trust domain. At least one is required.
	SPIFFEIDs []string `json:"spiffeIDs,omitempty"`
}

// ServicePort is one port of a Service.
type ServicePort struct {
	// Name is a DNS-1123 label, unique in the service; required when the
	// service has several ports.
	Name string `json:"name,omitempty"`
	// Port is the port clients address, 1 to 65535.
	// +kubebuilder:validation:Required
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=65535
	Port uint32 `json:"port,omitempty"`
	// Protocol is the application protocol. Required.
	// +kubebuilder:validation:Required
	Protocol Protocol `json:"protocol,omitempty"`
	// TargetPort is the application's port behind the serving proxies, 1
	// to 65535. Default Port; see Target.
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=65535
	TargetPort uint32 `json:"targetPort,omitempty"`
}

// ServiceEndpoint is a static endpoint of a Service.
type ServiceEndpoint struct {
	// Address is the host:port of the server; the host is an IP address
	// (IPv6 in brackets) or a DNS name.
	Address string `json:"address,omitempty"`
	// Port is the service port (ServicePort.Port) this endpoint serves. It
	// may be left out when the service has exactly one port.
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=65535
	Port uint32 `json:"port,omitempty"`
}

// Protocol is the application protocol of a service port.
//
// +kubebuilder:validation:Enum=HTTP;HTTP2;GRPC;TCP
type Protocol string

// The protocols of service ports.
const (
	ProtocolHTTP  Protocol = "HTTP"
	ProtocolHTTP2 Protocol = "HTTP2"
	ProtocolGRPC  Protocol = "GRPC"
	ProtocolTCP   Protocol = "TCP"
)

var protocols = []Protocol{ProtocolHTTP, ProtocolHTTP2, ProtocolGRPC, ProtocolTCP}

// maxPort is the largest TCP port.
const maxPort = 65535

var _ kindObject = (*Service)(nil)

// GetKind returns "Service".
func (s *Service) GetKind() string { return KindService }

// GetMeta returns the object's metadata.
func (s *Service) GetMeta() *Metadata { return &s.Metadata }

// Namespaced returns true.
func (s *Service) Namespaced() bool { return true }

func (s *Service) typeMeta() (string, string) { return s.APIVersion, s.Kind }

func (s *Service) withTypeMeta() kindObject {
	c := *s
	c.APIVersion, c.Kind = APIVersion, KindService
	return &c
}

// Selects reports whether the service's selector selects w: w is in the
// service's namespace and has every label of spec.selector.matchLabels. A
// service without a selector (or with an empty one) selects nothing.
func (s *Service) Selects(w *Workload) bool {
	return s.Spec.Selector.selects(s.Metadata.Namespace, w)
}

// Hosts returns the names clients address the service by, in lowercase:
// "name", "name.namespace" and "name.namespace.svc". A service without a
// namespace is taken to be in DefaultNamespace, as Decode does.
func (s *Service) Hosts() []string {
	name, ns := strings.ToLower(s.Metadata.Name), strings.ToLower(s.Metadata.Namespace)
	if ns == "" {
		ns = DefaultNamespace
	}
	return []string{name, name + "." + ns, name + "." + ns + ".svc"}
}

// Target returns the application port behind the port: TargetPort if set,
// else Port.
func (p ServicePort) Target() uint32 {
	if p.TargetPort != 0 {
		return p.TargetPort
	}
	return p.Port
}

func (s *Service) validateSpec(v *validator, td spiffeid.TrustDomain) {
	spec := &s.Spec
	validatePorts(v, spec.Ports)

	if spec.Selector == nil && len(spec.Endpoints) == 0 {
		v.add("spec.selector", "is required unless spec.endpoints lists static endpoints: without either, nothing serves the service")
	}
	checkSelector(v, "spec.selector", spec.Selector, "to serve the service from spec.endpoints only")
	validateEndpoints(v, spec.Endpoints, spec.Ports)

	if len(spec.SPIFFEIDs) == 0 {
		v.add("spec.spiffeIDs", "at least one is required: the identities allowed to serve the service, such as spiffe://%s/ns/%s/sa/%s", td.Name(), s.Metadata.Namespace, s.Metadata.Name)
	}
	ids := make(map[string]int, len(spec.SPIFFEIDs))
	for i, id := range spec.SPIFFEIDs {
		field := fmt.Sprintf("spec.spiffeIDs[%d]", i)
		if j, dup := ids[id]; dup {
			v.add(field, "%q repeats spec.spiffeIDs[%d]", id, j)
			continue
		}
		ids[id] = i
		checkWorkloadID(v, field, id, td, "an identity allowed to serve the service")
	}
}

func validatePorts(v *validator, ports []ServicePort) {
	if len(ports) == 0 {
		v.add("spec.ports", "at least one port is required")
	}
	names := make(map[string]int, len(ports))
	numbers := make(map[uint32]int, len(ports))
	for i, p := range ports {
		field := fmt.Sprintf("spec.ports[%d]", i)
		if p.Name == "" {
			if len(ports) > 1 {
				v.add(field+".name", "is required when the service has several ports")
			}
		} else if err := checkDNSLabel(p.Name); err != nil {
			v.add(field+".name", "%q is not a valid port name: %v", p.Name, err)
		} else if j, dup := names[p.Name]; dup {
			v.add(field+".name", "%q repeats spec.ports[%d]", p.Name, j)
		} else {
			names[p.Name] = i
		}

		switch {
		case p.Port == 0:
			v.add(field+".port", "is required: the port clients address, 1 to %d", maxPort)
		case p.Port > maxPort:
			v.add(field+".port", "%d is out of range: a port is 1 to %d", p.Port, maxPort)
		default:
			if j, dup := numbers[p.Port]; dup {
				v.add(field+".port", "%d repeats spec.ports[%d]", p.Port, j)
			} else {
				numbers[p.Port] = i
			}
		}

		switch {
		case p.Protocol == "":
			v.add(field+".protocol", "is required: HTTP, HTTP2, GRPC or TCP")
		case !slices.Contains(protocols, p.Protocol):
			v.add(field+".protocol", "%q is not a protocol: want HTTP, HTTP2, GRPC or TCP", p.Protocol)
		}

		if p.TargetPort > maxPort {
			v.add(field+".targetPort", "%d is out of range: a port is 1 to %d; leave it out to use the port", p.TargetPort, maxPort)
		}
	}
}

func validateEndpoints(v *validator, endpoints []ServiceEndpoint, ports []ServicePort) {
	numbers := make([]string, len(ports))
	for i, p := range ports {
		numbers[i] = strconv.FormatUint(uint64(p.Port), 10)
	}
	portList := strings.Join(numbers, ", ")

	type key struct {
		address string
		port    uint32
	}
	seen := make(map[key]int, len(endpoints))
	for i, e := range endpoints {
		field := fmt.Sprintf("spec.endpoints[%d]", i)
		if e.Address == "" {
			v.add(field+".address", "is required: the host:port of the server, such as 127.0.0.1:15006")
		} else if err := checkHostPort(e.Address); err != nil {
			v.add(field+".address", "%q is not a valid address: %v", e.Address, err)
		}

		port := e.Port
		switch {
		case len(ports) == 0:
			// Reported at spec.ports.
		case port == 0 && len(ports) > 1:
			v.add(field+".port", "is required when the service has several ports: the service port this endpoint serves (%s)", portList)
		case port == 0:
			port = ports[0].Port
		case !slices.ContainsFunc(ports, func(p ServicePort) bool { return p.Port == port }):
			v.add(field+".port", "%d is not a port of the service: want one of spec.ports (%s)", port, portList)
		}

		k := key{e.Address, port}
		if j, dup := seen[k]; dup {
			v.add(field, "repeats spec.endpoints[%d]", j)
			continue
		}
		seen[k] = i
	}
}

// checkHostPort checks a host:port address whose host is an IP address or a
// DNS name.
func checkHostPort(s string) error {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return errors.New("want host:port, such as 127.0.0.1:15006, [::1]:15006 or orders.internal:15006")
	}
	p, err := strconv.ParseUint(port, 10, 16)
	switch {
	case port == "":
		return errors.New("the port is missing")
	case errors.Is(err, strconv.ErrRange):
		return fmt.Errorf("port %s is out of range: a port is 1 to %d", port, maxPort)
	case err != nil:
		return fmt.Errorf("the port %q is not a number", port)
	case p == 0:
		return fmt.Errorf("port 0 is out of range: a port is 1 to %d", maxPort)
	}
	// SplitHostPort accepts a bracketed host only with a port, and an
	// IPv6 address only in brackets.
	bracketed := strings.HasPrefix(s, "[")
	switch ip, err := netip.ParseAddr(host); {
	case host == "":
		return errors.New("the host is missing")
	case err == nil && ip.Zone() != "":
		return errors.New("an IPv6 zone is not allowed")
	case err == nil && bracketed && !ip.Is6():
		return errors.New("only IPv6 addresses are written in brackets")
	case err == nil:
		return nil
	case bracketed:
		return fmt.Errorf("%q in brackets is not an IPv6 address", host)
	}
	if err := checkDNSName(host); err != nil {
		return fmt.Errorf("the host %q is neither an IP address nor a valid DNS name: %w", host, err)
	}
	return nil
}

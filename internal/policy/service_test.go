package policy

import (
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// fullService is the Service of testdata/service.yaml.
func fullService() *Service {
	return &Service{
		APIVersion: APIVersion,
		Kind:       KindService,
		Metadata:   Metadata{Name: "orders", Namespace: "default"},
		Spec: ServiceSpec{
			Ports:     []ServicePort{{Name: "http", Port: 80, Protocol: ProtocolHTTP, TargetPort: 8080}},
			Selector:  &Selector{MatchLabels: map[string]string{"app": "orders"}},
			Endpoints: []ServiceEndpoint{{Address: "127.0.0.1:15006"}},
			SPIFFEIDs: []string{"spiffe://example.org/ns/default/sa/orders"},
		},
	}
}

// endpointsService is the Service of testdata/service-endpoints-only.yaml.
func endpointsService() *Service {
	return &Service{
		APIVersion: APIVersion,
		Kind:       KindService,
		Metadata:   Metadata{Name: "ledger", Namespace: DefaultNamespace},
		Spec: ServiceSpec{
			Ports: []ServicePort{
				{Name: "grpc", Port: 9090, Protocol: ProtocolGRPC},
				{Name: "admin", Port: 9091, Protocol: ProtocolHTTP2, TargetPort: 19091},
				{Name: "raw", Port: 5432, Protocol: ProtocolTCP},
			},
			Endpoints: []ServiceEndpoint{
				{Address: "[2001:db8::1]:15006", Port: 9090},
				{Address: "ledger-1.internal:15006", Port: 9091},
				{Address: "10.0.0.7:15006", Port: 5432},
			},
			SPIFFEIDs: []string{"spiffe://example.org/ns/default/sa/ledger", "spiffe://example.org/legacy/ledger"},
		},
	}
}

func TestValidateServiceAccepts(t *testing.T) {
	for _, tc := range []struct {
		name   string
		modify func(s *Service)
	}{
		{"full", func(*Service) {}},
		{"endpoints-only", func(s *Service) { *s = *endpointsService() }},
		{"selector-only", func(s *Service) { s.Spec.Endpoints = nil }},
		{"no-type-meta", func(s *Service) { s.APIVersion, s.Kind = "", "" }},
		{"port-unnamed-single", func(s *Service) { s.Spec.Ports[0].Name = "" }},
		{"port-max", func(s *Service) { s.Spec.Ports[0].Port, s.Spec.Ports[0].TargetPort = 65535, 65535 }},
		{"target-port-default", func(s *Service) { s.Spec.Ports[0].TargetPort = 0 }},
		{"protocols", func(s *Service) {
			s.Spec.Endpoints = nil
			s.Spec.Ports = []ServicePort{
				{Name: "a", Port: 1, Protocol: ProtocolHTTP},
				{Name: "b", Port: 2, Protocol: ProtocolHTTP2},
				{Name: "c", Port: 3, Protocol: ProtocolGRPC},
				{Name: "d", Port: 4, Protocol: ProtocolTCP, TargetPort: 1},
			}
		}},
		{"endpoint-port-explicit-single", func(s *Service) { s.Spec.Endpoints[0].Port = 80 }},
		{"endpoint-dns-host", func(s *Service) { s.Spec.Endpoints[0].Address = "orders-1.shop.internal:15006" }},
		{"endpoint-ipv6", func(s *Service) { s.Spec.Endpoints[0].Address = "[::1]:15006" }},
		{"endpoint-same-address-two-ports", func(s *Service) {
			s.Spec.Ports = append(s.Spec.Ports, ServicePort{Name: "grpc", Port: 81, Protocol: ProtocolGRPC})
			s.Spec.Endpoints = []ServiceEndpoint{{Address: "127.0.0.1:15006", Port: 80}, {Address: "127.0.0.1:15006", Port: 81}}
		}},
		{"selector-label-prefix", func(s *Service) {
			s.Spec.Selector.MatchLabels = map[string]string{"app.kubernetes.io/name": "orders", "tier": ""}
		}},
		{"several-ids", func(s *Service) {
			s.Spec.SPIFFEIDs = []string{"spiffe://example.org/ns/default/sa/orders", "spiffe://example.org/ns/default/sa/orders-canary"}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := fullService()
			tc.modify(s)
			if err := Validate(s, testTD); err != nil {
				t.Errorf("Validate: got %v, want nil", err)
			}
		})
	}
}

// TestValidateService has one case per rule; each makes one problem, named
// by its field.
func TestValidateService(t *testing.T) {
	twoPorts := func(s *Service) {
		s.Spec.Ports = append(s.Spec.Ports, ServicePort{Name: "grpc", Port: 81, Protocol: ProtocolGRPC})
		s.Spec.Endpoints[0].Port = 80
	}
	for _, tc := range []struct {
		name   string
		modify func(s *Service)
		// want is in the error message, after the object's name.
		want string
	}{
		{"name-uppercase", func(s *Service) { s.Metadata.Name = "Orders" }, `metadata.name: "Orders" is not a valid name`},
		{"namespace-missing", func(s *Service) { s.Metadata.Namespace = "" }, "metadata.namespace: is required"},
		{"kind-wrong", func(s *Service) { s.Kind = KindWorkload }, `kind: "Workload" does not match the object's type: want "Service"`},

		{"ports-empty", func(s *Service) { s.Spec.Ports = nil }, "spec.ports: at least one port is required"},
		{"port-name-missing-several", func(s *Service) { twoPorts(s); s.Spec.Ports[0].Name = "" }, "spec.ports[0].name: is required when the service has several ports"},
		{"port-name-invalid", func(s *Service) { s.Spec.Ports[0].Name = "HTTP" }, `spec.ports[0].name: "HTTP" is not a valid port name: use lowercase letters, digits and '-'`},
		{"port-name-duplicate", func(s *Service) { twoPorts(s); s.Spec.Ports[1].Name = "http" }, `spec.ports[1].name: "http" repeats spec.ports[0]`},
		{"port-missing", func(s *Service) { s.Spec.Ports[0].Port = 0 }, "spec.ports[0].port: is required: the port clients address, 1 to 65535"},
		{"port-too-large", func(s *Service) { s.Spec.Ports[0].Port = 65536 }, "spec.ports[0].port: 65536 is out of range: a port is 1 to 65535"},
		{"port-duplicate", func(s *Service) { twoPorts(s); s.Spec.Ports[1].Port = 80 }, "spec.ports[1].port: 80 repeats spec.ports[0]"},
		{"protocol-missing", func(s *Service) { s.Spec.Ports[0].Protocol = "" }, "spec.ports[0].protocol: is required: HTTP, HTTP2, GRPC or TCP"},
		{"protocol-unknown", func(s *Service) { s.Spec.Ports[0].Protocol = "http" }, `spec.ports[0].protocol: "http" is not a protocol: want HTTP, HTTP2, GRPC or TCP`},
		{"target-port-too-large", func(s *Service) { s.Spec.Ports[0].TargetPort = 70000 }, "spec.ports[0].targetPort: 70000 is out of range: a port is 1 to 65535; leave it out to use the port"},

		{"selector-and-endpoints-missing", func(s *Service) { s.Spec.Selector, s.Spec.Endpoints = nil, nil }, "spec.selector: is required unless spec.endpoints lists static endpoints"},
		{"selector-empty", func(s *Service) { s.Spec.Selector = &Selector{} }, "spec.selector.matchLabels: is empty, which selects nothing: name at least one label, or leave out spec.selector to serve the service from spec.endpoints only"},
		{"selector-empty-map", func(s *Service) { s.Spec.Selector.MatchLabels = map[string]string{} }, "spec.selector.matchLabels: is empty, which selects nothing"},
		{"selector-label-key-bad", func(s *Service) { s.Spec.Selector.MatchLabels = map[string]string{"-app": "orders"} }, `spec.selector.matchLabels["-app"]: invalid label key: use letters, digits`},
		{"selector-label-value-bad", func(s *Service) { s.Spec.Selector.MatchLabels = map[string]string{"app": "or ders"} }, `spec.selector.matchLabels["app"]: invalid label value "or ders": use letters`},

		{"endpoint-address-missing", func(s *Service) { s.Spec.Endpoints[0].Address = "" }, "spec.endpoints[0].address: is required: the host:port of the server, such as 127.0.0.1:15006"},
		{"endpoint-address-no-port", func(s *Service) { s.Spec.Endpoints[0].Address = "127.0.0.1" }, `spec.endpoints[0].address: "127.0.0.1" is not a valid address: want host:port`},
		{"endpoint-address-ipv6-unbracketed", func(s *Service) { s.Spec.Endpoints[0].Address = "::1:15006" }, `spec.endpoints[0].address: "::1:15006" is not a valid address: want host:port`},
		{"endpoint-address-empty-port", func(s *Service) { s.Spec.Endpoints[0].Address = "127.0.0.1:" }, `spec.endpoints[0].address: "127.0.0.1:" is not a valid address: the port is missing`},
		{"endpoint-address-named-port", func(s *Service) { s.Spec.Endpoints[0].Address = "127.0.0.1:http" }, `spec.endpoints[0].address: "127.0.0.1:http" is not a valid address: the port "http" is not a number`},
		{"endpoint-address-port-zero", func(s *Service) { s.Spec.Endpoints[0].Address = "127.0.0.1:0" }, `spec.endpoints[0].address: "127.0.0.1:0" is not a valid address: port 0 is out of range: a port is 1 to 65535`},
		{"endpoint-address-port-too-large", func(s *Service) { s.Spec.Endpoints[0].Address = "127.0.0.1:65536" }, `spec.endpoints[0].address: "127.0.0.1:65536" is not a valid address: port 65536 is out of range`},
		{"endpoint-address-no-host", func(s *Service) { s.Spec.Endpoints[0].Address = ":15006" }, `spec.endpoints[0].address: ":15006" is not a valid address: the host is missing`},
		{"endpoint-address-bad-host", func(s *Service) { s.Spec.Endpoints[0].Address = "orders_1.internal:15006" }, `spec.endpoints[0].address: "orders_1.internal:15006" is not a valid address: the host "orders_1.internal" is neither an IP address nor a valid DNS name`},
		{"endpoint-address-url", func(s *Service) { s.Spec.Endpoints[0].Address = "https://orders:15006" }, `spec.endpoints[0].address: "https://orders:15006" is not a valid address: want host:port`},
		{"endpoint-address-ipv4-in-brackets", func(s *Service) { s.Spec.Endpoints[0].Address = "[127.0.0.1]:15006" }, `spec.endpoints[0].address: "[127.0.0.1]:15006" is not a valid address: only IPv6 addresses are written in brackets`},
		{"endpoint-address-name-in-brackets", func(s *Service) { s.Spec.Endpoints[0].Address = "[orders]:15006" }, `spec.endpoints[0].address: "[orders]:15006" is not a valid address: "orders" in brackets is not an IPv6 address`},
		{"endpoint-address-ipv6-zone", func(s *Service) { s.Spec.Endpoints[0].Address = "[fe80::1%eth0]:15006" }, `spec.endpoints[0].address: "[fe80::1%eth0]:15006" is not a valid address: an IPv6 zone is not allowed`},
		{"endpoint-port-missing-several", func(s *Service) { twoPorts(s); s.Spec.Endpoints[0].Port = 0 }, "spec.endpoints[0].port: is required when the service has several ports: the service port this endpoint serves (80, 81)"},
		{"endpoint-port-unknown", func(s *Service) { s.Spec.Endpoints[0].Port = 8080 }, "spec.endpoints[0].port: 8080 is not a port of the service: want one of spec.ports (80)"},
		{"endpoint-duplicate", func(s *Service) {
			s.Spec.Endpoints = append(s.Spec.Endpoints, ServiceEndpoint{Address: "127.0.0.1:15006", Port: 80})
		}, "spec.endpoints[1]: repeats spec.endpoints[0]"},

		{"spiffeids-missing", func(s *Service) { s.Spec.SPIFFEIDs = nil }, "spec.spiffeIDs: at least one is required: the identities allowed to serve the service, such as spiffe://example.org/ns/default/sa/orders"},
		{"spiffeid-empty", func(s *Service) { s.Spec.SPIFFEIDs = []string{""} }, "spec.spiffeIDs[0]: is required: an identity allowed to serve the service"},
		{"spiffeid-invalid", func(s *Service) { s.Spec.SPIFFEIDs = []string{"spiffe://example.org/a//b"} }, `spec.spiffeIDs[0]: "spiffe://example.org/a//b" is not a valid SPIFFE ID: path segments must not be empty`},
		{"spiffeid-other-trust-domain", func(s *Service) { s.Spec.SPIFFEIDs = []string{"spiffe://evil.org/ns/default/sa/orders"} }, `spec.spiffeIDs[0]: "spiffe://evil.org/ns/default/sa/orders" is not in this server's trust domain "example.org"`},
		{"spiffeid-no-path", func(s *Service) { s.Spec.SPIFFEIDs = []string{"spiffe://example.org"} }, `spec.spiffeIDs[0]: "spiffe://example.org" has no path: a workload ID needs one`},
		{"spiffeid-reserved", func(s *Service) { s.Spec.SPIFFEIDs = []string{"spiffe://example.org/trustmesh/node/node-1"} }, `spec.spiffeIDs[0]: "spiffe://example.org/trustmesh/node/node-1": paths under /trustmesh/ are reserved`},
		{"spiffeid-duplicate", func(s *Service) {
			s.Spec.SPIFFEIDs = append(s.Spec.SPIFFEIDs, "spiffe://example.org/ns/default/sa/orders")
		}, `spec.spiffeIDs[1]: "spiffe://example.org/ns/default/sa/orders" repeats spec.spiffeIDs[0]`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := fullService()
			tc.modify(s)
			checkOneProblem(t, s, tc.want)
		})
	}
}

// checkOneProblem checks that Validate reports exactly one problem of obj,
// prefixed with the object's name and containing want.
func checkOneProblem(t *testing.T, obj Object, want string) {
	t.Helper()
	err := Validate(obj, testTD)
	if err == nil {
		t.Fatalf("Validate: got nil, want an error containing %q", want)
	}
	m := obj.GetMeta()
	prefix := fmt.Sprintf("%s %q: ", obj.GetKind(), m.Namespace+"/"+m.Name)
	switch {
	case m.Name == "":
		prefix = obj.GetKind() + " (no name): "
	case m.Namespace == "":
		prefix = fmt.Sprintf("%s %q: ", obj.GetKind(), m.Name)
	}
	if !strings.HasPrefix(err.Error(), prefix) || !strings.Contains(err.Error(), want) {
		t.Errorf("Validate: got\n%v\nwant\n%s%s", err, prefix, want)
	}
	if n := strings.Count(err.Error(), "\n") + 1; n != 1 {
		t.Errorf("Validate: got %d problems, want 1:\n%v", n, err)
	}
}

func TestServiceSelects(t *testing.T) {
	workload := func(ns string, labels map[string]string) *Workload {
		w := apiWorkload()
		w.Metadata.Namespace, w.Metadata.Labels = ns, labels
		return w
	}
	withSelector := func(sel *Selector) *Service {
		s := fullService()
		s.Spec.Selector = sel
		return s
	}
	orders := fullService() // default namespace, app=orders
	for _, tc := range []struct {
		name string
		s    *Service
		w    *Workload
		want bool
	}{
		{"match", orders, workload("default", map[string]string{"app": "orders"}), true},
		{"match-extra-labels", orders, workload("default", map[string]string{"app": "orders", "version": "v2"}), true},
		{"other-value", orders, workload("default", map[string]string{"app": "payments"}), false},
		{"label-missing", orders, workload("default", map[string]string{"version": "v2"}), false},
		{"no-labels", orders, workload("default", nil), false},
		{"other-namespace", orders, workload("shop", map[string]string{"app": "orders"}), false},
		{"all-labels-needed", withSelector(&Selector{MatchLabels: map[string]string{"app": "orders", "tier": "web"}}), workload("default", map[string]string{"app": "orders"}), false},
		{"all-labels-present", withSelector(&Selector{MatchLabels: map[string]string{"app": "orders", "tier": "web"}}), workload("default", map[string]string{"app": "orders", "tier": "web"}), true},
		{"empty-value", withSelector(&Selector{MatchLabels: map[string]string{"canary": ""}}), workload("default", map[string]string{"canary": ""}), true},
		{"empty-value-label-missing", withSelector(&Selector{MatchLabels: map[string]string{"canary": ""}}), workload("default", nil), false},
		{"nil-selector", withSelector(nil), workload("default", map[string]string{"app": "orders"}), false},
		{"empty-selector", withSelector(&Selector{}), workload("default", map[string]string{"app": "orders"}), false},
		{"nil-workload", orders, nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.s.Selects(tc.w); got != tc.want {
				t.Errorf("Selects() = %t, want %t", got, tc.want)
			}
		})
	}
}

func TestServiceHosts(t *testing.T) {
	for _, tc := range []struct {
		name      string
		meta      Metadata
		wantHosts []string
	}{
		{"default", Metadata{Name: "orders", Namespace: "default"}, []string{"orders", "orders.default", "orders.default.svc"}},
		{"dotted-name", Metadata{Name: "orders.v2", Namespace: "shop"}, []string{"orders.v2", "orders.v2.shop", "orders.v2.shop.svc"}},
		{"lowercased", Metadata{Name: "Orders", Namespace: "Shop"}, []string{"orders", "orders.shop", "orders.shop.svc"}},
		{"no-namespace", Metadata{Name: "orders"}, []string{"orders", "orders.default", "orders.default.svc"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := &Service{Metadata: tc.meta}
			if diff := cmp.Diff(tc.wantHosts, s.Hosts()); diff != "" {
				t.Errorf("Hosts() (-want +got):\n%s", diff)
			}
		})
	}
}

func TestServicePortTarget(t *testing.T) {
	for _, tc := range []struct {
		name string
		p    ServicePort
		want uint32
	}{
		{"set", ServicePort{Port: 80, TargetPort: 8080}, 8080},
		{"default", ServicePort{Port: 80}, 80},
		{"same", ServicePort{Port: 80, TargetPort: 80}, 80},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.p.Target(); got != tc.want {
				t.Errorf("Target() = %d, want %d", got, tc.want)
			}
		})
	}
}

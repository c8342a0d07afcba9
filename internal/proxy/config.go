package proxy

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/trustmesh/trustmesh/internal/httpnorm"
	"github.com/trustmesh/trustmesh/internal/telemetry/accesslog"
	"github.com/trustmesh/trustmesh/internal/telemetry/tracing"
)

// Source gives the proxy its own X.509-SVID and the trust bundle to verify
// peers against. Both are read per handshake, so a rotating source
// (*workloadapi.X509Source) applies to new connections without touching
// established ones.
type Source interface {
	x509svid.Source
	x509bundle.Source
}

// InboundSpec is one --inbound LISTEN=APP_ADDR: mesh traffic accepted on
// Listen is forwarded to the local application at App.
type InboundSpec struct {
	// Listen is the host:port to bind (port 0 picks a free one).
	Listen string
	// App is the application's host:port; its port is the "app port" that
	// snapshot port modes and service target ports refer to.
	App string
}

// OutboundSpec is one --outbound LISTEN=SERVICE[.NS][:PORT]: the local
// application connects in plaintext to Listen and the proxy forwards over
// mTLS to an endpoint of the service.
type OutboundSpec struct {
	// Listen is the host:port to bind.
	Listen string
	// Service is the service name.
	Service string
	// Namespace is the service's namespace; empty means "default".
	Namespace string
	// Port is the service port; 0 means the service's first port.
	Port uint32
}

// Config is everything a Proxy needs. It is validated once, by New.
type Config struct {
	// Source provides the proxy's SVID and the trust bundle. Required.
	Source Source
	// TrustDomain is the mesh's trust domain; peers from any other trust
	// domain are refused. Required.
	TrustDomain spiffeid.TrustDomain
	// Inbound are the listeners that accept mesh traffic for the local app.
	Inbound []InboundSpec
	// Outbound are the per-upstream listeners the local app calls.
	Outbound []OutboundSpec
	// HTTPProxy is an optional listener for apps using HTTP_PROXY: requests
	// are routed by Host to services. CONNECT is answered 405.
	HTTPProxy string
	// Admin is the admin listener (/healthz, /ready, /config_dump,
	// /metrics). Empty means no admin listener.
	Admin string
	// Paths is how request paths are normalized before authorization (and
	// forwarded so); the zero value is the strict default.
	Paths httpnorm.Options
	// AccessLog, if set, gets one JSON line per request and TCP
	// connection. The caller runs and closes it.
	AccessLog *accesslog.Logger
	// Tracer, if set and enabled, makes a span per proxied request (W3C
	// trace context in and out). The caller shuts it down.
	Tracer *tracing.Tracer
	// Pprof serves Go's /debug/pprof/ on the admin listener.
	Pprof bool
	// MetricsNaming is NamingTrustmesh (the default, "") or NamingIstio:
	// Istio's standard request and TCP metrics (istio_requests_total,
	// istio_request_duration_milliseconds, istio_tcp_*) and labels, for
	// existing dashboards and Kiali.
	MetricsNaming string
	// AuthzCacheSize bounds the authorization decision cache (entries); 0
	// turns it off. The cache keys on the attributes the policies read and
	// is not used when they read headers, JWT claims or CUSTOM Rego. It
	// pays off for large rule sets the engine's index cannot narrow
	// (suffix or prefix principals, no paths).
	AuthzCacheSize int
	// Logger receives the proxy's logs; nil discards them.
	Logger *slog.Logger
	// Registry receives the proxy's metrics. If nil, a new registry is
	// created. /metrics serves Registry if it is also a
	// prometheus.Gatherer (as *prometheus.Registry is), else
	// prometheus.DefaultGatherer.
	Registry prometheus.Registerer
}

func (c *Config) validate() error {
	var errs []error
	if c.Source == nil {
		errs = append(errs, errors.New("source is required"))
	}
	if c.TrustDomain.IsZero() {
		errs = append(errs, errors.New("trust domain is required"))
	}
	if len(c.Inbound) == 0 && len(c.Outbound) == 0 && c.HTTPProxy == "" {
		errs = append(errs, errors.New("at least one inbound, outbound or HTTP-proxy listener is required"))
	}
	for i, in := range c.Inbound {
		if err := validateHostPort(in.Listen, true); err != nil {
			errs = append(errs, fmt.Errorf("inbound[%d] listen %q: %w", i, in.Listen, err))
		}
		if _, err := appPort(in.App); err != nil {
			errs = append(errs, fmt.Errorf("inbound[%d] app %q: %w", i, in.App, err))
		}
	}
	for i, out := range c.Outbound {
		if err := validateHostPort(out.Listen, true); err != nil {
			errs = append(errs, fmt.Errorf("outbound[%d] listen %q: %w", i, out.Listen, err))
		}
		if err := validateName(out.Service); err != nil {
			errs = append(errs, fmt.Errorf("outbound[%d] service %q: %w", i, out.Service, err))
		}
		if out.Namespace != "" {
			if err := validateName(out.Namespace); err != nil {
				errs = append(errs, fmt.Errorf("outbound[%d] namespace %q: %w", i, out.Namespace, err))
			}
		}
		if out.Port > 65535 {
			errs = append(errs, fmt.Errorf("outbound[%d] port %d: out of range", i, out.Port))
		}
	}
	if c.HTTPProxy != "" {
		if err := validateHostPort(c.HTTPProxy, true); err != nil {
			errs = append(errs, fmt.Errorf("http proxy listen %q: %w", c.HTTPProxy, err))
		}
	}
	if c.Admin != "" {
		if err := validateHostPort(c.Admin, true); err != nil {
			errs = append(errs, fmt.Errorf("admin listen %q: %w", c.Admin, err))
		}
	}
	switch c.MetricsNaming {
	case "", NamingTrustmesh, NamingIstio:
	default:
		errs = append(errs, fmt.Errorf("metrics naming %q: want %s or %s", c.MetricsNaming, NamingTrustmesh, NamingIstio))
	}
	if c.AuthzCacheSize < 0 {
		errs = append(errs, fmt.Errorf("authz cache size %d: want 0 (off) or more", c.AuthzCacheSize))
	}
	if err := c.Paths.Validate(); err != nil {
		errs = append(errs, fmt.Errorf("path normalization: %w", err))
	}
	return errors.Join(errs...)
}

// ParseInbound parses "LISTEN=APP_ADDR", e.g. "0.0.0.0:15006=127.0.0.1:8080".
func ParseInbound(s string) (InboundSpec, error) {
	listen, app, ok := strings.Cut(s, "=")
	if !ok {
		return InboundSpec{}, errors.New("want LISTEN=APP_ADDR, e.g. :15006=127.0.0.1:8080")
	}
	if err := validateHostPort(listen, true); err != nil {
		return InboundSpec{}, fmt.Errorf("listen address %q: %w", listen, err)
	}
	if _, err := appPort(app); err != nil {
		return InboundSpec{}, fmt.Errorf("app address %q: %w", app, err)
	}
	return InboundSpec{Listen: listen, App: app}, nil
}

// ParseOutbound parses "LISTEN=SERVICE[.NS][:PORT]", e.g.
// "127.0.0.1:9001=orders.shop:8080". A missing namespace is "default"; a
// missing port (0) means the service's first port.
func ParseOutbound(s string) (OutboundSpec, error) {
	listen, target, ok := strings.Cut(s, "=")
	if !ok {
		return OutboundSpec{}, errors.New("want LISTEN=SERVICE[.NAMESPACE][:PORT], e.g. 127.0.0.1:9001=orders.shop:8080")
	}
	if err := validateHostPort(listen, true); err != nil {
		return OutboundSpec{}, fmt.Errorf("listen address %q: %w", listen, err)
	}
	spec := OutboundSpec{Listen: listen}
	name := target
	if i := strings.LastIndexByte(target, ':'); i >= 0 {
		name = target[:i]
		p, err := strconv.ParseUint(target[i+1:], 10, 16)
		if err != nil || p == 0 {
			return OutboundSpec{}, fmt.Errorf("service port %q: want a number from 1 to 65535", target[i+1:])
		}
		spec.Port = uint32(p)
	}
	svc, ns, hasNS := strings.Cut(name, ".")
	if err := validateName(svc); err != nil {
		return OutboundSpec{}, fmt.Errorf("service %q: %w", svc, err)
	}
	spec.Service = svc
	if hasNS {
		if err := validateName(ns); err != nil {
			return OutboundSpec{}, fmt.Errorf("namespace %q: %w", ns, err)
		}
		spec.Namespace = ns
	}
	return spec, nil
}

// validateHostPort checks host:port with a numeric port; the host may be
// empty (all interfaces) only when allowEmptyHost is set.
func validateHostPort(s string, allowEmptyHost bool) error {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return errors.New("want host:port")
	}
	if host == "" && !allowEmptyHost {
		return errors.New("host is empty")
	}
	if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		return fmt.Errorf("port %q: want a number from 0 to 65535", port)
	}
	return nil
}

// appPort returns the port of an application address, which must be a
// complete host:port with a non-zero port.
func appPort(addr string) (uint32, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return 0, errors.New("want host:port")
	}
	if host == "" {
		return 0, errors.New("host is empty; use 127.0.0.1:PORT for a local app")
	}
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil || p == 0 {
		return 0, fmt.Errorf("port %q: want a number from 1 to 65535", port)
	}
	return uint32(p), nil
}

// validateName checks a service or namespace name: a DNS label (lowercase
// letters, digits, '-', 1 to 63 characters, starting and ending with an
// alphanumeric).
func validateName(s string) error {
	if s == "" {
		return errors.New("empty")
	}
	if len(s) > 63 {
		return errors.New("longer than 63 characters")
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9':
		case c == '-' && i != 0 && i != len(s)-1:
		default:
			return errors.New("want a DNS label: lowercase letters, digits and '-'")
		}
	}
	return nil
}

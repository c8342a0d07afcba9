package cli

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"os"
	"runtime/debug"
	"slices"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"
	"golang.org/x/sync/errgroup"

	"github.com/trustmesh/trustmesh/internal/configsync"
	"github.com/trustmesh/trustmesh/internal/httpnorm"
	"github.com/trustmesh/trustmesh/internal/proxy"
	"github.com/trustmesh/trustmesh/internal/server/adminapi"
	"github.com/trustmesh/trustmesh/internal/serveraddr"
	"github.com/trustmesh/trustmesh/internal/telemetry/accesslog"
	"github.com/trustmesh/trustmesh/internal/telemetry/tracing"
)

// proxyGCPercent is the proxy's GOGC unless the environment sets one.
const proxyGCPercent = 400

func newProxyCmd(s *streams) *cobra.Command {
	var (
		socket, admin, httpProxy, mode      string
		spiffeID                            string
		servers, inbound, outbound          []string
		logs                                logFlags
		encSlashes, backslashes, pathParams string
		keepSlashes, lowercase              bool
		cacheSize                           int
		metricsNaming                       string
		accessLog, otlpEndpoint             string
		otlpInsecure, pprofOn               bool
	)
	cmd := &cobra.Command{
		Use:   "proxy",
		Short: "Run the sidecar proxy: mutual TLS in and out, configured live by the server",
		Long: `Run the trustmesh proxy next to an application.

Its identity comes from the node agent over the SPIFFE Workload API (--socket);
its configuration (services and endpoints, mTLS modes, revocations) is pushed
by the server over one stream (--server), and the last good configuration stays
in force while the server is away. --server takes a comma-separated list (or
the flag repeated) of control-plane replicas: the proxy streams from one,
picked in random order, and moves to another within seconds when it goes away.

  --inbound LISTEN=APP_ADDR       accept mesh traffic on LISTEN (mutual TLS, or
                                  plaintext where PeerAuthentication allows it)
                                  and forward it to the local app
  --outbound LISTEN=SERVICE[.NS][:PORT]
                                  the app calls LISTEN in plaintext; the proxy
                                  originates mutual TLS to an endpoint of SERVICE
                                  whose SPIFFE ID the Service allows
  --http-proxy LISTEN             an HTTP proxy routing by Host to services
                                  (set HTTP_PROXY=http://LISTEN in the app)

Mesh traffic is TLS 1.3 with the hybrid post-quantum group X25519MLKEM768
preferred. The admin listener serves /healthz, /ready, /config_dump and /metrics.

Inbound requests are authorized by the AuthorizationPolicies and JWT rules
(RequestAuthentication) the server pushes. Each request path is normalized
once (percent-decoding of unreserved characters, dot segments, duplicate
slashes); the policies match that path and the app receives it. Paths that
cannot be normalized unambiguously are refused with 400: by default encoded
slashes (%2F, %5C), backslashes and ';' path parameters; the --path-* flags
loosen this for apps that need it.

The proxy runs with GOGC=400 unless the GOGC environment variable says
otherwise (its live heap is small, so the default 100 collects far too often).`,
		Example: `  trustmesh proxy --socket /run/trustmesh/agent.sock --server 127.0.0.1:8443 \
      --inbound 127.0.0.1:15006=127.0.0.1:8080 --outbound 127.0.0.1:9001=payments:80 --admin 127.0.0.1:15000`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := logs.logger(s.err)
			if err != nil {
				return err
			}
			if os.Getenv("GOGC") == "" {
				// The proxy's live heap is a few MB, so at Go's default
				// GOGC=100 it collects every ~100 requests, and each cycle
				// also scans the single binary's globals (OPA's tables among
				// them): measured 14% fewer requests per second than at 400
				// (BenchmarkHTTPThroughProxies), for ~15 MB more heap at most.
				debug.SetGCPercent(proxyGCPercent)
			}
			cfg := proxy.Config{Admin: admin, HTTPProxy: httpProxy, Logger: log, AuthzCacheSize: cacheSize, MetricsNaming: metricsNaming, Pprof: pprofOn}
			if cfg.Paths, err = pathOptions(encSlashes, backslashes, pathParams, keepSlashes, lowercase); err != nil {
				return err
			}
			// Checked before waiting for an identity, like every flag.
			if metricsNaming != proxy.NamingTrustmesh && metricsNaming != proxy.NamingIstio {
				return fmt.Errorf("--metrics-naming %q: want %s or %s", metricsNaming, proxy.NamingTrustmesh, proxy.NamingIstio)
			}
			if cacheSize < 0 {
				return fmt.Errorf("--authz-cache-size %d: want 0 (off) or a number of entries", cacheSize)
			}
			serverAddrs, err := serveraddr.Parse(servers...)
			if err != nil {
				return fmt.Errorf("--server: %w", err)
			}
			if accessLog != "" {
				al, err := accesslog.New(accesslog.Config{Path: accessLog, Logger: log})
				if err != nil {
					return fmt.Errorf("--access-log: %w", err)
				}
				defer al.Close()
				cfg.AccessLog = al
			}
			for _, in := range inbound {
				spec, err := proxy.ParseInbound(in)
				if err != nil {
					return fmt.Errorf("--inbound %q: %w", in, err)
				}
				cfg.Inbound = append(cfg.Inbound, spec)
			}
			for _, out := range outbound {
				spec, err := proxy.ParseOutbound(out)
				if err != nil {
					return fmt.Errorf("--outbound %q: %w", out, err)
				}
				cfg.Outbound = append(cfg.Outbound, spec)
			}
			if len(cfg.Inbound) == 0 && len(cfg.Outbound) == 0 && cfg.HTTPProxy == "" {
				return errors.New("nothing to proxy: give at least one --inbound, --outbound or --http-proxy")
			}
			ctx := cmd.Context()
			log.Info("waiting for an identity from the agent", "socket", socket)
			waiting := make(chan struct{})
			go func() {
				t := time.NewTicker(10 * time.Second)
				defer t.Stop()
				for {
					select {
					case <-waiting:
						return
					case <-t.C:
						log.Warn("still waiting for an identity: is the agent running on --socket, and does a Workload's selectors match this process?", "socket", socket)
					}
				}
			}()
			source, err := newSource(ctx, socket, spiffeID)
			close(waiting)
			if err != nil {
				return err
			}
			defer source.Close()
			svid, err := source.GetX509SVID()
			if err != nil {
				if spiffeID != "" {
					return fmt.Errorf("the agent does not grant %s to this process (check the Workload's selectors)", spiffeID)
				}
				return err
			}
			log.Info("identity received", "spiffe_id", svid.ID, "expires", svid.Certificates[0].NotAfter)
			cfg.Source, cfg.TrustDomain = source, svid.ID.TrustDomain()
			tracer, err := tracing.New(ctx, tracing.Config{Endpoint: otlpEndpoint, Insecure: otlpInsecure, ServiceName: svid.ID.String(), Logger: log})
			if err != nil {
				return fmt.Errorf("--otlp-endpoint: %w", err)
			}
			defer func() {
				sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
				defer cancel()
				if err := tracer.Shutdown(sctx); err != nil {
					log.Warn("flushing traces", "error", err)
				}
			}()
			cfg.Tracer = tracer
			p, err := proxy.New(cfg)
			if err != nil {
				return err
			}
			sub, err := configsync.NewClient(configsync.ClientConfig{ServerAddrs: serverAddrs, Source: source, ProxyID: proxyID(),
				Mode: mode, Version: version(), Applier: p, Events: p.Events(), Taps: p.Taps(), Logger: log})
			if err != nil {
				return err
			}
			g, ctx := errgroup.WithContext(ctx)
			g.Go(func() error { return p.Run(ctx) })
			if cfg.AccessLog != nil {
				g.Go(func() error { return cfg.AccessLog.Run(ctx) })
			}
			g.Go(func() error { return sub.Run(ctx) })
			return g.Wait()
		},
	}
	f := cmd.Flags()
	f.StringVar(&socket, "socket", defaultSocket(), "the agent's Workload API socket")
	f.StringArrayVar(&servers, "server", []string{"127.0.0.1:8443"},
		"the server's gRPC address `HOST:PORT` (config push), or a comma-separated list of replicas to fail over between (repeatable)")
	f.StringVar(&admin, "admin", "127.0.0.1:15000", "admin listener: /healthz, /ready, /config_dump, /metrics")
	f.StringArrayVar(&inbound, "inbound", nil, "LISTEN=APP_ADDR (repeatable)")
	f.StringArrayVar(&outbound, "outbound", nil, "LISTEN=SERVICE[.NAMESPACE][:PORT] (repeatable)")
	f.StringVar(&httpProxy, "http-proxy", "", "LISTEN address of an HTTP proxy routing by Host to services")
	f.StringVar(&mode, "mode", "sidecar", "sidecar (ingress and egress gateways come later)")
	f.StringVar(&spiffeID, "spiffe-id", "", "use this identity when the agent grants this process several")
	f.StringVar(&encSlashes, "path-encoded-slashes", "reject", "%2F and %5C in paths: reject (400), keep (opaque data), or decode (to / and \\ before normalizing)")
	f.StringVar(&backslashes, "path-backslashes", "reject", `a raw \ in paths: reject (400) or slash (treated as /)`)
	f.StringVar(&pathParams, "path-params", "reject", "';' path parameters: reject (400) or keep (opaque data)")
	f.BoolVar(&keepSlashes, "path-keep-duplicate-slashes", false, "keep // runs in paths instead of merging them")
	f.StringVar(&accessLog, "access-log", "", "write a JSON line per request and TCP connection to this file (rotated at 100 MB, 5 kept; - for standard output)")
	f.StringVar(&otlpEndpoint, "otlp-endpoint", "", "send OpenTelemetry traces (one span per request, W3C trace context) to this OTLP/gRPC HOST:PORT")
	f.BoolVar(&otlpInsecure, "otlp-insecure", false, "talk to the OTLP endpoint without TLS (a local collector)")
	f.BoolVar(&pprofOn, "pprof", false, "serve Go's profiler on the admin listener (/debug/pprof/), for performance work")
	f.StringVar(&metricsNaming, "metrics-naming", proxy.NamingTrustmesh, "metric names on /metrics: trustmesh (trustmesh_*) or istio (istio_requests_total and Istio's standard labels, for existing dashboards and Kiali)")
	f.IntVar(&cacheSize, "authz-cache-size", 0, "entries of the authorization decision cache (0: off); helps large rule sets without paths or exact principals")
	f.BoolVar(&lowercase, "path-lowercase", false, "lowercase paths (for case-insensitive apps; the app receives the lowercased path)")
	logs.register(cmd)
	return cmd
}

// pathOptions builds the path normalization stance from the --path-* flags.
func pathOptions(encSlashes, backslashes, params string, keepSlashes, lowercase bool) (httpnorm.Options, error) {
	o := httpnorm.Options{KeepDuplicateSlashes: keepSlashes, LowercasePath: lowercase}
	var err error
	if o.EncodedSlashes, err = httpnorm.ParseSlashPolicy(encSlashes); err != nil {
		return o, fmt.Errorf("--path-encoded-slashes: %w", err)
	}
	if o.Backslashes, err = httpnorm.ParseBackslashPolicy(backslashes); err != nil {
		return o, fmt.Errorf("--path-backslashes: %w", err)
	}
	if o.PathParams, err = httpnorm.ParseParamPolicy(params); err != nil {
		return o, fmt.Errorf("--path-params: %w", err)
	}
	return o, nil
}

// newSource opens the Workload API, waiting for the first SVID (the agent
// may still be starting). With want set, the proxy uses that identity among
// those the agent grants this process; without, the agent's first.
func newSource(ctx context.Context, socket, want string) (*workloadapi.X509Source, error) {
	opts := []workloadapi.X509SourceOption{workloadapi.WithClientOptions(workloadapi.WithAddr("unix://" + socket))}
	if want != "" {
		id, err := spiffeid.FromString(want)
		if err != nil {
			return nil, fmt.Errorf("--spiffe-id %q: %w", want, err)
		}
		opts = append(opts, workloadapi.WithDefaultX509SVIDPicker(func(svids []*x509svid.SVID) *x509svid.SVID {
			for _, s := range svids {
				if s.ID == id {
					return s
				}
			}
			// Fail closed: never fall back to another identity.
			return nil
		}))
	}
	src, err := workloadapi.NewX509Source(ctx, opts...)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("identity from the agent at %s: %w", socket, err)
	}
	return src, nil
}

func proxyID() string {
	host, _ := os.Hostname()
	var b [4]byte
	_, _ = rand.Read(b[:])
	return fmt.Sprintf("%s/%d/%s", host, os.Getpid(), hex.EncodeToString(b[:]))
}

func version() string {
	return "devel"
}

// printProxies is `trustmesh get proxies`.
func printProxies(cmd *cobra.Command, s *streams, cf clientFlags, format string) error {
	c, err := cf.client()
	if err != nil {
		return err
	}
	var resp adminapi.ProxiesResponse
	if err := c.Do(cmd.Context(), http.MethodGet, adminapi.PathProxies, nil, nil, &resp); err != nil {
		return err
	}
	if format != "table" {
		return printStructured(s.out, format, resp)
	}
	if len(resp.Items) == 0 {
		fmt.Fprintln(s.out, "no proxies connected")
		return nil
	}
	replicas := slices.ContainsFunc(resp.Items, func(p adminapi.Proxy) bool { return p.Replica != "" })
	tw := tabwriter.NewWriter(s.out, 0, 4, 2, ' ', 0)
	header := "SPIFFE ID\tPROXY\tREADY\tSENT\tACKED\tLAST ACK\tLAST NACK"
	if replicas {
		header += "\tREPLICA"
	}
	fmt.Fprintln(tw, header)
	for _, p := range resp.Items {
		lastAck, nack := "-", "-"
		if !p.LastAckAt.IsZero() {
			lastAck = time.Since(p.LastAckAt).Round(time.Second).String() + " ago"
		}
		if p.NackReason != "" {
			nack = fmt.Sprintf("v%d: %s", p.NackVersion, p.NackReason)
		}
		fmt.Fprintf(tw, "%s\t%s\t%v\t%d\t%d\t%s\t%s", p.SPIFFEID, p.ID, p.Ready, p.SentVersion, p.AckedVersion, lastAck, nack)
		if replicas {
			fmt.Fprintf(tw, "\t%s", p.Replica)
		}
		fmt.Fprintln(tw)
	}
	return tw.Flush()
}

package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/proto"

	configsyncv1 "github.com/trustmesh/trustmesh/api/configsync/v1"
	"github.com/trustmesh/trustmesh/internal/authn"
)

// Limits and timeouts. They are documented in doc.go; change both together.
const (
	sniffTimeout      = 5 * time.Second
	handshakeTimeout  = 10 * time.Second
	tcpIdleTimeout    = 10 * time.Minute
	readHeaderTimeout = 10 * time.Second
	httpIdleTimeout   = 2 * time.Minute
	maxHeaderBytes    = 64 << 10
	maxHeaderCount    = 100
	h2MaxStreams      = 250
	h2MaxFrameSize    = 256 << 10
	h2HeaderTableSize = 4 << 10
	shutdownTimeout   = 5 * time.Second
)

// Proxy is the data path of one sidecar: its listeners, TLS, protocol
// detection, forwarding and connection pools. Build it with New, serve with
// Run, and feed it snapshots with Apply from any goroutine.
type Proxy struct {
	cfg      Config
	log      *slog.Logger
	metrics  *metrics
	gatherer prometheus.Gatherer

	// view is the current compiled snapshot; nil before the first Apply.
	view atomic.Pointer[view]

	serverTLS *tls.Config // one for the proxy's life: it holds the ticket keys
	clientTLS *tls.Config

	inbound   []*inbound
	outbound  []*outbound
	httpProxy *httpProxy
	admin     *admin

	upstreams upstreams
	conns     connSet
	// keys fetches the JWKS that RequestAuthentications name; it outlives
	// snapshots so a config change does not refetch.
	keys *authn.KeySets
	// events buffers decision events for the server's audit log, taps
	// request summaries for trustmesh tap (only while one runs).
	events *buffer[*configsyncv1.DecisionEvent]
	taps   *buffer[*configsyncv1.RequestSummary]

	wg       sync.WaitGroup  // connection handlers
	ctx      context.Context // cancelled by Close: aborts handshakes and dials
	cancel   context.CancelFunc
	closing  chan struct{}
	ran      atomic.Bool
	started  atomic.Bool
	closeErr error
	closeOne sync.Once
}

// New validates cfg and binds every listener, so that a bad address or a
// port conflict fails here. It does not serve until Run.
func New(cfg Config) (*Proxy, error) {
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("proxy config: %w", err)
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	p := &Proxy{
		cfg:     cfg,
		log:     log.With(slog.String(logComponent, "proxy")),
		closing: make(chan struct{}),
	}
	p.ctx, p.cancel = context.WithCancel(context.Background())
	reg := cfg.Registry
	if reg == nil {
		r := prometheus.NewRegistry()
		reg, p.gatherer = r, r
	} else if g, ok := reg.(prometheus.Gatherer); ok {
		p.gatherer = g
	} else {
		p.gatherer = prometheus.DefaultGatherer
	}
	m, err := newMetrics(reg, cfg.MetricsNaming)
	if err != nil {
		return nil, err
	}
	p.metrics = m
	p.serverTLS = p.newServerTLS()
	p.clientTLS = p.newClientTLS()
	p.upstreams.p = p
	p.keys = authn.NewKeySets(keySetsConfig(p.log))
	p.events = newBuffer[*configsyncv1.DecisionEvent](maxBufferedEvents, func() { p.metrics.eventsDropped.Inc() })
	p.taps = newBuffer[*configsyncv1.RequestSummary](maxBufferedTaps, func() {})

	if err := p.bind(); err != nil {
		return nil, errors.Join(err, p.Close())
	}
	return p, nil
}

func (p *Proxy) bind() error {
	listen := func(what, addr string) (net.Listener, error) {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return nil, fmt.Errorf("%s listener: %w", what, err)
		}
		return ln, nil
	}
	for _, spec := range p.cfg.Inbound {
		ln, err := listen("inbound", spec.Listen)
		if err != nil {
			return err
		}
		p.inbound = append(p.inbound, newInbound(p, spec, ln))
	}
	for _, spec := range p.cfg.Outbound {
		ln, err := listen("outbound", spec.Listen)
		if err != nil {
			return err
		}
		p.outbound = append(p.outbound, newOutbound(p, spec, ln))
	}
	if p.cfg.HTTPProxy != "" {
		ln, err := listen("http proxy", p.cfg.HTTPProxy)
		if err != nil {
			return err
		}
		p.httpProxy = newHTTPProxy(p, ln)
	}
	if p.cfg.Admin != "" {
		ln, err := listen("admin", p.cfg.Admin)
		if err != nil {
			return err
		}
		p.admin = newAdmin(p, ln)
	}
	return nil
}

// Run serves every listener until ctx is cancelled, then stops accepting,
// lets in-flight HTTP requests finish (up to a few seconds), closes what
// remains and returns nil. Run may be called once.
func (p *Proxy) Run(ctx context.Context) error {
	if !p.ran.CompareAndSwap(false, true) {
		return errors.New("proxy: Run called twice")
	}
	select {
	case <-p.closing:
		return errors.New("proxy: closed")
	default:
	}
	p.started.Store(true)
	var servers sync.WaitGroup
	serve := func(srv *http.Server, ln net.Listener) {
		servers.Go(func() {
			if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) && !errors.Is(err, net.ErrClosed) {
				p.log.Error("http server stopped", slog.Any(logError, err))
			}
		})
	}
	for _, in := range p.inbound {
		serve(in.server, in.queue)
		p.goAccept(in.ln, in.handle)
	}
	for _, out := range p.outbound {
		serve(out.server, out.queue)
		p.goAccept(out.ln, out.handle)
	}
	if p.httpProxy != nil {
		serve(p.httpProxy.server, p.httpProxy.ln)
	}
	if p.admin != nil {
		serve(p.admin.server, p.admin.ln)
	}
	keysCtx, stopKeys := context.WithCancel(ctx)
	var keysDone sync.WaitGroup
	keysDone.Go(func() {
		if err := p.keys.Run(keysCtx); err != nil {
			p.log.Error("jwks fetcher stopped", slog.Any(logError, err))
		}
	})
	defer func() { stopKeys(); keysDone.Wait() }()
	p.log.Info("proxy serving", slog.Int("inbound", len(p.inbound)), slog.Int("outbound", len(p.outbound)))

	<-ctx.Done()

	// Stop accepting, then drain HTTP gracefully.
	err := p.Close()
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownTimeout)
	defer cancel()
	var wg sync.WaitGroup
	for _, srv := range p.httpServers() {
		wg.Go(func() {
			if serr := srv.Shutdown(sctx); serr != nil {
				_ = srv.Close()
			}
		})
	}
	wg.Wait()
	p.conns.closeAll() // TCP passthrough and anything still open
	servers.Wait()
	p.wg.Wait()
	p.upstreams.closeIdle()
	p.log.Info("proxy stopped")
	if err != nil {
		p.log.Warn("closing listeners", slog.Any(logError, err))
	}
	return nil
}

func (p *Proxy) httpServers() []*http.Server {
	var s []*http.Server
	for _, in := range p.inbound {
		s = append(s, in.server)
	}
	for _, out := range p.outbound {
		s = append(s, out.server)
	}
	if p.httpProxy != nil {
		s = append(s, p.httpProxy.server)
	}
	if p.admin != nil {
		s = append(s, p.admin.server)
	}
	return s
}

// Close closes every listener. Use it to release a Proxy whose Run was
// never called; Run calls it on shutdown. It is safe to call twice.
func (p *Proxy) Close() error {
	p.closeOne.Do(func() {
		close(p.closing)
		p.cancel()
		var errs []error
		closeLn := func(ln net.Listener) {
			if ln != nil {
				if err := ln.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
					errs = append(errs, err)
				}
			}
		}
		for _, in := range p.inbound {
			closeLn(in.ln)
			closeLn(in.queue)
		}
		for _, out := range p.outbound {
			closeLn(out.ln)
			closeLn(out.queue)
		}
		if p.httpProxy != nil {
			closeLn(p.httpProxy.ln)
		}
		if p.admin != nil {
			closeLn(p.admin.ln)
		}
		p.closeErr = errors.Join(errs...)
	})
	return p.closeErr
}

// goAccept runs an accept loop on ln, handling each connection in its own
// goroutine owned by p.wg.
func (p *Proxy) goAccept(ln net.Listener, handle func(net.Conn)) {
	p.wg.Go(func() {
		var backoff time.Duration
		for {
			c, err := ln.Accept()
			if err != nil {
				if errors.Is(err, net.ErrClosed) {
					return
				}
				// Temporary (e.g. EMFILE): back off like net/http does.
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				p.log.Warn("accept", slog.String(logListener, ln.Addr().String()), slog.Any(logError, err))
				select {
				case <-time.After(backoff):
				case <-p.closing:
					return
				}
				continue
			}
			backoff = 0
			p.wg.Go(func() { handle(c) })
		}
	})
}

// Apply validates s completely and, if it is valid, makes it the current
// snapshot atomically: requests already routed finish with the old one,
// the next ones see the new one. An invalid snapshot changes nothing; the
// error names the offending field and is meant for the NACK. Connections
// of peers that s revokes are closed.
func (p *Proxy) Apply(s *configsyncv1.Snapshot) error {
	v, err := compile(s, p.cfg.TrustDomain, p.keys, p.cfg.AuthzCacheSize, time.Now())
	if err != nil {
		p.log.Warn("snapshot rejected", slog.Uint64(logVersion, s.GetVersion()), slog.Any(logError, err))
		return fmt.Errorf("snapshot %d: %w", s.GetVersion(), err)
	}
	old := p.view.Swap(v)
	p.keys.Want(v.jwksURIs())
	revocationsChanged := old == nil || !slices.EqualFunc(old.snapshot.GetRevocations(), v.snapshot.GetRevocations(),
		func(a, b *configsyncv1.Revocation) bool { return proto.Equal(a, b) })
	closed := 0
	if revocationsChanged {
		closed = p.conns.sweep(v.revoked)
		p.upstreams.closeIdle() // pooled outbound connections re-verify on redial
	}
	p.log.Info("snapshot applied", slog.Uint64(logVersion, v.version), slog.Int("services", len(v.services)),
		slog.Int("revocations", v.revoked.Len()), slog.Int("connections_closed", closed))
	return nil
}

// InboundListeners describes the bound inbound listeners, for the Hello
// message: the bound address (with the real port when Listen had port 0)
// and the app port behind it.
func (p *Proxy) InboundListeners() []*configsyncv1.InboundListener {
	out := make([]*configsyncv1.InboundListener, 0, len(p.inbound))
	for _, in := range p.inbound {
		out = append(out, &configsyncv1.InboundListener{Address: in.ln.Addr().String(), AppPort: in.appPort})
	}
	return out
}

// Ready reports whether the proxy has an SVID and a snapshot.
func (p *Proxy) Ready() bool { return p.notReady() == "" }

// notReady says why the proxy is not ready, or "" if it is.
func (p *Proxy) notReady() string {
	svid, err := p.cfg.Source.GetX509SVID()
	switch {
	case err != nil:
		return "no SVID: " + err.Error()
	case svid == nil || len(svid.Certificates) == 0:
		return "no SVID"
	case time.Now().After(svid.Certificates[0].NotAfter):
		return "SVID expired at " + svid.Certificates[0].NotAfter.UTC().Format(time.RFC3339)
	case p.view.Load() == nil:
		return "no config snapshot received yet"
	}
	return ""
}

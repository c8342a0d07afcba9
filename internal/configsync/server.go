package configsync

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	configsyncv1 "github.com/trustmesh/trustmesh/api/configsync/v1"
)

// ServerConfig configures the hub.
type ServerConfig struct {
	TrustDomain spiffeid.TrustDomain
	// CheckPeer refuses a caller certificate (e.g. revoked); nil error
	// accepts. The chain was already verified against the bundle by TLS.
	CheckPeer func(*x509.Certificate) error
	// Debounce coalesces bursts of changes (default 100ms).
	Debounce time.Duration
	// Expect lists the proxy IDs that were serving before a control-plane
	// restart. The first snapshot of every stream is held until they have
	// all reconnected, or Settle after the hub started, whichever is first:
	// otherwise the first proxy back would be pushed a snapshot without the
	// others' endpoints. Proxies keep serving their last good snapshot
	// meanwhile. Empty: nothing to wait for (a fresh mesh).
	Expect []string
	// Settle bounds the wait for Expect (default DefaultSettle), so a proxy
	// that died during the outage delays first pushes by at most this.
	Settle time.Duration
	// OnNack is told about every NACK (the server audits them).
	OnNack func(ctx context.Context, p ProxyStatus, version uint64, reason string)
	// OnEvents receives every batch of decision events (the server audits
	// them), with the count the proxy dropped before it. Batches larger
	// than MaxEventBatch are refused.
	OnEvents func(ctx context.Context, p ProxyStatus, events []*configsyncv1.DecisionEvent, dropped uint64)
	// OnReady is told when a proxy becomes ready (its first ACK), so that
	// the set of serving proxies is recorded before a restart can need it.
	OnReady func()
	// OnTaps receives request summaries while SetTap(true) is in force.
	OnTaps func(p ProxyStatus, requests []*configsyncv1.RequestSummary, dropped uint64)
	Logger *slog.Logger
	Now    func() time.Time
}

// MaxEventBatch bounds one batch of decision events from a proxy.
const MaxEventBatch = 1000

// ProxyStatus is one connected proxy as operators see it.
type ProxyStatus struct {
	ProxyInfo
	ConnectedAt  time.Time
	SentVersion  uint64
	AckedVersion uint64
	LastAckAt    time.Time
	NackVersion  uint64
	NackReason   string
	// SentRevision, AckedRevision and NackRevision are the store revisions
	// of the worlds the sent, ACKed and NACKed snapshots were computed from:
	// a proxy with AckedRevision ≥ R enforces every object written at R or
	// before (what a Kubernetes status reports as acknowledged).
	SentRevision, AckedRevision, NackRevision int64
}

// DefaultSettle is the default ServerConfig.Settle: the longest first
// pushes wait for expected proxies after a restart.
const DefaultSettle = 30 * time.Second

// Server is the hub: it implements the ConfigSync gRPC service.
type Server struct {
	configsyncv1.UnimplementedConfigSyncServer
	cfg     ServerConfig
	log     *slog.Logger
	world   atomic.Pointer[World]
	version atomic.Uint64
	dirty   chan struct{}
	tap     atomic.Bool // proxies send request summaries (see SetTap)

	sharedMu sync.Mutex
	shared   *shared     // the current generation's common snapshot part
	metrics  *hubMetrics // nil until RegisterMetrics

	settled time.Time // first pushes wait until then (see ServerConfig.Settle)

	mu      sync.Mutex
	proxies map[*proxyConn]struct{}
	// remote are the ready proxies connected to other replicas (SetRemote).
	remote       []ProxyInfo
	localChanged chan struct{} // see LocalChanges
	gen          chan struct{} // closed when a new generation is published
}

type proxyConn struct {
	status ProxyStatus
	sentAt time.Time // when SentVersion was sent, for the ACK latency
}

// hubMetrics are the hub's collectors.
type hubMetrics struct {
	pushes, acks, nacks prometheus.Counter
	ackLatency          prometheus.Histogram
}

// RegisterMetrics registers the hub's metrics (pushes, ACKs, NACKs,
// push-to-ACK latency, connected proxies) with reg. Call it before Run.
func (s *Server) RegisterMetrics(reg prometheus.Registerer) error {
	m := &hubMetrics{
		pushes: prometheus.NewCounter(prometheus.CounterOpts{Name: "trustmesh_server_snapshot_pushes_total", Help: "Snapshots sent to proxies."}),
		acks:   prometheus.NewCounter(prometheus.CounterOpts{Name: "trustmesh_server_snapshot_acks_total", Help: "Snapshots proxies applied (ACK)."}),
		nacks:  prometheus.NewCounter(prometheus.CounterOpts{Name: "trustmesh_server_snapshot_nacks_total", Help: "Snapshots proxies rejected (NACK)."}),
		ackLatency: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "trustmesh_server_push_ack_seconds",
			Help: "Time from sending a snapshot to its ACK.", Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5}}),
	}
	connected := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "trustmesh_server_connected_proxies", Help: "Proxies with an open config stream."},
		func() float64 {
			s.mu.Lock()
			defer s.mu.Unlock()
			return float64(len(s.proxies))
		})
	for _, c := range []prometheus.Collector{m.pushes, m.acks, m.nacks, m.ackLatency, connected} {
		if err := reg.Register(c); err != nil {
			return fmt.Errorf("register config push metrics: %w", err)
		}
	}
	s.metrics = m
	return nil
}

// NewServer returns a hub with an empty world.
func NewServer(cfg ServerConfig) *Server {
	if cfg.Debounce == 0 {
		cfg.Debounce = 100 * time.Millisecond
	}
	if cfg.Settle == 0 {
		cfg.Settle = DefaultSettle
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	s := &Server{cfg: cfg, log: cfg.Logger.With("component", "configsync"), dirty: make(chan struct{}, 1),
		proxies: map[*proxyConn]struct{}{}, localChanged: make(chan struct{}, 1), gen: make(chan struct{}), settled: cfg.Now().Add(cfg.Settle)}
	s.world.Store(&World{Mesh: policyDefaults()})
	return s
}

// SetTap asks every proxy to send request summaries (true) or to stop.
func (s *Server) SetTap(on bool) {
	if s.tap.Swap(on) != on {
		s.markDirty()
	}
}

// SetWorld publishes new store-derived inputs; streams recompute after the
// debounce interval.
func (s *Server) SetWorld(w *World) {
	s.world.Store(w)
	s.markDirty()
}

func (s *Server) markDirty() {
	select {
	case s.dirty <- struct{}{}:
	default:
	}
}

// Run debounces changes into generations until ctx is cancelled.
func (s *Server) Run(ctx context.Context) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-s.dirty:
		}
		// Absorb the rest of a burst: one recomputation for many writes.
		t := time.NewTimer(s.cfg.Debounce)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
		s.mu.Lock()
		close(s.gen)
		s.gen = make(chan struct{})
		s.mu.Unlock()
	}
}

// Proxies lists the connected proxies, ordered by SPIFFE ID then proxy ID.
func (s *Server) Proxies() []ProxyStatus {
	s.mu.Lock()
	out := make([]ProxyStatus, 0, len(s.proxies))
	for c := range s.proxies {
		out = append(out, c.status)
	}
	s.mu.Unlock()
	slices.SortFunc(out, func(a, b ProxyStatus) int {
		if c := strings.Compare(a.SPIFFEID.String(), b.SPIFFEID.String()); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	return out
}

// proxyInfos lists the local proxies and the remote ones (see SetRemote)
// not connected here, ordered by proxy ID.
func (s *Server) proxyInfos() []ProxyInfo {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]ProxyInfo, 0, len(s.proxies)+len(s.remote))
	local := make(map[string]bool, len(s.proxies))
	for c := range s.proxies {
		out = append(out, c.status.ProxyInfo)
		local[c.status.ID] = true
	}
	for _, p := range s.remote {
		if !local[p.ID] {
			out = append(out, p)
		}
	}
	slices.SortFunc(out, func(a, b ProxyInfo) int { return strings.Compare(a.ID, b.ID) })
	return out
}

// authenticate returns the caller's SVID ID: a workload of our trust
// domain, never a reserved /trustmesh/ identity.
func (s *Server) authenticate(ctx context.Context) (spiffeid.ID, error) {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return spiffeid.ID{}, status.Error(codes.Unauthenticated, "no peer")
	}
	ti, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok || len(ti.State.PeerCertificates) == 0 {
		return spiffeid.ID{}, status.Error(codes.Unauthenticated, "a proxy must present its X.509-SVID")
	}
	leaf := ti.State.PeerCertificates[0]
	id, err := x509svid.IDFromCert(leaf)
	if err != nil {
		return spiffeid.ID{}, status.Errorf(codes.Unauthenticated, "client certificate is not an SVID: %v", err)
	}
	if id.TrustDomain() != s.cfg.TrustDomain {
		return spiffeid.ID{}, status.Errorf(codes.PermissionDenied, "%s is not in trust domain %s", id, s.cfg.TrustDomain)
	}
	if strings.HasPrefix(id.Path(), "/trustmesh/") {
		return spiffeid.ID{}, status.Errorf(codes.PermissionDenied, "%s is a control-plane identity, not a proxy", id)
	}
	if !s.cfg.Now().Before(leaf.NotAfter) {
		return spiffeid.ID{}, status.Error(codes.Unauthenticated, "SVID expired")
	}
	if s.cfg.CheckPeer != nil {
		if err := s.cfg.CheckPeer(leaf); err != nil {
			return spiffeid.ID{}, status.Errorf(codes.PermissionDenied, "%v", err)
		}
	}
	return id, nil
}

// Stream serves one proxy.
func (s *Server) Stream(stream configsyncv1.ConfigSync_StreamServer) error {
	ctx, cancel := context.WithCancel(stream.Context())
	defer cancel()
	id, err := s.authenticate(ctx)
	if err != nil {
		return err
	}
	hello, err := recvHello(stream)
	if err != nil {
		return err
	}
	c := &proxyConn{status: ProxyStatus{ProxyInfo: ProxyInfo{ID: hello.GetProxyId(), SPIFFEID: id, Inbound: hello.GetInbound(),
		Mode: hello.GetMode(), Version: hello.GetVersion(), Ready: hello.GetServing()}, ConnectedAt: s.cfg.Now()}}
	s.mu.Lock()
	s.proxies[c] = struct{}{}
	s.mu.Unlock()
	if c.status.Ready {
		s.markDirty() // already serving: its endpoints join others' snapshots
		s.signalLocalChange()
	}
	s.log.Info("proxy connected", "proxy_id", c.status.ID, "spiffe_id", id, "inbound", len(c.status.Inbound))
	defer func() {
		s.mu.Lock()
		delete(s.proxies, c)
		s.mu.Unlock()
		s.markDirty() // its endpoints leave other proxies' snapshots
		s.signalLocalChange()
		s.log.Info("proxy disconnected", "proxy_id", c.status.ID, "spiffe_id", id)
	}()

	recvErr := make(chan error, 1)
	go func() { recvErr <- s.receive(ctx, stream, c) }()

	if err := s.settle(ctx, recvErr); err != nil {
		return err
	}

	var last *configsyncv1.Snapshot
	for {
		s.mu.Lock()
		gen := s.gen
		s.mu.Unlock()
		sh := s.sharedFor(gen)
		snap := computeWith(sh.world, sh.services, s.info(c))
		snap.Tap = s.tap.Load()
		if last == nil || !proto.Equal(last, snap) {
			last = proto.Clone(snap).(*configsyncv1.Snapshot)
			snap.Version = s.version.Add(1)
			if err := stream.Send(snap); err != nil {
				return err
			}
			s.mu.Lock()
			c.status.SentVersion, c.sentAt = snap.Version, s.cfg.Now()
			c.status.SentRevision = sh.world.Revision
			s.mu.Unlock()
			if s.metrics != nil {
				s.metrics.pushes.Inc()
			}
		} else {
			// Nothing of this world concerns the proxy: what it last
			// applied is current as of this revision too.
			s.mu.Lock()
			c.status.SentRevision = sh.world.Revision
			if c.status.AckedVersion == c.status.SentVersion {
				c.status.AckedRevision = sh.world.Revision
			}
			s.mu.Unlock()
		}
		select {
		case <-ctx.Done():
			return nil
		case err := <-recvErr:
			return err
		case <-gen:
		}
	}
}

// shared is what every stream's snapshot has in common within one
// generation: the world and the services with their endpoints. Every input
// change (world, proxy set, readiness) starts a new generation, so a value
// computed for a generation is right for all its streams.
type shared struct {
	gen      chan struct{}
	world    *World
	services []*configsyncv1.Service
}

// sharedFor returns the common part for generation gen, computing it once.
func (s *Server) sharedFor(gen chan struct{}) *shared {
	s.sharedMu.Lock()
	defer s.sharedMu.Unlock()
	w := s.world.Load()
	if sh := s.shared; sh != nil && sh.gen == gen && sh.world == w {
		return sh
	}
	sh := &shared{gen: gen, world: w, services: ComputeServices(w, s.proxyInfos())}
	s.shared = sh
	return sh
}

// settle waits until every expected proxy has reconnected, or the settle
// deadline (see ServerConfig.Expect).
func (s *Server) settle(ctx context.Context, recvErr <-chan error) error {
	for len(s.cfg.Expect) > 0 {
		s.mu.Lock()
		gen := s.gen
		back := make(map[string]bool, len(s.cfg.Expect))
		for c := range s.proxies {
			if c.status.Ready {
				back[c.status.ID] = true
			}
		}
		// One that reconnected to another replica is back too: its
		// endpoints come from that replica's presence.
		for _, p := range s.remote {
			back[p.ID] = true
		}
		missing := 0
		for _, id := range s.cfg.Expect {
			if !back[id] {
				missing++
			}
		}
		s.mu.Unlock()
		wait := s.settled.Sub(s.cfg.Now())
		if missing <= 0 || wait <= 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case err := <-recvErr:
			return err
		case <-gen:
		case <-time.After(wait):
		}
	}
	return nil
}

func (s *Server) info(c *proxyConn) ProxyInfo {
	s.mu.Lock()
	defer s.mu.Unlock()
	return c.status.ProxyInfo
}

func recvHello(stream configsyncv1.ConfigSync_StreamServer) (*configsyncv1.Hello, error) {
	msg, err := stream.Recv()
	if err != nil {
		return nil, err
	}
	h := msg.GetHello()
	if h == nil {
		return nil, status.Error(codes.InvalidArgument, "the first message must be Hello")
	}
	if h.GetProxyId() == "" || len(h.GetProxyId()) > 256 {
		return nil, status.Error(codes.InvalidArgument, "hello.proxy_id is required (at most 256 bytes)")
	}
	if len(h.GetInbound()) > 64 {
		return nil, status.Error(codes.InvalidArgument, "at most 64 inbound listeners")
	}
	return h, nil
}

// receive records ACKs and NACKs until the stream ends.
func (s *Server) receive(ctx context.Context, stream configsyncv1.ConfigSync_StreamServer, c *proxyConn) error {
	for {
		msg, err := stream.Recv()
		if err != nil {
			if errors.Is(err, context.Canceled) || status.Code(err) == codes.Canceled {
				return nil
			}
			return err
		}
		switch m := msg.GetMsg().(type) {
		case *configsyncv1.ProxyMessage_Ack:
			s.mu.Lock()
			becameReady := !c.status.Ready
			c.status.Ready = true
			c.status.AckedVersion = m.Ack.GetVersion()
			c.status.LastAckAt = s.cfg.Now()
			latency := c.status.LastAckAt.Sub(c.sentAt)
			matches := m.Ack.GetVersion() == c.status.SentVersion
			if matches {
				c.status.AckedRevision = c.status.SentRevision
			}
			s.mu.Unlock()
			if s.metrics != nil {
				s.metrics.acks.Inc()
				if matches {
					s.metrics.ackLatency.Observe(latency.Seconds())
				}
			}
			if becameReady {
				s.markDirty() // it now serves: add its endpoints for others
				s.signalLocalChange()
				if s.cfg.OnReady != nil {
					s.cfg.OnReady()
				}
			}
		case *configsyncv1.ProxyMessage_Nack:
			reason := m.Nack.GetReason()
			if len(reason) > 1024 {
				reason = reason[:1024]
			}
			s.mu.Lock()
			c.status.NackVersion, c.status.NackReason = m.Nack.GetVersion(), reason
			if m.Nack.GetVersion() == c.status.SentVersion {
				c.status.NackRevision = c.status.SentRevision
			}
			st := c.status
			s.mu.Unlock()
			if s.metrics != nil {
				s.metrics.nacks.Inc()
			}
			s.log.Warn("proxy rejected a snapshot", "proxy_id", st.ID, "spiffe_id", st.SPIFFEID, "version", m.Nack.GetVersion(), "reason", reason)
			if s.cfg.OnNack != nil {
				s.cfg.OnNack(ctx, st, m.Nack.GetVersion(), reason)
			}
		case *configsyncv1.ProxyMessage_Taps:
			rs := m.Taps.GetRequests()
			if len(rs) > MaxEventBatch {
				return status.Errorf(codes.InvalidArgument, "a batch holds at most %d request summaries, got %d", MaxEventBatch, len(rs))
			}
			if s.cfg.OnTaps != nil && s.tap.Load() {
				s.mu.Lock()
				st := c.status
				s.mu.Unlock()
				s.cfg.OnTaps(st, rs, m.Taps.GetDropped())
			}
		case *configsyncv1.ProxyMessage_Events:
			evs := m.Events.GetEvents()
			if len(evs) > MaxEventBatch {
				return status.Errorf(codes.InvalidArgument, "a batch holds at most %d decision events, got %d", MaxEventBatch, len(evs))
			}
			if s.cfg.OnEvents != nil {
				s.mu.Lock()
				st := c.status
				s.mu.Unlock()
				s.cfg.OnEvents(ctx, st, evs, m.Events.GetDropped())
			}
		default:
			return status.Error(codes.InvalidArgument, fmt.Sprintf("unexpected message %T", m))
		}
	}
}

// Package server assembles the trustmesh control plane: the store, the CA,
// the node API (gRPC, for agents) and the admin API (HTTPS, for operators),
// plus the background work that keeps them current (CA rotation steps,
// bundle file, credential renewal). It owns no domain logic of its own.
package server

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"golang.org/x/sync/errgroup"
	"k8s.io/client-go/rest"

	"github.com/trustmesh/trustmesh/internal/atomicfile"
	"github.com/trustmesh/trustmesh/internal/audit"
	"github.com/trustmesh/trustmesh/internal/ca"
	"github.com/trustmesh/trustmesh/internal/configsync"
	"github.com/trustmesh/trustmesh/internal/datadir"
	"github.com/trustmesh/trustmesh/internal/k8s/controller"
	"github.com/trustmesh/trustmesh/internal/k8s/webhook"
	"github.com/trustmesh/trustmesh/internal/kek"
	"github.com/trustmesh/trustmesh/internal/policy"
	"github.com/trustmesh/trustmesh/internal/store"
)

// Defaults.
const (
	DefaultListen       = "127.0.0.1:8443"
	DefaultAdminListen  = "127.0.0.1:8444"
	DefaultNodeSVIDTTL  = time.Hour
	DefaultPropagation  = 10 * time.Minute
	serverSVIDTTL       = 24 * time.Hour
	adminCredentialTTL  = 365 * 24 * time.Hour
	maintenanceInterval = time.Second
)

// Config configures a server. Zero values take the documented defaults.
type Config struct {
	// DataDir holds the SQLite store, CA keys, bundle.pem and admin/.
	DataDir string
	// TrustDomain is required on first start; later starts read it from the
	// data dir and refuse a different one.
	TrustDomain string
	// ListenAddr is the node API (agents); AdminListenAddr the admin API.
	ListenAddr, AdminListenAddr string
	// MetricsListenAddr, if set, serves Prometheus /metrics in plain HTTP
	// (bind it to loopback or a scrape network).
	MetricsListenAddr string
	// UpstreamCertFile and UpstreamKeyFile make the CA an intermediate.
	UpstreamCertFile, UpstreamKeyFile string
	// NodeSVIDTTL is the lifetime of node SVIDs (default 1h).
	NodeSVIDTTL time.Duration
	// CAPropagationDelay is how long a prepared CA authority is published
	// in the bundle before it starts signing (default 10m).
	CAPropagationDelay time.Duration
	// AuditCheckpointInterval is how often the audit log's head is signed
	// (default audit.DefaultCheckpointInterval; see auditchain.go).
	AuditCheckpointInterval time.Duration
	// StoreURL selects the store: "" for DataDir/trustmesh.db, sqlite://PATH,
	// or postgres://… for a database several replicas share.
	StoreURL string
	// KEKFile is the key-encryption key that seals the CA and audit keys in
	// a shared database (required with PostgreSQL; see package kek).
	KEKFile string
	// ReplicaID names this replica among those sharing a database (default:
	// hostname and node API address).
	ReplicaID string
	// Kubernetes feeds trustmesh.dev custom resources into the store (see
	// package k8s/controller), through Kubeconfig or, when empty, the
	// in-cluster service account.
	Kubernetes bool
	Kubeconfig string
	// K8sAgentServiceAccount (NAMESPACE:NAME, default
	// trustmesh-system:trustmesh-agent) is the only service account whose
	// projected tokens attest nodes (see k8sattest.go).
	K8sAgentServiceAccount string
	// WebhookListen serves the admission webhooks (validation of
	// trustmesh.dev objects, sidecar injection) there, reached by the API
	// server at WebhookURL or through the Service WebhookService
	// (NAMESPACE/NAME); the server keeps the webhook configurations'
	// caBundle current. WebhookSystemNamespace is never injected
	// (default trustmesh-system). Inject configures the injected sidecar.
	WebhookListen, WebhookURL, WebhookService, WebhookSystemNamespace string
	// BundleConfigMap (NAMESPACE/NAME, or NAME in the server's namespace)
	// receives the trust bundle (key bundle.pem) for the agents, at start
	// and on every change (needs WebhookListen).
	BundleConfigMap string
	Inject          webhook.InjectorConfig
	// Store overrides StoreURL (tests).
	Store  store.Store
	Logger *slog.Logger
	Now    func() time.Time
}

// Server is the control plane.
type Server struct {
	cfg   Config
	td    spiffeid.TrustDomain
	log   *slog.Logger
	store store.Store
	// shared: the store is a database other replicas may share (see ha.go);
	// replica names this one among them.
	shared  bool
	replica string
	kek     *kek.KEK // seals the CA and audit keys in a shared store
	// remote are the other replicas' proxies (runPresence), under remoteMu.
	remoteMu sync.Mutex
	remote   []remoteProxy
	// k8s feeds Kubernetes resources into the store (--kubernetes).
	k8s *controller.Controller
	// k8sRest is the API server connection (--kubernetes).
	k8sRest *rest.Config
	// k8sAttest checks service-account tokens (--kubernetes).
	k8sAttest *k8sAttestor
	// k8sUsed: k8s was started once (runKubernetes builds the next).
	k8sUsed bool
	// webhooks serves the admission webhooks (--webhook-listen).
	webhooks *webhooks
	ca       *ca.CA
	audit    *audit.Recorder
	// checkpoints signs the audit log's head (see auditchain.go).
	checkpoints *audit.Checkpointer
	// issued persists issued SVIDs with group commit (see issuedLog).
	issued *issuedLog
	ids    *identities
	reg    *registry
	push   *configsync.Server
	taps   *tapHub
	// servingProxies is servingProxiesFile's content, under servingMu.
	servingMu      sync.Mutex
	servingProxies string

	nodeLis, adminLis, metricsLis net.Listener
	metrics                       *serverMetrics
	lock                          *os.File
}

const (
	trustDomainFile = "trust-domain"
	// servingProxiesFile lists the IDs of the proxies serving from this
	// server, one per line, for the wait after a restart.
	servingProxiesFile = "serving-proxies"
)

// New validates cfg, opens the store and CA, and binds the listeners, so a
// bad configuration fails before anything serves.
func New(ctx context.Context, cfg Config) (_ *Server, err error) {
	if cfg.DataDir == "" {
		return nil, errors.New("--data-dir is required")
	}
	if cfg.ListenAddr == "" {
		cfg.ListenAddr = DefaultListen
	}
	if cfg.AdminListenAddr == "" {
		cfg.AdminListenAddr = DefaultAdminListen
	}
	if cfg.NodeSVIDTTL == 0 {
		cfg.NodeSVIDTTL = DefaultNodeSVIDTTL
	}
	if cfg.CAPropagationDelay == 0 {
		cfg.CAPropagationDelay = DefaultPropagation
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if (cfg.UpstreamCertFile == "") != (cfg.UpstreamKeyFile == "") {
		return nil, errors.New("--upstream-ca needs both a certificate and a key file: --upstream-ca cert.pem,key.pem")
	}
	if err := checkKEKFlag(cfg); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("create data dir: %w", err)
	}
	s := &Server{cfg: cfg, log: cfg.Logger.With("component", "server")}
	defer func() {
		if err != nil {
			s.close()
		}
	}()
	if s.lock, err = datadir.Lock(cfg.DataDir, "server"); err != nil {
		return nil, err
	}
	s.store = cfg.Store
	if s.store == nil {
		if s.store, s.shared, err = openStore(ctx, cfg.DataDir, cfg.StoreURL); err != nil {
			return nil, err
		}
	}
	if err := s.loadKEK(); err != nil {
		return nil, err
	}
	if s.shared {
		s.td, err = sharedTrustDomain(ctx, s.store, cfg.DataDir, cfg.TrustDomain)
	} else {
		s.td, err = resolveTrustDomain(cfg.DataDir, cfg.TrustDomain)
	}
	if err != nil {
		return nil, err
	}
	td := s.td
	caCfg := ca.Config{
		TrustDomain:      td,
		Dir:              filepath.Join(cfg.DataDir, "ca"),
		UpstreamCertFile: cfg.UpstreamCertFile,
		UpstreamKeyFile:  cfg.UpstreamKeyFile,
		Now:              cfg.Now,
		Logger:           cfg.Logger,
	}
	if s.shared {
		if err := s.sharedCAStorage(&caCfg); err != nil {
			return nil, err
		}
	}
	if s.ca, err = ca.New(caCfg); err != nil {
		return nil, fmt.Errorf("load CA: %w", err)
	}
	s.audit = audit.NewRecorder(s.store, cfg.Logger, cfg.Now)
	if s.checkpoints, err = s.newCheckpointer(ctx); err != nil {
		return nil, err
	}
	s.metrics = newServerMetrics()
	s.issued = newIssuedLog(s.store)
	s.issued.onCommit = s.metrics.countIssued
	// A restart waits for the proxies that were serving to reconnect before
	// computing endpoints (see configsync.ServerConfig.Expect).
	expect := readServingProxies(filepath.Join(cfg.DataDir, servingProxiesFile))
	if len(expect) > 0 {
		cfg.Logger.Info("first config pushes wait for the proxies that were serving", "component", "server", "proxies", len(expect))
	}
	s.taps = newTapHub(func(on bool) { s.push.SetTap(on) })
	s.push = configsync.NewServer(configsync.ServerConfig{
		TrustDomain: td,
		Expect:      expect,
		CheckPeer:   s.checkRevoked,
		OnNack:      s.auditNack,
		OnEvents:    s.auditEvents,
		OnTaps:      s.taps.publish,
		OnReady:     s.recordServingProxies,
		Logger:      cfg.Logger,
		Now:         cfg.Now,
	})
	if err := s.push.RegisterMetrics(s.metrics.reg); err != nil {
		return nil, err
	}
	s.metrics.registerChainLength(s.store)
	s.reg = newRegistry(s.store, td, cfg.Logger, s.push.SetWorld)
	if err := s.reg.refresh(ctx); err != nil {
		return nil, err
	}
	if err := s.writeBundle(); err != nil {
		return nil, err
	}
	if s.nodeLis, err = net.Listen("tcp", cfg.ListenAddr); err != nil {
		return nil, fmt.Errorf("listen on --listen %s: %w", cfg.ListenAddr, err)
	}
	if s.replica = cfg.ReplicaID; s.replica == "" {
		s.replica = replicaID(s.NodeAddr())
	}
	if s.adminLis, err = net.Listen("tcp", cfg.AdminListenAddr); err != nil {
		return nil, fmt.Errorf("listen on --admin-listen %s: %w", cfg.AdminListenAddr, err)
	}
	if cfg.MetricsListenAddr != "" {
		if s.metricsLis, err = net.Listen("tcp", cfg.MetricsListenAddr); err != nil {
			return nil, fmt.Errorf("listen on --metrics-listen %s: %w", cfg.MetricsListenAddr, err)
		}
	}
	s.ids, err = newIdentities(s.ca, td, s.NodeAddr(), s.AdminAddr(), cfg.Now)
	if err != nil {
		return nil, err
	}
	if err := s.ensureLocalAdmin(ctx); err != nil {
		return nil, err
	}
	if cfg.Kubernetes {
		// One API server connection, read once, for the controller, the
		// attestor and the webhooks.
		if s.k8sRest, err = kubernetesConfig(cfg.Kubeconfig); err != nil {
			return nil, err
		}
		if s.k8s, err = s.newKubernetesController(); err != nil {
			return nil, err
		}
		if s.k8sAttest, err = newK8sAttestor(s.k8sRest, cfg.K8sAgentServiceAccount, s.log.With("attestor", "k8s")); err != nil {
			return nil, err
		}
	} else if cfg.Kubeconfig != "" || cfg.WebhookListen != "" || cfg.K8sAgentServiceAccount != "" {
		return nil, errors.New("--kubeconfig, --webhook-listen and --k8s-agent-service-account are only used with --kubernetes")
	}
	if cfg.WebhookListen != "" {
		if s.cfg.WebhookSystemNamespace == "" {
			s.cfg.WebhookSystemNamespace = policy.RootNamespace
		}
		if s.webhooks, err = s.newWebhooks(); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// resolveTrustDomain reads or records the data dir's trust domain.
func resolveTrustDomain(dir, flag string) (spiffeid.TrustDomain, error) {
	path := filepath.Join(dir, trustDomainFile)
	b, err := os.ReadFile(path)
	switch {
	case err == nil:
		stored := strings.TrimSpace(string(b))
		if flag != "" && flag != stored {
			return spiffeid.TrustDomain{}, fmt.Errorf("--trust-domain %q does not match %q recorded in %s; a trust domain cannot change after the CA exists", flag, stored, dir)
		}
		return spiffeid.TrustDomainFromString(stored)
	case errors.Is(err, os.ErrNotExist):
		if flag == "" {
			return spiffeid.TrustDomain{}, errors.New("--trust-domain is required on first start (e.g. --trust-domain example.org)")
		}
		td, err := spiffeid.TrustDomainFromString(flag)
		if err != nil {
			return spiffeid.TrustDomain{}, fmt.Errorf("--trust-domain %q: %w", flag, err)
		}
		if err := os.WriteFile(path, []byte(td.Name()+"\n"), 0o644); err != nil {
			return spiffeid.TrustDomain{}, fmt.Errorf("record trust domain: %w", err)
		}
		return td, nil
	default:
		return spiffeid.TrustDomain{}, fmt.Errorf("read trust domain: %w", err)
	}
}

// NodeAddr and AdminAddr are the bound addresses (useful with port 0).
func (s *Server) NodeAddr() string  { return s.nodeLis.Addr().String() }
func (s *Server) AdminAddr() string { return s.adminLis.Addr().String() }

// Run serves until ctx is cancelled.
func (s *Server) Run(ctx context.Context) error {
	defer s.close()
	s.log.Info("trustmesh server started", "trust_domain", s.td.Name(), "listen", s.NodeAddr(),
		"admin_listen", s.AdminAddr(), "data_dir", s.cfg.DataDir, "shared_store", s.shared, "replica", s.replica)
	stopCheckpoints := s.startCheckpoints(ctx)
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { return s.reg.run(ctx) })
	g.Go(func() error { s.runElected(ctx, roleCA, s.runCALifecycle); return nil })
	if s.k8s != nil {
		g.Go(func() error { s.runElected(ctx, roleKubernetes, s.runKubernetes); return nil })
	}
	if s.webhooks != nil {
		g.Go(func() error { return s.webhooks.run(ctx) })
	}
	if s.shared {
		g.Go(func() error { return s.runPresence(ctx) })
		g.Go(func() error { s.runElected(ctx, roleSweeps, s.runSweeps); return nil })
	}
	g.Go(func() error { return s.push.Run(ctx) })
	g.Go(func() error { return s.runNodeAPI(ctx) })
	g.Go(func() error { return s.runAdminAPI(ctx) })
	g.Go(func() error { return s.runMaintenance(ctx) })
	if s.metricsLis != nil {
		g.Go(func() error { return s.metrics.serveMetrics(ctx, s.metricsLis) })
	}
	err := g.Wait()
	stopCheckpoints()
	s.log.Info("trustmesh server stopped")
	return err
}

func (s *Server) close() {
	for _, l := range []net.Listener{s.nodeLis, s.adminLis, s.metricsLis} {
		if l != nil {
			l.Close()
		}
	}
	if s.store != nil && s.cfg.Store == nil {
		s.store.Close()
	}
	if s.lock != nil {
		s.lock.Close() // releases the flock
	}
}

// writeBundle publishes the trust bundle for operators and agents'
// bootstrap: bundle.pem (X.509 authorities) and bundle.spiffe.json (the
// SPIFFE bundle format: a JWKS with the X.509 and JWT-SVID authorities).
func (s *Server) writeBundle() error {
	doc, err := s.ca.Bundle().Marshal()
	if err != nil {
		return fmt.Errorf("encode trust bundle: %w", err)
	}
	if err := atomicfile.Write(filepath.Join(s.cfg.DataDir, "bundle.pem"), s.ca.BundlePEM(), 0o644); err != nil {
		return fmt.Errorf("publish trust bundle: %w", err)
	}
	if err := atomicfile.Write(filepath.Join(s.cfg.DataDir, "bundle.spiffe.json"), doc, 0o644); err != nil {
		return fmt.Errorf("publish trust bundle: %w", err)
	}
	return nil
}

// runCALifecycle drives the CA lifecycle on the elected replica:
// activation of a prepared authority after the propagation delay and
// removal of retired ones. Every bundle change is written to bundle.pem and
// pushed to agents (here, and on the other replicas through Reload).
func (s *Server) runCALifecycle(ctx context.Context) {
	t := time.NewTicker(maintenanceInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		changed := false
		if since, ok := s.ca.PreparedSince(); ok && s.cfg.Now().Sub(since) >= s.cfg.CAPropagationDelay {
			a, err := s.ca.Activate()
			switch {
			case errors.Is(err, ca.ErrConcurrentChange):
				s.log.Info("activate prepared CA authority: another replica changed the CA; retrying", "error", err)
			case err != nil:
				s.log.Error("activate prepared CA authority", "error", err)
			default:
				changed = true
				s.recordAudit(ctx, "server", "ca.activate", a.ID, audit.OutcomeSuccess, "propagation delay passed")
			}
		}
		tidied, err := s.ca.Tidy()
		if err != nil && !errors.Is(err, ca.ErrConcurrentChange) {
			s.log.Error("remove retired CA authorities", "error", err)
		}
		if changed || tidied {
			s.bundleChanged(ctx)
		}
	}
}

// runMaintenance renews the server's own certificates, keeps the serving
// proxies' record and, on a shared store, follows the CA changes other
// replicas make (a rotation step, a reservation) and copies their audit
// checkpoints into this replica's checkpoint file.
func (s *Server) runMaintenance(ctx context.Context) error {
	t := time.NewTicker(maintenanceInterval)
	defer t.Stop()
	var blobs <-chan struct{}
	if s.shared {
		ch, cancel := s.store.Subscribe(store.TopicBlobs)
		defer cancel()
		blobs = ch
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		case <-blobs:
		}
		if s.shared {
			if changed, err := s.ca.Reload(); err != nil {
				s.log.Error("reload CA state written by another replica; keeping the current one", "error", err)
			} else if changed {
				s.bundleChanged(ctx)
			}
			if err := s.checkpoints.CatchUp(ctx); err != nil {
				s.log.Error("copy audit checkpoints into this replica's file", "error", err)
			}
		}
		if err := s.ids.renewIfDue(); err != nil {
			s.log.Error("renew server certificates", "error", err)
		}
		if w := s.webhooks; w != nil {
			if err := w.renewIfDue(); err != nil {
				s.log.Error("renew the admission webhooks' certificate", "error", err)
			}
			if !w.configured.Load() {
				if err := w.configure(ctx); err != nil {
					s.log.Error("configure the admission webhooks in the cluster", "error", err)
				}
			}
		}
		s.recordServingProxies()
	}
}

// recordServingProxies keeps servingProxiesFile current (written only when
// the set changes). It runs on every proxy's first ACK, not only on the
// maintenance tick: a server stopped within a tick of a proxy becoming
// ready must still wait for it after its restart.
func (s *Server) recordServingProxies() {
	s.servingMu.Lock()
	defer s.servingMu.Unlock()
	var ids []string
	for _, p := range s.push.Proxies() {
		if p.Ready {
			ids = append(ids, p.ID)
		}
	}
	slices.Sort(ids)
	content := strings.Join(ids, "\n")
	if content == s.servingProxies {
		return
	}
	if err := atomicfile.Write(filepath.Join(s.cfg.DataDir, servingProxiesFile), []byte(content+"\n"), 0o600); err != nil {
		s.log.Error("record serving proxies", "error", err)
		return
	}
	s.servingProxies = content
}

func readServingProxies(path string) []string {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	var ids []string
	for _, l := range strings.Split(string(b), "\n") {
		if l = strings.TrimSpace(l); l != "" {
			ids = append(ids, l)
		}
	}
	return ids
}

// checkRevoked refuses a revoked peer certificate.
func (s *Server) checkRevoked(leaf *x509.Certificate) error {
	if revoked, why := s.reg.current().revoked.Revoked(leaf); revoked {
		return errors.New("SVID revoked: " + why)
	}
	return nil
}

// auditNack records a proxy's refusal of a snapshot: a config the data plane
// did not take is a security-relevant event.
func (s *Server) auditNack(ctx context.Context, p configsync.ProxyStatus, version uint64, reason string) {
	s.recordAudit(ctx, p.SPIFFEID.String(), "config.nack", fmt.Sprintf("proxy %s snapshot %d", p.ID, version), audit.OutcomeError, reason)
}

// bundleChanged rewrites bundle.pem and wakes the agents' streams, and
// gives the webhook configurations the new bundle.
func (s *Server) bundleChanged(ctx context.Context) {
	if s.webhooks != nil {
		if err := s.webhooks.configure(ctx); err != nil {
			s.log.Error("update the admission webhooks' caBundle; retrying", "error", err)
		}
	}
	if err := s.writeBundle(); err != nil {
		s.log.Error("bundle changed", "error", err)
	}
	if err := s.reg.refresh(ctx); err != nil {
		s.log.Error("bundle changed", "error", err)
	}
}

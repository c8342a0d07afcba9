package agent

import (
	"context"
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	nodev1 "github.com/trustmesh/trustmesh/api/node/v1"
	"github.com/trustmesh/trustmesh/internal/attest"
	"github.com/trustmesh/trustmesh/internal/ca"
	"github.com/trustmesh/trustmesh/internal/datadir"
	"github.com/trustmesh/trustmesh/internal/serveraddr"
)

// Config configures an agent.
type Config struct {
	// ServerAddrs are the server's node API, HOST:PORT each: one address,
	// or the replicas of the control plane to fail over between (a
	// comma-separated entry counts as several; see serveraddr.Parse).
	ServerAddrs []string
	// JoinToken is needed only for the first join (or after the saved node
	// SVID expired or was revoked).
	JoinToken string
	// K8sTokenFile, instead of JoinToken, is a Kubernetes projected
	// service-account token (audience trustmesh) of the agent's pod, for a
	// server run with --kubernetes. It is read again at every attestation:
	// the kubelet rotates it.
	K8sTokenFile string
	// TrustBundleFile is the bootstrap trust bundle (the server's
	// bundle.pem). A newer bundle received from the server is kept in
	// DataDir and preferred on restart.
	TrustBundleFile string
	// SocketPath is the Workload API unix socket.
	SocketPath string
	// DataDir keeps the node SVID and the latest bundle.
	DataDir string
	Logger  *slog.Logger
	Now     func() time.Time
	// Attest overrides workload attestation (tests).
	Attest func(attest.PeerInfo) ([]attest.Selector, error)
}

// Agent is the node agent.
type Agent struct {
	cfg   Config
	log   *slog.Logger
	creds *nodeCreds
	state *StateHolder
	wl    *WorkloadAPI
	lock  *os.File
	// conn is the current connection to the server. It is replaced whenever
	// the node SVID changes, because TLS presents the client certificate at
	// the handshake: calls on the old connection would carry the old (or,
	// after a token join, no) certificate.
	conn atomic.Pointer[nodeConn]
}

type nodeConn struct {
	conn   *grpc.ClientConn
	client nodev1.NodeClient
}

func (a *Agent) nc() nodev1.NodeClient { return a.conn.Load().client }

// redial replaces the connection; calls and streams on the old one end and
// are retried by their owners.
func (a *Agent) redial() error {
	conn, err := dial(a.cfg.ServerAddrs, a.creds)
	if err != nil {
		return err
	}
	if old := a.conn.Swap(&nodeConn{conn: conn, client: nodev1.NewNodeClient(conn)}); old != nil {
		_ = old.conn.Close()
	}
	return nil
}

// New validates cfg and prepares the agent; it does not contact the server.
func New(cfg Config) (*Agent, error) {
	addrs, err := serveraddr.Parse(cfg.ServerAddrs...)
	if err != nil {
		return nil, fmt.Errorf("--server: %w", err)
	}
	cfg.ServerAddrs = addrs
	switch {
	case cfg.DataDir == "":
		return nil, errors.New("--data-dir is required")
	case cfg.SocketPath == "":
		return nil, errors.New("--socket is required")
	case cfg.JoinToken != "" && cfg.K8sTokenFile != "":
		return nil, errors.New("--join-token and --k8s-token-file are alternatives: give one")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("create data dir: %w", err)
	}
	lock, err := datadir.Lock(cfg.DataDir, "agent")
	if err != nil {
		return nil, err
	}
	a := &Agent{cfg: cfg, log: cfg.Logger.With("component", "agent"), creds: &nodeCreds{dir: cfg.DataDir}, state: NewStateHolder(), lock: lock}
	ok := false
	defer func() {
		if !ok {
			_ = lock.Close()
		}
	}()

	// Prefer the bundle saved from the server (it follows CA rotations);
	// fall back to the operator's bootstrap file.
	roots, err := loadPEMCerts(filepath.Join(cfg.DataDir, bundleFile))
	if err != nil {
		if cfg.TrustBundleFile == "" {
			return nil, errors.New("--trust-bundle is required on first start (the server's DATA_DIR/bundle.pem)")
		}
		if roots, err = loadPEMCerts(cfg.TrustBundleFile); err != nil {
			return nil, fmt.Errorf("--trust-bundle: %w", err)
		}
	}
	a.creds.setRoots(roots)

	wl, err := NewWorkloadAPI(WorkloadAPIConfig{SocketPath: cfg.SocketPath, State: a.state, JWT: a, Attest: cfg.Attest, Logger: cfg.Logger})
	if err != nil {
		return nil, err
	}
	// Bind before joining: a socket in use must not cost the join token.
	if err := wl.Listen(); err != nil {
		return nil, err
	}
	a.wl = wl
	ok = true
	return a, nil
}

// Run joins (or re-joins), then serves the Workload API and keeps SVIDs
// fresh until ctx is cancelled.
func (a *Agent) Run(ctx context.Context) error {
	defer a.lock.Close()
	if err := a.redial(); err != nil {
		return err
	}
	defer func() { a.conn.Load().conn.Close() }()

	if err := a.join(ctx); err != nil {
		return err
	}
	g, ctx := errgroup.WithContext(ctx)
	updates := make(chan *nodev1.SyncResponse, 1)
	g.Go(func() error { return a.wl.Run(ctx) })
	g.Go(func() error { return a.syncLoop(ctx, updates) })
	g.Go(func() error { return a.manage(ctx, updates) })
	return g.Wait()
}

// join obtains a node SVID: the saved one renewed over mTLS when it is
// still valid, else the join token.
func (a *Agent) join(ctx context.Context) error {
	now := a.cfg.Now()
	if saved, err := a.creds.loadSaved(now); err == nil {
		a.creds.svid.Store(saved)
		td := saved.ID.TrustDomain()
		a.creds.pinTD.Store(&td)
		err := a.untilReachable(ctx, "re-join with the saved node SVID", func() error { return a.renewNode(ctx) })
		if err == nil {
			a.log.Info("re-joined with the saved node SVID", "spiffe_id", saved.ID)
			return nil
		}
		if a.cfg.JoinToken == "" && a.cfg.K8sTokenFile == "" {
			return fmt.Errorf("re-join with the saved node SVID failed: %w; create a join token with `trustmesh token create` and pass --join-token", err)
		}
		a.log.Warn("re-join with the saved node SVID failed; attesting again", "error", err)
		a.creds.svid.Store(nil)
	} else if !errors.Is(err, os.ErrNotExist) {
		a.log.Warn("saved node SVID unusable", "error", err)
	}
	if a.cfg.K8sTokenFile != "" {
		return a.untilReachable(ctx, "attest with the Kubernetes token", func() error { return a.attestK8s(ctx) })
	}
	if a.cfg.JoinToken == "" {
		return errors.New("no valid node SVID in --data-dir and no --join-token: create one with `trustmesh token create --node NAME`")
	}
	return a.untilReachable(ctx, "join with token", func() error {
		cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		s, roots, err := attestNode(cctx, a.nc(), a.cfg.JoinToken)
		if err != nil {
			return explain(err)
		}
		return a.adoptNode(s, roots, "joined with a join token")
	})
}

// attestK8s attests the node with the service-account token in
// K8sTokenFile, read now: the kubelet replaces it before it expires.
func (a *Agent) attestK8s(ctx context.Context) error {
	b, err := os.ReadFile(a.cfg.K8sTokenFile)
	if err != nil {
		return fmt.Errorf("read --k8s-token-file: %w", err)
	}
	token := strings.TrimSpace(string(b))
	if token == "" {
		return fmt.Errorf("--k8s-token-file %s is empty", a.cfg.K8sTokenFile)
	}
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	s, roots, err := attestNodeWith(cctx, a.nc(), &nodev1.AttestRequest{K8SPsat: token})
	if err != nil {
		return explain(err)
	}
	return a.adoptNode(s, roots, "joined with a Kubernetes service-account token")
}

// untilReachable runs fn, retrying with backoff while the server is
// unreachable (restarting, or not up yet), so an agent started before its
// server, or during an outage, waits instead of exiting. Any other error
// (a refusal, a bundle that does not match) is returned at once.
func (a *Agent) untilReachable(ctx context.Context, what string, fn func() error) error {
	backoff := 250 * time.Millisecond
	for {
		err := fn()
		if err == nil || !errors.Is(err, errServerUnavailable) {
			if err != nil {
				return fmt.Errorf("%s: %w", what, err)
			}
			return nil
		}
		a.log.Warn(what+": server unreachable; retrying", "error", err, "retry_in", backoff)
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: %w", what, err)
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 10*time.Second)
	}
}

// errServerUnavailable marks errors worth retrying: the server could not be
// reached at all.
var errServerUnavailable = errors.New("server unreachable")

// explain turns gRPC errors into the server's own words.
func explain(err error) error {
	st, ok := status.FromError(err)
	if !ok {
		return err
	}
	if st.Code() == codes.Unavailable {
		// A failed TLS handshake is a configuration problem, not an outage.
		if strings.Contains(st.Message(), "handshake") {
			return fmt.Errorf("TLS handshake with the server failed (does --trust-bundle hold the server's bundle.pem?): %s", st.Message())
		}
		return fmt.Errorf("%w: %s", errServerUnavailable, st.Message())
	}
	return errors.New(st.Message())
}

func (a *Agent) adoptNode(s *x509svid.SVID, roots []*x509.Certificate, how string) error {
	td := s.ID.TrustDomain()
	a.creds.pinTD.Store(&td)
	a.creds.svid.Store(s)
	if len(roots) > 0 {
		a.creds.setRoots(roots)
		if err := a.creds.saveBundle(roots); err != nil {
			return err
		}
	}
	if err := a.creds.save(s); err != nil {
		return err
	}
	if err := a.redial(); err != nil {
		return err
	}
	a.log.Info(how, "spiffe_id", s.ID, "expires", s.Certificates[0].NotAfter)
	return nil
}

// renewNode re-attests with the current node SVID and reconnects, so the
// server sees the new certificate on the next handshake.
func (a *Agent) renewNode(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	s, roots, err := attestNode(ctx, a.nc(), "")
	if err != nil {
		return explain(err)
	}
	return a.adoptNode(s, roots, "node SVID renewed")
}

// syncLoop keeps a Sync stream open, reconnecting with backoff, and hands the
// latest state to manage (latest wins).
func (a *Agent) syncLoop(ctx context.Context, out chan *nodev1.SyncResponse) error {
	backoff := 250 * time.Millisecond
	for ctx.Err() == nil {
		stream, err := a.nc().Sync(ctx, &nodev1.SyncRequest{})
		if err == nil {
			a.log.Info("sync stream open", "server", serveraddr.FromContext(stream.Context()))
			for {
				var msg *nodev1.SyncResponse
				msg, err = stream.Recv()
				if err != nil {
					break
				}
				backoff = 250 * time.Millisecond
				select {
				case <-out:
				default:
				}
				out <- msg
			}
		}
		if ctx.Err() != nil {
			return nil
		}
		a.log.Warn("sync stream interrupted; retrying", "error", explain(err), "retry_in", backoff)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 10*time.Second)
	}
	return nil
}

// entry is one registration with the SVID the agent holds for it.
type entry struct {
	reg  *nodev1.Registration
	svid *x509svid.SVID
}

// manage owns the workload SVIDs: it mints for new or changed registrations,
// rotates at half TTL, re-mints revoked ones, renews the node SVID, and
// publishes each result as a new Workload API state.
func (a *Agent) manage(ctx context.Context, updates <-chan *nodev1.SyncResponse) error {
	var (
		last    *nodev1.SyncResponse
		bundle  *spiffebundle.Bundle
		entries = map[string]*entry{}
	)
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case msg := <-updates:
			b, err := a.adoptSync(msg)
			if err != nil {
				a.log.Error("rejecting sync update; keeping the last good state", "error", err)
				break
			}
			last, bundle = msg, b
		case <-timer.C:
		}
		if a.nodeDue() {
			if err := a.renewNode(ctx); err != nil {
				a.log.Error("renew node SVID", "error", err)
				// A Kubernetes node proves itself again with the
				// current token (its SVID may have been revoked).
				if a.cfg.K8sTokenFile != "" && !errors.Is(err, errServerUnavailable) {
					if err := a.attestK8s(ctx); err != nil {
						a.log.Error("attest with the Kubernetes token", "error", err)
					}
				}
			}
		}
		next := time.Minute
		if last != nil {
			n, err := a.reconcile(ctx, last, bundle, entries)
			if err != nil {
				a.log.Error("refresh workload SVIDs; retrying", "error", err)
				n = 5 * time.Second
			}
			next = min(next, n)
		}
		if s := a.creds.svid.Load(); s != nil {
			next = min(next, time.Until(ca.RenewAt(s.Certificates[0])))
		}
		timer.Reset(max(next, 100*time.Millisecond))
	}
}

func (a *Agent) nodeDue() bool {
	s := a.creds.svid.Load()
	return s != nil && !a.cfg.Now().Before(ca.RenewAt(s.Certificates[0]))
}

// adoptSync validates a sync message and takes its trust bundle.
func (a *Agent) adoptSync(msg *nodev1.SyncResponse) (*spiffebundle.Bundle, error) {
	td, ok := a.creds.trustDomain()
	if !ok {
		return nil, errors.New("no trust domain yet")
	}
	b, err := spiffebundle.Parse(td, msg.GetSpiffeBundle())
	if err != nil {
		return nil, fmt.Errorf("parse bundle: %w", err)
	}
	roots, err := parseDER(msg.GetX509Authorities())
	if err != nil {
		return nil, fmt.Errorf("bad X.509 authorities in sync update: %w", err)
	}
	if len(roots) == 0 {
		return nil, errors.New("sync update has no X.509 authorities")
	}
	if !slices.EqualFunc(roots, *a.creds.roots.Load(), func(x, y *x509.Certificate) bool { return x.Equal(y) }) {
		a.creds.setRoots(roots)
		if err := a.creds.saveBundle(roots); err != nil {
			a.log.Error("save trust bundle", "error", err)
		}
		a.log.Info("trust bundle updated", "authorities", len(roots))
	}
	return b, nil
}

// reconcile brings entries in line with the sync state and returns when it
// next needs to run.
func (a *Agent) reconcile(ctx context.Context, msg *nodev1.SyncResponse, bundle *spiffebundle.Bundle, entries map[string]*entry) (time.Duration, error) {
	now := a.cfg.Now()
	revoked := revocationList(msg.GetRevocations())
	want := map[string]*nodev1.Registration{}
	for _, r := range msg.GetRegistrations() {
		want[r.GetEntryId()] = r
	}
	for id := range entries {
		if _, ok := want[id]; !ok {
			delete(entries, id)
		}
	}
	type pending struct {
		reg *nodev1.Registration
		key crypto.Signer
	}
	var reqs []*nodev1.X509SVIDRequest
	keys := map[string]*pending{}
	for id, r := range want {
		e := entries[id]
		if e != nil && e.reg.GetRevision() == r.GetRevision() && e.svid != nil && !needsRotation(e.svid, now, bundle, revoked) {
			continue
		}
		key, csr, err := newCSR()
		if err != nil {
			return 0, err
		}
		reqs = append(reqs, &nodev1.X509SVIDRequest{EntryId: id, Csr: csr})
		keys[id] = &pending{reg: r, key: key}
	}
	changed := false
	if len(reqs) > 0 {
		cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		resp, err := a.nc().MintX509SVIDs(cctx, &nodev1.MintX509SVIDsRequest{Requests: reqs})
		cancel()
		if err != nil {
			return 0, fmt.Errorf("mint X.509-SVIDs: %w", explain(err))
		}
		for _, res := range resp.GetResults() {
			p := keys[res.GetEntryId()]
			if p == nil {
				continue
			}
			if res.GetError() != "" {
				a.log.Error("server refused an SVID", "entry", res.GetEntryId(), "error", res.GetError())
				continue
			}
			s, err := svidFromChain(res.GetSvidChain(), p.key)
			if err != nil {
				a.log.Error("bad SVID from server", "entry", res.GetEntryId(), "error", err)
				continue
			}
			entries[res.GetEntryId()] = &entry{reg: p.reg, svid: s}
			changed = true
			a.log.Info("workload SVID issued", "entry", res.GetEntryId(), "spiffe_id", s.ID, "serial", s.Certificates[0].SerialNumber.String(), "expires", s.Certificates[0].NotAfter)
		}
	}
	a.publish(entries, bundle, changed)
	next := time.Hour
	for _, e := range entries {
		next = min(next, ca.RenewAt(e.svid.Certificates[0]).Sub(now))
	}
	if len(keys) > len(reqs) || len(entries) < len(want) {
		next = min(next, 5*time.Second) // some were refused: retry soon
	}
	return next, nil
}

// needsRotation: past half life, revoked, or signed by an authority that
// left the bundle.
func needsRotation(s *x509svid.SVID, now time.Time, bundle *spiffebundle.Bundle, revoked *ca.RevocationList) bool {
	leaf := s.Certificates[0]
	if !now.Before(ca.RenewAt(leaf)) {
		return true
	}
	if r, _ := revoked.Revoked(leaf); r {
		return true
	}
	if bundle != nil {
		if _, _, err := x509svid.Verify(s.Certificates, bundle); err != nil {
			return true
		}
	}
	return false
}

func revocationList(revs []*nodev1.Revocation) *ca.RevocationList {
	var serials []ca.RevokedSerial
	var ids []ca.RevokedID
	for _, r := range revs {
		if r.GetSerial() != "" {
			serials = append(serials, r.GetSerial())
			continue
		}
		if id, err := spiffeid.FromString(r.GetSpiffeId()); err == nil {
			ids = append(ids, ca.RevokedID{ID: id, RevokedAt: time.Unix(0, r.GetRevokedAtUnixNano())})
		}
	}
	return ca.NewRevocationList(serials, ids)
}

// publish hands a new state to the Workload API when anything changed.
func (a *Agent) publish(entries map[string]*entry, bundle *spiffebundle.Bundle, changed bool) {
	cur := a.state.Current()
	if !changed && cur != nil && cur.Bundle == bundle && len(cur.Identities) == len(entries) {
		return
	}
	st := &State{Bundle: bundle}
	for id, e := range entries {
		sels, err := attest.ParseSelectors(e.reg.GetSelectors())
		if err != nil {
			a.log.Error("registration has bad selectors; not serving it", "entry", id, "error", err)
			continue
		}
		st.Identities = append(st.Identities, Identity{
			EntryID: id, SPIFFEID: e.svid.ID, Selectors: sels, SVID: e.svid, Hint: e.reg.GetHint(),
			JWTTTL: time.Duration(e.reg.GetJwtSvidTtlSeconds()) * time.Second,
		})
	}
	slices.SortFunc(st.Identities, func(x, y Identity) int { return strings.Compare(x.EntryID, y.EntryID) })
	if err := a.state.Set(st); err != nil {
		// Keep serving the previous state rather than a broken one.
		a.log.Error("publish workload state; keeping the previous one", "error", err)
	}
}

// MintJWTSVID implements JWTMinter through the server.
func (a *Agent) MintJWTSVID(ctx context.Context, id spiffeid.ID, audience []string, ttl time.Duration) (string, error) {
	resp, err := a.nc().MintJWTSVID(ctx, &nodev1.MintJWTSVIDRequest{SpiffeId: id.String(), Audience: audience, TtlSeconds: int64(ttl / time.Second)})
	if err != nil {
		return "", explain(err)
	}
	return resp.GetToken(), nil
}

package agent

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/spiffe/go-spiffe/v2/proto/spiffe/workload"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/trustmesh/trustmesh/internal/attest"
)

// Log attribute keys.
const (
	logKeyComponent = "component"
	logKeyRPC       = "rpc"
	logKeyPID       = "pid"
	logKeyUID       = "uid"
	logKeyGID       = "gid"
	logKeySelectors = "selectors"
	logKeyReason    = "reason"
	logKeyError     = "error"
	logKeySPIFFEID  = "spiffe_id"
	logKeySocket    = "socket"
)

const (
	// securityHeader must be "true" on every request: a browser or an SSRF
	// cannot set it, so it proves the caller meant to talk to the Workload
	// API (SPIFFE Workload API spec, "Transport").
	securityHeader = "workload.spiffe.io"
	// shutdownGrace is how long Run waits for RPCs to end before cutting
	// connections.
	shutdownGrace = 5 * time.Second
	// jwtCacheSize bounds the JWT-SVID cache: (SPIFFE ID, audience) pairs.
	jwtCacheSize = 1024
	// maxSocketPath is the longest unix socket path: sun_path holds 108
	// bytes including the terminating NUL.
	maxSocketPath = 107
)

// Errors a workload sees. The wording of the first two is the spec's (and
// SPIRE's), which clients and operators recognise. The cause of a denial is
// logged, never sent.
var (
	errNoHeader   = status.Error(codes.InvalidArgument, "security header missing from request")
	errNoIdentity = status.Error(codes.PermissionDenied, "no identity issued")
	errNotReady   = status.Error(codes.Unavailable, "identities not synced from the server yet; retry")
	errStopping   = status.Error(codes.Unavailable, "workload api is shutting down; retry")
	errNoAudience = status.Error(codes.InvalidArgument, "audience must be specified")
)

// JWTMinter mints JWT-SVIDs; the agent's session with the server implements
// it.
type JWTMinter interface {
	// MintJWTSVID returns a JWT-SVID for id (which the caller was attested
	// for) bound to audience. ttl zero lets the minter choose.
	MintJWTSVID(ctx context.Context, id spiffeid.ID, audience []string, ttl time.Duration) (string, error)
}

// WorkloadAPIConfig configures the Workload API server.
type WorkloadAPIConfig struct {
	// SocketPath is the absolute path of the unix socket to listen on, at
	// most 107 bytes. A stale socket there is removed; anything else there
	// (a file, or a socket something is serving on) fails Run. The socket is
	// mode 0777 (any local process may ask; attestation decides what it
	// gets) and its directory is created 0755 if missing.
	SocketPath string
	// State is what is served. Required.
	State *StateHolder
	// JWT mints JWT-SVIDs. Required.
	JWT JWTMinter
	// Attest returns the selectors of a caller. Default attest.UnixSelectors.
	Attest func(attest.PeerInfo) ([]attest.Selector, error)
	// AllowUnauthenticatedVerifiers serves the trust bundles
	// (FetchX509Bundles, FetchJWTBundles) to callers that match no
	// registration, for workloads that only verify. Off by default, as in
	// SPIRE (allow_unauthenticated_verifiers). ValidateJWTSVID never
	// requires an identity.
	AllowUnauthenticatedVerifiers bool
	// Now is the clock of the JWT-SVID cache. Default time.Now.
	Now func() time.Time
	// Logger receives denials at Info and failures at Error. Default: discard.
	Logger *slog.Logger
}

// WorkloadAPI serves the SPIFFE Workload API on a unix socket: X.509-SVIDs,
// JWT-SVIDs and trust bundles to the local processes that attestation
// entitles to them. See the package documentation for the model.
type WorkloadAPI struct {
	workload.UnimplementedSpiffeWorkloadAPIServer

	socketPath                    string
	state                         *StateHolder
	minter                        JWTMinter
	attest                        func(attest.PeerInfo) ([]attest.Selector, error)
	allowUnauthenticatedVerifiers bool
	now                           func() time.Time
	log                           *slog.Logger
	jwts                          *jwtCache
	lis                           *net.UnixListener // bound by Listen, served by Run

	started  atomic.Bool
	ready    chan struct{} // closed once the socket is listening (tests wait on it)
	stopping chan struct{} // closed when Run shuts down: ends the streams
}

var _ workload.SpiffeWorkloadAPIServer = (*WorkloadAPI)(nil)

// NewWorkloadAPI validates cfg and returns a server; Run starts it.
func NewWorkloadAPI(cfg WorkloadAPIConfig) (*WorkloadAPI, error) {
	var errs []error
	switch {
	case cfg.SocketPath == "":
		errs = append(errs, errors.New("socket path is required"))
	case !filepath.IsAbs(cfg.SocketPath):
		errs = append(errs, fmt.Errorf("socket path %q must be absolute", cfg.SocketPath))
	case len(cfg.SocketPath) > maxSocketPath:
		errs = append(errs, fmt.Errorf("socket path %q is %d bytes; unix sockets allow at most %d", cfg.SocketPath, len(cfg.SocketPath), maxSocketPath))
	}
	if cfg.State == nil {
		errs = append(errs, errors.New("state holder is required"))
	}
	if cfg.JWT == nil {
		errs = append(errs, errors.New("JWT minter is required"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("workload api config: %w", err)
	}

	w := &WorkloadAPI{
		socketPath:                    filepath.Clean(cfg.SocketPath),
		state:                         cfg.State,
		minter:                        cfg.JWT,
		attest:                        cfg.Attest,
		allowUnauthenticatedVerifiers: cfg.AllowUnauthenticatedVerifiers,
		now:                           cfg.Now,
		log:                           cfg.Logger,
		jwts:                          newJWTCache(jwtCacheSize),
		ready:                         make(chan struct{}),
		stopping:                      make(chan struct{}),
	}
	if w.attest == nil {
		w.attest = attest.UnixSelectors
	}
	if w.now == nil {
		w.now = time.Now
	}
	if w.log == nil {
		w.log = slog.New(slog.DiscardHandler)
	}
	w.log = w.log.With(logKeyComponent, "workloadapi")
	return w, nil
}

// Run listens on the socket and serves until ctx is cancelled. Then it ends
// the open streams (Unavailable: clients reconnect to the next agent),
// waits up to shutdownGrace for RPCs to finish before closing connections,
// removes the socket and returns nil once every RPC handler has returned.
// A failure to listen or serve is returned. Run may be called once.
func (w *WorkloadAPI) Run(ctx context.Context) error {
	if !w.started.CompareAndSwap(false, true) {
		return errors.New("workload api: Run called twice")
	}
	lis := w.lis
	if lis == nil {
		if err := w.Listen(); err != nil {
			return err
		}
		lis = w.lis
	}
	srv := grpc.NewServer(
		grpc.Creds(attest.PeerCredentials()),
		// Stop and GracefulStop return only once every handler has.
		grpc.WaitForHandlers(true),
	)
	workload.RegisterSpiffeWorkloadAPIServer(srv, w)

	served := make(chan error, 1)
	go func() { served <- srv.Serve(lis) }()
	w.log.Info("workload api listening", logKeySocket, w.socketPath)
	close(w.ready)

	var runErr error
	serving := true
	select {
	case <-ctx.Done():
	case err := <-served:
		// Serve returns before a stop only when accepting fails.
		runErr = fmt.Errorf("workload api: serve %s: %w", w.socketPath, err)
		serving = false
	}

	close(w.stopping)
	stopped := make(chan struct{})
	go func() {
		srv.GracefulStop()
		close(stopped)
	}()
	grace := time.NewTimer(shutdownGrace)
	select {
	case <-stopped:
	case <-grace.C:
		srv.Stop()
		<-stopped
	}
	grace.Stop()
	if serving {
		// Serve returns nil after a stop; anything else is worth a line.
		if err := <-served; err != nil {
			w.log.Error("workload api serve", logKeyError, err.Error())
		}
	}
	// Closing the listener unlinked the socket (SetUnlinkOnClose).
	w.log.Info("workload api stopped", logKeySocket, w.socketPath)
	return runErr
}

// Listen binds the socket now, so a socket already served by another agent
// is reported before the agent spends its join token. Run calls it if the
// caller did not.
func (w *WorkloadAPI) Listen() error {
	lis, err := listen(w.socketPath)
	if err != nil {
		return fmt.Errorf("workload api: %w", err)
	}
	w.lis = lis
	return nil
}

// listen creates the socket directory, replaces a stale socket and listens.
func listen(path string) (*net.UnixListener, error) {
	if err := makeSocketDir(filepath.Dir(path)); err != nil {
		return nil, fmt.Errorf("socket directory: %w", err)
	}
	if err := removeStaleSocket(path); err != nil {
		return nil, err
	}
	lis, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("listen: %w", err)
	}
	lis.SetUnlinkOnClose(true)
	// Any local process may connect; attestation decides what it gets.
	if err := os.Chmod(path, 0o777); err != nil { //nolint:gosec // G302: world-connectable by design
		return nil, errors.Join(fmt.Errorf("socket permissions: %w", err), lis.Close())
	}
	return lis, nil
}

// makeSocketDir creates dir 0755 (whatever the umask) if it is missing; an
// existing directory is left as the operator made it.
func makeSocketDir(dir string) error {
	if _, err := os.Stat(dir); err == nil {
		return nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil { //nolint:gosec // G301: every local user must reach the socket
		return err
	}
	// Whatever the umask: every local user must reach the socket inside.
	return os.Chmod(dir, 0o755) //nolint:gosec // G302: world-readable by design
}

// removeStaleSocket removes a socket nobody serves on. It refuses to remove
// anything that is not a socket, or a socket another process serves on
// (another agent, most likely).
func removeStaleSocket(path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("socket path: %w", err)
	}
	if fi.Mode().Type() != fs.ModeSocket {
		return fmt.Errorf("%s exists and is not a socket; remove it or choose another path", path)
	}
	if conn, err := net.DialTimeout("unix", path, time.Second); err == nil {
		_ = conn.Close()
		return fmt.Errorf("another process is serving on %s; is an agent already running?", path)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove stale socket: %w", err)
	}
	return nil
}

// caller is the process behind one RPC.
type caller struct {
	rpc  string
	peer attest.PeerInfo
}

// newCaller checks the security header and identifies the calling process.
func (w *WorkloadAPI) newCaller(ctx context.Context, rpc string) (caller, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	if v := md.Get(securityHeader); len(v) != 1 || v[0] != "true" {
		return caller{}, errNoHeader
	}
	p, ok := attest.PeerFromContext(ctx)
	if !ok {
		// Only when the server was not built by Run (no PeerCredentials).
		w.log.Error("request without unix peer credentials", logKeyRPC, rpc)
		return caller{}, errNoIdentity
	}
	return caller{rpc: rpc, peer: p}, nil
}

// identitiesOf attests the caller and returns the identities of p it is
// entitled to: those whose selectors are all among the caller's. None, or a
// failed attestation, is PermissionDenied, logged with the cause.
func (w *WorkloadAPI) identitiesOf(c caller, p *published) ([]*servedIdentity, []attest.Selector, error) {
	sels, err := w.attest(c.peer)
	if err != nil {
		w.deny(c, nil, "attestation failed", err)
		return nil, nil, errNoIdentity
	}
	var ids []*servedIdentity
	for i := range p.identities {
		if attest.MatchAll(p.identities[i].Selectors, sels) {
			ids = append(ids, &p.identities[i])
		}
	}
	if len(ids) == 0 {
		w.deny(c, sels, "no registration matches the caller", nil)
		return nil, sels, errNoIdentity
	}
	return ids, sels, nil
}

// deny logs a refused request: a security event.
func (w *WorkloadAPI) deny(c caller, sels []attest.Selector, reason string, err error) {
	strs := make([]string, len(sels))
	for i, s := range sels {
		strs[i] = s.String()
	}
	attrs := []slog.Attr{
		slog.String(logKeyRPC, c.rpc),
		slog.Int(logKeyPID, int(c.peer.PID)),
		slog.Uint64(logKeyUID, uint64(c.peer.UID)),
		slog.Uint64(logKeyGID, uint64(c.peer.GID)),
		slog.Any(logKeySelectors, strs),
		slog.String(logKeyReason, reason),
	}
	if err != nil {
		attrs = append(attrs, slog.String(logKeyError, err.Error()))
	}
	w.log.LogAttrs(context.Background(), slog.LevelInfo, "workload api request denied", attrs...)
}

// serveStream runs one server stream: it builds the caller's response from
// each published State in turn (waiting for the first if there is none yet)
// and sends it when it differs from the last one sent. An error from build
// ends the stream with that error.
func serveStream[T any, R interface {
	*T
	proto.Message
}](w *WorkloadAPI, stream grpc.ServerStreamingServer[T], rpc string, build func(caller, *published) (R, error)) error {
	ctx := stream.Context()
	c, err := w.newCaller(ctx, rpc)
	if err != nil {
		return err
	}
	var last R
	for p := w.state.load(); ; p = w.state.load() {
		if p.state != nil {
			resp, err := build(c, p)
			if err != nil {
				return err
			}
			if last == nil || !proto.Equal(resp, last) {
				if err := stream.Send(resp); err != nil {
					return err
				}
				last = resp
			}
		}
		select {
		case <-p.next:
		case <-ctx.Done():
			return status.FromContextError(ctx.Err()).Err()
		case <-w.stopping:
			return errStopping
		}
	}
}

// FetchX509SVID streams the caller's X.509-SVIDs, again whenever a new State
// changes them or the bundle, and ends with PermissionDenied when the caller
// is entitled to none (now or after a change). The caller is attested anew
// for every State: registrations change, and so may the process.
func (w *WorkloadAPI) FetchX509SVID(_ *workload.X509SVIDRequest, stream grpc.ServerStreamingServer[workload.X509SVIDResponse]) error {
	return serveStream(w, stream, "FetchX509SVID", func(c caller, p *published) (*workload.X509SVIDResponse, error) {
		ids, _, err := w.identitiesOf(c, p)
		if err != nil {
			return nil, err
		}
		resp := &workload.X509SVIDResponse{Svids: make([]*workload.X509SVID, 0, len(ids))}
		for _, id := range ids {
			resp.Svids = append(resp.Svids, &workload.X509SVID{
				SpiffeId:    id.SPIFFEID.String(),
				X509Svid:    id.chain,
				X509SvidKey: id.key,
				Bundle:      p.x509Bundle,
				Hint:        id.Hint,
			})
		}
		return resp, nil
	})
}

// FetchX509Bundles streams the trust domain's X.509 authorities, again when
// they change. Like SPIRE, the caller must be entitled to an identity unless
// AllowUnauthenticatedVerifiers is set.
func (w *WorkloadAPI) FetchX509Bundles(_ *workload.X509BundlesRequest, stream grpc.ServerStreamingServer[workload.X509BundlesResponse]) error {
	return serveStream(w, stream, "FetchX509Bundles", func(c caller, p *published) (*workload.X509BundlesResponse, error) {
		if err := w.mayVerify(c, p); err != nil {
			return nil, err
		}
		return &workload.X509BundlesResponse{Bundles: map[string][]byte{p.trustDomainID: p.x509Bundle}}, nil
	})
}

// FetchJWTBundles streams the trust domain's JWT authorities as a JWKS
// document, again when they change; same entitlement rule as
// FetchX509Bundles.
func (w *WorkloadAPI) FetchJWTBundles(_ *workload.JWTBundlesRequest, stream grpc.ServerStreamingServer[workload.JWTBundlesResponse]) error {
	return serveStream(w, stream, "FetchJWTBundles", func(c caller, p *published) (*workload.JWTBundlesResponse, error) {
		if err := w.mayVerify(c, p); err != nil {
			return nil, err
		}
		return &workload.JWTBundlesResponse{Bundles: map[string][]byte{p.trustDomainID: p.jwks}}, nil
	})
}

func (w *WorkloadAPI) mayVerify(c caller, p *published) error {
	if w.allowUnauthenticatedVerifiers {
		return nil
	}
	_, _, err := w.identitiesOf(c, p)
	return err
}

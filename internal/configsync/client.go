package configsync

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"google.golang.org/grpc/credentials"

	configsyncv1 "github.com/trustmesh/trustmesh/api/configsync/v1"
	"github.com/trustmesh/trustmesh/internal/serveraddr"
)

// Applier is the proxy side: it validates and applies a snapshot, or says
// why not.
type Applier interface {
	Apply(*configsyncv1.Snapshot) error
	InboundListeners() []*configsyncv1.InboundListener
	// Ready reports whether a snapshot is applied and serving.
	Ready() bool
}

// Buffer is where the proxy keeps what it sends upstream between
// batches: decision events for the audit log, request summaries for tap.
// It is bounded, so a proxy that cannot reach the server keeps what it can
// and counts the rest.
type Buffer[T any] interface {
	// Ready is signalled when items are waiting.
	Ready() <-chan struct{}
	// Drain takes up to max items and the number dropped since the last
	// drain.
	Drain(max int) (items []T, dropped uint64)
	// Requeue gives back a batch that could not be sent.
	Requeue(items []T, dropped uint64)
}

// Batching: a batch goes out when the first item has waited the flush
// interval (decision events wait longer, so that bursts share a batch).
const (
	eventBatch = 500
	eventFlush = time.Second
	tapFlush   = 200 * time.Millisecond
)

// Source is the proxy's identity and trust bundle (a go-spiffe X509Source).
type Source interface {
	x509svid.Source
	x509bundle.Source
}

// ClientConfig configures a subscriber.
type ClientConfig struct {
	// ServerAddrs are the server's gRPC address (the node API port),
	// HOST:PORT each: one, or the replicas of the control plane to fail
	// over between (see serveraddr.Parse).
	ServerAddrs []string
	Source      Source
	ProxyID     string
	Mode        string
	Version     string
	Applier     Applier
	// Events, if set, are sent to the server in batches while connected.
	Events Buffer[*configsyncv1.DecisionEvent]
	// Taps, if set, are request summaries sent while the server asks for
	// them (Snapshot.tap).
	Taps   Buffer[*configsyncv1.RequestSummary]
	Logger *slog.Logger
}

// maxBackoff bounds the reconnect delay, both this package's between
// streams and gRPC's between connection attempts; it must stay below
// DefaultSettle.
const maxBackoff = serveraddr.DefaultMaxReconnectDelay

// Client keeps a ConfigSync stream open and applies what it receives. The
// last good snapshot stays in force while the server is unreachable.
type Client struct {
	cfg ClientConfig
	log *slog.Logger
}

// NewClient validates cfg.
func NewClient(cfg ClientConfig) (*Client, error) {
	addrs, err := serveraddr.Parse(cfg.ServerAddrs...)
	if err != nil {
		return nil, fmt.Errorf("--server: %w", err)
	}
	cfg.ServerAddrs = addrs
	switch {
	case cfg.Source == nil || cfg.Applier == nil:
		return nil, errors.New("configsync client: source and applier are required")
	case cfg.ProxyID == "":
		return nil, errors.New("configsync client: proxy ID is required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Client{cfg: cfg, log: cfg.Logger.With("component", "configsync")}, nil
}

// Run subscribes until ctx is cancelled, reconnecting with backoff.
func (c *Client) Run(ctx context.Context) error {
	svid, err := c.cfg.Source.GetX509SVID()
	if err != nil {
		return fmt.Errorf("configsync: no SVID: %w", err)
	}
	serverID, err := spiffeid.FromPath(svid.ID.TrustDomain(), "/trustmesh/server")
	if err != nil {
		return err
	}
	tlsConf := tlsconfig.MTLSClientConfig(c.cfg.Source, c.cfg.Source, tlsconfig.AuthorizeID(serverID))
	tlsConf.MinVersion = tls.VersionTLS13
	// One connection over every replica: when the one in use goes away,
	// the next stream below is opened on another.
	conn, err := serveraddr.Dial(serveraddr.Config{Addrs: c.cfg.ServerAddrs, Credentials: credentials.NewTLS(tlsConf), MaxReconnectDelay: maxBackoff})
	if err != nil {
		return fmt.Errorf("configsync: %w", err)
	}
	defer conn.Close()
	client := configsyncv1.NewConfigSyncClient(conn)
	backoff := 250 * time.Millisecond
	for ctx.Err() == nil {
		applied, err := c.session(ctx, client)
		if ctx.Err() != nil {
			return nil
		}
		if applied {
			backoff = 250 * time.Millisecond
		}
		c.log.Warn("config stream interrupted; keeping the last good snapshot and retrying", "error", err, "retry_in", backoff)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(backoff):
		}
		// Capped low so that after a control-plane restart every proxy is
		// back within the server's settle window (ServerConfig.Settle).
		backoff = min(backoff*2, maxBackoff)
	}
	return nil
}

// session runs one stream; applied reports whether any snapshot arrived.
func (c *Client) session(ctx context.Context, client configsyncv1.ConfigSyncClient) (applied bool, err error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := client.Stream(ctx)
	if err != nil {
		return false, err
	}
	c.log.Info("config stream open", "server", serveraddr.FromContext(stream.Context()))
	hello := &configsyncv1.Hello{ProxyId: c.cfg.ProxyID, Inbound: c.cfg.Applier.InboundListeners(), Mode: c.cfg.Mode, Version: c.cfg.Version,
		Serving: c.cfg.Applier.Ready()}
	if err := stream.Send(&configsyncv1.ProxyMessage{Msg: &configsyncv1.ProxyMessage_Hello{Hello: hello}}); err != nil {
		return false, err
	}
	// gRPC allows one sender at a time: replies and event batches share
	// the stream under sendMu.
	var sendMu sync.Mutex
	send := func(m *configsyncv1.ProxyMessage) error {
		sendMu.Lock()
		defer sendMu.Unlock()
		return stream.Send(m)
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	if c.cfg.Events != nil {
		wg.Go(func() {
			pump(ctx, send, c.cfg.Events, eventFlush, func(evs []*configsyncv1.DecisionEvent, dropped uint64) *configsyncv1.ProxyMessage {
				return &configsyncv1.ProxyMessage{Msg: &configsyncv1.ProxyMessage_Events{Events: &configsyncv1.DecisionEvents{Events: evs, Dropped: dropped}}}
			})
		})
	}
	if c.cfg.Taps != nil {
		wg.Go(func() {
			pump(ctx, send, c.cfg.Taps, tapFlush, func(rs []*configsyncv1.RequestSummary, dropped uint64) *configsyncv1.ProxyMessage {
				return &configsyncv1.ProxyMessage{Msg: &configsyncv1.ProxyMessage_Taps{Taps: &configsyncv1.TapEvents{Requests: rs, Dropped: dropped}}}
			})
		})
	}
	for {
		snap, err := stream.Recv()
		if err != nil {
			return applied, err
		}
		applied = true
		var reply *configsyncv1.ProxyMessage
		if err := c.cfg.Applier.Apply(snap); err != nil {
			c.log.Error("rejected snapshot; keeping the last good one", "version", snap.GetVersion(), "error", err)
			reply = &configsyncv1.ProxyMessage{Msg: &configsyncv1.ProxyMessage_Nack{Nack: &configsyncv1.Nack{Version: snap.GetVersion(), Reason: err.Error()}}}
		} else {
			c.log.Info("applied snapshot", "version", snap.GetVersion(), "services", len(snap.GetServices()))
			reply = &configsyncv1.ProxyMessage{Msg: &configsyncv1.ProxyMessage_Ack{Ack: &configsyncv1.Ack{Version: snap.GetVersion()}}}
		}
		if err := send(reply); err != nil {
			return applied, err
		}
	}
}

// pump sends a buffer's items in batches until ctx ends. A batch that
// cannot be sent goes back to the buffer for the next session.
func pump[T any](ctx context.Context, send func(*configsyncv1.ProxyMessage) error, src Buffer[T], flush time.Duration,
	msg func([]T, uint64) *configsyncv1.ProxyMessage) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-src.Ready():
		}
		// Let a burst gather into one batch.
		t := time.NewTimer(flush)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		for {
			items, dropped := src.Drain(eventBatch)
			if len(items) == 0 && dropped == 0 {
				break
			}
			if err := send(msg(items, dropped)); err != nil {
				src.Requeue(items, dropped)
				return
			}
			if len(items) < eventBatch {
				break
			}
		}
	}
}

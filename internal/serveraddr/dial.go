package serveraddr

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/resolver"
)

// DefaultMaxReconnectDelay caps gRPC's reconnect backoff unless
// Config.MaxReconnectDelay says otherwise. gRPC's own default is 120 s,
// during which calls fail fast with the last error: after a control-plane
// restart clients would stay away long after the server is back.
const DefaultMaxReconnectDelay = 2 * time.Second

// scheme names the per-ClientConn resolver. It is registered only on the
// ClientConns Dial builds (grpc.WithResolvers), never globally.
const scheme = "trustmesh-servers"

// Config is how Dial reaches the control plane.
type Config struct {
	// Addrs are the server replicas, HOST:PORT each, as Parse returns
	// them. Required.
	Addrs []string
	// Credentials secure the connection: TLS that verifies the server's
	// SPIFFE ID, the same for every replica. Required.
	Credentials credentials.TransportCredentials
	// InOrder tries Addrs in the order given, so that the first reachable
	// one is used: for replicas that are not alike (a nearby one first, a
	// remote standby after).
	//
	// By default (false) each ClientConn tries them in its own random
	// order. With one fixed order every agent and proxy would connect to
	// the first replica, which would carry every sync and config stream
	// while the others idle; and when it failed all of them would move to
	// the second together. Shuffled, clients spread evenly over the
	// replicas, and the clients of a failed one spread over the survivors.
	// The replicas share their state and identity, so no order is better
	// than another. The shuffle happens when a ClientConn is built (and
	// when it leaves idle mode): a proxy keeps its order for its
	// lifetime; an agent, which redials at every node SVID renewal, also
	// drifts back towards an even spread after a replica came back.
	InOrder bool
	// MaxReconnectDelay caps the reconnect backoff of each address; 0
	// means DefaultMaxReconnectDelay.
	MaxReconnectDelay time.Duration
}

// Dial returns a ClientConn over all of cfg.Addrs (see the package
// documentation for how it fails over). Like grpc.NewClient it does not
// connect until the first call. The caller closes it.
func Dial(cfg Config) (*grpc.ClientConn, error) {
	addrs, err := Parse(cfg.Addrs...)
	if err != nil {
		return nil, err
	}
	if cfg.Credentials == nil {
		return nil, errors.New("serveraddr: transport credentials are required")
	}
	maxDelay := cfg.MaxReconnectDelay
	if maxDelay <= 0 {
		maxDelay = DefaultMaxReconnectDelay
	}
	sc, err := serviceConfig(!cfg.InOrder)
	if err != nil {
		return nil, err
	}
	conn, err := grpc.NewClient(scheme+":///control-plane",
		grpc.WithResolvers(newBuilder(addrs)),
		grpc.WithDefaultServiceConfig(sc),
		grpc.WithTransportCredentials(cfg.Credentials),
		grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: 30 * time.Second, Timeout: 10 * time.Second, PermitWithoutStream: true}),
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: 250 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: maxDelay},
			MinConnectTimeout: 5 * time.Second,
		}))
	if err != nil {
		return nil, fmt.Errorf("connect to servers %v: %w", addrs, err)
	}
	return conn, nil
}

// serviceConfig selects pick_first, shuffled or not.
func serviceConfig(shuffle bool) (string, error) {
	type pickFirst struct {
		ShuffleAddressList bool `json:"shuffleAddressList"`
	}
	b, err := json.Marshal(map[string]any{
		"loadBalancingConfig": []map[string]pickFirst{{"pick_first": {ShuffleAddressList: shuffle}}},
	})
	if err != nil {
		return "", fmt.Errorf("serveraddr: service config: %w", err)
	}
	return string(b), nil
}

// FromContext returns the address of the server a client stream is
// connected to, given stream.Context(), or "" if gRPC does not say: for
// logs after a (re)connect.
func FromContext(ctx context.Context) string {
	if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
		return p.Addr.String()
	}
	return ""
}

// builder is a resolver.Builder for one ClientConn: it reports the static
// list once, at Build. The list never changes, so there is nothing to
// re-resolve: a DNS name in it is looked up by the dialer at every
// connection attempt.
type builder struct {
	state resolver.State
}

var (
	_ resolver.Builder  = builder{}
	_ resolver.Resolver = staticResolver{}
)

func newBuilder(addrs []string) builder {
	eps := make([]resolver.Endpoint, 0, len(addrs))
	for _, a := range addrs {
		// ServerName keeps what each server saw when it was dialed alone:
		// its own HOST:PORT as the :authority and HOST as the TLS name.
		eps = append(eps, resolver.Endpoint{Addresses: []resolver.Address{{Addr: a, ServerName: a}}})
	}
	return builder{state: resolver.State{Endpoints: eps}}
}

func (b builder) Build(_ resolver.Target, cc resolver.ClientConn, _ resolver.BuildOptions) (resolver.Resolver, error) {
	// UpdateState fails only for a list the balancer cannot use (empty),
	// which Parse refused.
	_ = cc.UpdateState(b.state)
	return staticResolver{}, nil
}

func (builder) Scheme() string { return scheme }

// staticResolver has nothing to do: the list is fixed.
type staticResolver struct{}

func (staticResolver) ResolveNow(resolver.ResolveNowOptions) {}
func (staticResolver) Close()                                {}

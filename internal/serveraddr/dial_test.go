package serveraddr

import (
	"context"
	"errors"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
)

// waitTimeout bounds every wait; a healthy run never gets near it.
const waitTimeout = 10 * time.Second

// replica is one control-plane stand-in: a real gRPC server on loopback
// with the health service.
type replica struct {
	addr string
	srv  *grpc.Server
	done chan struct{}
	once sync.Once
}

// startReplica serves on addr ("127.0.0.1:0" for any port) until stop or
// the end of the test.
func startReplica(t *testing.T, addr string) *replica {
	t.Helper()
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	r := &replica{addr: l.Addr().String(), srv: grpc.NewServer(), done: make(chan struct{})}
	healthpb.RegisterHealthServer(r.srv, health.NewServer())
	go func() {
		defer close(r.done)
		_ = r.srv.Serve(l)
	}()
	t.Cleanup(r.stop)
	return r
}

// stop closes the listener and every connection at once, as a server
// process that exits does, and waits for Serve to return.
func (r *replica) stop() {
	r.once.Do(r.srv.Stop)
	<-r.done
}

// deadAddr is a loopback address nothing listens on.
func deadAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	_ = l.Close()
	return addr
}

func dialTest(t *testing.T, cfg Config) healthpb.HealthClient {
	t.Helper()
	cfg.Credentials = insecure.NewCredentials()
	conn, err := Dial(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return healthpb.NewHealthClient(conn)
}

// check makes one unary call and returns the server that answered.
func check(ctx context.Context, c healthpb.HealthClient) (string, error) {
	var p peer.Peer
	if _, err := c.Check(ctx, &healthpb.HealthCheckRequest{}, grpc.Peer(&p)); err != nil {
		return "", err
	}
	return p.Addr.String(), nil
}

// watch opens a long-lived stream, like the agent's Sync and the proxy's
// config stream, and returns it after its first message.
func watch(ctx context.Context, c healthpb.HealthClient) (healthpb.Health_WatchClient, error) {
	s, err := c.Watch(ctx, &healthpb.HealthCheckRequest{})
	if err != nil {
		return nil, err
	}
	if _, err := s.Recv(); err != nil {
		return nil, err
	}
	return s, nil
}

// retry runs fn until it succeeds, as the clients' reconnect loops do
// (with a shorter pause, so that the test measures gRPC's part), and
// returns the attempts it took.
func retry(ctx context.Context, fn func() error) (int, error) {
	for n := 1; ; n++ {
		err := fn()
		if err == nil {
			return n, nil
		}
		select {
		case <-ctx.Done():
			return n, errors.Join(ctx.Err(), err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func TestFailover(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), waitTimeout)
	defer cancel()
	first, second := startReplica(t, "127.0.0.1:0"), startReplica(t, "127.0.0.1:0")
	c := dialTest(t, Config{Addrs: []string{first.addr, second.addr}, InOrder: true})

	stream, err := watch(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	if got := FromContext(stream.Context()); got != first.addr {
		t.Fatalf("stream connected to %s, want the first server %s", got, first.addr)
	}

	start := time.Now()
	first.stop()
	if _, err := stream.Recv(); status.Code(err) != codes.Unavailable {
		t.Fatalf("stream on the stopped server: got %v, want Unavailable", err)
	}
	var again healthpb.Health_WatchClient
	attempts, err := retry(ctx, func() error {
		again, err = watch(ctx, c)
		return err
	})
	if err != nil {
		t.Fatalf("no new stream after the first server stopped: %v", err)
	}
	took := time.Since(start)
	if got := FromContext(again.Context()); got != second.addr {
		t.Errorf("new stream connected to %s, want the second server %s", got, second.addr)
	}
	// A figure, not a pass/fail: timing belongs in benchmarks.
	t.Logf("stream re-established on the second server %s after stopping the first, in %d attempt(s)", took, attempts)

	// Unary calls use the same connection.
	if got, err := check(ctx, c); err != nil || got != second.addr {
		t.Errorf("check after failover: got %q, %v; want %s", got, err, second.addr)
	}
}

func TestFirstAddressDown(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), waitTimeout)
	defer cancel()
	up := startReplica(t, "127.0.0.1:0")
	c := dialTest(t, Config{Addrs: []string{deadAddr(t), up.addr}, InOrder: true})
	// The very first call succeeds: pick_first moves on by itself.
	got, err := check(ctx, c)
	if err != nil {
		t.Fatalf("check with the first address down: %v", err)
	}
	if got != up.addr {
		t.Errorf("answered by %s, want %s", got, up.addr)
	}
}

// hangingAddr accepts connections and never answers, like a server whose
// host is wedged or whose replies a firewall drops.
func hangingAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	wg.Go(func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	})
	t.Cleanup(func() {
		_ = l.Close()
		wg.Wait()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			_ = c.Close()
		}
	})
	return l.Addr().String()
}

func TestFirstAddressHangs(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), waitTimeout)
	defer cancel()
	up := startReplica(t, "127.0.0.1:0")
	c := dialTest(t, Config{Addrs: []string{hangingAddr(t), up.addr}, InOrder: true})
	start := time.Now()
	got, err := check(ctx, c)
	if err != nil {
		t.Fatalf("check with the first address hanging: %v", err)
	}
	took := time.Since(start)
	if got != up.addr {
		t.Errorf("answered by %s, want %s", got, up.addr)
	}
	// pick_first tries the next address after 250 ms without an answer,
	// long before the first attempt's 5 s connect timeout (logged, not
	// asserted: timing belongs in benchmarks).
	t.Logf("answered by the second server after %s", took)
}

func TestAllDownThenOneUp(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), waitTimeout)
	defer cancel()
	later := deadAddr(t)
	c := dialTest(t, Config{Addrs: []string{deadAddr(t), later}, InOrder: true})
	if _, err := check(ctx, c); status.Code(err) != codes.Unavailable {
		t.Fatalf("check with every server down: got %v, want Unavailable", err)
	}
	start := time.Now()
	up := startReplica(t, later)
	var got string
	if _, err := retry(ctx, func() (err error) { got, err = check(ctx, c); return err }); err != nil {
		t.Fatalf("server came back, calls still fail: %v", err)
	}
	took := time.Since(start)
	if got != up.addr {
		t.Errorf("answered by %s, want %s", got, up.addr)
	}
	// Reconnect attempts are at most DefaultMaxReconnectDelay apart (plus
	// jitter); logged, not asserted.
	t.Logf("reconnected %s after the server came back (attempts at most %s apart)", took, DefaultMaxReconnectDelay)
}

func TestOrder(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), waitTimeout)
	defer cancel()
	a, b := startReplica(t, "127.0.0.1:0"), startReplica(t, "127.0.0.1:0")
	// 30 connections: all on the same server by chance is 2 in 2^30.
	const conns = 30
	tests := []struct {
		name    string
		inOrder bool
		want    map[string]bool // servers that must have been used
	}{
		{"in order uses the first", true, map[string]bool{a.addr: true}},
		{"shuffled uses both", false, map[string]bool{a.addr: true, b.addr: true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			used := map[string]bool{}
			for range conns {
				got, err := check(ctx, dialTest(t, Config{Addrs: []string{a.addr, b.addr}, InOrder: tt.inOrder}))
				if err != nil {
					t.Fatal(err)
				}
				used[got] = true
			}
			if len(used) != len(tt.want) {
				t.Errorf("servers used: got %v, want %v", used, tt.want)
			}
			for s := range tt.want {
				if !used[s] {
					t.Errorf("server %s never used; used %v", s, used)
				}
			}
		})
	}
}

func TestDialRefuses(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		want string
	}{
		{"no address", Config{Credentials: insecure.NewCredentials()}, "no server address"},
		{"bad address", Config{Addrs: []string{"a:1", "b"}, Credentials: insecure.NewCredentials()}, `server address 2 "b"`},
		{"no credentials", Config{Addrs: []string{"a:1"}}, "credentials are required"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			conn, err := Dial(tt.cfg)
			if err == nil {
				_ = conn.Close()
				t.Fatal("Dial succeeded, want an error")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("got %q, want it to contain %q", err, tt.want)
			}
		})
	}
}

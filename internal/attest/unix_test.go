//go:build linux

package attest

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/peer"
)

// peerOf builds the PeerInfo the handshake would capture for pid, which must
// run as the test's own user.
func peerOf(t *testing.T, pid int) PeerInfo {
	t.Helper()
	start, err := procStartTime(pid32(t, pid))
	if err != nil {
		t.Fatalf("start time of pid %d: %v", pid, err)
	}
	return PeerInfo{PID: pid32(t, pid), UID: id32(t, os.Geteuid()), GID: id32(t, os.Getegid()), StartTime: start}
}

func pid32(t *testing.T, pid int) int32 {
	t.Helper()
	if pid < 0 || pid > math.MaxInt32 {
		t.Fatalf("pid %d out of range", pid)
	}
	return int32(pid)
}

func id32(t *testing.T, id int) uint32 {
	t.Helper()
	if id < 0 || uint64(id) > math.MaxUint32 {
		t.Fatalf("id %d out of range", id)
	}
	return uint32(id)
}

func sha256File(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Clean(name))
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// wantSelectors is what UnixSelectors must return for a process of ours
// running the executable exe.
func wantSelectors(t *testing.T, exe string) []Selector {
	t.Helper()
	resolved, err := filepath.EvalSymlinks(exe)
	if err != nil {
		t.Fatal(err)
	}
	uid := strconv.Itoa(os.Geteuid())
	want := []Selector{
		{Type: "unix", Value: "uid:" + uid},
		{Type: "unix", Value: "gid:" + strconv.Itoa(os.Getegid())},
	}
	if u, err := user.LookupId(uid); err == nil {
		want = append(want, Selector{Type: "unix", Value: "user:" + u.Username})
	}
	return append(want,
		Selector{Type: "unix", Value: "path:" + resolved},
		Selector{Type: "unix", Value: "sha256:" + sha256File(t, resolved)},
	)
}

// startSleep starts `sleep 5` and kills it when the test ends.
func startSleep(t *testing.T) *exec.Cmd {
	t.Helper()
	cmd := exec.Command("sleep", "5")
	if err := cmd.Start(); err != nil {
		t.Skipf("cannot start sleep: %v", err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	return cmd
}

func TestUnixSelectors(t *testing.T) {
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	child := startSleep(t)

	tests := []struct {
		name string
		pid  int
		exe  string
	}{
		{"test process", os.Getpid(), self},
		{"child process", child.Process.Pid, child.Path},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := UnixSelectors(peerOf(t, tt.pid))
			if err != nil {
				t.Fatalf("UnixSelectors: %v", err)
			}
			if diff := cmp.Diff(wantSelectors(t, tt.exe), got); diff != "" {
				t.Errorf("selectors (-want +got):\n%s", diff)
			}
			for _, s := range got {
				if _, err := ParseSelector(s.String()); err != nil {
					t.Errorf("selector %q does not parse: %v", s, err)
				}
			}
		})
	}
}

func TestUnixSelectorsRefusesAnotherProcess(t *testing.T) {
	exited := exec.Command("true")
	if err := exited.Run(); err != nil {
		t.Skipf("cannot run true: %v", err)
	}
	live := peerOf(t, startSleep(t).Process.Pid)

	reused := live
	reused.StartTime++ // as if the pid now belonged to a newer process

	noStart := live
	noStart.StartTime = 0

	tests := []struct {
		name string
		peer PeerInfo
	}{
		{"process gone", PeerInfo{PID: pid32(t, exited.Process.Pid), StartTime: 1}},
		{"pid reused", reused},
		{"start time unknown", noStart},
		{"pid zero", PeerInfo{StartTime: 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := UnixSelectors(tt.peer)
			if err == nil {
				t.Fatalf("UnixSelectors(%+v) = %v, want an error", tt.peer, got)
			}
		})
	}
}

func TestUnixSelectorsZombie(t *testing.T) {
	cmd := startSleep(t)
	p := peerOf(t, cmd.Process.Pid)
	// Killed but not yet waited for: a zombie keeps its pid and start time.
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	waitZombie(t, cmd.Process.Pid)
	if got, err := UnixSelectors(p); err == nil {
		t.Fatalf("UnixSelectors(zombie) = %v, want an error", got)
	}
}

// waitZombie blocks until pid has exited but is not reaped, using waitid
// with WNOWAIT so the test's own Cleanup can still reap it.
func waitZombie(t *testing.T, pid int) {
	t.Helper()
	var info unix.Siginfo
	if err := unix.Waitid(unix.P_PID, pid, &info, unix.WEXITED|unix.WNOWAIT, nil); err != nil {
		t.Fatalf("waitid: %v", err)
	}
}

func TestPeerStartTimeWithPidfd(t *testing.T) {
	cmd := startSleep(t)
	pid := cmd.Process.Pid
	fd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		t.Skipf("pidfd_open: %v", err)
	}
	defer func() { _ = unix.Close(fd) }()

	want, err := procStartTime(pid32(t, pid))
	if err != nil {
		t.Fatal(err)
	}
	if got, err := peerStartTime(pid32(t, pid), fd); err != nil || got != want {
		t.Fatalf("peerStartTime = %d, %v; want %d", got, err, want)
	}

	// Reaped: the pid is free for reuse, and the pidfd says so.
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
	if got, err := pidfdPID(fd); err != nil || got != -1 {
		t.Errorf("pidfdPID after reap = %d, %v; want -1", got, err)
	}
	if got, err := peerStartTime(pid32(t, pid), fd); err == nil {
		t.Errorf("peerStartTime after reap = %d, want an error", got)
	}
}

func TestHashCache(t *testing.T) {
	a := newUnixAttestor(1)
	self := peerOf(t, os.Getpid())
	child := peerOf(t, startSleep(t).Process.Pid)

	steps := []struct {
		peer       PeerInfo
		wantHashed int64
	}{
		{self, 1},  // miss
		{self, 1},  // hit
		{child, 2}, // miss, evicts self
		{child, 2}, // hit
		{self, 3},  // evicted, read again
	}
	for i, s := range steps {
		if _, err := a.selectors(s.peer); err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		if got := a.hashes.hashed.Load(); got != s.wantHashed {
			t.Errorf("step %d: files hashed = %d, want %d", i, got, s.wantHashed)
		}
		if got := a.hashes.len(); got > 1 {
			t.Errorf("step %d: cache holds %d entries, want at most 1", i, got)
		}
	}
}

func TestHashCacheNoticesRewrite(t *testing.T) {
	c := newHashCache(4)
	name := filepath.Join(t.TempDir(), "bin")
	sumOf := func() string {
		t.Helper()
		f, err := os.Open(filepath.Clean(name))
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = f.Close() }()
		fi, err := f.Stat()
		if err != nil {
			t.Fatal(err)
		}
		s, ok := c.sum(f, fi)
		if !ok {
			t.Fatal("sum failed")
		}
		return s
	}

	if err := os.WriteFile(name, []byte("one"), 0o600); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(name)
	if err != nil {
		t.Fatal(err)
	}
	first := sumOf()

	// Same size, and the mtime set back: only ctime tells them apart.
	if err := os.WriteFile(name, []byte("two"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(name, fi.ModTime(), fi.ModTime()); err != nil {
		t.Fatal(err)
	}
	second := sumOf()
	if first == second {
		t.Fatalf("rewritten file got the cached hash %s", first)
	}
	if want := sha256File(t, name); second != want {
		t.Errorf("got %s, want %s", second, want)
	}
}

func TestParseStat(t *testing.T) {
	tests := []struct {
		name      string
		line      string
		wantStart uint64
		wantState byte
		wantErr   bool
	}{
		{
			name:      "plain",
			line:      "42 (sleep) S 1 42 42 0 -1 4194304 100 0 0 0 0 0 0 0 20 0 1 0 987654 8192 100",
			wantStart: 987654, wantState: 'S',
		},
		{
			name:      "comm with spaces and parentheses",
			line:      "42 (a) R 1 (b c) Z 1 42 42 0 -1 4194304 100 0 0 0 0 0 0 0 20 0 1 0 555 8192 100",
			wantStart: 555, wantState: 'Z',
		},
		{name: "no parenthesis", line: "42 sleep S 1", wantErr: true},
		{name: "truncated", line: "42 (sleep) S 1 42", wantErr: true},
		{name: "starttime not a number", line: "42 (x) S 1 42 42 0 -1 4194304 100 0 0 0 0 0 0 0 20 0 1 0 abc 1", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			start, state, err := parseStat([]byte(tt.line))
			if (err != nil) != tt.wantErr {
				t.Fatalf("parseStat error = %v, wantErr %v", err, tt.wantErr)
			}
			if err == nil && (start != tt.wantStart || state != tt.wantState) {
				t.Errorf("got start %d state %q, want %d %q", start, state, tt.wantStart, tt.wantState)
			}
		})
	}
}

// FuzzParseStat: whatever a process names itself (comm is up to 15 bytes
// of its choosing), the start time read is the kernel's.
func FuzzParseStat(f *testing.F) {
	f.Add("sleep", uint64(987654))
	f.Add(") R 1 2 3", uint64(1))
	f.Add("a) (b", uint64(0))
	f.Fuzz(func(t *testing.T, comm string, start uint64) {
		if len(comm) > 15 {
			comm = comm[:15]
		}
		line := fmt.Sprintf("42 (%s) S 1 42 42 0 -1 4194304 100 0 0 0 0 0 0 0 20 0 1 0 %d 8192 100\n", comm, start)
		got, state, err := parseStat([]byte(line))
		if err != nil {
			t.Fatalf("parseStat(%q): %v", line, err)
		}
		if got != start || state != 'S' {
			t.Fatalf("parseStat(%q) = %d %q, want %d 'S'", line, got, state, start)
		}
	})
}

// captureInterceptor records the PeerFromContext of each unary call.
func captureInterceptor(got chan<- PeerInfo) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		p, ok := PeerFromContext(ctx)
		if !ok {
			p = PeerInfo{PID: -1}
		}
		got <- p
		return handler(ctx, req)
	}
}

func TestPeerCredentialsEndToEnd(t *testing.T) {
	dir, err := os.MkdirTemp("", "attest")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	sock := filepath.Join(dir, "s.sock")

	lis, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan PeerInfo, 1)
	srv := grpc.NewServer(grpc.Creds(PeerCredentials()), grpc.UnaryInterceptor(captureInterceptor(got)))
	healthpb.RegisterHealthServer(srv, health.NewServer())
	served := make(chan error, 1)
	go func() { served <- srv.Serve(lis) }()
	t.Cleanup(func() {
		srv.Stop()
		if err := <-served; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})

	conn, err := grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(PeerCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })

	var serverPeer peer.Peer
	resp, err := healthpb.NewHealthClient(conn).Check(t.Context(), &healthpb.HealthCheckRequest{}, grpc.Peer(&serverPeer))
	if err != nil {
		t.Fatalf("Check: %v", err)
	}
	if resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Errorf("status = %v, want SERVING", resp.GetStatus())
	}

	want := peerOf(t, os.Getpid())
	if diff := cmp.Diff(want, <-got); diff != "" {
		t.Errorf("server saw peer (-want +got):\n%s", diff)
	}

	// The client sees the server, which is this process too.
	if serverPeer.AuthInfo == nil || serverPeer.AuthInfo.AuthType() != peerAuthType {
		t.Fatalf("client AuthInfo = %#v, want %s", serverPeer.AuthInfo, peerAuthType)
	}
	ai, ok := serverPeer.AuthInfo.(authInfo)
	if !ok {
		t.Fatalf("client AuthInfo is a %T", serverPeer.AuthInfo)
	}
	if diff := cmp.Diff(want, ai.peer); diff != "" {
		t.Errorf("client saw server (-want +got):\n%s", diff)
	}
	if ai.SecurityLevel != credentials.PrivacyAndIntegrity {
		t.Errorf("security level = %v, want PrivacyAndIntegrity", ai.SecurityLevel)
	}
}

func TestPeerCredentialsRejectsNonUnix(t *testing.T) {
	a, b := net.Pipe()
	defer func() { _ = a.Close() }()
	defer func() { _ = b.Close() }()
	if _, _, err := PeerCredentials().ServerHandshake(a); err == nil {
		t.Error("ServerHandshake over a pipe succeeded, want an error")
	}
	if _, _, err := PeerCredentials().ClientHandshake(t.Context(), "x", a); err == nil {
		t.Error("ClientHandshake over a pipe succeeded, want an error")
	}
}

func TestPeerFromContextWithoutPeerCredentials(t *testing.T) {
	tests := []struct {
		name string
		ctx  context.Context
	}{
		{"no peer", context.Background()},
		{"other credentials", peer.NewContext(context.Background(), &peer.Peer{AuthInfo: credentials.TLSInfo{}})},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if p, ok := PeerFromContext(tt.ctx); ok {
				t.Errorf("PeerFromContext = %+v, true; want false", p)
			}
		})
	}
}

package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// binary is the trustmesh binary under test, built once by TestMain.
var binary string

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	dir, err := os.MkdirTemp("", "trustmesh-e2e-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	binary = filepath.Join(dir, "trustmesh")
	args := []string{"build", "-o", binary}
	if raceEnabled {
		args = append(args, "-race")
	}
	cmd := exec.Command("go", append(args, "../../cmd/trustmesh")...)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build trustmesh:", err)
		return 1
	}
	defer stopPostgres()
	defer stopKubernetes()
	return m.Run()
}

// freeAddr returns a loopback address with a port free right now.
func freeAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// syncBuffer collects a process's output for assertions and failure logs.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// proc is a running trustmesh process.
type proc struct {
	t    testing.TB
	name string
	cmd  *exec.Cmd
	out  *syncBuffer
	done chan struct{}
	err  error
	// killed: the test killed it on purpose (kill), so its exit is clean.
	killed atomic.Bool
}

// start runs the binary with args until the test ends, then stops it with
// SIGTERM and requires a clean exit (a crash or hang on shutdown fails the
// test).
func start(t testing.TB, name string, args ...string) *proc {
	t.Helper()
	p := &proc{t: t, name: name, out: &syncBuffer{}, done: make(chan struct{})}
	p.cmd = exec.Command(binary, args...)
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() { p.err = p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		if err := p.stop(); err != nil {
			t.Errorf("%s did not shut down cleanly: %v\n%s", name, err, p.out)
		}
		if t.Failed() {
			t.Logf("--- %s output ---\n%s", name, p.out)
		}
	})
	return p
}

// stop sends SIGTERM and waits; idempotent.
func (p *proc) stop() error {
	select {
	case <-p.done:
		return p.exitErr()
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		return p.exitErr()
	case <-time.After(15 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
		return errors.New("did not exit within 15s of SIGTERM")
	}
}

// kill ends the process with SIGKILL, as a crash would, and waits.
func (p *proc) kill() {
	p.killed.Store(true)
	_ = p.cmd.Process.Kill()
	<-p.done
}

func (p *proc) exitErr() error {
	if p.err == nil || p.killed.Load() {
		return nil
	}
	// Exited by our SIGTERM before installing handlers is still a clean stop.
	var ee *exec.ExitError
	if errors.As(p.err, &ee) && ee.ExitCode() == 0 {
		return nil
	}
	return p.err
}

// waitFor polls cond (cheap checks of files or sockets) until it holds.
func waitFor(t testing.TB, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func exists(path string) func() bool {
	return func() bool { _, err := os.Stat(path); return err == nil }
}

// cli runs one CLI command and returns stdout, stderr and the error.
func cli(t testing.TB, stdin string, args ...string) (string, string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	err := cmd.Run()
	return stdout.String(), stderr.String(), err
}

// mustCLI runs a CLI command that must succeed.
func mustCLI(t testing.TB, args ...string) string {
	t.Helper()
	out, errOut, err := cli(t, "", args...)
	if err != nil {
		t.Fatalf("trustmesh %s: %v\nstdout: %s\nstderr: %s", strings.Join(args, " "), err, out, errOut)
	}
	return out
}

// server is a running control plane.
type server struct {
	*proc
	dir, td, nodeAddr, adminAddr string
	args                         []string
}

func startServer(t testing.TB, td string, extra ...string) *server {
	t.Helper()
	s := newServer(t, td, extra...)
	s.launch(t)
	return s
}

// newServer picks a server's addresses and data dir without starting it
// (launch does).
func newServer(t testing.TB, td string, extra ...string) *server {
	t.Helper()
	s := &server{dir: filepath.Join(t.TempDir(), "server"), td: td, nodeAddr: freeAddr(t), adminAddr: freeAddr(t)}
	s.args = append([]string{"server", "--data-dir", s.dir, "--trust-domain", td,
		"--listen", s.nodeAddr, "--admin-listen", s.adminAddr, "--log-level", "debug"}, extra...)
	return s
}

// launch starts the server process and waits until its admin API answers.
func (s *server) launch(t testing.TB) {
	t.Helper()
	s.proc = start(t, "server", s.args...)
	waitFor(t, "server admin credential", 30*time.Second, func() bool {
		select {
		case <-s.done:
			t.Fatalf("server exited: %v\n%s", s.err, s.out)
		default:
		}
		return exists(filepath.Join(s.dir, "admin", "server"))()
	})
	waitFor(t, "admin API", 30*time.Second, func() bool {
		_, _, err := cli(t, "", "admin", "whoami", "--data-dir", s.dir)
		return err == nil
	})
}

// apply applies a YAML document through the CLI.
func (s *server) apply(t testing.TB, doc string) string {
	t.Helper()
	out, errOut, err := cli(t, doc, "apply", "-f", "-", "--data-dir", s.dir)
	if err != nil {
		t.Fatalf("apply: %v\n%s\n%s", err, out, errOut)
	}
	return out
}

// token creates a join token for node.
func (s *server) token(t testing.TB, node string) string {
	t.Helper()
	return strings.TrimSpace(mustCLI(t, "token", "create", "--node", node, "--ttl", "5m", "--data-dir", s.dir))
}

// agent is a running node agent.
type agent struct {
	*proc
	dir, socket string
}

// startAgent starts an agent; token may be empty to re-join with a saved SVID.
func startAgent(t testing.TB, s *server, dir, token string) *agent {
	t.Helper()
	return startAgentAt(t, s, s.nodeAddr, dir, token)
}

// startAgentAt is startAgent with --server servers (a list, for failover).
func startAgentAt(t testing.TB, s *server, servers, dir, token string) *agent {
	t.Helper()
	sockDir, err := os.MkdirTemp("", "tm-sock")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(sockDir) })
	a := &agent{dir: dir, socket: filepath.Join(sockDir, "agent.sock")}
	args := []string{"agent", "--server", servers, "--trust-bundle", filepath.Join(s.dir, "bundle.pem"),
		"--socket", a.socket, "--data-dir", dir, "--log-level", "debug"}
	if token != "" {
		args = append(args, "--join-token", token)
	}
	a.proc = start(t, "agent", args...)
	waitFor(t, "agent socket", 30*time.Second, func() bool {
		select {
		case <-a.done:
			t.Fatalf("agent exited: %v\n%s", a.err, a.out)
		default:
		}
		return exists(a.socket)()
	})
	return a
}

func workloadYAML(td, name, node string, selectors ...string) string {
	return fmt.Sprintf(`apiVersion: trustmesh.dev/v1
kind: Workload
metadata:
  name: %s
spec:
  spiffeID: spiffe://%s/ns/default/sa/%s
  parentID: spiffe://%s/trustmesh/node/%s
  selectors: [%s]
`, name, td, name, td, node, `"`+strings.Join(selectors, `", "`)+`"`)
}

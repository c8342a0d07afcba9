package k8stest

import (
	"fmt"
	"os"
	"sync"
	"testing"
	"time"
)

// shared is the API server of a test binary (see Main). A test binary is one
// process, so a package variable is its natural home.
var shared struct {
	mu   sync.Mutex
	main bool
	env  *Env
	err  error
}

// Main runs a test binary's tests (m.Run) and then stops the API server
// that Shared started, if any. Call it from TestMain:
//
//	func TestMain(m *testing.M) { k8stest.Main(m) }
//
// The binary's exit code is m.Run's (TestMain returning passes it on).
func Main(m *testing.M) {
	shared.mu.Lock()
	shared.main = true
	shared.mu.Unlock()

	m.Run()

	shared.mu.Lock()
	defer shared.mu.Unlock()
	if shared.env != nil {
		if err := shared.env.Close(); err != nil {
			fmt.Fprintln(os.Stderr, err)
		}
		shared.env = nil
	}
}

// SharedTB is the part of testing.TB that Shared uses.
type SharedTB interface {
	Helper()
	Logf(format string, args ...any)
	Fatalf(format string, args ...any)
}

// Shared returns the test binary's API server, starting it on first use
// (and logging how long that took); it fails t if the server cannot start
// (the binaries are missing: run make test-deps), and if the binary's
// TestMain does not call Main, which stops the server.
func Shared(t SharedTB) *Env {
	t.Helper()
	shared.mu.Lock()
	defer shared.mu.Unlock()
	if !shared.main {
		t.Fatalf("k8stest.Shared needs the test binary's TestMain to call k8stest.Main, which stops the API server: func TestMain(m *testing.M) { k8stest.Main(m) }")
	}
	if shared.env == nil && shared.err == nil {
		shared.env, shared.err = Start()
		if shared.err == nil {
			t.Logf("k8stest: kube-apiserver and etcd started, CRDs installed, in %v", shared.env.StartTime.Round(10*time.Millisecond))
		}
	}
	if shared.err != nil {
		t.Fatalf("%v", shared.err)
	}
	return shared.env
}

package pgtest

import (
	"context"
	"fmt"
	"os"
	"sync"
	"testing"
)

// shared is the cluster of a test binary (see Main). A test binary is one
// process, so a package variable is its natural home.
var shared struct {
	mu      sync.Mutex
	main    bool
	cluster *Cluster
	err     error
}

// Main runs a test binary's tests (m.Run) and then closes the cluster that
// Shared started, if any. Call it from TestMain:
//
//	func TestMain(m *testing.M) { pgtest.Main(m) }
//
// The binary's exit code is m.Run's (TestMain returning passes it on).
func Main(m *testing.M) {
	shared.mu.Lock()
	shared.main = true
	shared.mu.Unlock()

	m.Run()

	shared.mu.Lock()
	defer shared.mu.Unlock()
	if shared.cluster != nil {
		if err := shared.cluster.Close(); err != nil {
			fmt.Fprintln(os.Stderr, err)
		}
		shared.cluster = nil
	}
}

// Shared returns the test binary's cluster, starting it on first use; it
// fails t if the cluster cannot start (PostgreSQL is not installed), and
// if the binary's TestMain does not call Main, which closes the cluster.
func Shared(t TB) *Cluster {
	t.Helper()
	shared.mu.Lock()
	defer shared.mu.Unlock()
	if !shared.main {
		t.Fatalf("pgtest.Shared needs the test binary's TestMain to call pgtest.Main, which stops the cluster: func TestMain(m *testing.M) { pgtest.Main(m) }")
	}
	if shared.cluster == nil && shared.err == nil {
		shared.cluster, shared.err = Start(context.Background())
	}
	if shared.err != nil {
		t.Fatalf("%v", shared.err)
	}
	return shared.cluster
}

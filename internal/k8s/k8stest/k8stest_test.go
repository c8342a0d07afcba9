package k8stest

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
)

func TestMain(m *testing.M) { Main(m) }

func TestBinDir(t *testing.T) {
	cache, err := os.UserCacheDir()
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name           string
		assets, binDir string
		want           string
	}{
		{"kubebuilder-assets-first", "/a", "/b", "/a"},
		{"trustmesh-bin-dir-second", "", "/b", "/b"},
		{"cache-by-default", "", "", filepath.Join(cache, "trustmesh/k8s/kube-apiserver-1.34.0-etcd-3.6.16")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv(EnvAssets, tt.assets)
			t.Setenv(EnvBinDir, tt.binDir)
			got, err := BinDir()
			if err != nil || got != tt.want {
				t.Errorf("BinDir() = %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}

// TestStartWithoutBinaries: the error says what to run.
func TestStartWithoutBinaries(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "etcd"), []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv(EnvAssets, dir)
	e, err := Start()
	if err == nil {
		_ = e.Close()
		t.Fatal("Start succeeded without kube-apiserver")
	}
	if !errors.Is(err, ErrNoBinaries) {
		t.Errorf("got %v, want ErrNoBinaries", err)
	}
	for _, want := range []string{"kube-apiserver", dir, "run make test-deps (or test/k8s/build-bins.sh)"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("got %q, want it to contain %q", err, want)
		}
	}
}

// TestNewNamespace: a namespace with the default ServiceAccount that
// kube-controller-manager would have created.
func TestNewNamespace(t *testing.T) {
	env := Shared(t)
	a, b := env.NewNamespace(t), env.NewNamespace(t)
	if a == b {
		t.Fatalf("two namespaces named %s", a)
	}
	if !strings.HasPrefix(a, "t-testnewnamespace-") {
		t.Errorf("namespace %q, want it named after the test", a)
	}
	var ns corev1.Namespace
	if err := env.Client.Get(t.Context(), types.NamespacedName{Name: a}, &ns); err != nil {
		t.Fatal(err)
	}
	var sa corev1.ServiceAccount
	if err := env.Client.Get(t.Context(), types.NamespacedName{Namespace: a, Name: "default"}, &sa); err != nil {
		t.Fatalf("default service account: %v", err)
	}
	if env.StartTime <= 0 || env.StartTime > 2*startTimeout {
		t.Errorf("StartTime %v", env.StartTime)
	}
}

// TestReapStale: the servers of a test binary that died are stopped, and
// their directory removed; those of a live one are left alone.
func TestReapStale(t *testing.T) {
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	staleDir := serverDir(t, dead.Process.Pid)
	liveDir := serverDir(t, os.Getpid())

	// Stand-ins for etcd and kube-apiserver: processes whose command
	// line names the directory, as --data-dir and --cert-dir do (": " so
	// that the shell does not exec sleep, which would drop its $0).
	stale := exec.Command("sh", "-c", "sleep 60; :", filepath.Join(staleDir, "etcd"))
	live := exec.Command("sh", "-c", "sleep 60; :", filepath.Join(liveDir, "etcd"))
	for _, c := range []*exec.Cmd{stale, live} {
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() { _ = live.Process.Kill(); _ = live.Wait() })

	reapStale()

	done := make(chan error, 1)
	go func() { done <- stale.Wait() }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		_ = stale.Process.Kill()
		t.Fatal("the stale server is still running")
	}
	if _, err := os.Stat(staleDir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("stale directory: got %v, want it removed", err)
	}
	if _, err := os.Stat(liveDir); err != nil {
		t.Errorf("live directory: %v", err)
	}
	// A killed process's command line is empty, even before Wait.
	if got := processesNaming(liveDir); len(got) != 1 || got[0] != live.Process.Pid {
		t.Errorf("processes naming the live directory: %v, want [%d]: the live server was stopped", got, live.Process.Pid)
	}
}

// serverDir makes a server directory owned by the process pid, removed
// at the end of the test.
func serverDir(t *testing.T, pid int) string {
	t.Helper()
	dir, err := os.MkdirTemp("", dirPrefix+"*")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	if err := os.WriteFile(filepath.Join(dir, "owner"), []byte(strconv.Itoa(pid)), 0o600); err != nil {
		t.Fatal(err)
	}
	return dir
}

// Package k8stest runs a real Kubernetes API server for tests: Start runs
// etcd and kube-apiserver on loopback ports with controller-runtime's
// envtest, installs trustmesh's CRDs from deploy/crds, and returns an admin
// connection and a controller-runtime client that knows the trustmesh.dev/v1
// types (and Kubernetes' own). Any package's tests may use it.
//
// One API server serves a whole test binary: call Main from TestMain and
// Shared from the tests; give each test its own namespace (NewNamespace).
//
//	func TestMain(m *testing.M) { k8stest.Main(m) }
//
//	func TestSomething(t *testing.T) {
//		env := k8stest.Shared(t)
//		ns := env.NewNamespace(t)
//		err := env.Client.Create(t.Context(), &trustmeshv1.Workload{...})
//		...
//	}
//
// # Binaries
//
// kube-apiserver and etcd are not Debian packages: test/k8s/build-bins.sh
// builds them from their Go modules into a per-machine cache directory
// (once, about 5 minutes), and `make test` runs it (make test-deps). The
// tests look for them in $KUBEBUILDER_ASSETS (the Makefile sets it), else
// $TRUSTMESH_K8S_BIN_DIR, else that cache directory (see BinDir). Without
// them Start fails, and so do the tests: they never skip.
//
// # What is missing
//
// There is an API server and etcd, nothing else: no kube-controller-manager
// (so no default ServiceAccount in a new namespace, which NewNamespace
// creates itself; no namespace deletion, no garbage collection, no
// EndpointSlices), no scheduler, no kubelet (pods are stored, never run).
// Namespaces are therefore never deleted: they go away with the server.
//
// A test binary that dies without Close (a panic, a -timeout, ^C: envtest
// runs the servers in their own process groups) leaves them running; the
// next Start stops them and removes their directory.
package k8stest

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	trustmeshv1 "github.com/trustmesh/trustmesh/internal/k8s/apis/v1"
)

// The environment variables that say where the binaries are, in order of
// precedence: envtest's own, then the one of test/k8s/build-bins.sh.
const (
	EnvAssets = "KUBEBUILDER_ASSETS"
	EnvBinDir = "TRUSTMESH_K8S_BIN_DIR"
)

// The versions test/k8s/build-bins.sh builds, which name the default
// directory.
const (
	KubernetesVersion = "1.34.0"
	EtcdVersion       = "3.6.16"
)

// modulePath identifies the repository root: the directory whose go.mod
// declares it.
const modulePath = "github.com/trustmesh/trustmesh"

// crdDir is where the CRDs are, relative to the repository root.
const crdDir = "deploy/crds"

// dirPrefix starts the name of every server directory, so stale ones can be
// found.
const dirPrefix = "trustmesh-k8stest-"

// startTimeout bounds the start of each of etcd and kube-apiserver.
const startTimeout = 60 * time.Second

// ErrNoBinaries: kube-apiserver or etcd is not where the tests look.
var ErrNoBinaries = errors.New("kube-apiserver and etcd not found")

// Env is a running API server with trustmesh's CRDs installed.
type Env struct {
	// Config is an admin connection (user "admin" in system:masters) to
	// the API server.
	Config *rest.Config
	// Client is a controller-runtime client on Config with Scheme.
	Client client.Client
	// StartTime is how long etcd and kube-apiserver took to start, the
	// CRDs to install and their resources to be served.
	StartTime time.Duration

	env *envtest.Environment
	dir string

	closeOnce sync.Once
	closeErr  error
}

// Scheme returns a new scheme with Kubernetes' built-in types, the
// apiextensions.k8s.io/v1 types (CRDs) and the trustmesh.dev/v1 types.
func Scheme() *runtime.Scheme {
	s := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(s))
	utilruntime.Must(apiextensionsv1.AddToScheme(s))
	utilruntime.Must(trustmeshv1.AddToScheme(s))
	return s
}

// BinDir returns the directory the tests take kube-apiserver and etcd
// from: $KUBEBUILDER_ASSETS, else $TRUSTMESH_K8S_BIN_DIR, else
// $XDG_CACHE_HOME/trustmesh/k8s/kube-apiserver-VERSION-etcd-VERSION
// (~/.cache/... without XDG_CACHE_HOME), as test/k8s/build-bins.sh.
func BinDir() (string, error) {
	for _, env := range []string{EnvAssets, EnvBinDir} {
		if dir := os.Getenv(env); dir != "" {
			return dir, nil
		}
	}
	cache, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("find the binaries' cache directory: %w (set %s)", err, EnvAssets)
	}
	return filepath.Join(cache, "trustmesh", "k8s", "kube-apiserver-"+KubernetesVersion+"-etcd-"+EtcdVersion), nil
}

// Start starts etcd and kube-apiserver and installs the CRDs. Close stops
// them.
func Start() (*Env, error) {
	e, err := start()
	if err != nil {
		return nil, fmt.Errorf("k8stest: %w", err)
	}
	return e, nil
}

func start() (*Env, error) {
	bin, err := BinDir()
	if err != nil {
		return nil, err
	}
	for _, name := range []string{"kube-apiserver", "etcd"} {
		if fi, err := os.Stat(filepath.Join(bin, name)); err != nil || fi.IsDir() || fi.Mode()&0o111 == 0 {
			return nil, fmt.Errorf("%w: no executable %s in %s: run make test-deps (or test/k8s/build-bins.sh)", ErrNoBinaries, name, bin)
		}
	}
	root, err := moduleRoot()
	if err != nil {
		return nil, err
	}
	reapStale()

	dir, err := os.MkdirTemp("", dirPrefix+"*")
	if err != nil {
		return nil, err
	}
	e := &Env{dir: dir}
	ok := false
	defer func() {
		if !ok {
			_ = e.Close() // the start failed: that error is the one to report
		}
	}()
	if err := os.WriteFile(filepath.Join(dir, "owner"), []byte(strconv.Itoa(os.Getpid())), 0o600); err != nil {
		return nil, err
	}
	for _, sub := range []string{"etcd", "apiserver"} {
		if err := os.Mkdir(filepath.Join(dir, sub), 0o700); err != nil {
			return nil, err
		}
	}

	// The servers' output goes to log files, whose end a start failure
	// shows.
	logs := make(map[string]*os.File)
	for _, name := range []string{"etcd", "kube-apiserver"} {
		f, err := os.Create(filepath.Join(dir, name+".log"))
		if err != nil {
			return nil, err
		}
		defer f.Close() // the servers have their own descriptors
		logs[name] = f
	}

	scheme := Scheme()
	useExisting := false
	e.env = &envtest.Environment{
		ControlPlane: envtest.ControlPlane{
			// In the harness's directory, so a stale server can be found
			// by its command line.
			Etcd: &envtest.Etcd{Path: filepath.Join(bin, "etcd"), DataDir: filepath.Join(dir, "etcd"),
				Out: logs["etcd"], Err: logs["etcd"]},
			APIServer: &envtest.APIServer{Path: filepath.Join(bin, "kube-apiserver"), CertDir: filepath.Join(dir, "apiserver"),
				Out: logs["kube-apiserver"], Err: logs["kube-apiserver"]},
		},
		Scheme:                   scheme,
		CRDDirectoryPaths:        []string{filepath.Join(root, filepath.FromSlash(crdDir))},
		ErrorIfCRDPathMissing:    true,
		UseExistingCluster:       &useExisting, // never a cluster named by USE_EXISTING_CLUSTER
		ControlPlaneStartTimeout: startTimeout,
		ControlPlaneStopTimeout:  startTimeout,
	}
	begin := time.Now()
	cfg, err := e.env.Start()
	if err != nil {
		// kube-apiserver's log says more, unless it never ran.
		tail := cmp.Or(logTail(logs["kube-apiserver"]), logTail(logs["etcd"]))
		return nil, fmt.Errorf("start kube-apiserver and etcd from %s: %w%s", bin, err, tail)
	}
	e.Config = cfg
	if e.Client, err = client.New(cfg, client.Options{Scheme: scheme}); err != nil {
		return nil, err
	}
	if err := e.warmUp(); err != nil {
		return nil, err
	}
	e.StartTime = time.Since(begin)
	ok = true
	return e, nil
}

// logTail returns the end of a server's log file, for an error.
func logTail(f *os.File) string {
	b, err := os.ReadFile(f.Name())
	if err != nil || len(b) == 0 {
		return ""
	}
	if len(b) > 3000 {
		b = b[len(b)-3000:]
	}
	return "\n" + filepath.Base(f.Name()) + ":\n" + string(b)
}

// warmUp creates a resource with a dry run: the API server's first write
// of a custom resource takes 2 s (the quota admission plugin sets up), once
// per server; better here than in some test.
func (e *Env) warmUp() error {
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	// envtest waits for the CRDs to be established, but discovery can lag
	// behind on a loaded machine ("no matches for trustmesh.dev/v1"): retry,
	// with a new client (its REST mapper caches what it discovered).
	for {
		r := &trustmeshv1.AuthorizationPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: metav1.NamespaceDefault, Name: "k8stest-warm-up"}}
		err := e.Client.Create(ctx, r, client.DryRunAll)
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("create a resource (dry run): %w", err)
		case <-time.After(200 * time.Millisecond):
		}
		c, cerr := client.New(e.Config, client.Options{Scheme: e.Client.Scheme()})
		if cerr != nil {
			return cerr
		}
		e.Client = c
	}
}

// moduleRoot returns the repository root: the nearest directory at or above
// the working directory (a test's package directory) with trustmesh's
// go.mod.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if b, err := os.ReadFile(filepath.Join(dir, "go.mod")); err == nil && declaresModule(b) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("the repository root (the go.mod of %s) is not at or above the working directory: run the tests with go test", modulePath)
		}
		dir = parent
	}
}

func declaresModule(gomod []byte) bool {
	for line := range strings.Lines(string(gomod)) {
		if f := strings.Fields(line); len(f) == 2 && f[0] == "module" && strings.Trim(f[1], `"`) == modulePath {
			return true
		}
	}
	return false
}

// Close stops kube-apiserver and etcd and removes their directory. Calls
// after the first return the first's result.
func (e *Env) Close() error {
	e.closeOnce.Do(func() {
		var err error
		if e.env != nil {
			err = e.env.Stop()
		}
		if rmErr := os.RemoveAll(e.dir); rmErr != nil {
			err = errors.Join(err, rmErr)
		}
		if err != nil {
			e.closeErr = fmt.Errorf("k8stest: close: %w", err)
		}
	})
	return e.closeErr
}

// TB is the part of testing.TB that NewNamespace uses.
type TB interface {
	Helper()
	Name() string
	Context() context.Context
	Fatalf(format string, args ...any)
}

var unsafeName = regexp.MustCompile(`[^a-z0-9]+`)

// NewNamespace creates a namespace named after the test, with a random
// suffix, and in it the "default" ServiceAccount that kube-controller-manager
// would create; it fails t on error. The namespace is never deleted (see the
// package comment).
func (e *Env) NewNamespace(t TB) string {
	t.Helper()
	suffix := make([]byte, 3)
	_, _ = rand.Read(suffix)
	name := strings.Trim(unsafeName.ReplaceAllString(strings.ToLower(t.Name()), "-"), "-")
	if len(name) > 50 {
		name = strings.TrimRight(name[:50], "-")
	}
	name = "t-" + name + "-" + hex.EncodeToString(suffix)

	ctx := t.Context()
	if err := e.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}); err != nil {
		t.Fatalf("k8stest: create namespace %s: %v", name, err)
	}
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: name, Name: "default"}}
	if err := e.Client.Create(ctx, sa); err != nil {
		t.Fatalf("k8stest: create service account %s/default: %v", name, err)
	}
	return name
}

// reapStale stops the servers of test binaries that exited without Close
// and removes their directories. A server belongs to a directory when its
// command line names it (--data-dir, --cert-dir).
func reapStale() {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), dirPrefix+"*"))
	for _, dir := range dirs {
		b, err := os.ReadFile(filepath.Join(dir, "owner"))
		if err != nil {
			continue // being created, or not ours
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil || pid <= 0 || processExists(pid) {
			continue
		}
		for _, p := range processesNaming(dir) {
			_ = syscall.Kill(p, syscall.SIGKILL)
		}
		_ = os.RemoveAll(dir)
	}
}

// processesNaming returns the processes whose command line contains dir
// (Linux: from /proc; elsewhere none).
func processesNaming(dir string) []int {
	entries, _ := os.ReadDir("/proc")
	var pids []int
	for _, ent := range entries {
		pid, err := strconv.Atoi(ent.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", ent.Name(), "cmdline"))
		if err == nil && strings.Contains(string(cmdline), dir+string(filepath.Separator)) {
			pids = append(pids, pid)
		}
	}
	return pids
}

func processExists(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

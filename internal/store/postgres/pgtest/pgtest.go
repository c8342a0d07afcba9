// Package pgtest runs throwaway PostgreSQL servers for tests: Start creates
// a cluster in a temporary directory with initdb, listening on a free
// loopback port with trust authentication, and NewDatabase creates a fresh
// database on it for each test. Any package's tests may use it, the
// end-to-end tests included.
//
// One cluster serves a whole test binary: call Main from TestMain and
// Shared from the tests.
//
//	func TestMain(m *testing.M) { pgtest.Main(m) }
//
//	func TestSomething(t *testing.T) {
//		dsn := pgtest.Shared(t).NewTestDatabase(t)
//		s, err := postgres.Open(t.Context(), dsn)
//		...
//	}
//
// The server binaries (initdb, pg_ctl, postgres) are found with
// `pg_config --bindir`, or in /usr/lib/postgresql/*/bin (the highest
// version): Debian installs them off PATH. `make test` installs them when
// they are missing (./scripts/ensure-packages.sh). Without them Start fails,
// and so do the tests: they never skip.
//
// initdb refuses to run as root, so under root the cluster belongs to the
// unprivileged postgres user (the directory is chowned to it and every
// PostgreSQL command runs with its credentials).
//
// If TRUSTMESH_TEST_POSTGRES is set to a superuser postgres:// URL, Start
// uses that server instead of starting one: NewDatabase still creates fresh
// databases there (Close drops them), but Restart is refused.
//
// A test binary that dies without Close (a panic, a -timeout) leaves its
// server running; the next Start stops and removes clusters whose test
// binary is gone.
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
)

// EnvServer names the environment variable that points the harness at an
// existing server (a superuser postgres:// URL) instead of starting one.
const EnvServer = "TRUSTMESH_TEST_POSTGRES"

// dirPrefix starts the name of every cluster directory, so stale ones can
// be found.
const dirPrefix = "trustmesh-pgtest-"

// Timeouts of the PostgreSQL commands.
const (
	startTimeout = 60 * time.Second
	stopTimeout  = 60 * time.Second
)

// ErrNoBinaries: the PostgreSQL server binaries are not installed.
var ErrNoBinaries = errors.New("PostgreSQL server binaries (initdb, pg_ctl, postgres) not found: " +
	"run `make test` (which installs them) or ./scripts/ensure-packages.sh, " +
	"or set " + EnvServer + " to a superuser postgres:// URL")

// Cluster is a PostgreSQL server for tests. Its methods are safe for
// concurrent use.
type Cluster struct {
	// admin is the superuser URL of the maintenance database.
	admin string
	// external: admin names a server the harness did not start.
	external bool

	// Set for a cluster the harness started.
	dir    string
	bindir string
	port   int
	cred   *syscall.Credential // nil: PostgreSQL runs as this process's user

	mu      sync.Mutex
	running bool
	dbs     []string
	closed  bool
}

// Start starts a new cluster, or connects to the server named by
// TRUSTMESH_TEST_POSTGRES. Close stops and removes it.
func Start(ctx context.Context) (*Cluster, error) {
	c, err := start(ctx)
	if err != nil {
		return nil, fmt.Errorf("pgtest: %w", err)
	}
	return c, nil
}

func start(ctx context.Context) (*Cluster, error) {
	if dsn := os.Getenv(EnvServer); dsn != "" {
		return external(ctx, dsn)
	}
	bindir, err := findBinaries()
	if err != nil {
		return nil, err
	}
	c := &Cluster{bindir: bindir}
	if os.Geteuid() == 0 {
		if c.cred, err = postgresUser(); err != nil {
			return nil, err
		}
	}
	c.reapStale()

	if c.dir, err = os.MkdirTemp("", dirPrefix+"*"); err != nil {
		return nil, err
	}
	ok := false
	defer func() {
		if !ok {
			_ = c.stop() // the start failed: that error is the one to report
			_ = os.RemoveAll(c.dir)
		}
	}()
	if err := os.WriteFile(filepath.Join(c.dir, "owner"), []byte(strconv.Itoa(os.Getpid())), 0o644); err != nil {
		return nil, err
	}
	if c.cred != nil {
		if err := os.Chown(c.dir, int(c.cred.Uid), int(c.cred.Gid)); err != nil {
			return nil, fmt.Errorf("give %s to the postgres user: %w", c.dir, err)
		}
	}
	if out, err := c.run(ctx, "initdb", "-D", c.dataDir(), "-U", "postgres", "--auth=trust",
		"--encoding=UTF8", "--locale=C", "--no-sync"); err != nil {
		return nil, fmt.Errorf("initdb: %w\n%s", err, out)
	}
	conf := fmt.Sprintf(`
# pgtest: a throwaway cluster.
listen_addresses = '127.0.0.1'
unix_socket_directories = '%s'
max_connections = 300
# Commits do not wait for the WAL flush (like the SQLite store's
# synchronous=NORMAL): a crash may lose the last ones, never corrupts.
synchronous_commit = off
`, c.dir)
	f, err := os.OpenFile(filepath.Join(c.dataDir(), "postgresql.conf"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return nil, err
	}
	_, err = f.WriteString(conf)
	if err := errors.Join(err, f.Close()); err != nil {
		return nil, fmt.Errorf("configure: %w", err)
	}

	// A free port can be taken before the server binds it: try again.
	for attempt := 1; ; attempt++ {
		if c.port, err = freePort(); err != nil {
			return nil, err
		}
		err = c.startServer(ctx)
		if err == nil || attempt == 3 || ctx.Err() != nil {
			break
		}
	}
	if err != nil {
		return nil, err
	}
	c.admin = fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", c.port)
	ok = true
	return c, nil
}

func external(ctx context.Context, dsn string) (*Cluster, error) {
	u, err := url.Parse(dsn)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		return nil, fmt.Errorf("%s is not a postgres:// URL", EnvServer)
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", EnvServer, err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	return &Cluster{admin: dsn, external: true}, nil
}

// findBinaries returns the directory of initdb, pg_ctl and postgres.
func findBinaries() (string, error) {
	has := func(dir string) bool {
		for _, name := range []string{"initdb", "pg_ctl", "postgres"} {
			if fi, err := os.Stat(filepath.Join(dir, name)); err != nil || fi.IsDir() {
				return false
			}
		}
		return true
	}
	// pg_config may come with the client library alone: its bindir is
	// checked like the others.
	if out, err := exec.Command("pg_config", "--bindir").Output(); err == nil {
		if dir := strings.TrimSpace(string(out)); has(dir) {
			return dir, nil
		}
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	version := func(dir string) float64 {
		v, _ := strconv.ParseFloat(filepath.Base(filepath.Dir(dir)), 64)
		return v
	}
	slices.SortFunc(dirs, func(a, b string) int {
		switch va, vb := version(a), version(b); {
		case va > vb:
			return -1
		case va < vb:
			return 1
		default:
			return strings.Compare(a, b)
		}
	})
	for _, dir := range dirs {
		if has(dir) {
			return dir, nil
		}
	}
	return "", ErrNoBinaries
}

// postgresUser returns the credentials PostgreSQL runs with under root.
func postgresUser() (*syscall.Credential, error) {
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, fmt.Errorf("running as root, and initdb refuses root: need the unprivileged postgres user (the postgresql package creates it): %w", err)
	}
	uid, err := strconv.ParseUint(u.Uid, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("postgres user id %q: %w", u.Uid, err)
	}
	gid, err := strconv.ParseUint(u.Gid, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("postgres group id %q: %w", u.Gid, err)
	}
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func (c *Cluster) dataDir() string { return filepath.Join(c.dir, "data") }
func (c *Cluster) logFile() string { return filepath.Join(c.dir, "postgres.log") }

// run runs one of the PostgreSQL commands as the cluster's user, in its
// directory, and returns its output.
func (c *Cluster) run(ctx context.Context, name string, args ...string) ([]byte, error) {
	return runAs(ctx, c.cred, c.dir, filepath.Join(c.bindir, name), args...)
}

func runAs(ctx context.Context, cred *syscall.Credential, dir, path string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, path, args...) //nolint:gosec // a PostgreSQL binary of the harness
	cmd.Dir = dir
	// The server inherits no PG* settings meant for a client.
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PG") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, "LC_ALL=C")
	if cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	}
	// pg_ctl's server keeps running with its output in the log file; do
	// not wait for it to close anything else.
	cmd.WaitDelay = 5 * time.Second
	return cmd.CombinedOutput()
}

// startServer starts the server on c.port and waits until it accepts
// connections.
func (c *Cluster) startServer(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.running {
		return nil
	}
	out, err := c.run(ctx, "pg_ctl", "start", "-D", c.dataDir(), "-l", c.logFile(), "-w",
		"-t", strconv.Itoa(int(startTimeout.Seconds())), "-o", "-p "+strconv.Itoa(c.port))
	if err != nil {
		return fmt.Errorf("pg_ctl start on port %d: %w\n%s\n%s", c.port, err, out, c.logTail())
	}
	c.running = true
	return nil
}

// logTail returns the end of the server log, for errors.
func (c *Cluster) logTail() string {
	b, err := os.ReadFile(c.logFile())
	if err != nil {
		return ""
	}
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return "server log:\n" + string(b)
}

// stop stops the server if it runs (fast shutdown: sessions are
// terminated), and reports pg_ctl's failure.
func (c *Cluster) stop() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.running {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), stopTimeout+5*time.Second)
	defer cancel()
	out, err := c.run(ctx, "pg_ctl", "stop", "-D", c.dataDir(), "-m", "fast", "-w",
		"-t", strconv.Itoa(int(stopTimeout.Seconds())))
	if err != nil {
		return fmt.Errorf("pg_ctl stop: %w\n%s", err, out)
	}
	c.running = false
	return nil
}

// Stop stops the server: every connection to it fails until Restart. It is
// refused for a server the harness did not start.
func (c *Cluster) Stop() error {
	if c.external {
		return fmt.Errorf("pgtest: Stop needs a cluster started by pgtest, not the %s server", EnvServer)
	}
	if err := c.stop(); err != nil {
		return fmt.Errorf("pgtest: %w", err)
	}
	return nil
}

// Restart stops the server if it runs and starts it again, with the same
// data directory and port: for testing what clients do when their database
// restarts. It is refused for a server the harness did not start.
func (c *Cluster) Restart(ctx context.Context) error {
	if c.external {
		return fmt.Errorf("pgtest: Restart needs a cluster started by pgtest, not the %s server", EnvServer)
	}
	if err := c.stop(); err != nil {
		return fmt.Errorf("pgtest: restart: %w", err)
	}
	if err := c.startServer(ctx); err != nil {
		return fmt.Errorf("pgtest: restart: %w", err)
	}
	return nil
}

// External reports whether the cluster is the TRUSTMESH_TEST_POSTGRES
// server rather than one the harness started.
func (c *Cluster) External() bool { return c.external }

// AdminDSN is the superuser URL of the maintenance database.
func (c *Cluster) AdminDSN() string { return c.admin }

// Port is the TCP port the cluster listens on (0 for an external server).
func (c *Cluster) Port() int { return c.port }

var unsafeName = regexp.MustCompile(`[^a-z0-9_]+`)

// NewDatabase creates a new, empty UTF8 database with C collation and
// returns its URL. The database's name is name, lowercased with every
// character other than a letter, digit or '_' replaced, shortened, and with
// a random suffix, so that a test's name can be passed as it is and a
// shared server never sees the same name twice.
func (c *Cluster) NewDatabase(ctx context.Context, name string) (string, error) {
	dsn, err := c.newDatabase(ctx, name)
	if err != nil {
		return "", fmt.Errorf("pgtest: new database %q: %w", name, err)
	}
	return dsn, nil
}

func (c *Cluster) newDatabase(ctx context.Context, name string) (string, error) {
	suffix := make([]byte, 4)
	_, _ = rand.Read(suffix)
	db := strings.Trim(unsafeName.ReplaceAllString(strings.ToLower(name), "_"), "_")
	if len(db) > 40 {
		db = db[:40]
	}
	db = "t_" + db + "_" + hex.EncodeToString(suffix)

	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return "", errors.New("cluster is closed")
	}
	c.dbs = append(c.dbs, db)
	c.mu.Unlock()

	conn, err := pgx.Connect(ctx, c.admin)
	if err != nil {
		return "", err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	// template0, so that the encoding and collation may differ from the
	// server's defaults (an external server's template1 may be neither
	// UTF8 nor C).
	if _, err := conn.Exec(ctx, `CREATE DATABASE `+pgx.Identifier{db}.Sanitize()+
		` TEMPLATE template0 ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C'`); err != nil {
		return "", err
	}
	u, err := url.Parse(c.admin)
	if err != nil {
		return "", err
	}
	u.Path = "/" + db
	return u.String(), nil
}

// TB is the part of testing.TB that NewTestDatabase uses.
type TB interface {
	Helper()
	Name() string
	Context() context.Context
	Fatalf(format string, args ...any)
}

// NewTestDatabase is NewDatabase named after the test, failing it on error.
func (c *Cluster) NewTestDatabase(t TB) string {
	t.Helper()
	dsn, err := c.NewDatabase(t.Context(), t.Name())
	if err != nil {
		t.Fatalf("%v", err)
	}
	return dsn
}

// Close stops the server and removes its directory; for an external server
// it drops the databases NewDatabase created. Calls after the first do
// nothing.
func (c *Cluster) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	dbs := c.dbs
	c.mu.Unlock()

	if c.external {
		return c.dropAll(dbs)
	}
	err := c.stop()
	if rmErr := os.RemoveAll(c.dir); rmErr != nil {
		err = errors.Join(err, rmErr)
	}
	if err != nil {
		return fmt.Errorf("pgtest: close: %w", err)
	}
	return nil
}

func (c *Cluster) dropAll(dbs []string) error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn, err := pgx.Connect(ctx, c.admin)
	if err != nil {
		return fmt.Errorf("pgtest: drop test databases: %w", err)
	}
	defer conn.Close(ctx)
	var errs []error
	for _, db := range dbs {
		if _, err := conn.Exec(ctx, `DROP DATABASE IF EXISTS `+pgx.Identifier{db}.Sanitize()+` WITH (FORCE)`); err != nil {
			errs = append(errs, fmt.Errorf("drop %s: %w", db, err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("pgtest: %w", err)
	}
	return nil
}

// reapStale stops and removes the clusters of test binaries that exited
// without closing them.
func (c *Cluster) reapStale() {
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
		ctx, cancel := context.WithTimeout(context.Background(), stopTimeout)
		if _, err := os.Stat(filepath.Join(dir, "data", "postmaster.pid")); err == nil {
			_, _ = runAs(ctx, c.cred, dir, filepath.Join(c.bindir, "pg_ctl"), "stop", "-D", filepath.Join(dir, "data"), "-m", "immediate", "-w")
		}
		cancel()
		_ = os.RemoveAll(dir)
	}
}

func processExists(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

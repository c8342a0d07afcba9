package e2e

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/trustmesh/trustmesh/internal/store/postgres/pgtest"
)

// One PostgreSQL cluster serves every test of the binary that needs one,
// started on first use (most tests do not) and stopped by TestMain.
var (
	pgOnce    sync.Once
	pgCluster *pgtest.Cluster
	pgErr     error
	pgMu      sync.Mutex // serializes Restart against NewDatabase
)

// postgresDB returns the URL of a new database on the test cluster. A
// missing PostgreSQL fails the test: make test installs it.
func postgresDB(t *testing.T) string {
	t.Helper()
	pgOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		pgCluster, pgErr = pgtest.Start(ctx)
	})
	if pgErr != nil {
		t.Fatalf("start PostgreSQL: %v", pgErr)
	}
	pgMu.Lock()
	defer pgMu.Unlock()
	name := strings.ToLower(strings.NewReplacer("/", "_", " ", "_").Replace(t.Name()))
	dsn, err := pgCluster.NewDatabase(t.Context(), fmt.Sprintf("%s_%d", name, time.Now().UnixNano()%1e6))
	if err != nil {
		t.Fatalf("create database: %v", err)
	}
	return dsn
}

// restartPostgres stops and starts the cluster (same data, same port).
func restartPostgres(t *testing.T) {
	t.Helper()
	pgMu.Lock()
	defer pgMu.Unlock()
	if err := pgCluster.Restart(t.Context()); err != nil {
		t.Fatalf("restart PostgreSQL: %v", err)
	}
}

func stopPostgres() {
	if pgCluster != nil {
		if err := pgCluster.Close(); err != nil {
			fmt.Fprintln(os.Stderr, "stop PostgreSQL:", err)
		}
	}
}

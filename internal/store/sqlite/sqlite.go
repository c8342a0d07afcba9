package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"time"

	// Registers the "sqlite" database/sql driver.
	_ "modernc.org/sqlite"

	"github.com/trustmesh/trustmesh/internal/store"
	"github.com/trustmesh/trustmesh/internal/store/fanout"
)

var _ store.Store = (*Store)(nil)

// busyTimeout bounds how long a statement waits for a lock held by another
// process (in process, writers queue on the single write connection instead).
const busyTimeout = 5 * time.Second

// Store is a store.Store backed by one SQLite file. Create it with Open.
type Store struct {
	// wdb holds the single write connection; rdb is the pool of readers.
	wdb, rdb *sql.DB
	// now stamps object revisions and audit records that carry no time.
	now   func() time.Time
	stmts writeStmts
	subs  fanout.Subscribers

	// closed is cancelled by Close; it ends every held Elect role.
	closed    context.Context
	markClose context.CancelFunc
	closeOnce sync.Once
}

// writeStmts are prepared once on the write connection, so the hot write
// paths do not parse SQL on every call.
type writeStmts struct {
	liveHead       *sql.Stmt
	nextRevision   *sql.Stmt
	insertRevision *sql.Stmt
	upsertLive     *sql.Stmt
	deleteLive     *sql.Stmt
	insertIssued   *sql.Stmt
	insertAudit    *sql.Stmt
}

// Open opens the store at path, creating the file with mode 0600 if it does
// not exist (an existing file keeps its mode), and applies any pending schema
// migrations. The directory must exist. Close releases the store.
func Open(ctx context.Context, path string) (*Store, error) {
	s, err := open(ctx, path)
	if err != nil {
		return nil, fmt.Errorf("open sqlite store %s: %w", path, err)
	}
	return s, nil
}

func open(ctx context.Context, path string) (_ *Store, err error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, err
	}
	// SQLite would create the file with the process umask; creating it first
	// keeps join token hashes and the audit log private. The -wal and -shm
	// files SQLite creates later copy this file's mode.
	f, err := os.OpenFile(abs, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	if err := f.Close(); err != nil {
		return nil, err
	}

	s := &Store{now: time.Now}
	s.closed, s.markClose = context.WithCancel(context.Background())
	defer func() {
		if err != nil {
			err = errors.Join(err, s.close())
		}
	}()

	s.wdb, err = sql.Open("sqlite", dsn(abs, false))
	if err != nil {
		return nil, err
	}
	s.wdb.SetMaxOpenConns(1)
	s.wdb.SetMaxIdleConns(1)
	s.wdb.SetConnMaxLifetime(0)
	s.wdb.SetConnMaxIdleTime(0)
	// Connecting runs the pragmas, which switches the file to WAL before any
	// reader connects.
	if err := s.wdb.PingContext(ctx); err != nil {
		return nil, fmt.Errorf("connect writer: %w", err)
	}
	if err := migrate(ctx, s.wdb, migrations, s.now()); err != nil {
		return nil, fmt.Errorf("migrate: %w", err)
	}

	s.rdb, err = sql.Open("sqlite", dsn(abs, true))
	if err != nil {
		return nil, err
	}
	readers := max(4, runtime.GOMAXPROCS(0))
	s.rdb.SetMaxOpenConns(readers)
	s.rdb.SetMaxIdleConns(readers)
	if err := s.rdb.PingContext(ctx); err != nil {
		return nil, fmt.Errorf("connect reader: %w", err)
	}

	if err := s.prepare(ctx); err != nil {
		return nil, err
	}
	return s, nil
}

// absExisting resolves path, which must name an existing regular file.
func absExisting(path string) (string, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", err
	}
	fi, err := os.Stat(abs)
	if err != nil {
		return "", err
	}
	if !fi.Mode().IsRegular() {
		return "", fmt.Errorf("%s is not a regular file", abs)
	}
	return abs, nil
}

// dsn builds a file: URI, so that a path holding '?' or '%' is escaped rather
// than read as parameters. SQLite ignores the underscore keys, which the
// driver reads.
func dsn(path string, readOnly bool) string {
	q := url.Values{}
	q.Set("_busy_timeout", fmt.Sprint(busyTimeout.Milliseconds()))
	if readOnly {
		// A pragma rather than mode=ro: read-only opens of a WAL file need
		// write access to the -shm file anyway, and query_only still turns
		// any accidental write on a reader into an error.
		q.Set("_query_only", "1")
	} else {
		q.Set("_journal_mode", "WAL")
		// In WAL mode NORMAL syncs at checkpoints, not at every commit: a
		// power loss can drop the last commits but never corrupts the file.
		q.Set("_synchronous", "NORMAL")
		q.Set("_foreign_keys", "1")
		q.Set("_txlock", "immediate")
	}
	u := url.URL{Scheme: "file", Path: path, RawQuery: q.Encode()}
	return u.String()
}

func (s *Store) prepare(ctx context.Context) error {
	for _, p := range []struct {
		dst   **sql.Stmt
		query string
	}{
		{&s.stmts.liveHead, `SELECT o.revision, r.create_revision, r.data
			FROM objects o JOIN object_revisions r ON r.revision = o.revision
			WHERE o.kind = ? AND o.namespace = ? AND o.name = ?`},
		{&s.stmts.nextRevision, `SELECT COALESCE(MAX(revision), 0) + 1 FROM object_revisions`},
		{&s.stmts.insertRevision, `INSERT INTO object_revisions
			(revision, kind, namespace, name, create_revision, deleted, data, actor, time_ns)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`},
		{&s.stmts.upsertLive, `INSERT INTO objects (kind, namespace, name, revision)
			VALUES (?, ?, ?, ?)
			ON CONFLICT (kind, namespace, name) DO UPDATE SET revision = excluded.revision`},
		{&s.stmts.deleteLive, `DELETE FROM objects WHERE kind = ? AND namespace = ? AND name = ?`},
		{&s.stmts.insertIssued, `INSERT INTO issued
			(serial, spiffe_id, kind, node, authority, not_before_ns, not_after_ns)
			VALUES (?, ?, ?, ?, ?, ?, ?)`},
		{&s.stmts.insertAudit, insertAuditSQL},
	} {
		stmt, err := s.wdb.PrepareContext(ctx, p.query)
		if err != nil {
			return fmt.Errorf("prepare %q: %w", p.query, err)
		}
		*p.dst = stmt
	}
	return nil
}

// Close closes the statements and both pools. Calls after the first do
// nothing and return nil.
func (s *Store) Close() error {
	var err error
	s.closeOnce.Do(func() { err = s.close() })
	return err
}

func (s *Store) close() error {
	s.markClose()
	var errs []error
	for _, stmt := range []*sql.Stmt{
		s.stmts.liveHead, s.stmts.nextRevision, s.stmts.insertRevision,
		s.stmts.upsertLive, s.stmts.deleteLive, s.stmts.insertIssued, s.stmts.insertAudit,
	} {
		if stmt != nil {
			errs = append(errs, stmt.Close())
		}
	}
	// Readers first, so the writer's close is the last connection and
	// checkpoints the WAL into the main file.
	if s.rdb != nil {
		errs = append(errs, s.rdb.Close())
	}
	if s.wdb != nil {
		errs = append(errs, s.wdb.Close())
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("close sqlite store: %w", err)
	}
	return nil
}

// write runs fn in one write transaction and commits it, or rolls it back if
// fn fails. fn must use only tx (see the package documentation).
func (s *Store) write(ctx context.Context, fn func(tx *sql.Tx) error) error {
	tx, err := s.wdb.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	if err := fn(tx); err != nil {
		if rbErr := tx.Rollback(); rbErr != nil && !errors.Is(rbErr, sql.ErrTxDone) {
			return errors.Join(err, fmt.Errorf("rollback: %w", rbErr))
		}
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}

// limitArg maps the interface's "0 = no limit" to SQLite's LIMIT -1.
func limitArg(limit int) (int, error) {
	switch {
	case limit < 0:
		return 0, fmt.Errorf("negative limit %d", limit)
	case limit == 0:
		return -1, nil
	default:
		return limit, nil
	}
}

// Subscribe returns a channel that receives a value after every committed
// change to one of topics: object writes and deletes and revocations
// (store.TopicObjects), blob writes and deletes (store.TopicBlobs), presence
// puts and deletes (store.TopicPresence). Signals coalesce: a watcher that
// has not yet received the last one gets one value for many writes, and
// should then re-read what it follows. The channel is never closed; cancel
// stops the signals and may be called more than once.
func (s *Store) Subscribe(topics store.Topic) (<-chan struct{}, func()) {
	return s.subs.Subscribe(topics)
}

// Elect grants the role at once: only one server opens a SQLite store (the
// data dir lock), so there is nobody to campaign against. The held context
// is derived from ctx and is cancelled by release or when the store is
// closed; release may be called more than once.
func (s *Store) Elect(ctx context.Context, name string) (context.Context, func(), error) {
	if err := ctx.Err(); err != nil {
		return nil, func() {}, fmt.Errorf("elect %q: %w", name, err)
	}
	if err := s.closed.Err(); err != nil {
		return nil, func() {}, fmt.Errorf("elect %q: store is closed", name)
	}
	held, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(s.closed, cancel)
	return held, func() {
		stop()
		cancel()
	}, nil
}

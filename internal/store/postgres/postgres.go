package postgres

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/trustmesh/trustmesh/internal/store"
	"github.com/trustmesh/trustmesh/internal/store/fanout"
)

var _ store.Store = (*Store)(nil)

// Log attribute keys.
const (
	logComponent = "component"
	logError     = "error"
	logRole      = "role"
	logBackoff   = "backoff"
)

// Timings of the connections the store keeps outside the pool.
const (
	// connectTimeout bounds one attempt to open a listener or election
	// connection.
	connectTimeout = 10 * time.Second
	// campaignInterval is how often a waiting Elect tries for its lock.
	campaignInterval = time.Second
	// pingInterval is how often a held role's connection is checked, and
	// pingTimeout how long the check may take: a lost role is noticed
	// within about their sum.
	pingInterval = time.Second
	pingTimeout  = 3 * time.Second
	// listenIdle is how long the listener waits for a notification before
	// it checks that its connection is alive.
	listenIdle = 15 * time.Second
	// minBackoff and maxBackoff bound the listener's reconnect delay.
	minBackoff = 100 * time.Millisecond
	maxBackoff = 5 * time.Second
	// unlockTimeout bounds giving up a role on release.
	unlockTimeout = 5 * time.Second
)

// notifyChannel is the LISTEN/NOTIFY channel of every change.
const notifyChannel = "trustmesh_changes"

// Store is a store.Store on a PostgreSQL database that several servers may
// share. Create it with Open.
type Store struct {
	pool *pgxpool.Pool
	// connConfig configures the listener and election connections, which
	// are opened outside the pool.
	connConfig *pgx.ConnConfig
	log        *slog.Logger
	now        func() time.Time
	listenIdle time.Duration
	// origin tags this store's notifications, so its listener can skip
	// them: its own subscribers are signalled directly on commit.
	origin string
	subs   fanout.Subscribers

	// closed is cancelled by Close; it stops the listener, campaigns and
	// held roles.
	closed    context.Context
	markClose context.CancelFunc
	// mu guards isClosed, so that no goroutine is added to wg once Close
	// waits for it.
	mu        sync.Mutex
	isClosed  bool
	wg        sync.WaitGroup
	closeOnce sync.Once
}

// Option configures a Store.
type Option func(*options)

type options struct {
	log *slog.Logger
	now func() time.Time
	// listenIdle is how long the listener waits for a notification before
	// it pings its connection (tests shorten it).
	listenIdle time.Duration
}

// WithLogger sets the logger for what the store does in the background
// (listener reconnects, lost roles). The default discards.
func WithLogger(l *slog.Logger) Option {
	return func(o *options) { o.log = l }
}

// WithClock sets the clock that stamps object revisions, blob versions and
// audit records that carry no time. The default is time.Now.
func WithClock(now func() time.Time) Option {
	return func(o *options) { o.now = now }
}

// Open connects to the database named by dsn, a postgres:// or
// postgresql:// URL, applies any pending schema migrations and starts
// listening for other servers' changes. The password never appears in its
// errors (see Redact). Close releases the store.
func Open(ctx context.Context, dsn string, opts ...Option) (*Store, error) {
	o := options{log: slog.New(slog.DiscardHandler), now: time.Now, listenIdle: listenIdle}
	for _, opt := range opts {
		opt(&o)
	}
	cfg, err := parseDSN(dsn)
	if err != nil {
		return nil, fmt.Errorf("open postgres store %s: %w", Redact(dsn), err)
	}
	s, err := open(ctx, cfg, o)
	if err != nil {
		return nil, &openError{dsn: Redact(dsn), err: err, secret: cfg.ConnConfig.Password}
	}
	return s, nil
}

// openError keeps the password out of a failed Open's message, whatever a
// lower layer put in its own.
type openError struct {
	dsn    string
	err    error
	secret string
}

func (e *openError) Error() string {
	return "open postgres store " + e.dsn + ": " + scrub(e.err.Error(), e.secret)
}

func (e *openError) Unwrap() error { return e.err }

// scrub replaces secret, raw and URL-escaped, in msg.
func scrub(msg, secret string) string {
	if secret == "" {
		return msg
	}
	for _, s := range []string{secret, url.QueryEscape(secret), url.PathEscape(secret)} {
		msg = strings.ReplaceAll(msg, s, "xxxxx")
	}
	return msg
}

// parseDSN accepts only URLs, which Redact can mask reliably. Its errors
// carry no part of dsn.
func parseDSN(dsn string) (*pgxpool.Config, error) {
	u, err := url.Parse(dsn)
	if err != nil {
		var uerr *url.Error
		if errors.As(err, &uerr) {
			err = uerr.Err // without the URL, which holds the password
		}
		return nil, fmt.Errorf("invalid URL: %s", scrubURL(err.Error(), dsn))
	}
	if u.Scheme != "postgres" && u.Scheme != "postgresql" {
		return nil, errors.New("want a postgres:// or postgresql:// URL")
	}
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		// pgx masks the password itself, best effort; scrub again, and
		// keep nothing of it to unwrap.
		return nil, errors.New(scrubURL(err.Error(), dsn))
	}
	if _, ok := cfg.ConnConfig.RuntimeParams["application_name"]; !ok {
		cfg.ConnConfig.RuntimeParams["application_name"] = "trustmesh"
	}
	return cfg, nil
}

// scrubURL removes every password dsn holds from msg.
func scrubURL(msg, dsn string) string {
	u, err := url.Parse(dsn)
	if err != nil {
		// Nothing reliable to mask: say nothing of the input.
		return "malformed URL"
	}
	if pw, ok := u.User.Password(); ok {
		msg = scrub(msg, pw)
	}
	q := u.Query()
	for _, k := range secretParams {
		for _, v := range q[k] {
			msg = scrub(msg, v)
		}
	}
	return msg
}

// secretParams are the URL query parameters that hold secrets.
var secretParams = []string{"password", "sslpassword"}

// Redact returns dsn with its password, and any password or sslpassword
// parameter, replaced by "xxxxx", for logs and errors. A string that is not
// a postgres:// or postgresql:// URL is not shown at all.
func Redact(dsn string) string {
	u, err := url.Parse(dsn)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		return "(not a postgres:// URL)"
	}
	if _, ok := u.User.Password(); ok {
		u.User = url.UserPassword(u.User.Username(), "xxxxx")
	}
	q := u.Query()
	changed := false
	for _, k := range secretParams {
		if q.Has(k) {
			q.Set(k, "xxxxx")
			changed = true
		}
	}
	if changed {
		u.RawQuery = q.Encode()
	}
	return u.String()
}

func open(ctx context.Context, cfg *pgxpool.Config, o options) (_ *Store, err error) {
	origin := make([]byte, 8)
	_, _ = rand.Read(origin) // never fails (crypto/rand documents it)
	s := &Store{
		connConfig: cfg.ConnConfig.Copy(),
		log:        o.log.With(logComponent, "store/postgres"),
		now:        o.now,
		listenIdle: o.listenIdle,
		origin:     hex.EncodeToString(origin),
	}
	s.closed, s.markClose = context.WithCancel(context.Background())

	s.pool, err = pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		s.markClose()
		return nil, err
	}
	defer func() {
		if err != nil {
			s.markClose()
			s.pool.Close()
		}
	}()
	if err := checkEncoding(ctx, s.pool); err != nil {
		return nil, err
	}
	if err := migrate(ctx, s.pool, migrations, s.now()); err != nil {
		return nil, fmt.Errorf("migrate: %w", err)
	}
	// The first LISTEN is done before Open returns, so that a Subscribe
	// after Open misses nothing another server commits.
	conn, err := s.connectListener(ctx)
	if err != nil {
		return nil, fmt.Errorf("listen: %w", err)
	}
	s.wg.Add(1)
	go s.listen(conn)
	return s, nil
}

// checkEncoding insists on a UTF8 database: text is stored byte for byte
// only then, and the audit hash covers the bytes.
func checkEncoding(ctx context.Context, pool *pgxpool.Pool) error {
	var enc string
	if err := pool.QueryRow(ctx, `SELECT pg_encoding_to_char(encoding) FROM pg_database WHERE datname = current_database()`).Scan(&enc); err != nil {
		return fmt.Errorf("read database encoding: %w", err)
	}
	if enc != "UTF8" {
		return fmt.Errorf("database encoding is %s, want UTF8 (CREATE DATABASE ... ENCODING 'UTF8')", enc)
	}
	return nil
}

// connect opens a connection outside the pool, named for what it does in
// pg_stat_activity.
func (s *Store) connect(ctx context.Context, purpose string) (*pgx.Conn, error) {
	cfg := s.connConfig.Copy()
	cfg.RuntimeParams["application_name"] = cfg.RuntimeParams["application_name"] + " " + purpose
	ctx, cancel := context.WithTimeout(ctx, connectTimeout)
	defer cancel()
	return pgx.ConnectConfig(ctx, cfg)
}

// closeConn closes a connection outside the pool, bounded in time.
func closeConn(conn *pgx.Conn) {
	ctx, cancel := context.WithTimeout(context.Background(), unlockTimeout)
	defer cancel()
	_ = conn.Close(ctx) // the connection is done with either way
}

// goroutine starts fn as one of the store's goroutines, which Close waits
// for; false if the store is closed.
func (s *Store) goroutine(fn func()) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.isClosed {
		return false
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		fn()
	}()
	return true
}

// Close stops the listener, gives up every held role and closes the pool.
// Calls after the first do nothing and return nil.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		s.isClosed = true
		s.mu.Unlock()
		s.markClose()
		s.wg.Wait()
		s.pool.Close()
	})
	return nil
}

// writeTx runs a transaction that reads before it writes in two round
// trips: BEGIN and the queries queue adds are sent in one batch, whose
// results read reads; then fn runs (it may use conn, say for COPY) and
// returns the last batch of writes, which is sent with COMMIT. If anything
// fails the transaction is rolled back (a connection left in a transaction
// is not returned to the pool in any case).
func (s *Store) writeTx(ctx context.Context, queue func(b *pgx.Batch), read func(br pgx.BatchResults) error,
	fn func(conn *pgx.Conn) (*pgx.Batch, error),
) (err error) {
	pc, err := s.pool.Acquire(ctx)
	if err != nil {
		return err
	}
	defer pc.Release()
	conn := pc.Conn()
	defer func() {
		if err == nil || conn.IsClosed() || conn.PgConn().TxStatus() == 'I' {
			return
		}
		rbCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), unlockTimeout)
		defer cancel()
		if _, rbErr := conn.Exec(rbCtx, "ROLLBACK"); rbErr != nil {
			err = errors.Join(err, fmt.Errorf("rollback: %w", rbErr))
		}
	}()

	var first pgx.Batch
	first.Queue("BEGIN")
	queue(&first)
	br := conn.SendBatch(ctx, &first)
	if _, err := br.Exec(); err != nil {
		_ = br.Close()
		return fmt.Errorf("begin: %w", err)
	}
	if err := read(br); err != nil {
		_ = br.Close()
		return err
	}
	if err := br.Close(); err != nil {
		return err
	}
	last, err := fn(conn)
	if err != nil {
		return err
	}
	if last == nil {
		last = &pgx.Batch{}
	}
	// A failed write makes the server skip the rest of the batch, COMMIT
	// included, and Close report it.
	last.Queue("COMMIT")
	return sendBatch(ctx, conn, last)
}

// sendBatch sends b in one round trip and reads every result: the batch is
// one implicit transaction.
func sendBatch(ctx context.Context, q interface {
	SendBatch(context.Context, *pgx.Batch) pgx.BatchResults
}, b *pgx.Batch) error {
	return q.SendBatch(ctx, b).Close()
}

// queueNotify queues the notification of a change to topic, delivered to
// every listening server when the transaction commits.
func (s *Store) queueNotify(b *pgx.Batch, topic store.Topic) {
	b.Queue(`SELECT pg_notify($1, $2)`, notifyChannel, s.payload(topic))
}

func (s *Store) payload(topic store.Topic) string {
	return fmt.Sprintf("%s %d", s.origin, topic)
}

// lockKey is the advisory lock key of purpose: the first 8 bytes of a
// SHA-256, so trustmesh's keys are unlikely to meet another application's
// in a shared database.
func lockKey(purpose string) int64 {
	sum := sha256.Sum256([]byte("trustmesh advisory lock\x00" + purpose))
	return int64(binary.BigEndian.Uint64(sum[:8])) //nolint:gosec // a hash, reinterpreted on purpose
}

// Advisory locks held for the length of a transaction.
var (
	migrateLock    = lockKey("migrate")
	auditLock      = lockKey("audit")
	checkpointLock = lockKey("audit checkpoints")
)

// limitArg maps the interface's "0 = no limit" to LIMIT NULL (LIMIT ALL).
func limitArg(limit int) (*int64, error) {
	switch {
	case limit < 0:
		return nil, fmt.Errorf("negative limit %d", limit)
	case limit == 0:
		return nil, nil
	default:
		n := int64(limit)
		return &n, nil
	}
}

// notNil maps nil to an empty slice for a NOT NULL bytea column (pgx sends
// a nil slice as NULL).
func notNil(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}

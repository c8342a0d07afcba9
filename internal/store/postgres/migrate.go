package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// A migration moves the schema from version-1 to version, like the SQLite
// store's (same list shape, same schema_version table, one transaction).
// Migrations are never edited once released: a change to the schema is a
// new migration at the end of the list. A migration that must compute
// something SQL cannot adds a run step, called after its statements in the
// same transaction.
//
// The versions are this store's own: the PostgreSQL store started with the
// schema the SQLite store reached at its version 3, so its version 1 is
// that schema.
type migration struct {
	version int
	name    string
	stmts   []string
	run     func(ctx context.Context, tx pgx.Tx, now time.Time) error
}

// migrations is the schema history of the PostgreSQL store, oldest first.
//
// Every text column is COLLATE "C", so comparisons and ORDER BY are byte
// order whatever the database's locale. Times are BIGINT Unix nanoseconds
// (timestamptz keeps microseconds, and the audit hash covers nanoseconds).
// The audit log's free-form strings are bytea: text cannot hold NUL, and a
// record is kept byte for byte.
var migrations = []migration{
	{
		version: 1,
		name:    "initial schema",
		stmts: []string{
			// The store-wide revision counter: an object write locks and
			// increments its one row inside its transaction, which
			// serializes object writes across servers and keeps
			// revisions dense (a rolled back write consumes none).
			`CREATE TABLE object_counter (
				id       BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (id),
				revision BIGINT  NOT NULL
			)`,
			`INSERT INTO object_counter (revision) VALUES (0)`,
			`CREATE TABLE object_revisions (
				revision        BIGINT      PRIMARY KEY,
				kind            TEXT COLLATE "C" NOT NULL,
				namespace       TEXT COLLATE "C" NOT NULL,
				name            TEXT COLLATE "C" NOT NULL,
				create_revision BIGINT      NOT NULL,
				deleted         BOOLEAN     NOT NULL,
				data            BYTEA       NOT NULL,
				actor           TEXT COLLATE "C" NOT NULL,
				time_ns         BIGINT      NOT NULL
			)`,
			`CREATE INDEX object_revisions_by_key
				ON object_revisions (kind, namespace, name, revision)`,
			`CREATE TABLE objects (
				kind      TEXT COLLATE "C" NOT NULL,
				namespace TEXT COLLATE "C" NOT NULL,
				name      TEXT COLLATE "C" NOT NULL,
				revision  BIGINT NOT NULL UNIQUE REFERENCES object_revisions (revision),
				PRIMARY KEY (kind, namespace, name)
			)`,
			`CREATE TABLE join_tokens (
				hash          TEXT COLLATE "C" PRIMARY KEY,
				node          TEXT COLLATE "C" NOT NULL,
				created_at_ns BIGINT,
				expires_at_ns BIGINT NOT NULL,
				created_by    TEXT COLLATE "C" NOT NULL,
				used_at_ns    BIGINT
			)`,
			`CREATE TABLE nodes (
				name           TEXT COLLATE "C" PRIMARY KEY,
				spiffe_id      TEXT COLLATE "C" NOT NULL,
				attested_at_ns BIGINT,
				serial         TEXT COLLATE "C" NOT NULL,
				expires_at_ns  BIGINT
			)`,
			`CREATE TABLE issued (
				id            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
				serial        TEXT COLLATE "C" NOT NULL,
				spiffe_id     TEXT COLLATE "C" NOT NULL,
				kind          TEXT COLLATE "C" NOT NULL,
				node          TEXT COLLATE "C" NOT NULL,
				authority     TEXT COLLATE "C" NOT NULL,
				not_before_ns BIGINT,
				not_after_ns  BIGINT
			)`,
			`CREATE INDEX issued_by_spiffe_id ON issued (spiffe_id, id)`,
			`CREATE TABLE revocations (
				id            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
				serial        TEXT COLLATE "C" NOT NULL,
				spiffe_id     TEXT COLLATE "C" NOT NULL,
				revoked_at_ns BIGINT NOT NULL,
				reason        TEXT COLLATE "C" NOT NULL,
				actor         TEXT COLLATE "C" NOT NULL,
				CHECK ((serial = '') <> (spiffe_id = ''))
			)`,
			// The audit log's high-water mark: the highest seq ever
			// assigned, so a record removed from the end leaves a gap
			// the next append makes visible instead of having its seq
			// reused.
			`CREATE TABLE audit_counter (
				id  BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (id),
				seq BIGINT  NOT NULL
			)`,
			`INSERT INTO audit_counter (seq) VALUES (0)`,
			`CREATE TABLE audit (
				seq        BIGINT PRIMARY KEY,
				time_ns    BIGINT NOT NULL,
				actor      BYTEA  NOT NULL,
				action     BYTEA  NOT NULL,
				object     BYTEA  NOT NULL,
				revision   BIGINT NOT NULL,
				outcome    BYTEA  NOT NULL,
				reason     BYTEA  NOT NULL,
				request_id BYTEA  NOT NULL,
				prev_hash  TEXT COLLATE "C" NOT NULL,
				hash       TEXT COLLATE "C" NOT NULL
			)`,
			`CREATE TABLE audit_checkpoints (
				seq       BIGINT PRIMARY KEY,
				hash      TEXT COLLATE "C" NOT NULL,
				time_ns   BIGINT NOT NULL,
				key_id    TEXT COLLATE "C" NOT NULL,
				signature BYTEA  NOT NULL
			)`,
			`CREATE TABLE blobs (
				name       TEXT COLLATE "C" PRIMARY KEY,
				data       BYTEA  NOT NULL,
				version    BIGINT NOT NULL CHECK (version > 0),
				updated_ns BIGINT NOT NULL
			)`,
			`CREATE TABLE presence (
				replica       TEXT COLLATE "C" PRIMARY KEY,
				data          BYTEA  NOT NULL,
				expires_at_ns BIGINT NOT NULL
			)`,
		},
	},
}

// migrate brings the database up to the last of ms in one transaction: either
// every pending migration is applied and recorded, or none is. Running it on
// an up-to-date database changes nothing. It refuses a database whose schema
// is newer than ms, since this binary would not know what its tables mean.
//
// The transaction first takes a transaction-scoped advisory lock, so servers
// starting together on a new database serialize here and the second sees
// what the first applied (CREATE TABLE IF NOT EXISTS alone races).
func migrate(ctx context.Context, pool *pgxpool.Pool, ms []migration, now time.Time) (err error) {
	for i, m := range ms {
		if m.version != i+1 {
			return fmt.Errorf("migration %q has version %d, want %d", m.name, m.version, i+1)
		}
	}

	tx, err := pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	defer func() {
		if err == nil {
			return
		}
		rbCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), unlockTimeout)
		defer cancel()
		if rbErr := tx.Rollback(rbCtx); rbErr != nil && !errors.Is(rbErr, pgx.ErrTxClosed) {
			err = errors.Join(err, fmt.Errorf("rollback: %w", rbErr))
		}
	}()

	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, migrateLock); err != nil {
		return fmt.Errorf("lock: %w", err)
	}
	if _, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS schema_version (
		version       INTEGER PRIMARY KEY,
		name          TEXT    NOT NULL,
		applied_at_ns BIGINT  NOT NULL
	)`); err != nil {
		return fmt.Errorf("create schema_version: %w", err)
	}

	var current int
	if err := tx.QueryRow(ctx, `SELECT COALESCE(MAX(version), 0) FROM schema_version`).Scan(&current); err != nil {
		return fmt.Errorf("read schema version: %w", err)
	}
	if current > len(ms) {
		return fmt.Errorf("database schema version %d is newer than this binary supports (%d)", current, len(ms))
	}

	for _, m := range ms[current:] {
		for _, stmt := range m.stmts {
			if _, err := tx.Exec(ctx, stmt); err != nil {
				return fmt.Errorf("migration %d (%s): %w", m.version, m.name, err)
			}
		}
		if m.run != nil {
			if err := m.run(ctx, tx, now); err != nil {
				return fmt.Errorf("migration %d (%s): %w", m.version, m.name, err)
			}
		}
		if _, err := tx.Exec(ctx,
			`INSERT INTO schema_version (version, name, applied_at_ns) VALUES ($1, $2, $3)`,
			m.version, m.name, now.UnixNano()); err != nil {
			return fmt.Errorf("record migration %d: %w", m.version, err)
		}
	}

	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}

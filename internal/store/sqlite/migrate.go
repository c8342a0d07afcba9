package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/trustmesh/trustmesh/internal/store"
	"github.com/trustmesh/trustmesh/internal/store/auditchain"
)

// A migration moves the schema from version-1 to version. Migrations are
// never edited once released: a change to the schema is a new migration at
// the end of the list. The runner is plain SQL in one *sql.Tx so that the
// PostgreSQL store can mirror it with its own statements: the same list
// shape, the same schema_version table, one transaction (there, behind a
// transaction-scoped advisory lock, which serializes servers starting
// together the way BEGIN IMMEDIATE does here). A migration that must
// compute something SQL cannot (hashes) adds a run step, called after its
// statements in the same transaction.
type migration struct {
	version int
	name    string
	stmts   []string
	run     func(ctx context.Context, tx *sql.Tx, now time.Time) error
}

// migrations is the schema history of the SQLite store, oldest first.
var migrations = []migration{
	{
		version: 1,
		name:    "initial schema",
		stmts: []string{
			`CREATE TABLE object_revisions (
				revision        INTEGER PRIMARY KEY,
				kind            TEXT    NOT NULL,
				namespace       TEXT    NOT NULL,
				name            TEXT    NOT NULL,
				create_revision INTEGER NOT NULL,
				deleted         INTEGER NOT NULL CHECK (deleted IN (0, 1)),
				data            BLOB    NOT NULL,
				actor           TEXT    NOT NULL,
				time_ns         INTEGER NOT NULL
			)`,
			`CREATE INDEX object_revisions_by_key
				ON object_revisions (kind, namespace, name, revision)`,
			`CREATE TABLE objects (
				kind      TEXT    NOT NULL,
				namespace TEXT    NOT NULL,
				name      TEXT    NOT NULL,
				revision  INTEGER NOT NULL UNIQUE REFERENCES object_revisions (revision),
				PRIMARY KEY (kind, namespace, name)
			) WITHOUT ROWID`,
			`CREATE TABLE join_tokens (
				hash          TEXT    NOT NULL PRIMARY KEY,
				node          TEXT    NOT NULL,
				created_at_ns INTEGER,
				expires_at_ns INTEGER NOT NULL,
				created_by    TEXT    NOT NULL,
				used_at_ns    INTEGER
			) WITHOUT ROWID`,
			`CREATE TABLE nodes (
				name           TEXT NOT NULL PRIMARY KEY,
				spiffe_id      TEXT NOT NULL,
				attested_at_ns INTEGER,
				serial         TEXT NOT NULL,
				expires_at_ns  INTEGER
			) WITHOUT ROWID`,
			`CREATE TABLE issued (
				id            INTEGER PRIMARY KEY,
				serial        TEXT NOT NULL,
				spiffe_id     TEXT NOT NULL,
				kind          TEXT NOT NULL,
				node          TEXT NOT NULL,
				authority     TEXT NOT NULL,
				not_before_ns INTEGER,
				not_after_ns  INTEGER
			)`,
			`CREATE INDEX issued_by_spiffe_id ON issued (spiffe_id, id)`,
			`CREATE TABLE revocations (
				id            INTEGER PRIMARY KEY,
				serial        TEXT    NOT NULL,
				spiffe_id     TEXT    NOT NULL,
				revoked_at_ns INTEGER NOT NULL,
				reason        TEXT    NOT NULL,
				actor         TEXT    NOT NULL,
				CHECK ((serial = '') <> (spiffe_id = ''))
			)`,
			`CREATE TABLE audit (
				seq        INTEGER PRIMARY KEY AUTOINCREMENT,
				time_ns    INTEGER NOT NULL,
				actor      TEXT    NOT NULL,
				action     TEXT    NOT NULL,
				object     TEXT    NOT NULL,
				revision   INTEGER NOT NULL,
				outcome    TEXT    NOT NULL,
				reason     TEXT    NOT NULL,
				request_id TEXT    NOT NULL
			)`,
		},
	},
	{
		version: 2,
		name:    "audit hash chain and checkpoints",
		stmts: []string{
			`ALTER TABLE audit ADD COLUMN prev_hash TEXT NOT NULL DEFAULT ''`,
			`ALTER TABLE audit ADD COLUMN hash TEXT NOT NULL DEFAULT ''`,
			`CREATE TABLE audit_checkpoints (
				seq       INTEGER PRIMARY KEY,
				hash      TEXT    NOT NULL,
				time_ns   INTEGER NOT NULL,
				key_id    TEXT    NOT NULL,
				signature BLOB    NOT NULL
			)`,
		},
		run: chainExistingAudit,
	},
	{
		version: 3,
		name:    "blobs and presence",
		stmts: []string{
			`CREATE TABLE blobs (
				name       TEXT    NOT NULL PRIMARY KEY,
				data       BLOB    NOT NULL,
				version    INTEGER NOT NULL CHECK (version > 0),
				updated_ns INTEGER NOT NULL
			) WITHOUT ROWID`,
			`CREATE TABLE presence (
				replica       TEXT    NOT NULL PRIMARY KEY,
				data          BLOB    NOT NULL,
				expires_at_ns INTEGER NOT NULL
			) WITHOUT ROWID`,
		},
	},
}

// chainExistingAudit computes the hash chain over the records of a log
// written before the chain existed, in seq order, and then appends a record
// (action auditchain.ActionChainStart) saying so: the chain over those
// records proves only that they were not changed after this upgrade. A log
// without records gets no such record, and its chain is native from seq 1.
func chainExistingAudit(ctx context.Context, tx *sql.Tx, now time.Time) error {
	const page = 10_000
	var (
		prevSeq     int64
		prevHash    = auditchain.Genesis
		first, last int64
	)
	update, err := tx.PrepareContext(ctx, `UPDATE audit SET actor = ?, action = ?, object = ?, outcome = ?,
		reason = ?, request_id = ?, prev_hash = ?, hash = ? WHERE seq = ?`)
	if err != nil {
		return fmt.Errorf("chain existing audit records: %w", err)
	}
	defer update.Close()
	for {
		recs, err := scanAudit(tx.QueryContext(ctx, `SELECT `+auditColumns+` FROM audit WHERE seq > ? ORDER BY seq LIMIT ?`, prevSeq, page))
		if err != nil {
			return fmt.Errorf("chain existing audit records after %d: %w", prevSeq, err)
		}
		for i := range recs {
			r := &recs[i]
			if err := auditchain.Link(prevHash, r); err != nil {
				return fmt.Errorf("chain existing audit record %d: %w", r.Seq, err)
			}
			if _, err := update.ExecContext(ctx, r.Actor, r.Action, r.Object, r.Outcome, r.Reason, r.RequestID,
				r.PrevHash, r.Hash, r.Seq); err != nil {
				return fmt.Errorf("chain existing audit record %d: %w", r.Seq, err)
			}
			if first == 0 {
				first = r.Seq
			}
			last, prevSeq, prevHash = r.Seq, r.Seq, r.Hash
		}
		if len(recs) < page {
			break
		}
	}
	if last == 0 {
		return nil
	}
	marker := []store.AuditRecord{{
		Time:    now,
		Actor:   auditchain.ChainStartActor,
		Action:  auditchain.ActionChainStart,
		Outcome: "success",
		Reason: fmt.Sprintf("records %d to %d were written before the audit hash chain and were chained by this upgrade: a change made to them before now cannot be detected",
			first, last),
	}}
	head, err := readAuditHead(ctx, tx)
	if err != nil {
		return err
	}
	if err := auditchain.Seal(head.seq, head.hash, marker); err != nil {
		return err
	}
	return insertAudit(ctx, tx, marker)
}

// migrate brings the database up to the last of ms in one transaction: either
// every pending migration is applied and recorded, or none is. Running it on
// an up-to-date database changes nothing. It refuses a database whose schema
// is newer than ms, since this binary would not know what its tables mean.
func migrate(ctx context.Context, db *sql.DB, ms []migration, now time.Time) (err error) {
	for i, m := range ms {
		if m.version != i+1 {
			return fmt.Errorf("migration %q has version %d, want %d", m.name, m.version, i+1)
		}
	}

	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	defer func() {
		if err == nil {
			return
		}
		if rbErr := tx.Rollback(); rbErr != nil && !errors.Is(rbErr, sql.ErrTxDone) {
			err = errors.Join(err, fmt.Errorf("rollback: %w", rbErr))
		}
	}()

	// Created inside the transaction, so two processes opening a new file at
	// once serialize here and the second sees what the first applied.
	if _, err := tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_version (
		version       INTEGER NOT NULL PRIMARY KEY,
		name          TEXT    NOT NULL,
		applied_at_ns INTEGER NOT NULL
	)`); err != nil {
		return fmt.Errorf("create schema_version: %w", err)
	}

	var current int
	if err := tx.QueryRowContext(ctx, `SELECT COALESCE(MAX(version), 0) FROM schema_version`).Scan(&current); err != nil {
		return fmt.Errorf("read schema version: %w", err)
	}
	if current > len(ms) {
		return fmt.Errorf("database schema version %d is newer than this binary supports (%d)", current, len(ms))
	}

	for _, m := range ms[current:] {
		for _, stmt := range m.stmts {
			if _, err := tx.ExecContext(ctx, stmt); err != nil {
				return fmt.Errorf("migration %d (%s): %w", m.version, m.name, err)
			}
		}
		if m.run != nil {
			if err := m.run(ctx, tx, now); err != nil {
				return fmt.Errorf("migration %d (%s): %w", m.version, m.name, err)
			}
		}
		if _, err := tx.ExecContext(ctx,
			`INSERT INTO schema_version (version, name, applied_at_ns) VALUES (?, ?, ?)`,
			m.version, m.name, now.UnixNano()); err != nil {
			return fmt.Errorf("record migration %d: %w", m.version, err)
		}
	}

	if err := tx.Commit(); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}

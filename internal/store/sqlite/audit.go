package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/trustmesh/trustmesh/internal/store"
	"github.com/trustmesh/trustmesh/internal/store/auditchain"
	"github.com/trustmesh/trustmesh/internal/store/unixnano"
)

// auditColumns are the columns scanAudit reads, in its order.
const auditColumns = `seq, time_ns, actor, action, object, revision, outcome, reason, request_id, prev_hash, hash`

// insertAuditSQL inserts one sealed record with its own seq.
const insertAuditSQL = `INSERT INTO audit
	(seq, time_ns, actor, action, object, revision, outcome, reason, request_id, prev_hash, hash)
	VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`

// auditHeadSQL reads where the chain continues: the highest seq the table
// ever held (AUTOINCREMENT's high-water mark, so a record removed from the
// end leaves a visible gap instead of having its seq reused) and the hash of
// the last record present.
const auditHeadSQL = `SELECT
	COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'audit'), 0),
	COALESCE((SELECT hash FROM audit ORDER BY seq DESC LIMIT 1), '')`

type querier interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

type auditHead struct {
	seq  int64
	hash string
}

func readAuditHead(ctx context.Context, q querier) (auditHead, error) {
	var h auditHead
	if err := q.QueryRowContext(ctx, auditHeadSQL).Scan(&h.seq, &h.hash); err != nil {
		return auditHead{}, fmt.Errorf("read audit head: %w", err)
	}
	if h.hash == "" {
		h.hash = auditchain.Genesis
	}
	return h, nil
}

// insertAudit inserts sealed records inside a write transaction.
func insertAudit(ctx context.Context, tx *sql.Tx, recs []store.AuditRecord) error {
	stmt, err := tx.PrepareContext(ctx, insertAuditSQL)
	if err != nil {
		return err
	}
	defer stmt.Close()
	return execInsertAudit(ctx, stmt, recs)
}

func execInsertAudit(ctx context.Context, stmt *sql.Stmt, recs []store.AuditRecord) error {
	for _, r := range recs {
		// Times were checked against the storable range before the
		// transaction began.
		if _, err := stmt.ExecContext(ctx, r.Seq, r.Time.UnixNano(), r.Actor, r.Action, r.Object, r.Revision,
			r.Outcome, r.Reason, r.RequestID, r.PrevHash, r.Hash); err != nil {
			return fmt.Errorf("insert record %d: %w", r.Seq, err)
		}
	}
	return nil
}

// scanAudit reads rows of auditColumns; it takes QueryContext's results so
// callers can pass them straight through.
func scanAudit(rows *sql.Rows, err error) ([]store.AuditRecord, error) {
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var recs []store.AuditRecord
	for rows.Next() {
		var (
			r      store.AuditRecord
			timeNS int64
		)
		if err := rows.Scan(&r.Seq, &timeNS, &r.Actor, &r.Action, &r.Object, &r.Revision,
			&r.Outcome, &r.Reason, &r.RequestID, &r.PrevHash, &r.Hash); err != nil {
			return nil, err
		}
		r.Time = unixnano.Decode(timeNS)
		recs = append(recs, r)
	}
	return recs, rows.Err()
}

// AppendAudit appends r and returns its sequence number (see
// AppendAuditBatch).
func (s *Store) AppendAudit(ctx context.Context, r store.AuditRecord) (int64, error) {
	seqs, err := s.appendAudit(ctx, []store.AuditRecord{r})
	if err != nil {
		return 0, fmt.Errorf("append audit %s %s by %s: %w", r.Action, r.Object, r.Actor, err)
	}
	return seqs[0], nil
}

// AppendAuditBatch appends recs in one transaction and returns their
// sequence numbers: one more than the highest ever assigned for the first,
// then consecutive. Records without a Time are stamped with the store's
// clock. The head is read inside the transaction, which begins IMMEDIATE
// (holding the write lock from its first read), so the chain stays linear
// whoever else appends.
func (s *Store) AppendAuditBatch(ctx context.Context, recs []store.AuditRecord) ([]int64, error) {
	if len(recs) == 0 {
		return nil, nil
	}
	seqs, err := s.appendAudit(ctx, recs)
	if err != nil {
		return nil, fmt.Errorf("append %d audit records: %w", len(recs), err)
	}
	return seqs, nil
}

func (s *Store) appendAudit(ctx context.Context, in []store.AuditRecord) ([]int64, error) {
	recs, err := auditchain.Prepare(in, s.now())
	if err != nil {
		return nil, err
	}
	err = s.write(ctx, func(tx *sql.Tx) error { return s.chainAudit(ctx, tx, recs) })
	if err != nil {
		return nil, err
	}
	return auditchain.Seqs(recs), nil
}

// chainAudit seals recs, which auditchain.Prepare made, after the head of
// the log and inserts them, in a write transaction: it holds the write
// lock, so nobody appends between the read of the head and the commit.
func (s *Store) chainAudit(ctx context.Context, tx *sql.Tx, recs []store.AuditRecord) error {
	head, err := readAuditHead(ctx, tx)
	if err != nil {
		return err
	}
	if err := auditchain.Seal(head.seq, head.hash, recs); err != nil {
		return err
	}
	return execInsertAudit(ctx, tx.StmtContext(ctx, s.stmts.insertAudit), recs)
}

// ListAudit returns the records with Seq greater than after, oldest first, at
// most limit of them (0 = no limit).
func (s *Store) ListAudit(ctx context.Context, after int64, limit int) ([]store.AuditRecord, error) {
	recs, err := listAudit(ctx, s.rdb, after, limit)
	if err != nil {
		return nil, fmt.Errorf("list audit after %d: %w", after, err)
	}
	return recs, nil
}

func listAudit(ctx context.Context, q querier, after int64, limit int) ([]store.AuditRecord, error) {
	n, err := limitArg(limit)
	if err != nil {
		return nil, err
	}
	return scanAudit(q.QueryContext(ctx, `SELECT `+auditColumns+` FROM audit WHERE seq > ? ORDER BY seq LIMIT ?`, after, n))
}

// AuditHead returns the last record, or store.ErrNotFound for an empty log.
func (s *Store) AuditHead(ctx context.Context) (store.AuditRecord, error) {
	recs, err := scanAudit(s.rdb.QueryContext(ctx, `SELECT `+auditColumns+` FROM audit ORDER BY seq DESC LIMIT 1`))
	if err != nil {
		return store.AuditRecord{}, fmt.Errorf("read audit head: %w", err)
	}
	if len(recs) == 0 {
		return store.AuditRecord{}, fmt.Errorf("audit head: %w", store.ErrNotFound)
	}
	return recs[0], nil
}

// AuditHighWater returns the highest sequence number the log ever assigned,
// which is the last record's unless records were removed from the end. It
// is not part of store.Store: a verifier that finds it uses it as one more
// check.
func (s *Store) AuditHighWater(ctx context.Context) (int64, error) {
	h, err := readAuditHead(ctx, s.rdb)
	if err != nil {
		return 0, err
	}
	return h.seq, nil
}

// AppendAuditCheckpoint stores c; store.ErrConflict if a checkpoint at the
// same or a higher seq exists.
func (s *Store) AppendAuditCheckpoint(ctx context.Context, c store.AuditCheckpoint) error {
	err := func() error {
		timeNS, err := unixnano.Encode("time", c.Time)
		if err != nil {
			return err
		}
		return s.write(ctx, func(tx *sql.Tx) error {
			var last int64
			if err := tx.QueryRowContext(ctx, `SELECT COALESCE(MAX(seq), 0) FROM audit_checkpoints`).Scan(&last); err != nil {
				return err
			}
			if c.Seq <= last {
				return fmt.Errorf("a checkpoint at seq %d exists: %w", last, store.ErrConflict)
			}
			_, err := tx.ExecContext(ctx, `INSERT INTO audit_checkpoints (seq, hash, time_ns, key_id, signature)
				VALUES (?, ?, ?, ?, ?)`, c.Seq, c.Hash, timeNS, c.KeyID, c.Signature)
			return err
		})
	}()
	if err != nil {
		return fmt.Errorf("append audit checkpoint at %d: %w", c.Seq, err)
	}
	return nil
}

// ListAuditCheckpoints returns checkpoints with Seq greater than after,
// oldest first, at most limit (0 = no limit).
func (s *Store) ListAuditCheckpoints(ctx context.Context, after int64, limit int) ([]store.AuditCheckpoint, error) {
	cps, err := listAuditCheckpoints(ctx, s.rdb, `WHERE seq > ? ORDER BY seq LIMIT ?`, after, limit)
	if err != nil {
		return nil, fmt.Errorf("list audit checkpoints after %d: %w", after, err)
	}
	return cps, nil
}

// LastAuditCheckpoint returns the checkpoint with the highest seq, or
// store.ErrNotFound.
func (s *Store) LastAuditCheckpoint(ctx context.Context) (store.AuditCheckpoint, error) {
	cps, err := listAuditCheckpoints(ctx, s.rdb, `WHERE seq > ? ORDER BY seq DESC LIMIT ?`, 0, 1)
	if err != nil {
		return store.AuditCheckpoint{}, fmt.Errorf("read last audit checkpoint: %w", err)
	}
	if len(cps) == 0 {
		return store.AuditCheckpoint{}, fmt.Errorf("last audit checkpoint: %w", store.ErrNotFound)
	}
	return cps[0], nil
}

func listAuditCheckpoints(ctx context.Context, q querier, where string, after int64, limit int) ([]store.AuditCheckpoint, error) {
	n, err := limitArg(limit)
	if err != nil {
		return nil, err
	}
	rows, err := q.QueryContext(ctx, `SELECT seq, hash, time_ns, key_id, signature FROM audit_checkpoints `+where, after, n)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var cps []store.AuditCheckpoint
	for rows.Next() {
		var (
			c      store.AuditCheckpoint
			timeNS int64
		)
		if err := rows.Scan(&c.Seq, &c.Hash, &timeNS, &c.KeyID, &c.Signature); err != nil {
			return nil, err
		}
		c.Time = unixnano.Decode(timeNS)
		cps = append(cps, c)
	}
	return cps, rows.Err()
}

// AuditReader reads the audit log and checkpoints of a store file without
// migrating or writing it: for verifying a copy of a server's data dir
// offline. Create it with OpenAuditReader.
type AuditReader struct {
	db *sql.DB
}

// ErrNotChained: the file's schema predates the audit hash chain.
var ErrNotChained = errors.New("the audit log predates the hash chain")

// OpenAuditReader opens the store file at path for reading. The file must
// exist and have the hash chain (schema version 2 or later); Close releases
// it.
func OpenAuditReader(ctx context.Context, path string) (*AuditReader, error) {
	r, err := openAuditReader(ctx, path)
	if err != nil {
		return nil, fmt.Errorf("open audit log %s: %w", path, err)
	}
	return r, nil
}

func openAuditReader(ctx context.Context, path string) (_ *AuditReader, err error) {
	abs, err := absExisting(path)
	if err != nil {
		return nil, err
	}
	db, err := sql.Open("sqlite", dsn(abs, true))
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			err = errors.Join(err, db.Close())
		}
	}()
	var version int
	if err := db.QueryRowContext(ctx, `SELECT COALESCE(MAX(version), 0) FROM schema_version`).Scan(&version); err != nil {
		return nil, fmt.Errorf("read schema version (is this a trustmesh store?): %w", err)
	}
	if version < 2 {
		return nil, fmt.Errorf("schema version %d: %w; start a trustmesh server of this version on it once to chain the log", version, ErrNotChained)
	}
	return &AuditReader{db: db}, nil
}

// ListAudit is Store.ListAudit on the file.
func (r *AuditReader) ListAudit(ctx context.Context, after int64, limit int) ([]store.AuditRecord, error) {
	recs, err := listAudit(ctx, r.db, after, limit)
	if err != nil {
		return nil, fmt.Errorf("list audit after %d: %w", after, err)
	}
	return recs, nil
}

// ListAuditCheckpoints is Store.ListAuditCheckpoints on the file.
func (r *AuditReader) ListAuditCheckpoints(ctx context.Context, after int64, limit int) ([]store.AuditCheckpoint, error) {
	cps, err := listAuditCheckpoints(ctx, r.db, `WHERE seq > ? ORDER BY seq LIMIT ?`, after, limit)
	if err != nil {
		return nil, fmt.Errorf("list audit checkpoints after %d: %w", after, err)
	}
	return cps, nil
}

// AuditHighWater is Store.AuditHighWater on the file.
func (r *AuditReader) AuditHighWater(ctx context.Context) (int64, error) {
	h, err := readAuditHead(ctx, r.db)
	if err != nil {
		return 0, err
	}
	return h.seq, nil
}

// Close releases the file.
func (r *AuditReader) Close() error { return r.db.Close() }

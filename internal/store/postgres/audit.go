package postgres

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/trustmesh/trustmesh/internal/store"
	"github.com/trustmesh/trustmesh/internal/store/auditchain"
	"github.com/trustmesh/trustmesh/internal/store/unixnano"
)

// auditColumns are the columns scanAudit reads, in its order.
const auditColumns = `seq, time_ns, actor, action, object, revision, outcome, reason, request_id, prev_hash, hash`

// auditHeadSQL reads where the chain continues: the highest seq ever
// assigned (audit_counter, so a record removed from the end leaves a
// visible gap instead of having its seq reused) and the hash of the last
// record present.
const auditHeadSQL = `SELECT c.seq, COALESCE((SELECT hash FROM audit ORDER BY seq DESC LIMIT 1), '')
	FROM audit_counter c`

// copyThreshold is the batch size from which records are sent with COPY
// rather than one INSERT each.
const copyThreshold = 32

type auditHead struct {
	seq  int64
	hash string
}

func scanAuditHead(row pgx.Row) (auditHead, error) {
	var h auditHead
	if err := row.Scan(&h.seq, &h.hash); err != nil {
		return auditHead{}, fmt.Errorf("read audit head: %w", err)
	}
	if h.hash == "" {
		h.hash = auditchain.Genesis
	}
	return h, nil
}

// auditRow is r as the audit table's columns, in auditColumns order.
func auditRow(r store.AuditRecord) []any {
	// Times were checked against the storable range before the
	// transaction began.
	return []any{r.Seq, r.Time.UnixNano(), []byte(r.Actor), []byte(r.Action), []byte(r.Object), r.Revision,
		[]byte(r.Outcome), []byte(r.Reason), []byte(r.RequestID), r.PrevHash, r.Hash}
}

var auditColumnNames = []string{"seq", "time_ns", "actor", "action", "object", "revision", "outcome", "reason", "request_id", "prev_hash", "hash"}

func scanAudit(rows pgx.Rows, err error) ([]store.AuditRecord, error) {
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var (
		recs                                              []store.AuditRecord
		actor, action, object, outcome, reason, requestID []byte
	)
	for rows.Next() {
		var (
			r      store.AuditRecord
			timeNS int64
		)
		if err := rows.Scan(&r.Seq, &timeNS, &actor, &action, &object, &r.Revision,
			&outcome, &reason, &requestID, &r.PrevHash, &r.Hash); err != nil {
			return nil, err
		}
		r.Time = unixnano.Decode(timeNS)
		r.Actor, r.Action, r.Object = string(actor), string(action), string(object)
		r.Outcome, r.Reason, r.RequestID = string(outcome), string(reason), string(requestID)
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
// clock. The transaction takes the log's advisory lock before it reads the
// head, so the chain stays linear whichever server appends.
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
	var h auditHead
	err = s.writeTx(ctx, queueAuditHead, func(br pgx.BatchResults) error {
		var err error
		h, err = readAuditHead(br)
		return err
	}, func(conn *pgx.Conn) (*pgx.Batch, error) {
		var b pgx.Batch
		if err := queueAudit(ctx, conn, &b, h, recs); err != nil {
			return nil, err
		}
		return &b, nil
	})
	if err != nil {
		return nil, err
	}
	return auditchain.Seqs(recs), nil
}

// queueAuditHead queues the statements that take the log's advisory lock,
// for the rest of the transaction, and then read its head; readAuditHead
// reads their results. Under READ COMMITTED the read sees every append
// committed before the lock was granted.
func queueAuditHead(b *pgx.Batch) {
	b.Queue(`SELECT pg_advisory_xact_lock($1)`, auditLock)
	b.Queue(auditHeadSQL)
}

func readAuditHead(br pgx.BatchResults) (auditHead, error) {
	if _, err := br.Exec(); err != nil {
		return auditHead{}, fmt.Errorf("lock the audit log: %w", err)
	}
	return scanAuditHead(br.QueryRow())
}

// queueAudit seals recs, which auditchain.Prepare made, after h and queues
// their inserts and the counter's advance on b, which commits them; a large
// batch is sent at once with COPY on conn instead of queued.
func queueAudit(ctx context.Context, conn *pgx.Conn, b *pgx.Batch, h auditHead, recs []store.AuditRecord) error {
	if err := auditchain.Seal(h.seq, h.hash, recs); err != nil {
		return err
	}
	last := recs[len(recs)-1].Seq
	if len(recs) >= copyThreshold {
		rows := make([][]any, len(recs))
		for i, r := range recs {
			rows[i] = auditRow(r)
		}
		if _, err := conn.CopyFrom(ctx, pgx.Identifier{"audit"}, auditColumnNames, pgx.CopyFromRows(rows)); err != nil {
			return fmt.Errorf("insert records %d to %d: %w", recs[0].Seq, last, err)
		}
	} else {
		for _, r := range recs {
			b.Queue(`INSERT INTO audit (`+auditColumns+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)`, auditRow(r)...)
		}
	}
	b.Queue(`UPDATE audit_counter SET seq = $1`, last)
	return nil
}

// ListAudit returns the records with Seq greater than after, oldest first, at
// most limit of them (0 = no limit).
func (s *Store) ListAudit(ctx context.Context, after int64, limit int) ([]store.AuditRecord, error) {
	recs, err := func() ([]store.AuditRecord, error) {
		n, err := limitArg(limit)
		if err != nil {
			return nil, err
		}
		return scanAudit(s.pool.Query(ctx, `SELECT `+auditColumns+` FROM audit WHERE seq > $1 ORDER BY seq LIMIT $2`, after, n))
	}()
	if err != nil {
		return nil, fmt.Errorf("list audit after %d: %w", after, err)
	}
	return recs, nil
}

// AuditHead returns the last record, or store.ErrNotFound for an empty log.
func (s *Store) AuditHead(ctx context.Context) (store.AuditRecord, error) {
	recs, err := scanAudit(s.pool.Query(ctx, `SELECT `+auditColumns+` FROM audit ORDER BY seq DESC LIMIT 1`))
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
	var seq int64
	if err := s.pool.QueryRow(ctx, `SELECT seq FROM audit_counter`).Scan(&seq); err != nil {
		return 0, fmt.Errorf("read audit high-water mark: %w", err)
	}
	return seq, nil
}

// AppendAuditCheckpoint stores c; store.ErrConflict if a checkpoint at the
// same or a higher seq exists. The check and the insert run under an
// advisory lock, so two servers cannot both append out of order.
func (s *Store) AppendAuditCheckpoint(ctx context.Context, c store.AuditCheckpoint) error {
	err := func() error {
		timeNS, err := unixnano.Encode("time", c.Time)
		if err != nil {
			return err
		}
		var (
			b        pgx.Batch
			last     int64
			inserted bool
		)
		// One batch is one implicit transaction: the lock is held until
		// the insert commits.
		b.Queue(`SELECT pg_advisory_xact_lock($1)`, checkpointLock)
		b.Queue(`WITH last AS (SELECT COALESCE(MAX(seq), 0) AS seq FROM audit_checkpoints),
			ins AS (
				INSERT INTO audit_checkpoints (seq, hash, time_ns, key_id, signature)
				SELECT $1::bigint, $2::text, $3::bigint, $4::text, $5::bytea FROM last WHERE last.seq < $1::bigint
				RETURNING seq
			)
			SELECT last.seq, EXISTS (SELECT 1 FROM ins) FROM last`,
			c.Seq, c.Hash, timeNS, c.KeyID, notNil(c.Signature)).
			QueryRow(func(row pgx.Row) error { return row.Scan(&last, &inserted) })
		if err := sendBatch(ctx, s.pool, &b); err != nil {
			return err
		}
		if !inserted {
			return fmt.Errorf("a checkpoint at seq %d exists: %w", last, store.ErrConflict)
		}
		return nil
	}()
	if err != nil {
		return fmt.Errorf("append audit checkpoint at %d: %w", c.Seq, err)
	}
	return nil
}

// ListAuditCheckpoints returns checkpoints with Seq greater than after,
// oldest first, at most limit (0 = no limit).
func (s *Store) ListAuditCheckpoints(ctx context.Context, after int64, limit int) ([]store.AuditCheckpoint, error) {
	cps, err := s.listAuditCheckpoints(ctx, `WHERE seq > $1 ORDER BY seq LIMIT $2`, after, limit)
	if err != nil {
		return nil, fmt.Errorf("list audit checkpoints after %d: %w", after, err)
	}
	return cps, nil
}

// LastAuditCheckpoint returns the checkpoint with the highest seq, or
// store.ErrNotFound.
func (s *Store) LastAuditCheckpoint(ctx context.Context) (store.AuditCheckpoint, error) {
	cps, err := s.listAuditCheckpoints(ctx, `WHERE seq > $1 ORDER BY seq DESC LIMIT $2`, 0, 1)
	if err != nil {
		return store.AuditCheckpoint{}, fmt.Errorf("read last audit checkpoint: %w", err)
	}
	if len(cps) == 0 {
		return store.AuditCheckpoint{}, fmt.Errorf("last audit checkpoint: %w", store.ErrNotFound)
	}
	return cps[0], nil
}

func (s *Store) listAuditCheckpoints(ctx context.Context, where string, after int64, limit int) ([]store.AuditCheckpoint, error) {
	n, err := limitArg(limit)
	if err != nil {
		return nil, err
	}
	rows, err := s.pool.Query(ctx, `SELECT seq, hash, time_ns, key_id, signature FROM audit_checkpoints `+where, after, n)
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

package postgres

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/trustmesh/trustmesh/internal/store"
	"github.com/trustmesh/trustmesh/internal/store/unixnano"
)

const insertIssuedSQL = `INSERT INTO issued
	(serial, spiffe_id, kind, node, authority, not_before_ns, not_after_ns)
	VALUES ($1, $2, $3, $4, $5, $6, $7)`

// RecordIssued stores a batch of issued credentials in one transaction: all
// of them or none.
func (s *Store) RecordIssued(ctx context.Context, issued []store.Issued) error {
	if len(issued) == 0 {
		return nil
	}
	err := func() error {
		var b pgx.Batch
		for i, is := range issued {
			notBefore, err := unixnano.EncodeNull("not before", is.NotBefore)
			if err != nil {
				return fmt.Errorf("record %d (%s): %w", i, is.SPIFFEID, err)
			}
			notAfter, err := unixnano.EncodeNull("not after", is.NotAfter)
			if err != nil {
				return fmt.Errorf("record %d (%s): %w", i, is.SPIFFEID, err)
			}
			b.Queue(insertIssuedSQL, is.Serial, is.SPIFFEID, is.Kind, is.Node, is.Authority, notBefore, notAfter)
		}
		// One batch is one implicit transaction: a failed insert rolls
		// back the others.
		return sendBatch(ctx, s.pool, &b)
	}()
	if err != nil {
		return fmt.Errorf("record %d issued credentials: %w", len(issued), err)
	}
	return nil
}

// ListIssued returns the issued records of spiffeID ("" = all), most recently
// recorded first, at most limit of them (0 = no limit).
func (s *Store) ListIssued(ctx context.Context, spiffeID string, limit int) ([]store.Issued, error) {
	recs, err := func() ([]store.Issued, error) {
		n, err := limitArg(limit)
		if err != nil {
			return nil, err
		}
		query := `SELECT serial, spiffe_id, kind, node, authority, not_before_ns, not_after_ns FROM issued`
		args := []any{n}
		if spiffeID != "" {
			query += ` WHERE spiffe_id = $2`
			args = append(args, spiffeID)
		}
		query += ` ORDER BY id DESC LIMIT $1`

		rows, err := s.pool.Query(ctx, query, args...)
		if err != nil {
			return nil, err
		}
		defer rows.Close()
		var recs []store.Issued
		for rows.Next() {
			var (
				is                  store.Issued
				notBefore, notAfter *int64
			)
			if err := rows.Scan(&is.Serial, &is.SPIFFEID, &is.Kind, &is.Node, &is.Authority, &notBefore, &notAfter); err != nil {
				return nil, err
			}
			is.NotBefore, is.NotAfter = unixnano.DecodeNull(notBefore), unixnano.DecodeNull(notAfter)
			recs = append(recs, is)
		}
		return recs, rows.Err()
	}()
	if err != nil {
		return nil, fmt.Errorf("list issued for %q: %w", spiffeID, err)
	}
	return recs, nil
}

// AddRevocation stores a revocation of exactly one of a serial or a SPIFFE
// ID, and signals subscribers, here and on every server, once it is
// committed.
func (s *Store) AddRevocation(ctx context.Context, r store.Revocation) error {
	err := func() error {
		if (r.Serial == "") == (r.SPIFFEID == "") {
			return errors.New("exactly one of serial and SPIFFE ID must be set")
		}
		revokedAt, err := unixnano.Encode("revoked at", r.RevokedAt)
		if err != nil {
			return err
		}
		var b pgx.Batch
		b.Queue(`INSERT INTO revocations (serial, spiffe_id, revoked_at_ns, reason, actor)
			VALUES ($1, $2, $3, $4, $5)`,
			r.Serial, r.SPIFFEID, revokedAt, r.Reason, r.Actor)
		s.queueNotify(&b, store.TopicObjects)
		return sendBatch(ctx, s.pool, &b)
	}()
	if err != nil {
		return fmt.Errorf("add revocation of %q: %w", r.Serial+r.SPIFFEID, err)
	}
	s.subs.Notify(store.TopicObjects)
	return nil
}

// ListRevocations returns every revocation in the order they were added.
func (s *Store) ListRevocations(ctx context.Context) ([]store.Revocation, error) {
	revs, err := func() ([]store.Revocation, error) {
		rows, err := s.pool.Query(ctx, `SELECT serial, spiffe_id, revoked_at_ns, reason, actor
			FROM revocations ORDER BY id`)
		if err != nil {
			return nil, err
		}
		defer rows.Close()
		var revs []store.Revocation
		for rows.Next() {
			var (
				r         store.Revocation
				revokedAt int64
			)
			if err := rows.Scan(&r.Serial, &r.SPIFFEID, &revokedAt, &r.Reason, &r.Actor); err != nil {
				return nil, err
			}
			r.RevokedAt = unixnano.Decode(revokedAt)
			revs = append(revs, r)
		}
		return revs, rows.Err()
	}()
	if err != nil {
		return nil, fmt.Errorf("list revocations: %w", err)
	}
	return revs, nil
}

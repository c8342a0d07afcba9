package postgres

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/trustmesh/trustmesh/internal/store"
	"github.com/trustmesh/trustmesh/internal/store/unixnano"
)

// Blob writes are single statements: PostgreSQL locks the row and re-checks
// the version condition for every concurrent writer, so compare-and-swap
// needs no explicit lock. Each write notifies in the same statement, so only
// a write that happened is announced. $1 is the name, $2 the data, $3 the
// time, $4 and $5 the notification, $6 the expected version.
const (
	putBlobAnySQL = `WITH w AS (
		INSERT INTO blobs (name, data, version, updated_ns) VALUES ($1, $2, 1, $3)
		ON CONFLICT (name) DO UPDATE SET
			data = excluded.data, version = blobs.version + 1, updated_ns = excluded.updated_ns
		RETURNING version)
		SELECT w.version, pg_notify($4, $5) FROM w`
	putBlobNewSQL = `WITH w AS (
		INSERT INTO blobs (name, data, version, updated_ns) VALUES ($1, $2, 1, $3)
		ON CONFLICT (name) DO NOTHING
		RETURNING version)
		SELECT w.version, pg_notify($4, $5) FROM w`
	putBlobCASSQL = `WITH w AS (
		UPDATE blobs SET data = $2, version = version + 1, updated_ns = $3
		WHERE name = $1 AND version = $6
		RETURNING version)
		SELECT w.version, pg_notify($4, $5) FROM w`
	deleteBlobSQL = `WITH w AS (
		DELETE FROM blobs WHERE name = $1 AND ($4::bigint = -1 OR version = $4::bigint)
		RETURNING version)
		SELECT w.version, pg_notify($2, $3) FROM w`
)

// blobVersion returns a blob's version, 0 if it does not exist: to explain a
// failed compare-and-swap.
func (s *Store) blobVersion(ctx context.Context, name string) (int64, error) {
	var v int64
	err := s.pool.QueryRow(ctx, `SELECT version FROM blobs WHERE name = $1`, name).Scan(&v)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, nil
	}
	return v, err
}

// GetBlob returns the blob called name, or store.ErrNotFound.
func (s *Store) GetBlob(ctx context.Context, name string) (store.Blob, error) {
	b := store.Blob{Name: name}
	var updated int64
	err := s.pool.QueryRow(ctx, `SELECT data, version, updated_ns FROM blobs WHERE name = $1`, name).
		Scan(&b.Data, &b.Version, &updated)
	if errors.Is(err, pgx.ErrNoRows) {
		err = store.ErrNotFound
	}
	if err != nil {
		return store.Blob{}, fmt.Errorf("get blob %q: %w", name, err)
	}
	b.Updated = unixnano.Decode(updated)
	return b, nil
}

// ListBlobs returns the blobs whose name starts with prefix, in byte order of
// name. The prefix is compared as bytes (so '%' and '_' are literal, and a
// prefix may end inside a multi-byte character).
func (s *Store) ListBlobs(ctx context.Context, prefix string) ([]store.Blob, error) {
	blobs, err := func() ([]store.Blob, error) {
		rows, err := s.pool.Query(ctx, `SELECT name, data, version, updated_ns FROM blobs
			WHERE substring(convert_to(name, 'UTF8') FROM 1 FOR $1) = $2
			ORDER BY name`, len(prefix), []byte(prefix))
		if err != nil {
			return nil, err
		}
		defer rows.Close()
		var blobs []store.Blob
		for rows.Next() {
			var (
				b       store.Blob
				updated int64
			)
			if err := rows.Scan(&b.Name, &b.Data, &b.Version, &updated); err != nil {
				return nil, err
			}
			b.Updated = unixnano.Decode(updated)
			blobs = append(blobs, b)
		}
		return blobs, rows.Err()
	}()
	if err != nil {
		return nil, fmt.Errorf("list blobs with prefix %q: %w", prefix, err)
	}
	return blobs, nil
}

// PutBlob writes data as the blob called name if its version is
// expectVersion (store.MustNotExist for a new blob, store.AnyRevision for
// any), and returns the version written: 1 for a new blob, then one more.
func (s *Store) PutBlob(ctx context.Context, name string, data []byte, expectVersion int64) (int64, error) {
	version, err := func() (int64, error) {
		if name == "" {
			return 0, errors.New("blob name is empty")
		}
		if err := store.ValidateExpectVersion(expectVersion); err != nil {
			return 0, err
		}
		updated, err := unixnano.Encode("time", s.now())
		if err != nil {
			return 0, err
		}
		args := []any{name, notNil(bytes.Clone(data)), updated, notifyChannel, s.payload(store.TopicBlobs)}
		query := putBlobAnySQL
		switch {
		case expectVersion == store.MustNotExist:
			query = putBlobNewSQL
		case expectVersion > 0:
			query = putBlobCASSQL
			args = append(args, expectVersion)
		}
		var version int64
		err = s.pool.QueryRow(ctx, query, args...).Scan(&version, nil)
		if !errors.Is(err, pgx.ErrNoRows) {
			return version, err
		}
		cur, err := s.blobVersion(ctx, name)
		switch {
		case err != nil:
			return 0, fmt.Errorf("%w (and reading the version failed: %w)", store.ErrConflict, err)
		case expectVersion == store.MustNotExist:
			return 0, fmt.Errorf("exists at version %d: %w", cur, store.ErrConflict)
		case cur == 0:
			return 0, fmt.Errorf("expected version %d, blob does not exist: %w", expectVersion, store.ErrConflict)
		default:
			return 0, fmt.Errorf("expected version %d, version is %d: %w", expectVersion, cur, store.ErrConflict)
		}
	}()
	if err != nil {
		return 0, fmt.Errorf("put blob %q: %w", name, err)
	}
	s.subs.Notify(store.TopicBlobs)
	return version, nil
}

// DeleteBlob removes the blob called name if its version is expectVersion
// (or store.AnyRevision): store.ErrNotFound if it does not exist,
// store.ErrConflict if its version differs.
func (s *Store) DeleteBlob(ctx context.Context, name string, expectVersion int64) error {
	err := func() error {
		if err := store.ValidateExpectVersion(expectVersion); err != nil {
			return err
		}
		err := s.pool.QueryRow(ctx, deleteBlobSQL, name, notifyChannel, s.payload(store.TopicBlobs), expectVersion).
			Scan(nil, nil)
		if !errors.Is(err, pgx.ErrNoRows) {
			return err
		}
		cur, err := s.blobVersion(ctx, name)
		switch {
		case err != nil:
			return fmt.Errorf("read version: %w", err)
		case cur == 0:
			return store.ErrNotFound
		default:
			return fmt.Errorf("expected version %d, version is %d: %w", expectVersion, cur, store.ErrConflict)
		}
	}()
	if err != nil {
		return fmt.Errorf("delete blob %q: %w", name, err)
	}
	s.subs.Notify(store.TopicBlobs)
	return nil
}

// PutPresence creates or replaces p.Replica's presence.
func (s *Store) PutPresence(ctx context.Context, p store.Presence) error {
	err := func() error {
		if p.Replica == "" {
			return errors.New("replica is empty")
		}
		expires, err := unixnano.Encode("expires at", p.ExpiresAt)
		if err != nil {
			return err
		}
		var b pgx.Batch
		b.Queue(`INSERT INTO presence (replica, data, expires_at_ns) VALUES ($1, $2, $3)
			ON CONFLICT (replica) DO UPDATE SET
				data = excluded.data, expires_at_ns = excluded.expires_at_ns`,
			p.Replica, notNil(bytes.Clone(p.Data)), expires)
		s.queueNotify(&b, store.TopicPresence)
		return sendBatch(ctx, s.pool, &b)
	}()
	if err != nil {
		return fmt.Errorf("put presence of %q: %w", p.Replica, err)
	}
	s.subs.Notify(store.TopicPresence)
	return nil
}

// ListPresence returns the presences that have not expired at now (a
// presence is expired from its ExpiresAt on), ordered by replica in byte
// order.
func (s *Store) ListPresence(ctx context.Context, now time.Time) ([]store.Presence, error) {
	ps, err := func() ([]store.Presence, error) {
		at, err := unixnano.Encode("now", now)
		if err != nil {
			return nil, err
		}
		rows, err := s.pool.Query(ctx, `SELECT replica, data, expires_at_ns FROM presence
			WHERE expires_at_ns > $1 ORDER BY replica`, at)
		if err != nil {
			return nil, err
		}
		defer rows.Close()
		var ps []store.Presence
		for rows.Next() {
			var (
				p       store.Presence
				expires int64
			)
			if err := rows.Scan(&p.Replica, &p.Data, &expires); err != nil {
				return nil, err
			}
			p.ExpiresAt = unixnano.Decode(expires)
			ps = append(ps, p)
		}
		return ps, rows.Err()
	}()
	if err != nil {
		return nil, fmt.Errorf("list presence: %w", err)
	}
	return ps, nil
}

// DeletePresence removes replica's presence; no error if there is none.
func (s *Store) DeletePresence(ctx context.Context, replica string) error {
	err := s.pool.QueryRow(ctx, `WITH w AS (DELETE FROM presence WHERE replica = $1 RETURNING 1)
		SELECT pg_notify($2, $3) FROM w`, replica, notifyChannel, s.payload(store.TopicPresence)).Scan(nil)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return nil // there was none: nothing changed
	case err != nil:
		return fmt.Errorf("delete presence of %q: %w", replica, err)
	}
	s.subs.Notify(store.TopicPresence)
	return nil
}

// PrunePresence removes the presences that expired before before.
func (s *Store) PrunePresence(ctx context.Context, before time.Time) (int, error) {
	ns, err := unixnano.Encode("before", before)
	if err != nil {
		return 0, fmt.Errorf("prune presence: %w", err)
	}
	var n int
	err = s.pool.QueryRow(ctx, `WITH w AS (DELETE FROM presence WHERE expires_at_ns < $1 RETURNING 1),
		c AS (SELECT count(*) AS n FROM w)
		SELECT n, CASE WHEN n > 0 THEN pg_notify($2, $3) END FROM c`, ns, notifyChannel, s.payload(store.TopicPresence)).Scan(&n, nil)
	if err != nil {
		return 0, fmt.Errorf("prune presence: %w", err)
	}
	if n > 0 {
		s.subs.Notify(store.TopicPresence)
	}
	return n, nil
}

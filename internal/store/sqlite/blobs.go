package sqlite

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/trustmesh/trustmesh/internal/store"
	"github.com/trustmesh/trustmesh/internal/store/unixnano"
)

// blobVersion returns the version of a blob inside a write transaction, 0 if
// it does not exist.
func blobVersion(ctx context.Context, tx *sql.Tx, name string) (int64, error) {
	var v int64
	err := tx.QueryRowContext(ctx, `SELECT version FROM blobs WHERE name = ?`, name).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("read version: %w", err)
	}
	return v, nil
}

// GetBlob returns the blob called name, or store.ErrNotFound.
func (s *Store) GetBlob(ctx context.Context, name string) (store.Blob, error) {
	b := store.Blob{Name: name}
	var updated int64
	err := s.rdb.QueryRowContext(ctx, `SELECT data, version, updated_ns FROM blobs WHERE name = ?`, name).
		Scan(&b.Data, &b.Version, &updated)
	if errors.Is(err, sql.ErrNoRows) {
		err = store.ErrNotFound
	}
	if err != nil {
		return store.Blob{}, fmt.Errorf("get blob %q: %w", name, err)
	}
	b.Updated = unixnano.Decode(updated)
	return b, nil
}

// ListBlobs returns the blobs whose name starts with prefix, in byte order of
// name. The prefix is matched on bytes, not with LIKE, so '%' and '_' in it
// are literal.
func (s *Store) ListBlobs(ctx context.Context, prefix string) ([]store.Blob, error) {
	blobs, err := func() ([]store.Blob, error) {
		// substr counts bytes on a BLOB (characters on TEXT), and BINARY
		// collation orders names by memcmp.
		rows, err := s.rdb.QueryContext(ctx, `SELECT name, data, version, updated_ns FROM blobs
			WHERE substr(CAST(name AS BLOB), 1, ?) = CAST(? AS BLOB)
			ORDER BY name`, len(prefix), prefix)
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
	var version int64
	err := func() error {
		if name == "" {
			return errors.New("blob name is empty")
		}
		if err := store.ValidateExpectVersion(expectVersion); err != nil {
			return err
		}
		data = bytes.Clone(data)
		if data == nil {
			data = []byte{} // the column is NOT NULL; nil would bind as NULL
		}
		return s.write(ctx, func(tx *sql.Tx) error {
			cur, err := blobVersion(ctx, tx, name)
			if err != nil {
				return err
			}
			switch {
			case expectVersion == store.AnyRevision:
			case expectVersion == store.MustNotExist && cur != 0:
				return fmt.Errorf("exists at version %d: %w", cur, store.ErrConflict)
			case expectVersion > 0 && cur == 0:
				return fmt.Errorf("expected version %d, blob does not exist: %w", expectVersion, store.ErrConflict)
			case expectVersion > 0 && cur != expectVersion:
				return fmt.Errorf("expected version %d, version is %d: %w", expectVersion, cur, store.ErrConflict)
			}
			updated, err := unixnano.Encode("time", s.now())
			if err != nil {
				return err
			}
			version = cur + 1
			_, err = tx.ExecContext(ctx, `INSERT INTO blobs (name, data, version, updated_ns)
				VALUES (?, ?, ?, ?)
				ON CONFLICT (name) DO UPDATE SET
					data = excluded.data, version = excluded.version, updated_ns = excluded.updated_ns`,
				name, data, version, updated)
			return err
		})
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
		return s.write(ctx, func(tx *sql.Tx) error {
			cur, err := blobVersion(ctx, tx, name)
			if err != nil {
				return err
			}
			if cur == 0 {
				return store.ErrNotFound
			}
			if expectVersion != store.AnyRevision && expectVersion != cur {
				return fmt.Errorf("expected version %d, version is %d: %w", expectVersion, cur, store.ErrConflict)
			}
			_, err = tx.ExecContext(ctx, `DELETE FROM blobs WHERE name = ?`, name)
			return err
		})
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
		data := bytes.Clone(p.Data)
		if data == nil {
			data = []byte{}
		}
		_, err = s.wdb.ExecContext(ctx, `INSERT INTO presence (replica, data, expires_at_ns)
			VALUES (?, ?, ?)
			ON CONFLICT (replica) DO UPDATE SET
				data = excluded.data, expires_at_ns = excluded.expires_at_ns`,
			p.Replica, data, expires)
		return err
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
		rows, err := s.rdb.QueryContext(ctx, `SELECT replica, data, expires_at_ns FROM presence
			WHERE expires_at_ns > ? ORDER BY replica`, at)
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
	res, err := s.wdb.ExecContext(ctx, `DELETE FROM presence WHERE replica = ?`, replica)
	if err != nil {
		return fmt.Errorf("delete presence of %q: %w", replica, err)
	}
	if n, err := res.RowsAffected(); err == nil && n > 0 {
		s.subs.Notify(store.TopicPresence)
	}
	return nil
}

// PrunePresence removes the presences that expired before before.
func (s *Store) PrunePresence(ctx context.Context, before time.Time) (int, error) {
	ns, err := unixnano.Encode("before", before)
	if err != nil {
		return 0, fmt.Errorf("prune presence: %w", err)
	}
	res, err := s.wdb.ExecContext(ctx, `DELETE FROM presence WHERE expires_at_ns < ?`, ns)
	if err != nil {
		return 0, fmt.Errorf("prune presence: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, fmt.Errorf("prune presence: %w", err)
	}
	if n > 0 {
		s.subs.Notify(store.TopicPresence)
	}
	return int(n), nil
}

package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/trustmesh/trustmesh/internal/store"
	"github.com/trustmesh/trustmesh/internal/store/unixnano"
)

// CreateJoinToken stores a new token. The hash must be a lowercase hex
// SHA-256, ExpiresAt must be set, and the hash must not be stored already.
func (s *Store) CreateJoinToken(ctx context.Context, t store.JoinToken) error {
	err := func() error {
		if err := store.ValidateTokenHash(t.Hash); err != nil {
			return err
		}
		created, err := unixnano.EncodeNull("created at", t.CreatedAt)
		if err != nil {
			return err
		}
		expires, err := unixnano.Encode("expires at", t.ExpiresAt)
		if err != nil {
			return err
		}
		used, err := unixnano.EncodeNull("used at", t.UsedAt)
		if err != nil {
			return err
		}
		res, err := s.wdb.ExecContext(ctx, `INSERT INTO join_tokens
			(hash, node, created_at_ns, expires_at_ns, created_by, used_at_ns)
			VALUES (?, ?, ?, ?, ?, ?)
			ON CONFLICT (hash) DO NOTHING`,
			t.Hash, t.Node, created, expires, t.CreatedBy, used)
		if err != nil {
			return err
		}
		n, err := res.RowsAffected()
		if err != nil {
			return err
		}
		if n == 0 {
			return errors.New("a token with this hash exists")
		}
		return nil
	}()
	if err != nil {
		return fmt.Errorf("create join token for node %q: %w", t.Node, err)
	}
	return nil
}

// UseJoinToken consumes the token with the given hash at now. A token is
// expired from its ExpiresAt on (like a JWT exp), and an expired token is
// never consumed. The check and the consumption are one IMMEDIATE
// transaction, so of many concurrent callers exactly one succeeds.
func (s *Store) UseJoinToken(ctx context.Context, hash string, now time.Time) (store.JoinToken, error) {
	var t store.JoinToken
	err := func() error {
		usedAt, err := unixnano.Encode("now", now)
		if err != nil {
			return err
		}
		return s.write(ctx, func(tx *sql.Tx) error {
			var created, expires, used *int64
			err := tx.QueryRowContext(ctx, `SELECT hash, node, created_at_ns, expires_at_ns, created_by, used_at_ns
				FROM join_tokens WHERE hash = ?`, hash).
				Scan(&t.Hash, &t.Node, &created, &expires, &t.CreatedBy, &used)
			if errors.Is(err, sql.ErrNoRows) {
				return store.ErrNotFound
			}
			if err != nil {
				return err
			}
			t.CreatedAt, t.ExpiresAt, t.UsedAt = unixnano.DecodeNull(created), unixnano.DecodeNull(expires), unixnano.DecodeNull(used)
			if used != nil {
				return store.ErrTokenUsed
			}
			if !now.Before(t.ExpiresAt) {
				return store.ErrTokenExpired
			}
			// The used_at_ns guard is redundant under the write lock, and
			// kept so that the update alone can never consume a token twice.
			res, err := tx.ExecContext(ctx, `UPDATE join_tokens SET used_at_ns = ?
				WHERE hash = ? AND used_at_ns IS NULL`, usedAt, hash)
			if err != nil {
				return err
			}
			n, err := res.RowsAffected()
			if err != nil {
				return err
			}
			if n != 1 {
				return store.ErrTokenUsed
			}
			t.UsedAt = unixnano.Decode(usedAt)
			return nil
		})
	}()
	if err != nil {
		return store.JoinToken{}, fmt.Errorf("use join token: %w", err)
	}
	return t, nil
}

// PutNode creates or replaces the node record named n.Name.
func (s *Store) PutNode(ctx context.Context, n store.Node) error {
	err := func() error {
		if n.Name == "" {
			return errors.New("node name is empty")
		}
		attested, err := unixnano.EncodeNull("attested at", n.AttestedAt)
		if err != nil {
			return err
		}
		expires, err := unixnano.EncodeNull("expires at", n.ExpiresAt)
		if err != nil {
			return err
		}
		_, err = s.wdb.ExecContext(ctx, `INSERT INTO nodes
			(name, spiffe_id, attested_at_ns, serial, expires_at_ns)
			VALUES (?, ?, ?, ?, ?)
			ON CONFLICT (name) DO UPDATE SET
				spiffe_id = excluded.spiffe_id,
				attested_at_ns = excluded.attested_at_ns,
				serial = excluded.serial,
				expires_at_ns = excluded.expires_at_ns`,
			n.Name, n.SPIFFEID, attested, n.Serial, expires)
		return err
	}()
	if err != nil {
		return fmt.Errorf("put node %q: %w", n.Name, err)
	}
	return nil
}

const nodeColumns = `name, spiffe_id, attested_at_ns, serial, expires_at_ns`

func scanNode(sc scanner) (store.Node, error) {
	var (
		n                 store.Node
		attested, expires *int64
	)
	if err := sc.Scan(&n.Name, &n.SPIFFEID, &attested, &n.Serial, &expires); err != nil {
		return store.Node{}, err
	}
	n.AttestedAt, n.ExpiresAt = unixnano.DecodeNull(attested), unixnano.DecodeNull(expires)
	return n, nil
}

// GetNode returns the node called name, or store.ErrNotFound.
func (s *Store) GetNode(ctx context.Context, name string) (store.Node, error) {
	n, err := scanNode(s.rdb.QueryRowContext(ctx, `SELECT `+nodeColumns+` FROM nodes WHERE name = ?`, name))
	if errors.Is(err, sql.ErrNoRows) {
		err = store.ErrNotFound
	}
	if err != nil {
		return store.Node{}, fmt.Errorf("get node %q: %w", name, err)
	}
	return n, nil
}

// ListNodes returns every node ordered by name (byte order).
func (s *Store) ListNodes(ctx context.Context) ([]store.Node, error) {
	nodes, err := func() ([]store.Node, error) {
		rows, err := s.rdb.QueryContext(ctx, `SELECT `+nodeColumns+` FROM nodes ORDER BY name`)
		if err != nil {
			return nil, err
		}
		defer rows.Close()
		var nodes []store.Node
		for rows.Next() {
			n, err := scanNode(rows)
			if err != nil {
				return nil, err
			}
			nodes = append(nodes, n)
		}
		return nodes, rows.Err()
	}()
	if err != nil {
		return nil, fmt.Errorf("list nodes: %w", err)
	}
	return nodes, nil
}

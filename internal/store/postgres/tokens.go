package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

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
		tag, err := s.pool.Exec(ctx, `INSERT INTO join_tokens
			(hash, node, created_at_ns, expires_at_ns, created_by, used_at_ns)
			VALUES ($1, $2, $3, $4, $5, $6)
			ON CONFLICT (hash) DO NOTHING`,
			t.Hash, t.Node, created, expires, t.CreatedBy, used)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return errors.New("a token with this hash exists")
		}
		return nil
	}()
	if err != nil {
		return fmt.Errorf("create join token for node %q: %w", t.Node, err)
	}
	return nil
}

// tokenColumns are the columns scanToken reads (the token's hash, not a
// secret).
const tokenColumns = `hash, node, created_at_ns, expires_at_ns, created_by, used_at_ns` //nolint:gosec // column names, not credentials

func scanToken(sc scanner) (store.JoinToken, error) {
	var (
		t                      store.JoinToken
		created, expires, used *int64
	)
	if err := sc.Scan(&t.Hash, &t.Node, &created, &expires, &t.CreatedBy, &used); err != nil {
		return store.JoinToken{}, err
	}
	t.CreatedAt, t.ExpiresAt, t.UsedAt = unixnano.DecodeNull(created), unixnano.DecodeNull(expires), unixnano.DecodeNull(used)
	return t, nil
}

// UseJoinToken consumes the token with the given hash at now. A token is
// expired from its ExpiresAt on (like a JWT exp), and an expired token is
// never consumed. The consumption is one conditional UPDATE: PostgreSQL
// locks the row and re-checks the condition for every concurrent caller, so
// exactly one succeeds, whichever server it runs on.
func (s *Store) UseJoinToken(ctx context.Context, hash string, now time.Time) (store.JoinToken, error) {
	t, err := func() (store.JoinToken, error) {
		usedAt, err := unixnano.Encode("now", now)
		if err != nil {
			return store.JoinToken{}, err
		}
		t, err := scanToken(s.pool.QueryRow(ctx, `UPDATE join_tokens SET used_at_ns = $1
			WHERE hash = $2 AND used_at_ns IS NULL AND expires_at_ns > $1
			RETURNING `+tokenColumns, usedAt, hash))
		if err == nil {
			return t, nil
		}
		if !errors.Is(err, pgx.ErrNoRows) {
			return store.JoinToken{}, err
		}
		// Not consumed: say why. A token only ever goes from unused to
		// used, so this read cannot contradict the update.
		t, err = scanToken(s.pool.QueryRow(ctx, `SELECT `+tokenColumns+` FROM join_tokens WHERE hash = $1`, hash))
		switch {
		case errors.Is(err, pgx.ErrNoRows):
			return store.JoinToken{}, store.ErrNotFound
		case err != nil:
			return store.JoinToken{}, err
		case !t.UsedAt.IsZero():
			return store.JoinToken{}, store.ErrTokenUsed
		default:
			return store.JoinToken{}, store.ErrTokenExpired
		}
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
		_, err = s.pool.Exec(ctx, `INSERT INTO nodes
			(name, spiffe_id, attested_at_ns, serial, expires_at_ns)
			VALUES ($1, $2, $3, $4, $5)
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
	n, err := scanNode(s.pool.QueryRow(ctx, `SELECT `+nodeColumns+` FROM nodes WHERE name = $1`, name))
	if errors.Is(err, pgx.ErrNoRows) {
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
		rows, err := s.pool.Query(ctx, `SELECT `+nodeColumns+` FROM nodes ORDER BY name`)
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

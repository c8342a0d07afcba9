package sqlite

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"

	"github.com/trustmesh/trustmesh/internal/store"
	"github.com/trustmesh/trustmesh/internal/store/auditchain"
	"github.com/trustmesh/trustmesh/internal/store/unixnano"
)

// objectColumns are the columns scanObject reads, from object_revisions as r.
const objectColumns = `r.revision, r.kind, r.namespace, r.name, r.create_revision,
	r.deleted, r.data, r.actor, r.time_ns`

type scanner interface {
	Scan(dest ...any) error
}

func scanObject(sc scanner) (store.Object, error) {
	var (
		o      store.Object
		timeNS int64
	)
	if err := sc.Scan(&o.Revision, &o.Kind, &o.Namespace, &o.Name, &o.CreateRevision,
		&o.Deleted, &o.Data, &o.Actor, &timeNS); err != nil {
		return store.Object{}, err
	}
	o.Time = unixnano.Decode(timeNS)
	return o, nil
}

func queryObjects(ctx context.Context, db *sql.DB, query string, args ...any) ([]store.Object, error) {
	rows, err := db.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var objs []store.Object
	for rows.Next() {
		o, err := scanObject(rows)
		if err != nil {
			return nil, err
		}
		objs = append(objs, o)
	}
	return objs, rows.Err()
}

func objectKey(kind, namespace, name string) string {
	return kind + "/" + namespace + "/" + name
}

// head is the live revision of an object as a write transaction sees it;
// the zero head (revision 0) if the object is not live.
type head struct {
	revision, createRevision int64
	data                     []byte
}

// liveHead returns the live head of an object.
func (s *Store) liveHead(ctx context.Context, tx *sql.Tx, kind, namespace, name string) (head, error) {
	var h head
	err := tx.StmtContext(ctx, s.stmts.liveHead).QueryRowContext(ctx, kind, namespace, name).
		Scan(&h.revision, &h.createRevision, &h.data)
	if errors.Is(err, sql.ErrNoRows) {
		return head{}, nil
	}
	if err != nil {
		return head{}, fmt.Errorf("read live revision: %w", err)
	}
	return h, nil
}

// appendRevision takes the next store revision and writes o at it, stamped
// with the store's clock. The stamp is taken under the write lock, so times
// follow revision order as far as the clock does.
func (s *Store) appendRevision(ctx context.Context, tx *sql.Tx, o *store.Object, createRevision int64) error {
	if err := tx.StmtContext(ctx, s.stmts.nextRevision).QueryRowContext(ctx).Scan(&o.Revision); err != nil {
		return fmt.Errorf("next revision: %w", err)
	}
	if createRevision == 0 {
		createRevision = o.Revision
	}
	o.CreateRevision = createRevision
	timeNS, err := unixnano.Encode("time", s.now())
	if err != nil {
		return err
	}
	o.Time = unixnano.Decode(timeNS)
	data := o.Data
	if data == nil {
		data = []byte{} // the column is NOT NULL; nil would bind as NULL
	}
	if _, err := tx.StmtContext(ctx, s.stmts.insertRevision).ExecContext(ctx,
		o.Revision, o.Kind, o.Namespace, o.Name, o.CreateRevision, o.Deleted, data, o.Actor, timeNS); err != nil {
		return fmt.Errorf("insert revision %d: %w", o.Revision, err)
	}
	return nil
}

// PutObject writes a new revision of obj. expectRevision is
// store.AnyRevision, store.MustNotExist or the live revision; otherwise the
// write fails with store.ErrConflict and consumes no revision.
func (s *Store) PutObject(ctx context.Context, obj store.Object, expectRevision int64) (store.Object, error) {
	o, _, err := s.putObject(ctx, obj, expectRevision, nil)
	return o, err
}

// PutObjectAudited is PutObject that appends recs, stamped with the
// revision written, in the same transaction (see store.Store); a write
// that fails appends nothing.
func (s *Store) PutObjectAudited(ctx context.Context, obj store.Object, expectRevision int64, recs []store.AuditRecord) (store.Object, []store.AuditRecord, error) {
	return s.putObject(ctx, obj, expectRevision, recs)
}

func (s *Store) putObject(ctx context.Context, obj store.Object, expectRevision int64, in []store.AuditRecord) (store.Object, []store.AuditRecord, error) {
	key := objectKey(obj.Kind, obj.Namespace, obj.Name)
	out := store.Object{
		Kind:      obj.Kind,
		Namespace: obj.Namespace,
		Name:      obj.Name,
		Data:      bytes.Clone(obj.Data),
		Actor:     obj.Actor,
	}
	var recs []store.AuditRecord
	err := func() error {
		if err := store.ValidateObjectWrite(obj.Kind, obj.Name, expectRevision); err != nil {
			return err
		}
		var err error
		if recs, err = s.prepareAudit(in); err != nil {
			return err
		}
		return s.write(ctx, func(tx *sql.Tx) error {
			h, err := s.liveHead(ctx, tx, obj.Kind, obj.Namespace, obj.Name)
			if err != nil {
				return err
			}
			if err := store.CheckPutRevision(expectRevision, h.revision); err != nil {
				return err
			}
			// 0 for a new object, which is created at its own revision.
			if err := s.appendRevision(ctx, tx, &out, h.createRevision); err != nil {
				return err
			}
			if _, err := tx.StmtContext(ctx, s.stmts.upsertLive).ExecContext(ctx,
				out.Kind, out.Namespace, out.Name, out.Revision); err != nil {
				return fmt.Errorf("update live revision: %w", err)
			}
			return s.auditRevision(ctx, tx, out.Revision, recs)
		})
	}()
	if err != nil {
		return store.Object{}, nil, fmt.Errorf("put object %s: %w", key, err)
	}
	s.subs.Notify(store.TopicObjects)
	return out, recs, nil
}

// DeleteObject writes a tombstone revision, which keeps the CreateRevision
// and Data of the revision it removes. It fails with store.ErrNotFound if the
// object is not live, and store.ErrConflict if expectRevision is neither
// store.AnyRevision nor the live revision.
func (s *Store) DeleteObject(ctx context.Context, kind, namespace, name, actor string, expectRevision int64) (store.Object, error) {
	o, _, err := s.deleteObject(ctx, kind, namespace, name, actor, expectRevision, nil)
	return o, err
}

// DeleteObjectAudited is DeleteObject that appends recs, stamped with the
// tombstone's revision, in the same transaction (see store.Store); a
// delete that fails appends nothing.
func (s *Store) DeleteObjectAudited(ctx context.Context, kind, namespace, name, actor string, expectRevision int64, recs []store.AuditRecord) (store.Object, []store.AuditRecord, error) {
	return s.deleteObject(ctx, kind, namespace, name, actor, expectRevision, recs)
}

func (s *Store) deleteObject(ctx context.Context, kind, namespace, name, actor string, expectRevision int64, in []store.AuditRecord) (store.Object, []store.AuditRecord, error) {
	key := objectKey(kind, namespace, name)
	out := store.Object{Kind: kind, Namespace: namespace, Name: name, Deleted: true, Actor: actor}
	var recs []store.AuditRecord
	err := func() error {
		if err := store.ValidateObjectWrite(kind, name, expectRevision); err != nil {
			return err
		}
		var err error
		if recs, err = s.prepareAudit(in); err != nil {
			return err
		}
		return s.write(ctx, func(tx *sql.Tx) error {
			h, err := s.liveHead(ctx, tx, kind, namespace, name)
			if err != nil {
				return err
			}
			if err := store.CheckDeleteRevision(expectRevision, h.revision); err != nil {
				return err
			}
			out.Data = h.data
			if err := s.appendRevision(ctx, tx, &out, h.createRevision); err != nil {
				return err
			}
			if _, err := tx.StmtContext(ctx, s.stmts.deleteLive).ExecContext(ctx, kind, namespace, name); err != nil {
				return fmt.Errorf("remove live revision: %w", err)
			}
			return s.auditRevision(ctx, tx, out.Revision, recs)
		})
	}()
	if err != nil {
		return store.Object{}, nil, fmt.Errorf("delete object %s: %w", key, err)
	}
	s.subs.Notify(store.TopicObjects)
	return out, recs, nil
}

// prepareAudit readies the audit records of an object write before its
// transaction begins (see auditchain.Prepare); nil for none.
func (s *Store) prepareAudit(in []store.AuditRecord) ([]store.AuditRecord, error) {
	if len(in) == 0 {
		return nil, nil
	}
	recs, err := auditchain.Prepare(in, s.now())
	if err != nil {
		return nil, fmt.Errorf("audit %w", err)
	}
	return recs, nil
}

// auditRevision appends recs, the audit records of the object write at
// revision, in the write's transaction.
func (s *Store) auditRevision(ctx context.Context, tx *sql.Tx, revision int64, recs []store.AuditRecord) error {
	if len(recs) == 0 {
		return nil
	}
	for i := range recs {
		recs[i].Revision = revision
	}
	if err := s.chainAudit(ctx, tx, recs); err != nil {
		return fmt.Errorf("append audit: %w", err)
	}
	return nil
}

// GetObject returns the live revision of an object, or store.ErrNotFound.
func (s *Store) GetObject(ctx context.Context, kind, namespace, name string) (store.Object, error) {
	o, err := scanObject(s.rdb.QueryRowContext(ctx, `SELECT `+objectColumns+`
		FROM objects o JOIN object_revisions r ON r.revision = o.revision
		WHERE o.kind = ? AND o.namespace = ? AND o.name = ?`, kind, namespace, name))
	if errors.Is(err, sql.ErrNoRows) {
		err = store.ErrNotFound
	}
	if err != nil {
		return store.Object{}, fmt.Errorf("get object %s: %w", objectKey(kind, namespace, name), err)
	}
	return o, nil
}

// ListObjects returns the live objects of kind ("" = every kind) in
// namespace ("" = every namespace), ordered by kind, namespace and name
// (byte order).
func (s *Store) ListObjects(ctx context.Context, kind, namespace string) ([]store.Object, error) {
	var (
		where []string
		args  []any
	)
	if kind != "" {
		where = append(where, "o.kind = ?")
		args = append(args, kind)
	}
	if namespace != "" {
		where = append(where, "o.namespace = ?")
		args = append(args, namespace)
	}
	query := `SELECT ` + objectColumns + `
		FROM objects o JOIN object_revisions r ON r.revision = o.revision`
	if len(where) > 0 {
		query += ` WHERE ` + strings.Join(where, " AND ")
	}
	query += ` ORDER BY o.kind, o.namespace, o.name`
	objs, err := queryObjects(ctx, s.rdb, query, args...)
	if err != nil {
		return nil, fmt.Errorf("list objects kind %q namespace %q: %w", kind, namespace, err)
	}
	return objs, nil
}

// History returns every revision of one object, tombstones included, oldest
// first; it is empty, not an error, for an object never written.
func (s *Store) History(ctx context.Context, kind, namespace, name string) ([]store.Object, error) {
	objs, err := queryObjects(ctx, s.rdb, `SELECT `+objectColumns+`
		FROM object_revisions r
		WHERE r.kind = ? AND r.namespace = ? AND r.name = ?
		ORDER BY r.revision`, kind, namespace, name)
	if err != nil {
		return nil, fmt.Errorf("history of %s: %w", objectKey(kind, namespace, name), err)
	}
	return objs, nil
}

// Changes returns the object revisions after the given one, oldest first, at
// most limit of them (0 = no limit).
func (s *Store) Changes(ctx context.Context, after int64, limit int) ([]store.Object, error) {
	objs, err := func() ([]store.Object, error) {
		n, err := limitArg(limit)
		if err != nil {
			return nil, err
		}
		return queryObjects(ctx, s.rdb, `SELECT `+objectColumns+`
			FROM object_revisions r
			WHERE r.revision > ?
			ORDER BY r.revision
			LIMIT ?`, after, n)
	}()
	if err != nil {
		return nil, fmt.Errorf("changes after revision %d: %w", after, err)
	}
	return objs, nil
}

// CurrentRevision returns the highest revision written, 0 for an empty store.
func (s *Store) CurrentRevision(ctx context.Context) (int64, error) {
	var rev int64
	if err := s.rdb.QueryRowContext(ctx, `SELECT COALESCE(MAX(revision), 0) FROM object_revisions`).Scan(&rev); err != nil {
		return 0, fmt.Errorf("current revision: %w", err)
	}
	return rev, nil
}

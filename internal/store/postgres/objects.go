package postgres

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/trustmesh/trustmesh/internal/store"
	"github.com/trustmesh/trustmesh/internal/store/auditchain"
	"github.com/trustmesh/trustmesh/internal/store/unixnano"
)

// objectColumns are the columns scanObject reads, from object_revisions as r.
const objectColumns = `r.revision, r.kind, r.namespace, r.name, r.create_revision,
	r.deleted, r.data, r.actor, r.time_ns`

// The statements of an object write.
const (
	// takeRevisionSQL locks the revision counter for the rest of the
	// transaction and takes the next revision. Every object write runs it
	// first, so object writes are serialized across servers and every
	// later statement of the transaction sees the writes committed
	// before.
	takeRevisionSQL = `UPDATE object_counter SET revision = revision + 1 RETURNING revision`
	liveHeadSQL     = `SELECT o.revision, r.create_revision, r.data
		FROM objects o JOIN object_revisions r ON r.revision = o.revision
		WHERE o.kind = $1 AND o.namespace = $2 AND o.name = $3`
	insertRevisionSQL = `INSERT INTO object_revisions
		(revision, kind, namespace, name, create_revision, deleted, data, actor, time_ns)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`
	upsertLiveSQL = `INSERT INTO objects (kind, namespace, name, revision)
		VALUES ($1, $2, $3, $4)
		ON CONFLICT (kind, namespace, name) DO UPDATE SET revision = excluded.revision`
	deleteLiveSQL = `DELETE FROM objects WHERE kind = $1 AND namespace = $2 AND name = $3`
)

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

func (s *Store) queryObjects(ctx context.Context, query string, args ...any) ([]store.Object, error) {
	rows, err := s.pool.Query(ctx, query, args...)
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

// objectWrite runs an object write: it takes the next revision and reads the
// live head of the object in the round trip that begins the transaction,
// lets decide check the head and fill in o, then writes o at the revision
// with the store's clock, applies live (the objects row) and notifies in the
// round trip that commits. A write decide rejects rolls back and consumes no
// revision.
//
// recs, if any, are the write's audit records, made by auditchain.Prepare:
// the first round trip then also takes the audit log's advisory lock and
// reads its head, after the revision counter's lock (the one lock order of
// every transaction that takes both), and the second seals the records
// with the revision and inserts them. A rejected write rolls them back
// with it.
func (s *Store) objectWrite(ctx context.Context, o *store.Object, recs []store.AuditRecord,
	decide func(h head) (createRevision int64, err error),
	live func(b *pgx.Batch),
) error {
	var (
		revision int64
		h        head
		ah       auditHead
	)
	return s.writeTx(ctx, func(b *pgx.Batch) {
		b.Queue(takeRevisionSQL)
		b.Queue(liveHeadSQL, o.Kind, o.Namespace, o.Name)
		if len(recs) > 0 {
			queueAuditHead(b)
		}
	}, func(br pgx.BatchResults) error {
		if err := br.QueryRow().Scan(&revision); err != nil {
			return fmt.Errorf("next revision: %w", err)
		}
		err := br.QueryRow().Scan(&h.revision, &h.createRevision, &h.data)
		switch {
		case errors.Is(err, pgx.ErrNoRows):
			h = head{}
		case err != nil:
			return fmt.Errorf("read live revision: %w", err)
		}
		if len(recs) > 0 {
			if ah, err = readAuditHead(br); err != nil {
				return err
			}
		}
		return nil
	}, func(conn *pgx.Conn) (*pgx.Batch, error) {
		createRevision, err := decide(h)
		if err != nil {
			return nil, err
		}
		o.Revision = revision
		if createRevision == 0 {
			createRevision = revision // a new object is created at its own revision
		}
		o.CreateRevision = createRevision
		// Stamped under the revision lock, so times follow revision order
		// as far as the servers' clocks agree.
		timeNS, err := unixnano.Encode("time", s.now())
		if err != nil {
			return nil, err
		}
		o.Time = unixnano.Decode(timeNS)
		var b pgx.Batch
		b.Queue(insertRevisionSQL, o.Revision, o.Kind, o.Namespace, o.Name, o.CreateRevision, o.Deleted,
			notNil(o.Data), o.Actor, timeNS)
		live(&b)
		if len(recs) > 0 {
			for i := range recs {
				recs[i].Revision = revision
			}
			if err := queueAudit(ctx, conn, &b, ah, recs); err != nil {
				return nil, fmt.Errorf("append audit: %w", err)
			}
		}
		s.queueNotify(&b, store.TopicObjects)
		return &b, nil
	})
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
		return s.objectWrite(ctx, &out, recs, func(h head) (int64, error) {
			if err := store.CheckPutRevision(expectRevision, h.revision); err != nil {
				return 0, err
			}
			return h.createRevision, nil // 0 for a new object
		}, func(b *pgx.Batch) {
			b.Queue(upsertLiveSQL, out.Kind, out.Namespace, out.Name, out.Revision)
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
		return s.objectWrite(ctx, &out, recs, func(h head) (int64, error) {
			if err := store.CheckDeleteRevision(expectRevision, h.revision); err != nil {
				return 0, err
			}
			out.Data = h.data
			return h.createRevision, nil
		}, func(b *pgx.Batch) {
			b.Queue(deleteLiveSQL, kind, namespace, name)
		})
	}()
	if err != nil {
		return store.Object{}, nil, fmt.Errorf("delete object %s: %w", key, err)
	}
	s.subs.Notify(store.TopicObjects)
	return out, recs, nil
}

// GetObject returns the live revision of an object, or store.ErrNotFound.
func (s *Store) GetObject(ctx context.Context, kind, namespace, name string) (store.Object, error) {
	o, err := scanObject(s.pool.QueryRow(ctx, `SELECT `+objectColumns+`
		FROM objects o JOIN object_revisions r ON r.revision = o.revision
		WHERE o.kind = $1 AND o.namespace = $2 AND o.name = $3`, kind, namespace, name))
	if errors.Is(err, pgx.ErrNoRows) {
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
		args = append(args, kind)
		where = append(where, "o.kind = $"+strconv.Itoa(len(args)))
	}
	if namespace != "" {
		args = append(args, namespace)
		where = append(where, "o.namespace = $"+strconv.Itoa(len(args)))
	}
	query := `SELECT ` + objectColumns + `
		FROM objects o JOIN object_revisions r ON r.revision = o.revision`
	if len(where) > 0 {
		query += ` WHERE ` + strings.Join(where, " AND ")
	}
	query += ` ORDER BY o.kind, o.namespace, o.name`
	objs, err := s.queryObjects(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("list objects kind %q namespace %q: %w", kind, namespace, err)
	}
	return objs, nil
}

// History returns every revision of one object, tombstones included, oldest
// first; it is empty, not an error, for an object never written.
func (s *Store) History(ctx context.Context, kind, namespace, name string) ([]store.Object, error) {
	objs, err := s.queryObjects(ctx, `SELECT `+objectColumns+`
		FROM object_revisions r
		WHERE r.kind = $1 AND r.namespace = $2 AND r.name = $3
		ORDER BY r.revision`, kind, namespace, name)
	if err != nil {
		return nil, fmt.Errorf("history of %s: %w", objectKey(kind, namespace, name), err)
	}
	return objs, nil
}

// Changes returns the object revisions after the given one, oldest first, at
// most limit of them (0 = no limit). Object writes commit in revision order
// (they hold the revision counter's lock until they commit), so a reader
// never sees a revision before one lower than it.
func (s *Store) Changes(ctx context.Context, after int64, limit int) ([]store.Object, error) {
	objs, err := func() ([]store.Object, error) {
		n, err := limitArg(limit)
		if err != nil {
			return nil, err
		}
		return s.queryObjects(ctx, `SELECT `+objectColumns+`
			FROM object_revisions r
			WHERE r.revision > $1
			ORDER BY r.revision
			LIMIT $2`, after, n)
	}()
	if err != nil {
		return nil, fmt.Errorf("changes after revision %d: %w", after, err)
	}
	return objs, nil
}

// CurrentRevision returns the highest revision written, 0 for an empty store.
func (s *Store) CurrentRevision(ctx context.Context) (int64, error) {
	var rev int64
	if err := s.pool.QueryRow(ctx, `SELECT COALESCE(MAX(revision), 0) FROM object_revisions`).Scan(&rev); err != nil {
		return 0, fmt.Errorf("current revision: %w", err)
	}
	return rev, nil
}

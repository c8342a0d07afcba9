package audit

import (
	"context"
	"log/slog"
	"time"

	"github.com/trustmesh/trustmesh/internal/store"
)

// Outcomes of an audited action.
const (
	OutcomeSuccess = "success"
	OutcomeDenied  = "denied"
	OutcomeError   = "error"
)

// Recorder appends audit records, on their own or with the object write
// they audit, and logs each one. Safe for concurrent use.
type Recorder struct {
	store store.Store
	log   *slog.Logger
	now   func() time.Time
}

// NewRecorder returns a recorder writing to st and logging to log.
func NewRecorder(st store.Store, log *slog.Logger, now func() time.Time) *Recorder {
	if now == nil {
		now = time.Now
	}
	return &Recorder{store: st, log: log.With("component", "audit"), now: now}
}

// Record appends r (Time defaults to now). A failure to persist is logged at
// error level and returned: callers of security-relevant writes decide
// whether to fail the action.
func (a *Recorder) Record(ctx context.Context, r store.AuditRecord) error {
	if r.Time.IsZero() {
		r.Time = a.now()
	}
	seq, err := a.store.AppendAudit(ctx, r)
	a.logRecord(ctx, seq, r)
	if err != nil {
		a.log.Error("audit record not persisted", "action", r.Action, "error", err)
		return err
	}
	return nil
}

// RecordBatch appends recs in one store transaction, in order (a zero Time
// defaults to now): for events that arrive in batches, such as a proxy's
// decisions. Either every record is persisted or none is; a failure is
// logged and returned as for Record.
func (a *Recorder) RecordBatch(ctx context.Context, recs []store.AuditRecord) error {
	if len(recs) == 0 {
		return nil
	}
	stamped := a.stamp(recs)
	seqs, err := a.store.AppendAuditBatch(ctx, stamped)
	for i, r := range stamped {
		var seq int64
		if i < len(seqs) {
			seq = seqs[i]
		}
		a.logRecord(ctx, seq, r)
	}
	if err != nil {
		a.log.Error("audit records not persisted", "records", len(recs), "error", err)
		return err
	}
	return nil
}

// PutObject writes obj, as store.Store.PutObject does, and appends recs,
// its audit records, in the same store transaction (PutObjectAudited): the
// write and its records are committed together or not at all. Each
// record's Revision becomes the revision written, and a zero Time defaults
// to now. Once committed, the records are logged as Record logs them. A
// write that fails, a compare-and-swap conflict included, appends and logs
// nothing and returns the store's error: a caller that audits a refused
// write records that itself.
func (a *Recorder) PutObject(ctx context.Context, obj store.Object, expectRevision int64, recs ...store.AuditRecord) (store.Object, error) {
	o, stored, err := a.store.PutObjectAudited(ctx, obj, expectRevision, a.stamp(recs))
	if err != nil {
		return store.Object{}, err
	}
	a.logRecords(ctx, stored)
	return o, nil
}

// DeleteObject deletes an object, as store.Store.DeleteObject does, and
// appends recs in the same store transaction, as PutObject does.
func (a *Recorder) DeleteObject(ctx context.Context, kind, namespace, name, actor string, expectRevision int64, recs ...store.AuditRecord) (store.Object, error) {
	o, stored, err := a.store.DeleteObjectAudited(ctx, kind, namespace, name, actor, expectRevision, a.stamp(recs))
	if err != nil {
		return store.Object{}, err
	}
	a.logRecords(ctx, stored)
	return o, nil
}

// stamp returns recs with a zero Time set to now; recs itself is the
// caller's.
func (a *Recorder) stamp(recs []store.AuditRecord) []store.AuditRecord {
	if len(recs) == 0 {
		return nil
	}
	now := a.now()
	stamped := make([]store.AuditRecord, len(recs))
	for i, r := range recs {
		if r.Time.IsZero() {
			r.Time = now
		}
		stamped[i] = r
	}
	return stamped
}

func (a *Recorder) logRecords(ctx context.Context, recs []store.AuditRecord) {
	for _, r := range recs {
		a.logRecord(ctx, r.Seq, r)
	}
}

func (a *Recorder) logRecord(ctx context.Context, seq int64, r store.AuditRecord) {
	level := slog.LevelInfo
	if r.Outcome != OutcomeSuccess {
		level = slog.LevelWarn
	}
	a.log.Log(ctx, level, "audit",
		"seq", seq, "actor", r.Actor, "action", r.Action, "object", r.Object,
		"revision", r.Revision, "outcome", r.Outcome, "reason", r.Reason, "request_id", r.RequestID)
}

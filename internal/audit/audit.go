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

// Recorder appends audit records. Safe for concurrent use.
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
	now := a.now()
	stamped := make([]store.AuditRecord, len(recs))
	for i, r := range recs {
		if r.Time.IsZero() {
			r.Time = now
		}
		stamped[i] = r
	}
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

func (a *Recorder) logRecord(ctx context.Context, seq int64, r store.AuditRecord) {
	level := slog.LevelInfo
	if r.Outcome != OutcomeSuccess {
		level = slog.LevelWarn
	}
	a.log.Log(ctx, level, "audit",
		"seq", seq, "actor", r.Actor, "action", r.Action, "object", r.Object,
		"revision", r.Revision, "outcome", r.Outcome, "reason", r.Reason, "request_id", r.RequestID)
}

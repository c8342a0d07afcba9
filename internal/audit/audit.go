// Package audit records who did what to the mesh and what the mesh refused.
// Records go to the control-plane store (the durable log operators query)
// and to the structured process log. The hash chain and signed checkpoints
// build on this recorder.
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
	level := slog.LevelInfo
	if r.Outcome != OutcomeSuccess {
		level = slog.LevelWarn
	}
	seq, err := a.store.AppendAudit(ctx, r)
	a.log.Log(ctx, level, "audit",
		"seq", seq, "actor", r.Actor, "action", r.Action, "object", r.Object,
		"revision", r.Revision, "outcome", r.Outcome, "reason", r.Reason, "request_id", r.RequestID)
	if err != nil {
		a.log.Error("audit record not persisted", "action", r.Action, "error", err)
		return err
	}
	return nil
}

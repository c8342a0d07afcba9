package audit_test

import (
	"bytes"
	"errors"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/trustmesh/trustmesh/internal/audit"
	"github.com/trustmesh/trustmesh/internal/store"
	"github.com/trustmesh/trustmesh/internal/store/sqlite"
)

func TestRecorder(t *testing.T) {
	ctx := t.Context()
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "trustmesh.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	var logs bytes.Buffer
	now := time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)
	rec := audit.NewRecorder(st, slog.New(slog.NewTextHandler(&logs, nil)), func() time.Time { return now })

	if err := rec.Record(ctx, store.AuditRecord{Actor: "admin (admin)", Action: "object.apply", Outcome: audit.OutcomeSuccess}); err != nil {
		t.Fatalf("Record: %v", err)
	}
	batch := []store.AuditRecord{
		{Actor: "proxy", Action: "authz.deny", Outcome: audit.OutcomeDenied, Time: now.Add(-time.Second)},
		{Actor: "proxy", Action: "authz.audit", Outcome: audit.OutcomeSuccess},
	}
	if err := rec.RecordBatch(ctx, batch); err != nil {
		t.Fatalf("RecordBatch: %v", err)
	}
	if err := rec.RecordBatch(ctx, nil); err != nil {
		t.Fatalf("RecordBatch(nil): %v", err)
	}
	if !batch[1].Time.IsZero() {
		t.Errorf("RecordBatch changed its argument")
	}

	recs, err := st.ListAudit(ctx, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 3 {
		t.Fatalf("got %d records, want 3", len(recs))
	}
	for i, want := range []time.Time{now, now.Add(-time.Second), now} {
		if !recs[i].Time.Equal(want) {
			t.Errorf("record %d time: got %v, want %v", i+1, recs[i].Time, want)
		}
	}
	if _, err := audit.Verify(ctx, audit.VerifyConfig{Records: st}); err != nil {
		t.Errorf("Verify: %v", err)
	}
	out := logs.String()
	for _, want := range []string{"level=INFO msg=audit component=audit seq=1", "level=WARN msg=audit component=audit seq=2 actor=proxy action=authz.deny", "seq=3"} {
		if !strings.Contains(out, want) {
			t.Errorf("log:\n%s\nwant it to contain %q", out, want)
		}
	}
}

// TestRecorderObjectWrites: an audited write stores and logs its records
// with the revision it wrote; a refused one stores and logs nothing.
func TestRecorderObjectWrites(t *testing.T) {
	ctx := t.Context()
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "trustmesh.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	var logs bytes.Buffer
	now := time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)
	rec := audit.NewRecorder(st, slog.New(slog.NewTextHandler(&logs, nil)), func() time.Time { return now })
	web := store.Object{Kind: "Service", Namespace: "prod", Name: "web", Data: []byte(`{"v":1}`), Actor: "admin (admin)"}
	success := func(action string) store.AuditRecord {
		return store.AuditRecord{Actor: "admin (admin)", Action: action, Object: "Service/prod/web", Outcome: audit.OutcomeSuccess, RequestID: "req-1"}
	}

	created, err := rec.PutObject(ctx, web, store.MustNotExist, success("object.created"))
	if err != nil {
		t.Fatalf("PutObject: %v", err)
	}
	web.Data = []byte(`{"v":2}`)
	configured, err := rec.PutObject(ctx, web, created.Revision, success("object.configured"), success("object.rollback"))
	if err != nil {
		t.Fatalf("PutObject with two records: %v", err)
	}
	if _, err := rec.PutObject(ctx, web, created.Revision, success("object.configured")); !errors.Is(err, store.ErrConflict) {
		t.Errorf("PutObject at a stale revision: got %v, want ErrConflict", err)
	}
	if _, err := rec.DeleteObject(ctx, "Service", "prod", "nope", "admin (admin)", store.AnyRevision, success("object.delete")); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("DeleteObject of a missing object: got %v, want ErrNotFound", err)
	}
	deleted, err := rec.DeleteObject(ctx, "Service", "prod", "web", "admin (admin)", store.AnyRevision, success("object.delete"))
	if err != nil {
		t.Fatalf("DeleteObject: %v", err)
	}

	recs, err := st.ListAudit(ctx, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	want := []struct {
		action   string
		revision int64
	}{
		{"object.created", created.Revision},
		{"object.configured", configured.Revision},
		{"object.rollback", configured.Revision},
		{"object.delete", deleted.Revision},
	}
	if len(recs) != len(want) {
		t.Fatalf("got %d records, want %d (refused writes append none)", len(recs), len(want))
	}
	for i, w := range want {
		if r := recs[i]; r.Action != w.action || r.Revision != w.revision || !r.Time.Equal(now) {
			t.Errorf("record %d: got %s at revision %d, time %v; want %s at %d, %v", i+1, r.Action, r.Revision, r.Time, w.action, w.revision, now)
		}
	}
	if _, err := audit.Verify(ctx, audit.VerifyConfig{Records: st}); err != nil {
		t.Errorf("Verify: %v", err)
	}
	out := logs.String()
	for _, want := range []string{
		"level=INFO msg=audit component=audit seq=1 actor=\"admin (admin)\" action=object.created object=Service/prod/web revision=1 outcome=success reason=\"\" request_id=req-1",
		"seq=2 actor=\"admin (admin)\" action=object.configured object=Service/prod/web revision=2",
		"seq=3 actor=\"admin (admin)\" action=object.rollback object=Service/prod/web revision=2",
		"seq=4 actor=\"admin (admin)\" action=object.delete object=Service/prod/web revision=3",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("log:\n%s\nwant it to contain %q", out, want)
		}
	}
	if n := strings.Count(out, "msg=audit"); n != len(want) {
		t.Errorf("log has %d audit lines, want %d (refused writes log none):\n%s", n, len(want), out)
	}
}

func TestReadCheckpointsLongLine(t *testing.T) {
	data := append(bytes.Repeat([]byte("x"), 5000), '\n')
	_, err := audit.ReadCheckpoints(bytes.NewReader(append([]byte("\n"), data...)))
	if err == nil || err.Error() != "line 2: longer than 4096 bytes" {
		t.Errorf("got %v, want line 2 named as too long", err)
	}
}

package audit_test

import (
	"bytes"
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

func TestReadCheckpointsLongLine(t *testing.T) {
	data := append(bytes.Repeat([]byte("x"), 5000), '\n')
	_, err := audit.ReadCheckpoints(bytes.NewReader(append([]byte("\n"), data...)))
	if err == nil || err.Error() != "line 2: longer than 4096 bytes" {
		t.Errorf("got %v, want line 2 named as too long", err)
	}
}

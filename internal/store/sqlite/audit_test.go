package sqlite

import (
	"database/sql"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/trustmesh/trustmesh/internal/audit"
	"github.com/trustmesh/trustmesh/internal/store"
	"github.com/trustmesh/trustmesh/internal/store/auditchain"
)

// v1File writes a store file at schema version 1 (before the hash chain)
// holding the given audit rows, as an older release left it.
func v1File(t *testing.T, rows ...store.AuditRecord) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "store.db")
	db, err := sql.Open("sqlite", dsn(path, false))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := migrate(t.Context(), db, migrations[:1], time.Unix(1_700_000_000, 0)); err != nil {
		t.Fatal(err)
	}
	for _, r := range rows {
		if _, err := db.ExecContext(t.Context(), `INSERT INTO audit (time_ns, actor, action, object, revision, outcome, reason, request_id)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?)`, r.Time.UnixNano(), r.Actor, r.Action, r.Object, r.Revision, r.Outcome, r.Reason, r.RequestID); err != nil {
			t.Fatal(err)
		}
	}
	return path
}

func TestMigrationChainsExistingAudit(t *testing.T) {
	at := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	path := v1File(t,
		store.AuditRecord{Time: at, Actor: "admin", Action: "object.apply", Object: "Service/a", Revision: 1, Outcome: "success"},
		store.AuditRecord{Time: at.Add(time.Second), Actor: "node", Action: "node.attest", Outcome: "denied", Reason: "bad \xff token"},
		store.AuditRecord{Time: at.Add(2 * time.Second), Actor: "admin", Action: "object.delete", Object: "Service/a", Revision: 2, Outcome: "success"},
	)
	s, err := Open(t.Context(), path)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })

	recs, err := s.ListAudit(t.Context(), 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 4 {
		t.Fatalf("got %d records, want the 3 old ones and the chain-start record", len(recs))
	}
	if got, want := recs[1].Reason, "bad \uFFFD token"; got != want {
		t.Errorf("old record 2 reason: got %q, want %q (stored as hashed)", got, want)
	}
	marker := recs[3]
	if marker.Action != auditchain.ActionChainStart || marker.Actor != auditchain.ChainStartActor || !strings.Contains(marker.Reason, "records 1 to 3") {
		t.Errorf("record 4: got %s by %s (%q), want the chain-start record naming records 1 to 3", marker.Action, marker.Actor, marker.Reason)
	}
	if _, err := s.AppendAudit(t.Context(), store.AuditRecord{Action: "after"}); err != nil {
		t.Fatal(err)
	}
	rep, err := audit.Verify(t.Context(), audit.VerifyConfig{Records: s})
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if rep.Records != 5 || rep.NativeFrom != 4 {
		t.Errorf("Verify: got %d records native from %d, want 5 native from 4", rep.Records, rep.NativeFrom)
	}
	if want := "chain native from seq 4: records 1 to 3 were chained when the log was upgraded at"; !strings.Contains(rep.String(), want) {
		t.Errorf("report:\n%s\nwant it to contain %q", rep, want)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	// Reopening migrates nothing more.
	s2, err := Open(t.Context(), path)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if recs, _ := s2.ListAudit(t.Context(), 0, 0); len(recs) != 5 {
		t.Errorf("after reopen: got %d records, want 5", len(recs))
	}
}

func TestMigrationOfEmptyAuditAddsNoRecord(t *testing.T) {
	s, err := Open(t.Context(), v1File(t))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.AuditHead(t.Context()); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("AuditHead: got %v, want ErrNotFound (no chain-start record for an empty log)", err)
	}
}

// TestRemovedEndLeavesGap: a record deleted from the end of the file does
// not get its seq reused, so the next append shows the hole.
func TestRemovedEndLeavesGap(t *testing.T) {
	path := filepath.Join(t.TempDir(), "store.db")
	s, err := Open(t.Context(), path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for range 3 {
		if _, err := s.AppendAudit(t.Context(), store.AuditRecord{Action: "x"}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.wdb.ExecContext(t.Context(), `DELETE FROM audit WHERE seq = 3`); err != nil {
		t.Fatal(err)
	}
	if hw, err := s.AuditHighWater(t.Context()); err != nil || hw != 3 {
		t.Errorf("AuditHighWater: got %d, %v, want 3", hw, err)
	}
	seq, err := s.AppendAudit(t.Context(), store.AuditRecord{Action: "y"})
	if err != nil {
		t.Fatal(err)
	}
	if seq != 4 {
		t.Errorf("next seq: got %d, want 4", seq)
	}
	_, err = audit.Verify(t.Context(), audit.VerifyConfig{Records: s})
	if err == nil || err.Error() != "record 3 is missing: sequence jumps from 2 to 4" {
		t.Errorf("Verify: got %v, want record 3 missing", err)
	}
}

func TestOpenAuditReader(t *testing.T) {
	t.Run("before the chain", func(t *testing.T) {
		_, err := OpenAuditReader(t.Context(), v1File(t))
		if !errors.Is(err, ErrNotChained) || !strings.Contains(err.Error(), "start a trustmesh server") {
			t.Errorf("got %v, want ErrNotChained saying what to do", err)
		}
	})
	t.Run("missing file", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "nope.db")
		if _, err := OpenAuditReader(t.Context(), path); err == nil {
			t.Fatal("got nil error, want one")
		}
		if m, _ := filepath.Glob(path + "*"); len(m) != 0 {
			t.Errorf("opening a missing file created %v", m)
		}
	})
	t.Run("not a store", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "x.db")
		db, _ := sql.Open("sqlite", path)
		if _, err := db.ExecContext(t.Context(), `CREATE TABLE t (x)`); err != nil {
			t.Fatal(err)
		}
		db.Close()
		if _, err := OpenAuditReader(t.Context(), path); err == nil || !strings.Contains(err.Error(), "is this a trustmesh store?") {
			t.Errorf("got %v, want an error asking whether it is a store", err)
		}
	})
	t.Run("reads while the store is open", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "store.db")
		s, err := Open(t.Context(), path)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		if _, err := s.AppendAuditBatch(t.Context(), []store.AuditRecord{{Action: "a"}, {Action: "b"}}); err != nil {
			t.Fatal(err)
		}
		r, err := OpenAuditReader(t.Context(), path)
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		recs, err := r.ListAudit(t.Context(), 0, 0)
		if err != nil || len(recs) != 2 {
			t.Errorf("ListAudit: got %d records, %v, want 2", len(recs), err)
		}
		if _, err := r.db.ExecContext(t.Context(), `DELETE FROM audit`); err == nil {
			t.Errorf("a write through the reader: got nil error, want one (query only)")
		}
	})
}

// TestAuditedWriteIsAtomic: when the database refuses one half of an
// audited write, the other half is not stored either, and neither counter
// moves.
func TestAuditedWriteIsAtomic(t *testing.T) {
	for _, tc := range []struct {
		name, table string
	}{
		{"audit insert refused", "audit"},
		{"revision insert refused", "object_revisions"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := t.Context()
			s, err := Open(ctx, filepath.Join(t.TempDir(), "store.db"))
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			live, err := s.PutObject(ctx, store.Object{Kind: "Service", Namespace: "prod", Name: "db", Data: []byte(`{}`)}, store.MustNotExist)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := s.wdb.ExecContext(ctx, `CREATE TRIGGER refuse BEFORE INSERT ON `+tc.table+`
				BEGIN SELECT RAISE(ABORT, 'refused by test'); END`); err != nil {
				t.Fatal(err)
			}
			rec := []store.AuditRecord{{Actor: "admin", Action: "object.created", Object: "Service/prod/web", Outcome: "success"}}
			if _, _, err := s.PutObjectAudited(ctx, store.Object{Kind: "Service", Namespace: "prod", Name: "web", Data: []byte(`{}`)}, store.MustNotExist, rec); err == nil || !strings.Contains(err.Error(), "refused by test") {
				t.Errorf("PutObjectAudited: got %v, want the trigger's refusal", err)
			}
			if _, _, err := s.DeleteObjectAudited(ctx, "Service", "prod", "db", "admin", store.AnyRevision, rec); err == nil || !strings.Contains(err.Error(), "refused by test") {
				t.Errorf("DeleteObjectAudited: got %v, want the trigger's refusal", err)
			}
			if rev, err := s.CurrentRevision(ctx); err != nil || rev != live.Revision {
				t.Errorf("CurrentRevision: got %d, %v, want %d", rev, err, live.Revision)
			}
			if _, err := s.GetObject(ctx, "Service", "prod", "web"); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("GetObject of the refused put: got %v, want ErrNotFound", err)
			}
			if _, err := s.GetObject(ctx, "Service", "prod", "db"); err != nil {
				t.Errorf("GetObject of the refused delete: got %v, want it live", err)
			}
			if _, err := s.AuditHead(ctx); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("AuditHead: got %v, want ErrNotFound (no record)", err)
			}
			if _, err := s.wdb.ExecContext(ctx, `DROP TRIGGER refuse`); err != nil {
				t.Fatal(err)
			}
			o, recs, err := s.PutObjectAudited(ctx, store.Object{Kind: "Service", Namespace: "prod", Name: "web", Data: []byte(`{}`)}, store.MustNotExist, rec)
			if err != nil {
				t.Fatalf("PutObjectAudited once allowed: %v", err)
			}
			if o.Revision != live.Revision+1 || len(recs) != 1 || recs[0].Seq != 1 || recs[0].Revision != o.Revision {
				t.Errorf("write once allowed: got revision %d and records %+v, want revision %d and record 1 carrying it", o.Revision, recs, live.Revision+1)
			}
		})
	}
}

package sqlite_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/trustmesh/trustmesh/internal/store"
	"github.com/trustmesh/trustmesh/internal/store/sqlite"
	"github.com/trustmesh/trustmesh/internal/store/storetest"
)

func openStore(t testing.TB, path string) *sqlite.Store {
	t.Helper()
	s, err := sqlite.Open(t.Context(), path)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store {
		return openStore(t, filepath.Join(t.TempDir(), "store.db"))
	})
}

func TestOpenCreatesPrivateFiles(t *testing.T) {
	path := filepath.Join(t.TempDir(), "store.db")
	s := openStore(t, path)
	// A write makes sure the WAL exists.
	if _, err := s.PutObject(t.Context(), store.Object{Kind: "K", Name: "n", Data: []byte(`{}`)}, store.AnyRevision); err != nil {
		t.Fatalf("PutObject: %v", err)
	}
	for _, name := range []string{path, path + "-wal", path + "-shm"} {
		fi, err := os.Stat(name)
		if err != nil {
			t.Fatalf("Stat: %v", err)
		}
		if got := fi.Mode().Perm(); got != 0o600 {
			t.Errorf("%s mode: got %o, want 600", filepath.Base(name), got)
		}
	}
}

func TestOpenPathNeedsEscaping(t *testing.T) {
	// '?', '%' and '#' would be read as URI syntax if the path were not escaped.
	path := filepath.Join(t.TempDir(), "a?b%20c#d.db")
	s := openStore(t, path)
	if _, err := s.AppendAudit(t.Context(), store.AuditRecord{Action: "test"}); err != nil {
		t.Fatalf("AppendAudit: %v", err)
	}
	if _, err := os.Stat(path); err != nil {
		t.Errorf("database not at the given path: %v", err)
	}
}

func TestOpenMissingDirectory(t *testing.T) {
	_, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "missing", "store.db"))
	if err == nil {
		t.Fatal("Open: got nil error, want one")
	}
	if !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Open: got %v, want an error wrapping os.ErrNotExist", err)
	}
}

func TestReopenKeepsDataAndCounters(t *testing.T) {
	path := filepath.Join(t.TempDir(), "store.db")
	ctx := t.Context()

	s, err := sqlite.Open(ctx, path)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	web, err := s.PutObject(ctx, store.Object{Kind: "Service", Namespace: "prod", Name: "web", Data: []byte(`{"v":1}`)}, store.MustNotExist)
	if err != nil {
		t.Fatalf("PutObject: %v", err)
	}
	if _, err := s.PutObject(ctx, store.Object{Kind: "Service", Namespace: "prod", Name: "db", Data: []byte(`{}`)}, store.MustNotExist); err != nil {
		t.Fatalf("PutObject: %v", err)
	}
	if _, err := s.DeleteObject(ctx, "Service", "prod", "db", "admin", store.AnyRevision); err != nil {
		t.Fatalf("DeleteObject: %v", err)
	}
	if _, err := s.AppendAudit(ctx, store.AuditRecord{Action: "first"}); err != nil {
		t.Fatalf("AppendAudit: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}

	s = openStore(t, path)
	if got, err := s.CurrentRevision(ctx); err != nil || got != 3 {
		t.Errorf("CurrentRevision after reopen: got %d, %v, want 3", got, err)
	}
	got, err := s.GetObject(ctx, "Service", "prod", "web")
	if err != nil {
		t.Fatalf("GetObject after reopen: %v", err)
	}
	if got.Revision != web.Revision || !got.Time.Equal(web.Time) || string(got.Data) != `{"v":1}` {
		t.Errorf("GetObject after reopen: got %+v, want %+v", got, web)
	}
	next, err := s.PutObject(ctx, store.Object{Kind: "Service", Namespace: "prod", Name: "web", Data: []byte(`{"v":2}`)}, web.Revision)
	if err != nil {
		t.Fatalf("PutObject after reopen: %v", err)
	}
	if next.Revision != 4 {
		t.Errorf("revision after reopen: got %d, want 4", next.Revision)
	}
	seq, err := s.AppendAudit(ctx, store.AuditRecord{Action: "second"})
	if err != nil {
		t.Fatalf("AppendAudit after reopen: %v", err)
	}
	if seq != 2 {
		t.Errorf("audit Seq after reopen: got %d, want 2", seq)
	}
}

// schemaVersions reads the applied migrations straight from the file.
func schemaVersions(t *testing.T, path string) []int {
	t.Helper()
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatalf("sql.Open: %v", err)
	}
	defer db.Close()
	rows, err := db.QueryContext(t.Context(), `SELECT version FROM schema_version ORDER BY version`)
	if err != nil {
		t.Fatalf("query schema_version: %v", err)
	}
	defer rows.Close()
	var versions []int
	for rows.Next() {
		var v int
		if err := rows.Scan(&v); err != nil {
			t.Fatalf("scan: %v", err)
		}
		versions = append(versions, v)
	}
	if err := rows.Err(); err != nil {
		t.Fatalf("rows: %v", err)
	}
	return versions
}

func TestMigrationsIdempotentOnReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "store.db")
	var first []int
	for i := range 3 {
		s, err := sqlite.Open(t.Context(), path)
		if err != nil {
			t.Fatalf("Open #%d: %v", i+1, err)
		}
		if err := s.Close(); err != nil {
			t.Fatalf("Close #%d: %v", i+1, err)
		}
		got := schemaVersions(t, path)
		if len(got) == 0 {
			t.Fatalf("open #%d: no schema version recorded", i+1)
		}
		for j, v := range got {
			if v != j+1 {
				t.Fatalf("open #%d: got versions %v, want 1..%d", i+1, got, len(got))
			}
		}
		if i == 0 {
			first = got
		} else if len(got) != len(first) {
			t.Errorf("open #%d: got versions %v, want %v as after the first open", i+1, got, first)
		}
	}
}

func TestOpenRefusesNewerSchema(t *testing.T) {
	path := filepath.Join(t.TempDir(), "store.db")
	s, err := sqlite.Open(t.Context(), path)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatalf("sql.Open: %v", err)
	}
	if _, err := db.ExecContext(t.Context(), `INSERT INTO schema_version (version, name, applied_at_ns) VALUES (999, 'from the future', 0)`); err != nil {
		t.Fatalf("insert: %v", err)
	}
	if err := db.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}

	_, err = sqlite.Open(t.Context(), path)
	if err == nil || !strings.Contains(err.Error(), "999") {
		t.Errorf("Open of a newer schema: got error %v, want one naming version 999", err)
	}
}

func TestTimeOutsideStorableRange(t *testing.T) {
	s := openStore(t, filepath.Join(t.TempDir(), "store.db"))
	ctx := t.Context()
	// RFC 5280's "no well-defined expiration" date does not fit in int64
	// nanoseconds; it must be refused, not wrapped around.
	forever := time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC)
	err := s.RecordIssued(ctx, []store.Issued{
		{Serial: "1", SPIFFEID: "spiffe://example.org/a", NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour)},
		{Serial: "2", SPIFFEID: "spiffe://example.org/b", NotBefore: time.Now(), NotAfter: forever},
	})
	if err == nil {
		t.Fatal("RecordIssued: got nil error, want one for year 9999")
	}
	recs, err := s.ListIssued(ctx, "", 0)
	if err != nil {
		t.Fatalf("ListIssued: %v", err)
	}
	if len(recs) != 0 {
		t.Errorf("ListIssued after a rejected batch: got %d records, want 0", len(recs))
	}
}

func TestUseAfterClose(t *testing.T) {
	s, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "store.db"))
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if _, err := s.GetObject(t.Context(), "K", "", "n"); err == nil {
		t.Error("GetObject after Close: got nil error, want one")
	}
	if _, err := s.PutObject(t.Context(), store.Object{Kind: "K", Name: "n"}, store.AnyRevision); err == nil {
		t.Error("PutObject after Close: got nil error, want one")
	}
}

func TestCancelledContext(t *testing.T) {
	s := openStore(t, filepath.Join(t.TempDir(), "store.db"))
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := s.PutObject(ctx, store.Object{Kind: "K", Name: "n", Data: []byte(`{}`)}, store.AnyRevision); !errors.Is(err, context.Canceled) {
		t.Errorf("PutObject with a cancelled context: got %v, want context.Canceled", err)
	}
	if got, err := s.CurrentRevision(t.Context()); err != nil || got != 0 {
		t.Errorf("CurrentRevision: got %d, %v, want 0", got, err)
	}
}

func BenchmarkPutObject(b *testing.B) {
	s := openStore(b, filepath.Join(b.TempDir(), "store.db"))
	ctx := b.Context()
	data := []byte(`{"apiVersion":"trustmesh.dev/v1","kind":"Service","metadata":{"name":"web"},"spec":{"ports":[8080]}}`)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		obj := store.Object{Kind: "Service", Namespace: "bench", Name: fmt.Sprint("svc-", i%1000), Data: data, Actor: "bench"}
		if _, err := s.PutObject(ctx, obj, store.AnyRevision); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

// BenchmarkPutObjectParallel writes from GOMAXPROCS goroutines at once, to
// compare with the PostgreSQL store's benchmark of the same name.
func BenchmarkPutObjectParallel(b *testing.B) {
	s := openStore(b, filepath.Join(b.TempDir(), "store.db"))
	ctx := b.Context()
	data := []byte(`{"apiVersion":"trustmesh.dev/v1","kind":"Service","metadata":{"name":"web"},"spec":{"ports":[8080]}}`)
	b.ReportAllocs()
	var worker atomic.Int64
	b.ResetTimer() // not the store's creation
	b.RunParallel(func(pb *testing.PB) {
		w := worker.Add(1)
		i := 0
		for pb.Next() {
			obj := store.Object{Kind: "Service", Namespace: "bench", Name: fmt.Sprint("svc-", w, "-", i%1000), Data: data, Actor: "bench"}
			if _, err := s.PutObject(ctx, obj, store.AnyRevision); err != nil {
				b.Error(err)
				return
			}
			i++
		}
	})
}

func benchIssued(i int) []store.Issued {
	now := time.Now()
	return []store.Issued{{
		Serial:    fmt.Sprint(1_000_000 + i),
		SPIFFEID:  fmt.Sprintf("spiffe://example.org/ns/bench/sa/w%d", i%100),
		Kind:      "x509-svid",
		Node:      "node-1",
		Authority: "ca-1",
		NotBefore: now,
		NotAfter:  now.Add(time.Hour),
	}}
}

func BenchmarkRecordIssued(b *testing.B) {
	s := openStore(b, filepath.Join(b.TempDir(), "store.db"))
	ctx := b.Context()
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if err := s.RecordIssued(ctx, benchIssued(i)); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

func BenchmarkRecordIssuedParallel(b *testing.B) {
	s := openStore(b, filepath.Join(b.TempDir(), "store.db"))
	ctx := b.Context()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			if err := s.RecordIssued(ctx, benchIssued(i)); err != nil {
				b.Error(err)
				return
			}
			i++
		}
	})
}

func benchAudit(i int) store.AuditRecord {
	return store.AuditRecord{
		Time:      time.Now(),
		Actor:     fmt.Sprintf("spiffe://example.org/ns/bench/sa/w%d (proxy w%d-1)", i%100, i%100),
		Action:    "authz.deny",
		Object:    "AuthorizationPolicy/bench/deny-admin",
		Revision:  int64(i % 1000),
		Outcome:   "denied",
		Reason:    fmt.Sprintf("deny-policy (rule 0): GET /admin/%d from spiffe://example.org/ns/bench/sa/api", i),
		RequestID: fmt.Sprintf("%016x", i),
	}
}

// BenchmarkAppendAuditBatch appends batches of decision-event-sized records
// to a real file, the way a proxy's events arrive.
func BenchmarkAppendAuditBatch(b *testing.B) {
	for _, size := range []int{100, 1000} {
		b.Run(fmt.Sprint("batch=", size), func(b *testing.B) {
			s := openStore(b, filepath.Join(b.TempDir(), "store.db"))
			ctx := b.Context()
			batch := make([]store.AuditRecord, size)
			i := 0
			b.ReportAllocs()
			for b.Loop() {
				for j := range batch {
					batch[j] = benchAudit(i)
					i++
				}
				if _, err := s.AppendAuditBatch(ctx, batch); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(i)/b.Elapsed().Seconds(), "records/s")
		})
	}
}

// BenchmarkAppendAudit appends one record per transaction (an admin action).
func BenchmarkAppendAudit(b *testing.B) {
	s := openStore(b, filepath.Join(b.TempDir(), "store.db"))
	ctx := b.Context()
	i := 0
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.AppendAudit(ctx, benchAudit(i)); err != nil {
			b.Fatal(err)
		}
		i++
	}
	b.ReportMetric(float64(i)/b.Elapsed().Seconds(), "records/s")
}

// applyAudit is the audit record of an admin apply, which the store
// stamps with the revision.
func applyAudit(i int) store.AuditRecord {
	return store.AuditRecord{
		Time:      time.Now(),
		Actor:     "alice (admin)",
		Action:    "object.configured",
		Object:    fmt.Sprint("Service/bench/svc-", i%1000),
		Outcome:   "success",
		Reason:    fmt.Sprint("previous revision ", i),
		RequestID: fmt.Sprintf("%016x", i),
	}
}

// auditedWrites are the two ways to store an object write and its audit
// record that BenchmarkPutObjectAudited compares: one transaction
// (PutObjectAudited, what the server does), or PutObject then AppendAudit.
var auditedWrites = []struct {
	name  string
	write func(ctx context.Context, s *sqlite.Store, obj store.Object, rec store.AuditRecord) error
}{
	{"one transaction", func(ctx context.Context, s *sqlite.Store, obj store.Object, rec store.AuditRecord) error {
		_, _, err := s.PutObjectAudited(ctx, obj, store.AnyRevision, []store.AuditRecord{rec})
		return err
	}},
	{"two transactions", func(ctx context.Context, s *sqlite.Store, obj store.Object, rec store.AuditRecord) error {
		o, err := s.PutObject(ctx, obj, store.AnyRevision)
		if err != nil {
			return err
		}
		rec.Revision = o.Revision
		_, err = s.AppendAudit(ctx, rec)
		return err
	}},
}

var benchData = []byte(`{"apiVersion":"trustmesh.dev/v1","kind":"Service","metadata":{"name":"web"},"spec":{"ports":[8080]}}`)

func BenchmarkPutObjectAudited(b *testing.B) {
	for _, tc := range auditedWrites {
		b.Run(tc.name, func(b *testing.B) {
			s := openStore(b, filepath.Join(b.TempDir(), "store.db"))
			ctx := b.Context()
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				obj := store.Object{Kind: "Service", Namespace: "bench", Name: fmt.Sprint("svc-", i%1000), Data: benchData, Actor: "bench"}
				if err := tc.write(ctx, s, obj, applyAudit(i)); err != nil {
					b.Fatal(err)
				}
				i++
			}
			b.ReportMetric(float64(i)/b.Elapsed().Seconds(), "writes/s")
		})
	}
}

// BenchmarkPutObjectAuditedParallel writes from GOMAXPROCS goroutines at
// once, to compare with the PostgreSQL store's benchmark of the same name.
func BenchmarkPutObjectAuditedParallel(b *testing.B) {
	for _, tc := range auditedWrites {
		b.Run(tc.name, func(b *testing.B) {
			s := openStore(b, filepath.Join(b.TempDir(), "store.db"))
			ctx := b.Context()
			b.ReportAllocs()
			var (
				worker atomic.Int64
				writes atomic.Int64
			)
			b.ResetTimer() // not the store's creation
			b.RunParallel(func(pb *testing.PB) {
				w := worker.Add(1)
				i := 0
				for pb.Next() {
					obj := store.Object{Kind: "Service", Namespace: "bench", Name: fmt.Sprint("svc-", w, "-", i%1000), Data: benchData, Actor: "bench"}
					if err := tc.write(ctx, s, obj, applyAudit(i)); err != nil {
						b.Error(err)
						return
					}
					i++
				}
				writes.Add(int64(i))
			})
			b.ReportMetric(float64(writes.Load())/b.Elapsed().Seconds(), "writes/s")
		})
	}
}

package postgres_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5"

	"github.com/trustmesh/trustmesh/internal/audit"
	"github.com/trustmesh/trustmesh/internal/store"
	"github.com/trustmesh/trustmesh/internal/store/postgres"
	"github.com/trustmesh/trustmesh/internal/store/postgres/pgtest"
	"github.com/trustmesh/trustmesh/internal/store/storetest"
)

// One cluster serves every test of this binary.
func TestMain(m *testing.M) { pgtest.Main(m) }

// recoverTimeout bounds how long the store takes to recover from a database
// restart or a dropped connection: reconnect backoff is at most 5 s.
const recoverTimeout = 30 * time.Second

func openStore(t testing.TB, dsn string) *postgres.Store {
	t.Helper()
	s, err := postgres.Open(t.Context(), dsn)
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

// sqlConn is a superuser connection to the store's database, to look at or
// tamper with it behind the store's back.
func sqlConn(t testing.TB, dsn string) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(t.Context(), dsn)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

func TestConformance(t *testing.T) {
	c := pgtest.Shared(t)
	storetest.Run(t, func(t *testing.T) store.Store {
		return openStore(t, c.NewTestDatabase(t))
	})
}

func TestConformanceShared(t *testing.T) {
	c := pgtest.Shared(t)
	storetest.RunShared(t, func(t *testing.T) (store.Store, store.Store) {
		dsn := c.NewTestDatabase(t)
		return openStore(t, dsn), openStore(t, dsn)
	})
}

func schemaVersions(t *testing.T, conn *pgx.Conn) []int {
	t.Helper()
	rows, err := conn.Query(t.Context(), `SELECT version FROM schema_version ORDER BY version`)
	if err != nil {
		t.Fatalf("query schema_version: %v", err)
	}
	vs, err := pgx.CollectRows(rows, pgx.RowTo[int])
	if err != nil {
		t.Fatalf("read schema_version: %v", err)
	}
	return vs
}

// TestConcurrentOpenMigratesOnce: servers starting together on a new
// database all succeed, and the schema is applied once.
func TestConcurrentOpenMigratesOnce(t *testing.T) {
	const servers = 6
	dsn := pgtest.Shared(t).NewTestDatabase(t)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range servers {
		wg.Go(func() {
			<-start
			s, err := postgres.Open(t.Context(), dsn)
			if err != nil {
				t.Errorf("Open #%d: %v", i, err)
				return
			}
			if err := s.Close(); err != nil {
				t.Errorf("Close #%d: %v", i, err)
			}
		})
	}
	close(start)
	wg.Wait()

	conn := sqlConn(t, dsn)
	want := schemaVersions(t, conn)
	if len(want) == 0 {
		t.Fatal("no schema version recorded")
	}
	for i, v := range want {
		if v != i+1 {
			t.Fatalf("schema versions %v, want 1..%d once each", want, len(want))
		}
	}
	var counters int
	if err := conn.QueryRow(t.Context(), `SELECT count(*) FROM object_counter`).Scan(&counters); err != nil {
		t.Fatalf("count object_counter: %v", err)
	}
	if counters != 1 {
		t.Errorf("object_counter rows: got %d, want 1 (the initial migration ran more than once)", counters)
	}

	// And a later Open changes nothing.
	openStore(t, dsn)
	if diff := cmp.Diff(want, schemaVersions(t, conn)); diff != "" {
		t.Errorf("versions after another Open (-before +after):\n%s", diff)
	}
}

func TestOpenRefusesNewerSchema(t *testing.T) {
	dsn := pgtest.Shared(t).NewTestDatabase(t)
	if err := openStore(t, dsn).Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if _, err := sqlConn(t, dsn).Exec(t.Context(),
		`INSERT INTO schema_version (version, name, applied_at_ns) VALUES (999, 'from the future', 0)`); err != nil {
		t.Fatalf("insert: %v", err)
	}
	_, err := postgres.Open(t.Context(), dsn)
	if err == nil || !strings.Contains(err.Error(), "999") {
		t.Errorf("Open of a newer schema: got error %v, want one naming version 999", err)
	}
}

func TestOpenRefusesNonUTF8Database(t *testing.T) {
	dsn := pgtest.Shared(t).NewTestDatabase(t)
	admin := sqlConn(t, dsn)
	var name string
	if err := admin.QueryRow(t.Context(), `SELECT current_database()`).Scan(&name); err != nil {
		t.Fatal(err)
	}
	latin := name + "_latin1"
	if _, err := admin.Exec(t.Context(), `CREATE DATABASE `+latin+` TEMPLATE template0 ENCODING 'LATIN1' LC_COLLATE 'C' LC_CTYPE 'C'`); err != nil {
		t.Fatalf("create database: %v", err)
	}
	t.Cleanup(func() { _, _ = admin.Exec(context.Background(), `DROP DATABASE IF EXISTS `+latin+` WITH (FORCE)`) })
	_, err := postgres.Open(t.Context(), strings.Replace(dsn, "/"+name, "/"+latin, 1))
	if err == nil || !strings.Contains(err.Error(), "UTF8") {
		t.Errorf("Open of a LATIN1 database: got %v, want an error asking for UTF8", err)
	}
}

func TestReopenKeepsDataAndCounters(t *testing.T) {
	dsn := pgtest.Shared(t).NewTestDatabase(t)
	ctx := t.Context()
	s, err := postgres.Open(ctx, dsn)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	web, err := s.PutObject(ctx, store.Object{Kind: "Service", Namespace: "prod", Name: "web", Data: []byte(`{"v":1}`)}, store.MustNotExist)
	if err != nil {
		t.Fatalf("PutObject: %v", err)
	}
	if _, err := s.AppendAudit(ctx, store.AuditRecord{Action: "first"}); err != nil {
		t.Fatalf("AppendAudit: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}

	s = openStore(t, dsn)
	got, err := s.GetObject(ctx, "Service", "prod", "web")
	if err != nil {
		t.Fatalf("GetObject after reopen: %v", err)
	}
	if diff := cmp.Diff(web, got); diff != "" {
		t.Errorf("GetObject after reopen (-want +got):\n%s", diff)
	}
	if next, err := s.PutObject(ctx, store.Object{Kind: "Service", Namespace: "prod", Name: "web", Data: []byte(`{"v":2}`)}, web.Revision); err != nil || next.Revision != 2 {
		t.Errorf("PutObject after reopen: got revision %d, %v, want 2", next.Revision, err)
	}
	if seq, err := s.AppendAudit(ctx, store.AuditRecord{Action: "second"}); err != nil || seq != 2 {
		t.Errorf("AppendAudit after reopen: got seq %d, %v, want 2", seq, err)
	}
}

// TestRemovedEndLeavesGap: a record deleted from the end of the log does
// not get its seq reused, so the next append shows the hole.
func TestRemovedEndLeavesGap(t *testing.T) {
	dsn := pgtest.Shared(t).NewTestDatabase(t)
	s := openStore(t, dsn)
	ctx := t.Context()
	for range 3 {
		if _, err := s.AppendAudit(ctx, store.AuditRecord{Action: "x"}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := sqlConn(t, dsn).Exec(ctx, `DELETE FROM audit WHERE seq = 3`); err != nil {
		t.Fatal(err)
	}
	if hw, err := s.AuditHighWater(ctx); err != nil || hw != 3 {
		t.Errorf("AuditHighWater: got %d, %v, want 3", hw, err)
	}
	seq, err := s.AppendAudit(ctx, store.AuditRecord{Action: "y"})
	if err != nil {
		t.Fatal(err)
	}
	if seq != 4 {
		t.Errorf("next seq: got %d, want 4", seq)
	}
	_, err = audit.Verify(ctx, audit.VerifyConfig{Records: s})
	if err == nil || err.Error() != "record 3 is missing: sequence jumps from 2 to 4" {
		t.Errorf("Verify: got %v, want record 3 missing", err)
	}
}

// TestAuditKeepsNUL: the audit log's strings may hold NUL, which a text
// column cannot.
func TestAuditKeepsNUL(t *testing.T) {
	s := openStore(t, pgtest.Shared(t).NewTestDatabase(t))
	rec := store.AuditRecord{Time: time.Now(), Actor: "a\x00b", Action: "authz.deny", Object: "/x\x00y", Reason: "\x00", Outcome: "denied"}
	if _, err := s.AppendAudit(t.Context(), rec); err != nil {
		t.Fatalf("AppendAudit: %v", err)
	}
	got, err := s.AuditHead(t.Context())
	if err != nil {
		t.Fatalf("AuditHead: %v", err)
	}
	if got.Actor != rec.Actor || got.Object != rec.Object || got.Reason != rec.Reason {
		t.Errorf("got %q %q %q, want %q %q %q", got.Actor, got.Object, got.Reason, rec.Actor, rec.Object, rec.Reason)
	}
	if _, err := audit.Verify(t.Context(), audit.VerifyConfig{Records: s}); err != nil {
		t.Errorf("Verify: %v", err)
	}
}

func TestTimeOutsideStorableRange(t *testing.T) {
	s := openStore(t, pgtest.Shared(t).NewTestDatabase(t))
	ctx := t.Context()
	forever := time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC)
	err := s.RecordIssued(ctx, []store.Issued{
		{Serial: "1", SPIFFEID: "spiffe://example.org/a", NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour)},
		{Serial: "2", SPIFFEID: "spiffe://example.org/b", NotBefore: time.Now(), NotAfter: forever},
	})
	if err == nil {
		t.Fatal("RecordIssued: got nil error, want one for year 9999")
	}
	if recs, err := s.ListIssued(ctx, "", 0); err != nil || len(recs) != 0 {
		t.Errorf("ListIssued after a rejected batch: got %d records, %v, want 0", len(recs), err)
	}
}

// TestFailedBatchWritesNothing: a batch of issued records is one
// transaction, so a record the database refuses takes the others with it.
func TestFailedBatchWritesNothing(t *testing.T) {
	s := openStore(t, pgtest.Shared(t).NewTestDatabase(t))
	ctx := t.Context()
	err := s.RecordIssued(ctx, []store.Issued{
		{Serial: "1", SPIFFEID: "spiffe://example.org/a"},
		{Serial: "2", SPIFFEID: "spiffe://example.org/\x00"}, // text cannot hold NUL
	})
	if err == nil {
		t.Fatal("RecordIssued: got nil error, want one for a NUL in text")
	}
	if recs, err := s.ListIssued(ctx, "", 0); err != nil || len(recs) != 0 {
		t.Errorf("ListIssued after a failed batch: got %d records, %v, want 0", len(recs), err)
	}
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
			dsn := pgtest.Shared(t).NewTestDatabase(t)
			s := openStore(t, dsn)
			live, err := s.PutObject(ctx, store.Object{Kind: "Service", Namespace: "prod", Name: "db", Data: []byte(`{}`)}, store.MustNotExist)
			if err != nil {
				t.Fatal(err)
			}
			conn := sqlConn(t, dsn)
			if _, err := conn.Exec(ctx, `CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql
				AS $$ BEGIN RAISE EXCEPTION 'refused by test'; END $$`); err != nil {
				t.Fatal(err)
			}
			if _, err := conn.Exec(ctx, `CREATE TRIGGER refuse BEFORE INSERT ON `+tc.table+` FOR EACH ROW EXECUTE FUNCTION refuse()`); err != nil {
				t.Fatal(err)
			}
			rec := []store.AuditRecord{{Actor: "admin", Action: "object.created", Object: "Service/prod/web", Outcome: "success"}}
			if _, _, err := s.PutObjectAudited(ctx, store.Object{Kind: "Service", Namespace: "prod", Name: "web", Data: []byte(`{}`)}, store.MustNotExist, rec); err == nil || !strings.Contains(err.Error(), "refused by test") {
				t.Errorf("PutObjectAudited: got %v, want the trigger's refusal", err)
			}
			if _, _, err := s.DeleteObjectAudited(ctx, "Service", "prod", "db", "admin", store.AnyRevision, rec); err == nil || !strings.Contains(err.Error(), "refused by test") {
				t.Errorf("DeleteObjectAudited: got %v, want the trigger's refusal", err)
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
			if _, err := conn.Exec(ctx, `DROP TRIGGER refuse ON `+tc.table); err != nil {
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

func TestUseAfterClose(t *testing.T) {
	s, err := postgres.Open(t.Context(), pgtest.Shared(t).NewTestDatabase(t))
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
	if _, release, err := s.Elect(t.Context(), "r"); err == nil {
		release()
		t.Error("Elect after Close: got nil error, want one")
	}
}

func TestCancelledContext(t *testing.T) {
	s := openStore(t, pgtest.Shared(t).NewTestDatabase(t))
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := s.PutObject(ctx, store.Object{Kind: "K", Name: "n", Data: []byte(`{}`)}, store.AnyRevision); !errors.Is(err, context.Canceled) {
		t.Errorf("PutObject with a cancelled context: got %v, want context.Canceled", err)
	}
	if got, err := s.CurrentRevision(t.Context()); err != nil || got != 0 {
		t.Errorf("CurrentRevision: got %d, %v, want 0", got, err)
	}
}

func TestRedact(t *testing.T) {
	for _, tc := range []struct {
		name, dsn, want string
	}{
		{"password", "postgres://alice:s3cret@db.example:5432/tm?sslmode=verify-full",
			"postgres://alice:xxxxx@db.example:5432/tm?sslmode=verify-full"},
		{"postgresql scheme", "postgresql://alice:s3cret@db.example/tm", "postgresql://alice:xxxxx@db.example/tm"},
		{"escaped password", "postgres://alice:p%40ss%3Aword@db/tm", "postgres://alice:xxxxx@db/tm"},
		{"no password", "postgres://alice@db.example/tm?sslmode=disable", "postgres://alice@db.example/tm?sslmode=disable"},
		{"password parameter", "postgres://db.example/tm?password=s3cret&user=alice", "postgres://db.example/tm?password=xxxxx&user=alice"},
		{"sslpassword parameter", "postgres://db.example/tm?sslpassword=s3cret", "postgres://db.example/tm?sslpassword=xxxxx"},
		{"keyword form is not shown", "host=db password=s3cret", "(not a postgres:// URL)"},
		{"other scheme is not shown", "mysql://alice:s3cret@db/tm", "(not a postgres:// URL)"},
		{"unparseable is not shown", "postgres://alice:s3cret@db:port/tm", "(not a postgres:// URL)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := postgres.Redact(tc.dsn); got != tc.want {
				t.Errorf("Redact(%q): got %q, want %q", tc.dsn, got, tc.want)
			}
		})
	}
}

// TestOpenErrorsHidePassword: whatever goes wrong, the password is not in
// the error.
func TestOpenErrorsHidePassword(t *testing.T) {
	const secret = "s3cr3t-Pw"
	for _, tc := range []struct {
		name, dsn string
	}{
		{"connection refused", "postgres://alice:" + secret + "@127.0.0.1:1/tm?sslmode=disable&connect_timeout=5"},
		{"password parameter", "postgres://127.0.0.1:1/tm?sslmode=disable&connect_timeout=5&password=" + secret},
		{"bad port", "postgres://alice:" + secret + "@127.0.0.1:port/tm"},
		{"bad parameter", "postgres://alice:" + secret + "@127.0.0.1/tm?sslmode=bogus"},
		{"bad parameter with a password parameter", "postgres://127.0.0.1/tm?sslmode=bogus&password=" + secret},
		{"keyword form", "host=127.0.0.1 port=1 password=" + secret},
		{"other scheme", "mysql://alice:" + secret + "@127.0.0.1/tm"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := postgres.Open(t.Context(), tc.dsn)
			if err == nil {
				s.Close()
				t.Fatal("Open: got nil error, want one")
			}
			for e := err; e != nil; e = errors.Unwrap(e) {
				if strings.Contains(e.Error(), secret) {
					t.Errorf("error %q (or one it wraps) holds the password", err)
					break
				}
			}
		})
	}
}

// terminate ends the database sessions of the stores' background
// connections whose application_name ends with purpose, as a network
// failure or a database administrator would.
func terminate(t *testing.T, conn *pgx.Conn, purpose string) int {
	t.Helper()
	var n int
	if err := conn.QueryRow(t.Context(), `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
		WHERE datname = current_database() AND application_name = $1`, "trustmesh "+purpose).Scan(&n); err != nil {
		t.Fatalf("terminate %s sessions: %v", purpose, err)
	}
	return n
}

func waitSignal(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(recoverTimeout):
		t.Fatalf("no signal %s within %v", what, recoverTimeout)
	}
}

func drain(ch <-chan struct{}) {
	select {
	case <-ch:
	default:
	}
}

// TestListenerReconnects: when the listener's session ends, the store
// reconnects, signals every subscriber (notifications may have been
// missed), and then delivers other servers' notifications again.
func TestListenerReconnects(t *testing.T) {
	dsn := pgtest.Shared(t).NewTestDatabase(t)
	a, b := openStore(t, dsn), openStore(t, dsn)
	admin := sqlConn(t, dsn)
	objects, cancelObjects := b.Subscribe(store.TopicObjects)
	defer cancelObjects()
	presence, cancelPresence := b.Subscribe(store.TopicPresence)
	defer cancelPresence()

	if n := terminate(t, admin, "listener"); n != 2 {
		t.Fatalf("terminated %d listener sessions, want 2", n)
	}
	waitSignal(t, objects, "to objects subscriber after the listener reconnected")
	waitSignal(t, presence, "to presence subscriber after the listener reconnected")

	if _, err := a.PutObject(t.Context(), store.Object{Kind: "K", Name: "n", Data: []byte(`{}`)}, store.AnyRevision); err != nil {
		t.Fatalf("PutObject: %v", err)
	}
	waitSignal(t, objects, "after PutObject through the other store")
}

// TestNotificationPayloads: a notification the store cannot read is ignored;
// one from another origin signals its topic.
func TestNotificationPayloads(t *testing.T) {
	dsn := pgtest.Shared(t).NewTestDatabase(t)
	s := openStore(t, dsn)
	admin := sqlConn(t, dsn)
	blobs, cancel := s.Subscribe(store.TopicBlobs)
	defer cancel()
	objects, cancelObjects := s.Subscribe(store.TopicObjects)
	defer cancelObjects()
	for _, payload := range []string{"garbage", "x 999", "x y", fmt.Sprintf("elsewhere %d", store.TopicBlobs)} {
		if _, err := admin.Exec(t.Context(), `SELECT pg_notify('trustmesh_changes', $1)`, payload); err != nil {
			t.Fatalf("notify %q: %v", payload, err)
		}
	}
	waitSignal(t, blobs, "after a blob notification from elsewhere")
	drain(objects)
	if _, err := admin.Exec(t.Context(), `SELECT pg_notify('trustmesh_changes', $1)`, fmt.Sprintf("elsewhere %d", store.TopicObjects)); err != nil {
		t.Fatal(err)
	}
	waitSignal(t, objects, "after an object notification from elsewhere")
	select {
	case <-blobs:
		t.Error("blob subscriber signalled by an object notification")
	default:
	}
}

// TestElectLostWhenSessionEnds: the holder notices within seconds that the
// session holding its lock ended, and a waiting server takes the role.
func TestElectLostWhenSessionEnds(t *testing.T) {
	dsn := pgtest.Shared(t).NewTestDatabase(t)
	a, b := openStore(t, dsn), openStore(t, dsn)
	admin := sqlConn(t, dsn)

	heldA, releaseA, err := a.Elect(t.Context(), "ca-rotation")
	if err != nil {
		t.Fatalf("a.Elect: %v", err)
	}
	defer releaseA()
	type result struct {
		held    context.Context
		release func()
		err     error
	}
	won := make(chan result, 1)
	go func() {
		held, release, err := b.Elect(t.Context(), "ca-rotation")
		won <- result{held, release, err}
	}()

	// Only a's session holds the lock; b's campaign session waits.
	var holder string
	if err := admin.QueryRow(t.Context(), `SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
		WHERE l.locktype = 'advisory' AND l.granted AND a.datname = current_database()`).Scan(&holder); err != nil {
		t.Fatalf("find the lock holder: %v", err)
	}
	if holder != "trustmesh elect" {
		t.Errorf("lock holder: got %q, want %q", holder, "trustmesh elect")
	}
	if _, err := admin.Exec(t.Context(), `SELECT pg_terminate_backend(l.pid) FROM pg_locks l
		WHERE l.locktype = 'advisory' AND l.granted AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())`); err != nil {
		t.Fatalf("terminate the holder's session: %v", err)
	}
	select {
	case <-heldA.Done():
	case <-time.After(recoverTimeout):
		t.Fatalf("a's held context not cancelled within %v of its session ending", recoverTimeout)
	}
	select {
	case r := <-won:
		defer r.release()
		if r.err != nil {
			t.Fatalf("b.Elect: %v", r.err)
		}
		if r.held.Err() != nil {
			t.Errorf("b's held context is done: %v", r.held.Err())
		}
	case <-time.After(recoverTimeout):
		t.Fatalf("b did not win within %v of a losing the role", recoverTimeout)
	}
}

// TestDatabaseRestart: a database restarted mid-run is survived. Writes fail
// while it is down and work again once it is up, by themselves; every
// subscriber is signalled once the listener is back, and notifications flow
// between stores again; the held role is lost and a waiting server wins it.
func TestDatabaseRestart(t *testing.T) {
	ctx := t.Context()
	c, err := pgtest.Start(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := c.Close(); err != nil {
			t.Error(err)
		}
	})
	if c.External() {
		t.Skipf("%s is set: a restart needs a cluster pgtest starts itself", pgtest.EnvServer)
	}
	dsn := c.NewTestDatabase(t)
	a, b := openStore(t, dsn), openStore(t, dsn)

	put := func(s store.Store, data string) error {
		_, err := s.PutObject(ctx, store.Object{Kind: "Service", Namespace: "prod", Name: "web", Data: []byte(data)}, store.AnyRevision)
		return err
	}
	objects, cancel := b.Subscribe(store.TopicObjects)
	defer cancel()
	if err := put(a, `{"v":1}`); err != nil {
		t.Fatalf("PutObject before the restart: %v", err)
	}
	waitSignal(t, objects, "before the restart")

	heldA, releaseA, err := a.Elect(ctx, "ca-rotation")
	if err != nil {
		t.Fatalf("a.Elect: %v", err)
	}
	defer releaseA()
	type result struct {
		held    context.Context
		release func()
		err     error
	}
	won := make(chan result, 1)
	go func() {
		held, release, err := b.Elect(ctx, "ca-rotation")
		won <- result{held, release, err}
	}()

	if err := c.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := put(a, `{"v":"down"}`); err == nil {
		t.Errorf("PutObject while the database is down: got nil error, want one")
	}
	select {
	case <-heldA.Done():
	case <-time.After(recoverTimeout):
		t.Fatalf("a's held context not cancelled within %v of the database stopping", recoverTimeout)
	}
	drain(objects)
	if err := c.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	restarted := time.Now()

	// The listener is back: it signals everything.
	waitSignal(t, objects, "after the listener reconnected")

	// Writes work again without any help.
	deadline := time.Now().Add(recoverTimeout)
	attempts := 0
	for {
		attempts++
		err := put(a, `{"v":2}`)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("PutObject after the restart still fails after %d attempts: %v", attempts, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("writes recovered %v after the restart, at attempt %d", time.Since(restarted).Round(time.Millisecond), attempts)
	waitSignal(t, objects, "after PutObject through a after the restart")
	got, err := b.GetObject(ctx, "Service", "prod", "web")
	if err != nil || string(got.Data) != `{"v":2}` {
		t.Errorf("GetObject through b: got %q, %v, want the write made after the restart", got.Data, err)
	}

	// b's campaign survived the restart and wins the role a lost.
	select {
	case r := <-won:
		defer r.release()
		if r.err != nil {
			t.Fatalf("b.Elect: %v", r.err)
		}
		t.Logf("b won the role %v after the restart", time.Since(restarted).Round(time.Millisecond))
	case <-time.After(recoverTimeout):
		t.Fatalf("b did not win the role within %v of the restart", recoverTimeout)
	}
	// And a can campaign again, for another role.
	if _, release, err := a.Elect(ctx, "audit-checkpoints"); err != nil {
		t.Errorf("a.Elect after the restart: %v", err)
	} else {
		release()
	}
}

func benchStores(b *testing.B, durable bool) *postgres.Store {
	dsn := pgtest.Shared(b).NewTestDatabase(b)
	conn := sqlConn(b, dsn)
	var db string
	if err := conn.QueryRow(b.Context(), `SELECT current_database()`).Scan(&db); err != nil {
		b.Fatal(err)
	}
	// The harness's default is off (like the SQLite store's
	// synchronous=NORMAL); on waits for the WAL flush at every commit.
	setting := "off"
	if durable {
		setting = "on"
	}
	if _, err := conn.Exec(b.Context(), `ALTER DATABASE `+pgx.Identifier{db}.Sanitize()+` SET synchronous_commit = `+setting); err != nil {
		b.Fatal(err)
	}
	return openStore(b, dsn)
}

var benchData = []byte(`{"apiVersion":"trustmesh.dev/v1","kind":"Service","metadata":{"name":"web"},"spec":{"ports":[8080]}}`)

// BenchmarkPutObject is the SQLite store's BenchmarkPutObject on
// PostgreSQL, so object writes per second can be compared.
func BenchmarkPutObject(b *testing.B) {
	for _, durable := range []bool{false, true} {
		b.Run(fmt.Sprint("synchronous_commit=", map[bool]string{false: "off", true: "on"}[durable]), func(b *testing.B) {
			s := benchStores(b, durable)
			ctx := b.Context()
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				obj := store.Object{Kind: "Service", Namespace: "bench", Name: fmt.Sprint("svc-", i%1000), Data: benchData, Actor: "bench"}
				if _, err := s.PutObject(ctx, obj, store.AnyRevision); err != nil {
					b.Fatal(err)
				}
				i++
			}
		})
	}
}

func BenchmarkPutObjectParallel(b *testing.B) {
	for _, durable := range []bool{false, true} {
		b.Run(fmt.Sprint("synchronous_commit=", map[bool]string{false: "off", true: "on"}[durable]), func(b *testing.B) {
			s := benchStores(b, durable)
			ctx := b.Context()
			b.ReportAllocs()
			var worker atomic.Int64
			b.ResetTimer() // not the database's creation and migration
			b.RunParallel(func(pb *testing.PB) {
				w := worker.Add(1)
				i := 0
				for pb.Next() {
					obj := store.Object{Kind: "Service", Namespace: "bench", Name: fmt.Sprint("svc-", w, "-", i%1000), Data: benchData, Actor: "bench"}
					if _, err := s.PutObject(ctx, obj, store.AnyRevision); err != nil {
						b.Error(err)
						return
					}
					i++
				}
			})
		})
	}
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
	write func(ctx context.Context, s *postgres.Store, obj store.Object, rec store.AuditRecord) error
}{
	{"one transaction", func(ctx context.Context, s *postgres.Store, obj store.Object, rec store.AuditRecord) error {
		_, _, err := s.PutObjectAudited(ctx, obj, store.AnyRevision, []store.AuditRecord{rec})
		return err
	}},
	{"two transactions", func(ctx context.Context, s *postgres.Store, obj store.Object, rec store.AuditRecord) error {
		o, err := s.PutObject(ctx, obj, store.AnyRevision)
		if err != nil {
			return err
		}
		rec.Revision = o.Revision
		_, err = s.AppendAudit(ctx, rec)
		return err
	}},
}

// BenchmarkPutObjectAudited is the SQLite store's benchmark of the same
// name on PostgreSQL.
func BenchmarkPutObjectAudited(b *testing.B) {
	for _, durable := range []bool{false, true} {
		for _, tc := range auditedWrites {
			b.Run(fmt.Sprint("synchronous_commit=", map[bool]string{false: "off", true: "on"}[durable], "/", tc.name), func(b *testing.B) {
				s := benchStores(b, durable)
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
}

// BenchmarkPutObjectAuditedParallel writes from GOMAXPROCS goroutines at
// once, where the audit log's lock is contended too.
func BenchmarkPutObjectAuditedParallel(b *testing.B) {
	for _, durable := range []bool{false, true} {
		for _, tc := range auditedWrites {
			b.Run(fmt.Sprint("synchronous_commit=", map[bool]string{false: "off", true: "on"}[durable], "/", tc.name), func(b *testing.B) {
				s := benchStores(b, durable)
				ctx := b.Context()
				b.ReportAllocs()
				var (
					worker atomic.Int64
					writes atomic.Int64
				)
				b.ResetTimer() // not the database's creation and migration
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
}

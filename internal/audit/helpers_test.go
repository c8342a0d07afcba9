package audit_test

import (
	"bytes"
	"crypto/ed25519"
	"database/sql"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/trustmesh/trustmesh/internal/audit"
	"github.com/trustmesh/trustmesh/internal/store"
	"github.com/trustmesh/trustmesh/internal/store/sqlite"
)

var (
	quiet = slog.New(slog.NewTextHandler(io.Discard, nil))
	// t0 is the time of record 1; record i is written i seconds later.
	t0 = time.Date(2026, 12, 1, 9, 0, 0, 123456789, time.UTC)
)

// logEnv is a server's audit state in a temp dir: the SQLite store, the
// checkpoint key and the checkpoint file.
type logEnv struct {
	dbPath, cpFile string
	key            ed25519.PrivateKey
	pub            ed25519.PublicKey
}

// record returns the i-th test record: varied actors, outcomes and text.
func record(i int) store.AuditRecord {
	outcomes := []string{audit.OutcomeSuccess, audit.OutcomeDenied, audit.OutcomeError}
	return store.AuditRecord{
		Time:      t0.Add(time.Duration(i) * time.Second),
		Actor:     fmt.Sprintf("admin:user-%d (admin)", i%5),
		Action:    []string{"object.apply", "authz.deny", "token.create"}[i%3],
		Object:    fmt.Sprintf("Service/prod/svc-%d", i),
		Revision:  int64(i),
		Outcome:   outcomes[i%3],
		Reason:    fmt.Sprintf("reason %d: \"quoted\" = and | and \\", i),
		RequestID: fmt.Sprintf("req-%04d", i),
	}
}

// newLogEnv writes n records and signs a checkpoint after record each of
// checkpointsAt, then closes the store, as a stopped server leaves it.
func newLogEnv(t *testing.T, n int, checkpointsAt ...int64) logEnv {
	t.Helper()
	ctx := t.Context()
	dir := t.TempDir()
	e := logEnv{dbPath: filepath.Join(dir, "trustmesh.db"), cpFile: filepath.Join(dir, "audit", audit.CheckpointsFile)}
	key, _, err := audit.LoadOrCreateKey(filepath.Join(dir, "audit"))
	if err != nil {
		t.Fatal(err)
	}
	e.key, e.pub = key, key.Public().(ed25519.PublicKey)
	st, err := sqlite.Open(ctx, e.dbPath)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	clock := t0
	cp, err := audit.NewCheckpointer(ctx, audit.CheckpointerConfig{
		Store: st, Key: key, File: e.cpFile, Ticks: make(chan time.Time), Logger: quiet,
		Now: func() time.Time { clock = clock.Add(time.Minute); return clock },
	})
	if err != nil {
		t.Fatal(err)
	}
	next := 1
	appendUpTo := func(last int) {
		var batch []store.AuditRecord
		for ; next <= last; next++ {
			batch = append(batch, record(next))
		}
		if _, err := st.AppendAuditBatch(ctx, batch); err != nil {
			t.Fatal(err)
		}
	}
	for _, at := range checkpointsAt {
		appendUpTo(int(at))
		if _, ok, err := cp.Checkpoint(ctx); err != nil || !ok {
			t.Fatalf("Checkpoint at %d: got %v, %v, want a checkpoint", at, ok, err)
		}
	}
	appendUpTo(n)
	return e
}

// exec runs SQL on the store file directly, as someone with the file would.
func (e logEnv) exec(t *testing.T, stmts ...string) {
	t.Helper()
	db, err := sql.Open("sqlite", e.dbPath)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, s := range stmts {
		if _, err := db.ExecContext(t.Context(), s); err != nil {
			t.Fatalf("%s: %v", s, err)
		}
	}
}

// records reads the log as stored.
func (e logEnv) records(t *testing.T) []store.AuditRecord {
	t.Helper()
	r, err := sqlite.OpenAuditReader(t.Context(), e.dbPath)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	recs, err := r.ListAudit(t.Context(), 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	return recs
}

// verify checks the log offline, as `trustmesh audit verify --db` does.
func (e logEnv) verify(t *testing.T) (audit.Report, error) {
	t.Helper()
	ctx := t.Context()
	r, err := sqlite.OpenAuditReader(ctx, e.dbPath)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	stored, err := r.ListAuditCheckpoints(ctx, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	hw, err := r.AuditHighWater(ctx)
	if err != nil {
		t.Fatal(err)
	}
	file, err := os.ReadFile(e.cpFile)
	if err != nil {
		t.Fatal(err)
	}
	return audit.Verify(ctx, audit.VerifyConfig{
		Records: r, PageSize: 7, PublicKeys: []ed25519.PublicKey{e.pub}, Stored: stored,
		Files:     []audit.CheckpointFile{{Name: audit.CheckpointsFile, Data: bytes.NewReader(file)}},
		HighWater: hw,
	})
}

// update writes recs' content, hashes and seq back to the rows with the
// seqs in at (at[i] for recs[i]).
func (e logEnv) update(t *testing.T, at []int64, recs []store.AuditRecord) {
	t.Helper()
	db, err := sql.Open("sqlite", e.dbPath)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for i, r := range recs {
		if _, err := db.ExecContext(t.Context(), `UPDATE audit SET seq = ?, time_ns = ?, actor = ?, action = ?, object = ?, revision = ?,
			outcome = ?, reason = ?, request_id = ?, prev_hash = ?, hash = ? WHERE seq = ?`,
			r.Seq, r.Time.UnixNano(), r.Actor, r.Action, r.Object, r.Revision, r.Outcome, r.Reason, r.RequestID, r.PrevHash, r.Hash, at[i]); err != nil {
			t.Fatal(err)
		}
	}
}

// insert adds rows for recs as they are.
func (e logEnv) insert(t *testing.T, recs ...store.AuditRecord) {
	t.Helper()
	db, err := sql.Open("sqlite", e.dbPath)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, r := range recs {
		if _, err := db.ExecContext(t.Context(), `INSERT INTO audit (seq, time_ns, actor, action, object, revision, outcome, reason, request_id, prev_hash, hash)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			r.Seq, r.Time.UnixNano(), r.Actor, r.Action, r.Object, r.Revision, r.Outcome, r.Reason, r.RequestID, r.PrevHash, r.Hash); err != nil {
			t.Fatal(err)
		}
	}
}

// editCheckpointLine replaces line n (from 1) of the checkpoint file.
func (e logEnv) editCheckpointLine(t *testing.T, n int, edit func([]byte) []byte) {
	t.Helper()
	b, err := os.ReadFile(e.cpFile)
	if err != nil {
		t.Fatal(err)
	}
	lines := bytes.SplitAfter(b, []byte("\n"))
	lines[n-1] = edit(lines[n-1])
	if err := os.WriteFile(e.cpFile, bytes.Join(lines, nil), 0o600); err != nil {
		t.Fatal(err)
	}
}

package audit_test

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/trustmesh/trustmesh/internal/audit"
	"github.com/trustmesh/trustmesh/internal/store"
	"github.com/trustmesh/trustmesh/internal/store/auditchain"
)

// TestVerifyNamesTampering changes a real store file behind the store's
// back, the way someone with the file would, and checks that verify names
// the exact spot. The log has 120 records and checkpoints at 60, 100 and
// 110.
func TestVerifyNamesTampering(t *testing.T) {
	const n = 120
	checkpoints := []int64{60, 100, 110}

	// rewriteFrom changes record from and recomputes every hash after it,
	// so the chain itself is consistent again.
	rewriteFrom := func(t *testing.T, e logEnv, from int64) (oldHash, newHash map[int64]string) {
		recs := e.records(t)
		oldHash, newHash = map[int64]string{}, map[int64]string{}
		var at []int64
		var changed []store.AuditRecord
		prev := recs[from-2].Hash
		for _, r := range recs[from-1:] {
			oldHash[r.Seq] = r.Hash
			if r.Seq == from {
				r.Reason = "nothing to see here"
			}
			if err := auditchain.Link(prev, &r); err != nil {
				t.Fatal(err)
			}
			prev = r.Hash
			newHash[r.Seq] = r.Hash
			at = append(at, r.Seq)
			changed = append(changed, r)
		}
		e.update(t, at, changed)
		return oldHash, newHash
	}

	for _, tc := range []struct {
		name     string
		tamper   func(t *testing.T, e logEnv) (wantMsg string)
		wantKind audit.ProblemKind
		wantSeq  int64
	}{
		{
			name: "field of a record changed",
			tamper: func(t *testing.T, e logEnv) string {
				e.exec(t, `UPDATE audit SET reason = 'approved' WHERE seq = 42`)
				return ""
			},
			wantKind: audit.ProblemChanged, wantSeq: 42,
		},
		{
			name: "time of a record changed",
			tamper: func(t *testing.T, e logEnv) string {
				e.exec(t, `UPDATE audit SET time_ns = time_ns + 1 WHERE seq = 7`)
				return ""
			},
			wantKind: audit.ProblemChanged, wantSeq: 7,
		},
		{
			name: "hash of a record changed",
			tamper: func(t *testing.T, e logEnv) string {
				e.exec(t, `UPDATE audit SET hash = prev_hash WHERE seq = 80`)
				return ""
			},
			wantKind: audit.ProblemChanged, wantSeq: 80,
		},
		{
			name:     "middle record deleted",
			tamper:   func(t *testing.T, e logEnv) string { e.exec(t, `DELETE FROM audit WHERE seq = 17`); return "" },
			wantKind: audit.ProblemMissing, wantSeq: 17,
		},
		{
			name: "several middle records deleted",
			tamper: func(t *testing.T, e logEnv) string {
				e.exec(t, `DELETE FROM audit WHERE seq BETWEEN 17 AND 19`)
				return "records 17 to 19 are missing: sequence jumps from 16 to 20"
			},
			wantKind: audit.ProblemMissing, wantSeq: 17,
		},
		{
			name: "first record deleted",
			tamper: func(t *testing.T, e logEnv) string {
				e.exec(t, `DELETE FROM audit WHERE seq = 1`)
				return "record 1 is missing: sequence jumps from 0 to 2"
			},
			wantKind: audit.ProblemMissing, wantSeq: 1,
		},
		{
			name:     "last records deleted, past a checkpoint",
			tamper:   func(t *testing.T, e logEnv) string { e.exec(t, `DELETE FROM audit WHERE seq > 95`); return "" },
			wantKind: audit.ProblemTruncated, wantSeq: 96,
		},
		{
			name: "last records deleted, after the last checkpoint",
			tamper: func(t *testing.T, e logEnv) string {
				e.exec(t, `DELETE FROM audit WHERE seq > 112`)
				return "the log ends at 112 but the store assigned sequence numbers up to 120: records 113 to 120 were removed from the end"
			},
			wantKind: audit.ProblemTruncated, wantSeq: 113,
		},
		{
			name: "forged record appended",
			tamper: func(t *testing.T, e logEnv) string {
				forged := record(121)
				forged.Seq = 121
				if err := auditchain.Link(strings.Repeat("f", 64), &forged); err != nil {
					t.Fatal(err)
				}
				e.insert(t, forged)
				return ""
			},
			wantKind: audit.ProblemInserted, wantSeq: 121,
		},
		{
			name: "forged record inserted in the middle",
			tamper: func(t *testing.T, e logEnv) string {
				// Renumber 30.. up by one, then insert a record at 30 that
				// links correctly to 29 and hashes correctly.
				e.exec(t, `UPDATE audit SET seq = -(seq + 1) WHERE seq >= 30`, `UPDATE audit SET seq = -seq WHERE seq < 0`)
				recs := e.records(t)
				forged := record(30)
				forged.Reason = "forged"
				forged.Seq = 30
				if err := auditchain.Link(recs[28].Hash, &forged); err != nil {
					t.Fatal(err)
				}
				e.insert(t, forged)
				return "record 30 was inserted: record 31 links to record 29"
			},
			wantKind: audit.ProblemInserted, wantSeq: 30,
		},
		{
			name: "two records swapped",
			tamper: func(t *testing.T, e logEnv) string {
				recs := e.records(t)
				a, b := recs[29], recs[30]
				a.Seq, b.Seq = 31, 30
				e.update(t, []int64{30, 31}, []store.AuditRecord{{Seq: -1, Time: b.Time}, a})
				e.update(t, []int64{-1}, []store.AuditRecord{b})
				return "record 30 was inserted or reordered: its previous-hash does not match record 29"
			},
			wantKind: audit.ProblemInserted, wantSeq: 30,
		},
		{
			name: "suffix rewritten with recomputed hashes",
			tamper: func(t *testing.T, e logEnv) string {
				oldHash, newHash := rewriteFrom(t, e, 50)
				return fmt.Sprintf("checkpoint at 60 signs head hash %s but record 60 hashes to %s: records up to 60 were rewritten", oldHash[60], newHash[60])
			},
			wantKind: audit.ProblemRewritten, wantSeq: 60,
		},
		{
			name: "suffix rewritten between checkpoints",
			tamper: func(t *testing.T, e logEnv) string {
				oldHash, newHash := rewriteFrom(t, e, 61)
				return fmt.Sprintf("checkpoint at 100 signs head hash %s but record 100 hashes to %s: records up to 100 were rewritten", oldHash[100], newHash[100])
			},
			wantKind: audit.ProblemRewritten, wantSeq: 100,
		},
		{
			name: "checkpoint line changed",
			tamper: func(t *testing.T, e logEnv) string {
				e.editCheckpointLine(t, 2, func(l []byte) []byte { return bytes.Replace(l, []byte(`"seq":100`), []byte(`"seq":99`), 1) })
				return "checkpoint at 99 in checkpoints.jsonl line 2 does not verify: its signature does not verify: the line was altered or forged"
			},
			wantKind: audit.ProblemBadCheckpoint, wantSeq: 99,
		},
		{
			name: "checkpoint line garbled",
			tamper: func(t *testing.T, e logEnv) string {
				e.editCheckpointLine(t, 2, func(l []byte) []byte { return l[:40] })
				return ""
			},
			wantKind: audit.ProblemBadCheckpoint, wantSeq: 0,
		},
		{
			name: "checkpoint line signed by a stranger",
			tamper: func(t *testing.T, e logEnv) string {
				_, other, _ := ed25519.GenerateKey(rand.Reader)
				recs := e.records(t)
				forged := audit.SignCheckpoint(other, 100, recs[99].Hash, time.Now())
				e.editCheckpointLine(t, 2, func([]byte) []byte { return audit.AppendCheckpointLine(nil, forged) })
				return fmt.Sprintf("checkpoint at 100 in checkpoints.jsonl line 2 does not verify: it was signed by key %s, which is not among the public keys given: the line was altered or forged", forged.KeyID)
			},
			wantKind: audit.ProblemBadCheckpoint, wantSeq: 100,
		},
		{
			name: "stored checkpoint changed",
			tamper: func(t *testing.T, e logEnv) string {
				e.exec(t, `UPDATE audit_checkpoints SET hash = '`+strings.Repeat("0", 64)+`' WHERE seq = 60`)
				return "checkpoint at 60 in the audit_checkpoints table does not verify: its signature does not verify: it was altered or forged"
			},
			wantKind: audit.ProblemBadCheckpoint, wantSeq: 60,
		},
		{
			name: "stored checkpoint deleted",
			tamper: func(t *testing.T, e logEnv) string {
				e.exec(t, `DELETE FROM audit_checkpoints WHERE seq = 100`)
				return "checkpoint at 100 is in checkpoints.jsonl line 2 but not in the audit_checkpoints table: checkpoints were removed from the store"
			},
			wantKind: audit.ProblemCheckpointMismatch, wantSeq: 100,
		},
		{
			name: "checkpoint line deleted",
			tamper: func(t *testing.T, e logEnv) string {
				e.editCheckpointLine(t, 2, func([]byte) []byte { return nil })
				return "checkpoint at 100 is in the audit_checkpoints table but not in checkpoints.jsonl, which covers seq 60 to 110: lines were removed from the file"
			},
			wantKind: audit.ProblemCheckpointMismatch, wantSeq: 100,
		},
		{
			name: "records and stored checkpoints removed together",
			tamper: func(t *testing.T, e logEnv) string {
				e.exec(t, `DELETE FROM audit WHERE seq > 95`, `DELETE FROM audit_checkpoints WHERE seq > 95`)
				return ""
			},
			wantKind: audit.ProblemCheckpointMismatch, wantSeq: 100,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newLogEnv(t, n, checkpoints...)
			wantMsg := tc.tamper(t, e)
			_, err := e.verify(t)
			var p *audit.Problem
			if !errors.As(err, &p) {
				t.Fatalf("Verify: got error %v, want a Problem", err)
			}
			t.Logf("verify: %s", p.Message)
			if p.Kind != tc.wantKind || p.Seq != tc.wantSeq {
				t.Errorf("got %s at %d (%q), want %s at %d", p.Kind, p.Seq, p.Message, tc.wantKind, tc.wantSeq)
			}
			if wantMsg != "" && p.Message != wantMsg {
				t.Errorf("message:\n got %q\nwant %q", p.Message, wantMsg)
			}
		})
	}
}

// TestVerifyDefaultMessages pins the wording of the findings the table
// above leaves to their kind.
func TestVerifyDefaultMessages(t *testing.T) {
	for _, tc := range []struct {
		name, sql, want string
	}{
		{"changed", `UPDATE audit SET reason = 'x' WHERE seq = 42`, "record 42 was changed: its hash does not match its content"},
		{"missing", `DELETE FROM audit WHERE seq = 17`, "record 17 is missing: sequence jumps from 16 to 18"},
		{"truncated", `DELETE FROM audit WHERE seq > 95`, "the log ends at 95 but checkpoint 100 exists: records were removed from the end"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newLogEnv(t, 100, 100)
			e.exec(t, tc.sql)
			_, err := e.verify(t)
			if err == nil || err.Error() != tc.want {
				t.Errorf("got %v, want %q", err, tc.want)
			}
		})
	}
}

// TestVerifyLimits documents what the chain cannot see: changes after the
// last checkpoint by someone who also resets the store's high-water mark.
// Verify passes and says how much of the log no checkpoint covers.
func TestVerifyLimits(t *testing.T) {
	for _, tc := range []struct {
		name   string
		tamper func(t *testing.T, e logEnv)
		want   string
	}{
		{
			name: "end removed and high-water mark reset",
			tamper: func(t *testing.T, e logEnv) {
				e.exec(t, `DELETE FROM audit WHERE seq > 110`, `UPDATE sqlite_sequence SET seq = 110 WHERE name = 'audit'`)
			},
			want: "110 records, chain intact, 3 checkpoints verified, last at seq 110",
		},
		{
			name: "records after the last checkpoint rewritten",
			tamper: func(t *testing.T, e logEnv) {
				recs := e.records(t)
				prev := recs[113].Hash
				var at []int64
				var changed []store.AuditRecord
				for _, r := range recs[114:] {
					r.Reason = "rewritten"
					_ = auditchain.Link(prev, &r)
					prev = r.Hash
					at = append(at, r.Seq)
					changed = append(changed, r)
				}
				e.update(t, at, changed)
			},
			want: "10 records after seq 110 not yet covered by a checkpoint",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newLogEnv(t, 120, 60, 100, 110)
			tc.tamper(t, e)
			rep, err := e.verify(t)
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if !strings.Contains(rep.String(), tc.want) {
				t.Errorf("report:\n%s\nwant it to contain %q", rep, tc.want)
			}
		})
	}
}

func TestVerifyIntact(t *testing.T) {
	e := newLogEnv(t, 120, 60, 100, 110)
	rep, err := e.verify(t)
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if rep.Records != 120 || rep.LastSeq != 120 || rep.Checkpoints != 3 || rep.LastCheckpoint.Seq != 110 || rep.NativeFrom != 1 {
		t.Errorf("report: got %+v, want 120 records to seq 120, 3 checkpoints to 110, native from 1", rep)
	}
	want := "120 records, chain intact, 3 checkpoints verified, last at seq 110 (2026-12-01T09:03:00Z)\n" +
		"chain native from seq 1\n" +
		"10 records after seq 110 not yet covered by a checkpoint"
	if got := rep.String(); got != want {
		t.Errorf("summary:\n got %q\nwant %q", got, want)
	}
}

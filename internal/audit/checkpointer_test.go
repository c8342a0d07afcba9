package audit_test

import (
	"context"
	"crypto/ed25519"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/trustmesh/trustmesh/internal/audit"
	"github.com/trustmesh/trustmesh/internal/store"
	"github.com/trustmesh/trustmesh/internal/store/sqlite"
)

type cpEnv struct {
	st    *sqlite.Store
	key   ed25519.PrivateKey
	file  string
	ticks chan time.Time
	clock time.Time
}

func newCPEnv(t *testing.T) *cpEnv {
	t.Helper()
	dir := t.TempDir()
	st, err := sqlite.Open(t.Context(), filepath.Join(dir, "trustmesh.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	key, _, err := audit.LoadOrCreateKey(filepath.Join(dir, "audit"))
	if err != nil {
		t.Fatal(err)
	}
	return &cpEnv{st: st, key: key, file: filepath.Join(dir, "audit", audit.CheckpointsFile), ticks: make(chan time.Time), clock: t0}
}

func (e *cpEnv) checkpointer(t *testing.T) *audit.Checkpointer {
	t.Helper()
	c, err := audit.NewCheckpointer(t.Context(), audit.CheckpointerConfig{
		Store: e.st, Key: e.key, File: e.file, Ticks: e.ticks, Logger: quiet,
		Now: func() time.Time { return e.clock },
	})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func (e *cpEnv) append(t *testing.T, n int) {
	t.Helper()
	for range n {
		if _, err := e.st.AppendAudit(t.Context(), store.AuditRecord{Time: e.clock, Action: "test", Outcome: audit.OutcomeSuccess}); err != nil {
			t.Fatal(err)
		}
	}
}

// seqs returns the checkpoint seqs in the store and in the file.
func (e *cpEnv) seqs(t *testing.T) (stored, file []int64) {
	t.Helper()
	cps, err := e.st.ListAuditCheckpoints(t.Context(), 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cps {
		stored = append(stored, c.Seq)
	}
	f, err := os.Open(e.file)
	if errors.Is(err, os.ErrNotExist) {
		return stored, nil
	}
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fcs, err := audit.ReadCheckpoints(f)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range fcs {
		file = append(file, c.Seq)
	}
	return stored, file
}

func (e *cpEnv) wantSeqs(t *testing.T, want ...int64) {
	t.Helper()
	stored, file := e.seqs(t)
	if diff := cmp.Diff(want, stored); diff != "" {
		t.Errorf("stored checkpoints (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(want, file); diff != "" {
		t.Errorf("checkpoint file (-want +got):\n%s", diff)
	}
}

// tick hands Run a tick and waits until it has handled it (Run, blocked on
// its next select, is durably blocked in the bubble).
func (e *cpEnv) tick() {
	e.ticks <- e.clock
	synctest.Wait()
}

func TestCheckpointerRun(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newCPEnv(t)
		e.append(t, 3)
		c := e.checkpointer(t)
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error, 1)
		go func() { done <- c.Run(ctx) }()

		synctest.Wait() // the start-up checkpoint
		e.wantSeqs(t, 3)

		e.tick() // nothing new: nothing signed
		e.wantSeqs(t, 3)

		e.append(t, 2)
		e.clock = e.clock.Add(time.Minute)
		e.tick()
		e.wantSeqs(t, 3, 5)

		e.append(t, 1) // written during shutdown: the last checkpoint covers it
		cancel()
		if err := <-done; err != nil {
			t.Fatalf("Run: got %v, want nil", err)
		}
		e.wantSeqs(t, 3, 5, 6)

		last, err := e.st.LastAuditCheckpoint(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		head, err := e.st.AuditHead(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if last.Hash != head.Hash || !last.Time.Equal(e.clock) {
			t.Errorf("last checkpoint: got hash %s at %v, want the head's %s at %v", last.Hash, last.Time, head.Hash, e.clock)
		}
		if err := audit.VerifyCheckpoint(last, []ed25519.PublicKey{e.key.Public().(ed25519.PublicKey)}); err != nil {
			t.Errorf("VerifyCheckpoint: %v", err)
		}
	})
}

// TestCheckpointerInterval: without Ticks, Run signs every Interval (fake
// time in the bubble: the test does not wait a minute).
func TestCheckpointerInterval(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newCPEnv(t)
		c, err := audit.NewCheckpointer(t.Context(), audit.CheckpointerConfig{
			Store: e.st, Key: e.key, File: e.file, Interval: time.Minute, Logger: quiet,
		})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		go func() { _ = c.Run(ctx) }()
		synctest.Wait()
		e.wantSeqs(t)
		e.append(t, 1)
		time.Sleep(59 * time.Second)
		synctest.Wait()
		e.wantSeqs(t)
		time.Sleep(time.Second)
		synctest.Wait()
		e.wantSeqs(t, 1)
	})
}

func TestCheckpointerEmptyLog(t *testing.T) {
	e := newCPEnv(t)
	c := e.checkpointer(t)
	if _, ok, err := c.Checkpoint(t.Context()); ok || err != nil {
		t.Fatalf("Checkpoint of an empty log: got %v, %v, want nothing signed", ok, err)
	}
	e.wantSeqs(t)
}

// TestCheckpointerCatchesUpFile: a checkpoint the file missed is appended
// before the next one, so the file has no hole.
func TestCheckpointerCatchesUpFile(t *testing.T) {
	e := newCPEnv(t)
	c := e.checkpointer(t)
	e.append(t, 2)
	// A directory where the file should be makes the append fail.
	if err := os.Mkdir(e.file, 0o700); err != nil {
		t.Fatal(err)
	}
	_, ok, err := c.Checkpoint(t.Context())
	if !ok || err == nil {
		t.Fatalf("Checkpoint with an unwritable file: got %v, %v, want stored and an error", ok, err)
	}
	if err := os.Remove(e.file); err != nil {
		t.Fatal(err)
	}
	e.append(t, 1)
	if _, ok, err := c.Checkpoint(t.Context()); !ok || err != nil {
		t.Fatalf("Checkpoint: got %v, %v, want signed", ok, err)
	}
	e.wantSeqs(t, 2, 3)
}

// TestCheckpointerMissingFile: a restart that finds the file gone starts a
// new one and does not rebuild it from the store (whose checkpoints it is
// there to check).
func TestCheckpointerMissingFile(t *testing.T) {
	e := newCPEnv(t)
	e.append(t, 2)
	if _, _, err := e.checkpointer(t).Checkpoint(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(e.file); err != nil {
		t.Fatal(err)
	}
	c := e.checkpointer(t)
	e.append(t, 1)
	if _, ok, err := c.Checkpoint(t.Context()); !ok || err != nil {
		t.Fatalf("Checkpoint: got %v, %v, want signed", ok, err)
	}
	stored, file := e.seqs(t)
	if diff := cmp.Diff([]int64{2, 3}, stored); diff != "" {
		t.Errorf("stored (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]int64{3}, file); diff != "" {
		t.Errorf("file (-want +got):\n%s", diff)
	}
}

func TestCheckpointerNoticesTruncation(t *testing.T) {
	e := newCPEnv(t)
	c := e.checkpointer(t)
	e.append(t, 2)
	// A forged checkpoint ahead of the log stands in for records removed
	// from its end.
	head, _ := e.st.AuditHead(t.Context())
	if err := e.st.AppendAuditCheckpoint(t.Context(), audit.SignCheckpoint(e.key, 5, head.Hash, e.clock)); err != nil {
		t.Fatal(err)
	}
	_, ok, err := c.Checkpoint(t.Context())
	if ok || err == nil || !strings.Contains(err.Error(), "the audit log ends at 2 but checkpoint 5 exists") {
		t.Errorf("Checkpoint: got %v, %v, want an error naming the truncation", ok, err)
	}
}

func TestNewCheckpointerValidates(t *testing.T) {
	e := newCPEnv(t)
	for _, tc := range []struct {
		name string
		cfg  audit.CheckpointerConfig
		want string
	}{
		{"no store", audit.CheckpointerConfig{Key: e.key, File: e.file}, "no store"},
		{"no key", audit.CheckpointerConfig{Store: e.st, File: e.file}, "no Ed25519 key"},
		{"no file", audit.CheckpointerConfig{Store: e.st, Key: e.key}, "no checkpoint file"},
		{"negative interval", audit.CheckpointerConfig{Store: e.st, Key: e.key, File: e.file, Interval: -time.Second}, "want a positive duration"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := audit.NewCheckpointer(t.Context(), tc.cfg)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

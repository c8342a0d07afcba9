package server

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/trustmesh/trustmesh/internal/audit"
	"github.com/trustmesh/trustmesh/internal/server/adminapi"
	"github.com/trustmesh/trustmesh/internal/store"
	"github.com/trustmesh/trustmesh/internal/store/sqlite"
)

func TestAuditCheckpointsEndpoint(t *testing.T) {
	s := startTestServer(t)
	ctx := t.Context()
	admin, err := adminapi.NewClient(filepath.Join(s.cfg.DataDir, "admin"), "")
	if err != nil {
		t.Fatal(err)
	}
	auditor := credential(t, s, admin, adminapi.RoleAuditor)
	if _, _, err := s.checkpoints.Checkpoint(ctx); err != nil {
		t.Fatalf("Checkpoint: %v", err)
	}
	head, err := s.store.AuditHead(ctx)
	if err != nil {
		t.Fatal(err)
	}

	var resp adminapi.AuditCheckpointsResponse
	if err := auditor.Do(ctx, http.MethodGet, adminapi.PathAuditCheckpoints, nil, nil, &resp); err != nil {
		t.Fatalf("GET %s: %v", adminapi.PathAuditCheckpoints, err)
	}
	pubFile, err := os.ReadFile(filepath.Join(s.cfg.DataDir, "audit", audit.PublicKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	if resp.PublicKeyPEM != string(pubFile) {
		t.Errorf("publicKeyPEM: got %q, want checkpoint.pub %q", resp.PublicKeyPEM, pubFile)
	}
	if n := len(resp.Stored); n == 0 || resp.Stored[n-1].Seq != head.Seq || resp.Stored[n-1].Hash != head.Hash {
		t.Fatalf("stored checkpoints: got %+v, want the last at the head %d", resp.Stored, head.Seq)
	}
	if resp.FileError != "" || resp.FileName != audit.CheckpointsFile {
		t.Errorf("file: got name %q error %q, want %s and none", resp.FileName, resp.FileError, audit.CheckpointsFile)
	}
	if resp.HighWater != head.Seq {
		t.Errorf("highWater: got %d, want %d", resp.HighWater, head.Seq)
	}

	// The audit page carries the chain, and what the endpoint returns
	// verifies it.
	var page adminapi.AuditResponse
	if err := auditor.Do(ctx, http.MethodGet, adminapi.PathAudit, nil, nil, &page); err != nil {
		t.Fatal(err)
	}
	var recs memLog
	for _, r := range page.Items {
		recs = append(recs, store.AuditRecord{Seq: r.Seq, Time: r.Time, Actor: r.Actor, Action: r.Action, Object: r.Object, Revision: r.Revision,
			Outcome: r.Outcome, Reason: r.Reason, RequestID: r.RequestID, PrevHash: r.PrevHash, Hash: r.Hash})
	}
	keys, err := audit.ParsePublicKeys([]byte(resp.PublicKeyPEM))
	if err != nil {
		t.Fatal(err)
	}
	var stored []store.AuditCheckpoint
	for _, c := range resp.Stored {
		stored = append(stored, store.AuditCheckpoint{Seq: c.Seq, Hash: c.Hash, Time: c.Time, KeyID: c.KeyID, Signature: c.Signature})
	}
	rep, err := audit.Verify(ctx, audit.VerifyConfig{Records: recs, PublicKeys: keys, Stored: stored,
		Files: []audit.CheckpointFile{{Name: resp.FileName, Data: strings.NewReader(resp.File)}}, HighWater: resp.HighWater})
	if err != nil {
		t.Fatalf("Verify over the API's answers: %v", err)
	}
	if rep.Checkpoints != len(stored) {
		t.Errorf("checkpoints verified: got %d, want %d", rep.Checkpoints, len(stored))
	}
}

// TestAuditCheckpointAtShutdown: a clean stop signs the head, including
// records written while the server was stopping.
func TestAuditCheckpointAtShutdown(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	s, err := New(ctx, Config{DataDir: dir, TrustDomain: "unit.example", ListenAddr: "127.0.0.1:0",
		AdminListenAddr: "127.0.0.1:0", Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	admin, err := adminapi.NewClient(filepath.Join(dir, "admin"), "")
	if err != nil {
		t.Fatal(err)
	}
	if err := admin.Do(t.Context(), http.MethodPost, adminapi.PathTokens, nil, adminapi.TokenRequest{Node: "n1", TTL: time.Hour}, nil); err != nil {
		t.Fatal(err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}

	st, err := sqlite.Open(t.Context(), filepath.Join(dir, "trustmesh.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	head, err := st.AuditHead(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	file, err := os.ReadFile(filepath.Join(dir, "audit", audit.CheckpointsFile))
	if err != nil {
		t.Fatal(err)
	}
	cps, err := audit.ReadCheckpoints(bytes.NewReader(file))
	if err != nil || len(cps) == 0 {
		t.Fatalf("checkpoint file: got %d checkpoints, %v, want some", len(cps), err)
	}
	if last := cps[len(cps)-1]; last.Seq != head.Seq || last.Hash != head.Hash {
		t.Errorf("last checkpoint: got seq %d, want the head at %d", last.Seq, head.Seq)
	}
	pubs, err := audit.ReadPublicKeys(filepath.Join(dir, "audit", audit.PublicKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	if err := audit.VerifyCheckpoint(cps[len(cps)-1].AuditCheckpoint, pubs); err != nil {
		t.Errorf("VerifyCheckpoint: %v", err)
	}
}

// memLog serves records from memory.
type memLog []store.AuditRecord

func (l memLog) ListAudit(_ context.Context, after int64, limit int) ([]store.AuditRecord, error) {
	var out []store.AuditRecord
	for _, r := range l {
		if r.Seq > after && (limit == 0 || len(out) < limit) {
			out = append(out, r)
		}
	}
	return out, nil
}

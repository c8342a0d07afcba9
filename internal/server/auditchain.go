package server

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/trustmesh/trustmesh/internal/audit"
	"github.com/trustmesh/trustmesh/internal/server/adminapi"
)

// auditDir is DATA_DIR/audit: the checkpoint key, its public key and the
// checkpoint file, kept apart from the store.
const auditDir = "audit"

// minCheckpointInterval keeps a typo from turning the signer into a loop.
const minCheckpointInterval = time.Second

// maxCheckpointPage bounds one read of stored checkpoints.
const maxCheckpointPage = 10_000

// newCheckpointer loads (or, on first start, creates) the checkpoint key and
// builds the signer. The key is never logged; its ID is.
func (s *Server) newCheckpointer(ctx context.Context) (*audit.Checkpointer, error) {
	interval := s.cfg.AuditCheckpointInterval
	switch {
	case interval == 0:
		interval = audit.DefaultCheckpointInterval
	case interval < minCheckpointInterval:
		return nil, fmt.Errorf("--audit-checkpoint-interval %v: want %v or more, e.g. 1m", interval, minCheckpointInterval)
	}
	dir := filepath.Join(s.cfg.DataDir, auditDir)
	var (
		key     ed25519.PrivateKey
		created bool
		err     error
	)
	if s.shared {
		key, created, err = audit.LoadOrCreateSharedKey(ctx, s.store, s.kek, dir)
	} else {
		key, created, err = audit.LoadOrCreateKey(dir)
	}
	if err != nil {
		return nil, fmt.Errorf("load audit checkpoint key: %w", err)
	}
	cp, err := audit.NewCheckpointer(ctx, audit.CheckpointerConfig{
		Store:    s.store,
		Key:      key,
		File:     filepath.Join(dir, audit.CheckpointsFile),
		Shared:   s.shared,
		Interval: interval,
		Now:      s.cfg.Now,
		Logger:   s.cfg.Logger,
	})
	if err != nil {
		return nil, err
	}
	if created {
		s.log.Info("created audit checkpoint key", "key_id", audit.KeyID(cp.PublicKey()),
			"public_key", filepath.Join(dir, audit.PublicKeyFile))
	}
	return cp, nil
}

// startCheckpoints runs the checkpointer, whenever this replica is elected
// to sign, until stop is called. It runs outside Run's errgroup so that its
// last checkpoint, signed as it stops, comes after every other component
// has stopped and covers every record they wrote on their way out.
func (s *Server) startCheckpoints(ctx context.Context) (stop func()) {
	cctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.runElected(cctx, roleCheckpoints, func(held context.Context) {
			_ = s.checkpoints.Run(held) // logs its own failures; nil when cancelled
		})
	}()
	return func() {
		cancel()
		<-done
	}
}

// auditHighWater is implemented by stores that track the highest sequence
// number they ever assigned (sqlite.Store).
type auditHighWater interface {
	AuditHighWater(ctx context.Context) (int64, error)
}

// handleAuditCheckpoints serves what `trustmesh audit verify` needs besides
// the records: the public key, the stored checkpoints and the checkpoint
// file as it is on disk, so the client checks both itself.
func (s *Server) handleAuditCheckpoints(w http.ResponseWriter, r *http.Request, _ operator) {
	pub, err := audit.EncodePublicKey(s.checkpoints.PublicKey())
	if err != nil {
		s.log.Error("encode audit checkpoint public key", "error", err)
		writeError(w, http.StatusInternalServerError, "could not encode the checkpoint public key; see the server log")
		return
	}
	out := adminapi.AuditCheckpointsResponse{
		PublicKeyPEM: string(pub),
		Stored:       []adminapi.AuditCheckpoint{},
		FileName:     audit.CheckpointsFile,
	}
	for after := int64(0); ; {
		cps, err := s.store.ListAuditCheckpoints(r.Context(), after, maxCheckpointPage)
		if err != nil {
			s.log.Error("list audit checkpoints", "error", err)
			writeError(w, http.StatusInternalServerError, "could not read the audit checkpoints; see the server log")
			return
		}
		for _, c := range cps {
			out.Stored = append(out.Stored, adminapi.AuditCheckpoint{Seq: c.Seq, Hash: c.Hash, Time: c.Time, KeyID: c.KeyID, Signature: c.Signature})
		}
		if len(cps) < maxCheckpointPage {
			break
		}
		after = cps[len(cps)-1].Seq
	}
	file, err := os.ReadFile(filepath.Join(s.cfg.DataDir, auditDir, audit.CheckpointsFile))
	switch {
	case errors.Is(err, fs.ErrNotExist):
		out.FileError = "the server has no checkpoint file " + filepath.Join(auditDir, audit.CheckpointsFile)
	case err != nil:
		s.log.Error("read audit checkpoint file", "error", err)
		out.FileError = "the server could not read its checkpoint file; see the server log"
	default:
		out.File = string(file)
	}
	if hw, ok := s.store.(auditHighWater); ok {
		if out.HighWater, err = hw.AuditHighWater(r.Context()); err != nil {
			s.log.Error("read audit high-water mark", "error", err)
			writeError(w, http.StatusInternalServerError, "could not read the audit log; see the server log")
			return
		}
	}
	writeJSON(w, http.StatusOK, out)
}

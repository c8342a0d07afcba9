package audit

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"sync"
	"time"

	"github.com/trustmesh/trustmesh/internal/store"
)

// DefaultCheckpointInterval is how often a Checkpointer signs by default.
const DefaultCheckpointInterval = time.Minute

// shutdownCheckpointTimeout bounds the checkpoint signed when Run stops.
const shutdownCheckpointTimeout = 5 * time.Second

// CheckpointStore is what a Checkpointer needs of the store.
type CheckpointStore interface {
	AuditHead(ctx context.Context) (store.AuditRecord, error)
	AppendAuditCheckpoint(ctx context.Context, c store.AuditCheckpoint) error
	ListAuditCheckpoints(ctx context.Context, after int64, limit int) ([]store.AuditCheckpoint, error)
	LastAuditCheckpoint(ctx context.Context) (store.AuditCheckpoint, error)
}

var _ CheckpointStore = store.Store(nil)

// CheckpointerConfig configures a Checkpointer.
type CheckpointerConfig struct {
	// Store holds the log and the checkpoint table (required).
	Store CheckpointStore
	// Key signs the checkpoints (required; see LoadOrCreateKey).
	Key ed25519.PrivateKey
	// File is the checkpoint file each checkpoint is appended to, apart
	// from the store (required).
	File string
	// Shared: the store is shared by several server replicas and File is
	// this replica's copy. Checkpoints are signed by whichever replica is
	// elected, so a missing file is normal (a new replica) and is filled
	// from the store, and CatchUp copies the others' checkpoints.
	Shared bool
	// Interval between checkpoints (default DefaultCheckpointInterval).
	Interval time.Duration
	// Ticks, if set, replaces the interval's ticker: a checkpoint is due at
	// every value received (tests send them by hand).
	Ticks <-chan time.Time
	// Now stamps checkpoints (default time.Now).
	Now    func() time.Time
	Logger *slog.Logger
}

// Checkpointer signs checkpoints of the audit log: at start, at every
// interval and when it stops, each time only if the log has grown since the
// last checkpoint. Each one goes to the store's table first and then to the
// file; a checkpoint the file missed (a failed write) is appended to it
// before the next one, so the file catches up rather than keeping a hole.
type Checkpointer struct {
	cfg   CheckpointerConfig
	log   *slog.Logger
	pub   ed25519.PublicKey
	mu    sync.Mutex
	ticks <-chan time.Time
	// fileSeq is the last checkpoint known to be in the file; -1 when the
	// file could not be read, so it is not backfilled.
	fileSeq int64
}

// NewCheckpointer validates cfg and reads where the checkpoint file ends.
func NewCheckpointer(ctx context.Context, cfg CheckpointerConfig) (*Checkpointer, error) {
	switch {
	case cfg.Store == nil:
		return nil, errors.New("checkpointer: no store")
	case len(cfg.Key) != ed25519.PrivateKeySize:
		return nil, errors.New("checkpointer: no Ed25519 key")
	case cfg.File == "":
		return nil, errors.New("checkpointer: no checkpoint file")
	case cfg.Interval < 0:
		return nil, fmt.Errorf("audit checkpoint interval %v: want a positive duration", cfg.Interval)
	}
	if cfg.Interval == 0 {
		cfg.Interval = DefaultCheckpointInterval
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	pub, _ := cfg.Key.Public().(ed25519.PublicKey)
	c := &Checkpointer{cfg: cfg, log: cfg.Logger.With("component", "audit-checkpoint"), pub: pub, ticks: cfg.Ticks}

	last, err := lastCheckpointInFile(cfg.File)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		stored, err := cfg.Store.LastAuditCheckpoint(ctx)
		switch {
		case errors.Is(err, store.ErrNotFound):
		case err != nil:
			return nil, fmt.Errorf("checkpointer: %w", err)
		case cfg.Shared:
			last = 0 // catchUpFile copies the stored ones
		default:
			// Not rebuilt from the table: the file is the copy kept apart
			// from the store, and its loss is for verify to report.
			c.log.Error("the audit checkpoint file is missing while the store holds checkpoints; starting a new file",
				"file", cfg.File, "last_stored_seq", stored.Seq)
			last = stored.Seq
		}
	case err != nil:
		c.log.Error("cannot read the end of the audit checkpoint file; appending without catching up", "file", cfg.File, "error", err)
		last = -1
	}
	c.fileSeq = last
	return c, nil
}

// PublicKey returns the key that verifies this checkpointer's signatures.
func (c *Checkpointer) PublicKey() ed25519.PublicKey { return c.pub }

// Run signs a checkpoint now, then at every interval, and a last one when
// ctx is cancelled (the clean shutdown). Failures are logged and retried at
// the next interval; Run returns nil when ctx is cancelled.
func (c *Checkpointer) Run(ctx context.Context) error {
	ticks := c.ticks
	if ticks == nil {
		t := time.NewTicker(c.cfg.Interval)
		defer t.Stop()
		ticks = t.C
	}
	c.checkpointLogged(ctx)
	for {
		select {
		case <-ctx.Done():
			sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownCheckpointTimeout)
			c.checkpointLogged(sctx)
			cancel()
			return nil
		case <-ticks:
			c.checkpointLogged(ctx)
		}
	}
}

func (c *Checkpointer) checkpointLogged(ctx context.Context) {
	cp, ok, err := c.Checkpoint(ctx)
	switch {
	case err != nil:
		c.log.Error("audit checkpoint failed", "error", err)
	case ok:
		c.log.Debug("audit checkpoint signed", "seq", cp.Seq, "hash", cp.Hash, "key_id", cp.KeyID)
	}
}

// Checkpoint signs the log's head now if it moved past the last
// checkpoint, and reports whether it did.
func (c *Checkpointer) Checkpoint(ctx context.Context) (store.AuditCheckpoint, bool, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	head, err := c.cfg.Store.AuditHead(ctx)
	if errors.Is(err, store.ErrNotFound) {
		head = store.AuditRecord{}
	} else if err != nil {
		return store.AuditCheckpoint{}, false, fmt.Errorf("read audit head: %w", err)
	}
	last, err := c.cfg.Store.LastAuditCheckpoint(ctx)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return store.AuditCheckpoint{}, false, err
	}
	if err := c.catchUpFile(ctx, last.Seq); err != nil {
		c.log.Error("audit checkpoint file is behind the store", "file", c.cfg.File, "error", err)
	}
	switch {
	case head.Seq < last.Seq:
		return store.AuditCheckpoint{}, false, fmt.Errorf("the audit log ends at %d but checkpoint %d exists: records were removed from the end; run trustmesh audit verify", head.Seq, last.Seq)
	case head.Seq == last.Seq:
		return store.AuditCheckpoint{}, false, nil
	}
	cp := SignCheckpoint(c.cfg.Key, head.Seq, head.Hash, c.cfg.Now())
	if err := c.cfg.Store.AppendAuditCheckpoint(ctx, cp); err != nil {
		return store.AuditCheckpoint{}, false, err
	}
	if err := appendCheckpointFile(c.cfg.File, cp); err != nil {
		// It is in the store; the next call appends it to the file.
		return cp, true, fmt.Errorf("append checkpoint %d to %s: %w", cp.Seq, c.cfg.File, err)
	}
	if c.fileSeq >= 0 {
		c.fileSeq = cp.Seq
	}
	return cp, true, nil
}

// CatchUp appends to the file the checkpoints other replicas stored since
// its last one (Shared; a replica that is not elected to sign calls it
// periodically, so that every replica's file witnesses the whole log).
func (c *Checkpointer) CatchUp(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	last, err := c.cfg.Store.LastAuditCheckpoint(ctx)
	if errors.Is(err, store.ErrNotFound) {
		return nil
	} else if err != nil {
		return err
	}
	return c.catchUpFile(ctx, last.Seq)
}

// catchUpFile appends to the file the stored checkpoints after the file's
// last one, up to storedLast.
func (c *Checkpointer) catchUpFile(ctx context.Context, storedLast int64) error {
	if c.fileSeq < 0 || storedLast <= c.fileSeq {
		return nil
	}
	for c.fileSeq < storedLast {
		cps, err := c.cfg.Store.ListAuditCheckpoints(ctx, c.fileSeq, 1000)
		if err != nil {
			return err
		}
		if len(cps) == 0 {
			return nil
		}
		if err := appendCheckpointFile(c.cfg.File, cps...); err != nil {
			return err
		}
		c.fileSeq = cps[len(cps)-1].Seq
	}
	return nil
}

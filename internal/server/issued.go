package server

import (
	"context"
	"sync"
	"time"

	"github.com/trustmesh/trustmesh/internal/store"
)

// issuedLog persists issued-credential records with group commit: calls
// that arrive while a write is in flight are merged into the next write, so
// concurrent mints share one transaction instead of queueing for the
// single SQLite writer one by one. Every caller still returns only after its
// records are committed (an SVID is never handed out unrecorded).
//
// There is no background goroutine: the first caller to find no write in
// flight becomes the leader and writes batches until none are pending.
type issuedLog struct {
	st store.Store
	// onCommit, if set, is told about every committed batch and how long
	// the write took (metrics).
	onCommit func([]store.Issued, time.Duration)
	mu       sync.Mutex
	writing  bool
	next     *issuedBatch // accumulating while a write is in flight
}

type issuedBatch struct {
	recs []store.Issued
	done chan struct{}
	err  error
}

func newIssuedLog(st store.Store) *issuedLog {
	return &issuedLog{st: st, next: &issuedBatch{done: make(chan struct{})}}
}

// record returns once recs are committed, or with the write's error.
func (l *issuedLog) record(ctx context.Context, recs []store.Issued) error {
	l.mu.Lock()
	mine := l.next
	mine.recs = append(mine.recs, recs...)
	if l.writing {
		l.mu.Unlock()
		select {
		case <-mine.done:
			return mine.err
		case <-ctx.Done():
			// The records may still be committed by the leader; the
			// caller hands out nothing, which is the safe side.
			return ctx.Err()
		}
	}
	l.writing = true
	// The leader writes on behalf of others: its own cancellation must not
	// fail their records.
	wctx := context.WithoutCancel(ctx)
	for {
		b := l.next
		l.next = &issuedBatch{done: make(chan struct{})}
		l.mu.Unlock()
		start := time.Now()
		b.err = l.st.RecordIssued(wctx, b.recs)
		if b.err == nil && l.onCommit != nil {
			l.onCommit(b.recs, time.Since(start))
		}
		close(b.done)
		l.mu.Lock()
		if len(l.next.recs) == 0 {
			l.writing = false
			l.mu.Unlock()
			return mine.err
		}
	}
}

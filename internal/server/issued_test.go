package server

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/trustmesh/trustmesh/internal/store"
	"github.com/trustmesh/trustmesh/internal/store/sqlite"
)

// TestIssuedLogGroupCommit: many concurrent callers each get their records
// committed exactly once, in fewer transactions than calls.
func TestIssuedLogGroupCommit(t *testing.T) {
	st, err := sqlite.Open(context.Background(), t.TempDir()+"/s.db")
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	counting := &countingStore{Store: st}
	l := newIssuedLog(counting)
	const callers = 200
	var wg sync.WaitGroup
	for i := range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := l.record(context.Background(), []store.Issued{{Serial: fmt.Sprint(i + 1), SPIFFEID: "spiffe://x/y", Kind: "x509-svid"}}); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	got, err := st.ListIssued(context.Background(), "", 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != callers {
		t.Fatalf("got %d records, want %d", len(got), callers)
	}
	seen := map[string]bool{}
	for _, r := range got {
		if seen[r.Serial] {
			t.Fatalf("serial %s recorded twice", r.Serial)
		}
		seen[r.Serial] = true
	}
	t.Logf("%d calls in %d transactions", callers, counting.calls())
}

// TestIssuedLogError: a failed write reaches every caller of that batch.
func TestIssuedLogError(t *testing.T) {
	l := newIssuedLog(&failingStore{})
	err := l.record(context.Background(), []store.Issued{{Serial: "1"}})
	if !errors.Is(err, errBoom) {
		t.Fatalf("got %v, want the store's error", err)
	}
	// The log is usable again after a failure.
	if err := l.record(context.Background(), []store.Issued{{Serial: "2"}}); !errors.Is(err, errBoom) {
		t.Fatalf("second call: got %v", err)
	}
}

type countingStore struct {
	store.Store
	mu sync.Mutex
	n  int
}

func (c *countingStore) RecordIssued(ctx context.Context, recs []store.Issued) error {
	c.mu.Lock()
	c.n++
	c.mu.Unlock()
	return c.Store.RecordIssued(ctx, recs)
}

func (c *countingStore) calls() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n
}

var errBoom = errors.New("disk full")

type failingStore struct{ store.Store }

func (failingStore) RecordIssued(context.Context, []store.Issued) error { return errBoom }

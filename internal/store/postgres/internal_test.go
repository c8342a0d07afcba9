package postgres

import (
	"context"
	"log/slog"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/trustmesh/trustmesh/internal/store"
	"github.com/trustmesh/trustmesh/internal/store/postgres/pgtest"
)

// recorder is a slog.Handler that keeps the messages logged.
type recorder struct {
	mu   sync.Mutex
	msgs []string
}

func (r *recorder) Enabled(context.Context, slog.Level) bool { return true }
func (r *recorder) WithAttrs([]slog.Attr) slog.Handler       { return r }
func (r *recorder) WithGroup(string) slog.Handler            { return r }
func (r *recorder) Handle(_ context.Context, rec slog.Record) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.msgs = append(r.msgs, rec.Message)
	return nil
}

func (r *recorder) messages() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.msgs...)
}

// TestIdleListenerPings: an idle listener's wait times out and it pings its
// connection, which stays usable: no reconnect, and notifications keep
// arriving.
func TestIdleListenerPings(t *testing.T) {
	dsn := pgtest.Shared(t).NewTestDatabase(t)
	var logs recorder
	idle := func(o *options) { o.listenIdle = 20 * time.Millisecond }
	a, err := Open(t.Context(), dsn, idle, WithLogger(slog.New(&logs)))
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := Open(t.Context(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	ch, cancel := a.Subscribe(store.TopicBlobs)
	defer cancel()

	for i := range 5 {
		// Several idle timeouts pass between notifications.
		time.Sleep(100 * time.Millisecond)
		if _, err := b.PutBlob(t.Context(), "k", []byte{byte(i)}, store.AnyRevision); err != nil {
			t.Fatal(err)
		}
		select {
		case <-ch:
		case <-time.After(10 * time.Second):
			t.Fatalf("write %d: no notification", i)
		}
	}
	for _, m := range logs.messages() {
		if strings.HasPrefix(m, "listener:") {
			t.Errorf("listener logged %q, want no reconnect", m)
		}
	}
}

// TestCloseLeavesNoGoroutine: Close stops the listener and every held role.
func TestCloseLeavesNoGoroutine(t *testing.T) {
	dsn := pgtest.Shared(t).NewTestDatabase(t)
	before := runtime.NumGoroutine()
	a, err := Open(t.Context(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	b, err := Open(t.Context(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := a.Elect(t.Context(), "role"); err != nil {
		t.Fatal(err)
	}
	campaign := make(chan error, 1)
	go func() {
		_, _, err := b.Elect(t.Context(), "role")
		campaign <- err
	}()
	_, cancel := b.Subscribe(store.TopicAll)
	defer cancel()
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-campaign; err == nil {
		t.Errorf("a campaign on a closed store: got nil error, want one")
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<16)
			t.Fatalf("%d goroutines after Close, %d before:\n%s", runtime.NumGoroutine(), before, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(10 * time.Millisecond)
	}
}

package storetest

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/trustmesh/trustmesh/internal/store"
)

const (
	// electTimeout bounds the wait for a role to be granted or lost. A
	// successor campaigns about once a second, so it is a few seconds in
	// a correct store.
	electTimeout = 15 * time.Second
	// blockedFor is how long a campaign for a held role is watched to
	// prove it blocks. A store that does not exclude would grant at its
	// first try, well within it.
	blockedFor = 1500 * time.Millisecond
)

// electResult is what one Elect call returned.
type electResult struct {
	held    context.Context
	release func()
	err     error
}

// campaign calls s.Elect(ctx, name) in a goroutine, which ends when Elect
// returns: ctx must end with the test.
func campaign(ctx context.Context, s store.Store, name string) <-chan electResult {
	ch := make(chan electResult, 1)
	go func() {
		held, release, err := s.Elect(ctx, name)
		ch <- electResult{held, release, err}
	}()
	return ch
}

// granted waits for a campaign to win, and registers its release.
func granted(t *testing.T, ch <-chan electResult, what string) (context.Context, func()) {
	t.Helper()
	select {
	case r := <-ch:
		t.Cleanup(r.release)
		if r.err != nil {
			t.Fatalf("%s: Elect: %v", what, r.err)
		}
		return r.held, r.release
	case <-time.After(electTimeout):
		t.Fatalf("%s: role not granted within %v", what, electTimeout)
		return nil, nil
	}
}

// blocked checks that a campaign has not returned for blockedFor.
func blocked(t *testing.T, ch <-chan electResult, what string) {
	t.Helper()
	select {
	case r := <-ch:
		r.release()
		t.Fatalf("%s: Elect returned (error %v) while another store held the role, want it to block", what, r.err)
	case <-time.After(blockedFor):
	}
}

// elect wins the role name on s, failing the test if that takes longer
// than electTimeout.
func elect(t *testing.T, s store.Store, name string) (context.Context, func()) {
	t.Helper()
	return granted(t, campaign(t.Context(), s, name), "Elect("+name+")")
}

func waitDone(t *testing.T, ctx context.Context, what string) {
	t.Helper()
	select {
	case <-ctx.Done():
	case <-time.After(electTimeout):
		t.Fatalf("%s: held context not cancelled within %v", what, electTimeout)
	}
}

func expectHeld(t *testing.T, ctx context.Context, what string) {
	t.Helper()
	if err := ctx.Err(); err != nil {
		t.Fatalf("%s: held context is done (%v), want the role held", what, err)
	}
}

func testElect(t *testing.T, s store.Store) {
	ctx := t.Context()

	held, release := elect(t, s, "ca-rotation")
	expectHeld(t, held, "after Elect")
	// Another role is independent of the first.
	other, releaseOther := elect(t, s, "audit-checkpoints")
	expectHeld(t, other, "second role")

	release()
	waitDone(t, held, "after release")
	release() // idempotent
	expectHeld(t, other, "second role after releasing the first")
	releaseOther()
	waitDone(t, other, "after releasing the second role")

	// The role can be taken again once released.
	again, releaseAgain := elect(t, s, "ca-rotation")
	expectHeld(t, again, "after Elect again")
	releaseAgain()
	waitDone(t, again, "after releasing again")

	// The held context is derived from the campaign's.
	parent, cancel := context.WithCancel(ctx)
	defer cancel()
	derived, releaseDerived := granted(t, campaign(parent, s, "sweeper"), "Elect(sweeper)")
	cancel()
	waitDone(t, derived, "after the campaign's context was cancelled")
	releaseDerived()

	// A campaign whose context is done fails, with its error.
	done, cancelDone := context.WithCancel(ctx)
	cancelDone()
	_, releaseNone, err := s.Elect(done, "sweeper")
	releaseNone()
	if !errors.Is(err, context.Canceled) {
		t.Errorf("Elect with a cancelled context: got %v, want context.Canceled", err)
	}
}

func testElectClose(t *testing.T, s store.Store) {
	held, _ := elect(t, s, "ca-rotation")
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	waitDone(t, held, "after Close")
}

package storetest

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/trustmesh/trustmesh/internal/store"
)

func tokenHash(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(sum[:])
}

func createToken(t *testing.T, s store.Store, secret string, expires time.Time) store.JoinToken {
	t.Helper()
	tok := store.JoinToken{
		Hash:      tokenHash(secret),
		Node:      "node-" + secret,
		CreatedAt: base,
		ExpiresAt: expires,
		CreatedBy: "admin:alice",
	}
	if err := s.CreateJoinToken(t.Context(), tok); err != nil {
		t.Fatalf("CreateJoinToken: %v", err)
	}
	return tok
}

func testJoinTokenConcurrentUse(t *testing.T, s store.Store) {
	const callers = 32
	tok := createToken(t, s, "race", base.Add(time.Hour))
	now := base.Add(time.Minute + 7*time.Nanosecond)

	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		consumed []store.JoinToken
		errs     []error
	)
	start := make(chan struct{})
	for range callers {
		wg.Go(func() {
			<-start
			got, err := s.UseJoinToken(t.Context(), tok.Hash, now)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, err)
				return
			}
			consumed = append(consumed, got)
		})
	}
	close(start)
	wg.Wait()

	if len(consumed) != 1 {
		t.Fatalf("successful uses: got %d, want 1", len(consumed))
	}
	for _, err := range errs {
		if !errors.Is(err, store.ErrTokenUsed) {
			t.Errorf("losing caller: got error %v, want ErrTokenUsed", err)
		}
	}
	want := tok
	want.UsedAt = now
	if diff := cmp.Diff(want, consumed[0]); diff != "" {
		t.Errorf("consumed token (-want +got):\n%s", diff)
	}
	for what, tm := range map[string]time.Time{
		"CreatedAt": consumed[0].CreatedAt, "ExpiresAt": consumed[0].ExpiresAt, "UsedAt": consumed[0].UsedAt,
	} {
		checkUTC(t, what, tm)
	}
	if _, err := s.UseJoinToken(t.Context(), tok.Hash, now); !errors.Is(err, store.ErrTokenUsed) {
		t.Errorf("use after the race: got error %v, want ErrTokenUsed", err)
	}
}

func testJoinTokenErrors(t *testing.T, s store.Store) {
	ctx := t.Context()
	expires := base.Add(time.Hour)
	tok := createToken(t, s, "expiring", expires)

	for _, tc := range []struct {
		name    string
		hash    string
		now     time.Time
		wantErr error
	}{
		{"unknown", tokenHash("unknown"), base, store.ErrNotFound},
		{"past expiry", tok.Hash, expires.Add(time.Second), store.ErrTokenExpired},
		{"exactly at expiry", tok.Hash, expires, store.ErrTokenExpired},
		{"one nanosecond past expiry", tok.Hash, expires.Add(time.Nanosecond), store.ErrTokenExpired},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := s.UseJoinToken(ctx, tc.hash, tc.now); !errors.Is(err, tc.wantErr) {
				t.Errorf("UseJoinToken: got error %v, want %v", err, tc.wantErr)
			}
		})
	}

	// The failed attempts must not have consumed the token: it still works
	// before its expiry, once.
	now := expires.Add(-time.Nanosecond)
	got, err := s.UseJoinToken(ctx, tok.Hash, now)
	if err != nil {
		t.Fatalf("UseJoinToken before expiry after expired attempts: %v", err)
	}
	if !got.UsedAt.Equal(now) {
		t.Errorf("UsedAt: got %v, want %v", got.UsedAt, now)
	}
	if _, err := s.UseJoinToken(ctx, tok.Hash, now); !errors.Is(err, store.ErrTokenUsed) {
		t.Errorf("second use: got error %v, want ErrTokenUsed", err)
	}
}

func testJoinTokenValidation(t *testing.T, s store.Store) {
	ctx := t.Context()
	createToken(t, s, "dup", base.Add(time.Hour))
	good := store.JoinToken{Hash: tokenHash("good"), Node: "n", CreatedAt: base, ExpiresAt: base.Add(time.Hour), CreatedBy: "a"}

	for _, tc := range []struct {
		name   string
		modify func(*store.JoinToken)
	}{
		{"duplicate hash", func(tok *store.JoinToken) { tok.Hash = tokenHash("dup") }},
		{"raw secret instead of hash", func(tok *store.JoinToken) { tok.Hash = "secret" }},
		{"upper case hash", func(tok *store.JoinToken) { tok.Hash = "A" + tok.Hash[1:] }},
		{"no expiry", func(tok *store.JoinToken) { tok.ExpiresAt = time.Time{} }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tok := good
			tc.modify(&tok)
			if err := s.CreateJoinToken(ctx, tok); err == nil {
				t.Errorf("CreateJoinToken: got nil error, want one")
			}
		})
	}
	// The duplicate attempt must not have replaced the first token.
	got, err := s.UseJoinToken(ctx, tokenHash("dup"), base)
	if err != nil {
		t.Fatalf("UseJoinToken: %v", err)
	}
	if got.Node != "node-dup" {
		t.Errorf("Node: got %q, want %q", got.Node, "node-dup")
	}
}

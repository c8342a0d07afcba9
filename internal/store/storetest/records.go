package storetest

import (
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/trustmesh/trustmesh/internal/store"
)

func testNodes(t *testing.T, s store.Store) {
	ctx := t.Context()
	b := store.Node{Name: "b-node", SPIFFEID: "spiffe://example.org/node/b", AttestedAt: base, Serial: "1001", ExpiresAt: base.Add(time.Hour)}
	a := store.Node{Name: "a-node", SPIFFEID: "spiffe://example.org/node/a", AttestedAt: base.Add(time.Second)}
	upper := store.Node{Name: "Z-node", SPIFFEID: "spiffe://example.org/node/z", AttestedAt: base}
	for _, n := range []store.Node{b, a, upper} {
		if err := s.PutNode(ctx, n); err != nil {
			t.Fatalf("PutNode(%s): %v", n.Name, err)
		}
	}

	got, err := s.GetNode(ctx, "b-node")
	if err != nil {
		t.Fatalf("GetNode: %v", err)
	}
	if diff := cmp.Diff(b, got); diff != "" {
		t.Errorf("GetNode (-want +got):\n%s", diff)
	}
	checkUTC(t, "AttestedAt", got.AttestedAt)

	// Replace: the record is the new one, zero ExpiresAt included.
	b2 := store.Node{Name: "b-node", SPIFFEID: "spiffe://example.org/node/b", AttestedAt: base.Add(time.Minute), Serial: "1002"}
	if err := s.PutNode(ctx, b2); err != nil {
		t.Fatalf("PutNode(replace): %v", err)
	}
	got, err = s.GetNode(ctx, "b-node")
	if err != nil {
		t.Fatalf("GetNode after replace: %v", err)
	}
	if diff := cmp.Diff(b2, got); diff != "" {
		t.Errorf("GetNode after replace (-want +got):\n%s", diff)
	}
	if !got.ExpiresAt.IsZero() {
		t.Errorf("ExpiresAt: got %v, want zero", got.ExpiresAt)
	}

	list, err := s.ListNodes(ctx)
	if err != nil {
		t.Fatalf("ListNodes: %v", err)
	}
	if diff := cmp.Diff([]store.Node{upper, a, b2}, list); diff != "" {
		t.Errorf("ListNodes (-want +got):\n%s", diff)
	}

	if _, err := s.GetNode(ctx, "nope"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("GetNode(unknown): got error %v, want ErrNotFound", err)
	}
	if err := s.PutNode(ctx, store.Node{SPIFFEID: "spiffe://example.org/node/x"}); err == nil {
		t.Errorf("PutNode without a name: got nil error, want one")
	}
}

func testIssued(t *testing.T, s store.Store) {
	ctx := t.Context()
	const (
		web = "spiffe://example.org/ns/prod/sa/web"
		db  = "spiffe://example.org/ns/prod/sa/db"
	)
	issued := func(serial, id, kind string, offset time.Duration) store.Issued {
		return store.Issued{
			Serial: serial, SPIFFEID: id, Kind: kind, Node: "node-1", Authority: "ca-1",
			NotBefore: base.Add(offset), NotAfter: base.Add(offset + time.Hour),
		}
	}
	first := issued("1", web, "x509-svid", 0)
	second := issued("2", db, "x509-svid", time.Second)
	third := issued("", web, "jwt-svid", 2*time.Second) // JWT-SVIDs have no serial
	fourth := issued("4", web, "x509-svid", 3*time.Second)

	if err := s.RecordIssued(ctx, []store.Issued{first, second, third}); err != nil {
		t.Fatalf("RecordIssued(batch): %v", err)
	}
	if err := s.RecordIssued(ctx, []store.Issued{fourth}); err != nil {
		t.Fatalf("RecordIssued(single): %v", err)
	}
	if err := s.RecordIssued(ctx, nil); err != nil {
		t.Fatalf("RecordIssued(empty): %v", err)
	}

	for _, tc := range []struct {
		name     string
		spiffeID string
		limit    int
		want     []store.Issued
	}{
		{"all", "", 0, []store.Issued{fourth, third, second, first}},
		{"all limited", "", 3, []store.Issued{fourth, third, second}},
		{"one ID", web, 0, []store.Issued{fourth, third, first}},
		{"one ID limited", web, 2, []store.Issued{fourth, third}},
		{"other ID", db, 0, []store.Issued{second}},
		{"unknown ID", "spiffe://example.org/nope", 0, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := s.ListIssued(ctx, tc.spiffeID, tc.limit)
			if err != nil {
				t.Fatalf("ListIssued(%q, %d): %v", tc.spiffeID, tc.limit, err)
			}
			if diff := cmp.Diff(tc.want, got, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("ListIssued(%q, %d) (-want +got):\n%s", tc.spiffeID, tc.limit, diff)
			}
			for _, is := range got {
				checkUTC(t, "NotAfter", is.NotAfter)
			}
		})
	}
}

func testRevocations(t *testing.T, s store.Store) {
	ctx := t.Context()
	ch, cancel := s.Subscribe(store.TopicObjects)
	defer cancel()

	bySerial := store.Revocation{Serial: "123456789", RevokedAt: base, Reason: "key compromise", Actor: "admin:alice"}
	byID := store.Revocation{SPIFFEID: "spiffe://example.org/ns/prod/sa/web", RevokedAt: base.Add(time.Second), Reason: "quarantine", Actor: "respond:playbook-1"}
	for _, r := range []store.Revocation{bySerial, byID} {
		if err := s.AddRevocation(ctx, r); err != nil {
			t.Fatalf("AddRevocation: %v", err)
		}
	}
	waitNotified(t, ch, "after AddRevocation")

	got, err := s.ListRevocations(ctx)
	if err != nil {
		t.Fatalf("ListRevocations: %v", err)
	}
	if diff := cmp.Diff([]store.Revocation{bySerial, byID}, got); diff != "" {
		t.Errorf("ListRevocations (-want +got):\n%s", diff)
	}
	for _, r := range got {
		checkUTC(t, "RevokedAt", r.RevokedAt)
	}

	for _, tc := range []struct {
		name string
		r    store.Revocation
	}{
		{"both serial and ID", store.Revocation{Serial: "1", SPIFFEID: "spiffe://example.org/a", RevokedAt: base}},
		{"neither serial nor ID", store.Revocation{RevokedAt: base, Reason: "?"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := s.AddRevocation(ctx, tc.r); err == nil {
				t.Errorf("AddRevocation: got nil error, want one")
			}
		})
	}
	if got, err := s.ListRevocations(ctx); err != nil || len(got) != 2 {
		t.Errorf("ListRevocations after rejected adds: got %d and error %v, want 2", len(got), err)
	}
}

func waitNotified(t *testing.T, ch <-chan struct{}, when string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(notifyTimeout):
		t.Fatalf("no notification %s within %v", when, notifyTimeout)
	}
}

func testSubscribe(t *testing.T, s store.Store) {
	ctx := t.Context()
	first, cancelFirst := s.Subscribe(store.TopicObjects)
	defer cancelFirst()
	if got := cap(first); got != 1 {
		t.Errorf("channel capacity: got %d, want 1", got)
	}

	before := currentRevision(t, s)
	put(t, s, "Service", "prod", "web", `{"v":1}`, store.AnyRevision)
	waitNotified(t, first, "after PutObject")
	// The signal comes after the commit: the write is already readable.
	changes, err := s.Changes(ctx, before, 0)
	if err != nil {
		t.Fatalf("Changes: %v", err)
	}
	if len(changes) != 1 {
		t.Errorf("Changes after the signal: got %d, want 1", len(changes))
	}

	// Nobody reads first while these run: the writes must not block, and
	// the signals coalesce into the one buffered value.
	put(t, s, "Service", "prod", "web", `{"v":2}`, store.AnyRevision)
	put(t, s, "Service", "prod", "web", `{"v":3}`, store.AnyRevision)
	del(t, s, "Service", "prod", "web", store.AnyRevision)
	waitNotified(t, first, "after several writes")

	second, cancelSecond := s.Subscribe(store.TopicObjects)
	defer cancelSecond()
	put(t, s, "Service", "prod", "web", `{"v":4}`, store.MustNotExist)
	waitNotified(t, first, "after re-create, first subscriber")
	waitNotified(t, second, "after re-create, second subscriber")

	cancelFirst()
	cancelFirst() // safe twice
	put(t, s, "Service", "prod", "web", `{"v":5}`, store.AnyRevision)
	waitNotified(t, second, "after PutObject, remaining subscriber")
	// second got its signal, so first would have had its own by now.
	select {
	case <-first:
		t.Errorf("cancelled subscriber was signalled")
	default:
	}
}

func testCloseTwice(t *testing.T, s store.Store) {
	if err := s.Close(); err != nil {
		t.Fatalf("first Close: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close: got %v, want nil", err)
	}
}

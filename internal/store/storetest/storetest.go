// Package storetest is the conformance suite every store.Store
// implementation passes, so that callers can rely on the same semantics from
// SQLite and PostgreSQL: revisions, compare-and-swap, history, single-use
// join tokens, a gapless and linear audit hash chain, object writes atomic
// with their audit records, audit checkpoints, versioned blobs, presence,
// singleton roles and change notification by topic.
//
// An implementation's test calls Run with a function that opens a new, empty
// store for one subtest. A store that several server replicas share (one
// PostgreSQL database) also calls RunShared, with two stores on one
// database, which checks what the replicas see of each other: notification,
// compare-and-swap, single-use tokens, the audit chain (audited writes
// included) and elections across them.
package storetest

import (
	"testing"
	"time"

	"github.com/trustmesh/trustmesh/internal/store"
)

// notifyTimeout bounds the wait for a Subscribe signal. It is only reached
// when a store fails to signal, so it can be generous.
const notifyTimeout = 10 * time.Second

// Run runs the conformance suite, one subtest at a time. open must return a
// new, empty store each time it is called (revisions and audit sequences are
// checked from 1), and may use t for t.TempDir or t.Cleanup. Run closes the
// store when the subtest ends; Close must be safe to call twice, so open may
// register its own Close as well.
//
// Besides the interface's documented contract, the suite pins down choices
// every implementation must make the same way: object and node listings are
// in byte order (a PostgreSQL store needs COLLATE "C"), Data comes back byte
// for byte, a tombstone carries the Data it removed, a join token is expired
// from its ExpiresAt on (and so is a presence), ListIssued's "newest" is the
// most recently recorded, History of an unknown object is empty rather than
// ErrNotFound, blob names match a ListBlobs prefix byte for byte ('%' and
// '_' are not wildcards), a blob created again after a delete starts over at
// version 1, a write signals its own store's subscribers before it returns,
// audit appends and node writes signal no topic, and Elect's held context is
// derived from the campaign's (it ends when that ends) and ends when the
// store is closed.
func Run(t *testing.T, open func(t *testing.T) store.Store) {
	t.Helper()
	for _, tc := range []struct {
		name string
		test func(t *testing.T, s store.Store)
	}{
		{"revisions and history", testRevisionsAndHistory},
		{"compare and swap", testCompareAndSwap},
		{"concurrent compare and swap loses no update", testConcurrentCAS},
		{"delete and recreate", testDeleteAndRecreate},
		{"changes ordering and limit", testChanges},
		{"list objects filters", testListObjects},
		{"join token used once under concurrency", testJoinTokenConcurrentUse},
		{"join token errors", testJoinTokenErrors},
		{"join token validation", testJoinTokenValidation},
		{"nodes", testNodes},
		{"issued records", testIssued},
		{"revocations", testRevocations},
		{"audit record round trip", testAuditRoundTrip},
		{"audit batch append", testAuditBatch},
		{"audit strings are stored as valid UTF-8", testAuditInvalidUTF8},
		{"audit appends are gapless under concurrency", testAuditConcurrent},
		{"audit chain stays linear under concurrent batches", testAuditChainConcurrent},
		{"audit checkpoints", testAuditCheckpoints},
		{"audited writes store their records with them", testAudited},
		{"refused audited writes append nothing", testAuditedRefused},
		{"audited writes and appends keep one linear chain", testAuditedConcurrent},
		{"subscribe", testSubscribe},
		{"subscribe filters by topic", testSubscribeTopics},
		{"blob versions and compare and swap", testBlobVersions},
		{"blob data byte for byte", testBlobData},
		{"blob list by prefix", testBlobList},
		{"blob delete", testBlobDelete},
		{"presence", testPresence},
		{"elect", testElect},
		{"elect ends on close", testElectClose},
		{"close twice", testCloseTwice},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := open(t)
			t.Cleanup(func() {
				if err := s.Close(); err != nil {
					t.Errorf("Close: %v", err)
				}
			})
			tc.test(t, s)
		})
	}
}

// A zone that is not UTC, to prove times come back in UTC whatever went in.
var elsewhere = time.FixedZone("UTC+5:30", 5*3600+30*60)

// base is a fixed instant with nanoseconds, to prove they are kept.
var base = time.Date(2025, 3, 14, 15, 9, 26, 535897932, elsewhere)

func put(t *testing.T, s store.Store, kind, ns, name, data string, expect int64) store.Object {
	t.Helper()
	o, err := s.PutObject(t.Context(), store.Object{
		Kind: kind, Namespace: ns, Name: name, Data: []byte(data), Actor: "admin:alice",
	}, expect)
	if err != nil {
		t.Fatalf("PutObject(%s/%s/%s, %d): %v", kind, ns, name, expect, err)
	}
	return o
}

func del(t *testing.T, s store.Store, kind, ns, name string, expect int64) store.Object {
	t.Helper()
	o, err := s.DeleteObject(t.Context(), kind, ns, name, "admin:bob", expect)
	if err != nil {
		t.Fatalf("DeleteObject(%s/%s/%s, %d): %v", kind, ns, name, expect, err)
	}
	return o
}

func currentRevision(t *testing.T, s store.Store) int64 {
	t.Helper()
	rev, err := s.CurrentRevision(t.Context())
	if err != nil {
		t.Fatalf("CurrentRevision: %v", err)
	}
	return rev
}

func revisions(objs []store.Object) []int64 {
	revs := make([]int64, len(objs))
	for i, o := range objs {
		revs[i] = o.Revision
	}
	return revs
}

func checkUTC(t *testing.T, what string, got time.Time) {
	t.Helper()
	if got.Location() != time.UTC {
		t.Errorf("%s location: got %v, want UTC", what, got.Location())
	}
}

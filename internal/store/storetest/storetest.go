// Package storetest is the conformance suite every store.Store
// implementation passes, so that callers can rely on the same semantics from
// SQLite and PostgreSQL: revisions, compare-and-swap, history, single-use
// join tokens, gapless audit sequences and change notification.
//
// An implementation's test calls Run with a function that opens a new, empty
// store for one subtest.
package storetest

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

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
// from its ExpiresAt on, ListIssued's "newest" is the most recently recorded,
// and History of an unknown object is empty rather than ErrNotFound.
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
		{"audit appends are gapless under concurrency", testAuditConcurrent},
		{"subscribe", testSubscribe},
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

func testRevisionsAndHistory(t *testing.T, s store.Store) {
	ctx := t.Context()
	if got := currentRevision(t, s); got != 0 {
		t.Fatalf("CurrentRevision of an empty store: got %d, want 0", got)
	}

	before := time.Now()
	web1 := put(t, s, "Service", "prod", "web", `{"v":1}`, store.MustNotExist)
	after := time.Now()
	want := store.Object{
		Kind: "Service", Namespace: "prod", Name: "web",
		Revision: 1, CreateRevision: 1, Data: []byte(`{"v":1}`), Actor: "admin:alice",
		Time: web1.Time,
	}
	if diff := cmp.Diff(want, web1); diff != "" {
		t.Errorf("first PutObject (-want +got):\n%s", diff)
	}
	if web1.Time.Before(before.Truncate(time.Microsecond)) || web1.Time.After(after) {
		t.Errorf("Time: got %v, want between %v and %v", web1.Time, before, after)
	}
	checkUTC(t, "Time", web1.Time)

	db1 := put(t, s, "Service", "prod", "db", `{"v":1}`, store.AnyRevision)
	if db1.Revision != 2 || db1.CreateRevision != 2 {
		t.Errorf("second object: got revision %d create %d, want 2 and 2", db1.Revision, db1.CreateRevision)
	}
	web2 := put(t, s, "Service", "prod", "web", `{"v":2}`, web1.Revision)
	if web2.Revision != 3 || web2.CreateRevision != 1 {
		t.Errorf("update: got revision %d create %d, want 3 and 1", web2.Revision, web2.CreateRevision)
	}
	if got := currentRevision(t, s); got != 3 {
		t.Errorf("CurrentRevision: got %d, want 3", got)
	}

	got, err := s.GetObject(ctx, "Service", "prod", "web")
	if err != nil {
		t.Fatalf("GetObject: %v", err)
	}
	if diff := cmp.Diff(web2, got); diff != "" {
		t.Errorf("GetObject (-want +got):\n%s", diff)
	}
	checkUTC(t, "GetObject Time", got.Time)

	hist, err := s.History(ctx, "Service", "prod", "web")
	if err != nil {
		t.Fatalf("History: %v", err)
	}
	if diff := cmp.Diff([]store.Object{web1, web2}, hist); diff != "" {
		t.Errorf("History (-want +got):\n%s", diff)
	}

	hist, err = s.History(ctx, "Service", "prod", "nope")
	if err != nil || len(hist) != 0 {
		t.Errorf("History of an unknown object: got %d revisions and error %v, want none and nil", len(hist), err)
	}
	if _, err := s.GetObject(ctx, "Service", "prod", "nope"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("GetObject of an unknown object: got error %v, want ErrNotFound", err)
	}
	// The same name under another kind or namespace is another object.
	if _, err := s.GetObject(ctx, "Policy", "prod", "web"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("GetObject of another kind: got error %v, want ErrNotFound", err)
	}

	for _, bad := range []store.Object{
		{Namespace: "prod", Name: "web", Data: []byte(`{}`)},
		{Kind: "Service", Namespace: "prod", Data: []byte(`{}`)},
	} {
		if _, err := s.PutObject(ctx, bad, store.AnyRevision); err == nil {
			t.Errorf("PutObject(%q/%q/%q): got nil error, want one for the empty key part", bad.Kind, bad.Namespace, bad.Name)
		}
	}
	if got := currentRevision(t, s); got != 3 {
		t.Errorf("CurrentRevision after rejected writes: got %d, want 3", got)
	}
}

func testCompareAndSwap(t *testing.T, s store.Store) {
	// Each case gets its own object, in one of three states; live is its live
	// revision (or, once deleted, the revision it had before).
	for _, tc := range []struct {
		name    string
		state   string // "missing", "live" or "deleted"
		op      string // "put" or "delete"
		expect  func(live int64) int64
		wantErr error
	}{
		{"put any on missing", "missing", "put", anyRevision, nil},
		{"put must-not-exist on missing", "missing", "put", mustNotExist, nil},
		{"put a revision on missing", "missing", "put", func(int64) int64 { return 1 }, store.ErrConflict},
		{"put any on live", "live", "put", anyRevision, nil},
		{"put current on live", "live", "put", current, nil},
		{"put must-not-exist on live", "live", "put", mustNotExist, store.ErrConflict},
		{"put stale on live", "live", "put", stale, store.ErrConflict},
		{"put future on live", "live", "put", future, store.ErrConflict},
		{"put must-not-exist on deleted", "deleted", "put", mustNotExist, nil},
		{"put old revision on deleted", "deleted", "put", current, store.ErrConflict},
		{"delete any on live", "live", "delete", anyRevision, nil},
		{"delete current on live", "live", "delete", current, nil},
		{"delete stale on live", "live", "delete", stale, store.ErrConflict},
		{"delete future on live", "live", "delete", future, store.ErrConflict},
		{"delete must-not-exist on live", "live", "delete", mustNotExist, store.ErrConflict},
		{"delete any on missing", "missing", "delete", anyRevision, store.ErrNotFound},
		{"delete any on deleted", "deleted", "delete", anyRevision, store.ErrNotFound},
		{"delete old revision on deleted", "deleted", "delete", current, store.ErrNotFound},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := t.Context()
			name := tc.name
			var live int64
			switch tc.state {
			case "live":
				put(t, s, "Service", "cas", name, `{"v":1}`, store.MustNotExist)
				live = put(t, s, "Service", "cas", name, `{"v":2}`, store.AnyRevision).Revision
			case "deleted":
				live = put(t, s, "Service", "cas", name, `{"v":1}`, store.MustNotExist).Revision
				del(t, s, "Service", "cas", name, store.AnyRevision)
			}
			before := currentRevision(t, s)
			expect := tc.expect(live)

			var (
				got store.Object
				err error
			)
			if tc.op == "put" {
				got, err = s.PutObject(ctx, store.Object{
					Kind: "Service", Namespace: "cas", Name: name, Data: []byte(`{"v":3}`), Actor: "admin:carol",
				}, expect)
			} else {
				got, err = s.DeleteObject(ctx, "Service", "cas", name, "admin:carol", expect)
			}

			wantRev := before
			if tc.wantErr == nil {
				wantRev = before + 1
				if err != nil {
					t.Fatalf("%s with expect %d: got error %v, want nil", tc.op, expect, err)
				}
				if got.Revision != wantRev {
					t.Errorf("revision: got %d, want %d", got.Revision, wantRev)
				}
			} else if !errors.Is(err, tc.wantErr) {
				t.Fatalf("%s with expect %d: got error %v, want %v", tc.op, expect, err, tc.wantErr)
			}
			if got := currentRevision(t, s); got != wantRev {
				t.Errorf("CurrentRevision: got %d, want %d", got, wantRev)
			}
		})
	}
}

// Expected revisions for the compare-and-swap cases, from the live one.
func anyRevision(int64) int64  { return store.AnyRevision }
func mustNotExist(int64) int64 { return store.MustNotExist }
func current(live int64) int64 { return live }
func stale(live int64) int64   { return live - 1 }
func future(live int64) int64  { return live + 100 }

func counterData(n int) []byte { return []byte(`{"n":` + strconv.Itoa(n) + `}`) }

func parseCounter(b []byte) (int, error) {
	var n int
	_, err := fmt.Sscanf(string(b), `{"n":%d}`, &n)
	return n, err
}

func testConcurrentCAS(t *testing.T, s store.Store) {
	const (
		workers    = 8
		increments = 20
	)
	ctx := t.Context()
	created, err := s.PutObject(ctx, store.Object{Kind: "Counter", Namespace: "test", Name: "c", Data: counterData(0)}, store.MustNotExist)
	if err != nil {
		t.Fatalf("PutObject: %v", err)
	}

	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for range increments {
				for {
					cur, err := s.GetObject(ctx, "Counter", "test", "c")
					if err != nil {
						t.Errorf("worker %d: GetObject: %v", w, err)
						return
					}
					n, err := parseCounter(cur.Data)
					if err != nil {
						t.Errorf("worker %d: data %q: %v", w, cur.Data, err)
						return
					}
					_, err = s.PutObject(ctx, store.Object{
						Kind: "Counter", Namespace: "test", Name: "c", Data: counterData(n + 1), Actor: fmt.Sprint("worker-", w),
					}, cur.Revision)
					if errors.Is(err, store.ErrConflict) {
						continue
					}
					if err != nil {
						t.Errorf("worker %d: PutObject: %v", w, err)
						return
					}
					break
				}
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		return
	}

	got, err := s.GetObject(ctx, "Counter", "test", "c")
	if err != nil {
		t.Fatalf("GetObject: %v", err)
	}
	n, err := parseCounter(got.Data)
	if err != nil {
		t.Fatalf("data %q: %v", got.Data, err)
	}
	if want := workers * increments; n != want {
		t.Errorf("counter: got %d, want %d", n, want)
	}
	if want := created.Revision + workers*increments; got.Revision != want {
		t.Errorf("revision: got %d, want %d (conflicting writes must consume no revision)", got.Revision, want)
	}
	hist, err := s.History(ctx, "Counter", "test", "c")
	if err != nil {
		t.Fatalf("History: %v", err)
	}
	for i, o := range hist {
		if n, _ := parseCounter(o.Data); n != i {
			t.Errorf("history[%d]: got counter %d, want %d", i, n, i)
		}
		if o.CreateRevision != created.Revision {
			t.Errorf("history[%d]: got create revision %d, want %d", i, o.CreateRevision, created.Revision)
		}
	}
}

func testDeleteAndRecreate(t *testing.T, s store.Store) {
	ctx := t.Context()
	v1 := put(t, s, "Workload", "prod", "api", `{"v":1}`, store.MustNotExist)
	v2 := put(t, s, "Workload", "prod", "api", `{"v":2}`, v1.Revision)

	before := time.Now()
	tomb := del(t, s, "Workload", "prod", "api", v2.Revision)
	want := store.Object{
		Kind: "Workload", Namespace: "prod", Name: "api",
		Revision: 3, CreateRevision: 1, Deleted: true,
		// The tombstone keeps the data it removed, so a watcher knows what went.
		Data: []byte(`{"v":2}`), Actor: "admin:bob", Time: tomb.Time,
	}
	if diff := cmp.Diff(want, tomb); diff != "" {
		t.Errorf("tombstone (-want +got):\n%s", diff)
	}
	if tomb.Time.Before(before.Truncate(time.Microsecond)) {
		t.Errorf("tombstone Time: got %v, want after %v", tomb.Time, before)
	}
	checkUTC(t, "tombstone Time", tomb.Time)

	if _, err := s.GetObject(ctx, "Workload", "prod", "api"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("GetObject after delete: got error %v, want ErrNotFound", err)
	}
	if objs, err := s.ListObjects(ctx, "Workload", ""); err != nil || len(objs) != 0 {
		t.Errorf("ListObjects after delete: got %d objects and error %v, want none", len(objs), err)
	}

	v4 := put(t, s, "Workload", "prod", "api", `{"v":4}`, store.MustNotExist)
	if v4.Revision != 4 || v4.CreateRevision != 4 || v4.Deleted {
		t.Errorf("re-created: got revision %d create %d deleted %v, want 4, 4, false", v4.Revision, v4.CreateRevision, v4.Deleted)
	}
	got, err := s.GetObject(ctx, "Workload", "prod", "api")
	if err != nil {
		t.Fatalf("GetObject after re-create: %v", err)
	}
	if diff := cmp.Diff(v4, got); diff != "" {
		t.Errorf("GetObject after re-create (-want +got):\n%s", diff)
	}

	hist, err := s.History(ctx, "Workload", "prod", "api")
	if err != nil {
		t.Fatalf("History: %v", err)
	}
	if diff := cmp.Diff([]store.Object{v1, v2, tomb, v4}, hist); diff != "" {
		t.Errorf("History (-want +got):\n%s", diff)
	}
	if got := currentRevision(t, s); got != 4 {
		t.Errorf("CurrentRevision: got %d, want 4", got)
	}
}

func testChanges(t *testing.T, s store.Store) {
	// Revisions 1..5: a, b, a, delete b, c.
	all := []store.Object{
		put(t, s, "Service", "ns", "a", `{"v":1}`, store.AnyRevision),
		put(t, s, "Service", "ns", "b", `{"v":1}`, store.AnyRevision),
		put(t, s, "Service", "ns", "a", `{"v":2}`, store.AnyRevision),
		del(t, s, "Service", "ns", "b", store.AnyRevision),
		put(t, s, "Policy", "ns", "c", `{"v":1}`, store.AnyRevision),
	}
	for _, tc := range []struct {
		name  string
		after int64
		limit int
		want  []int64
	}{
		{"everything", 0, 0, []int64{1, 2, 3, 4, 5}},
		{"limit", 0, 2, []int64{1, 2}},
		{"after", 2, 0, []int64{3, 4, 5}},
		{"after and limit", 3, 1, []int64{4}},
		{"limit above count", 1, 100, []int64{2, 3, 4, 5}},
		{"after the last", 5, 0, nil},
		{"after the future", 99, 10, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := s.Changes(t.Context(), tc.after, tc.limit)
			if err != nil {
				t.Fatalf("Changes(%d, %d): %v", tc.after, tc.limit, err)
			}
			if diff := cmp.Diff(tc.want, revisions(got), cmpopts.EquateEmpty()); diff != "" {
				t.Fatalf("Changes(%d, %d) revisions (-want +got):\n%s", tc.after, tc.limit, diff)
			}
			for _, o := range got {
				if diff := cmp.Diff(all[o.Revision-1], o); diff != "" {
					t.Errorf("revision %d (-want +got):\n%s", o.Revision, diff)
				}
			}
		})
	}
}

func testListObjects(t *testing.T, s store.Store) {
	ctx := t.Context()
	put(t, s, "Service", "prod", "web", `{}`, store.AnyRevision)
	put(t, s, "Policy", "prod", "allow", `{}`, store.AnyRevision)
	// Upper case sorts before lower case: the order is byte order, not a
	// locale's collation.
	put(t, s, "Service", "prod", "Api", `{}`, store.AnyRevision)
	put(t, s, "Service", "dev", "web", `{}`, store.AnyRevision)
	put(t, s, "Service", "prod", "old", `{}`, store.AnyRevision)
	del(t, s, "Service", "prod", "old", store.AnyRevision)

	for _, tc := range []struct {
		name, kind, namespace string
		want                  []string
	}{
		{"everything", "", "", []string{"Policy/prod/allow", "Service/dev/web", "Service/prod/Api", "Service/prod/web"}},
		{"kind", "Service", "", []string{"Service/dev/web", "Service/prod/Api", "Service/prod/web"}},
		{"namespace", "", "prod", []string{"Policy/prod/allow", "Service/prod/Api", "Service/prod/web"}},
		{"kind and namespace", "Service", "prod", []string{"Service/prod/Api", "Service/prod/web"}},
		{"unknown kind", "Nope", "", nil},
		{"unknown namespace", "Service", "nope", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			objs, err := s.ListObjects(ctx, tc.kind, tc.namespace)
			if err != nil {
				t.Fatalf("ListObjects(%q, %q): %v", tc.kind, tc.namespace, err)
			}
			var got []string
			for _, o := range objs {
				got = append(got, o.Kind+"/"+o.Namespace+"/"+o.Name)
				live, err := s.GetObject(ctx, o.Kind, o.Namespace, o.Name)
				if err != nil {
					t.Fatalf("GetObject: %v", err)
				}
				if diff := cmp.Diff(live, o); diff != "" {
					t.Errorf("listed %s differs from GetObject (-get +list):\n%s", o.Name, diff)
				}
			}
			if diff := cmp.Diff(tc.want, got, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("ListObjects(%q, %q) (-want +got):\n%s", tc.kind, tc.namespace, diff)
			}
		})
	}
}

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
	ch, cancel := s.Subscribe()
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

func testAuditRoundTrip(t *testing.T, s store.Store) {
	ctx := t.Context()
	rec := store.AuditRecord{
		Time: base, Actor: "admin:alice", Action: "object.put", Object: "Service/prod/web",
		Revision: 7, Outcome: "success", Reason: "change 42", RequestID: "req-1",
	}
	seq, err := s.AppendAudit(ctx, rec)
	if err != nil {
		t.Fatalf("AppendAudit: %v", err)
	}
	if seq != 1 {
		t.Errorf("first Seq: got %d, want 1", seq)
	}

	// A record without a time is stamped by the store.
	before := time.Now()
	seq, err = s.AppendAudit(ctx, store.AuditRecord{Actor: "spiffe://example.org/node/a", Action: "node.attest", Outcome: "denied"})
	after := time.Now()
	if err != nil {
		t.Fatalf("AppendAudit without time: %v", err)
	}
	if seq != 2 {
		t.Errorf("second Seq: got %d, want 2", seq)
	}

	got, err := s.ListAudit(ctx, 0, 0)
	if err != nil {
		t.Fatalf("ListAudit: %v", err)
	}
	if len(got) != 2 {
		t.Fatalf("ListAudit: got %d records, want 2", len(got))
	}
	rec.Seq = 1
	if diff := cmp.Diff(rec, got[0]); diff != "" {
		t.Errorf("record 1 (-want +got):\n%s", diff)
	}
	checkUTC(t, "Time", got[0].Time)
	if tm := got[1].Time; tm.Before(before.Truncate(time.Microsecond)) || tm.After(after) {
		t.Errorf("stamped Time: got %v, want between %v and %v", tm, before, after)
	}
}

func testAuditConcurrent(t *testing.T, s store.Store) {
	const (
		writers = 16
		each    = 20
		total   = writers * each
	)
	ctx := t.Context()
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		seqs []int64
	)
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				seq, err := s.AppendAudit(ctx, store.AuditRecord{
					Time: base, Actor: fmt.Sprint("writer-", w), Action: "test", Object: strconv.Itoa(i), Outcome: "success",
				})
				if err != nil {
					t.Errorf("writer %d: AppendAudit: %v", w, err)
					return
				}
				mu.Lock()
				seqs = append(seqs, seq)
				mu.Unlock()
			}
		})
	}
	wg.Wait()

	slices.Sort(seqs)
	want := make([]int64, total)
	for i := range want {
		want[i] = int64(i + 1)
	}
	if diff := cmp.Diff(want, seqs); diff != "" {
		t.Fatalf("returned Seqs are not 1..%d (-want +got):\n%s", total, diff)
	}

	recs, err := s.ListAudit(ctx, 0, 0)
	if err != nil {
		t.Fatalf("ListAudit: %v", err)
	}
	got := make([]int64, len(recs))
	for i, r := range recs {
		got[i] = r.Seq
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("listed Seqs (-want +got):\n%s", diff)
	}

	for _, tc := range []struct {
		name         string
		after        int64
		limit        int
		first, count int64
	}{
		{"page", 100, 10, 101, 10},
		{"tail", total - 3, 0, total - 2, 3},
		{"past the end", total, 5, 0, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			recs, err := s.ListAudit(ctx, tc.after, tc.limit)
			if err != nil {
				t.Fatalf("ListAudit(%d, %d): %v", tc.after, tc.limit, err)
			}
			if int64(len(recs)) != tc.count {
				t.Fatalf("ListAudit(%d, %d): got %d records, want %d", tc.after, tc.limit, len(recs), tc.count)
			}
			for i, r := range recs {
				if want := tc.first + int64(i); r.Seq != want {
					t.Errorf("record %d: got Seq %d, want %d", i, r.Seq, want)
				}
			}
		})
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
	first, cancelFirst := s.Subscribe()
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

	second, cancelSecond := s.Subscribe()
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

package storetest

import (
	"errors"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/trustmesh/trustmesh/internal/store"
)

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

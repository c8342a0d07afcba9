package storetest

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/trustmesh/trustmesh/internal/store"
	"github.com/trustmesh/trustmesh/internal/store/auditchain"
)

// auditedRec is the audit record of an object write, as a server makes it:
// the store fills in Revision (the 999 is overwritten), Seq and the hashes.
func auditedRec(action, object string) store.AuditRecord {
	return store.AuditRecord{Time: base, Actor: "admin:alice", Action: action, Object: object,
		Revision: 999, Outcome: "success", Reason: "test", RequestID: "req-" + action}
}

func putAudited(t *testing.T, s store.Store, obj store.Object, expect int64, recs ...store.AuditRecord) (store.Object, []store.AuditRecord) {
	t.Helper()
	o, stored, err := s.PutObjectAudited(t.Context(), obj, expect, recs)
	if err != nil {
		t.Fatalf("PutObjectAudited(%s/%s/%s, %d): %v", obj.Kind, obj.Namespace, obj.Name, expect, err)
	}
	return o, stored
}

// testAudited: an audited write stores the revision and its records
// together, the records carrying the revision, chained after the records
// appended on their own.
func testAudited(t *testing.T, s store.Store) {
	ctx := t.Context()
	if _, err := s.AppendAudit(ctx, store.AuditRecord{Time: base, Actor: "admin:alice", Action: "token.create", Outcome: "success"}); err != nil {
		t.Fatalf("AppendAudit: %v", err)
	}
	web := store.Object{Kind: "Service", Namespace: "prod", Name: "web", Data: []byte(`{"v":1}`), Actor: "admin:alice"}

	in := []store.AuditRecord{auditedRec("object.created", "Service/prod/web")}
	orig := slices.Clone(in)
	created, recs := putAudited(t, s, web, store.MustNotExist, in...)
	if created.Revision != 1 || created.CreateRevision != 1 {
		t.Errorf("created: got revision %d create %d, want 1 and 1", created.Revision, created.CreateRevision)
	}
	if diff := cmp.Diff(orig, in); diff != "" {
		t.Errorf("PutObjectAudited modified its records (-before +after):\n%s", diff)
	}
	want := orig[0]
	want.Seq, want.Revision, want.Time = 2, created.Revision, base.UTC()
	if len(recs) != 1 {
		t.Fatalf("PutObjectAudited returned %d records, want 1", len(recs))
	}
	want.PrevHash = recs[0].PrevHash // checked by checkChain below
	want.Hash = auditchain.Hash(want)
	if diff := cmp.Diff(want, recs[0]); diff != "" {
		t.Errorf("returned record (-want +got):\n%s", diff)
	}

	// Two records of one write (a rollback is a configure and a rollback),
	// one of them without a time.
	web.Data = []byte(`{"v":2}`)
	two := []store.AuditRecord{auditedRec("object.configured", "Service/prod/web"), auditedRec("object.rollback", "Service/prod/web")}
	two[1].Time = time.Time{}
	before := time.Now()
	configured, recs2 := putAudited(t, s, web, created.Revision, two...)
	after := time.Now()
	if configured.Revision != 2 || configured.CreateRevision != 1 {
		t.Errorf("configured: got revision %d create %d, want 2 and 1", configured.Revision, configured.CreateRevision)
	}
	if len(recs2) != 2 {
		t.Fatalf("PutObjectAudited returned %d records, want 2", len(recs2))
	}
	for i, r := range recs2 {
		if r.Seq != int64(3+i) || r.Revision != configured.Revision || r.Action != two[i].Action {
			t.Errorf("record %d: got seq %d revision %d action %q, want %d, %d, %q", i, r.Seq, r.Revision, r.Action, 3+i, configured.Revision, two[i].Action)
		}
	}
	if tm := recs2[1].Time; tm.Before(before.Truncate(time.Microsecond)) || tm.After(after) {
		t.Errorf("stamped Time: got %v, want between %v and %v", tm, before, after)
	}

	deleted, recs3, err := s.DeleteObjectAudited(ctx, "Service", "prod", "web", "admin:bob", configured.Revision,
		[]store.AuditRecord{auditedRec("object.delete", "Service/prod/web")})
	if err != nil {
		t.Fatalf("DeleteObjectAudited: %v", err)
	}
	if !deleted.Deleted || deleted.Revision != 3 || string(deleted.Data) != `{"v":2}` {
		t.Errorf("tombstone: got deleted %v revision %d data %q, want true, 3, {\"v\":2}", deleted.Deleted, deleted.Revision, deleted.Data)
	}
	if len(recs3) != 1 || recs3[0].Seq != 5 || recs3[0].Revision != deleted.Revision {
		t.Errorf("delete records: got %+v, want one at seq 5 with revision %d", recs3, deleted.Revision)
	}

	// Without records an audited write is a plain one.
	plain, none := putAudited(t, s, store.Object{Kind: "Service", Namespace: "prod", Name: "db", Data: []byte(`{}`)}, store.AnyRevision)
	if plain.Revision != 4 || len(none) != 0 {
		t.Errorf("write without records: got revision %d and %d records, want 4 and none", plain.Revision, len(none))
	}

	all := listAll(t, s)
	checkChain(t, all)
	if diff := cmp.Diff(slices.Concat(recs, recs2, recs3), all[1:]); diff != "" {
		t.Errorf("ListAudit against the returned records (-returned +listed):\n%s", diff)
	}
	hist, err := s.History(ctx, "Service", "prod", "web")
	if err != nil {
		t.Fatalf("History: %v", err)
	}
	if diff := cmp.Diff([]store.Object{created, configured, deleted}, hist); diff != "" {
		t.Errorf("History (-returned +stored):\n%s", diff)
	}
}

// testAuditedRefused: an audited write that fails stores neither the
// revision nor its records, and consumes no revision and no seq.
func testAuditedRefused(t *testing.T, s store.Store) {
	ctx := t.Context()
	live := put(t, s, "Service", "prod", "web", `{"v":1}`, store.MustNotExist)
	put(t, s, "Service", "prod", "web", `{"v":2}`, store.AnyRevision)
	if _, err := s.AppendAudit(ctx, store.AuditRecord{Time: base, Action: "first", Outcome: "success"}); err != nil {
		t.Fatalf("AppendAudit: %v", err)
	}
	webObj := store.Object{Kind: "Service", Namespace: "prod", Name: "web", Data: []byte(`{"v":3}`), Actor: "admin:alice"}
	rec := auditedRec("object.configured", "Service/prod/web")
	farFuture := rec
	farFuture.Time = time.Unix(0, math.MaxInt64).Add(time.Hour)
	for _, tc := range []struct {
		name    string
		write   func() error
		wantErr error // nil: any error
	}{
		{"put must-not-exist on live", func() error {
			_, _, err := s.PutObjectAudited(ctx, webObj, store.MustNotExist, []store.AuditRecord{rec})
			return err
		}, store.ErrConflict},
		{"put stale revision", func() error {
			_, _, err := s.PutObjectAudited(ctx, webObj, live.Revision, []store.AuditRecord{rec, rec})
			return err
		}, store.ErrConflict},
		{"put a revision on missing", func() error {
			_, _, err := s.PutObjectAudited(ctx, store.Object{Kind: "Service", Namespace: "prod", Name: "nope", Data: []byte(`{}`)}, 1, []store.AuditRecord{rec})
			return err
		}, store.ErrConflict},
		{"put without a name", func() error {
			_, _, err := s.PutObjectAudited(ctx, store.Object{Kind: "Service", Namespace: "prod", Data: []byte(`{}`)}, store.AnyRevision, []store.AuditRecord{rec})
			return err
		}, nil},
		{"put with an unstorable record time", func() error {
			_, _, err := s.PutObjectAudited(ctx, webObj, store.AnyRevision, []store.AuditRecord{farFuture})
			return err
		}, nil},
		{"delete stale revision", func() error {
			_, _, err := s.DeleteObjectAudited(ctx, "Service", "prod", "web", "admin:bob", live.Revision, []store.AuditRecord{rec})
			return err
		}, store.ErrConflict},
		{"delete missing", func() error {
			_, _, err := s.DeleteObjectAudited(ctx, "Service", "prod", "nope", "admin:bob", store.AnyRevision, []store.AuditRecord{rec})
			return err
		}, store.ErrNotFound},
	} {
		t.Run(tc.name, func(t *testing.T) {
			revBefore := currentRevision(t, s)
			logBefore := listAll(t, s)
			err := tc.write()
			switch {
			case err == nil:
				t.Fatalf("got nil error, want %v", tc.wantErr)
			case tc.wantErr != nil && !errors.Is(err, tc.wantErr):
				t.Fatalf("got error %v, want %v", err, tc.wantErr)
			}
			if got := currentRevision(t, s); got != revBefore {
				t.Errorf("CurrentRevision: got %d, want %d (a refused write stores nothing)", got, revBefore)
			}
			if diff := cmp.Diff(logBefore, listAll(t, s)); diff != "" {
				t.Errorf("audit log changed (-before +after):\n%s", diff)
			}
		})
	}
	// No seq was consumed either: the next append follows on.
	seq, err := s.AppendAudit(ctx, store.AuditRecord{Time: base, Action: "last", Outcome: "success"})
	if err != nil {
		t.Fatalf("AppendAudit: %v", err)
	}
	if seq != 2 {
		t.Errorf("Seq after refused writes: got %d, want 2", seq)
	}
	got, err := s.GetObject(ctx, "Service", "prod", "web")
	if err != nil || string(got.Data) != `{"v":2}` {
		t.Errorf("GetObject: got %q, %v, want the data before the refused writes", got.Data, err)
	}
}

// testAuditedConcurrent mixes audited writes on the store with plain ones
// and with appends on their own.
func testAuditedConcurrent(t *testing.T, s store.Store) {
	auditedMix(t, s)
}

func testSharedAudited(t *testing.T, a, b store.Store) {
	auditedMix(t, a, b)
}

// auditedMix runs, from several goroutines spread over stores (which share
// one database), audited puts and deletes, compare-and-swap increments of
// one counter by audited writes (some of which conflict), plain writes, and
// single and batched appends. Afterwards the log must be one linear chain
// in which every revision an audited write made has exactly one record
// carrying it, naming its object, and no other revision has any.
func auditedMix(t *testing.T, stores ...store.Store) {
	const (
		writers    = 12 // of each of the kinds below
		rounds     = 10
		increments = 5
	)
	ctx := t.Context()
	pick := func(i int) store.Store { return stores[i%len(stores)] }
	counter := store.Object{Kind: "Counter", Namespace: "test", Name: "c", Data: counterData(0), Actor: "audited-init"}
	if _, _, err := pick(0).PutObjectAudited(ctx, counter, store.MustNotExist,
		[]store.AuditRecord{auditedRec("object.created", "Counter/test/c")}); err != nil {
		t.Fatalf("PutObjectAudited: %v", err)
	}

	var (
		wg        sync.WaitGroup
		mu        sync.Mutex
		conflicts int
	)
	for w := range writers {
		s := pick(w)
		// Audited puts and deletes of the writer's own objects.
		wg.Go(func() {
			for i := range rounds {
				name := fmt.Sprint("w", w, "-", i%3)
				key := "Service/ns/" + name
				obj := store.Object{Kind: "Service", Namespace: "ns", Name: name, Data: counterData(i), Actor: fmt.Sprint("audited-", w)}
				if _, _, err := s.PutObjectAudited(ctx, obj, store.AnyRevision, []store.AuditRecord{auditedRec("object.put", key)}); err != nil {
					t.Errorf("writer %d: PutObjectAudited: %v", w, err)
					return
				}
				if i%3 == 2 {
					if _, _, err := s.DeleteObjectAudited(ctx, "Service", "ns", name, fmt.Sprint("audited-", w), store.AnyRevision,
						[]store.AuditRecord{auditedRec("object.delete", key)}); err != nil {
						t.Errorf("writer %d: DeleteObjectAudited: %v", w, err)
						return
					}
				}
			}
		})
		// Audited compare-and-swap increments of the shared counter.
		wg.Go(func() {
			for range increments {
				for {
					cur, err := s.GetObject(ctx, "Counter", "test", "c")
					if err != nil {
						t.Errorf("incrementer %d: GetObject: %v", w, err)
						return
					}
					n, err := parseCounter(cur.Data)
					if err != nil {
						t.Errorf("incrementer %d: data %q: %v", w, cur.Data, err)
						return
					}
					next := store.Object{Kind: "Counter", Namespace: "test", Name: "c", Data: counterData(n + 1), Actor: fmt.Sprint("audited-inc-", w)}
					_, _, err = s.PutObjectAudited(ctx, next, cur.Revision, []store.AuditRecord{auditedRec("object.configured", "Counter/test/c")})
					if errors.Is(err, store.ErrConflict) {
						mu.Lock()
						conflicts++
						mu.Unlock()
						continue
					}
					if err != nil {
						t.Errorf("incrementer %d: PutObjectAudited: %v", w, err)
						return
					}
					break
				}
			}
		})
		// Plain writes and appends on their own.
		wg.Go(func() {
			for i := range rounds {
				var err error
				switch i % 3 {
				case 0:
					_, err = s.PutObject(ctx, store.Object{Kind: "Plain", Namespace: "ns", Name: fmt.Sprint("p", w), Data: counterData(i), Actor: "plain"}, store.AnyRevision)
				case 1:
					_, err = s.AppendAudit(ctx, store.AuditRecord{Time: base, Actor: fmt.Sprint("appender-", w), Action: "append", Outcome: "success"})
				case 2:
					_, err = s.AppendAuditBatch(ctx, []store.AuditRecord{
						{Time: base, Actor: fmt.Sprint("appender-", w), Action: "append", Outcome: "success"},
						{Time: base, Actor: fmt.Sprint("appender-", w), Action: "append", Outcome: "denied"},
					})
				}
				if err != nil {
					t.Errorf("appender %d: round %d: %v", w, i, err)
					return
				}
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	t.Logf("%d compare-and-swap conflicts", conflicts)

	for i, s := range stores {
		recs := listAll(t, s)
		checkChain(t, recs)
		changes, err := s.Changes(ctx, 0, 0)
		if err != nil {
			t.Fatalf("store %d: Changes: %v", i, err)
		}
		// Every revision of an audited write has one record naming it,
		// every record of an object write names a revision of its object.
		byRevision := map[int64][]store.AuditRecord{}
		appended := 0
		for _, r := range recs {
			if r.Action == "append" {
				appended++
				continue
			}
			byRevision[r.Revision] = append(byRevision[r.Revision], r)
		}
		wantAppended := 0
		for i := range rounds {
			wantAppended += []int{0, 1, 2}[i%3] // a write, a record, a batch of two
		}
		if want := writers * wantAppended; appended != want {
			t.Errorf("store %d: got %d records appended on their own, want %d", i, appended, want)
		}
		audited := 0
		for _, o := range changes {
			got := byRevision[o.Revision]
			delete(byRevision, o.Revision)
			if !strings.HasPrefix(o.Actor, "audited-") {
				if len(got) != 0 {
					t.Errorf("store %d: plain revision %d has audit records %+v", i, o.Revision, got)
				}
				continue
			}
			audited++
			key := o.Kind + "/" + o.Namespace + "/" + o.Name
			if len(got) != 1 || got[0].Object != key || (got[0].Action == "object.delete") != o.Deleted {
				t.Errorf("store %d: revision %d of %s (deleted %v): got records %+v, want one naming it", i, o.Revision, key, o.Deleted, got)
			}
		}
		if len(byRevision) != 0 {
			t.Errorf("store %d: records of revisions that do not exist: %+v", i, byRevision)
		}
		// The counter's creation, its increments, and every writer's puts
		// and deletes (one in three rounds).
		if want := 1 + writers*increments + writers*(rounds+rounds/3); audited != want {
			t.Errorf("store %d: got %d audited revisions, want %d", i, audited, want)
		}
		c, err := s.GetObject(ctx, "Counter", "test", "c")
		if err != nil {
			t.Fatalf("store %d: GetObject: %v", i, err)
		}
		if n, err := parseCounter(c.Data); err != nil || n != writers*increments {
			t.Errorf("store %d: counter: got %d (%v), want %d", i, n, err, writers*increments)
		}
	}
}

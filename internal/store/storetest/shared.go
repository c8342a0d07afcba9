package storetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/trustmesh/trustmesh/internal/store"
)

// handoverTimeout bounds how long a waiting campaign takes to win a role its
// holder gave up (released, or closed its store): "a few seconds".
const handoverTimeout = 5 * time.Second

// RunShared runs the suite for stores that several server replicas open on
// one database. open must return two stores opened separately (two
// connection pools, as two servers would) on the same new, empty database
// each time it is called. RunShared closes both when the subtest ends; Close
// must be safe to call twice.
//
// The SQLite store does not run RunShared: one server opens a data dir at a
// time (it holds the dir's lock), so there is no second replica.
func RunShared(t *testing.T, open func(t *testing.T) (a, b store.Store)) {
	t.Helper()
	for _, tc := range []struct {
		name string
		test func(t *testing.T, a, b store.Store)
	}{
		{"writes wake the other store's subscribers", testSharedSubscribe},
		{"revisions stay dense across stores", testSharedRevisions},
		{"compare and swap across stores loses no update", testSharedCAS},
		{"join token used once across stores", testSharedJoinToken},
		{"audit chain stays linear across stores", testSharedAuditChain},
		{"audited writes and appends keep one chain across stores", testSharedAudited},
		{"elect is exclusive across stores", testSharedElect},
		{"elect passes on when the holder closes", testSharedElectClose},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, b := open(t)
			t.Cleanup(func() {
				if err := errors.Join(a.Close(), b.Close()); err != nil {
					t.Errorf("Close: %v", err)
				}
			})
			tc.test(t, a, b)
		})
	}
}

func testSharedSubscribe(t *testing.T, a, b store.Store) {
	ctx := t.Context()
	subs := map[store.Topic]<-chan struct{}{}
	for _, topic := range []store.Topic{store.TopicObjects, store.TopicBlobs, store.TopicPresence} {
		ch, cancel := b.Subscribe(topic)
		t.Cleanup(cancel)
		subs[topic] = ch
	}
	local, cancelLocal := a.Subscribe(store.TopicAll)
	t.Cleanup(cancelLocal)

	for _, tc := range []struct {
		name  string
		topic store.Topic
		write func() error
		// check reads the write back through b once b was signalled.
		check func() error
	}{
		{"put object", store.TopicObjects, func() error {
			_, err := a.PutObject(ctx, store.Object{Kind: "Service", Namespace: "prod", Name: "web", Data: []byte(`{"v":1}`)}, store.MustNotExist)
			return err
		}, func() error {
			o, err := b.GetObject(ctx, "Service", "prod", "web")
			if err == nil && string(o.Data) != `{"v":1}` {
				err = fmt.Errorf("got Data %q", o.Data)
			}
			return err
		}},
		{"delete object", store.TopicObjects, func() error {
			_, err := a.DeleteObject(ctx, "Service", "prod", "web", "admin:bob", store.AnyRevision)
			return err
		}, func() error {
			_, err := b.GetObject(ctx, "Service", "prod", "web")
			return wantNotFound("GetObject", err)
		}},
		{"revocation", store.TopicObjects, func() error {
			return a.AddRevocation(ctx, store.Revocation{Serial: "42", RevokedAt: base, Reason: "test"})
		}, func() error {
			revs, err := b.ListRevocations(ctx)
			if err == nil && len(revs) != 1 {
				err = fmt.Errorf("got %d revocations, want 1", len(revs))
			}
			return err
		}},
		{"put blob", store.TopicBlobs, func() error {
			_, err := a.PutBlob(ctx, "ca/keys", binaryData, store.MustNotExist)
			return err
		}, func() error {
			bl, err := b.GetBlob(ctx, "ca/keys")
			if err == nil && (bl.Version != 1 || !bytes.Equal(bl.Data, binaryData)) {
				err = fmt.Errorf("got version %d and %d bytes", bl.Version, len(bl.Data))
			}
			return err
		}},
		{"delete blob", store.TopicBlobs, func() error {
			return a.DeleteBlob(ctx, "ca/keys", 1)
		}, func() error {
			_, err := b.GetBlob(ctx, "ca/keys")
			return wantNotFound("GetBlob", err)
		}},
		{"put presence", store.TopicPresence, func() error {
			return a.PutPresence(ctx, store.Presence{Replica: "replica-a", Data: []byte("endpoints"), ExpiresAt: base.Add(time.Minute)})
		}, func() error {
			ps, err := b.ListPresence(ctx, base)
			if err == nil && (len(ps) != 1 || ps[0].Replica != "replica-a") {
				err = fmt.Errorf("got %v, want replica-a's", ps)
			}
			return err
		}},
		{"delete presence", store.TopicPresence, func() error {
			return a.DeletePresence(ctx, "replica-a")
		}, func() error {
			ps, err := b.ListPresence(ctx, base)
			if err == nil && len(ps) != 0 {
				err = fmt.Errorf("got %v, want none", ps)
			}
			return err
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.write(); err != nil {
				t.Fatalf("write through a: %v", err)
			}
			waitNotified(t, subs[tc.topic], "on b after "+tc.name+" through a")
			if err := tc.check(); err != nil {
				t.Errorf("read through b after the signal: %v", err)
			}
			waitNotified(t, local, "on a after its own "+tc.name)
		})
	}

	// And the other way round.
	ch, cancel := a.Subscribe(store.TopicObjects)
	defer cancel()
	if _, err := b.PutObject(ctx, store.Object{Kind: "Service", Namespace: "prod", Name: "api", Data: []byte(`{}`)}, store.AnyRevision); err != nil {
		t.Fatalf("PutObject through b: %v", err)
	}
	waitNotified(t, ch, "on a after PutObject through b")
}

// wantNotFound says what is wrong if err is not store.ErrNotFound.
func wantNotFound(what string, err error) error {
	switch {
	case err == nil:
		return fmt.Errorf("%s: got nil error, want ErrNotFound", what)
	case !errors.Is(err, store.ErrNotFound):
		return fmt.Errorf("%s: got %w, want ErrNotFound", what, err)
	}
	return nil
}

// alternate returns a for even i and b for odd.
func alternate(i int, a, b store.Store) store.Store {
	if i%2 == 0 {
		return a
	}
	return b
}

func testSharedRevisions(t *testing.T, a, b store.Store) {
	const (
		writers = 8
		each    = 25
		total   = writers * each
	)
	ctx := t.Context()
	var wg sync.WaitGroup
	for w := range writers {
		s := alternate(w, a, b)
		wg.Go(func() {
			for i := range each {
				_, err := s.PutObject(ctx, store.Object{
					Kind: "Service", Namespace: "ns", Name: fmt.Sprint("w", w, "-", i%5), Data: counterData(i), Actor: fmt.Sprint("writer-", w),
				}, store.AnyRevision)
				if err != nil {
					t.Errorf("writer %d: PutObject: %v", w, err)
					return
				}
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	for name, s := range map[string]store.Store{"a": a, "b": b} {
		changes, err := s.Changes(ctx, 0, 0)
		if err != nil {
			t.Fatalf("%s: Changes: %v", name, err)
		}
		want := make([]int64, total)
		for i := range want {
			want[i] = int64(i + 1)
		}
		if diff := cmp.Diff(want, revisions(changes)); diff != "" {
			t.Errorf("%s: revisions are not 1..%d (-want +got):\n%s", name, total, diff)
		}
		if got := currentRevision(t, s); got != total {
			t.Errorf("%s: CurrentRevision: got %d, want %d", name, got, total)
		}
		for i := 1; i < len(changes); i++ {
			if changes[i].Time.Before(changes[i-1].Time.Add(-time.Second)) {
				t.Errorf("%s: revision %d at %v is well before revision %d at %v", name,
					changes[i].Revision, changes[i].Time, changes[i-1].Revision, changes[i-1].Time)
			}
		}
	}
}

func testSharedCAS(t *testing.T, a, b store.Store) {
	const (
		workers    = 8
		increments = 15
		total      = workers * increments
	)
	ctx := t.Context()
	created, err := a.PutObject(ctx, store.Object{Kind: "Counter", Namespace: "test", Name: "c", Data: counterData(0)}, store.MustNotExist)
	if err != nil {
		t.Fatalf("PutObject: %v", err)
	}
	if _, err := b.PutBlob(ctx, "counter", counterData(0), store.MustNotExist); err != nil {
		t.Fatalf("PutBlob: %v", err)
	}

	var wg sync.WaitGroup
	for w := range workers {
		s := alternate(w, a, b)
		// An object counter and a blob counter, both incremented by
		// compare-and-swap from both stores at once.
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
		wg.Go(func() {
			for range increments {
				for {
					cur, err := s.GetBlob(ctx, "counter")
					if err != nil {
						t.Errorf("worker %d: GetBlob: %v", w, err)
						return
					}
					n, err := parseCounter(cur.Data)
					if err != nil {
						t.Errorf("worker %d: blob %q: %v", w, cur.Data, err)
						return
					}
					_, err = s.PutBlob(ctx, "counter", counterData(n+1), cur.Version)
					if errors.Is(err, store.ErrConflict) {
						continue
					}
					if err != nil {
						t.Errorf("worker %d: PutBlob: %v", w, err)
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

	for name, s := range map[string]store.Store{"a": a, "b": b} {
		got, err := s.GetObject(ctx, "Counter", "test", "c")
		if err != nil {
			t.Fatalf("%s: GetObject: %v", name, err)
		}
		if n, err := parseCounter(got.Data); err != nil || n != total {
			t.Errorf("%s: object counter: got %d (%v), want %d", name, n, err, total)
		}
		if want := created.Revision + total; got.Revision != want {
			t.Errorf("%s: revision: got %d, want %d (conflicting writes must consume no revision)", name, got.Revision, want)
		}
		bl, err := s.GetBlob(ctx, "counter")
		if err != nil {
			t.Fatalf("%s: GetBlob: %v", name, err)
		}
		if n, err := parseCounter(bl.Data); err != nil || n != total {
			t.Errorf("%s: blob counter: got %d (%v), want %d", name, n, err, total)
		}
		if want := int64(1 + total); bl.Version != want {
			t.Errorf("%s: blob version: got %d, want %d", name, bl.Version, want)
		}
	}
}

func testSharedJoinToken(t *testing.T, a, b store.Store) {
	const callers = 32
	tok := createToken(t, a, "shared-race", base.Add(time.Hour))
	now := base.Add(time.Minute)
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		consumed int
	)
	start := make(chan struct{})
	for i := range callers {
		s := alternate(i, a, b)
		wg.Go(func() {
			<-start
			_, err := s.UseJoinToken(t.Context(), tok.Hash, now)
			if err != nil {
				if !errors.Is(err, store.ErrTokenUsed) {
					t.Errorf("caller %d: got error %v, want ErrTokenUsed", i, err)
				}
				return
			}
			mu.Lock()
			consumed++
			mu.Unlock()
		})
	}
	close(start)
	wg.Wait()
	if consumed != 1 {
		t.Errorf("successful uses: got %d, want 1", consumed)
	}
	for name, s := range map[string]store.Store{"a": a, "b": b} {
		if _, err := s.UseJoinToken(t.Context(), tok.Hash, now); !errors.Is(err, store.ErrTokenUsed) {
			t.Errorf("%s: use after the race: got %v, want ErrTokenUsed", name, err)
		}
	}
}

func testSharedAuditChain(t *testing.T, a, b store.Store) {
	const (
		writers   = 16
		rounds    = 8
		batchSize = 5
	)
	ctx := t.Context()
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		batches [][]int64
		count   int
	)
	for w := range writers {
		s := alternate(w, a, b)
		wg.Go(func() {
			for i := range rounds {
				size := 1
				if w%4 >= 2 {
					size = batchSize
				}
				recs := make([]store.AuditRecord, size)
				for j := range recs {
					recs[j] = store.AuditRecord{
						Time: base.Add(time.Duration(i*size + j)), Actor: fmt.Sprint("writer-", w), Action: "test",
						Object: strconv.Itoa(i) + "/" + strconv.Itoa(j), Outcome: "success",
					}
				}
				seqs, err := s.AppendAuditBatch(ctx, recs)
				if err != nil {
					t.Errorf("writer %d: AppendAuditBatch: %v", w, err)
					return
				}
				mu.Lock()
				batches = append(batches, seqs)
				count += len(seqs)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		return
	}

	fromA, fromB := listAll(t, a), listAll(t, b)
	if len(fromA) != count {
		t.Fatalf("got %d records, want %d", len(fromA), count)
	}
	checkChain(t, fromA)
	if diff := cmp.Diff(fromA, fromB); diff != "" {
		t.Errorf("the stores list different logs (-a +b):\n%s", diff)
	}
	for _, seqs := range batches {
		for i := 1; i < len(seqs); i++ {
			if seqs[i] != seqs[0]+int64(i) {
				t.Fatalf("batch seqs %v are not consecutive", seqs)
			}
		}
	}
	all := slices.Concat(batches...)
	slices.Sort(all)
	for i, seq := range all {
		if seq != int64(i+1) {
			t.Fatalf("returned seqs are not 1..%d: %d at %d", count, seq, i)
		}
	}
}

func testSharedElect(t *testing.T, a, b store.Store) {
	ctx := t.Context()
	heldA, releaseA := elect(t, a, "ca-rotation")

	// b waits while a holds the role.
	waiting := campaign(ctx, b, "ca-rotation")
	blocked(t, waiting, "b while a holds the role")
	expectHeld(t, heldA, "a while b campaigns")

	// Another role is free.
	_, releaseOther := elect(t, b, "audit-checkpoints")
	releaseOther()

	// A campaign given up while waiting returns its context's error.
	giveUp, cancel := context.WithCancel(ctx)
	abandoned := campaign(giveUp, b, "ca-rotation")
	blocked(t, abandoned, "second campaign of b")
	cancel()
	select {
	case r := <-abandoned:
		r.release()
		if !errors.Is(r.err, context.Canceled) {
			t.Errorf("abandoned campaign: got %v, want context.Canceled", r.err)
		}
	case <-time.After(electTimeout):
		t.Fatalf("abandoned campaign did not return within %v", electTimeout)
	}

	// a releases: b wins within a few seconds.
	releaseA()
	waitDone(t, heldA, "a after release")
	start := time.Now()
	heldB, releaseB := granted(t, waiting, "b after a released")
	if d := time.Since(start); d > handoverTimeout {
		t.Errorf("b won %v after a released, want within %v", d, handoverTimeout)
	}
	expectHeld(t, heldB, "b after winning")

	// And back.
	waitingA := campaign(ctx, a, "ca-rotation")
	blocked(t, waitingA, "a while b holds the role")
	releaseB()
	waitDone(t, heldB, "b after release")
	heldA, _ = granted(t, waitingA, "a after b released")
	expectHeld(t, heldA, "a after winning again")
}

func testSharedElectClose(t *testing.T, a, b store.Store) {
	heldA, _ := elect(t, a, "ca-rotation")
	waiting := campaign(t.Context(), b, "ca-rotation")
	blocked(t, waiting, "b while a holds the role")

	if err := a.Close(); err != nil {
		t.Fatalf("a.Close: %v", err)
	}
	waitDone(t, heldA, "a after Close")
	start := time.Now()
	heldB, _ := granted(t, waiting, "b after a closed")
	if d := time.Since(start); d > handoverTimeout {
		t.Errorf("b won %v after a closed, want within %v", d, handoverTimeout)
	}
	expectHeld(t, heldB, "b after winning")
}

package storetest

import (
	"crypto/sha512"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/trustmesh/trustmesh/internal/store"
	"github.com/trustmesh/trustmesh/internal/store/auditchain"
)

// checkChain checks that recs are the records 1..len(recs) of one linear
// hash chain.
func checkChain(t *testing.T, recs []store.AuditRecord) {
	t.Helper()
	prev := auditchain.Genesis
	for i, r := range recs {
		if want := int64(i + 1); r.Seq != want {
			t.Fatalf("record %d: got Seq %d, want %d", i, r.Seq, want)
		}
		if r.PrevHash != prev {
			t.Fatalf("record %d: got PrevHash %s, want %s (the previous record's hash)", r.Seq, r.PrevHash, prev)
		}
		if got := auditchain.Hash(r); r.Hash != got {
			t.Fatalf("record %d: got Hash %s, want %s (its content's)", r.Seq, r.Hash, got)
		}
		prev = r.Hash
	}
}

func listAll(t *testing.T, s store.Store) []store.AuditRecord {
	t.Helper()
	recs, err := s.ListAudit(t.Context(), 0, 0)
	if err != nil {
		t.Fatalf("ListAudit: %v", err)
	}
	return recs
}

func testAuditRoundTrip(t *testing.T, s store.Store) {
	ctx := t.Context()
	if _, err := s.AuditHead(ctx); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("AuditHead of an empty log: got %v, want ErrNotFound", err)
	}
	rec := store.AuditRecord{
		Time: base, Actor: "admin:alice", Action: "object.put", Object: "Service/prod/web",
		Revision: 7, Outcome: "success", Reason: "change 42 \"quoted\"\n\ttabbed \\ slashed", RequestID: "req-1",
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

	got := listAll(t, s)
	if len(got) != 2 {
		t.Fatalf("ListAudit: got %d records, want 2", len(got))
	}
	want := rec
	want.Seq = 1
	want.Time = base.UTC()
	want.PrevHash = auditchain.Genesis
	want.Hash = auditchain.Hash(want)
	if diff := cmp.Diff(want, got[0]); diff != "" {
		t.Errorf("record 1 (-want +got):\n%s", diff)
	}
	checkUTC(t, "Time", got[0].Time)
	if tm := got[1].Time; tm.Before(before.Truncate(time.Microsecond)) || tm.After(after) {
		t.Errorf("stamped Time: got %v, want between %v and %v", tm, before, after)
	}
	checkChain(t, got)

	head, err := s.AuditHead(ctx)
	if err != nil {
		t.Fatalf("AuditHead: %v", err)
	}
	if diff := cmp.Diff(got[1], head); diff != "" {
		t.Errorf("AuditHead (-want +got):\n%s", diff)
	}
}

func testAuditBatch(t *testing.T, s store.Store) {
	ctx := t.Context()
	if seqs, err := s.AppendAuditBatch(ctx, nil); err != nil || len(seqs) != 0 {
		t.Errorf("AppendAuditBatch(nil): got %v, %v, want no seqs and no error", seqs, err)
	}
	if _, err := s.AppendAudit(ctx, store.AuditRecord{Time: base, Action: "first", Outcome: "success"}); err != nil {
		t.Fatalf("AppendAudit: %v", err)
	}
	batch := make([]store.AuditRecord, 50)
	for i := range batch {
		batch[i] = store.AuditRecord{Time: base.Add(time.Duration(i)), Actor: "proxy", Action: "decision", Object: strconv.Itoa(i), Outcome: "denied"}
	}
	batch[7].Time = time.Time{} // stamped
	orig := slices.Clone(batch)
	seqs, err := s.AppendAuditBatch(ctx, batch)
	if err != nil {
		t.Fatalf("AppendAuditBatch: %v", err)
	}
	wantSeqs := make([]int64, len(batch))
	for i := range wantSeqs {
		wantSeqs[i] = int64(i + 2)
	}
	if diff := cmp.Diff(wantSeqs, seqs); diff != "" {
		t.Errorf("AppendAuditBatch seqs (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(orig, batch); diff != "" {
		t.Errorf("AppendAuditBatch modified its argument (-before +after):\n%s", diff)
	}
	recs := listAll(t, s)
	checkChain(t, recs)
	for i, r := range recs[1:] {
		if r.Object != strconv.Itoa(i) {
			t.Errorf("record %d: got Object %q, want %q (batch order kept)", r.Seq, r.Object, strconv.Itoa(i))
		}
	}
	if recs[8].Time.IsZero() {
		t.Errorf("record 9 (no time in the batch): got a zero Time, want the store's clock")
	}
}

func testAuditInvalidUTF8(t *testing.T, s store.Store) {
	ctx := t.Context()
	if _, err := s.AppendAudit(ctx, store.AuditRecord{Time: base, Actor: "a\xffb", Action: "x", Reason: "bad \xc3\x28 byte", Outcome: "error"}); err != nil {
		t.Fatalf("AppendAudit: %v", err)
	}
	recs := listAll(t, s)
	if len(recs) != 1 {
		t.Fatalf("got %d records, want 1", len(recs))
	}
	if got, want := recs[0].Actor, "a\uFFFDb"; got != want {
		t.Errorf("Actor: got %q, want %q", got, want)
	}
	if got, want := recs[0].Reason, "bad \uFFFD( byte"; got != want {
		t.Errorf("Reason: got %q, want %q", got, want)
	}
	checkChain(t, recs)
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

	recs := listAll(t, s)
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

// testAuditChainConcurrent: 32 appenders, half with single records and half
// with batches, must leave one gapless linear chain in which every batch's
// records are consecutive.
func testAuditChainConcurrent(t *testing.T, s store.Store) {
	const (
		writers   = 32
		rounds    = 10
		batchSize = 7
	)
	ctx := t.Context()
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		batches [][]int64
		count   int
	)
	for w := range writers {
		wg.Go(func() {
			for i := range rounds {
				rec := func(j int) store.AuditRecord {
					return store.AuditRecord{Time: base, Actor: fmt.Sprint("writer-", w), Action: "test", Object: fmt.Sprint(i, "/", j), Outcome: "success"}
				}
				var seqs []int64
				if w%2 == 0 {
					seq, err := s.AppendAudit(ctx, rec(0))
					if err != nil {
						t.Errorf("writer %d: AppendAudit: %v", w, err)
						return
					}
					seqs = []int64{seq}
				} else {
					recs := make([]store.AuditRecord, batchSize)
					for j := range recs {
						recs[j] = rec(j)
					}
					var err error
					if seqs, err = s.AppendAuditBatch(ctx, recs); err != nil {
						t.Errorf("writer %d: AppendAuditBatch: %v", w, err)
						return
					}
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

	recs := listAll(t, s)
	if len(recs) != count {
		t.Fatalf("got %d records, want %d", len(recs), count)
	}
	checkChain(t, recs)
	for _, seqs := range batches {
		for i := 1; i < len(seqs); i++ {
			if seqs[i] != seqs[0]+int64(i) {
				t.Fatalf("batch seqs %v are not consecutive", seqs)
			}
		}
	}
	head, err := s.AuditHead(ctx)
	if err != nil {
		t.Fatalf("AuditHead: %v", err)
	}
	if last := recs[len(recs)-1]; head.Seq != last.Seq || head.Hash != last.Hash {
		t.Errorf("AuditHead: got seq %d hash %s, want %d %s", head.Seq, head.Hash, last.Seq, last.Hash)
	}
}

func testAuditCheckpoints(t *testing.T, s store.Store) {
	ctx := t.Context()
	if _, err := s.LastAuditCheckpoint(ctx); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("LastAuditCheckpoint with none: got %v, want ErrNotFound", err)
	}
	cp := func(seq int64) store.AuditCheckpoint {
		// Arbitrary bytes, which the store must keep as they are.
		sig := sha512.Sum512([]byte(strconv.FormatInt(seq, 10)))
		return store.AuditCheckpoint{Seq: seq, Hash: fmt.Sprintf("%064x", seq), Time: base.Add(time.Duration(seq) * time.Minute), KeyID: "0123456789abcdef", Signature: sig[:]}
	}
	want := []store.AuditCheckpoint{cp(10), cp(25), cp(26)}
	for _, c := range want {
		if err := s.AppendAuditCheckpoint(ctx, c); err != nil {
			t.Fatalf("AppendAuditCheckpoint(%d): %v", c.Seq, err)
		}
	}
	for _, seq := range []int64{26, 11} {
		if err := s.AppendAuditCheckpoint(ctx, cp(seq)); !errors.Is(err, store.ErrConflict) {
			t.Errorf("AppendAuditCheckpoint(%d) after 26: got %v, want ErrConflict", seq, err)
		}
	}
	for i := range want {
		want[i].Time = want[i].Time.UTC()
	}
	got, err := s.ListAuditCheckpoints(ctx, 0, 0)
	if err != nil {
		t.Fatalf("ListAuditCheckpoints: %v", err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("ListAuditCheckpoints (-want +got):\n%s", diff)
	}
	for _, c := range got {
		checkUTC(t, "checkpoint Time", c.Time)
	}
	if got, err := s.ListAuditCheckpoints(ctx, 10, 1); err != nil || len(got) != 1 || got[0].Seq != 25 {
		t.Errorf("ListAuditCheckpoints(10, 1): got %v, %v, want the checkpoint at 25", got, err)
	}
	last, err := s.LastAuditCheckpoint(ctx)
	if err != nil {
		t.Fatalf("LastAuditCheckpoint: %v", err)
	}
	if diff := cmp.Diff(want[2], last); diff != "" {
		t.Errorf("LastAuditCheckpoint (-want +got):\n%s", diff)
	}
}

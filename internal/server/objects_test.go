package server

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/trustmesh/trustmesh/internal/server/adminapi"
	"github.com/trustmesh/trustmesh/internal/store"
	"github.com/trustmesh/trustmesh/internal/store/sqlite"
)

// syncBuffer is a bytes.Buffer for a logger that several goroutines use.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// racingStore lets another writer change an object just before the next
// audited write of it, as a concurrent apply would, once armed.
type racingStore struct {
	store.Store
	armed atomic.Bool
}

func (r *racingStore) PutObjectAudited(ctx context.Context, obj store.Object, expect int64, recs []store.AuditRecord) (store.Object, []store.AuditRecord, error) {
	if r.armed.CompareAndSwap(true, false) {
		other := obj
		other.Actor = "other writer"
		if _, err := r.PutObject(ctx, other, store.AnyRevision); err != nil {
			return store.Object{}, nil, fmt.Errorf("racing write: %w", err)
		}
	}
	return r.Store.PutObjectAudited(ctx, obj, expect, recs)
}

const denyAdminV1 = `apiVersion: trustmesh.dev/v1
kind: AuthorizationPolicy
metadata: {name: deny-admin, namespace: default}
spec:
  action: DENY
  rules:
  - to: [{operation: {paths: ["/admin"]}}]
`

var denyAdminV2 = strings.Replace(denyAdminV1, `["/admin"]`, `["/admin", "/admin/*"]`, 1)

// objectRecord is what TestObjectWritesAudited compares of a record.
type objectRecord struct {
	Action   string
	Revision int64
	Outcome  string
	Reason   string
}

// TestObjectWritesAudited: apply, rollback and delete store each change
// with its audit records in one transaction, the records carrying the
// revision written; unchanged objects and dry runs write nothing, and a
// write that loses a race is audited as a failed apply only.
func TestObjectWritesAudited(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	inner, err := sqlite.Open(ctx, filepath.Join(dir, "trustmesh.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = inner.Close() })
	st := &racingStore{Store: inner}
	var logs syncBuffer
	runCtx, cancel := context.WithCancel(context.Background())
	s, err := New(runCtx, Config{DataDir: dir, TrustDomain: "unit.example", ListenAddr: "127.0.0.1:0",
		AdminListenAddr: "127.0.0.1:0", Store: st, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Run(runCtx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	admin, err := adminapi.NewClient(filepath.Join(dir, "admin"), "")
	if err != nil {
		t.Fatal(err)
	}

	apply := func(doc string, dryRun bool) (adminapi.ApplyResult, error) {
		var resp adminapi.ApplyResponse
		err := admin.Do(ctx, http.MethodPost, adminapi.PathApply, nil, adminapi.ApplyRequest{Document: doc, DryRun: dryRun}, &resp)
		if err != nil {
			return adminapi.ApplyResult{}, err
		}
		return resp.Results[0], nil
	}
	rollback := func(rev int64, dryRun bool) (adminapi.ApplyResult, error) {
		var res adminapi.ApplyResult
		err := admin.Do(ctx, http.MethodPost, adminapi.PathRollback, nil, adminapi.RollbackRequest{
			Kind: "AuthorizationPolicy", Name: "deny-admin", Revision: rev, DryRun: dryRun}, &res)
		return res, err
	}
	del := func() (int64, error) {
		var res adminapi.DeleteResponse
		err := admin.Do(ctx, http.MethodDelete, adminapi.PathObjects, url.Values{"kind": {"AuthorizationPolicy"}, "name": {"deny-admin"}}, nil, &res)
		return res.Revision, err
	}
	must := func(what string, res adminapi.ApplyResult, err error, action string) int64 {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if res.Action != action {
			t.Fatalf("%s: got action %q, want %q", what, res.Action, action)
		}
		return res.Revision
	}
	wantStatus := func(what string, err error, code int) {
		t.Helper()
		var se *adminapi.StatusError
		if !errors.As(err, &se) || se.Code != code {
			t.Fatalf("%s: got %v, want HTTP %d", what, err, code)
		}
	}

	res, err := apply(denyAdminV1, true)
	must("dry-run create", res, err, "created (dry run)")
	r1 := func() int64 { res, err := apply(denyAdminV1, false); return must("create", res, err, "created") }()
	res, err = apply(denyAdminV1, false)
	must("apply again", res, err, "unchanged")
	r2 := func() int64 { res, err := apply(denyAdminV2, false); return must("configure", res, err, "configured") }()
	res, err = rollback(r1, true)
	must("dry-run rollback", res, err, "configured (dry run)")
	r3 := func() int64 { res, err := rollback(r1, false); return must("rollback", res, err, "configured") }()
	res, err = rollback(r1, false)
	must("rollback to the current content", res, err, "unchanged")
	st.armed.Store(true)
	_, err = apply(denyAdminV2, false)
	wantStatus("apply that loses a race", err, http.StatusConflict)
	r4 := r3 + 1 // the racing write
	r5, err := del()
	if err != nil {
		t.Fatalf("delete: %v", err)
	}
	_, err = del()
	wantStatus("delete again", err, http.StatusNotFound)

	recs, err := inner.ListAudit(ctx, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	var (
		mine []store.AuditRecord
		got  []objectRecord
		atR3 []store.AuditRecord
	)
	for _, r := range recs {
		if r.Object != "AuthorizationPolicy/default/deny-admin" {
			continue
		}
		mine = append(mine, r)
		if r.Actor != "admin (admin)" || r.RequestID == "" {
			t.Errorf("record %d: got actor %q request ID %q, want the admin's and one", r.Seq, r.Actor, r.RequestID)
		}
		reason := r.Reason
		if r.Action == "object.apply" {
			reason, _, _ = strings.Cut(reason, ":") // the store's words follow
		}
		got = append(got, objectRecord{r.Action, r.Revision, r.Outcome, reason})
		if r.Revision == r3 {
			atR3 = append(atR3, r)
		}
	}
	want := []objectRecord{
		{"object.created", r1, "success", "previous revision 0"},
		{"object.configured", r2, "success", fmt.Sprint("previous revision ", r1)},
		{"object.configured", r3, "success", fmt.Sprint("previous revision ", r2)},
		{"object.rollback", r3, "success", fmt.Sprint("restored the content of revision ", r1)},
		{"object.rollback", r3, "success", fmt.Sprint("restored the content of revision ", r1)},
		{"object.apply", 0, "error", "put object AuthorizationPolicy/default/deny-admin"},
		{"object.delete", r5, "success", ""},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("audit records of the object (-want +got):\n%s", diff)
	}
	if r5 != r4+1 {
		t.Errorf("tombstone revision: got %d, want %d (after the racing write)", r5, r4+1)
	}
	// The rollback's two records were appended with its write, one after
	// the other, for one request; the one of the rollback that changed
	// nothing is a request of its own.
	if len(atR3) != 3 || atR3[1].Seq != atR3[0].Seq+1 || atR3[0].RequestID != atR3[1].RequestID || atR3[2].RequestID == atR3[1].RequestID {
		t.Errorf("records at revision %d: got %+v, want three: the first two consecutive, of one request, and the third of another", r3, atR3)
	}

	out := logs.String()
	for _, r := range mine {
		line := fmt.Sprintf("msg=audit component=audit seq=%d actor=\"admin (admin)\" action=%s object=AuthorizationPolicy/default/deny-admin revision=%d outcome=%s", r.Seq, r.Action, r.Revision, r.Outcome)
		if !strings.Contains(out, line) {
			t.Errorf("log: no line %q", line)
		}
	}
}

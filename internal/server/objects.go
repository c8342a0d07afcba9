package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"

	"github.com/trustmesh/trustmesh/internal/audit"
	"github.com/trustmesh/trustmesh/internal/policy"
	"github.com/trustmesh/trustmesh/internal/policy/authz"
	"github.com/trustmesh/trustmesh/internal/server/adminapi"
	"github.com/trustmesh/trustmesh/internal/store"
)

// handleApply decodes and validates every document first and writes only if
// all are valid, so a file with one mistake changes nothing.
func (s *Server) handleApply(w http.ResponseWriter, r *http.Request, op operator) {
	var req adminapi.ApplyRequest
	if !readJSON(w, r, &req) {
		return
	}
	objs, err := policy.Decode([]byte(req.Document))
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error()+"; nothing was applied")
		return
	}
	var errs []error
	for _, o := range objs {
		if err := authz.Validate(o, s.td); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		writeError(w, http.StatusBadRequest, errors.Join(errs...).Error()+"\nnothing was applied")
		return
	}
	resp := adminapi.ApplyResponse{Results: []adminapi.ApplyResult{}}
	for _, o := range objs {
		res, err := s.applyOne(r, op, o, req.DryRun)
		if err != nil {
			code := http.StatusInternalServerError
			msg := err.Error()
			if errors.Is(err, store.ErrConflict) {
				code = http.StatusConflict
			}
			if len(resp.Results) > 0 {
				msg += fmt.Sprintf(" (the %d object(s) before it were applied)", len(resp.Results))
			}
			writeError(w, code, msg)
			return
		}
		resp.Results = append(resp.Results, res)
	}
	writeJSON(w, http.StatusOK, resp)
}

// actionUnchanged is the apply result of an object that is stored as
// given already: nothing is written, and nothing audited.
const actionUnchanged = "unchanged"

// applyOne writes o, unless it is unchanged, and its audit record in one
// store transaction, with also, more records of the same change (a
// rollback's), after it; every record carries the revision written. A
// write the store refuses is audited as a failed object.apply.
func (s *Server) applyOne(r *http.Request, op operator, o policy.Object, dryRun bool, also ...store.AuditRecord) (adminapi.ApplyResult, error) {
	return s.applyObject(r.Context(), op, o, dryRun, also...)
}

// applyObject is applyOne for any caller (the admin API, the Kubernetes
// controller).
func (s *Server) applyObject(ctx context.Context, op operator, o policy.Object, dryRun bool, also ...store.AuditRecord) (adminapi.ApplyResult, error) {
	meta := o.GetMeta()
	res := adminapi.ApplyResult{Kind: o.GetKind(), Namespace: meta.Namespace, Name: meta.Name}
	// The revision a user sends is a precondition, never stored data.
	expect := store.AnyRevision
	if meta.Revision > 0 {
		expect = meta.Revision
	}
	meta.Revision, meta.CreationRevision = 0, 0
	data, err := policy.Marshal(o)
	if err != nil {
		return res, fmt.Errorf("encode %s %q: %w", o.GetKind(), meta.Name, err)
	}
	cur, err := s.store.GetObject(ctx, o.GetKind(), meta.Namespace, meta.Name)
	switch {
	case err == nil:
		if expect != store.AnyRevision && expect != cur.Revision {
			return res, fmt.Errorf("%s %q: metadata.revision %d is not the current revision %d; get the object again and re-apply: %w", o.GetKind(), meta.Name, expect, cur.Revision, store.ErrConflict)
		}
		if bytes.Equal(cur.Data, data) {
			res.Revision, res.Action = cur.Revision, actionUnchanged
			return dry(res, dryRun), nil
		}
		res.Action = "configured"
	case errors.Is(err, store.ErrNotFound):
		if expect != store.AnyRevision {
			return res, fmt.Errorf("%s %q: metadata.revision %d given but the object does not exist: %w", o.GetKind(), meta.Name, expect, store.ErrConflict)
		}
		res.Action = "created"
	default:
		return res, fmt.Errorf("read %s %q: %w", o.GetKind(), meta.Name, err)
	}
	if dryRun {
		return dry(res, true), nil
	}
	before := cur.Revision
	if expect == store.AnyRevision {
		// Compare-and-swap against what we just read, so a concurrent
		// writer is reported instead of silently overwritten.
		expect = before
		if res.Action == "created" {
			expect = store.MustNotExist
		}
	}
	key := objectKey(o.GetKind(), meta.Namespace, meta.Name)
	recs := append([]store.AuditRecord{{Actor: op.actor(), Action: "object." + res.Action, Object: key,
		Outcome: audit.OutcomeSuccess, Reason: "previous revision " + strconv.FormatInt(before, 10), RequestID: op.requestID}}, also...)
	stored, err := s.audit.PutObject(ctx, store.Object{Kind: o.GetKind(), Namespace: meta.Namespace, Name: meta.Name, Data: data, Actor: op.actor()}, expect, recs...)
	if err != nil {
		s.auditAdmin(ctx, op, "object.apply", key, audit.OutcomeError, err.Error())
		return res, fmt.Errorf("write %s %q: %w", o.GetKind(), meta.Name, err)
	}
	res.Revision = stored.Revision
	return res, nil
}

func dry(res adminapi.ApplyResult, dryRun bool) adminapi.ApplyResult {
	if dryRun {
		res.Action += " (dry run)"
	}
	return res
}

func objectKey(kind, ns, name string) string {
	if ns == "" {
		return kind + "/" + name
	}
	return kind + "/" + ns + "/" + name
}

// objectQuery reads kind, namespace and name from the query string.
func objectQuery(r *http.Request, needName bool) (kind, ns, name string, err error) {
	q := r.URL.Query()
	kind, err = policy.ResolveKind(q.Get("kind"))
	if err != nil {
		return "", "", "", err
	}
	ns, name = q.Get("namespace"), q.Get("name")
	if needName && name == "" {
		return "", "", "", errors.New("a name is required")
	}
	return kind, ns, name, nil
}

// withRevisions decorates stored JSON with metadata.revision and
// metadata.creationRevision for output.
func withRevisions(o store.Object) ([]byte, error) {
	obj, err := policy.Unmarshal(o.Kind, o.Data)
	if err != nil {
		return nil, err
	}
	obj.GetMeta().Revision = o.Revision
	obj.GetMeta().CreationRevision = o.CreateRevision
	return policy.Marshal(obj)
}

func (s *Server) handleGet(w http.ResponseWriter, r *http.Request, _ operator) {
	kind, ns, name, err := objectQuery(r, false)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	var objs []store.Object
	if name != "" {
		o, err := s.store.GetObject(r.Context(), kind, s.namespaceFor(kind, ns), name)
		if errors.Is(err, store.ErrNotFound) {
			writeError(w, http.StatusNotFound, fmt.Sprintf("%s %q not found in namespace %q", kind, name, s.namespaceFor(kind, ns)))
			return
		} else if err != nil {
			writeError(w, http.StatusInternalServerError, "could not read the store; see the server log")
			return
		}
		objs = []store.Object{o}
	} else if objs, err = s.store.ListObjects(r.Context(), kind, ns); err != nil {
		writeError(w, http.StatusInternalServerError, "could not read the store; see the server log")
		return
	}
	s.writeObjects(w, objs, false)
}

func (s *Server) writeObjects(w http.ResponseWriter, objs []store.Object, history bool) {
	out := adminapi.ObjectsResponse{Items: make([]json.RawMessage, 0, len(objs))}
	for _, o := range objs {
		if history { // one entry per item: a skipped item skips its entry
			out.Entries = append(out.Entries, adminapi.HistoryEntry{Revision: o.Revision, Time: o.Time, Actor: o.Actor, Deleted: o.Deleted})
		}
		if o.Deleted {
			out.Items = append(out.Items, []byte(fmt.Sprintf(`{"kind":%q,"metadata":{"name":%q,"namespace":%q,"revision":%d},"deleted":true}`, o.Kind, o.Name, o.Namespace, o.Revision)))
			continue
		}
		b, err := withRevisions(o)
		if err != nil {
			s.log.Error("decode stored object", "kind", o.Kind, "name", o.Name, "error", err)
			if history {
				out.Entries = out.Entries[:len(out.Entries)-1]
			}
			continue
		}
		out.Items = append(out.Items, b)
	}
	writeJSON(w, http.StatusOK, out)
}

// namespaceFor applies the default namespace to namespaced kinds.
func (s *Server) namespaceFor(kind, ns string) string {
	if kind == policy.KindMeshConfig {
		return ""
	}
	if ns == "" {
		return "default"
	}
	return ns
}

func (s *Server) handleHistory(w http.ResponseWriter, r *http.Request, _ operator) {
	kind, ns, name, err := objectQuery(r, true)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	hist, err := s.store.History(r.Context(), kind, s.namespaceFor(kind, ns), name)
	if err != nil {
		writeError(w, http.StatusInternalServerError, "could not read the store; see the server log")
		return
	}
	if len(hist) == 0 {
		writeError(w, http.StatusNotFound, fmt.Sprintf("%s %q has no history", kind, name))
		return
	}
	s.writeObjects(w, hist, true)
}

// deleteObject writes a tombstone and its audit record in one store
// transaction.
func (s *Server) deleteObject(ctx context.Context, op operator, kind, ns, name string) (store.Object, error) {
	return s.audit.DeleteObject(ctx, kind, ns, name, op.actor(), store.AnyRevision,
		store.AuditRecord{Actor: op.actor(), Action: "object.delete", Object: objectKey(kind, ns, name), Outcome: audit.OutcomeSuccess, RequestID: op.requestID})
}

func (s *Server) handleDelete(w http.ResponseWriter, r *http.Request, op operator) {
	kind, ns, name, err := objectQuery(r, true)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	ns = s.namespaceFor(kind, ns)
	o, err := s.deleteObject(r.Context(), op, kind, ns, name)
	if errors.Is(err, store.ErrNotFound) {
		writeError(w, http.StatusNotFound, fmt.Sprintf("%s %q not found in namespace %q", kind, name, ns))
		return
	} else if err != nil {
		writeError(w, http.StatusInternalServerError, "could not write the store; see the server log")
		return
	}
	writeJSON(w, http.StatusOK, adminapi.DeleteResponse{Revision: o.Revision})
}

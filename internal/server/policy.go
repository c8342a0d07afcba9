package server

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"github.com/trustmesh/trustmesh/internal/audit"
	"github.com/trustmesh/trustmesh/internal/configsync"
	"github.com/trustmesh/trustmesh/internal/policy"
	"github.com/trustmesh/trustmesh/internal/policy/authz"
	"github.com/trustmesh/trustmesh/internal/policy/simulate"
	"github.com/trustmesh/trustmesh/internal/server/adminapi"
	"github.com/trustmesh/trustmesh/internal/store"
)

// handleRollback writes the content of an earlier revision of an object as
// its new revision. The history is never rewritten: a rollback is one more
// write, audited as such (its object.configured record and the
// object.rollback record are stored with the write, in one transaction).
func (s *Server) handleRollback(w http.ResponseWriter, r *http.Request, op operator) {
	var req adminapi.RollbackRequest
	if !readJSON(w, r, &req) {
		return
	}
	kind, err := policy.ResolveKind(req.Kind)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	if req.Name == "" || req.Revision <= 0 {
		writeError(w, http.StatusBadRequest, "a name and a revision (> 0) are required; see `trustmesh policy history NAME` for the revisions")
		return
	}
	ns := s.namespaceFor(kind, req.Namespace)
	hist, err := s.store.History(r.Context(), kind, ns, req.Name)
	if err != nil {
		writeError(w, http.StatusInternalServerError, "could not read the store; see the server log")
		return
	}
	var target *store.Object
	var revs []string
	for i := range hist {
		if !hist[i].Deleted {
			revs = append(revs, strconv.FormatInt(hist[i].Revision, 10))
		}
		if hist[i].Revision == req.Revision {
			target = &hist[i]
		}
	}
	switch {
	case len(hist) == 0:
		writeError(w, http.StatusNotFound, fmt.Sprintf("%s %q has no history in namespace %q", kind, req.Name, ns))
		return
	case target == nil:
		writeError(w, http.StatusNotFound, fmt.Sprintf("%s %q has no revision %d; its revisions are %s", kind, req.Name, req.Revision, strings.Join(revs, ", ")))
		return
	case target.Deleted:
		writeError(w, http.StatusBadRequest, fmt.Sprintf("revision %d of %s %q is its deletion; roll back to one of %s, or delete the object", req.Revision, kind, req.Name, strings.Join(revs, ", ")))
		return
	}
	obj, err := policy.Unmarshal(kind, target.Data)
	if err != nil {
		writeError(w, http.StatusInternalServerError, "could not decode the stored revision; see the server log")
		s.log.Error("decode stored revision", "kind", kind, "name", req.Name, "revision", req.Revision, "error", err)
		return
	}
	if err := authz.Validate(obj, s.td); err != nil {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("revision %d no longer validates: %v", req.Revision, err))
		return
	}
	rollback := store.AuditRecord{Actor: op.actor(), Action: "object.rollback", Object: objectKey(kind, ns, req.Name),
		Outcome: audit.OutcomeSuccess, Reason: "restored the content of revision " + strconv.FormatInt(req.Revision, 10), RequestID: op.requestID}
	res, err := s.applyOne(r, op, obj, req.DryRun, rollback)
	if err != nil {
		code := http.StatusInternalServerError
		if errors.Is(err, store.ErrConflict) {
			code = http.StatusConflict
		}
		writeError(w, code, err.Error())
		return
	}
	if !req.DryRun && res.Action == actionUnchanged {
		// Nothing was written, so nothing recorded: the rollback to the
		// current content is recorded on its own.
		rollback.Revision = res.Revision
		_ = s.audit.Record(r.Context(), rollback)
	}
	writeJSON(w, http.StatusOK, res)
}

// handleExplain decides a described request against the current world,
// the way the destination's proxy would, and says why.
func (s *Server) handleExplain(w http.ResponseWriter, r *http.Request, _ operator) {
	var req adminapi.ExplainRequest
	if !readJSON(w, r, &req) {
		return
	}
	v := s.reg.current()
	if v == nil || v.world == nil {
		writeError(w, http.StatusServiceUnavailable, "the server has not loaded its objects yet; retry")
		return
	}
	resp, err := simulate.Explain(r.Context(), worldInput(v.world), &req)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	writeJSON(w, http.StatusOK, resp)
}

// worldInput is the part of the world explain reads.
func worldInput(w *configsync.World) simulate.Input {
	return simulate.Input{Revision: w.Revision, Services: w.Services, Workloads: w.Workloads, AuthzPolicies: w.AuthzPolicies, RequestAuths: w.RequestAuths}
}

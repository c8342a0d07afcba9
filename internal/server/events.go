package server

import (
	"context"
	"fmt"
	"strings"
	"time"

	configsyncv1 "github.com/trustmesh/trustmesh/api/configsync/v1"
	"github.com/trustmesh/trustmesh/internal/audit"
	"github.com/trustmesh/trustmesh/internal/configsync"
	"github.com/trustmesh/trustmesh/internal/policy"
	"github.com/trustmesh/trustmesh/internal/store"
)

// Bounds on what a proxy may put into one audit record: the proxy is
// authenticated, but a request's path and headers are not.
const (
	maxEventField = 512
	maxEventSkew  = time.Minute
)

// auditEvents turns a proxy's batch of decision events into audit records
// (one transaction): every deny, AUDIT match and dry-run would-be decision,
// with the deciding policy and its revision. Events the proxy dropped are
// recorded as a count, so a gap is visible in the log itself.
func (s *Server) auditEvents(ctx context.Context, p configsync.ProxyStatus, evs []*configsyncv1.DecisionEvent, dropped uint64) {
	now := time.Now()
	actor := p.SPIFFEID.String() + " (proxy " + clip(p.ID) + ")"
	recs := make([]store.AuditRecord, 0, len(evs)+1)
	for _, e := range evs {
		r := store.AuditRecord{
			Time:      time.Unix(0, e.GetTimeUnixNano()),
			Actor:     actor,
			Action:    "authz." + clip(e.GetDecision()),
			Object:    "workload " + p.SPIFFEID.String(),
			Revision:  e.GetPolicyRevision(),
			Outcome:   audit.OutcomeSuccess,
			Reason:    eventReason(e),
			RequestID: clip(e.GetRequestId()),
		}
		if r.Time.After(now.Add(maxEventSkew)) || e.GetTimeUnixNano() <= 0 {
			r.Time = now // a proxy clock ahead of ours must not reorder the log
		}
		if e.GetDecision() == "deny" {
			r.Outcome = audit.OutcomeDenied
		}
		if pol := e.GetPolicy(); pol != "" {
			r.Object = objectKey(policy.KindAuthorizationPolicy, "", clip(pol))
		}
		recs = append(recs, r)
	}
	if dropped > 0 {
		recs = append(recs, store.AuditRecord{Time: now, Actor: actor, Action: "authz.events-dropped", Object: "workload " + p.SPIFFEID.String(),
			Outcome: audit.OutcomeError, Reason: fmt.Sprintf("the proxy dropped %d decision events while it could not reach the server (buffer full)", dropped)})
	}
	start := time.Now()
	err := s.audit.RecordBatch(ctx, recs)
	s.metrics.observeStore("audit_batch", start)
	if err == nil {
		s.metrics.audit.Add(float64(len(recs)))
	}
	if err != nil {
		s.log.Error("decision events not recorded", "proxy_id", p.ID, "events", len(recs), "error", err)
	}
}

// eventReason is the reason field: the code and what was asked, by whom.
func eventReason(e *configsyncv1.DecisionEvent) string {
	var b strings.Builder
	b.WriteString(clip(e.GetReason()))
	if e.GetRule() >= 0 && e.GetPolicy() != "" {
		fmt.Fprintf(&b, " (rule %d)", e.GetRule())
	}
	b.WriteString(": ")
	if e.GetProtocol() == "tcp" {
		fmt.Fprintf(&b, "tcp port %d", e.GetPort())
	} else {
		fmt.Fprintf(&b, "%s %s", clip(e.GetMethod()), clip(e.GetPath()))
	}
	src := e.GetSource()
	if src == "" {
		src = "plaintext"
	}
	fmt.Fprintf(&b, " from %s", clip(src))
	if e.GetRemote() != "" {
		fmt.Fprintf(&b, " at %s", clip(e.GetRemote()))
	}
	if e.GetDetail() != "" {
		fmt.Fprintf(&b, "; %s", clip(e.GetDetail()))
	}
	return b.String()
}

// clip bounds a proxy-supplied string and removes line breaks, so one
// field cannot forge another line of a text export.
func clip(s string) string {
	if len(s) > maxEventField {
		s = s[:maxEventField] + "..."
	}
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, s)
}

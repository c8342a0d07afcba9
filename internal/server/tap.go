package server

import (
	"encoding/json"
	"net/http"
	"strings"
	"sync"
	"time"

	configsyncv1 "github.com/trustmesh/trustmesh/api/configsync/v1"
	"github.com/trustmesh/trustmesh/internal/configsync"
	"github.com/trustmesh/trustmesh/internal/server/adminapi"
)

// tapHub fans request summaries from proxies out to the operators running
// trustmesh tap. While at least one session is open, proxies are asked to
// send summaries; with none, they send nothing.
type tapHub struct {
	setTap func(bool)
	mu     sync.Mutex
	subs   map[*tapSub]struct{}
}

// tapSub is one tap session with its filters. A slow reader loses
// summaries (counted), never slows the proxies or other sessions.
type tapSub struct {
	filter  adminapi.TapFilter
	ch      chan adminapi.TapEvent
	mu      sync.Mutex
	dropped uint64
}

func newTapHub(setTap func(bool)) *tapHub {
	return &tapHub{setTap: setTap, subs: map[*tapSub]struct{}{}}
}

func (h *tapHub) subscribe(f adminapi.TapFilter) *tapSub {
	sub := &tapSub{filter: f, ch: make(chan adminapi.TapEvent, 512)}
	h.mu.Lock()
	h.subs[sub] = struct{}{}
	first := len(h.subs) == 1
	h.mu.Unlock()
	if first {
		h.setTap(true)
	}
	return sub
}

func (h *tapHub) unsubscribe(sub *tapSub) {
	h.mu.Lock()
	delete(h.subs, sub)
	last := len(h.subs) == 0
	h.mu.Unlock()
	if last {
		h.setTap(false)
	}
}

// publish is configsync's OnTaps.
func (h *tapHub) publish(p configsync.ProxyStatus, rs []*configsyncv1.RequestSummary, dropped uint64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for sub := range h.subs {
		if dropped > 0 {
			sub.mu.Lock()
			sub.dropped += dropped
			sub.mu.Unlock()
		}
		for _, r := range rs {
			ev := tapEvent(p, r)
			if !sub.filter.Matches(&ev) {
				continue
			}
			select {
			case sub.ch <- ev:
			default:
				sub.mu.Lock()
				sub.dropped++
				sub.mu.Unlock()
			}
		}
	}
}

func tapEvent(p configsync.ProxyStatus, r *configsyncv1.RequestSummary) adminapi.TapEvent {
	return adminapi.TapEvent{
		Time: time.Unix(0, r.GetTimeUnixNano()).UTC(), Proxy: p.ID, Direction: clip(r.GetDirection()),
		Source: clip(r.GetSource()), Destination: clip(r.GetDestination()), Host: clip(r.GetHost()), Protocol: clip(r.GetProtocol()),
		Method: clip(r.GetMethod()), Path: clip(r.GetPath()), Status: int(r.GetStatus()), DurationMillis: float64(r.GetDurationNanos()) / 1e6,
		Decision: clip(r.GetDecision()), Reason: clip(r.GetReason()), Policy: clip(r.GetPolicy()),
	}
}

// handleTap streams the summaries matching the query's filters as JSON
// lines until the client goes away. Every second without traffic it sends
// a heartbeat line (with the count of summaries dropped for this session)
// so that clients and proxies in between keep the stream open.
func (s *Server) handleTap(w http.ResponseWriter, r *http.Request, _ operator) {
	q := r.URL.Query()
	f := adminapi.TapFilter{To: q.Get("to"), From: q.Get("from"), Denied: q.Get("denied") == "true"}
	if f.From != "" && !strings.HasPrefix(f.From, "spiffe://") {
		writeError(w, http.StatusBadRequest, "--from "+f.From+": want a SPIFFE ID (spiffe://trust-domain/path)")
		return
	}
	if f.To != "" && !strings.HasPrefix(f.To, "spiffe://") {
		name, ns, _ := strings.Cut(strings.TrimSuffix(f.To, ".svc"), ".")
		if v := s.reg.current(); v != nil && v.world != nil {
			for _, svc := range v.world.Services {
				if svc.Metadata.Name == name && (ns == "" || svc.Metadata.Namespace == ns) {
					f.ServedBy = append(f.ServedBy, svc.Spec.SPIFFEIDs...)
				}
			}
		}
	}
	sub := s.taps.subscribe(f)
	defer s.taps.unsubscribe(sub)
	rc := http.NewResponseController(w)
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.WriteHeader(http.StatusOK)
	enc := json.NewEncoder(w)
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		_ = rc.SetWriteDeadline(time.Now().Add(30 * time.Second)) // the admin server's WriteTimeout would end the stream
		select {
		case <-r.Context().Done():
			return
		case ev := <-sub.ch:
			if enc.Encode(ev) != nil {
				return
			}
		case <-tick.C:
			sub.mu.Lock()
			d := sub.dropped
			sub.mu.Unlock()
			if enc.Encode(adminapi.TapEvent{Heartbeat: true, Dropped: d}) != nil {
				return
			}
		}
		if rc.Flush() != nil {
			return
		}
	}
}

package proxy

import (
	"sync"

	configsyncv1 "github.com/trustmesh/trustmesh/api/configsync/v1"
)

// maxBufferedEvents bounds the decision events a proxy keeps while it
// cannot reach the server: about 10 s of a sustained 1,000 denials/s.
const maxBufferedEvents = 10000

// eventBuffer holds decision events for the audit log until the config
// stream sends them. It never blocks the request path: when full, the
// newest event is dropped and counted (metric and a count sent with the
// next batch). Safe for concurrent use.
type eventBuffer struct {
	mu      sync.Mutex
	events  []*configsyncv1.DecisionEvent
	dropped uint64
	ready   chan struct{}
	onDrop  func()
}

func newEventBuffer(onDrop func()) *eventBuffer {
	return &eventBuffer{ready: make(chan struct{}, 1), onDrop: onDrop}
}

func (b *eventBuffer) add(e *configsyncv1.DecisionEvent) {
	b.mu.Lock()
	full := len(b.events) >= maxBufferedEvents
	if full {
		b.dropped++
	} else {
		b.events = append(b.events, e)
	}
	b.mu.Unlock()
	if full {
		b.onDrop()
		return
	}
	select {
	case b.ready <- struct{}{}:
	default:
	}
}

// EventsReady implements configsync.EventSource.
func (b *eventBuffer) EventsReady() <-chan struct{} { return b.ready }

// DrainEvents implements configsync.EventSource.
func (b *eventBuffer) DrainEvents(max int) ([]*configsyncv1.DecisionEvent, uint64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	n := min(max, len(b.events))
	out := b.events[:n:n]
	b.events = b.events[n:]
	if len(b.events) == 0 {
		b.events = nil // let the drained backing array go
	}
	dropped := b.dropped
	b.dropped = 0
	return out, dropped
}

// RequeueEvents implements configsync.EventSource: the batch goes back in
// front, as far as the bound allows (the rest counts as dropped).
func (b *eventBuffer) RequeueEvents(evs []*configsyncv1.DecisionEvent, dropped uint64) {
	b.mu.Lock()
	room := max(0, maxBufferedEvents-len(b.events))
	keep := min(room, len(evs))
	lost := len(evs) - keep
	b.events = append(append(make([]*configsyncv1.DecisionEvent, 0, keep+len(b.events)), evs[:keep]...), b.events...)
	b.dropped += dropped + uint64(lost) //nolint:gosec // G115: lost is a non-negative slice length difference
	b.mu.Unlock()
	for range lost {
		b.onDrop()
	}
	if keep > 0 {
		select {
		case b.ready <- struct{}{}:
		default:
		}
	}
}

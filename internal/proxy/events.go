package proxy

import (
	"sync"
)

// maxBufferedEvents bounds the decision events a proxy keeps while it
// cannot reach the server: about 10 s of a sustained 1,000 denials/s.
// maxBufferedTaps bounds request summaries for tap, which are live data:
// a slow tap loses summaries rather than memory.
const (
	maxBufferedEvents = 10000
	maxBufferedTaps   = 2000
)

// buffer holds items (decision events for the audit log, request
// summaries for tap) until the config stream sends them; it implements
// configsync.Buffer. It never blocks the request path: when full, the
// newest item is dropped and counted (onDrop, and a count sent with the
// next batch). Safe for concurrent use.
type buffer[T any] struct {
	mu      sync.Mutex
	events  []T
	limit   int
	dropped uint64
	ready   chan struct{}
	onDrop  func()
}

func newBuffer[T any](limit int, onDrop func()) *buffer[T] {
	return &buffer[T]{limit: limit, ready: make(chan struct{}, 1), onDrop: onDrop}
}

func (b *buffer[T]) add(e T) {
	b.mu.Lock()
	full := len(b.events) >= b.limit
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

// Ready implements configsync.Buffer.
func (b *buffer[T]) Ready() <-chan struct{} { return b.ready }

// Drain implements configsync.Buffer.
func (b *buffer[T]) Drain(max int) ([]T, uint64) {
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

// Requeue implements configsync.Buffer: the batch goes back in front, as
// far as the bound allows (the rest counts as dropped).
func (b *buffer[T]) Requeue(evs []T, dropped uint64) {
	b.mu.Lock()
	room := max(0, b.limit-len(b.events))
	keep := min(room, len(evs))
	lost := len(evs) - keep
	b.events = append(append(make([]T, 0, keep+len(b.events)), evs[:keep]...), b.events...)
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

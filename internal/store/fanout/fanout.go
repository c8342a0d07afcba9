// Package fanout is the subscriber set behind store.Store's Subscribe: each
// subscriber names the topics it follows, and a change to a topic signals
// every subscriber of it.
//
// A signal is a non-blocking send on a channel of capacity one, so a
// subscriber that has not yet received the last signal gets one value for
// many changes, and a slow subscriber never delays the one who notifies.
// Subscribers is safe for concurrent use; its zero value is ready.
package fanout

import (
	"sync"

	"github.com/trustmesh/trustmesh/internal/store"
)

// Subscribers fans a signal out to the channels of a topic.
type Subscribers struct {
	mu  sync.Mutex
	chs map[chan struct{}]store.Topic
}

// Subscribe returns a channel that receives a value after Notify of one of
// topics. The channel is never closed; cancel stops the signals and may be
// called more than once.
func (s *Subscribers) Subscribe(topics store.Topic) (ch <-chan struct{}, cancel func()) {
	c := make(chan struct{}, 1)
	s.mu.Lock()
	if s.chs == nil {
		s.chs = make(map[chan struct{}]store.Topic)
	}
	s.chs[c] = topics
	s.mu.Unlock()

	var once sync.Once
	return c, func() {
		once.Do(func() {
			s.mu.Lock()
			delete(s.chs, c)
			s.mu.Unlock()
		})
	}
}

// Notify signals, without blocking, every subscriber of one of topic's bits.
func (s *Subscribers) Notify(topic store.Topic) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for ch, topics := range s.chs {
		if topics&topic == 0 {
			continue
		}
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}

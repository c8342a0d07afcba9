package proxy

import (
	"fmt"
	"testing"

	configsyncv1 "github.com/trustmesh/trustmesh/api/configsync/v1"
)

func TestEventBuffer(t *testing.T) {
	drops := 0
	b := newBuffer[*configsyncv1.DecisionEvent](maxBufferedEvents, func() { drops++ })
	ev := func(i int) *configsyncv1.DecisionEvent { return &configsyncv1.DecisionEvent{RequestId: fmt.Sprint(i)} }
	for i := range maxBufferedEvents + 5 {
		b.add(ev(i))
	}
	if drops != 5 {
		t.Errorf("drop callback called %d times, want 5", drops)
	}
	select {
	case <-b.Ready():
	default:
		t.Error("EventsReady not signalled")
	}
	got, dropped := b.Drain(3)
	if len(got) != 3 || dropped != 5 || got[0].GetRequestId() != "0" {
		t.Fatalf("first drain: got %d events (first %q), %d dropped; want 3 from 0, 5 dropped", len(got), got[0].GetRequestId(), dropped)
	}
	// A failed send puts the batch back in front; nothing is lost while
	// there is room.
	b.Requeue(got, dropped)
	all, dropped := b.Drain(2 * maxBufferedEvents)
	if len(all) != maxBufferedEvents || dropped != 5 || all[0].GetRequestId() != "0" || all[len(all)-1].GetRequestId() != fmt.Sprint(maxBufferedEvents-1) {
		t.Fatalf("after requeue: got %d events, %d dropped; want %d in order, 5 dropped", len(all), dropped, maxBufferedEvents)
	}
	if evs, dropped := b.Drain(10); len(evs) != 0 || dropped != 0 {
		t.Errorf("empty buffer: got %d events, %d dropped", len(evs), dropped)
	}
	// Requeue into a full buffer keeps what fits and counts the rest.
	for i := range maxBufferedEvents - 1 {
		b.add(ev(i))
	}
	drops = 0
	b.Requeue([]*configsyncv1.DecisionEvent{ev(-1), ev(-2), ev(-3)}, 0)
	if drops != 2 {
		t.Errorf("requeue into a nearly full buffer: %d drops, want 2", drops)
	}
	if evs, dropped := b.Drain(1); evs[0].GetRequestId() != "-1" || dropped != 2 {
		t.Errorf("got first %q with %d dropped, want -1 with 2", evs[0].GetRequestId(), dropped)
	}
}

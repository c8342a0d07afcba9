package adminapi

import "testing"

func TestTapFilter(t *testing.T) {
	ev := TapEvent{Source: "spiffe://td/ns/shop/sa/frontend", Destination: "spiffe://td/ns/shop/sa/orders", Host: "orders.shop.svc", Decision: "deny"}
	tests := []struct {
		name string
		f    TapFilter
		ev   TapEvent
		want bool
	}{
		{"empty", TapFilter{}, ev, true},
		{"to-name", TapFilter{To: "orders"}, ev, true},
		{"to-name-ns", TapFilter{To: "orders.shop"}, ev, true},
		{"to-other-ns", TapFilter{To: "orders.other"}, ev, false},
		{"to-other", TapFilter{To: "payments"}, ev, false},
		{"to-by-identity", TapFilter{To: "orders", ServedBy: []string{"spiffe://td/ns/shop/sa/orders"}}, TapEvent{Destination: "spiffe://td/ns/shop/sa/orders", Host: "127.0.0.1"}, true},
		{"to-spiffe-id", TapFilter{To: "spiffe://td/ns/shop/sa/orders"}, ev, true},
		{"to-spiffe-id-other", TapFilter{To: "spiffe://td/ns/shop/sa/x"}, ev, false},
		{"from", TapFilter{From: "spiffe://td/ns/shop/sa/frontend"}, ev, true},
		{"from-other", TapFilter{From: "spiffe://td/ns/shop/sa/batch"}, ev, false},
		{"denied", TapFilter{Denied: true}, ev, true},
		{"denied-allowed", TapFilter{Denied: true}, TapEvent{Decision: "allow"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.f.Matches(&tt.ev); got != tt.want {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
}

package proxy

import (
	"testing"
	"time"
)

func TestSessionNotAfter(t *testing.T) {
	at := time.Unix(1_900_000_000, 0)
	tests := []struct {
		name   string
		extra  [][]byte
		want   time.Time
		wantOK bool
	}{
		{"recorded", [][]byte{[]byte("other"), encodeSessionNotAfter(at)}, at, true},
		{"absent: not resumed", [][]byte{[]byte("other")}, time.Time{}, false},
		{"truncated: not resumed", [][]byte{[]byte(sessionNotAfterTag + "abc")}, time.Time{}, false},
		{"empty", nil, time.Time{}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := sessionNotAfter(tc.extra)
			if ok != tc.wantOK || !got.Equal(tc.want) {
				t.Errorf("got %v, %v; want %v, %v", got, ok, tc.want, tc.wantOK)
			}
		})
	}
}

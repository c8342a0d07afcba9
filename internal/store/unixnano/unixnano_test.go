package unixnano

import (
	"math"
	"testing"
	"time"
)

func TestEncode(t *testing.T) {
	for _, tc := range []struct {
		name    string
		t       time.Time
		want    int64
		wantErr bool
	}{
		{"epoch", time.Unix(0, 0), 0, false},
		{"earliest", time.Unix(0, math.MinInt64), math.MinInt64, false},
		{"latest", time.Unix(0, math.MaxInt64), math.MaxInt64, false},
		{"before the earliest", time.Unix(0, math.MinInt64).Add(-time.Nanosecond), 0, true},
		{"after the latest", time.Unix(0, math.MaxInt64).Add(time.Nanosecond), 0, true},
		{"zero", time.Time{}, 0, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Encode("t", tc.t)
			if (err != nil) != tc.wantErr || got != tc.want {
				t.Errorf("Encode(%v): got %d, %v, want %d, error %t", tc.t, got, err, tc.want, tc.wantErr)
			}
			if err == nil && !Decode(got).Equal(tc.t) {
				t.Errorf("Decode(%d): got %v, want %v", got, Decode(got), tc.t)
			}
		})
	}
}

func TestNull(t *testing.T) {
	n, err := EncodeNull("t", time.Time{})
	if n != nil || err != nil {
		t.Errorf("EncodeNull(zero): got %v, %v, want nil, nil", n, err)
	}
	if got := DecodeNull(nil); !got.IsZero() {
		t.Errorf("DecodeNull(nil): got %v, want the zero time", got)
	}
	at := time.Date(2025, 1, 2, 3, 4, 5, 6, time.FixedZone("x", 3600))
	n, err = EncodeNull("t", at)
	if err != nil || n == nil {
		t.Fatalf("EncodeNull(%v): got %v, %v, want a value", at, n, err)
	}
	if got := DecodeNull(n); !got.Equal(at) || got.Location() != time.UTC {
		t.Errorf("DecodeNull: got %v, want %v in UTC", got, at)
	}
}

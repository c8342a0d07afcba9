package ca

import (
	"crypto/x509"
	"testing"
	"time"
)

func TestRenewAt(t *testing.T) {
	issued := time.Unix(1_900_000_000, 0)
	tests := []struct {
		name      string
		notBefore time.Time
		notAfter  time.Time
		want      time.Time
	}{
		{"backdated 1-minute SVID renews 30s after issuance", issued.Add(-Backdate), issued.Add(time.Minute), issued.Add(30 * time.Second)},
		{"1-hour SVID", issued.Add(-Backdate), issued.Add(time.Hour), issued.Add(30 * time.Minute)},
		{"not backdated and shorter than the backdate", issued, issued.Add(20 * time.Second), issued.Add(10 * time.Second)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := RenewAt(&x509.Certificate{NotBefore: tc.notBefore, NotAfter: tc.notAfter})
			if !got.Equal(tc.want) {
				t.Errorf("got %v, want %v", got, tc.want)
			}
		})
	}
}

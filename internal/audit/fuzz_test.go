package audit_test

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/trustmesh/trustmesh/internal/audit"
)

// FuzzParseJSONL: an exported line from anywhere (a SIEM, a file handed to
// an auditor) never panics the parser, and whatever it accepts encodes back
// to a line that parses to the same record.
func FuzzParseJSONL(f *testing.F) {
	for _, r := range sealed(f, 3) {
		f.Add(bytes.TrimSpace(audit.AppendJSONL(nil, r)))
	}
	f.Add([]byte(`{"action":"\u0000\ud800","actor":"","hash":"` + strings.Repeat("0", 64) + `","object":"","outcome":"","prev_hash":"` +
		strings.Repeat("0", 64) + `","reason":"\u2028<>&","request_id":"","revision":-1,"seq":9223372036854775807,"time":"0001-01-01T00:00:00+23:59"}`))
	f.Add(bytes.Replace(bytes.TrimSpace(audit.AppendJSONL(nil, sealed(f, 1)[0])), []byte("2026-12-01T09:00:01.123456789Z"), []byte("9999-12-31T23:59:59-23:59"), 1))
	f.Add([]byte(`{"SEQ":1}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, line []byte) {
		r, err := audit.ParseJSONL(line)
		if err != nil {
			return
		}
		again, err := audit.ParseJSONL(bytes.TrimSuffix(audit.AppendJSONL(nil, r), []byte("\n")))
		if err != nil {
			t.Fatalf("re-encoded line does not parse: %v", err)
		}
		if diff := cmp.Diff(r, again); diff != "" {
			t.Fatalf("round trip (-first +second):\n%s", diff)
		}
	})
}

// FuzzParseCheckpointLine: the same for checkpoint file lines.
func FuzzParseCheckpointLine(f *testing.F) {
	c := audit.SignCheckpoint(make([]byte, 64), 42, strings.Repeat("ab", 32), time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC))
	f.Add(bytes.TrimSpace(audit.AppendCheckpointLine(nil, c)))
	f.Add([]byte(`{"seq":1,"hash":"","time":"","key_id":"","signature":""}`))
	f.Add([]byte(`{"seq":1e3}`))
	f.Fuzz(func(t *testing.T, line []byte) {
		c, err := audit.ParseCheckpointLine(line)
		if err != nil {
			return
		}
		again, err := audit.ParseCheckpointLine(bytes.TrimSuffix(audit.AppendCheckpointLine(nil, c), []byte("\n")))
		if err != nil {
			t.Fatalf("re-encoded line does not parse: %v", err)
		}
		if diff := cmp.Diff(c, again); diff != "" {
			t.Fatalf("round trip (-first +second):\n%s", diff)
		}
	})
}

// FuzzReadCheckpoints: a whole checkpoint file never panics the reader, and
// every checkpoint it returns re-encodes to itself.
func FuzzReadCheckpoints(f *testing.F) {
	c := audit.SignCheckpoint(make([]byte, 64), 42, strings.Repeat("ab", 32), time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC))
	line := audit.AppendCheckpointLine(nil, c)
	f.Add(append(append([]byte{}, line...), line...))
	f.Add([]byte("\n\n"))
	f.Add(append([]byte(strings.Repeat("x", 5000)), '\n'))
	f.Fuzz(func(t *testing.T, data []byte) {
		cps, _ := audit.ReadCheckpoints(bytes.NewReader(data))
		for _, fc := range cps {
			got, err := audit.ParseCheckpointLine(bytes.TrimSpace(audit.AppendCheckpointLine(nil, fc.AuditCheckpoint)))
			if err != nil {
				t.Fatalf("line %d re-encoded does not parse: %v", fc.Line, err)
			}
			if diff := cmp.Diff(fc.AuditCheckpoint, got); diff != "" {
				t.Fatalf("line %d round trip (-first +second):\n%s", fc.Line, diff)
			}
		}
	})
}

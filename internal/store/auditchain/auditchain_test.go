package auditchain_test

import (
	"strings"
	"testing"
	"time"

	"github.com/trustmesh/trustmesh/internal/store"
	"github.com/trustmesh/trustmesh/internal/store/auditchain"
)

// The vectors were computed outside Go, with the Python recipe of package
// audit's documentation, so they pin the encoding rather than this code.
func TestHashVectors(t *testing.T) {
	for _, tc := range []struct {
		name          string
		rec           store.AuditRecord
		wantCanonical string
		wantHash      string
	}{
		{
			name: "every escape",
			rec: store.AuditRecord{
				Seq: 42, Time: time.Date(2025, 3, 14, 15, 9, 26, 535897932, time.FixedZone("UTC+5:30", 5*3600+30*60)),
				Actor: "admin:alice (admin)", Action: "object.put", Object: `AuthorizationPolicy/prod/<deny&"all">`, Revision: 7,
				Outcome: "denied", Reason: "tab\there\nnew\\line \u2028 sep \x01\x1f ünïcødé / 🔒 \x7f \b\f\r",
				PrevHash: strings.Repeat("ab", 32),
			},
			wantCanonical: `{"action":"object.put","actor":"admin:alice (admin)","object":"AuthorizationPolicy/prod/<deny&\"all\">","outcome":"denied","prev_hash":"abababababababababababababababababababababababababababababababab","reason":"tab\there\nnew\\line ` + "\u2028" + ` sep \u0001\u001f ünïcødé / 🔒 ` + "\x7f" + ` \b\f\r","request_id":"","revision":7,"seq":42,"time":"2025-03-14T09:39:26.535897932Z"}`,
			wantHash:      "2ccdbda5ef91e74d04d245159cb4bed45d5d2ae6c5fa39dee2cec49aa483b276",
		},
		{
			name:          "empty fields, whole second",
			rec:           store.AuditRecord{Seq: 1, Time: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC), PrevHash: auditchain.Genesis},
			wantCanonical: `{"action":"","actor":"","object":"","outcome":"","prev_hash":"0000000000000000000000000000000000000000000000000000000000000000","reason":"","request_id":"","revision":0,"seq":1,"time":"2025-01-01T00:00:00.000000000Z"}`,
			wantHash:      "9c5ce173bd94574d7d956c9174341f98f282a3c799dc9843e6b4c2368bc2c6f9",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := string(auditchain.AppendCanonical(nil, tc.rec)); got != tc.wantCanonical {
				t.Errorf("canonical:\n got %s\nwant %s", got, tc.wantCanonical)
			}
			if got := auditchain.Hash(tc.rec); got != tc.wantHash {
				t.Errorf("Hash: got %s, want %s", got, tc.wantHash)
			}
			rec := tc.rec
			rec.Hash = tc.wantHash
			var h auditchain.Hasher
			if !h.Matches(rec) {
				t.Errorf("Matches: got false, want true")
			}
			rec.Reason += "."
			if h.Matches(rec) {
				t.Errorf("Matches after a change: got true, want false")
			}
		})
	}
}

func TestSeal(t *testing.T) {
	at := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	recs := []store.AuditRecord{
		{Time: at, Action: "a", Actor: "bad \xff byte"},
		{Time: at.Add(time.Second), Action: "b"},
	}
	if err := auditchain.Seal(0, auditchain.Genesis, recs); err != nil {
		t.Fatalf("Seal: %v", err)
	}
	if recs[0].Seq != 1 || recs[1].Seq != 2 {
		t.Errorf("Seqs: got %d, %d, want 1, 2", recs[0].Seq, recs[1].Seq)
	}
	if recs[0].PrevHash != auditchain.Genesis || recs[1].PrevHash != recs[0].Hash {
		t.Errorf("PrevHash: got %s, %s, want genesis and record 1's hash", recs[0].PrevHash, recs[1].PrevHash)
	}
	if got, want := recs[0].Actor, "bad \uFFFD byte"; got != want {
		t.Errorf("Actor: got %q, want %q", got, want)
	}
	for _, r := range recs {
		if got := auditchain.Hash(r); r.Hash != got {
			t.Errorf("record %d: got Hash %s, want %s", r.Seq, r.Hash, got)
		}
	}

	more := []store.AuditRecord{{Time: at, Action: "c"}}
	if err := auditchain.Seal(recs[1].Seq, recs[1].Hash, more); err != nil {
		t.Fatalf("Seal after 2: %v", err)
	}
	if more[0].Seq != 3 || more[0].PrevHash != recs[1].Hash {
		t.Errorf("continued record: got seq %d prev %s, want 3 and record 2's hash", more[0].Seq, more[0].PrevHash)
	}

	for _, tc := range []struct {
		name     string
		prevHash string
		recs     []store.AuditRecord
	}{
		{"no time", auditchain.Genesis, []store.AuditRecord{{Action: "x"}}},
		{"short previous hash", "abc", []store.AuditRecord{{Time: at}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := auditchain.Seal(0, tc.prevHash, tc.recs); err == nil {
				t.Errorf("Seal: got nil error, want one")
			}
		})
	}
}

func BenchmarkHasherMatches(b *testing.B) {
	r := store.AuditRecord{Seq: 123456, Time: time.Now(), Actor: "spiffe://example.org/ns/prod/sa/web (proxy web-1)", Action: "authz.deny",
		Object: "AuthorizationPolicy/prod/deny-admin", Revision: 42, Outcome: "denied", Reason: "deny-policy (rule 0): GET /admin/users from spiffe://example.org/ns/prod/sa/api",
		RequestID: "0123456789abcdef", PrevHash: auditchain.Genesis}
	r.Hash = auditchain.Hash(r)
	var h auditchain.Hasher
	b.ReportAllocs()
	for b.Loop() {
		if !h.Matches(r) {
			b.Fatal("no match")
		}
	}
}

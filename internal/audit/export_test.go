package audit_test

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/trustmesh/trustmesh/internal/audit"
	"github.com/trustmesh/trustmesh/internal/store"
	"github.com/trustmesh/trustmesh/internal/store/auditchain"
)

// listed serves records from memory, as a store would.
type listed []store.AuditRecord

func (l listed) ListAudit(_ context.Context, after int64, limit int) ([]store.AuditRecord, error) {
	i := 0
	for i < len(l) && l[i].Seq <= after {
		i++
	}
	end := len(l)
	if limit > 0 {
		end = min(end, i+limit)
	}
	return l[i:end], nil
}

// sealed returns n chained records.
func sealed(t testing.TB, n int) []store.AuditRecord {
	t.Helper()
	recs := make([]store.AuditRecord, n)
	for i := range recs {
		recs[i] = record(i + 1)
	}
	if err := auditchain.Seal(0, auditchain.Genesis, recs); err != nil {
		t.Fatal(err)
	}
	return recs
}

func TestJSONL(t *testing.T) {
	r := sealed(t, 1)[0]
	line := audit.AppendJSONL(nil, r)
	want := `{"action":"authz.deny","actor":"admin:user-1 (admin)","hash":"` + r.Hash + `","object":"Service/prod/svc-1","outcome":"denied",` +
		`"prev_hash":"` + auditchain.Genesis + `","reason":"reason 1: \"quoted\" = and | and \\","request_id":"req-0001","revision":1,"seq":1,` +
		`"time":"2026-12-01T09:00:01.123456789Z"}` + "\n"
	if string(line) != want {
		t.Errorf("line:\n got %s\nwant %s", line, want)
	}
	// The line is the hashed encoding plus "hash": without it, it hashes
	// to the hash.
	withoutHash := strings.Replace(string(line), `"hash":"`+r.Hash+`",`, "", 1)
	if got := string(auditchain.AppendCanonical(nil, r)) + "\n"; got != withoutHash {
		t.Errorf("line without hash:\n got %s\nwant %s", withoutHash, got)
	}
	got, err := audit.ParseJSONL(bytes.TrimSuffix(line, []byte("\n")))
	if err != nil {
		t.Fatalf("ParseJSONL: %v", err)
	}
	if diff := cmp.Diff(r, got); diff != "" {
		t.Errorf("round trip (-want +got):\n%s", diff)
	}
}

func TestParseJSONLRejects(t *testing.T) {
	good := string(bytes.TrimSpace(audit.AppendJSONL(nil, sealed(t, 1)[0])))
	for _, tc := range []struct{ name, line, want string }{
		{"empty", ``, "EOF"},
		{"missing field", strings.Replace(good, `"object":"Service/prod/svc-1",`, "", 1), `field "object" is missing`},
		{"unknown field", strings.Replace(good, `{`, `{"x":1,`, 1), "unknown field"},
		{"seq zero", strings.Replace(good, `"seq":1`, `"seq":0`, 1), "seq 0"},
		{"short hash", strings.Replace(good, `"prev_hash":"00`, `"prev_hash":"`, 1), "64 lowercase hex"},
		{"bad time", strings.Replace(good, `2026-12-01T09:00:01.123456789Z`, `noon`, 1), "want RFC 3339"},
		{"string revision", strings.Replace(good, `"revision":1`, `"revision":"1"`, 1), "cannot unmarshal"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := audit.ParseJSONL([]byte(tc.line))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

func TestCEF(t *testing.T) {
	at := time.Date(2026, 12, 1, 9, 0, 0, 123456789, time.UTC)
	hash := strings.Repeat("ab", 32)
	for _, tc := range []struct {
		name    string
		version string
		rec     store.AuditRecord
		want    string
	}{
		{
			name:    "success, every field",
			version: "v1.2.3",
			rec: store.AuditRecord{Seq: 7, Time: at, Actor: "admin:alice (admin)", Action: "object.apply", Object: "Service/prod/web", Revision: 12,
				Outcome: "success", Reason: "previous revision 11", RequestID: "r1", PrevHash: auditchain.Genesis, Hash: hash},
			want: "CEF:0|trustmesh|trustmesh|v1.2.3|object.apply|object.apply|3|rt=1796115600123 externalId=7 suser=admin:alice (admin) act=object.apply outcome=success " +
				"cs1Label=object cs1=Service/prod/web cs2Label=reason cs2=previous revision 11 cs3Label=requestId cs3=r1 " +
				"cs4Label=hash cs4=" + hash + " cs5Label=prevHash cs5=" + auditchain.Genesis + " cn1Label=revision cn1=12\n",
		},
		{
			name:    "denied, escapes in header and extension",
			version: "dev|el",
			rec: store.AuditRecord{Seq: 8, Time: at, Actor: `a=b\c`, Action: "authz|deny\nnow\\", Outcome: "denied",
				Reason: "line one\r\nline two | a=b \\ end", Hash: hash, PrevHash: hash},
			want: `CEF:0|trustmesh|trustmesh|dev\|el|authz\|deny now\\|authz\|deny now\\|7|rt=1796115600123 externalId=8 suser=a\=b\\c act=authz|deny\nnow\\ outcome=denied ` +
				`cs2Label=reason cs2=line one\r\nline two | a\=b \\ end cs4Label=hash cs4=` + hash + ` cs5Label=prevHash cs5=` + hash + "\n",
		},
		{
			name:    "error, empty fields left out",
			version: "devel",
			rec:     store.AuditRecord{Seq: 9, Time: at, Action: "config.nack", Outcome: "error"},
			want:    "CEF:0|trustmesh|trustmesh|devel|config.nack|config.nack|6|rt=1796115600123 externalId=9 act=config.nack outcome=error\n",
		},
		{
			name:    "unknown outcome",
			version: "devel",
			rec:     store.AuditRecord{Seq: 10, Time: at, Action: "x", Outcome: "maybe"},
			want:    "CEF:0|trustmesh|trustmesh|devel|x|x|5|rt=1796115600123 externalId=10 act=x outcome=maybe\n",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := string(audit.AppendCEF(nil, tc.version, tc.rec)); got != tc.want {
				t.Errorf("CEF:\n got %s\nwant %s", got, tc.want)
			}
		})
	}
}

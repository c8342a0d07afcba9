package audit_test

import (
	"crypto/ed25519"
	"path/filepath"
	"testing"

	"github.com/trustmesh/trustmesh/internal/audit"
	"github.com/trustmesh/trustmesh/internal/store"
	"github.com/trustmesh/trustmesh/internal/store/sqlite"
)

const benchRecords = 100_000

func reportRecords(b *testing.B, n int) {
	b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "records/s")
}

// BenchmarkVerify is the verify loop alone: records in memory, one
// checkpoint per 1,000 records.
func BenchmarkVerify(b *testing.B) {
	recs := sealed(b, benchRecords)
	_, key, _ := ed25519.GenerateKey(nil)
	var cps []store.AuditCheckpoint
	for i := 999; i < len(recs); i += 1000 {
		cps = append(cps, audit.SignCheckpoint(key, recs[i].Seq, recs[i].Hash, recs[i].Time))
	}
	cfg := audit.VerifyConfig{Records: listed(recs), PublicKeys: []ed25519.PublicKey{key.Public().(ed25519.PublicKey)}, Stored: cps}
	b.ReportAllocs()
	for b.Loop() {
		rep, err := audit.Verify(b.Context(), cfg)
		if err != nil || rep.Records != benchRecords {
			b.Fatalf("Verify: %v, %d records", err, rep.Records)
		}
	}
	reportRecords(b, benchRecords)
}

// BenchmarkVerifySQLite is verify end to end from a store file, as
// `trustmesh audit verify --db` runs it.
func BenchmarkVerifySQLite(b *testing.B) {
	path := filepath.Join(b.TempDir(), "trustmesh.db")
	st, err := sqlite.Open(b.Context(), path)
	if err != nil {
		b.Fatal(err)
	}
	for i := 0; i < benchRecords; i += 1000 {
		batch := make([]store.AuditRecord, 1000)
		for j := range batch {
			batch[j] = record(i + j + 1)
		}
		if _, err := st.AppendAuditBatch(b.Context(), batch); err != nil {
			b.Fatal(err)
		}
	}
	if err := st.Close(); err != nil {
		b.Fatal(err)
	}
	r, err := sqlite.OpenAuditReader(b.Context(), path)
	if err != nil {
		b.Fatal(err)
	}
	defer r.Close()
	b.ResetTimer()
	for b.Loop() {
		rep, err := audit.Verify(b.Context(), audit.VerifyConfig{Records: r})
		if err != nil || rep.Records != benchRecords {
			b.Fatalf("Verify: %v, %d records", err, rep.Records)
		}
	}
	reportRecords(b, benchRecords)
}

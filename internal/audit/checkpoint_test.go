package audit_test

import (
	"bytes"
	"crypto/ed25519"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/trustmesh/trustmesh/internal/audit"
	"github.com/trustmesh/trustmesh/internal/store"
)

func TestLoadOrCreateKey(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "audit")
	key, created, err := audit.LoadOrCreateKey(dir)
	if err != nil || !created {
		t.Fatalf("first LoadOrCreateKey: got created %v, %v, want a new key", created, err)
	}
	for name, want := range map[string]os.FileMode{".": 0o700, audit.KeyFile: 0o600, audit.PublicKeyFile: 0o644} {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if got := fi.Mode().Perm(); got != want {
			t.Errorf("%s mode: got %o, want %o", name, got, want)
		}
	}
	pubs, err := audit.ReadPublicKeys(filepath.Join(dir, audit.PublicKeyFile))
	if err != nil || len(pubs) != 1 || !pubs[0].Equal(key.Public()) {
		t.Fatalf("ReadPublicKeys: got %v, %v, want the key's public key", pubs, err)
	}

	again, created, err := audit.LoadOrCreateKey(dir)
	if err != nil || created || !again.Equal(key) {
		t.Fatalf("second LoadOrCreateKey: got created %v, %v, want the same key", created, err)
	}

	// A lost public key file is rewritten from the key.
	if err := os.Remove(filepath.Join(dir, audit.PublicKeyFile)); err != nil {
		t.Fatal(err)
	}
	if _, _, err := audit.LoadOrCreateKey(dir); err != nil {
		t.Fatalf("LoadOrCreateKey without checkpoint.pub: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, audit.PublicKeyFile)); err != nil {
		t.Errorf("checkpoint.pub not rewritten: %v", err)
	}
}

func TestLoadOrCreateKeyRefuses(t *testing.T) {
	for _, tc := range []struct {
		name  string
		setup func(t *testing.T, dir string)
		want  string
	}{
		{
			name: "key readable by others",
			setup: func(t *testing.T, dir string) {
				if err := os.Chmod(filepath.Join(dir, audit.KeyFile), 0o644); err != nil {
					t.Fatal(err)
				}
			},
			want: "want 0600",
		},
		{
			name: "public key of another key",
			setup: func(t *testing.T, dir string) {
				other := filepath.Join(t.TempDir(), "other")
				if _, _, err := audit.LoadOrCreateKey(other); err != nil {
					t.Fatal(err)
				}
				b, _ := os.ReadFile(filepath.Join(other, audit.PublicKeyFile))
				if err := os.WriteFile(filepath.Join(dir, audit.PublicKeyFile), b, 0o644); err != nil {
					t.Fatal(err)
				}
			},
			want: "checkpoint.pub does not match",
		},
		{
			name: "key lost but checkpoints exist",
			setup: func(t *testing.T, dir string) {
				if err := os.Remove(filepath.Join(dir, audit.KeyFile)); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(filepath.Join(dir, audit.CheckpointsFile), nil, 0o600); err != nil {
					t.Fatal(err)
				}
			},
			want: "restore the key from a backup",
		},
		{
			name: "not a key",
			setup: func(t *testing.T, dir string) {
				if err := os.WriteFile(filepath.Join(dir, audit.KeyFile), []byte("hello"), 0o600); err != nil {
					t.Fatal(err)
				}
			},
			want: "no PEM PRIVATE KEY block",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "audit")
			if _, _, err := audit.LoadOrCreateKey(dir); err != nil {
				t.Fatal(err)
			}
			tc.setup(t, dir)
			_, _, err := audit.LoadOrCreateKey(dir)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

func TestCheckpointLineRoundTrip(t *testing.T) {
	_, key, _ := ed25519.GenerateKey(nil)
	c := audit.SignCheckpoint(key, 1200, strings.Repeat("0a", 32), time.Date(2026, 12, 1, 10, 0, 0, 5, time.FixedZone("x", 3600)))
	line := audit.AppendCheckpointLine(nil, c)
	want := `{"seq":1200,"hash":"` + strings.Repeat("0a", 32) + `","time":"2026-12-01T09:00:00.000000005Z","key_id":"` + c.KeyID + `","signature":"`
	if !bytes.HasPrefix(line, []byte(want)) || !bytes.HasSuffix(line, []byte("\"}\n")) {
		t.Errorf("line:\n got %s\nwant it to start %s", line, want)
	}
	got, err := audit.ParseCheckpointLine(bytes.TrimSuffix(line, []byte("\n")))
	if err != nil {
		t.Fatalf("ParseCheckpointLine: %v", err)
	}
	if diff := cmp.Diff(c, got); diff != "" {
		t.Errorf("round trip (-want +got):\n%s", diff)
	}
	if err := audit.VerifyCheckpoint(got, []ed25519.PublicKey{key.Public().(ed25519.PublicKey)}); err != nil {
		t.Errorf("VerifyCheckpoint: %v", err)
	}
}

func TestParseCheckpointLineRejects(t *testing.T) {
	good := `"hash":"` + strings.Repeat("a", 64) + `","time":"2026-12-01T09:00:00Z","key_id":"k","signature":"` + strings.Repeat("A", 86) + `=="`
	for _, tc := range []struct{ name, line, want string }{
		{"not JSON", `seq=1`, "invalid character"},
		{"unknown field", `{"seq":1,` + good + `,"extra":1}`, "unknown field"},
		{"missing field", `{` + good + `}`, "want every field"},
		{"seq zero", `{"seq":0,` + good + `}`, "seq 0"},
		{"upper-case hash", `{"seq":1,` + strings.Replace(good, strings.Repeat("a", 64), strings.Repeat("A", 64), 1) + `}`, "64 lowercase hex"},
		{"bad time", `{"seq":1,` + strings.Replace(good, "2026-12-01T09:00:00Z", "yesterday", 1) + `}`, "want RFC 3339"},
		{"short signature", `{"seq":1,` + strings.Replace(good, strings.Repeat("A", 86)+"==", "AAAA", 1) + `}`, "signature has 3 bytes"},
		{"trailing data", `{"seq":1,` + good + `} {}`, "data after"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := audit.ParseCheckpointLine([]byte(tc.line))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

// TestVerifyCrossChecksCopies: an older or newer copy of the checkpoint
// file is not tampering, and the report says what only one place holds.
func TestVerifyCrossChecksCopies(t *testing.T) {
	e := newLogEnv(t, 30, 10, 20, 30)
	file, err := os.ReadFile(e.cpFile)
	if err != nil {
		t.Fatal(err)
	}
	lines := bytes.SplitAfter(file, []byte("\n"))
	recs := e.records(t)
	list := listed(recs)
	stored := storedCheckpoints(t, e)
	keys := []ed25519.PublicKey{e.pub}
	for _, tc := range []struct {
		name   string
		stored []store.AuditCheckpoint
		file   []byte
		want   []string
	}{
		{"older copy of the file", stored, lines[0], []string{"checkpoints.jsonl ends at seq 10; 2 checkpoints are after it only in the audit_checkpoints table (an older copy, or appends pending)"}},
		{"file started later", stored, bytes.Join(lines[1:], nil), []string{"checkpoints.jsonl starts at seq 20; 1 checkpoint is before it only in the audit_checkpoints table"}},
		{"empty file", stored, nil, []string{"checkpoints.jsonl holds no checkpoints; 3 checkpoints are only in the audit_checkpoints table"}},
		{"file only", nil, file, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rep, err := audit.Verify(t.Context(), audit.VerifyConfig{Records: list, PublicKeys: keys, Stored: tc.stored,
				Files: []audit.CheckpointFile{{Name: "checkpoints.jsonl", Data: bytes.NewReader(tc.file)}}})
			if tc.stored == nil {
				// Checkpoints in the file but not in the store are a finding.
				if err == nil || !strings.Contains(err.Error(), "checkpoints were removed from the store") {
					t.Fatalf("Verify: got %v, want the store's missing checkpoints", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if diff := cmp.Diff(tc.want, rep.Notes); diff != "" {
				t.Errorf("notes (-want +got):\n%s", diff)
			}
			if rep.Checkpoints != 3 {
				t.Errorf("checkpoints verified: got %d, want 3", rep.Checkpoints)
			}
		})
	}

	t.Run("no public key", func(t *testing.T) {
		_, err := audit.Verify(t.Context(), audit.VerifyConfig{Records: list, Stored: stored})
		if err == nil || !strings.Contains(err.Error(), "which is not among the public keys given") {
			t.Errorf("Verify: got %v, want the key named", err)
		}
	})
	t.Run("no checkpoint file", func(t *testing.T) {
		rep, err := audit.Verify(t.Context(), audit.VerifyConfig{Records: list, PublicKeys: keys, Stored: stored})
		if err != nil {
			t.Fatal(err)
		}
		if want := []string{"no checkpoint file given: checkpoints were checked only from the audit_checkpoints table"}; !cmp.Equal(want, rep.Notes) {
			t.Errorf("notes: got %q, want %q", rep.Notes, want)
		}
	})
}

func storedCheckpoints(t *testing.T, e logEnv) []store.AuditCheckpoint {
	t.Helper()
	var cps []store.AuditCheckpoint
	f, err := os.Open(e.cpFile)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fcs, err := audit.ReadCheckpoints(f)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range fcs {
		cps = append(cps, c.AuditCheckpoint)
	}
	return cps
}

package cli

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/trustmesh/trustmesh/internal/audit"
	"github.com/trustmesh/trustmesh/internal/server"
)

// runCLI runs one trustmesh command in process.
func runCLI(t *testing.T, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	var out, errOut bytes.Buffer
	root := NewRoot(strings.NewReader(""), &out, &errOut)
	root.SetArgs(args)
	err = root.ExecuteContext(t.Context())
	return out.String(), errOut.String(), err
}

// startServer runs a real server in a temp dir for the commands to talk to.
func startServer(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	s, err := server.New(ctx, server.Config{DataDir: dir, TrustDomain: "cli.example", ListenAddr: "127.0.0.1:0",
		AdminListenAddr: "127.0.0.1:0", Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("server Run: %v", err)
		}
	})
	return dir
}

// TestAuditVerifyAndExport drives verify and export against a server in
// process, through the admin API and offline on its store file, then
// tampers with the live file and expects verify to name the record.
func TestAuditVerifyAndExport(t *testing.T) {
	dir := startServer(t)
	for _, node := range []string{"n1", "n2", "n3"} {
		if _, errOut, err := runCLI(t, "token", "create", "--node", node, "--data-dir", dir); err != nil {
			t.Fatalf("token create: %v\n%s", err, errOut)
		}
	}

	db := filepath.Join(dir, "trustmesh.db")
	for _, tc := range []struct {
		name string
		args []string
		want []string
	}{
		{"through the admin API", []string{"audit", "verify", "--data-dir", dir},
			// The start-up checkpoint races the tokens: how many records it
			// covers is not pinned here (package audit tests that).
			[]string{"4 records, chain intact, ", "chain native from seq 1", "signatures checked with the public key the server sent"}},
		{"through the admin API, key pinned", []string{"audit", "verify", "--data-dir", dir, "--public-key", filepath.Join(dir, "audit", audit.PublicKeyFile)},
			[]string{"4 records, chain intact"}},
		{"offline on the store file", []string{"audit", "verify", "--db", db},
			[]string{"4 records, chain intact, "}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, errOut, err := runCLI(t, tc.args...)
			if err != nil {
				t.Fatalf("verify: %v\n%s", err, errOut)
			}
			for _, w := range tc.want {
				if !strings.Contains(out, w) {
					t.Errorf("output:\n%s\nwant it to contain %q", out, w)
				}
			}
			if strings.Contains(tc.name, "pinned") && strings.Contains(out, "the public key the server sent") {
				t.Errorf("output:\n%s\nwant no note about the server's key when pinned", out)
			}
		})
	}

	t.Run("export jsonl", func(t *testing.T) {
		out, errOut, err := runCLI(t, "audit", "export", "--data-dir", dir)
		if err != nil {
			t.Fatalf("export: %v\n%s", err, errOut)
		}
		lines := strings.Split(strings.TrimSpace(out), "\n")
		if len(lines) != 4 {
			t.Fatalf("got %d lines, want 4:\n%s", len(lines), out)
		}
		for i, l := range lines {
			r, err := audit.ParseJSONL([]byte(l))
			if err != nil {
				t.Fatalf("line %d: %v", i+1, err)
			}
			if r.Seq != int64(i+1) {
				t.Errorf("line %d: got seq %d", i+1, r.Seq)
			}
		}
	})
	t.Run("export cef since the future", func(t *testing.T) {
		out, _, err := runCLI(t, "audit", "export", "--format", "cef", "--since", time.Now().Add(time.Hour).Format(time.RFC3339), "--data-dir", dir)
		if err != nil || out != "" {
			t.Errorf("got %q, %v, want no records", out, err)
		}
	})
	t.Run("export cef offline", func(t *testing.T) {
		out, _, err := runCLI(t, "audit", "export", "--format", "cef", "--since", "24h", "--db", db)
		if err != nil {
			t.Fatal(err)
		}
		if n := strings.Count(out, "CEF:0|trustmesh|trustmesh|"); n != 4 {
			t.Errorf("got %d CEF lines, want 4:\n%s", n, out)
		}
	})

	// Someone with the file changes a record under the running server.
	sdb, err := sql.Open("sqlite", db)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sdb.ExecContext(t.Context(), `UPDATE audit SET object = 'join-token:000000000000' WHERE seq = 3`); err != nil {
		t.Fatal(err)
	}
	sdb.Close()
	for _, args := range [][]string{{"audit", "verify", "--data-dir", dir}, {"audit", "verify", "--db", db}} {
		_, errOut, err := runCLI(t, args...)
		var exit ExitError
		if !errors.As(err, &exit) || exit.Code != exitTampered {
			t.Errorf("%v: got %v, want exit status %d", args, err, exitTampered)
		}
		if want := "audit log verification FAILED: record 3 was changed: its hash does not match its content"; !strings.Contains(errOut, want) {
			t.Errorf("%v: stderr %q, want it to contain %q", args, errOut, want)
		}
	}
}

func TestAuditFlagErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"db and server", []string{"audit", "verify", "--db", "x.db", "--data-dir", "d"}, "leave out --data-dir"},
		{"missing db", []string{"audit", "verify", "--db", filepath.Join(t.TempDir(), "none.db")}, "no such file"},
		{"bad format", []string{"audit", "export", "--format", "xml", "--db", "x.db"}, `--format "xml": want jsonl or cef`},
		{"bad since", []string{"audit", "export", "--since", "last week", "--db", "x.db"}, `--since "last week"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := runCLI(t, tc.args...)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

func TestParseSince(t *testing.T) {
	now := time.Date(2026, 12, 8, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		in   string
		want time.Time
	}{
		{"24h", now.Add(-24 * time.Hour)},
		{"90m", now.Add(-90 * time.Minute)},
		{"7d", time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)},
		{"2026-12-01T00:00:00Z", time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)},
		{"2026-12-01T01:00:00+01:00", time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, err := parseSince(tc.in, now)
			if err != nil || !got.Equal(tc.want) {
				t.Errorf("parseSince(%q): got %v, %v, want %v", tc.in, got, err, tc.want)
			}
		})
	}
	for _, bad := range []string{"", "-1h", "yesterday", "1w", "-3d"} {
		if _, err := parseSince(bad, now); err == nil {
			t.Errorf("parseSince(%q): got nil error, want one", bad)
		}
	}
}

package accesslog

import (
	"compress/gzip"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"
)

// TestRotation writes past a tiny size through a Logger: a rotated file
// appears, no line is split across files, and every goroutine is gone
// when Close returns (synctest fails the test otherwise).
func TestRotation(t *testing.T) {
	for _, compress := range []bool{false, true} {
		name := "plain"
		if compress {
			name = "compress"
		}
		t.Run(name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				dir := t.TempDir()
				path := filepath.Join(dir, "access.log")
				l, err := New(Config{Path: path, MaxBackups: 2, Compress: compress})
				if err != nil {
					t.Fatal(err)
				}
				l.out.(*rotatingFile).cfg.maxBytes = 1000 // the smallest Config can say is 1 MB
				stop := start(t, l)
				e := fullEntry()
				const batches, perBatch = 6, 3 // each batch is about 1.5 KB: one write, one rotation
				for i := range batches {
					for j := range perBatch {
						e.Status = 100*i + j
						l.Log(&e)
					}
					synctest.Wait()
					time.Sleep(time.Second) // virtual: distinct backup names
				}
				if err := stop(); err != nil {
					t.Fatal(err)
				}
				names := dirNames(t, dir)
				ext := ".log"
				if compress {
					ext = ".log.gz"
				}
				want := []string{
					"access-2000-01-01T00-00-04.000" + ext,
					"access-2000-01-01T00-00-05.000" + ext,
					"access.log",
				}
				if diff := cmp.Diff(want, names); diff != "" {
					t.Errorf("files (-want +got):\n%s", diff)
				}
				// The current file holds the last batch; the newest backup the one before.
				checkStatuses(t, readLines(t, path), 500)
				backup := filepath.Join(dir, want[1])
				if compress {
					backup = gunzip(t, backup)
				}
				checkStatuses(t, readLines(t, backup), 400)
			})
		})
	}
}

func checkStatuses(t *testing.T, lines []map[string]any, first int) {
	t.Helper()
	var got []float64
	for _, m := range lines {
		got = append(got, m["status"].(float64))
	}
	want := []float64{float64(first), float64(first + 1), float64(first + 2)}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("statuses (-want +got):\n%s", diff)
	}
}

func dirNames(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, de := range ents {
		names = append(names, de.Name())
	}
	slices.Sort(names)
	return names
}

// gunzip decompresses path next to it and returns the new file's name.
func gunzip(t *testing.T, path string) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	data, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "gunzipped.log")
	if err := os.WriteFile(out, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestRotateAtMaxSizeMB(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "access.log")
	f, err := openRotating(rotateConfig{path: path, maxBytes: 1 << 20, maxBackups: 1, now: time.Now, onError: func(err error) { t.Error(err) }})
	if err != nil {
		t.Fatal(err)
	}
	chunk := []byte(strings.Repeat("x", 1<<10-1) + "\n")
	for range 1 << 10 { // exactly 1 MiB: no rotation yet
		if _, err := f.Write(chunk); err != nil {
			t.Fatal(err)
		}
	}
	if n := len(dirNames(t, dir)); n != 1 {
		t.Fatalf("%d files after writing MaxSize, want 1", n)
	}
	if _, err := f.Write(chunk); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	names := dirNames(t, dir)
	if len(names) != 2 || !strings.HasPrefix(names[0], "access-") || names[1] != "access.log" {
		t.Errorf("files %v, want a backup and access.log", names)
	}
	if fi, err := os.Stat(path); err != nil || fi.Size() != int64(len(chunk)) {
		t.Errorf("access.log: %v, size %d, want %d", err, fi.Size(), len(chunk))
	}
}

func TestRotateExistingFullFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "a.log")
	if err := os.WriteFile(path, []byte(strings.Repeat("old\n", 100)), 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := openRotating(rotateConfig{path: path, maxBytes: 100, maxBackups: 5, now: time.Now, onError: func(err error) { t.Error(err) }})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write([]byte("new\n")); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if data, _ := os.ReadFile(path); string(data) != "new\n" {
		t.Errorf("a.log = %q, want the new line alone", data)
	}
	if n := len(dirNames(t, dir)); n != 2 {
		t.Errorf("%d files, want 2", n)
	}
}

func TestRotateFileRemovedByHand(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "a.log")
	var errs []error
	f, err := openRotating(rotateConfig{path: path, maxBytes: 10, maxBackups: 5, now: time.Now, onError: func(err error) { errs = append(errs, err) }})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write([]byte("0123456789")); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write([]byte("x\n")); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if len(errs) != 0 {
		t.Errorf("errors %v", errs)
	}
	if data, _ := os.ReadFile(path); string(data) != "x\n" {
		t.Errorf("a.log = %q, want a new file", data)
	}
}

func TestMill(t *testing.T) {
	now := time.Date(2026, 3, 10, 12, 0, 0, 0, time.UTC)
	day := 24 * time.Hour
	name := func(ago time.Duration) string { return "access-" + now.Add(-ago).Format(backupTime) + ".log" }
	tests := []struct {
		name       string
		files      []string
		maxBackups int
		maxAge     time.Duration
		compress   bool
		want       []string
	}{
		{
			name:       "max-backups",
			files:      []string{name(1 * day), name(2 * day), name(3 * day), name(4*day) + ".gz"},
			maxBackups: 2,
			want:       []string{name(2 * day), name(1 * day)},
		},
		{
			name:       "max-age",
			files:      []string{name(1 * day), name(8 * day), name(30*day) + ".gz"},
			maxBackups: 10, maxAge: 7 * day,
			want: []string{name(1 * day)},
		},
		{
			name:       "compress",
			files:      []string{name(1 * day), name(2*day) + ".gz"},
			maxBackups: 10, compress: true,
			want: []string{name(2*day) + ".gz", name(1*day) + ".gz"},
		},
		{
			name:       "compressed-original-left",
			files:      []string{name(1 * day), name(1*day) + ".gz"},
			maxBackups: 10,
			want:       []string{name(1*day) + ".gz"},
		},
		{
			name:       "partial-gz-removed",
			files:      []string{name(1*day) + ".gz.tmp", name(1 * day)},
			maxBackups: 10,
			want:       []string{name(1 * day)},
		},
		{
			name: "others-untouched",
			files: []string{"access.log", "access-notatime.log", "other-" + now.Format(backupTime) + ".log",
				"access-" + now.Format(backupTime) + ".txt", name(1 * day)},
			maxBackups: 1,
			want: []string{"access-" + now.Format(backupTime) + ".txt", "access-notatime.log", name(1 * day),
				"access.log", "other-" + now.Format(backupTime) + ".log"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			for _, f := range tt.files {
				if err := os.WriteFile(filepath.Join(dir, f), []byte("line\n"), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			r := &rotatingFile{cfg: rotateConfig{
				path: filepath.Join(dir, "access.log"), maxBackups: tt.maxBackups, maxAge: tt.maxAge,
				compress: tt.compress, now: func() time.Time { return now },
			}}
			if err := r.mill(); err != nil {
				t.Fatal(err)
			}
			want := slices.Clone(tt.want)
			slices.Sort(want)
			if diff := cmp.Diff(want, dirNames(t, dir)); diff != "" {
				t.Errorf("files (-want +got):\n%s", diff)
			}
		})
	}
}

func TestBackupNameUnique(t *testing.T) {
	dir := t.TempDir()
	now := time.Date(2026, 3, 10, 12, 0, 0, 0, time.UTC)
	r := &rotatingFile{cfg: rotateConfig{path: filepath.Join(dir, "a.log"), now: func() time.Time { return now }}}
	var got []string
	for range 3 {
		n, err := r.backupName()
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, filepath.Base(n))
		if err := os.WriteFile(n+gzSuffix, nil, 0o600); err != nil { // a compressed one counts too
			t.Fatal(err)
		}
	}
	want := []string{"a-2026-03-10T12-00-00.000.log", "a-2026-03-10T12-00-00.001.log", "a-2026-03-10T12-00-00.002.log"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("names (-want +got):\n%s", diff)
	}
}

func TestRotationFailureKeepsWriting(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "a.log")
	var errs []error
	f, err := openRotating(rotateConfig{
		path: path, maxBytes: 8, maxBackups: 1, now: time.Now,
		onError: func(err error) { errs = append(errs, err) },
		rename:  func(string, string) error { return os.ErrPermission },
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"abcd", "efgh", "ijkl", "mnop"} {
		if _, err := f.Write([]byte(s)); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	// Tried at "ijkl", then not again before another maxBytes ("mnop" fits).
	if len(errs) != 1 || !errors.Is(errs[0], os.ErrPermission) {
		t.Errorf("errors %v, want one permission error", errs)
	}
	if data, _ := os.ReadFile(path); string(data) != "abcdefghijklmnop" {
		t.Errorf("a.log = %q, want every write", data)
	}
}

func TestRotateKeepsPermissions(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "a.log")
	f, err := openRotating(rotateConfig{path: path, maxBytes: 4, maxBackups: 1, now: time.Now, onError: func(err error) { t.Error(err) }})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, 0o640); err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"abcd", "efgh"} {
		if _, err := f.Write([]byte(s)); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := fi.Mode().Perm(); got != 0o640 {
		t.Errorf("new file mode %v, want 0640 like the rotated one", got)
	}
}

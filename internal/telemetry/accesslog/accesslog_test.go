package accesslog

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// start runs l.Run in a goroutine and returns a function that cancels it
// and returns its error.
func start(t *testing.T, l *Logger) (stop func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- l.Run(ctx) }()
	return func() error {
		cancel()
		return <-errc
	}
}

// readLines returns the lines of path, each checked to be a JSON object.
func readLines(t *testing.T, path string) []map[string]any {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []map[string]any
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("%s: line %q: %v", path, sc.Bytes(), err)
		}
		out = append(out, m)
	}
	if len(data) > 0 && data[len(data)-1] != '\n' {
		t.Errorf("%s does not end with a newline", path)
	}
	return out
}

func TestLogWritesFile(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "access.log")
		l, err := New(Config{Path: path})
		if err != nil {
			t.Fatal(err)
		}
		stop := start(t, l)
		for i := range 3 {
			e := fullEntry()
			e.Status = 200 + i
			l.Log(&e)
		}
		if err := stop(); err != nil {
			t.Fatalf("Run: %v", err)
		}
		lines := readLines(t, path)
		if len(lines) != 3 {
			t.Fatalf("got %d lines, want 3", len(lines))
		}
		for i, m := range lines {
			if got, want := m["status"], float64(200+i); got != want {
				t.Errorf("line %d: status %v, want %v", i, got, want)
			}
		}
		if err := l.Close(); err != nil {
			t.Errorf("Close after Run: %v", err)
		}
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if mode := fi.Mode().Perm(); mode != 0o600 {
			t.Errorf("mode %v, want 0600", mode)
		}
	})
}

func TestLogSetsTime(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		out := &syncBuffer{}
		l := newLogger(Config{BufferSize: 4}, out, "test", slog.New(slog.DiscardHandler))
		stop := start(t, l)
		l.Log(&Entry{Direction: "inbound"})
		if err := stop(); err != nil {
			t.Fatal(err)
		}
		want := `{"time":"` + time.Now().UTC().Format(time.RFC3339Nano) + `","direction":"inbound","status":0}` + "\n"
		if got := out.String(); got != want {
			t.Errorf("got %s, want %s", got, want)
		}
	})
}

func TestAppendsToExisting(t *testing.T) {
	path := filepath.Join(t.TempDir(), "access.log")
	if err := os.WriteFile(path, []byte(`{"old":true}`+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	l, err := New(Config{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	e := fullEntry()
	stop := start(t, l)
	l.Log(&e)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if lines := readLines(t, path); len(lines) != 2 || lines[0]["old"] != true {
		t.Errorf("got %v, want the old line then the new one", lines)
	}
}

// blockingWriter blocks every Write until release is closed.
type blockingWriter struct {
	release chan struct{}
	mu      sync.Mutex
	buf     bytes.Buffer
}

func (w *blockingWriter) Write(p []byte) (int, error) {
	<-w.release
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.Write(p)
}

func (w *blockingWriter) Close() error { return nil }

func TestDropsWhenWriterBlocked(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const size = 4
		w := &blockingWriter{release: make(chan struct{})}
		l := newLogger(Config{BufferSize: size}, w, "test", slog.New(slog.DiscardHandler))
		stop := start(t, l)
		e := fullEntry()
		l.Log(&e)
		synctest.Wait() // the writer took it and is blocked in Write
		for range size + 3 {
			l.Log(&e)
		}
		if got := l.Dropped(); got != 3 {
			t.Errorf("Dropped() = %d, want 3", got)
		}
		close(w.release)
		if err := stop(); err != nil {
			t.Fatal(err)
		}
		if got, want := strings.Count(w.buf.String(), "\n"), 1+size; got != want {
			t.Errorf("wrote %d lines, want %d", got, want)
		}
		if got := l.Dropped(); got != 3 {
			t.Errorf("Dropped() after Run = %d, want 3", got)
		}
	})
}

func TestLogDoesNotBlock(t *testing.T) {
	// With no writer at all, Log returns whatever the queue holds.
	l := newLogger(Config{BufferSize: 2}, nopCloser{io.Discard}, "test", slog.New(slog.DiscardHandler))
	e := fullEntry()
	for range 10 {
		l.Log(&e)
	}
	if got := l.Dropped(); got != 8 {
		t.Errorf("Dropped() = %d, want 8", got)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if got := l.Dropped(); got != 10 {
		t.Errorf("Dropped() after Close without Run = %d, want 10 (the queued ones too)", got)
	}
}

// failingWriter fails while fail is set.
type failingWriter struct {
	mu   sync.Mutex
	fail bool
	buf  bytes.Buffer
}

func (w *failingWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.fail {
		return 0, errors.New("disk full")
	}
	return w.buf.Write(p)
}

func (w *failingWriter) Close() error { return nil }

func (w *failingWriter) setFail(b bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.fail = b
}

func TestWriteErrorsCountedAndLoggedOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var logs syncBuffer
		w := &failingWriter{fail: true}
		l := newLogger(Config{BufferSize: 16}, w, "test.log", slog.New(slog.NewTextHandler(&logs, nil)))
		stop := start(t, l)
		e := fullEntry()
		for range 3 {
			l.Log(&e)
			synctest.Wait()
		}
		if got := l.Dropped(); got != 3 {
			t.Errorf("Dropped() = %d, want 3", got)
		}
		w.setFail(false)
		l.Log(&e)
		synctest.Wait()
		if err := stop(); err != nil {
			t.Fatal(err)
		}
		got := logs.String()
		if n := strings.Count(got, "access log write failed"); n != 1 {
			t.Errorf("failure logged %d times, want once:\n%s", n, got)
		}
		if !strings.Contains(got, "disk full") || !strings.Contains(got, "writes succeed again") {
			t.Errorf("logs lack the cause or the recovery:\n%s", got)
		}
		if n := strings.Count(w.buf.String(), "\n"); n != 1 {
			t.Errorf("wrote %d lines, want 1", n)
		}
	})
}

func TestCloseStopsRunAndFlushes(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := &blockingWriter{release: make(chan struct{})}
		l := newLogger(Config{BufferSize: 8}, w, "test", slog.New(slog.DiscardHandler))
		errc := make(chan error, 1)
		go func() { errc <- l.Run(context.Background()) }()
		e := fullEntry()
		l.Log(&e)
		synctest.Wait()
		l.Log(&e)
		l.Log(&e)
		close(w.release)
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
		if err := <-errc; err != nil {
			t.Fatalf("Run: %v", err)
		}
		if got := strings.Count(w.buf.String(), "\n"); got != 3 {
			t.Errorf("wrote %d lines, want 3 (queued entries are written on Close)", got)
		}
		if err := l.Close(); err != nil {
			t.Errorf("second Close: %v", err)
		}
		l.Log(&e)
		if got := l.Dropped(); got != 1 {
			t.Errorf("Dropped() after Close = %d, want 1", got)
		}
		if err := l.Run(context.Background()); err == nil {
			t.Error("second Run: got nil, want an error")
		}
	})
}

func TestRunAfterClose(t *testing.T) {
	l := newLogger(Config{BufferSize: 1}, nopCloser{io.Discard}, "test", slog.New(slog.DiscardHandler))
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if err := l.Run(context.Background()); err != nil {
		t.Errorf("Run after Close: %v, want nil", err)
	}
}

// closeCounter counts Close calls and fails them.
type closeCounter struct {
	io.Writer
	n int
}

func (c *closeCounter) Close() error { c.n++; return errors.New("close failed") }

func TestCloseTwice(t *testing.T) {
	c := &closeCounter{Writer: io.Discard}
	l := newLogger(Config{BufferSize: 1}, c, "test.log", slog.New(slog.DiscardHandler))
	err1, err2 := l.Close(), l.Close()
	if err1 == nil || err2 == nil || err1.Error() != err2.Error() {
		t.Errorf("Close errors %v, %v: want the same error twice", err1, err2)
	}
	if !strings.Contains(err1.Error(), "test.log") {
		t.Errorf("Close error %q does not name the file", err1)
	}
	if c.n != 1 {
		t.Errorf("output closed %d times, want once", c.n)
	}
}

func TestNewStdout(t *testing.T) {
	for _, path := range []string{"", "-"} {
		l, err := New(Config{Path: path})
		if err != nil {
			t.Fatalf("New(%q): %v", path, err)
		}
		if l.name != "stdout" {
			t.Errorf("New(%q) writes to %s, want stdout", path, l.name)
		}
		if err := l.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		if _, err := os.Stdout.Stat(); err != nil {
			t.Errorf("stdout closed: %v", err)
		}
	}
}

func TestNewErrors(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name string
		cfg  Config
		want string
	}{
		{"negative-size", Config{Path: filepath.Join(dir, "a.log"), MaxSizeMB: -1}, "negative"},
		{"negative-backups", Config{MaxBackups: -1}, "negative"},
		{"negative-age", Config{MaxAgeDays: -1}, "negative"},
		{"negative-buffer", Config{BufferSize: -1}, "negative"},
		{"huge-size", Config{MaxSizeMB: 1<<20 + 1}, "at most"},
		{"missing-dir", Config{Path: filepath.Join(dir, "nope", "a.log")}, "no such file"},
		{"directory", Config{Path: dir}, "open access log"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l, err := New(tt.cfg)
			if err == nil {
				_ = l.Close()
				t.Fatal("got nil error")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("got %q, want it to contain %q", err, tt.want)
			}
		})
	}
}

func TestDefaults(t *testing.T) {
	cfg := Config{}
	if err := cfg.setDefaults(); err != nil {
		t.Fatal(err)
	}
	if cfg.MaxSizeMB != 100 || cfg.MaxBackups != 5 || cfg.BufferSize != 4096 || cfg.MaxAgeDays != 0 {
		t.Errorf("defaults %+v", cfg)
	}
}

// syncBuffer is a bytes.Buffer safe for a writer and a reader goroutine.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) Close() error { return nil }

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func TestNilLoggerIsOff(t *testing.T) {
	var l *Logger
	e := fullEntry()
	l.Log(&e)
	if got := l.Dropped(); got != 0 {
		t.Errorf("Dropped() = %d, want 0", got)
	}
}

func TestLogAllocs(t *testing.T) {
	l := newLogger(Config{BufferSize: 1}, nopCloser{io.Discard}, "test", slog.New(slog.DiscardHandler))
	e := fullEntry()
	if n := testing.AllocsPerRun(100, func() { l.Log(&e) }); n != 0 {
		t.Errorf("Log allocates %v times, want 0", n)
	}
}

// BenchmarkLog is the request path's cost: copying an entry into the
// queue. The queue is emptied with the timer stopped, so nothing is
// dropped.
func BenchmarkLog(b *testing.B) {
	l := newLogger(Config{BufferSize: DefaultBufferSize}, nopCloser{io.Discard}, "test", slog.New(slog.DiscardHandler))
	e := fullEntry()
	b.ReportAllocs()
	for b.Loop() {
		if len(l.ch) == cap(l.ch) {
			b.StopTimer()
			for len(l.ch) > 0 {
				<-l.ch
			}
			b.StartTimer()
		}
		l.Log(&e)
	}
	if l.Dropped() != 0 {
		b.Fatalf("dropped %d", l.Dropped())
	}
}

// BenchmarkLogWrite is the whole pipeline per entry: Log, the writer's
// encoding and its writes (to io.Discard). The producer waits for room
// rather than dropping.
func BenchmarkLogWrite(b *testing.B) {
	l := newLogger(Config{BufferSize: DefaultBufferSize}, nopCloser{io.Discard}, "test", slog.New(slog.DiscardHandler))
	errc := make(chan error, 1)
	go func() { errc <- l.Run(context.Background()) }()
	e := fullEntry()
	b.ReportAllocs()
	for b.Loop() {
		for len(l.ch) == cap(l.ch) {
			runtime.Gosched()
		}
		l.Log(&e)
	}
	if err := l.Close(); err != nil {
		b.Fatal(err)
	}
	if err := <-errc; err != nil {
		b.Fatal(err)
	}
	if l.Dropped() != 0 {
		b.Fatalf("dropped %d", l.Dropped())
	}
}

// BenchmarkLogParallel is Log from many goroutines while the writer
// drains; entries beyond what it keeps up with are dropped (reported).
func BenchmarkLogParallel(b *testing.B) {
	l := newLogger(Config{BufferSize: DefaultBufferSize}, nopCloser{io.Discard}, "test", slog.New(slog.DiscardHandler))
	errc := make(chan error, 1)
	go func() { errc <- l.Run(context.Background()) }()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		e := fullEntry()
		for pb.Next() {
			l.Log(&e)
		}
	})
	b.StopTimer()
	if err := l.Close(); err != nil {
		b.Fatal(err)
	}
	if err := <-errc; err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(l.Dropped())/float64(b.N), "dropped/op")
}

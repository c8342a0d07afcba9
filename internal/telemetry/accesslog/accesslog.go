package accesslog

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// Entry is one access log record: a proxied HTTP request or a TCP
// connection. Log copies it, so the caller may reuse it at once.
type Entry struct {
	// Time is when the request or connection started; Log sets it to the
	// current time when it is zero. It is written in UTC.
	Time time.Time
	// Direction is "inbound" or "outbound".
	Direction string
	// Protocol is "HTTP/1.1", "HTTP/2" or "TCP".
	Protocol string
	// SourceID and DestinationID are the SPIFFE IDs of the two ends of
	// the mesh hop; empty for plaintext.
	SourceID, DestinationID string
	// SourceAddr and DestinationAddr are the connection's addresses
	// (host:port).
	SourceAddr, DestinationAddr string
	// Service is the service of the request (the metric label).
	Service string
	// Method and Path are the request's method and normalized path;
	// empty for TCP.
	Method, Path string
	// Status is the HTTP response status; 0 for TCP. It is always
	// written.
	Status int
	// BytesIn and BytesOut are the body bytes received from the client
	// and sent back to it (for TCP: the bytes spliced each way).
	BytesIn, BytesOut int64
	// Duration is the time from the start to the end of the request or
	// connection.
	Duration time.Duration
	// Decision is the authorization outcome, "allow" or "deny"; empty
	// where none was made (outbound).
	Decision string
	// Policy is the deciding policy (namespace/name); Reason the reason
	// code of the decision or of the proxy's own answer.
	Policy, Reason string
	// TLSGroup is the key exchange group the mesh handshake negotiated,
	// such as X25519MLKEM768.
	TLSGroup string
	// RequestID is the request's X-Request-Id; TraceID the hex trace ID
	// of its span.
	RequestID, TraceID string
}

// Config configures a Logger.
type Config struct {
	// Path is the file to append to. "" or "-" writes to standard output,
	// which is never rotated or closed. The directory must exist.
	Path string
	// MaxSizeMB is the size in megabytes past which the file is rotated.
	// Zero means 100.
	MaxSizeMB int
	// MaxBackups is how many rotated files are kept. Zero means 5.
	MaxBackups int
	// MaxAgeDays removes rotated files older than this many days. Zero
	// keeps them whatever their age.
	MaxAgeDays int
	// Compress gzips rotated files.
	Compress bool
	// BufferSize is how many entries may wait for the writer before Log
	// drops them. Zero means 4096.
	BufferSize int
	// Logger receives write and rotation errors. Nil discards them.
	Logger *slog.Logger
}

// Defaults of Config's zero values.
const (
	DefaultMaxSizeMB  = 100
	DefaultMaxBackups = 5
	DefaultBufferSize = 4096
)

// flushSize is the size past which the writer stops batching queued
// entries and writes.
const flushSize = 64 << 10

// Log attribute keys.
const (
	logComponent = "component"
	logError     = "error"
	logPath      = "path"
	logDropped   = "dropped"
)

// Logger is an asynchronous access logger. See the package documentation
// for the format and the concurrency rules.
type Logger struct {
	ch      chan Entry
	out     io.WriteCloser
	name    string // for logs: the path, or "stdout"
	log     *slog.Logger
	dropped atomic.Uint64
	closed  atomic.Bool // Log drops; set under mu by Close or by Run on exit

	mu      sync.Mutex
	running bool          // Run has started
	stop    chan struct{} // closed by Close
	done    chan struct{} // closed when Run returns

	stopOnce  sync.Once
	closeOnce sync.Once
	closeErr  error

	failing bool // the last write failed (writer goroutine only)
}

// New validates cfg and opens its output.
func New(cfg Config) (*Logger, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With(slog.String(logComponent, "accesslog"))
	if cfg.Path == "" || cfg.Path == "-" {
		return newLogger(cfg, nopCloser{os.Stdout}, "stdout", log), nil
	}
	f, err := openRotating(rotateConfig{
		path:       cfg.Path,
		maxBytes:   int64(cfg.MaxSizeMB) << 20,
		maxBackups: cfg.MaxBackups,
		maxAge:     time.Duration(cfg.MaxAgeDays) * 24 * time.Hour,
		compress:   cfg.Compress,
		now:        time.Now,
		onError: func(err error) {
			log.Error("access log rotation failed", slog.String(logPath, cfg.Path), slog.Any(logError, err))
		},
	})
	if err != nil {
		return nil, fmt.Errorf("open access log: %w", err)
	}
	return newLogger(cfg, f, cfg.Path, log), nil
}

func (cfg *Config) setDefaults() error {
	if cfg.MaxSizeMB < 0 || cfg.MaxBackups < 0 || cfg.MaxAgeDays < 0 || cfg.BufferSize < 0 {
		return fmt.Errorf("access log config: max size %d MB, max backups %d, max age %d days, buffer %d: none may be negative",
			cfg.MaxSizeMB, cfg.MaxBackups, cfg.MaxAgeDays, cfg.BufferSize)
	}
	if cfg.MaxSizeMB > 1<<20 {
		return fmt.Errorf("access log config: max size %d MB: at most %d", cfg.MaxSizeMB, 1<<20)
	}
	if cfg.MaxSizeMB == 0 {
		cfg.MaxSizeMB = DefaultMaxSizeMB
	}
	if cfg.MaxBackups == 0 {
		cfg.MaxBackups = DefaultMaxBackups
	}
	if cfg.BufferSize == 0 {
		cfg.BufferSize = DefaultBufferSize
	}
	return nil
}

// newLogger builds a Logger writing to out; tests give their own.
func newLogger(cfg Config, out io.WriteCloser, name string, log *slog.Logger) *Logger {
	return &Logger{
		ch:   make(chan Entry, cfg.BufferSize),
		out:  out,
		name: name,
		log:  log,
		stop: make(chan struct{}),
		done: make(chan struct{}),
	}
}

// Log queues a copy of e for the writer. It never blocks: when the queue
// is full or the logger is closed, the entry is dropped and counted. On a
// nil *Logger (access logging off) it does nothing.
func (l *Logger) Log(e *Entry) {
	if l == nil {
		return
	}
	if l.closed.Load() {
		l.dropped.Add(1)
		return
	}
	v := *e
	if v.Time.IsZero() {
		v.Time = time.Now()
	}
	select {
	case l.ch <- v:
	default:
		l.dropped.Add(1)
	}
}

// Dropped is the number of entries lost so far: logged while the queue
// was full or after Close, or whose write failed.
func (l *Logger) Dropped() uint64 {
	if l == nil {
		return 0
	}
	return l.dropped.Load()
}

// Run writes queued entries until ctx is cancelled or Close is called,
// then writes what is still queued, closes the output and returns. It
// returns nil then, or the error of closing the output. Run may be called
// once.
func (l *Logger) Run(ctx context.Context) error {
	l.mu.Lock()
	if l.running {
		l.mu.Unlock()
		return errors.New("access log: Run called twice")
	}
	if l.closed.Load() {
		l.mu.Unlock()
		return nil
	}
	l.running = true
	l.mu.Unlock()
	defer close(l.done)

	buf := make([]byte, 0, flushSize+4<<10)
	for {
		select {
		case <-ctx.Done():
		case <-l.stop:
		case e := <-l.ch:
			buf = l.writeBatch(buf[:0], &e)
			continue
		}
		break
	}
	l.closed.Store(true)
	for {
		select {
		case e := <-l.ch:
			buf = l.writeBatch(buf[:0], &e)
			continue
		default:
		}
		break
	}
	return l.closeOutput()
}

// writeBatch encodes first and then whatever else is queued, up to
// flushSize, and writes it all in one call.
func (l *Logger) writeBatch(buf []byte, first *Entry) []byte {
	buf = appendEntry(buf, first)
	buf = append(buf, '\n')
	n := uint64(1)
	for len(buf) < flushSize {
		select {
		case e := <-l.ch:
			buf = appendEntry(buf, &e)
			buf = append(buf, '\n')
			n++
			continue
		default:
		}
		break
	}
	if _, err := l.out.Write(buf); err != nil {
		l.dropped.Add(n)
		if !l.failing {
			l.failing = true
			l.log.Error("access log write failed; entries are dropped until a write succeeds",
				slog.String(logPath, l.name), slog.Any(logError, err))
		}
	} else if l.failing {
		l.failing = false
		l.log.Info("access log writes succeed again", slog.String(logPath, l.name), slog.Uint64(logDropped, l.dropped.Load()))
	}
	if cap(buf) > 4*flushSize {
		buf = make([]byte, 0, flushSize+4<<10) // do not keep a buffer grown by one huge entry
	}
	return buf
}

// Close stops Run and waits for it to write what is queued and close the
// output, or, if Run never ran, closes the output and counts what was
// queued as dropped. It is safe to call more than once and returns the
// same result each time.
func (l *Logger) Close() error {
	l.mu.Lock()
	l.closed.Store(true)
	running := l.running
	l.mu.Unlock()
	l.stopOnce.Do(func() { close(l.stop) })
	if running {
		<-l.done
		return l.closeOutput()
	}
	l.dropped.Add(uint64(len(l.ch)))
	return l.closeOutput()
}

func (l *Logger) closeOutput() error {
	l.closeOnce.Do(func() {
		if err := l.out.Close(); err != nil {
			l.closeErr = fmt.Errorf("close access log %s: %w", l.name, err)
		}
	})
	return l.closeErr
}

type nopCloser struct{ io.Writer }

func (nopCloser) Close() error { return nil }

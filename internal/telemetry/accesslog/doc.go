// Package accesslog writes the proxy's access log: one JSON object per line
// for every proxied HTTP request and every TCP connection.
//
// # Model
//
// A [Logger] is built from a [Config] by [New], which validates it and
// opens the output (a file, or standard output for "" and "-"), so that a
// bad path fails before the proxy listens. The request path calls
// [Logger.Log]; [Logger.Run] is the writer goroutine that encodes and
// writes. Log on a nil *Logger does nothing, for a proxy without an
// access log. The line format is fixed: keys in the order of [Entry]'s fields,
// snake_case, empty strings and zero numbers left out (except status),
// time in RFC 3339 with nanoseconds in UTC and the duration in seconds as
// a decimal number:
//
//	{"time":"2026-03-01T12:00:00.123456789Z","direction":"inbound","protocol":"HTTP/1.1",
//	 "source_id":"spiffe://example.org/ns/shop/sa/web","service":"orders",
//	 "method":"GET","path":"/orders/7","status":200,"bytes_out":512,
//	 "duration_s":0.0012,"decision":"allow","policy":"shop/allow-web"}
//
// (shown folded; a record is one line.) Every string is escaped so that
// a line is always valid JSON and never carries a terminal control: C0 and
// C1 control characters, DEL, U+2028, U+2029 and the Unicode bidirectional
// controls are written as \u escapes, and each byte of invalid UTF-8 becomes
// \ufffd. Paths, methods and IDs come from peers, so this is the guard
// against log injection.
//
// # Rotation
//
// The logger creates its file with mode 0600. A file is rotated when the
// next write would take it past MaxSizeMB: it is renamed to
// NAME-<UTC time>.EXT (2006-01-02T15-04-05.000) and a new file is opened
// with the old one's permissions (so a chmod 0640 for a log shipper
// lasts). Each write is whole lines, so a record is
// never split across two files. After a rotation a background pass removes
// backups beyond MaxBackups or older than MaxAgeDays (by the time in their
// name) and, with Compress, gzips the rest to NAME-<time>.EXT.gz. Standard
// output is never rotated or closed.
//
// # Concurrency
//
// Log may be called from any goroutine and never blocks: it copies the
// entry into a bounded channel (BufferSize entries) and, when the channel
// is full or the logger is closed, drops it and counts it in
// [Logger.Dropped]. Entries whose write fails are counted there too, and
// the error is logged once per run of failures. The writer goroutine is
// Run: it takes whatever is queued, encodes it into one reused buffer and
// writes it in one call (at most about 64 KiB), so a quiet proxy writes
// each line at once and a busy one batches. When Run's context is
// cancelled, or Close is called, Run writes what is still queued, closes
// the output, waits for the rotation pass, and returns. Close stops Run,
// waits for it and closes the output of a Logger that never ran; it is
// safe to call twice. Entries logged concurrently with shutdown may be
// lost.
package accesslog

// Package postgres implements store.Store on a PostgreSQL database, the
// store of a trustmesh server that runs as several replicas: every replica
// opens the same database, and each sees the others' writes, notifications
// and elections. It uses pgx (pgxpool) and passes the same conformance
// suite as the SQLite store (storetest.Run), and the suite for stores shared
// by replicas (storetest.RunShared).
//
// # Model
//
// The schema is created and upgraded by a versioned list of migrations (see
// migrate.go), applied when the store is opened in one transaction that
// first takes a transaction-scoped advisory lock, so servers starting
// together on a new database serialize; the applied versions are rows of
// schema_version. The tables mirror the SQLite store's:
//
//   - object_revisions holds every revision of every object, tombstones
//     included; objects maps each live (kind, namespace, name) to its
//     current revision. The store-wide revision is the one row of
//     object_counter: an object write locks and increments it in the
//     statement that begins its transaction, reads the object's live head
//     after that, and holds the lock until it commits. Object writes are so
//     serialized across servers, revisions are dense (a rolled back write
//     consumes none), and they commit in revision order, so a reader of
//     Changes never sees a revision before a lower one.
//   - audit is the hash-chained log (see package auditchain). An append
//     takes a transaction-scoped advisory lock, then reads the head: the
//     highest seq ever assigned (the one row of audit_counter, which
//     AuditHighWater reports) and the hash of the last record present.
//     It seals the records, inserts them and advances the counter in the
//     same transaction, so the chain stays linear whichever server
//     appends, and a seq is never reused. Checkpoints are appended under
//     another advisory lock.
//   - An audited object write (PutObjectAudited, DeleteObjectAudited) does
//     both in one transaction: it locks the revision counter, reads the
//     object's head, then takes the audit lock and reads the log's head,
//     all in the first round trip, and inserts the revision and the sealed
//     records, which carry it, in the second. Every transaction that
//     takes both locks takes them in that order, and an audit append takes
//     only the audit lock, so no two writes wait for each other in a
//     cycle; a write whose compare-and-swap fails rolls back its records
//     with it. It costs one synchronous commit, where a write and a
//     separate append cost two.
//   - blobs and presence are written by single statements: PostgreSQL
//     locks a row and re-checks the version condition of an UPDATE for
//     every concurrent writer, which is the compare-and-swap. A join token
//     is consumed by one conditional UPDATE in the same way.
//
// Every text column is COLLATE "C", so comparisons and ORDER BY are byte
// order whatever the database's locale, as in SQLite. Times are BIGINT Unix
// nanoseconds (timestamptz keeps only microseconds, and the audit hash
// covers nanoseconds), returned in UTC; a zero time.Time is NULL (package
// unixnano, shared with the SQLite store). Data is bytea, kept byte for
// byte. The database must be UTF8 (Open checks): text must then be valid
// UTF-8 without NUL, which the audit log's free-form strings need not be
// (auditchain makes them valid UTF-8; a NUL may stay), so those are bytea.
//
// Round trips are few: a write that reads before it writes (an object write,
// an audit append) sends BEGIN with its lock and its reads in one pipelined
// batch, decides in Go (compare-and-swap, sealing the audit records), and
// sends its writes with COMMIT in a second; a write of one statement, with
// its notification, is one batch, which PostgreSQL runs as one implicit
// transaction. Under READ COMMITTED every statement sees what was committed
// before it began, so the reads that follow the lock in the first batch see
// every write the lock serializes with.
//
// # Notification
//
// Every write of a topic (store.Topic) runs pg_notify('trustmesh_changes',
// "<origin> <topic>") in its transaction, so the notification is delivered
// to every listening server when, and only if, the write commits. Each
// store has one listener connection outside the pool (LISTEN), which fans
// notifications out to its subscribers by topic and skips its own (origin is
// random per Store): a store signals its own subscribers directly after the
// commit, before the write returns. When the listener's connection fails it
// reconnects with backoff, and then signals every subscriber of every
// topic, since notifications sent while it was away are lost; an idle
// listener pings its connection every 15 s so a silently dead one is
// noticed. Subscriber channels have capacity one and are sent to without
// blocking, so signals coalesce and never delay a writer (package fanout).
//
// # Elections
//
// Elect holds a role as a session-level advisory lock on a hash of its
// name, on a connection of its own outside the pool (so that the pool's
// recycling can never drop it). A campaign tries pg_try_advisory_lock about
// once a second; the holder pings its connection every second, and cancels
// the held context when a ping fails or the connection drops: PostgreSQL
// releases a session's locks when the session ends, so another server may
// then win. The old holder learns it within about pingTimeout, not
// instantly: singleton work must compare-and-swap. release unlocks and
// closes the connection.
//
// # Failures
//
// A database restart is survived: the pool discards broken connections and
// opens new ones (a connection idle for more than a second is pinged before
// use), so a query fails only while the database is down; the listener
// reconnects and signals everything; a held role is lost (its context is
// cancelled) and its holder campaigns again.
//
// # Concurrency
//
// All methods are safe for concurrent use. The store owns two kinds of
// goroutine: the listener, and one per held role; Close stops both and
// waits for them, then closes the pool. Close is safe to call twice.
//
// Passwords never appear in errors: Open reports the DSN through Redact,
// and scrubs the password from any message a lower layer returns.
package postgres

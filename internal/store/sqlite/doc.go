// Package sqlite implements store.Store on a single SQLite file, the default
// store of a trustmesh server. It uses the pure-Go modernc.org/sqlite driver,
// so the binary needs no C toolchain.
//
// # Model
//
// The schema is created and upgraded by a versioned list of migrations (see
// migrate.go), applied in one transaction when the store is opened; the
// applied versions are rows of schema_version.
//
//   - object_revisions holds every revision of every object, tombstones
//     included, and is never updated or pruned. Its primary key is the
//     store-wide revision: a write takes MAX(revision)+1 inside its
//     transaction, so revisions are dense and a failed write consumes none.
//   - objects maps each live (kind, namespace, name) to its current revision
//     in object_revisions; a delete removes the row and appends a tombstone
//     that carries the last live Data, so a watcher reading Changes learns
//     what was removed without another read.
//   - join_tokens, nodes, issued and revocations are plain tables.
//   - audit is the hash-chained log (see package auditchain). audit.seq is an
//     AUTOINCREMENT key and an append takes one more than the highest seq the
//     table ever held (sqlite_sequence), so numbers are never reused and a
//     record removed from the end leaves a gap the next append makes
//     visible. Migration 2 added prev_hash and hash and chained the records
//     that existed then, appending an auditchain.ActionChainStart record
//     that says so. audit_checkpoints holds the signed checkpoints as given.
//     An audited object write (PutObjectAudited, DeleteObjectAudited)
//     appends its records in the object write's own transaction, after the
//     revision is taken, so both commit or neither does.
//   - blobs (migration 3) holds named values with a version that starts at 1
//     and grows by one per write; PutBlob and DeleteBlob compare-and-swap on
//     it inside an IMMEDIATE transaction. presence holds one row per replica,
//     filtered by expiry when read rather than swept.
//
// Times are stored as integer Unix nanoseconds and returned in UTC; a zero
// time.Time is stored as NULL. Times outside the int64 nanosecond range
// (before 1677-09-21 or after 2262-04-11) are rejected rather than wrapped
// (package unixnano, shared with the PostgreSQL store).
//
// # Concurrency
//
// Writers never see SQLITE_BUSY from each other: every write goes through one
// database/sql pool that holds a single connection, so writers queue in
// process. A write of one statement (a single issued credential) is its own
// transaction; a write that reads before it writes (a compare-and-swap, a
// join token's use, an audit append, which reads the chain's head) runs in a
// transaction that begins
// IMMEDIATE, so it holds the write lock from its first read and its check
// cannot go stale before its write. busy_timeout only covers another process
// holding the file, such as an offline CLI command.
//
// Reads use a separate pool of query-only connections. In WAL mode they run
// beside the writer and see every transaction committed before they began;
// each read method is a single statement, so it reads one consistent
// snapshot.
//
// Code running inside a write transaction must use only that transaction:
// asking the write pool for another connection would wait for the one the
// transaction holds, forever.
//
// Subscribers are signalled after the transaction commits, with a
// non-blocking send on a channel of capacity one, so a slow watcher coalesces
// signals and never delays a writer. Each subscriber names the topics it
// follows (store.Topic); a write signals only the subscribers of its topic
// (package fanout). Only writes through this Store are seen: no other
// server opens the file.
//
// # Elections
//
// One server opens a data dir (it holds the dir's lock), so Elect grants
// every role at once. The held context ends on release, when the campaign's
// context ends, or when the store is closed.
package sqlite

// Package audit records who did what to the mesh and what the mesh refused,
// in a log that shows when it was tampered with.
//
// # Model
//
// A Recorder appends records to the control-plane store (the durable log
// operators query) and to the structured process log. A change to a
// declared object is written with its records in one store transaction
// (Recorder.PutObject and DeleteObject), so the log never lacks the record
// of a change that was made, nor holds one of a change that was not. The
// store chains the records (package auditchain): every record carries the
// hash of the one before it, so a record cannot be changed, removed,
// inserted or moved without breaking the chain at that point. A chain alone
// does not stop someone who rewrites a whole suffix and recomputes its
// hashes, so a Checkpointer signs the head of the chain (sequence number
// and hash) with a dedicated Ed25519 key at a fixed interval and at clean
// shutdown, and keeps each checkpoint twice: in the store's checkpoint
// table and, one JSON line each, in a file beside the store that can be
// copied off the machine. Verify walks the chain and checks it against
// every checkpoint from both places; ExportJSONL and ExportCEF write
// records for SIEMs.
//
// What the chain proves: no record up to the last checkpoint was changed,
// removed, inserted or reordered since that checkpoint was signed. Records
// after the last checkpoint are chained but not yet signed: removing them
// from the end is visible only through the store's own high-water mark.
// Records written before the chain existed were chained when the store was
// upgraded, which appended a record with action audit.chain.start; changes
// to them before that moment cannot be detected, and Verify reports from
// which record on the chain is native.
//
// # Record hash (version 1)
//
// An outside tool re-verifies a record like this. The record's hash is
//
//	hex(SHA-256("trustmesh-audit-v1\n" || canonical))
//
// where canonical is the JSON object of exactly these keys, in this order
// (sorted), without white space:
//
//	{"action":S,"actor":S,"object":S,"outcome":S,"prev_hash":S,"reason":S,
//	 "request_id":S,"revision":N,"seq":N,"time":S}
//
// Strings (S) are UTF-8 (the store replaces invalid bytes with U+FFFD before
// hashing) and escape only '"' as \", '\' as \\, and the characters below
// U+0020: \b \t \n \f \r by name, the others as \u00xx with lowercase hex;
// everything else, '/' and non-ASCII included, is written as is. This is
// RFC 8785's string form, and what Python's json.dumps(obj, sort_keys=True,
// separators=(",", ":"), ensure_ascii=False) writes. Numbers (N) are decimal
// integers. time is UTC with exactly nine fractional digits,
// 2006-01-02T15:04:05.000000000Z. prev_hash is the hash of record seq-1, and
// for record 1 sixty-four zeros. hash is lowercase hex.
//
// An exported JSONL line (ExportJSONL) is that object with one more key,
// "hash", in its sorted place: remove it, re-encode the rest as above and
// hash to check it. In Python:
//
//	d = json.loads(line); h = d.pop("hash")
//	c = json.dumps(d, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
//	assert hashlib.sha256(b"trustmesh-audit-v1\n" + c.encode()).hexdigest() == h
//
// # Checkpoints (version 1)
//
// A checkpoint signs, with Ed25519 (RFC 8032, pure), the bytes
//
//	"trustmesh-audit-checkpoint-v1\n" || {"hash":S,"key_id":S,"seq":N,"time":S}
//
// encoded as above, where hash is record seq's hash and time the signing
// time. key_id is the lowercase hex of the first 8 bytes of SHA-256 of the
// 32-byte public key. A line of the checkpoint file is
//
//	{"seq":N,"hash":S,"time":S,"key_id":S,"signature":base64(std, padded)}
//
// The server keeps the key in DATA_DIR/audit/checkpoint.key (PKCS#8 PEM,
// mode 0600, never logged), the public key in DATA_DIR/audit/checkpoint.pub
// (PKIX PEM) and the file in DATA_DIR/audit/checkpoints.jsonl.
//
// # Concurrency
//
// Recorder and Checkpointer are safe for concurrent use. Linearity of the
// chain under concurrent appends and audited writes, and the atomicity of
// those, is the store's job (see store.Store.AppendAuditBatch and
// PutObjectAudited). Verify reads the log page by page and holds only the
// checkpoints in memory.
package audit

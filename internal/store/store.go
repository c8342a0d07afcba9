// Package store defines the control plane's persistence contract. Every
// implementation (SQLite by default, PostgreSQL for several servers) satisfies
// the same Store interface and passes the same conformance suite, so callers
// never know which one they hold.
//
// Objects are versioned: every write or delete takes the next value of one
// store-wide revision counter (like a Kubernetes resourceVersion) and is kept
// in the history, so history, diff and rollback are plain reads. A write
// can carry the audit records that describe it (PutObjectAudited,
// DeleteObjectAudited), committed in the same transaction, so the audit log
// never misses a change that was made.
package store

import (
	"context"
	"errors"
	"time"
)

// Errors callers branch on.
var (
	// ErrNotFound: the object, token or record does not exist.
	ErrNotFound = errors.New("not found")
	// ErrConflict: a compare-and-swap write found another revision than expected.
	ErrConflict = errors.New("revision conflict")
	// ErrTokenUsed: a join token was already consumed.
	ErrTokenUsed = errors.New("join token already used")
	// ErrTokenExpired: a join token is past its expiry.
	ErrTokenExpired = errors.New("join token expired")
)

// Revision preconditions for PutObject and DeleteObject.
const (
	// AnyRevision writes whatever the current revision is.
	AnyRevision int64 = -1
	// MustNotExist makes PutObject fail with ErrConflict if the object exists.
	MustNotExist int64 = 0
)

// Object is one revision of a declared object. The store does not interpret
// Data; the policy package owns the schema.
type Object struct {
	Kind      string
	Namespace string
	Name      string
	// Revision is the store revision of this write (assigned by the store).
	Revision int64
	// CreateRevision is the revision at which the object was (last) created.
	CreateRevision int64
	// Deleted marks a tombstone: the revision at which the object was removed.
	Deleted bool
	// Data is the canonical JSON of the whole object.
	Data []byte
	// Actor is who wrote this revision (admin name and role, or a SPIFFE ID).
	Actor string
	// Time is when the revision was written (assigned by the store).
	Time time.Time
}

// JoinToken is a single-use node attestation token. Only its hash is stored.
type JoinToken struct {
	// Hash is the lowercase hex SHA-256 of the token secret.
	Hash      string
	Node      string
	CreatedAt time.Time
	ExpiresAt time.Time
	CreatedBy string
	// UsedAt is zero until the token is consumed.
	UsedAt time.Time
}

// Node is an attested node agent.
type Node struct {
	Name       string
	SPIFFEID   string
	AttestedAt time.Time
	// Serial of the node's current SVID (decimal), and its expiry.
	Serial    string
	ExpiresAt time.Time
}

// Issued records one certificate or token the CA signed.
type Issued struct {
	// Serial is the certificate serial number in decimal; empty for JWT-SVIDs.
	Serial    string
	SPIFFEID  string
	Kind      string // "x509-svid", "jwt-svid", "node-svid", "admin"
	Node      string // the node that asked for it, if any
	Authority string // the CA authority ID that signed it
	NotBefore time.Time
	NotAfter  time.Time
}

// Revocation revokes one serial, or every SVID of a SPIFFE ID issued at or
// before RevokedAt. Exactly one of Serial and SPIFFEID is set.
type Revocation struct {
	Serial    string
	SPIFFEID  string
	RevokedAt time.Time
	Reason    string
	Actor     string
}

// AuditRecord is one entry of the audit log. The log is a hash chain: each
// record carries the hash of the one before it (see package auditchain for
// the encoding, and package audit for verification).
type AuditRecord struct {
	Seq       int64 // assigned by the store, strictly increasing from 1
	Time      time.Time
	Actor     string
	Action    string
	Object    string
	Revision  int64
	Outcome   string // "success" or "denied" or "error"
	Reason    string
	RequestID string
	// PrevHash is the Hash of record Seq-1 (auditchain.Genesis for Seq 1),
	// and Hash this record's own hash: lowercase hex SHA-256, both assigned
	// by the store when the record is appended.
	PrevHash string
	Hash     string
}

// AuditCheckpoint is a signed statement that the audit log's record Seq had
// Hash, so that a rewrite of records up to Seq is detectable by anyone who
// holds the public key. The audit package signs and verifies them; the
// store keeps them as given.
type AuditCheckpoint struct {
	Seq  int64
	Hash string // lowercase hex hash of record Seq
	Time time.Time
	// KeyID names the signing key (see audit.KeyID).
	KeyID string
	// Signature is the Ed25519 signature (see audit.CheckpointMessage).
	Signature []byte
}

// Blob is one named value of the control plane's shared state: the CA's
// authorities and keys, the audit checkpoint key, the trust domain. Every
// replica of a server reads and writes the same blobs. The store does not
// interpret Data; callers encrypt secret values before they reach it (see
// package kek), so the database alone never yields a usable key.
type Blob struct {
	Name string
	Data []byte
	// Version is assigned by the store: 1 for a new blob, then one more on
	// every write. PutBlob and DeleteBlob compare-and-swap on it.
	Version int64
	// Updated is when Version was written (assigned by the store).
	Updated time.Time
}

// Presence is what one server replica publishes about the proxies connected
// to it, so that every replica's snapshots carry the endpoints of every
// serving proxy, wherever it is connected. Data is opaque to the store (the
// hub's encoding). A presence whose ExpiresAt has passed belongs to a
// replica that stopped renewing it (it died) and is no longer listed.
type Presence struct {
	Replica   string
	Data      []byte
	ExpiresAt time.Time
}

// Topic is a set of kinds of change that Subscribe reports.
type Topic uint8

// Topics.
const (
	// TopicObjects: an object write or delete, or a revocation.
	TopicObjects Topic = 1 << iota
	// TopicBlobs: a blob write or delete.
	TopicBlobs
	// TopicPresence: a PutPresence or DeletePresence.
	TopicPresence

	TopicAll = TopicObjects | TopicBlobs | TopicPresence
)

// Store is the control plane's persistence. All methods are safe for
// concurrent use.
type Store interface {
	// PutObject writes a new revision of obj (Kind, Namespace, Name, Data,
	// Actor are read). expectRevision is AnyRevision, MustNotExist, or the
	// current revision (compare-and-swap; ErrConflict otherwise). Returns the
	// stored revision.
	PutObject(ctx context.Context, obj Object, expectRevision int64) (Object, error)
	// GetObject returns the live revision or ErrNotFound.
	GetObject(ctx context.Context, kind, namespace, name string) (Object, error)
	// ListObjects returns live objects of kind ("" = every kind) in namespace
	// ("" = every namespace), ordered by kind, namespace, name.
	ListObjects(ctx context.Context, kind, namespace string) ([]Object, error)
	// DeleteObject writes a tombstone revision; ErrNotFound if not live.
	DeleteObject(ctx context.Context, kind, namespace, name, actor string, expectRevision int64) (Object, error)
	// PutObjectAudited is PutObject that appends recs, the audit records
	// of the write, to the audit log in the same transaction: the revision
	// and its records are committed together or not at all, so no change
	// is ever stored without its record (nor a record of a change that
	// never happened). Each record's Revision is set to the revision
	// written, and Seq, PrevHash, Hash and a zero Time are assigned as by
	// AppendAuditBatch, the records chained in order; it returns the
	// revision and the records as stored (recs itself is not modified). A
	// write that is refused appends nothing: a failed compare-and-swap
	// (ErrConflict), an invalid object or record, or an error from the
	// database rolls back the records with the revision, consuming neither
	// a revision nor a Seq, and a caller that audits refusals appends its
	// own record of one. (An error from the commit itself may leave a
	// caller unsure whether the write committed, as for any write; it
	// committed whole or not at all.) Subscribers are signalled as for
	// PutObject (TopicObjects). With no recs it is PutObject.
	//
	// Lock order: a transaction that writes objects and the log takes the
	// object write lock first, then the log's; an audit append takes only
	// the log's, and a plain object write only the object lock, so audited
	// writes, plain writes and appends never wait for each other in a
	// cycle, from one server or several on the same database (SQLite: the
	// one BEGIN IMMEDIATE transaction; PostgreSQL: the revision counter's
	// row lock, then the log's advisory lock).
	PutObjectAudited(ctx context.Context, obj Object, expectRevision int64, recs []AuditRecord) (Object, []AuditRecord, error)
	// DeleteObjectAudited is DeleteObject that appends recs in the same
	// transaction, as PutObjectAudited does: ErrNotFound and ErrConflict
	// append nothing.
	DeleteObjectAudited(ctx context.Context, kind, namespace, name, actor string, expectRevision int64, recs []AuditRecord) (Object, []AuditRecord, error)
	// History returns every revision of one object, tombstones included, oldest first.
	History(ctx context.Context, kind, namespace, name string) ([]Object, error)
	// Changes returns every object revision greater than after, oldest first,
	// at most limit (0 = no limit).
	Changes(ctx context.Context, after int64, limit int) ([]Object, error)
	// CurrentRevision is the highest revision written (0 for an empty store).
	CurrentRevision(ctx context.Context) (int64, error)

	// CreateJoinToken stores a new token (by hash).
	CreateJoinToken(ctx context.Context, t JoinToken) error
	// UseJoinToken consumes a token exactly once, even under concurrent use:
	// ErrNotFound, ErrTokenUsed or ErrTokenExpired otherwise.
	UseJoinToken(ctx context.Context, hash string, now time.Time) (JoinToken, error)

	// PutNode creates or replaces a node record.
	PutNode(ctx context.Context, n Node) error
	// GetNode returns a node by name or ErrNotFound.
	GetNode(ctx context.Context, name string) (Node, error)
	// ListNodes returns every node ordered by name.
	ListNodes(ctx context.Context) ([]Node, error)

	// RecordIssued persists a batch of issued credentials in one transaction.
	RecordIssued(ctx context.Context, issued []Issued) error
	// ListIssued returns issued records for a SPIFFE ID ("" = all), newest
	// first, at most limit (0 = no limit).
	ListIssued(ctx context.Context, spiffeID string, limit int) ([]Issued, error)

	// AddRevocation stores a revocation.
	AddRevocation(ctx context.Context, r Revocation) error
	// ListRevocations returns every revocation, oldest first.
	ListRevocations(ctx context.Context) ([]Revocation, error)

	// AppendAudit appends a record (Seq, PrevHash and Hash are assigned; a
	// zero Time is stamped with the store's clock) and returns its sequence
	// number. It is AppendAuditBatch of one record.
	AppendAudit(ctx context.Context, r AuditRecord) (int64, error)
	// AppendAuditBatch appends records in order, in one transaction (all or
	// none), and returns their sequence numbers; recs itself is not
	// modified. The chain stays linear under concurrent appends and
	// audited object writes (PutObjectAudited), from this process or
	// another server on the same database: reading the head (last Seq and
	// Hash) and inserting the records sealed by auditchain.Seal happen in
	// one transaction that holds the log's write lock from the read on
	// (SQLite: BEGIN IMMEDIATE; PostgreSQL: a transaction-scoped advisory
	// lock). Time is kept to the nanosecond and strings byte for byte
	// after auditchain.Seal, since the hash covers them.
	AppendAuditBatch(ctx context.Context, recs []AuditRecord) ([]int64, error)
	// ListAudit returns records with Seq > after, oldest first, at most limit (0 = no limit).
	ListAudit(ctx context.Context, after int64, limit int) ([]AuditRecord, error)
	// AuditHead returns the last record, or ErrNotFound for an empty log.
	AuditHead(ctx context.Context) (AuditRecord, error)
	// AppendAuditCheckpoint stores a checkpoint. Checkpoints are kept in
	// increasing Seq: ErrConflict if one at the same or a higher Seq exists.
	AppendAuditCheckpoint(ctx context.Context, c AuditCheckpoint) error
	// ListAuditCheckpoints returns checkpoints with Seq > after, oldest
	// first, at most limit (0 = no limit).
	ListAuditCheckpoints(ctx context.Context, after int64, limit int) ([]AuditCheckpoint, error)
	// LastAuditCheckpoint returns the checkpoint with the highest Seq, or
	// ErrNotFound if there is none.
	LastAuditCheckpoint(ctx context.Context) (AuditCheckpoint, error)

	// GetBlob returns a blob or ErrNotFound.
	GetBlob(ctx context.Context, name string) (Blob, error)
	// ListBlobs returns the blobs whose name starts with prefix, ordered by
	// name (byte order).
	ListBlobs(ctx context.Context, prefix string) ([]Blob, error)
	// PutBlob writes a blob if its current version is expectVersion
	// (MustNotExist for a new one, AnyRevision for any), ErrConflict
	// otherwise, and returns the version written.
	PutBlob(ctx context.Context, name string, data []byte, expectVersion int64) (int64, error)
	// DeleteBlob removes a blob if its version is expectVersion (or
	// AnyRevision): ErrNotFound if it does not exist, ErrConflict if its
	// version differs.
	DeleteBlob(ctx context.Context, name string, expectVersion int64) error

	// PutPresence creates or replaces replica's presence.
	PutPresence(ctx context.Context, p Presence) error
	// ListPresence returns the presences that have not expired at now,
	// ordered by replica.
	ListPresence(ctx context.Context, now time.Time) ([]Presence, error)
	// DeletePresence removes replica's presence (a clean shutdown); no
	// error if there is none.
	DeletePresence(ctx context.Context, replica string) error
	// PrunePresence removes the presences that expired before before (those
	// of replicas that are gone for good) and reports how many.
	PrunePresence(ctx context.Context, before time.Time) (int, error)

	// Elect campaigns for the singleton role name (CA rotation, audit
	// checkpoint signing, expiry sweeps run on one replica only). It blocks
	// until the role is held or ctx is done, and returns a context that is
	// cancelled when the role is lost (the database connection that holds
	// it failed) and a release func that gives it up; call release in every
	// case. A store that only one server can open (SQLite: the data dir
	// lock) grants the role at once. Holders must tolerate a short overlap
	// with a successor (a lost role is noticed within seconds, not
	// instantly): singleton writes compare-and-swap.
	Elect(ctx context.Context, name string) (held context.Context, release func(), err error)

	// Subscribe returns a channel that receives a value (coalesced, never
	// blocking the writer) after every committed change to one of topics
	// (a bit set), made through this store or, on a database shared by
	// several replicas, through another one, so watchers can re-read what
	// they follow. cancel releases it.
	Subscribe(topics Topic) (ch <-chan struct{}, cancel func())

	// Close releases the store. Safe to call twice.
	Close() error
}

// Package auditchain is the audit log's hash chain: the canonical encoding
// of a record, its hash, and Prepare and Seal, which every store.Store
// implementation calls before and inside its append transaction so that all
// of them chain records the same way. Verification, checkpoints and export
// build on it in package audit, whose documentation specifies the encoding
// for outside tools.
//
// A record's hash is the lowercase hex SHA-256 of Domain followed by the
// canonical JSON (RFC 8785 style: keys sorted, no white space, only '"',
// '\\' and control characters escaped) of its fields and the hash of the
// record before it:
//
//	{"action":…,"actor":…,"object":…,"outcome":…,"prev_hash":…,"reason":…,
//	 "request_id":…,"revision":N,"seq":N,"time":"2006-01-02T15:04:05.000000000Z"}
//
// The first record's prev_hash is Genesis, 64 zeros.
package auditchain

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/trustmesh/trustmesh/internal/store"
	"github.com/trustmesh/trustmesh/internal/store/unixnano"
)

const (
	// Domain separates record hashes from every other use of SHA-256; its
	// "v1" versions the encoding.
	Domain = "trustmesh-audit-v1\n"
	// Genesis is the PrevHash of record 1.
	Genesis = "0000000000000000000000000000000000000000000000000000000000000000"
	// TimeLayout is the encoding of a record's time: UTC, always nine
	// fractional digits, so that an outside tool need not know Go's
	// trailing-zero rules.
	TimeLayout = "2006-01-02T15:04:05.000000000Z"
	// ActionChainStart is the action of the record a store appends when it
	// chains a log written before the chain existed: the records before it
	// were hashed at that time, not as they were written.
	ActionChainStart = "audit.chain.start"
	// ChainStartActor is the actor of that record.
	ChainStartActor = "trustmesh"
)

// Normalize brings r to the form that is hashed and stored: every string
// valid UTF-8 (invalid bytes become U+FFFD, so the record survives a JSON
// export unchanged) and Time in UTC without a monotonic reading.
func Normalize(r *store.AuditRecord) {
	for _, s := range []*string{&r.Actor, &r.Action, &r.Object, &r.Outcome, &r.Reason, &r.RequestID} {
		if !utf8.ValidString(*s) {
			*s = strings.ToValidUTF8(*s, "\uFFFD")
		}
	}
	r.Time = r.Time.UTC()
}

// Prepare returns a copy of recs for Seal, which rewrites its records (the
// caller's slice is the caller's): a record without a Time is stamped with
// now, and every Time must fit the stores' int64 Unix nanoseconds (see
// package unixnano), or the hash would not survive a read. Stores call it
// before their append transaction, so a bad record does not hold the log's
// lock.
func Prepare(recs []store.AuditRecord, now time.Time) ([]store.AuditRecord, error) {
	recs = slices.Clone(recs)
	for i := range recs {
		if recs[i].Time.IsZero() {
			recs[i].Time = now
		}
		if _, err := unixnano.Encode("time", recs[i].Time); err != nil {
			return nil, fmt.Errorf("record %d: %w", i+1, err)
		}
	}
	return recs, nil
}

// Seqs returns the Seq of every record, in order.
func Seqs(recs []store.AuditRecord) []int64 {
	seqs := make([]int64, len(recs))
	for i, r := range recs {
		seqs[i] = r.Seq
	}
	return seqs
}

// Seal chains recs after the record (prevSeq, prevHash): it normalizes each
// record, assigns Seq prevSeq+1, prevSeq+2, … and sets PrevHash and Hash.
// Records must carry a Time (stores stamp missing ones first). For an empty
// log, prevSeq is 0 and prevHash Genesis.
func Seal(prevSeq int64, prevHash string, recs []store.AuditRecord) error {
	if len(prevHash) != sha256.Size*2 {
		return fmt.Errorf("previous hash %q is not %d hex digits", prevHash, sha256.Size*2)
	}
	var h Hasher
	for i := range recs {
		r := &recs[i]
		if r.Time.IsZero() {
			return fmt.Errorf("record %d of %d has no time", i+1, len(recs))
		}
		Normalize(r)
		r.Seq = prevSeq + int64(i) + 1
		r.PrevHash = prevHash
		r.Hash = h.Hash(*r)
		prevHash = r.Hash
	}
	return nil
}

// Link sets r.PrevHash to prevHash and r.Hash to the hash of the result,
// keeping r.Seq: for chaining records that already have a sequence number
// (a migration that chains an existing log).
func Link(prevHash string, r *store.AuditRecord) error {
	if r.Time.IsZero() {
		return errors.New("record has no time")
	}
	Normalize(r)
	r.PrevHash = prevHash
	var h Hasher
	r.Hash = h.Hash(*r)
	return nil
}

// Hash returns r's hash as lowercase hex. It hashes r as given (Hash is
// ignored): call Normalize first when r does not come from a store.
func Hash(r store.AuditRecord) string {
	var h Hasher
	return h.Hash(r)
}

// Hasher hashes records reusing one buffer, so a verification loop
// allocates nothing per record. The zero value is ready; a Hasher is not
// safe for concurrent use.
type Hasher struct {
	buf []byte
}

// Sum returns r's hash.
func (h *Hasher) Sum(r store.AuditRecord) [sha256.Size]byte {
	h.buf = append(h.buf[:0], Domain...)
	h.buf = AppendCanonical(h.buf, r)
	return sha256.Sum256(h.buf)
}

// Hash returns r's hash as lowercase hex.
func (h *Hasher) Hash(r store.AuditRecord) string {
	sum := h.Sum(r)
	return hex.EncodeToString(sum[:])
}

// Matches reports whether r.Hash is r's hash, without allocating.
func (h *Hasher) Matches(r store.AuditRecord) bool {
	sum := h.Sum(r)
	var hx [sha256.Size * 2]byte
	hex.Encode(hx[:], sum[:])
	return string(hx[:]) == r.Hash
}

// AppendCanonical appends the canonical JSON of r's hashed fields (those of
// the package documentation, PrevHash as prev_hash; not Hash) to dst.
func AppendCanonical(dst []byte, r store.AuditRecord) []byte {
	dst = append(dst, `{"action":`...)
	dst = AppendString(dst, r.Action)
	dst = append(dst, `,"actor":`...)
	dst = AppendString(dst, r.Actor)
	dst = append(dst, `,"object":`...)
	dst = AppendString(dst, r.Object)
	dst = append(dst, `,"outcome":`...)
	dst = AppendString(dst, r.Outcome)
	dst = append(dst, `,"prev_hash":`...)
	dst = AppendString(dst, r.PrevHash)
	dst = append(dst, `,"reason":`...)
	dst = AppendString(dst, r.Reason)
	dst = append(dst, `,"request_id":`...)
	dst = AppendString(dst, r.RequestID)
	dst = append(dst, `,"revision":`...)
	dst = strconv.AppendInt(dst, r.Revision, 10)
	dst = append(dst, `,"seq":`...)
	dst = strconv.AppendInt(dst, r.Seq, 10)
	dst = append(dst, `,"time":"`...)
	dst = AppendTime(dst, r.Time)
	dst = append(dst, `"}`...)
	return dst
}

// AppendTime appends t in TimeLayout.
func AppendTime(dst []byte, t time.Time) []byte {
	return t.UTC().AppendFormat(dst, TimeLayout)
}

// AppendString appends s as a JSON string the way RFC 8785 does: '"' and
// '\\' and the control characters below U+0020 are escaped (\b \t \n \f \r
// by name, the others as \u00xx in lowercase hex); every other byte is
// copied as is. This is also what Python's json.dumps(ensure_ascii=False)
// and JavaScript's JSON.stringify produce.
func AppendString(dst []byte, s string) []byte {
	const hexDigits = "0123456789abcdef"
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !mustEscape[c] {
			continue
		}
		dst = append(dst, s[start:i]...)
		switch c {
		case '"', '\\':
			dst = append(dst, '\\', c)
		case '\b':
			dst = append(dst, '\\', 'b')
		case '\t':
			dst = append(dst, '\\', 't')
		case '\n':
			dst = append(dst, '\\', 'n')
		case '\f':
			dst = append(dst, '\\', 'f')
		case '\r':
			dst = append(dst, '\\', 'r')
		default:
			dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
		}
		start = i + 1
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}

// mustEscape marks the bytes AppendString escapes (a table: this loop runs
// for every byte a verification hashes).
var mustEscape = func() (t [256]bool) {
	for c := range 0x20 {
		t[c] = true
	}
	t['"'], t['\\'] = true, true
	return t
}()

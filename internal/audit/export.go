package audit

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/trustmesh/trustmesh/internal/store"
	"github.com/trustmesh/trustmesh/internal/store/auditchain"
)

// AppendJSONL appends r as one JSONL line for a SIEM, newline included:
// every field, with the same keys and encoding as the record hash (see the
// package documentation) plus "hash", so that a reader can re-verify a
// line on its own.
func AppendJSONL(dst []byte, r store.AuditRecord) []byte {
	dst = append(dst, `{"action":`...)
	dst = auditchain.AppendString(dst, r.Action)
	dst = append(dst, `,"actor":`...)
	dst = auditchain.AppendString(dst, r.Actor)
	dst = append(dst, `,"hash":`...)
	dst = auditchain.AppendString(dst, r.Hash)
	dst = append(dst, `,"object":`...)
	dst = auditchain.AppendString(dst, r.Object)
	dst = append(dst, `,"outcome":`...)
	dst = auditchain.AppendString(dst, r.Outcome)
	dst = append(dst, `,"prev_hash":`...)
	dst = auditchain.AppendString(dst, r.PrevHash)
	dst = append(dst, `,"reason":`...)
	dst = auditchain.AppendString(dst, r.Reason)
	dst = append(dst, `,"request_id":`...)
	dst = auditchain.AppendString(dst, r.RequestID)
	dst = append(dst, `,"revision":`...)
	dst = strconv.AppendInt(dst, r.Revision, 10)
	dst = append(dst, `,"seq":`...)
	dst = strconv.AppendInt(dst, r.Seq, 10)
	dst = append(dst, `,"time":"`...)
	dst = auditchain.AppendTime(dst, r.Time)
	return append(dst, "\"}\n"...)
}

// jsonlRecord is the JSON shape of an exported line; pointers tell a
// missing field from an empty one.
type jsonlRecord struct {
	Action    *string `json:"action"`
	Actor     *string `json:"actor"`
	Hash      *string `json:"hash"`
	Object    *string `json:"object"`
	Outcome   *string `json:"outcome"`
	PrevHash  *string `json:"prev_hash"`
	Reason    *string `json:"reason"`
	RequestID *string `json:"request_id"`
	Revision  *int64  `json:"revision"`
	Seq       *int64  `json:"seq"`
	Time      *string `json:"time"`
}

// ParseJSONL parses one exported line (without its newline) back into a
// record. Every field must be present; seq must be positive and the hashes
// 64 lowercase hex digits. The hash is not checked (see Verify).
func ParseJSONL(line []byte) (store.AuditRecord, error) {
	var j jsonlRecord
	if err := decodeStrict(line, &j); err != nil {
		return store.AuditRecord{}, err
	}
	for _, f := range []struct {
		name string
		p    *string
	}{
		{"action", j.Action}, {"actor", j.Actor}, {"hash", j.Hash}, {"object", j.Object}, {"outcome", j.Outcome},
		{"prev_hash", j.PrevHash}, {"reason", j.Reason}, {"request_id", j.RequestID}, {"time", j.Time},
	} {
		if f.p == nil {
			return store.AuditRecord{}, fmt.Errorf("field %q is missing", f.name)
		}
	}
	if j.Revision == nil || j.Seq == nil {
		return store.AuditRecord{}, errors.New("fields revision and seq are required")
	}
	r := store.AuditRecord{
		Seq: *j.Seq, Actor: *j.Actor, Action: *j.Action, Object: *j.Object, Revision: *j.Revision,
		Outcome: *j.Outcome, Reason: *j.Reason, RequestID: *j.RequestID, PrevHash: *j.PrevHash, Hash: *j.Hash,
	}
	if r.Seq < 1 {
		return store.AuditRecord{}, fmt.Errorf("seq %d: want 1 or more", r.Seq)
	}
	if !isHash(r.Hash) || !isHash(r.PrevHash) {
		return store.AuditRecord{}, errors.New("hash and prev_hash must be 64 lowercase hex digits")
	}
	t, err := parseTime(*j.Time)
	if err != nil {
		return store.AuditRecord{}, err
	}
	r.Time = t
	return r, nil
}

// CEF severities (0 to 10) by outcome: refusals and errors rank above
// routine success.
const (
	severitySuccess = 3
	severityError   = 6
	severityDenied  = 7
	severityUnknown = 5
)

func severity(outcome string) int {
	switch outcome {
	case OutcomeSuccess:
		return severitySuccess
	case OutcomeError:
		return severityError
	case OutcomeDenied:
		return severityDenied
	default:
		return severityUnknown
	}
}

// AppendCEF appends r as one ArcSight Common Event Format line, newline
// included, for version (the trustmesh version, the header's Device
// Version):
//
//	CEF:0|trustmesh|trustmesh|VERSION|ACTION|ACTION|SEVERITY|rt=… externalId=SEQ suser=… act=… outcome=… cs1Label=object cs1=… …
//
// Header fields escape '\' and '|' with a backslash; CEF allows no line
// break there, so CR and LF become spaces. Extension values escape '\' and
// '=' with a backslash and write CR and LF as \r and \n. Empty values are
// left out with their labels. rt is milliseconds since the Unix epoch.
func AppendCEF(dst []byte, version string, r store.AuditRecord) []byte {
	dst = append(dst, "CEF:0|trustmesh|trustmesh|"...)
	dst = appendCEFHeader(dst, version)
	dst = append(dst, '|')
	dst = appendCEFHeader(dst, r.Action)
	dst = append(dst, '|')
	dst = appendCEFHeader(dst, r.Action)
	dst = append(dst, '|')
	dst = strconv.AppendInt(dst, int64(severity(r.Outcome)), 10)
	dst = append(dst, "|rt="...)
	dst = strconv.AppendInt(dst, r.Time.UnixMilli(), 10)
	dst = append(dst, " externalId="...)
	dst = strconv.AppendInt(dst, r.Seq, 10)
	ext := func(key, value string) {
		if value == "" {
			return
		}
		dst = append(dst, ' ')
		dst = append(dst, key...)
		dst = append(dst, '=')
		dst = appendCEFValue(dst, value)
	}
	labeled := func(n, label, value string) {
		if value == "" {
			return
		}
		ext(n+"Label", label)
		ext(n, value)
	}
	ext("suser", r.Actor)
	ext("act", r.Action)
	ext("outcome", r.Outcome)
	labeled("cs1", "object", r.Object)
	labeled("cs2", "reason", r.Reason)
	labeled("cs3", "requestId", r.RequestID)
	labeled("cs4", "hash", r.Hash)
	labeled("cs5", "prevHash", r.PrevHash)
	if r.Revision != 0 {
		labeled("cn1", "revision", strconv.FormatInt(r.Revision, 10))
	}
	return append(dst, '\n')
}

var (
	cefHeaderEscaper = strings.NewReplacer(`\`, `\\`, `|`, `\|`, "\r", " ", "\n", " ")
	cefValueEscaper  = strings.NewReplacer(`\`, `\\`, `=`, `\=`, "\r", `\r`, "\n", `\n`)
)

func appendCEFHeader(dst []byte, s string) []byte {
	return append(dst, cefHeaderEscaper.Replace(s)...)
}

func appendCEFValue(dst []byte, s string) []byte {
	return append(dst, cefValueEscaper.Replace(s)...)
}

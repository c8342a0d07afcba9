package audit

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/trustmesh/trustmesh/internal/store"
	"github.com/trustmesh/trustmesh/internal/store/auditchain"
)

// DefaultVerifyPageSize is how many records Verify reads at a time.
const DefaultVerifyPageSize = 10_000

// RecordLister pages through an audit log: a store, a store file opened
// for reading, or the admin API.
type RecordLister interface {
	ListAudit(ctx context.Context, after int64, limit int) ([]store.AuditRecord, error)
}

// CheckpointFile is one copy of a checkpoint file.
type CheckpointFile struct {
	// Name names the file in findings, e.g. "checkpoints.jsonl".
	Name string
	Data io.Reader
}

// VerifyConfig says what Verify checks.
type VerifyConfig struct {
	// Records is the log (required).
	Records RecordLister
	// PageSize is how many records to read at a time (default
	// DefaultVerifyPageSize).
	PageSize int
	// PublicKeys verify the checkpoints' signatures (required if there are
	// checkpoints).
	PublicKeys []ed25519.PublicKey
	// Stored are the checkpoints the store keeps, oldest first.
	Stored []store.AuditCheckpoint
	// StoredName names them in findings (default "the audit_checkpoints
	// table").
	StoredName string
	// Files are copies of the checkpoint file, each checked against Stored.
	Files []CheckpointFile
	// HighWater, if not 0, is the highest sequence number the store ever
	// assigned (sqlite.Store.AuditHighWater): a log that ends before it lost
	// records from its end.
	HighWater int64
}

// ProblemKind classifies a Problem.
type ProblemKind string

// What Verify can find.
const (
	// ProblemChanged: a record's content does not match its hash.
	ProblemChanged ProblemKind = "changed"
	// ProblemMissing: the sequence has a gap.
	ProblemMissing ProblemKind = "missing"
	// ProblemInserted: a record does not link to the one before it.
	ProblemInserted ProblemKind = "inserted"
	// ProblemReordered: a record's number is not above the one before it.
	ProblemReordered ProblemKind = "reordered"
	// ProblemRewritten: a checkpoint signs another hash than its record has.
	ProblemRewritten ProblemKind = "rewritten"
	// ProblemTruncated: records were removed from the end.
	ProblemTruncated ProblemKind = "truncated"
	// ProblemBadCheckpoint: a checkpoint is malformed or its signature fails.
	ProblemBadCheckpoint ProblemKind = "bad-checkpoint"
	// ProblemCheckpointMismatch: the stored checkpoints and a file disagree.
	ProblemCheckpointMismatch ProblemKind = "checkpoint-mismatch"
)

// Problem is the first thing Verify found wrong. Verify returns it as its
// error; any other error is a failure to read.
type Problem struct {
	Kind ProblemKind
	// Seq is the record or checkpoint the finding names.
	Seq     int64
	Message string
}

func (p *Problem) Error() string { return p.Message }

func problem(kind ProblemKind, seq int64, format string, args ...any) *Problem {
	return &Problem{Kind: kind, Seq: seq, Message: fmt.Sprintf(format, args...)}
}

// Report summarizes what Verify checked. After a Problem, it covers the
// records checked before it.
type Report struct {
	// Records is how many records were checked, ending at LastSeq (written
	// at LastTime).
	Records  int64
	LastSeq  int64
	LastTime time.Time
	// NativeFrom is the first record chained as it was written; records
	// before it were chained by an upgrade at ChainedAt.
	NativeFrom int64
	ChainedAt  time.Time
	// Checkpoints is how many distinct checkpoints were checked against
	// the records; LastCheckpoint is the newest.
	Checkpoints    int
	LastCheckpoint store.AuditCheckpoint
	// Notes are observations that are not tampering (an older copy of the
	// checkpoint file, records not yet signed).
	Notes []string
}

// String is the summary a person reads: the first line the verdict, then
// what it covers.
func (r Report) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s records, chain intact, %s verified", thousands(r.Records), plural(int64(r.Checkpoints), "checkpoint"))
	if r.Checkpoints > 0 {
		fmt.Fprintf(&b, ", last at seq %d (%s)", r.LastCheckpoint.Seq, r.LastCheckpoint.Time.UTC().Format(time.RFC3339))
	}
	b.WriteString("\n")
	switch {
	case r.Records == 0:
	case r.NativeFrom <= 1:
		b.WriteString("chain native from seq 1\n")
	default:
		fmt.Fprintf(&b, "chain native from seq %d: records 1 to %d were chained when the log was upgraded at %s; a change to them before then cannot be detected\n",
			r.NativeFrom, r.NativeFrom-1, r.ChainedAt.UTC().Format(time.RFC3339))
	}
	if unsigned := r.LastSeq - r.LastCheckpoint.Seq; r.Records > 0 && unsigned > 0 {
		if r.Checkpoints == 0 {
			fmt.Fprintf(&b, "no checkpoint covers the log yet: a rewrite of the whole log recomputing its hashes cannot be detected\n")
		} else {
			fmt.Fprintf(&b, "%s after seq %d not yet covered by a checkpoint\n", plural(unsigned, "record"), r.LastCheckpoint.Seq)
		}
	}
	for _, n := range r.Notes {
		b.WriteString(n + "\n")
	}
	return strings.TrimSuffix(b.String(), "\n")
}

// Verify checks the checkpoints (signatures, and the stored ones against
// every file) and then walks the log from its first record, checking each
// record's number, its link to the record before and its hash, and each
// checkpoint against the record it signs. It returns a *Problem naming the
// first record or checkpoint that does not check out.
func Verify(ctx context.Context, cfg VerifyConfig) (Report, error) {
	if cfg.Records == nil {
		return Report{}, errors.New("verify: no records")
	}
	if cfg.PageSize <= 0 {
		cfg.PageSize = DefaultVerifyPageSize
	}
	if cfg.StoredName == "" {
		cfg.StoredName = "the audit_checkpoints table"
	}
	var rep Report
	cps, err := checkCheckpoints(cfg, &rep)
	if err != nil {
		return rep, err
	}
	err = walk(ctx, cfg, cps, &rep)
	return rep, err
}

// checkCheckpoints verifies every checkpoint's signature, cross-checks the
// files against the stored ones and returns the stored ones, by seq: a
// file's checkpoint that is not among them is a finding, so they are all
// there are.
func checkCheckpoints(cfg VerifyConfig, rep *Report) ([]store.AuditCheckpoint, error) {
	stored := make(map[int64]store.AuditCheckpoint, len(cfg.Stored))
	var prev int64
	for _, c := range cfg.Stored {
		if c.Seq <= prev {
			return nil, problem(ProblemBadCheckpoint, c.Seq, "checkpoint at %d in %s follows checkpoint at %d: checkpoints out of order", c.Seq, cfg.StoredName, prev)
		}
		prev = c.Seq
		if err := VerifyCheckpoint(c, cfg.PublicKeys); err != nil {
			return nil, problem(ProblemBadCheckpoint, c.Seq, "checkpoint at %d in %s does not verify: %v: it was altered or forged", c.Seq, cfg.StoredName, err)
		}
		stored[c.Seq] = c
	}
	all := slices.Clone(cfg.Stored)
	if len(cfg.Files) == 0 && len(cfg.Stored) > 0 {
		rep.Notes = append(rep.Notes, "no checkpoint file given: checkpoints were checked only from "+cfg.StoredName)
	}
	for _, f := range cfg.Files {
		fcs, err := ReadCheckpoints(f.Data)
		if le := (*lineError)(nil); errors.As(err, &le) {
			return nil, problem(ProblemBadCheckpoint, 0, "%s line %d is not a checkpoint (%v): the file was altered", f.Name, le.line, le.err)
		} else if err != nil {
			return nil, fmt.Errorf("read %s: %w", f.Name, err)
		}
		var prev int64
		inFile := make(map[int64]bool, len(fcs))
		for _, fc := range fcs {
			c := fc.AuditCheckpoint
			if c.Seq <= prev {
				return nil, problem(ProblemBadCheckpoint, c.Seq, "%s line %d: checkpoint at %d follows checkpoint at %d: lines were reordered or duplicated", f.Name, fc.Line, c.Seq, prev)
			}
			prev = c.Seq
			inFile[c.Seq] = true
			s, ok := stored[c.Seq]
			if ok && sameCheckpoint(s, c) {
				continue // verified above
			}
			if err := VerifyCheckpoint(c, cfg.PublicKeys); err != nil {
				return nil, problem(ProblemBadCheckpoint, c.Seq, "checkpoint at %d in %s line %d does not verify: %v: the line was altered or forged", c.Seq, f.Name, fc.Line, err)
			}
			if ok {
				return nil, problem(ProblemCheckpointMismatch, c.Seq, "checkpoint at %d differs between %s line %d and %s", c.Seq, f.Name, fc.Line, cfg.StoredName)
			}
			return nil, problem(ProblemCheckpointMismatch, c.Seq, "checkpoint at %d is in %s line %d but not in %s: checkpoints were removed from the store", c.Seq, f.Name, fc.Line, cfg.StoredName)
		}
		if len(fcs) == 0 {
			if len(cfg.Stored) > 0 {
				rep.Notes = append(rep.Notes, fmt.Sprintf("%s holds no checkpoints; %s only in %s", f.Name, plural(int64(len(cfg.Stored)), "checkpoint is", "checkpoints are"), cfg.StoredName))
			}
			continue
		}
		first, last := fcs[0].Seq, fcs[len(fcs)-1].Seq
		var before, after int64
		for _, c := range cfg.Stored {
			switch {
			case c.Seq < first:
				before++
			case c.Seq > last:
				after++
			case !inFile[c.Seq]:
				return nil, problem(ProblemCheckpointMismatch, c.Seq, "checkpoint at %d is in %s but not in %s, which covers seq %d to %d: lines were removed from the file",
					c.Seq, cfg.StoredName, f.Name, first, last)
			}
		}
		if before > 0 {
			rep.Notes = append(rep.Notes, fmt.Sprintf("%s starts at seq %d; %s before it only in %s", f.Name, first, plural(before, "checkpoint is", "checkpoints are"), cfg.StoredName))
		}
		if after > 0 {
			rep.Notes = append(rep.Notes, fmt.Sprintf("%s ends at seq %d; %s after it only in %s (an older copy, or appends pending)", f.Name, last, plural(after, "checkpoint is", "checkpoints are"), cfg.StoredName))
		}
	}
	return all, nil
}

func sameCheckpoint(a, b store.AuditCheckpoint) bool {
	return a.Seq == b.Seq && a.Hash == b.Hash && a.Time.Equal(b.Time) && a.KeyID == b.KeyID && string(a.Signature) == string(b.Signature)
}

// walk checks the records page by page against each other and cps.
func walk(ctx context.Context, cfg VerifyConfig, cps []store.AuditCheckpoint, rep *Report) error {
	var (
		h            auditchain.Hasher
		prevSeq      int64
		prevHash     = auditchain.Genesis
		prevPrevHash string
		next         int // index of the next checkpoint to meet
	)
	rep.NativeFrom = 1
	for {
		page, err := cfg.Records.ListAudit(ctx, prevSeq, cfg.PageSize)
		if err != nil {
			return fmt.Errorf("read audit records after %d: %w", prevSeq, err)
		}
		if len(page) == 0 {
			break
		}
		for _, r := range page {
			switch {
			case r.Seq <= prevSeq:
				return problem(ProblemReordered, r.Seq, "record %d appears after record %d: records were reordered or duplicated", r.Seq, prevSeq)
			case r.Seq == prevSeq+2:
				return problem(ProblemMissing, prevSeq+1, "record %d is missing: sequence jumps from %d to %d", prevSeq+1, prevSeq, r.Seq)
			case r.Seq > prevSeq+2:
				return problem(ProblemMissing, prevSeq+1, "records %d to %d are missing: sequence jumps from %d to %d", prevSeq+1, r.Seq-1, prevSeq, r.Seq)
			}
			if r.PrevHash != prevHash {
				switch {
				case prevSeq == 0:
					return problem(ProblemInserted, r.Seq, "record %d was inserted or reordered: its previous-hash is not the start of the log", r.Seq)
				case prevSeq >= 2 && r.PrevHash == prevPrevHash:
					return problem(ProblemInserted, prevSeq, "record %d was inserted: record %d links to record %d", prevSeq, r.Seq, prevSeq-1)
				default:
					return problem(ProblemInserted, r.Seq, "record %d was inserted or reordered: its previous-hash does not match record %d", r.Seq, prevSeq)
				}
			}
			if !h.Matches(r) {
				return problem(ProblemChanged, r.Seq, "record %d was changed: its hash does not match its content", r.Seq)
			}
			for next < len(cps) && cps[next].Seq < r.Seq {
				next++ // before the log's start: reported as missing records above
			}
			if next < len(cps) && cps[next].Seq == r.Seq {
				c := cps[next]
				if c.Hash != r.Hash {
					return problem(ProblemRewritten, r.Seq, "checkpoint at %d signs head hash %s but record %d hashes to %s: records up to %d were rewritten",
						c.Seq, c.Hash, r.Seq, r.Hash, r.Seq)
				}
				rep.Checkpoints++
				rep.LastCheckpoint = c
				next++
			}
			if r.Action == auditchain.ActionChainStart && r.Actor == auditchain.ChainStartActor {
				rep.NativeFrom, rep.ChainedAt = r.Seq, r.Time
			}
			prevPrevHash, prevHash, prevSeq = prevHash, r.Hash, r.Seq
			rep.Records++
			rep.LastSeq, rep.LastTime = r.Seq, r.Time
		}
		if err := ctx.Err(); err != nil {
			return err
		}
	}
	if len(cps) > 0 && cps[len(cps)-1].Seq > prevSeq {
		c := cps[len(cps)-1]
		if prevSeq == 0 {
			return problem(ProblemTruncated, c.Seq, "the log is empty but checkpoint %d exists: records were removed", c.Seq)
		}
		return problem(ProblemTruncated, prevSeq+1, "the log ends at %d but checkpoint %d exists: records were removed from the end", prevSeq, c.Seq)
	}
	if cfg.HighWater > prevSeq {
		return problem(ProblemTruncated, prevSeq+1, "the log ends at %d but the store assigned sequence numbers up to %d: records %d to %d were removed from the end",
			prevSeq, cfg.HighWater, prevSeq+1, cfg.HighWater)
	}
	return nil
}

// thousands formats n with comma separators: 1,234,567.
func thousands(n int64) string {
	s := strconv.FormatInt(n, 10)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	if neg {
		b.WriteByte('-')
	}
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}

// plural formats n with its noun: forms are singular and, optionally,
// plural (default singular + "s").
func plural(n int64, forms ...string) string {
	word := forms[0]
	if n != 1 {
		if len(forms) > 1 {
			word = forms[1]
		} else {
			word += "s"
		}
	}
	return thousands(n) + " " + word
}

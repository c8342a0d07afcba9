package cli

import (
	"bufio"
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/trustmesh/trustmesh/internal/audit"
	"github.com/trustmesh/trustmesh/internal/server/adminapi"
	"github.com/trustmesh/trustmesh/internal/store"
	"github.com/trustmesh/trustmesh/internal/store/sqlite"
)

// auditPage is how many records one admin API call reads (the server's
// maximum).
const auditPage = 10_000

// exitTampered is verify's exit status when it finds tampering (1 is left
// for "could not verify").
const exitTampered = 2

func newAuditCmd(s *streams) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "audit",
		Short: "Read, verify and export the hash-chained audit log",
		Example: `  trustmesh audit tail -n 50 --data-dir ./data
  trustmesh audit verify --data-dir ./data
  trustmesh audit export --format cef --since 24h --data-dir ./data`,
	}
	cmd.AddCommand(newAuditTailCmd(s), newAuditVerifyCmd(s), newAuditExportCmd(s))
	return cmd
}

func newAuditTailCmd(s *streams) *cobra.Command {
	var (
		cf     clientFlags
		out    outputFlag
		n      int
		follow bool
	)
	tail := &cobra.Command{
		Use:   "tail [-n N] [-f]",
		Short: "Show the latest audit records; -f keeps watching",
		Example: `  trustmesh audit tail --data-dir ./data
  trustmesh audit tail -f -o json --credentials ./auditor-credentials`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := cf.client()
			if err != nil {
				return err
			}
			// Page through from the start, keeping the last n.
			var recs []adminapi.AuditRecord
			var after int64
			for {
				page, err := auditPageAfter(cmd.Context(), c, after, auditPage)
				if err != nil {
					return err
				}
				recs = append(recs, page...)
				if len(recs) > n {
					recs = recs[len(recs)-n:]
				}
				if len(page) == 0 {
					break
				}
				after = page[len(page)-1].Seq
			}
			printAudit(s.out, out.format, recs)
			for follow {
				select {
				case <-cmd.Context().Done():
					return nil
				case <-time.After(time.Second):
				}
				page, err := auditPageAfter(cmd.Context(), c, after, auditPage)
				if err != nil {
					if cmd.Context().Err() != nil {
						return nil
					}
					return err
				}
				if len(page) > 0 {
					after = page[len(page)-1].Seq
					printAudit(s.out, out.format, page)
				}
			}
			return nil
		},
	}
	tail.Flags().IntVarP(&n, "lines", "n", 20, "how many of the latest records to show")
	tail.Flags().BoolVarP(&follow, "follow", "f", false, "keep printing new records as they are written")
	out.register(tail, "table", "table", "json")
	cf.register(tail)
	return tail
}

func auditPageAfter(ctx context.Context, c *adminapi.Client, after int64, limit int) ([]adminapi.AuditRecord, error) {
	var page adminapi.AuditResponse
	q := url.Values{"after": {strconv.FormatInt(after, 10)}, "limit": {strconv.Itoa(limit)}}
	if err := c.Do(ctx, http.MethodGet, adminapi.PathAudit, q, nil, &page); err != nil {
		return nil, err
	}
	return page.Items, nil
}

func printAudit(w io.Writer, format string, recs []adminapi.AuditRecord) {
	if format == "json" {
		for _, r := range recs {
			_ = printStructuredLine(w, r)
		}
		return
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for _, r := range recs {
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\n", r.Seq, r.Time.Local().Format(time.RFC3339), r.Outcome, r.Action, r.Actor, orDash(r.Object), r.Reason)
	}
	_ = tw.Flush()
}

// apiAuditLog reads the log through the admin API.
type apiAuditLog struct{ c *adminapi.Client }

func (a apiAuditLog) ListAudit(ctx context.Context, after int64, limit int) ([]store.AuditRecord, error) {
	if limit <= 0 || limit > auditPage {
		limit = auditPage
	}
	page, err := auditPageAfter(ctx, a.c, after, limit)
	if err != nil {
		return nil, err
	}
	recs := make([]store.AuditRecord, len(page))
	for i, r := range page {
		recs[i] = store.AuditRecord{Seq: r.Seq, Time: r.Time.UTC(), Actor: r.Actor, Action: r.Action, Object: r.Object, Revision: r.Revision,
			Outcome: r.Outcome, Reason: r.Reason, RequestID: r.RequestID, PrevHash: r.PrevHash, Hash: r.Hash}
	}
	return recs, nil
}

// auditSourceFlags choose where audit records come from: the admin API
// (clientFlags) or, with --db, a store file read directly.
type auditSourceFlags struct {
	cf clientFlags
	db string
}

func (f *auditSourceFlags) register(cmd *cobra.Command) {
	f.cf.register(cmd)
	cmd.Flags().StringVar(&f.db, "db", "", "read a store file directly (DATA_DIR/trustmesh.db, or a copy) instead of asking the server")
}

func (f *auditSourceFlags) offline() (bool, error) {
	if f.db == "" {
		return false, nil
	}
	if f.cf.server != "" || f.cf.credentials != "" || f.cf.dataDir != "" {
		return false, errors.New("--db reads a store file without the server: leave out --data-dir, --server and --credentials")
	}
	return true, nil
}

// open returns the record source, the API client if it is the server, and
// what releases the source.
func (f *auditSourceFlags) open(ctx context.Context) (audit.RecordLister, *adminapi.Client, io.Closer, error) {
	offline, err := f.offline()
	if err != nil {
		return nil, nil, nil, err
	}
	if offline {
		r, err := sqlite.OpenAuditReader(ctx, f.db)
		if err != nil {
			return nil, nil, nil, err
		}
		return r, nil, r, nil
	}
	c, err := f.cf.client()
	if err != nil {
		return nil, nil, nil, err
	}
	return apiAuditLog{c}, c, io.NopCloser(nil), nil
}

func newAuditVerifyCmd(s *streams) *cobra.Command {
	var (
		src         auditSourceFlags
		checkpoints []string
		publicKeys  []string
	)
	cmd := &cobra.Command{
		Use:   "verify",
		Short: "Check the audit log's hash chain and signed checkpoints; name the first record tampered with",
		Long: `Verify walks the audit log from its first record and checks that each
record's hash matches its content, that it links to the record before it,
that no sequence number is missing, and that every signed checkpoint matches
the record it signs. It checks the checkpoints kept in the store against the
checkpoint file, which the server keeps apart from the store.

Against a running server (--data-dir or --credentials, role admin or auditor)
it reads everything through the admin API; --public-key pins the key instead
of trusting the one the server sends, and --checkpoints adds a copy of the
checkpoint file kept elsewhere. With --db it reads a store file directly, so
an auditor can check a copy of the data dir without the server; the
checkpoint file and public key default to DB_DIR/audit/.

Exit status: 0 when the log is intact, 2 when it was tampered with (the first
problem is named), 1 when it could not be verified.`,
		Example: `  trustmesh audit verify --data-dir ./data
  trustmesh audit verify --credentials ./auditor --public-key ./pinned-checkpoint.pub --checkpoints /mnt/siem/checkpoints.jsonl
  trustmesh audit verify --db copy/trustmesh.db --checkpoints copy/audit/checkpoints.jsonl --public-key copy/audit/checkpoint.pub`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			records, client, source, err := src.open(ctx)
			if err != nil {
				return err
			}
			defer source.Close()
			cfg := audit.VerifyConfig{Records: records, PageSize: auditPage}
			var notes []string
			if reader, ok := records.(*sqlite.AuditReader); ok {
				err = offlineVerifyConfig(ctx, &cfg, reader, src.db, &checkpoints, &publicKeys)
			} else {
				notes, err = apiVerifyConfig(ctx, &cfg, client)
			}
			if err != nil {
				return err
			}
			if len(publicKeys) > 0 {
				if cfg.PublicKeys, err = readPublicKeyFiles(publicKeys); err != nil {
					return err
				}
			} else if client != nil && len(cfg.PublicKeys) > 0 {
				notes = append(notes, fmt.Sprintf("signatures checked with the public key the server sent (key id %s); pin a copy with --public-key to trust the server less",
					audit.KeyID(cfg.PublicKeys[0])))
			}
			var files []*os.File
			defer func() {
				for _, f := range files {
					f.Close()
				}
			}()
			for _, path := range checkpoints {
				f, err := os.Open(path)
				if err != nil {
					return fmt.Errorf("--checkpoints: %w", err)
				}
				files = append(files, f)
				cfg.Files = append(cfg.Files, audit.CheckpointFile{Name: path, Data: f})
			}
			rep, err := audit.Verify(ctx, cfg)
			if p := (*audit.Problem)(nil); errors.As(err, &p) {
				fmt.Fprintf(s.err, "audit log verification FAILED: %s\n", p.Message)
				fmt.Fprintf(s.err, "(%d records checked before it)\n", rep.Records)
				return ExitError{Code: exitTampered}
			}
			if err != nil {
				return fmt.Errorf("verify the audit log: %w", err)
			}
			_, err = fmt.Fprintln(s.out, rep.String())
			for _, n := range notes {
				fmt.Fprintln(s.out, n)
			}
			return err
		},
	}
	src.register(cmd)
	cmd.Flags().StringArrayVar(&checkpoints, "checkpoints", nil, "a checkpoint file (checkpoints.jsonl) to check the stored checkpoints against; repeatable (with --db default DB_DIR/audit/checkpoints.jsonl)")
	cmd.Flags().StringArrayVar(&publicKeys, "public-key", nil, "checkpoint public key PEM file (checkpoint.pub) to verify signatures with; repeatable (with --db default DB_DIR/audit/checkpoint.pub; else the server's)")
	return cmd
}

// offlineVerifyConfig fills cfg from a store file and the files beside it.
func offlineVerifyConfig(ctx context.Context, cfg *audit.VerifyConfig, r *sqlite.AuditReader, db string, checkpoints, publicKeys *[]string) error {
	dir := filepath.Join(filepath.Dir(db), "audit")
	if len(*publicKeys) == 0 {
		path := filepath.Join(dir, audit.PublicKeyFile)
		if _, err := os.Stat(path); err != nil {
			return fmt.Errorf("no checkpoint public key at %s: pass --public-key FILE (the server's DATA_DIR/audit/%s)", path, audit.PublicKeyFile)
		}
		*publicKeys = []string{path}
	}
	if len(*checkpoints) == 0 {
		path := filepath.Join(dir, audit.CheckpointsFile)
		if _, err := os.Stat(path); err == nil {
			*checkpoints = []string{path}
		}
	}
	for after := int64(0); ; {
		cps, err := r.ListAuditCheckpoints(ctx, after, auditPage)
		if err != nil {
			return err
		}
		cfg.Stored = append(cfg.Stored, cps...)
		if len(cps) < auditPage {
			break
		}
		after = cps[len(cps)-1].Seq
	}
	hw, err := r.AuditHighWater(ctx)
	if err != nil {
		return err
	}
	cfg.HighWater = hw
	return nil
}

// apiVerifyConfig fills cfg from the server's checkpoint endpoint: its
// stored checkpoints, its checkpoint file and its public key.
func apiVerifyConfig(ctx context.Context, cfg *audit.VerifyConfig, c *adminapi.Client) (notes []string, err error) {
	var resp adminapi.AuditCheckpointsResponse
	if err := c.Do(ctx, http.MethodGet, adminapi.PathAuditCheckpoints, nil, nil, &resp); err != nil {
		return nil, err
	}
	keys, err := audit.ParsePublicKeys([]byte(resp.PublicKeyPEM))
	if err != nil {
		return nil, fmt.Errorf("the server's checkpoint public key: %w", err)
	}
	cfg.PublicKeys = keys
	for _, cp := range resp.Stored {
		cfg.Stored = append(cfg.Stored, store.AuditCheckpoint{Seq: cp.Seq, Hash: cp.Hash, Time: cp.Time.UTC(), KeyID: cp.KeyID, Signature: cp.Signature})
	}
	if resp.FileError == "" {
		cfg.Files = append(cfg.Files, audit.CheckpointFile{Name: "the server's " + resp.FileName, Data: strings.NewReader(resp.File)})
	} else {
		notes = append(notes, resp.FileError)
	}
	cfg.HighWater = resp.HighWater
	return notes, nil
}

func readPublicKeyFiles(paths []string) ([]ed25519.PublicKey, error) {
	var keys []ed25519.PublicKey
	for _, p := range paths {
		k, err := audit.ReadPublicKeys(p)
		if err != nil {
			return nil, fmt.Errorf("--public-key: %w", err)
		}
		keys = append(keys, k...)
	}
	return keys, nil
}

func newAuditExportCmd(s *streams) *cobra.Command {
	var (
		src    auditSourceFlags
		format string
		since  string
	)
	cmd := &cobra.Command{
		Use:   "export [--format jsonl|cef] [--since T]",
		Short: "Write audit records to stdout for a SIEM, as JSONL or CEF",
		Long: `Export writes audit records, oldest first, one per line to stdout.

jsonl: every field, including seq, hash and prev_hash, with the keys and
encoding of the record hash, so each line can be re-verified on its own (see
the audit package documentation). cef: ArcSight Common Event Format,
CEF:0|trustmesh|trustmesh|VERSION|ACTION|ACTION|SEVERITY|rt=... suser=...
act=... outcome=... cs1Label=object cs1=... cs2Label=reason cs2=...; severity
3 for success, 6 for error, 7 for denied.

--since keeps records written at or after T: an RFC 3339 time, or a duration
before now such as 24h, 90m or 7d.`,
		Example: `  trustmesh audit export --data-dir ./data > audit.jsonl
  trustmesh audit export --format cef --since 24h --credentials ./auditor | nc siem.example 514
  trustmesh audit export --since 2026-12-01T00:00:00Z --db copy/trustmesh.db`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var encode func([]byte, store.AuditRecord) []byte
			switch format {
			case "jsonl":
				encode = audit.AppendJSONL
			case "cef":
				version := buildVersion()
				encode = func(b []byte, r store.AuditRecord) []byte { return audit.AppendCEF(b, version, r) }
			default:
				return fmt.Errorf("--format %q: want jsonl or cef", format)
			}
			var from time.Time
			if since != "" {
				var err error
				if from, err = parseSince(since, time.Now()); err != nil {
					return err
				}
			}
			records, _, source, err := src.open(cmd.Context())
			if err != nil {
				return err
			}
			defer source.Close()
			w := bufio.NewWriterSize(s.out, 64<<10)
			var line []byte
			for after := int64(0); ; {
				page, err := records.ListAudit(cmd.Context(), after, auditPage)
				if err != nil {
					return err
				}
				if len(page) == 0 {
					break
				}
				for _, r := range page {
					if r.Time.Before(from) {
						continue
					}
					line = encode(line[:0], r)
					if _, err := w.Write(line); err != nil {
						return err
					}
				}
				after = page[len(page)-1].Seq
			}
			return w.Flush()
		},
	}
	src.register(cmd)
	cmd.Flags().StringVar(&format, "format", "jsonl", "output format: jsonl or cef")
	cmd.Flags().StringVar(&since, "since", "", "only records at or after T: RFC 3339 (2026-12-01T00:00:00Z) or a duration before now (24h, 7d)")
	return cmd
}

// parseSince reads --since: an RFC 3339 time or a duration before now (Go
// syntax, plus whole days as "7d").
func parseSince(v string, now time.Time) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339Nano, v); err == nil {
		return t, nil
	}
	if days, ok := strings.CutSuffix(v, "d"); ok {
		if n, err := strconv.Atoi(days); err == nil && n >= 0 {
			return now.AddDate(0, 0, -n), nil
		}
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < 0 {
		return time.Time{}, fmt.Errorf("--since %q: want an RFC 3339 time (2026-12-01T00:00:00Z) or a duration such as 24h or 7d", v)
	}
	return now.Add(-d), nil
}

package cli

import (
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/trustmesh/trustmesh/internal/server/adminapi"
)

func newAuditCmd(s *streams) *cobra.Command {
	cmd := &cobra.Command{
		Use:     "audit",
		Short:   "Read the audit log",
		Example: `  trustmesh audit tail -n 50 --data-dir ./data`,
	}
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
				var page adminapi.AuditResponse
				q := url.Values{"after": {strconv.FormatInt(after, 10)}, "limit": {"10000"}}
				if err := c.Do(cmd.Context(), http.MethodGet, adminapi.PathAudit, q, nil, &page); err != nil {
					return err
				}
				recs = append(recs, page.Items...)
				if len(recs) > n {
					recs = recs[len(recs)-n:]
				}
				if len(page.Items) == 0 {
					break
				}
				after = page.Items[len(page.Items)-1].Seq
			}
			printAudit(s.out, out.format, recs)
			for follow {
				select {
				case <-cmd.Context().Done():
					return nil
				case <-time.After(time.Second):
				}
				var page adminapi.AuditResponse
				q := url.Values{"after": {strconv.FormatInt(after, 10)}}
				if err := c.Do(cmd.Context(), http.MethodGet, adminapi.PathAudit, q, nil, &page); err != nil {
					if cmd.Context().Err() != nil {
						return nil
					}
					return err
				}
				if len(page.Items) > 0 {
					after = page.Items[len(page.Items)-1].Seq
					printAudit(s.out, out.format, page.Items)
				}
			}
			return nil
		},
	}
	tail.Flags().IntVarP(&n, "lines", "n", 20, "how many of the latest records to show")
	tail.Flags().BoolVarP(&follow, "follow", "f", false, "keep printing new records as they are written")
	out.register(tail, "table", "table", "json")
	cf.register(tail)
	cmd.AddCommand(tail)
	return cmd
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

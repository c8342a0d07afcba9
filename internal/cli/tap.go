package cli

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/trustmesh/trustmesh/internal/server/adminapi"
)

func newTapCmd(s *streams) *cobra.Command {
	var (
		cf       clientFlags
		to, from string
		denied   bool
		out      outputFlag
	)
	cmd := &cobra.Command{
		Use:   "tap [--to SERVICE] [--from SPIFFE_ID] [--denied]",
		Short: "Watch live requests through the mesh, as the destination proxies see them",
		Long: `Stream a summary of every request the mesh's inbound proxies handle: when,
from which SPIFFE ID to which, the method, normalized path, status, duration and
the authorization decision with its reason. Proxies only send summaries while a
tap runs. Filters: --to a Service NAME[.NAMESPACE] (or a destination SPIFFE ID),
--from a caller's SPIFFE ID, --denied for denied requests only. Needs the
auditor or admin role. Ctrl-C stops it; a slow terminal loses summaries rather
than slowing the mesh (the count is printed).`,
		Example: `  trustmesh tap --data-dir ./data
  trustmesh tap --to orders.shop --denied --credentials ./auditor-credentials
  trustmesh tap --from spiffe://example.org/ns/shop/sa/frontend -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if from != "" && !strings.HasPrefix(from, "spiffe://") {
				return fmt.Errorf("--from %q: want a SPIFFE ID such as spiffe://example.org/ns/shop/sa/frontend", from)
			}
			c, err := cf.client()
			if err != nil {
				return err
			}
			q := url.Values{}
			if to != "" {
				q.Set("to", to)
			}
			if from != "" {
				q.Set("from", from)
			}
			if denied {
				q.Set("denied", "true")
			}
			body, err := c.Stream(cmd.Context(), adminapi.PathTap, q)
			if err != nil {
				return err
			}
			defer body.Close()
			if err := printTap(s.out, s.err, body, out.format); err != nil && cmd.Context().Err() == nil {
				return err
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&to, "to", "", "only requests to this Service NAME[.NAMESPACE] or destination SPIFFE ID")
	cmd.Flags().StringVar(&from, "from", "", "only requests from this SPIFFE ID")
	cmd.Flags().BoolVar(&denied, "denied", false, "only denied requests")
	out.register(cmd, "text", "text", "json")
	cf.register(cmd)
	return cmd
}

// printTap prints tap events until the stream ends.
func printTap(w, errW io.Writer, r io.Reader, format string) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	var lastDropped uint64
	for sc.Scan() {
		var ev adminapi.TapEvent
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			return fmt.Errorf("decode tap stream: %w", err)
		}
		if ev.Heartbeat {
			if ev.Dropped > lastDropped {
				fmt.Fprintf(errW, "tap: %d summaries dropped so far (the reader or a proxy was too slow)\n", ev.Dropped)
				lastDropped = ev.Dropped
			}
			continue
		}
		if format == "json" {
			if err := printStructuredLine(w, ev); err != nil {
				return err
			}
			continue
		}
		src := ev.Source
		if src == "" {
			src = "(plaintext)"
		}
		what := ev.Protocol
		if ev.Method != "" {
			what = ev.Method + " " + ev.Path
		}
		line := fmt.Sprintf("%s  %s -> %s  %s", ev.Time.Local().Format(time.TimeOnly+".000"), src, orDashS(ev.Destination), what)
		if ev.Status != 0 {
			line += fmt.Sprintf("  %d", ev.Status)
		}
		line += fmt.Sprintf("  %.1fms  %s", ev.DurationMillis, ev.Decision)
		if ev.Reason != "" {
			line += " (" + ev.Reason + ")"
		}
		fmt.Fprintln(w, line)
	}
	if err := sc.Err(); err != nil && !errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("tap stream: %w", err)
	}
	return nil
}

func orDashS(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

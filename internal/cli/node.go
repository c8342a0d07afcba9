package cli

import (
	"fmt"
	"net/http"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/trustmesh/trustmesh/internal/server/adminapi"
)

func newNodeCmd(s *streams) *cobra.Command {
	cmd := &cobra.Command{
		Use:     "node",
		Short:   "Show attested node agents",
		Example: "  trustmesh node list --data-dir ./data",
	}
	var (
		cf  clientFlags
		out outputFlag
	)
	list := &cobra.Command{
		Use:     "list",
		Short:   "List the nodes that have attested, with their current node SVID",
		Example: "  trustmesh node list --data-dir ./data -o json",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := cf.client()
			if err != nil {
				return err
			}
			var resp adminapi.NodesResponse
			if err := c.Do(cmd.Context(), http.MethodGet, adminapi.PathNodes, nil, nil, &resp); err != nil {
				return err
			}
			if out.format == "json" {
				return printStructured(s.out, "json", resp.Items)
			}
			if len(resp.Items) == 0 {
				fmt.Fprintln(s.out, "no nodes have attested yet (see `trustmesh token create`)")
				return nil
			}
			tw := tabwriter.NewWriter(s.out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tSPIFFE ID\tLAST ATTESTED\tSVID EXPIRES")
			for _, n := range resp.Items {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", n.Name, n.SPIFFEID, n.AttestedAt.Local().Format(time.RFC3339), n.ExpiresAt.Local().Format(time.RFC3339))
			}
			return tw.Flush()
		},
	}
	out.register(list, "table", "table", "json")
	cf.register(list)
	cmd.AddCommand(list)
	return cmd
}

func newCertRevocationsCmd(s *streams) *cobra.Command {
	var (
		cf  clientFlags
		out outputFlag
	)
	cmd := &cobra.Command{
		Use:     "revocations",
		Short:   "List the revocation list agents enforce",
		Example: "  trustmesh cert revocations --data-dir ./data",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := cf.client()
			if err != nil {
				return err
			}
			var resp adminapi.RevocationsResponse
			if err := c.Do(cmd.Context(), http.MethodGet, adminapi.PathRevocations, nil, nil, &resp); err != nil {
				return err
			}
			if out.format == "json" {
				return printStructured(s.out, "json", resp.Items)
			}
			tw := tabwriter.NewWriter(s.out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "REVOKED\tWHAT\tBY\tREASON")
			for _, r := range resp.Items {
				what := "serial " + r.Serial
				if r.SPIFFEID != "" {
					what = r.SPIFFEID + " (issued until then)"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", r.RevokedAt.Local().Format(time.RFC3339), what, r.Actor, orDash(r.Reason))
			}
			return tw.Flush()
		},
	}
	out.register(cmd, "table", "table", "json")
	cf.register(cmd)
	return cmd
}

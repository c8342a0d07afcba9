package cli

import (
	"fmt"
	"io"
	"net/http"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/trustmesh/trustmesh/internal/server/adminapi"
)

func newCACmd(s *streams) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "ca",
		Short: "Show and rotate the certificate authority",
		Example: `  trustmesh ca status --data-dir ./data
  trustmesh ca rotate --data-dir ./data`,
	}
	var (
		cf  clientFlags
		out outputFlag
	)
	status := &cobra.Command{
		Use:     "status",
		Short:   "List the CA authorities: prepared, active and retired",
		Example: "  trustmesh ca status --data-dir ./data",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := cf.client()
			if err != nil {
				return err
			}
			var st adminapi.CAStatus
			if err := c.Do(cmd.Context(), http.MethodGet, adminapi.PathCA, nil, nil, &st); err != nil {
				return err
			}
			return printCA(s.out, out.format, st)
		},
	}
	out.register(status, "table", "table", "json")
	cf.register(status)

	var (
		rcf  clientFlags
		rout outputFlag
	)
	rotate := &cobra.Command{
		Use:   "rotate",
		Short: "Prepare a new CA key: published in the bundle now, signing after the propagation delay",
		Long: `Start a CA rotation. A new CA key is prepared and published in the trust bundle
at once (agents receive it within moments, workloads through the Workload
API). The server starts signing with it after --ca-propagation-delay (default
10m), so every peer trusts the new key before it sees a certificate signed by
it. The old key stays in the bundle until the last SVID it signed expires.`,
		Example: "  trustmesh ca rotate --data-dir ./data && trustmesh ca status --data-dir ./data",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := rcf.client()
			if err != nil {
				return err
			}
			var st adminapi.CAStatus
			if err := c.Do(cmd.Context(), http.MethodPost, adminapi.PathCARotate, nil, nil, &st); err != nil {
				return err
			}
			return printCA(s.out, rout.format, st)
		},
	}
	rout.register(rotate, "table", "table", "json")
	rcf.register(rotate)
	cmd.AddCommand(status, rotate)
	return cmd
}

func printCA(w io.Writer, format string, st adminapi.CAStatus) error {
	if format == "json" {
		return printStructured(w, "json", st)
	}
	fmt.Fprintf(w, "trust domain %s\n", st.TrustDomain)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tSTATE\tNOT AFTER\tNOTE")
	for _, a := range st.Authorities {
		note := ""
		switch {
		case !a.ActivatesAt.IsZero():
			note = "signs from " + a.ActivatesAt.Local().Format(time.RFC3339)
		case !a.RemoveAfter.IsZero():
			note = "leaves the bundle after " + a.RemoveAfter.Local().Format(time.RFC3339)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", a.ID, a.State, a.NotAfter.Local().Format(time.RFC3339), note)
	}
	return tw.Flush()
}

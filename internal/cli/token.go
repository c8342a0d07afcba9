package cli

import (
	"fmt"
	"net/http"
	"time"

	"github.com/spf13/cobra"

	"github.com/trustmesh/trustmesh/internal/server/adminapi"
)

func newTokenCmd(s *streams) *cobra.Command {
	cmd := &cobra.Command{
		Use:     "token",
		Short:   "Manage node join tokens",
		Example: `  trustmesh token create --node node-1 --ttl 10m --data-dir ./data`,
	}
	var (
		cf   clientFlags
		node string
		ttl  time.Duration
		out  outputFlag
	)
	create := &cobra.Command{
		Use:   "create --node NAME [--ttl 10m]",
		Short: "Print a single-use join token for a node agent",
		Long: `Print a single-use join token. An agent presenting it gets the node SVID
spiffe://TRUST_DOMAIN/trustmesh/node/NAME. The token is shown once; the server
keeps only its hash. Reused, expired or unknown tokens are refused and audited.`,
		Example: `  trustmesh token create --node node-1 --ttl 10m --data-dir ./data
  TOKEN=$(trustmesh token create --node node-1 --data-dir ./data)`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := cf.client()
			if err != nil {
				return err
			}
			var resp adminapi.TokenResponse
			if err := c.Do(cmd.Context(), http.MethodPost, adminapi.PathTokens, nil, adminapi.TokenRequest{Node: node, TTL: ttl}, &resp); err != nil {
				return err
			}
			if out.format == "json" {
				return printStructured(s.out, "json", resp)
			}
			fmt.Fprintln(s.out, resp.Token)
			fmt.Fprintf(s.err, "join token for %s, single use, expires %s\n", resp.SPIFFEID, resp.ExpiresAt.Local().Format(time.RFC3339))
			return nil
		},
	}
	create.Flags().StringVar(&node, "node", "", "node name (lowercase letters, digits, '.', '-', '_')")
	create.Flags().DurationVar(&ttl, "ttl", 10*time.Minute, "how long the token can be used (1m to 168h)")
	_ = create.MarkFlagRequired("node")
	out.register(create, "text", "text", "json")
	cf.register(create)
	cmd.AddCommand(create)
	return cmd
}

package cli

import (
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/trustmesh/trustmesh/internal/agent"
)

// defaultSocket is $XDG_RUNTIME_DIR/trustmesh/agent.sock, or under /tmp.
func defaultSocket() string {
	if d := os.Getenv("XDG_RUNTIME_DIR"); d != "" {
		return filepath.Join(d, "trustmesh", "agent.sock")
	}
	return filepath.Join(os.TempDir(), "trustmesh", "agent.sock")
}

func newAgentCmd(s *streams) *cobra.Command {
	var (
		cfg  agent.Config
		logs logFlags
	)
	cmd := &cobra.Command{
		Use:   "agent",
		Short: "Run the node agent: join the server, attest workloads, serve the SPIFFE Workload API",
		Long: `Run the trustmesh node agent.

The first start joins with a single-use token from ` + "`trustmesh token create`" + ` and
keeps the node SVID in DATA_DIR (key mode 0600), so a restart re-joins without a
new token while that SVID is valid. Workloads connect to the unix socket and get
exactly the SVIDs whose selectors all match them (unix:uid, unix:gid, unix:user,
unix:path, unix:sha256). Workload SVIDs are kept in memory only and rotated at
half their lifetime. The token may also come from TRUSTMESH_JOIN_TOKEN, which
keeps it out of the process list.

In Kubernetes (a server run with --kubernetes), --k8s-token-file replaces the
join token: the agent's projected service-account token, audience trustmesh,
checked by the server with a TokenReview; the node SVID is
spiffe://TD/trustmesh/node/k8s/NODE.

With several --server addresses (a,b or the flag repeated: the replicas of
the control plane) the agent uses one reachable replica, picked in random
order to spread agents over them, and moves to another within seconds when
the one in use goes away.`,
		Example: `  trustmesh agent --server 127.0.0.1:8443 --join-token $TOKEN \
      --trust-bundle /var/lib/trustmesh/bundle.pem --socket /run/trustmesh/agent.sock --data-dir /var/lib/trustmesh-agent

  # three control-plane replicas
  trustmesh agent --server 10.0.0.1:8443,10.0.0.2:8443,10.0.0.3:8443 \
      --trust-bundle /var/lib/trustmesh/bundle.pem --data-dir /var/lib/trustmesh-agent`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := logs.logger(s.err)
			if err != nil {
				return err
			}
			if cfg.JoinToken == "" {
				cfg.JoinToken = os.Getenv("TRUSTMESH_JOIN_TOKEN")
			}
			cfg.Logger = log
			a, err := agent.New(cfg)
			if err != nil {
				return err
			}
			return a.Run(cmd.Context())
		},
	}
	f := cmd.Flags()
	f.StringArrayVar(&cfg.ServerAddrs, "server", []string{"127.0.0.1:8443"},
		"server node API address `HOST:PORT`, or a comma-separated list of replicas to fail over between (repeatable)")
	f.StringVar(&cfg.JoinToken, "join-token", "", "single-use join token (first start; env TRUSTMESH_JOIN_TOKEN)")
	f.StringVar(&cfg.K8sTokenFile, "k8s-token-file", "", "instead of --join-token, in Kubernetes: the projected service-account token (audience trustmesh) to attest the node with, read again at every attestation")
	f.StringVar(&cfg.TrustBundleFile, "trust-bundle", "", "PEM trust bundle of the server (its DATA_DIR/bundle.pem)")
	f.StringVar(&cfg.SocketPath, "socket", defaultSocket(), "Workload API unix socket")
	f.StringVar(&cfg.DataDir, "data-dir", "", "directory for the node SVID and the latest bundle (required)")
	logs.register(cmd)
	_ = cmd.MarkFlagRequired("data-dir")
	return cmd
}

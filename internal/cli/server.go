package cli

import (
	"errors"
	"strings"

	"github.com/spf13/cobra"

	"github.com/trustmesh/trustmesh/internal/audit"
	"github.com/trustmesh/trustmesh/internal/server"
)

func newServerCmd(s *streams) *cobra.Command {
	var (
		cfg      server.Config
		upstream string
		logs     logFlags
	)
	cmd := &cobra.Command{
		Use:   "server",
		Short: "Run the control plane: SPIFFE CA, object store, node API and admin API",
		Long: `Run the trustmesh control plane.

The first start creates the CA (an ECDSA P-256 root, or an intermediate under
--upstream-ca), writes the trust bundle to DATA_DIR/bundle.pem and the local
operator credential (role admin) to DATA_DIR/admin/. Keys are files with mode
0600 and are never logged. Objects, join tokens, issued SVIDs, revocations and
the hash-chained audit log live in DATA_DIR/trustmesh.db (SQLite). The audit
log's head is signed every --audit-checkpoint-interval and at shutdown with
DATA_DIR/audit/checkpoint.key (Ed25519, created on first start; public key
checkpoint.pub), and each checkpoint is appended to
DATA_DIR/audit/checkpoints.jsonl as well as stored.`,
		Example: `  trustmesh server --data-dir /var/lib/trustmesh --trust-domain example.org
  trustmesh server --data-dir ./data --trust-domain example.org --listen 127.0.0.1:8443 --admin-listen 127.0.0.1:8444 --log-format json
  trustmesh server --data-dir ./data --trust-domain example.org --upstream-ca ca.pem,ca.key`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := logs.logger(s.err)
			if err != nil {
				return err
			}
			if upstream != "" {
				cert, key, ok := strings.Cut(upstream, ",")
				if !ok || cert == "" || key == "" {
					return errors.New("--upstream-ca: want CERT_FILE,KEY_FILE")
				}
				cfg.UpstreamCertFile, cfg.UpstreamKeyFile = cert, key
			}
			cfg.Logger = log
			srv, err := server.New(cmd.Context(), cfg)
			if err != nil {
				return err
			}
			return srv.Run(cmd.Context())
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.DataDir, "data-dir", "", "directory for the store, CA keys, bundle.pem and admin/ (required)")
	f.StringVar(&cfg.TrustDomain, "trust-domain", "", "SPIFFE trust domain, e.g. example.org (required on first start)")
	f.StringVar(&cfg.ListenAddr, "listen", server.DefaultListen, "node API address (agents)")
	f.StringVar(&cfg.AdminListenAddr, "admin-listen", server.DefaultAdminListen, "admin API address (operators)")
	f.StringVar(&cfg.MetricsListenAddr, "metrics-listen", "", "serve Prometheus /metrics in plain HTTP on this address, e.g. 127.0.0.1:8445 (default: off)")
	f.StringVar(&upstream, "upstream-ca", "", "CERT,KEY PEM files of an existing CA to run under as an intermediate")
	f.DurationVar(&cfg.NodeSVIDTTL, "node-svid-ttl", server.DefaultNodeSVIDTTL, "lifetime of node SVIDs")
	f.DurationVar(&cfg.CAPropagationDelay, "ca-propagation-delay", server.DefaultPropagation, "how long a new CA authority is published before it signs (see `trustmesh ca rotate`)")
	f.DurationVar(&cfg.AuditCheckpointInterval, "audit-checkpoint-interval", audit.DefaultCheckpointInterval, "how often the audit log's head is signed (and at shutdown; see `trustmesh audit verify`)")
	logs.register(cmd)
	_ = cmd.MarkFlagRequired("data-dir")
	return cmd
}

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
DATA_DIR/audit/checkpoints.jsonl as well as stored.

High availability: several servers share one PostgreSQL database with
--store postgres://USER@HOST:PORT/DATABASE (each with its own --data-dir).
The CA authorities, the admin CA and the audit checkpoint key then live in
the database, their private keys sealed with AES-256-GCM under the
key-encryption key in --kek-file (create one with trustmesh kek generate and
give every replica the same file; the database alone never yields a usable
key). A change made through any replica reaches the others' agents and
proxies at once (LISTEN/NOTIFY); CA rotation steps and audit checkpoint
signing run on one elected replica and move when it dies. Agents and proxies
take every replica's address: --server a:8443,b:8443.

Kubernetes: with --kubernetes the server also watches the trustmesh.dev custom
resources (one CRD per object kind, same shapes as the YAML objects; see
trustmesh install --dry-run) and feeds them through the same validation, store,
audit log and push as trustmesh apply; each resource's status reports whether
it was accepted, its store revision and how many proxies acknowledged it.`,
		Example: `  trustmesh server --data-dir /var/lib/trustmesh --trust-domain example.org
  trustmesh server --data-dir ./data --trust-domain example.org --listen 127.0.0.1:8443 --admin-listen 127.0.0.1:8444 --log-format json
  trustmesh server --data-dir ./data --trust-domain example.org --upstream-ca ca.pem,ca.key
  trustmesh kek generate --out /etc/trustmesh/kek
  trustmesh server --data-dir ./data-a --trust-domain example.org --store postgres://trustmesh@db:5432/trustmesh --kek-file /etc/trustmesh/kek`,
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
	f.StringVar(&cfg.StoreURL, "store", "", "where objects, tokens, issued SVIDs and the audit log live: sqlite://PATH or postgres://USER@HOST:PORT/DATABASE (default: DATA_DIR/trustmesh.db); the password, if any, is better given in PGPASSWORD or ~/.pgpass")
	f.StringVar(&cfg.KEKFile, "kek-file", "", "key-encryption key that seals the CA and audit keys in a PostgreSQL store (required with postgres://; see trustmesh kek generate)")
	f.BoolVar(&cfg.Kubernetes, "kubernetes", false, "also take objects from trustmesh.dev custom resources (kubectl apply, GitOps): in-cluster, or through --kubeconfig; their status reports what the mesh did")
	f.StringVar(&cfg.Kubeconfig, "kubeconfig", "", "kubeconfig file for --kubernetes outside a cluster")
	f.StringVar(&cfg.K8sAgentServiceAccount, "k8s-agent-service-account", "", "with --kubernetes: the service account NAMESPACE:NAME of the agents; only its projected tokens (audience trustmesh) attest nodes (default "+server.DefaultK8sAgentServiceAccount+")")
	f.StringVar(&cfg.WebhookListen, "webhook-listen", "", "with --kubernetes: serve the admission webhooks (validation of trustmesh.dev objects, sidecar injection) here, e.g. 0.0.0.0:9443")
	f.StringVar(&cfg.WebhookURL, "webhook-url", "", "with --webhook-listen: the https:// URL the API server reaches the webhooks at (a server outside the cluster)")
	f.StringVar(&cfg.WebhookService, "webhook-service", "", "with --webhook-listen: the Service NAMESPACE/NAME, or NAME in the server's own namespace, in front of the webhooks (port 443) in a cluster")
	f.StringVar(&cfg.BundleConfigMap, "bundle-configmap", "", "with --webhook-listen: publish the trust bundle (key bundle.pem) for the agents in this ConfigMap, NAMESPACE/NAME or NAME in the server's own namespace")
	f.StringVar(&cfg.Inject.Image, "inject-image", "", "image of the injected proxy and trustmesh-init (default: the one of this version)")
	f.StringVar(&cfg.Inject.ServerAddr, "inject-server", "", "--server of injected proxies (default trustmesh-server.trustmesh-system.svc:8443)")
	f.StringVar(&cfg.ReplicaID, "replica-id", "", "this replica's name among servers sharing a database (default: HOSTNAME/LISTEN_ADDRESS)")
	f.StringVar(&upstream, "upstream-ca", "", "CERT,KEY PEM files of an existing CA to run under as an intermediate")
	f.DurationVar(&cfg.NodeSVIDTTL, "node-svid-ttl", server.DefaultNodeSVIDTTL, "lifetime of node SVIDs")
	f.DurationVar(&cfg.CAPropagationDelay, "ca-propagation-delay", server.DefaultPropagation, "how long a new CA authority is published before it signs (see trustmesh ca rotate)")
	f.DurationVar(&cfg.AuditCheckpointInterval, "audit-checkpoint-interval", audit.DefaultCheckpointInterval, "how often the audit log's head is signed (and at shutdown; see trustmesh audit verify)")
	logs.register(cmd)
	_ = cmd.MarkFlagRequired("data-dir")
	return cmd
}

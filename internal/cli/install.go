package cli

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/trustmesh/trustmesh/internal/k8s/install"
)

func newInstallCmd(s *streams) *cobra.Command {
	var (
		dryRun    bool
		namespace string
		td        string
	)
	cmd := &cobra.Command{
		Use:   "install --dry-run",
		Short: "Print the Kubernetes manifests that install trustmesh into a cluster",
		Long: `Print the manifests that install trustmesh into a Kubernetes cluster: the
namespace, the trustmesh.dev CRDs, the server's service account and its
least-privilege RBAC, the server Deployment and Service, the agent DaemonSet,
and the validating and injecting admission webhooks.

They are the Helm chart deploy/helm/trustmesh rendered with its default values,
for --namespace and --trust-domain. The trust domain is fixed at the server's
first start. For anything else (PostgreSQL and several server replicas,
resources, node selectors) use the chart.

The command applies nothing itself: --dry-run is required, and the output goes
to kubectl.`,
		Example: `  # install into trustmesh-system with trust domain cluster.local
  trustmesh install --dry-run | kubectl apply -f -

  trustmesh install --dry-run --namespace mesh --trust-domain example.org > trustmesh.yaml

  # the same with Helm
  helm install trustmesh deploy/helm/trustmesh -n trustmesh-system --create-namespace --set trustDomain=example.org`,
		Args: cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			if !dryRun {
				return errors.New("trustmesh install does not change the cluster itself: print the manifests with --dry-run and apply them with kubectl (trustmesh install --dry-run | kubectl apply -f -), or install the Helm chart deploy/helm/trustmesh")
			}
			cfg := install.Config{Namespace: namespace}
			var err error
			if cfg.TrustDomain, err = spiffeid.TrustDomainFromString(td); err != nil {
				return fmt.Errorf("--trust-domain %q: %w", td, err)
			}
			if err := install.ValidateNamespace(namespace); err != nil {
				return fmt.Errorf("--namespace: %w", err)
			}
			out, err := install.Manifests(cfg)
			if err != nil {
				return err
			}
			_, err = s.out.Write(out)
			return err
		},
	}
	f := cmd.Flags()
	f.BoolVar(&dryRun, "dry-run", false, "print the manifests instead of applying them (required)")
	f.StringVarP(&namespace, "namespace", "n", install.DefaultNamespace, "namespace of the server and the agents")
	f.StringVar(&td, "trust-domain", install.DefaultTrustDomain, "SPIFFE trust domain of the mesh (fixed at the server's first start)")
	return cmd
}

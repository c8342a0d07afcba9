package cli

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/trustmesh/trustmesh/internal/k8s/redirect"
)

func newRedirectCmd(s *streams) *cobra.Command {
	var (
		cfg                                      redirect.Config
		inPorts, outPorts, exclIn, exclOut, cidr string
		restore                                  string
		dryRun                                   bool
	)
	cmd := &cobra.Command{
		Use:   "redirect",
		Short: "Send a pod's TCP traffic through its proxy with iptables (the trustmesh-init container)",
		Long: `Install the iptables rules that send this network namespace's TCP traffic
through the trustmesh proxy, as istio-init does for Envoy. The injected
trustmesh-init container runs it, as root with NET_ADMIN and NET_RAW, before
the proxy starts; it exits when the rules are in place.

  inbound   connections to --include-inbound-ports (except
            --exclude-inbound-ports) are redirected to --inbound-port
  outbound  the app's connections to --include-outbound-ports (except
            --exclude-outbound-ports and --exclude-outbound-cidrs) are
            redirected to --outbound-port; connections of --proxy-uid (and
            --proxy-gid) and to loopback are never redirected

The rules replace the nat table (chains TRUSTMESH_*), so running the command
again leaves one set of rules. Only IPv4 TCP is redirected. --dry-run prints
the iptables-restore input instead of applying it.`,
		Example: `  trustmesh redirect --proxy-uid 1337 --inbound-port 15006 --exclude-inbound-ports 15000
  trustmesh redirect --proxy-uid 1337 --outbound-port 15001 --include-outbound-ports 80,8080 \
      --exclude-outbound-cidrs 169.254.169.254/32 --dry-run`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var err error
			if cfg.InboundPorts, err = redirect.ParsePorts(inPorts); err != nil {
				return fmt.Errorf("--include-inbound-ports: %w", err)
			}
			if cfg.OutboundPorts, err = redirect.ParsePorts(outPorts); err != nil {
				return fmt.Errorf("--include-outbound-ports: %w", err)
			}
			if cfg.ExcludeInboundPorts, err = redirect.ParsePortList(exclIn); err != nil {
				return fmt.Errorf("--exclude-inbound-ports: %w", err)
			}
			if cfg.ExcludeOutboundPorts, err = redirect.ParsePortList(exclOut); err != nil {
				return fmt.Errorf("--exclude-outbound-ports: %w", err)
			}
			if cfg.ExcludeOutboundCIDRs, err = redirect.ParseCIDRs(cidr); err != nil {
				return fmt.Errorf("--exclude-outbound-cidrs: %w", err)
			}
			if cfg.InboundPort == 0 {
				cfg.InboundPorts = redirect.Ports{}
			}
			if cfg.OutboundPort == 0 {
				cfg.OutboundPorts = redirect.Ports{}
			}
			rules, err := redirect.Rules(cfg)
			if err != nil {
				return err
			}
			if dryRun {
				_, err := s.out.Write(rules)
				return err
			}
			if err := redirect.Apply(cmd.Context(), restore, rules); err != nil {
				return fmt.Errorf("applying the rules (is this root with NET_ADMIN, and is iptables installed?): %w", err)
			}
			fmt.Fprintf(s.out, "%s# applied with %s\n", rules, restore)
			return nil
		},
	}
	f := cmd.Flags()
	f.Uint32Var(&cfg.ProxyUID, "proxy-uid", 1337, "uid of the proxy, whose connections are never redirected")
	f.Uint32Var(&cfg.ProxyGID, "proxy-gid", 0, "gid whose connections are never redirected either (0: none)")
	f.Uint16Var(&cfg.InboundPort, "inbound-port", 0, "the proxy's inbound listener port (0: redirect no inbound traffic)")
	f.StringVar(&inPorts, "include-inbound-ports", "*", "inbound destination ports to redirect: * or a comma-separated list")
	f.StringVar(&exclIn, "exclude-inbound-ports", "", "inbound destination ports never redirected (comma-separated), such as the proxy's admin port")
	f.Uint16Var(&cfg.OutboundPort, "outbound-port", 0, "the proxy's outbound listener port (0: redirect no outbound traffic)")
	f.StringVar(&outPorts, "include-outbound-ports", "*", "outbound destination ports to redirect: * or a comma-separated list")
	f.StringVar(&exclOut, "exclude-outbound-ports", "", "outbound destination ports never redirected (comma-separated)")
	f.StringVar(&cidr, "exclude-outbound-cidrs", "", "outbound IPv4 destinations never redirected (comma-separated CIDRs)")
	f.StringVar(&restore, "iptables-restore", redirect.DefaultRestore, "the iptables-restore command to apply the rules with")
	f.BoolVar(&dryRun, "dry-run", false, "print the iptables-restore input instead of applying it")
	return cmd
}

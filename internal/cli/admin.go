package cli

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/trustmesh/trustmesh/internal/server/adminapi"
)

func newAdminCmd(s *streams) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "admin",
		Short: "Manage operator credentials and check who you are",
		Example: `  trustmesh admin issue --role auditor --name alice --data-dir ./data
  trustmesh admin whoami --credentials ./alice-credentials`,
	}
	cmd.AddCommand(newAdminIssueCmd(s), newWhoAmICmd(s))
	return cmd
}

func newAdminIssueCmd(s *streams) *cobra.Command {
	var (
		cf         clientFlags
		role, name string
		outDir     string
		ttl        time.Duration
	)
	cmd := &cobra.Command{
		Use:   "issue --role ROLE --name NAME [--out DIR]",
		Short: "Mint an operator credential (client certificate with a role)",
		Long: `Mint an operator credential for the admin API. The key is generated here
and never leaves this machine; the server signs a certificate carrying NAME
and ROLE. Roles: ` + strings.Join(adminapi.Roles, ", ") + `.

  admin          everything
  policy-author  apply and delete objects, read
  approver       read (approves policy changes once approvals exist)
  auditor        read, including the audit log
  responder      revoke certificates, read

The directory written (default ./NAME-credentials) is used with --credentials DIR.`,
		Example: `  trustmesh admin issue --role auditor --name alice --data-dir ./data
  trustmesh get workloads --credentials ./alice-credentials`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if !adminapi.ValidRole(role) {
				return fmt.Errorf("--role %q: want one of %s", role, strings.Join(adminapi.Roles, ", "))
			}
			if outDir == "" {
				outDir = name + "-credentials"
			}
			if _, err := os.Stat(filepath.Join(outDir, adminapi.KeyFile)); err == nil {
				return fmt.Errorf("%s already holds a credential; choose another --out or remove it first", outDir)
			}
			c, err := cf.client()
			if err != nil {
				return err
			}
			key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
			if err != nil {
				return err
			}
			csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
			if err != nil {
				return err
			}
			req := adminapi.AdminIssueRequest{Name: name, Role: role, TTL: ttl,
				CSR: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: csr}))}
			var resp adminapi.AdminIssueResponse
			if err := c.Do(cmd.Context(), http.MethodPost, adminapi.PathAdminIssue, nil, req, &resp); err != nil {
				return err
			}
			keyDER, err := x509.MarshalPKCS8PrivateKey(key)
			if err != nil {
				return err
			}
			if err := adminapi.WriteCredentials(outDir, []byte(resp.CertPEM), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), []byte(resp.CAPEM), c.Server()); err != nil {
				return err
			}
			fmt.Fprintf(s.out, "credential for %s (role %s, serial %s) written to %s\n", name, role, resp.Serial, outDir)
			return nil
		},
	}
	cmd.Flags().StringVar(&role, "role", "", "role: "+strings.Join(adminapi.Roles, ", "))
	cmd.Flags().StringVar(&name, "name", "", "operator name")
	cmd.Flags().StringVar(&outDir, "out", "", "directory to write the credential to (default ./NAME-credentials)")
	cmd.Flags().DurationVar(&ttl, "ttl", 30*24*time.Hour, "credential lifetime")
	_ = cmd.MarkFlagRequired("role")
	_ = cmd.MarkFlagRequired("name")
	cf.register(cmd)
	return cmd
}

func newWhoAmICmd(s *streams) *cobra.Command {
	var cf clientFlags
	cmd := &cobra.Command{
		Use:     "whoami",
		Short:   "Show the operator name and role of the credential in use",
		Example: "  trustmesh admin whoami --credentials ./alice-credentials",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := cf.client()
			if err != nil {
				return err
			}
			var resp adminapi.WhoAmI
			if err := c.Do(cmd.Context(), http.MethodGet, adminapi.PathWhoAmI, nil, nil, &resp); err != nil {
				return err
			}
			if resp.Name == "" {
				return errors.New("server returned no identity")
			}
			fmt.Fprintf(s.out, "%s (role %s)\n", resp.Name, resp.Role)
			return nil
		},
	}
	cf.register(cmd)
	return cmd
}

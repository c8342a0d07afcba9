package cli

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/trustmesh/trustmesh/internal/kek"
)

func newKEKCmd(s *streams) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "kek",
		Short: "Manage the key-encryption key that seals CA and audit keys in a shared database",
		Long: `Manage the key-encryption key (KEK) of a highly available control plane.

Servers that share a PostgreSQL database (trustmesh server --store postgres://…)
keep the CA's private keys and the audit checkpoint key in it, sealed with
AES-256-GCM under the KEK given by --kek-file. Every replica needs the same KEK
file; the database alone never yields a usable key. Keep the KEK apart from
database backups: losing it loses the CA.`,
		Example: `  trustmesh kek generate --out /etc/trustmesh/kek
  trustmesh kek id /etc/trustmesh/kek`,
		Args: cobra.NoArgs,
	}
	cmd.AddCommand(newKEKGenerateCmd(s), newKEKIDCmd(s))
	return cmd
}

func newKEKGenerateCmd(s *streams) *cobra.Command {
	var out string
	cmd := &cobra.Command{
		Use:   "generate --out FILE",
		Short: "Write a new random KEK to FILE (mode 0600; never overwrites)",
		Example: `  trustmesh kek generate --out /etc/trustmesh/kek
  trustmesh server --store postgres://trustmesh@db/trustmesh --kek-file /etc/trustmesh/kek --data-dir ./data`,
		Args: cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			if out == "" {
				return errors.New("--out FILE is required (e.g. --out /etc/trustmesh/kek)")
			}
			if err := kek.Generate(out); err != nil {
				return err
			}
			k, err := kek.Load(out)
			if err != nil {
				return err
			}
			fmt.Fprintf(s.out, "wrote a new KEK to %s (key ID %s); give every server replica the same file with --kek-file\n", out, k.ID())
			return nil
		},
	}
	cmd.Flags().StringVar(&out, "out", "", "file to create (mode 0600)")
	return cmd
}

func newKEKIDCmd(s *streams) *cobra.Command {
	cmd := &cobra.Command{
		Use:     "id FILE",
		Short:   "Print the key ID of a KEK file (safe to share: it reveals nothing about the key)",
		Example: `  trustmesh kek id /etc/trustmesh/kek`,
		Args:    cobra.ExactArgs(1),
		RunE: func(_ *cobra.Command, args []string) error {
			k, err := kek.Load(args[0])
			if err != nil {
				return err
			}
			fmt.Fprintln(s.out, k.ID())
			return nil
		},
	}
	return cmd
}

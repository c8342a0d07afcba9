// Package cli builds the trustmesh command tree. Each file holds one command
// group; commands parse flags, call a component or the admin API client, and
// print. Errors return to main, which prints one line and exits non-zero.
package cli

import (
	"fmt"
	"io"
	"log/slog"
	"strings"

	"github.com/spf13/cobra"
)

// ExitError asks main to exit with Code without printing anything more (the
// command already said what went wrong).
type ExitError struct{ Code int }

func (e ExitError) Error() string { return fmt.Sprintf("exit status %d", e.Code) }

// streams are the process's standard streams, passed down explicitly.
type streams struct {
	in       io.Reader
	out, err io.Writer
}

// NewRoot returns the root command with every subcommand attached.
func NewRoot(in io.Reader, out, errOut io.Writer) *cobra.Command {
	s := &streams{in: in, out: out, err: errOut}
	root := &cobra.Command{
		Use:   "trustmesh",
		Short: "trustmesh: a zero-trust service mesh (SPIFFE identities, mTLS, policy as code)",
		Long: `trustmesh is one binary with four faces:

  trustmesh server   the control plane: SPIFFE CA, object store, admin API
  trustmesh agent    the node agent: attests workloads, serves the SPIFFE Workload API
  trustmesh proxy    the sidecar: mutual TLS in and out, configured live
  trustmesh ...      operator commands: apply, get, delete, token, cert, ca, admin`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetIn(in)
	root.SetOut(out)
	root.SetErr(errOut)
	root.CompletionOptions.HiddenDefaultCmd = true
	root.AddCommand(
		newServerCmd(s),
		newAgentCmd(s),
		newProxyCmd(s),
		newApplyCmd(s),
		newGetCmd(s),
		newDeleteCmd(s),
		newTokenCmd(s),
		newAdminCmd(s),
		newCertCmd(s),
		newCACmd(s),
		newAuditCmd(s),
		newNodeCmd(s),
		newPolicyCmd(s),
		newExplainCmd(s),
		newTapCmd(s),
		newKEKCmd(s),
		newRedirectCmd(s),
		newInstallCmd(s),
		newVersionCmd(s),
	)
	return root
}

// logFlags are the logging flags every long-running command takes.
type logFlags struct {
	level  string
	format string
}

func (f *logFlags) register(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.level, "log-level", "info", "log level: debug, info, warn or error")
	cmd.Flags().StringVar(&f.format, "log-format", "text", "log format: text or json")
}

// logger builds the process logger. Invalid values fail before anything starts.
func (f *logFlags) logger(w io.Writer) (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(f.level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: want debug, info, warn or error", f.level)
	}
	opts := &slog.HandlerOptions{Level: level}
	switch strings.ToLower(f.format) {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	default:
		return nil, fmt.Errorf("--log-format %q: want text or json", f.format)
	}
}

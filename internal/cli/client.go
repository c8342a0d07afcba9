package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"
	"sigs.k8s.io/yaml"

	"github.com/trustmesh/trustmesh/internal/server/adminapi"
)

// clientFlags locate the admin API and the operator credential.
type clientFlags struct {
	dataDir     string
	server      string
	credentials string
}

func (f *clientFlags) register(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.dataDir, "data-dir", "", "data dir of a local server: use its admin credential DATA_DIR/admin")
	cmd.Flags().StringVar(&f.server, "server", "", "admin API address HOST:PORT (env TRUSTMESH_SERVER; default: the credential's server file)")
	cmd.Flags().StringVar(&f.credentials, "credentials", "", "operator credentials directory from trustmesh admin issue (env TRUSTMESH_CREDENTIALS)")
}

// client resolves the credential: --credentials, then --data-dir, then the
// environment.
func (f *clientFlags) client() (*adminapi.Client, error) {
	dir := f.credentials
	if dir == "" && f.dataDir != "" {
		dir = filepath.Join(f.dataDir, "admin")
	}
	if dir == "" {
		dir = os.Getenv("TRUSTMESH_CREDENTIALS")
	}
	server := f.server
	if server == "" {
		server = os.Getenv("TRUSTMESH_SERVER")
	}
	return adminapi.NewClient(dir, server)
}

// outputFlag is -o / --output.
type outputFlag struct{ format string }

func (o *outputFlag) register(cmd *cobra.Command, def string, allowed ...string) {
	cmd.Flags().StringVarP(&o.format, "output", "o", def, "output format: "+joinOr(allowed))
	cmd.PreRunE = chainPreRun(cmd.PreRunE, func(*cobra.Command, []string) error {
		for _, a := range allowed {
			if o.format == a {
				return nil
			}
		}
		return fmt.Errorf("-o %q: want %s", o.format, joinOr(allowed))
	})
}

func chainPreRun(prev, next func(*cobra.Command, []string) error) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		if prev != nil {
			if err := prev(cmd, args); err != nil {
				return err
			}
		}
		return next(cmd, args)
	}
}

func joinOr(s []string) string {
	switch len(s) {
	case 0:
		return ""
	case 1:
		return s[0]
	}
	out := ""
	for i, v := range s {
		switch {
		case i == len(s)-1:
			out += " or " + v
		case i > 0:
			out += ", " + v
		default:
			out += v
		}
	}
	return out
}

// printStructured writes v as indented JSON or as YAML.
func printStructured(w io.Writer, format string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	if format == "yaml" {
		if b, err = yaml.JSONToYAML(b); err != nil {
			return err
		}
		_, err = w.Write(b)
		return err
	}
	_, err = fmt.Fprintln(w, string(b))
	return err
}

// printStructuredLine writes v as one JSON line (for streams of records).
func printStructuredLine(w io.Writer, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(w, string(b))
	return err
}

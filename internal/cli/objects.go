package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/trustmesh/trustmesh/internal/policy"
	"github.com/trustmesh/trustmesh/internal/server/adminapi"
)

func readFileArg(s *streams, path string) ([]byte, error) {
	if path == "" {
		return nil, errors.New("-f FILE is required (use - for standard input)")
	}
	if path == "-" {
		return io.ReadAll(io.LimitReader(s.in, 16<<20))
	}
	return os.ReadFile(path)
}

func newApplyCmd(s *streams) *cobra.Command {
	var (
		cf     clientFlags
		file   string
		dryRun bool
	)
	cmd := &cobra.Command{
		Use:   "apply -f FILE",
		Short: "Create or update objects from a YAML or JSON file (several documents allowed)",
		Long: `Create or update trustmesh objects (` + joinOr(policy.Kinds()) + `).

Every document is checked first (unknown fields, invalid SPIFFE IDs, empty
selectors, ...); if any is invalid nothing is applied. Each write gets a new
store revision. metadata.revision, when given, is a precondition: the apply
fails if the object has changed since.`,
		Example: `  trustmesh apply -f workloads.yaml --data-dir ./data
  cat mesh.yaml | trustmesh apply -f - --credentials ~/.trustmesh/alice
  trustmesh apply -f workloads.yaml --dry-run`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			doc, err := readFileArg(s, file)
			if err != nil {
				return err
			}
			// Check locally first so a typo is reported without a round trip.
			if _, err := policy.Decode(doc); err != nil {
				return fmt.Errorf("%s: %w", file, err)
			}
			c, err := cf.client()
			if err != nil {
				return err
			}
			var resp adminapi.ApplyResponse
			if err := c.Do(cmd.Context(), http.MethodPost, adminapi.PathApply, nil, adminapi.ApplyRequest{Document: string(doc), DryRun: dryRun}, &resp); err != nil {
				return err
			}
			for _, r := range resp.Results {
				name := r.Name
				if r.Namespace != "" {
					name = r.Namespace + "/" + r.Name
				}
				fmt.Fprintf(s.out, "%s %s %s (revision %d)\n", r.Kind, name, r.Action, r.Revision)
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&file, "filename", "f", "", "file with one or more objects (- for standard input)")
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "validate on the server and report what would change, without writing")
	cf.register(cmd)
	return cmd
}

func newGetCmd(s *streams) *cobra.Command {
	var (
		cf      clientFlags
		ns      string
		out     outputFlag
		history bool
	)
	cmd := &cobra.Command{
		Use:   "get KIND [NAME]",
		Short: "Show objects, as a table, YAML or JSON",
		Long:  "Show objects of a kind (" + joinOr(policy.Kinds()) + "), all or one by name, or the connected proxies (get proxies) with their snapshot versions and last ACK/NACK.",
		Example: `  trustmesh get workloads --data-dir ./data
  trustmesh get workload web -n default -o yaml
  trustmesh get meshconfig default -o json
  trustmesh get workload web --history
  trustmesh get proxies --data-dir ./data`,
		Args: cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if args[0] == "proxies" || args[0] == "proxy" {
				return printProxies(cmd, s, cf, out.format)
			}
			kind, err := policy.ResolveKind(args[0])
			if err != nil {
				return err
			}
			q := url.Values{"kind": {kind}}
			if ns != "" {
				q.Set("namespace", ns)
			}
			path := adminapi.PathObjects
			if len(args) == 2 {
				q.Set("name", args[1])
			}
			if history {
				if len(args) != 2 {
					return errors.New("--history needs a NAME")
				}
				path = adminapi.PathHistory
			}
			c, err := cf.client()
			if err != nil {
				return err
			}
			var resp adminapi.ObjectsResponse
			if err := c.Do(cmd.Context(), http.MethodGet, path, q, nil, &resp); err != nil {
				return err
			}
			return printObjects(s.out, out.format, kind, resp.Items, len(args) == 2 && !history)
		},
	}
	cmd.Flags().StringVarP(&ns, "namespace", "n", "", "namespace (default: every namespace for lists, \"default\" for a name)")
	cmd.Flags().BoolVar(&history, "history", false, "show every revision of the object, oldest first")
	out.register(cmd, "table", "table", "yaml", "json")
	cf.register(cmd)
	return cmd
}

// printObjects prints items; single prints one object rather than a list.
func printObjects(w io.Writer, format, kind string, items []json.RawMessage, single bool) error {
	var objs []map[string]any
	for _, it := range items {
		var m map[string]any
		if err := json.Unmarshal(it, &m); err != nil {
			return fmt.Errorf("decode server response: %w", err)
		}
		objs = append(objs, m)
	}
	switch format {
	case "json", "yaml":
		var v any = map[string]any{"apiVersion": policy.APIVersion, "kind": "List", "items": objs}
		if single && len(objs) == 1 {
			v = objs[0]
		}
		if objs == nil && !single {
			v = map[string]any{"apiVersion": policy.APIVersion, "kind": "List", "items": []any{}}
		}
		return printStructured(w, format, v)
	}
	if len(objs) == 0 {
		fmt.Fprintf(w, "no %s objects\n", kind)
		return nil
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	switch kind {
	case policy.KindWorkload:
		fmt.Fprintln(tw, "NAMESPACE\tNAME\tSPIFFE ID\tPARENT\tSELECTORS\tREVISION")
	default:
		fmt.Fprintln(tw, "NAMESPACE\tNAME\tREVISION")
	}
	for _, o := range objs {
		meta, _ := o["metadata"].(map[string]any)
		spec, _ := o["spec"].(map[string]any)
		rev := fmt.Sprint(meta["revision"])
		if o["deleted"] == true {
			rev += " (deleted)"
		}
		ns := fmt.Sprint(orDash(meta["namespace"]))
		switch kind {
		case policy.KindWorkload:
			sels, _ := spec["selectors"].([]any)
			fmt.Fprintf(tw, "%s\t%s\t%v\t%v\t%d\t%s\n", ns, meta["name"], orDash(spec["spiffeID"]), orDash(spec["parentID"]), len(sels), rev)
		default:
			fmt.Fprintf(tw, "%s\t%s\t%s\n", ns, meta["name"], rev)
		}
	}
	return tw.Flush()
}

func orDash(v any) any {
	if v == nil || v == "" {
		return "-"
	}
	return v
}

func newDeleteCmd(s *streams) *cobra.Command {
	var (
		cf   clientFlags
		ns   string
		file string
	)
	cmd := &cobra.Command{
		Use:   "delete (KIND NAME | -f FILE)",
		Short: "Delete objects by kind and name, or every object in a file",
		Long:  "Delete objects. The deletion is a new revision (a tombstone): history keeps what was there.",
		Example: `  trustmesh delete workload web -n default --data-dir ./data
  trustmesh delete -f workloads.yaml --data-dir ./data`,
		Args: cobra.MaximumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			type target struct{ kind, ns, name string }
			var targets []target
			switch {
			case file != "" && len(args) == 0:
				doc, err := readFileArg(s, file)
				if err != nil {
					return err
				}
				objs, err := policy.Decode(doc)
				if err != nil {
					return fmt.Errorf("%s: %w", file, err)
				}
				for _, o := range objs {
					targets = append(targets, target{o.GetKind(), o.GetMeta().Namespace, o.GetMeta().Name})
				}
			case file == "" && len(args) == 2:
				kind, err := policy.ResolveKind(args[0])
				if err != nil {
					return err
				}
				targets = append(targets, target{kind, ns, args[1]})
			default:
				return errors.New("give KIND NAME, or -f FILE")
			}
			c, err := cf.client()
			if err != nil {
				return err
			}
			for _, t := range targets {
				q := url.Values{"kind": {t.kind}, "name": {t.name}}
				if t.ns != "" {
					q.Set("namespace", t.ns)
				}
				var resp adminapi.DeleteResponse
				if err := c.Do(cmd.Context(), http.MethodDelete, adminapi.PathObjects, q, nil, &resp); err != nil {
					return err
				}
				fmt.Fprintf(s.out, "%s %s deleted (revision %d)\n", t.kind, t.name, resp.Revision)
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&ns, "namespace", "n", "", "namespace (default \"default\")")
	cmd.Flags().StringVarP(&file, "filename", "f", "", "delete every object named in this file")
	cf.register(cmd)
	return cmd
}

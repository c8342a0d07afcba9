package cli

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"sigs.k8s.io/yaml"

	"github.com/trustmesh/trustmesh/internal/policy"
	"github.com/trustmesh/trustmesh/internal/policy/authz"
	"github.com/trustmesh/trustmesh/internal/policy/istio"
	"github.com/trustmesh/trustmesh/internal/policy/lint"
	"github.com/trustmesh/trustmesh/internal/server/adminapi"
)

func newPolicyCmd(s *streams) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "policy",
		Short: "Policy as code: validate, lint, test, diff, history, rollback, import from Istio",
		Long: `Work with AuthorizationPolicy, RequestAuthentication and PeerAuthentication
objects before and after they ship.

validate, lint, test and import work on files and need no server, so they fit
in a CI pipeline; diff, history and rollback talk to the server, which keeps
every revision of every object.`,
		Example: `  trustmesh policy validate -f policies.yaml
  trustmesh policy lint -f policies.yaml -f workloads.yaml
  trustmesh policy test -f policies.yaml --cases cases.yaml
  trustmesh policy diff -f policies.yaml --data-dir ./data
  trustmesh policy history orders-allow --data-dir ./data
  trustmesh policy rollback orders-allow --to 42 --data-dir ./data
  trustmesh policy import --istio -f istio-policies.yaml > trustmesh.yaml`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	cmd.AddCommand(newPolicyValidateCmd(s), newPolicyLintCmd(s), newPolicyTestCmd(s), newPolicyDiffCmd(s),
		newPolicyHistoryCmd(s), newPolicyRollbackCmd(s), newPolicyImportCmd(s))
	return cmd
}

// policyFile is one decoded input file.
type policyFile struct {
	name string
	data []byte
	objs []policy.Object
	docs []int // document number of each object, for loc
	loc  *policy.Locator
}

// doc is the document number of object i.
func (f *policyFile) doc(i int) int {
	if i < len(f.docs) {
		return f.docs[i]
	}
	return 0
}

// loadFiles reads and decodes every -f file. Decode errors are returned
// with file names and line numbers.
func loadFiles(s *streams, files []string) ([]policyFile, error) {
	if len(files) == 0 {
		return nil, errors.New("-f FILE is required (repeatable; - for standard input)")
	}
	var out []policyFile
	var errs []error
	for _, f := range files {
		data, err := readFileArg(s, f)
		if err != nil {
			return nil, err
		}
		pf := policyFile{name: f, data: data, loc: policy.NewLocator(data)}
		pf.objs, err = policy.Decode(data)
		if err != nil {
			errs = append(errs, prefixLines(f, pf.loc.AnnotateDecode(err)))
			continue
		}
		pf.docs = policy.ObjectDocuments(data)
		out = append(out, pf)
	}
	return out, errors.Join(errs...)
}

// prefixLines turns "line 12: msg" into "FILE:12: msg", and other lines
// into "FILE: msg", the form editors and CI logs link.
func prefixLines(file string, err error) error {
	var b strings.Builder
	for i, l := range strings.Split(err.Error(), "\n") {
		if i > 0 {
			b.WriteByte('\n')
		}
		if rest, ok := strings.CutPrefix(l, "line "); ok {
			if n, msg, ok := strings.Cut(rest, ": "); ok {
				if _, err := strconv.Atoi(n); err == nil {
					fmt.Fprintf(&b, "%s:%s: %s", file, n, msg)
					continue
				}
			}
		}
		fmt.Fprintf(&b, "%s: %s", file, l)
	}
	return errors.New(b.String())
}

// trustDomainFor picks the trust domain to validate against: the flag,
// else a MeshConfig in the files, else the first Workload's, else
// cluster.local (which only matters for Workload and Service objects).
func trustDomainFor(flag string, files []policyFile) (spiffeid.TrustDomain, error) {
	if flag != "" {
		td, err := spiffeid.TrustDomainFromString(flag)
		if err != nil {
			return td, fmt.Errorf("--trust-domain %q: %w", flag, err)
		}
		return td, nil
	}
	for _, f := range files {
		for _, o := range f.objs {
			if mc, ok := o.(*policy.MeshConfig); ok && mc.Spec.TrustDomain != "" {
				if td, err := spiffeid.TrustDomainFromString(mc.Spec.TrustDomain); err == nil {
					return td, nil
				}
			}
		}
	}
	for _, f := range files {
		for _, o := range f.objs {
			if w, ok := o.(*policy.Workload); ok {
				if id, err := spiffeid.FromString(w.Spec.SPIFFEID); err == nil {
					return id.TrustDomain(), nil
				}
			}
		}
	}
	return spiffeid.RequireTrustDomainFromString("cluster.local"), nil
}

// validateFiles validates every object and returns the problems with file
// names and line numbers.
func validateFiles(files []policyFile, td spiffeid.TrustDomain) error {
	var errs []error
	for _, f := range files {
		for i, o := range f.objs {
			if err := authz.Validate(o, td); err != nil {
				errs = append(errs, prefixLines(f.name, f.loc.AnnotateValidate(f.doc(i), err)))
			}
		}
	}
	return errors.Join(errs...)
}

// loadValidFiles loads the -f files and validates every object for the
// trust domain the flag or the files give.
func loadValidFiles(s *streams, files []string, tdFlag string) ([]policyFile, error) {
	pfs, err := loadFiles(s, files)
	if err != nil {
		return nil, err
	}
	td, err := trustDomainFor(tdFlag, pfs)
	if err != nil {
		return nil, err
	}
	return pfs, validateFiles(pfs, td)
}

func newPolicyValidateCmd(s *streams) *cobra.Command {
	var (
		files []string
		td    string
	)
	cmd := &cobra.Command{
		Use:   "validate -f FILE",
		Short: "Check objects for schema and semantic errors, with line numbers",
		Long: `Check every object of the files as the server does on apply: unknown fields,
wrong types, invalid SPIFFE IDs, selectors, values and when keys, and CUSTOM
Rego that does not compile. Each problem is printed as FILE:LINE: message and
the command exits non-zero. Nothing is sent anywhere.`,
		Example: `  trustmesh policy validate -f policies.yaml
  trustmesh policy validate -f a.yaml -f b.yaml --trust-domain example.org`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			pfs, err := loadValidFiles(s, files, td)
			if err != nil {
				return err
			}
			for _, f := range pfs {
				fmt.Fprintf(s.out, "%s: %d object(s) valid\n", f.name, len(f.objs))
			}
			return nil
		},
	}
	cmd.Flags().StringArrayVarP(&files, "filename", "f", nil, "file of objects (repeatable; - for standard input)")
	cmd.Flags().StringVar(&td, "trust-domain", "", "trust domain for SPIFFE ID checks (default: a MeshConfig or Workload in the files, else cluster.local)")
	return cmd
}

func newPolicyLintCmd(s *streams) *cobra.Command {
	var (
		files  []string
		td     string
		strict bool
		out    outputFlag
	)
	cmd := &cobra.Command{
		Use:   "lint -f FILE",
		Short: "Find shadowed rules, ALLOW/DENY conflicts, over-permissive rules, policies selecting nothing",
		Long: `Look for policies that are valid but probably wrong: rules shadowed by earlier
ones, ALLOW and DENY rules that conflict, over-permissive rules (any caller on a
sensitive port), policies that select no workload (give the Workloads with -f
too), request principals without a RequestAuthentication, and more.

Each finding is printed as FILE:LINE: severity code: message. The command exits
non-zero when there is an error-level finding (with --strict, any warning too).`,
		Example: `  trustmesh policy lint -f policies.yaml -f workloads.yaml
  trustmesh policy lint -f policies.yaml --strict -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			pfs, err := loadValidFiles(s, files, td)
			if err != nil {
				return err
			}
			objs := objectsOf(pfs)
			in := lint.Input{Policies: objs.AuthzPolicies, RequestAuthentications: objs.RequestAuths, Workloads: objs.Workloads, Services: objs.Services}
			where := map[string]struct {
				f   *policyFile
				doc int
			}{}
			for fi := range pfs {
				f := &pfs[fi]
				for i, o := range f.objs {
					where[objectLabel(o)] = struct {
						f   *policyFile
						doc int
					}{f, f.doc(i)}
				}
			}
			findings := lint.Lint(in)
			fail := false
			for _, fd := range findings {
				fail = fail || fd.Severity == lint.Error || (strict && fd.Severity == lint.Warning)
			}
			if out.format == "json" {
				if findings == nil {
					findings = []lint.Finding{}
				}
				if err := printStructured(s.out, "json", findings); err != nil {
					return err
				}
			} else {
				for _, fd := range findings {
					pos := "-"
					if w, ok := where[fd.Object]; ok {
						pos = w.f.name
						if line := w.f.loc.Line(w.doc, fd.Field); line > 0 {
							pos += ":" + strconv.Itoa(line)
						}
					}
					fmt.Fprintf(s.out, "%s: %s %s: %s: %s: %s\n", pos, fd.Severity, fd.Code, fd.Object, fd.Field, fd.Message)
				}
				if len(findings) == 0 {
					fmt.Fprintln(s.out, "no findings")
				}
			}
			if fail {
				return ExitError{Code: 1}
			}
			return nil
		},
	}
	cmd.Flags().StringArrayVarP(&files, "filename", "f", nil, "file of objects (repeatable; - for standard input)")
	cmd.Flags().StringVar(&td, "trust-domain", "", "trust domain for SPIFFE ID checks (default: from the files, else cluster.local)")
	cmd.Flags().BoolVar(&strict, "strict", false, "exit non-zero on warnings too")
	out.register(cmd, "text", "text", "json")
	return cmd
}

// objectLabel names an object the way lint findings do:
// `AuthorizationPolicy "default/orders"`.
func objectLabel(o policy.Object) string {
	m := o.GetMeta()
	if o.Namespaced() {
		return fmt.Sprintf("%s %q", o.GetKind(), m.Namespace+"/"+m.Name)
	}
	return fmt.Sprintf("%s %q", o.GetKind(), m.Name)
}

func newPolicyDiffCmd(s *streams) *cobra.Command {
	var (
		cf       clientFlags
		files    []string
		kind, ns string
		revision int64
		exitCode bool
	)
	cmd := &cobra.Command{
		Use:   "diff (-f FILE | NAME --revision N)",
		Short: "Show what applying a file would change, or how a revision differs from now",
		Long: `With -f, compare each object of the file with the server's current version
(or, with --revision N, with the version at store revision N). With NAME and
--revision N, compare that revision of the stored object with its current one.
The output is a unified diff of the YAML; metadata.revision is left out.
--exit-code exits 1 when there are differences, for scripts.`,
		Example: `  trustmesh policy diff -f policies.yaml --data-dir ./data
  trustmesh policy diff orders-allow --revision 12 -n shop --data-dir ./data
  trustmesh policy diff -f policies.yaml --exit-code --credentials ~/.trustmesh/ci`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := cf.client()
			if err != nil {
				return err
			}
			type pair struct {
				label, oldLabel, newLabel string
				old, new                  []byte
			}
			var pairs []pair
			switch {
			case len(args) == 1 && len(files) == 0:
				if revision <= 0 {
					return errors.New("NAME needs --revision N: the stored revision to compare with the current one")
				}
				k, err := policy.ResolveKind(kind)
				if err != nil {
					return err
				}
				hist, err := fetchHistory(cmd, c, k, ns, args[0])
				if err != nil {
					return err
				}
				old, err := revisionYAML(hist, revision)
				if err != nil {
					return err
				}
				cur := hist[len(hist)-1]
				curYAML := []byte{}
				if cur["deleted"] != true {
					curYAML = objectYAML(cur)
				}
				pairs = append(pairs, pair{k + " " + args[0], "revision " + strconv.FormatInt(revision, 10), "current", old, curYAML})
			case len(args) == 0 && len(files) > 0:
				pfs, err := loadFiles(s, files)
				if err != nil {
					return err
				}
				for _, f := range pfs {
					for _, o := range f.objs {
						m := o.GetMeta()
						m.Revision, m.CreationRevision = 0, 0
						local, err := policy.ToYAML(o)
						if err != nil {
							return err
						}
						hist, err := fetchHistory(cmd, c, o.GetKind(), m.Namespace, m.Name)
						var se *adminapi.StatusError
						if errors.As(err, &se) && se.Code == http.StatusNotFound {
							hist, err = nil, nil
						}
						if err != nil {
							return err
						}
						var remote []byte
						remoteLabel := "server (current)"
						if revision > 0 {
							remoteLabel = "server (revision " + strconv.FormatInt(revision, 10) + ")"
							if remote, err = revisionYAML(hist, revision); err != nil {
								remote = nil // absent at that revision
							}
						} else if len(hist) > 0 && hist[len(hist)-1]["deleted"] != true {
							remote = objectYAML(hist[len(hist)-1])
						}
						pairs = append(pairs, pair{objectLabel(o), remoteLabel, f.name, remote, local})
					}
				}
			default:
				return errors.New("give -f FILE, or NAME with --revision N")
			}
			changed := false
			for _, p := range pairs {
				d := unifiedDiff(p.oldLabel, p.newLabel, p.old, p.new)
				if d == "" {
					fmt.Fprintf(s.out, "%s: no changes\n", p.label)
					continue
				}
				changed = true
				fmt.Fprintf(s.out, "%s:\n%s", p.label, d)
			}
			if changed && exitCode {
				return ExitError{Code: 1}
			}
			return nil
		},
	}
	cmd.Flags().StringArrayVarP(&files, "filename", "f", nil, "file of objects to compare with the server (repeatable)")
	cmd.Flags().StringVar(&kind, "kind", policy.KindAuthorizationPolicy, "kind of NAME")
	cmd.Flags().StringVarP(&ns, "namespace", "n", "", "namespace of NAME (default \"default\")")
	cmd.Flags().Int64Var(&revision, "revision", 0, "store revision to compare with (see policy history)")
	cmd.Flags().BoolVar(&exitCode, "exit-code", false, "exit 1 when there are differences")
	cf.register(cmd)
	return cmd
}

// fetchHistory returns every revision of an object, oldest first, as
// decoded JSON maps.
func fetchHistory(cmd *cobra.Command, c *adminapi.Client, kind, ns, name string) ([]map[string]any, error) {
	q := url.Values{"kind": {kind}, "name": {name}}
	if ns != "" {
		q.Set("namespace", ns)
	}
	var resp adminapi.ObjectsResponse
	if err := c.Do(cmd.Context(), http.MethodGet, adminapi.PathHistory, q, nil, &resp); err != nil {
		return nil, err
	}
	out := make([]map[string]any, 0, len(resp.Items))
	for _, it := range resp.Items {
		var m map[string]any
		if err := json.Unmarshal(it, &m); err != nil {
			return nil, fmt.Errorf("decode server response: %w", err)
		}
		out = append(out, m)
	}
	return out, nil
}

func metaOf(o map[string]any) map[string]any {
	m, _ := o["metadata"].(map[string]any)
	return m
}

func revisionOf(o map[string]any) int64 {
	if r, ok := metaOf(o)["revision"].(float64); ok {
		return int64(r)
	}
	return 0
}

// revisionYAML is the YAML of the history entry at revision rev.
func revisionYAML(hist []map[string]any, rev int64) ([]byte, error) {
	var revs []string
	for _, h := range hist {
		if revisionOf(h) == rev {
			if h["deleted"] == true {
				return nil, fmt.Errorf("revision %d is the object's deletion", rev)
			}
			return objectYAML(h), nil
		}
		revs = append(revs, strconv.FormatInt(revisionOf(h), 10))
	}
	return nil, fmt.Errorf("the object has no revision %d; its revisions are %s", rev, strings.Join(revs, ", "))
}

// objectYAML renders a stored object without its revision fields.
func objectYAML(o map[string]any) []byte {
	c := make(map[string]any, len(o))
	for k, v := range o {
		c[k] = v
	}
	m := make(map[string]any)
	for k, v := range metaOf(o) {
		if k != "revision" && k != "creationRevision" {
			m[k] = v
		}
	}
	c["metadata"] = m
	b, err := yaml.Marshal(c)
	if err != nil {
		return []byte(fmt.Sprint(c))
	}
	return b
}

func newPolicyHistoryCmd(s *streams) *cobra.Command {
	var (
		cf       clientFlags
		kind, ns string
		out      outputFlag
	)
	cmd := &cobra.Command{
		Use:   "history NAME",
		Short: "List every stored revision of a policy: when, by whom, what changed",
		Long: `List the revisions of an object (an AuthorizationPolicy unless --kind says
otherwise), oldest first, with the time, the operator who wrote it and the
action. Pass a revision to policy diff or policy rollback.`,
		Example: `  trustmesh policy history orders-allow -n shop --data-dir ./data
  trustmesh policy history jwt --kind RequestAuthentication -o yaml`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			k, err := policy.ResolveKind(kind)
			if err != nil {
				return err
			}
			c, err := cf.client()
			if err != nil {
				return err
			}
			q := url.Values{"kind": {k}, "name": {args[0]}}
			if ns != "" {
				q.Set("namespace", ns)
			}
			var resp adminapi.ObjectsResponse
			if err := c.Do(cmd.Context(), http.MethodGet, adminapi.PathHistory, q, nil, &resp); err != nil {
				return err
			}
			if out.format != "table" {
				return printObjects(s.out, out.format, k, resp.Items, false)
			}
			tw := tabwriter.NewWriter(s.out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "REVISION\tTIME\tACTOR\tACTION")
			for i, e := range resp.Entries {
				action := "updated"
				switch {
				case e.Deleted:
					action = "deleted"
				case i == 0 || resp.Entries[i-1].Deleted:
					action = "created"
				}
				fmt.Fprintf(tw, "%d\t%s\t%s\t%s\n", e.Revision, e.Time.UTC().Format(time.RFC3339), orDash(e.Actor), action)
			}
			return tw.Flush()
		},
	}
	cmd.Flags().StringVar(&kind, "kind", policy.KindAuthorizationPolicy, "kind of the object")
	cmd.Flags().StringVarP(&ns, "namespace", "n", "", "namespace (default \"default\")")
	out.register(cmd, "table", "table", "yaml", "json")
	cf.register(cmd)
	return cmd
}

func newPolicyRollbackCmd(s *streams) *cobra.Command {
	var (
		cf       clientFlags
		kind, ns string
		to       int64
		dryRun   bool
	)
	cmd := &cobra.Command{
		Use:   "rollback NAME --to REV",
		Short: "Restore a policy to an earlier revision (written as a new revision)",
		Long: `Write the content of revision REV of the object as its new revision. History
is never rewritten: the rollback is one more revision, audited as a rollback,
and can itself be rolled back. Proxies receive the restored policy at once.`,
		Example: `  trustmesh policy rollback orders-allow --to 42 -n shop --data-dir ./data
  trustmesh policy rollback jwt --kind RequestAuthentication --to 7 --dry-run`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if to <= 0 {
				return errors.New("--to REV is required: a revision from `trustmesh policy history " + args[0] + "`")
			}
			k, err := policy.ResolveKind(kind)
			if err != nil {
				return err
			}
			c, err := cf.client()
			if err != nil {
				return err
			}
			var res adminapi.ApplyResult
			req := adminapi.RollbackRequest{Kind: k, Namespace: ns, Name: args[0], Revision: to, DryRun: dryRun}
			if err := c.Do(cmd.Context(), http.MethodPost, adminapi.PathRollback, nil, req, &res); err != nil {
				return err
			}
			name := res.Name
			if res.Namespace != "" {
				name = res.Namespace + "/" + res.Name
			}
			fmt.Fprintf(s.out, "%s %s rolled back to the content of revision %d: %s (revision %d)\n", res.Kind, name, to, res.Action, res.Revision)
			return nil
		},
	}
	cmd.Flags().StringVar(&kind, "kind", policy.KindAuthorizationPolicy, "kind of the object")
	cmd.Flags().StringVarP(&ns, "namespace", "n", "", "namespace (default \"default\")")
	cmd.Flags().Int64Var(&to, "to", 0, "the revision to restore")
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "report what would happen without writing")
	cf.register(cmd)
	return cmd
}

func newPolicyImportCmd(s *streams) *cobra.Command {
	var (
		file, rootNS, td string
		fromIstio        bool
		skipOthers       bool
	)
	cmd := &cobra.Command{
		Use:   "import --istio -f FILE",
		Short: "Convert Istio AuthorizationPolicy, PeerAuthentication and RequestAuthentication YAML",
		Long: `Read Istio security objects (security.istio.io/v1 or v1beta1) unchanged and
print the equivalent trustmesh objects as YAML, ready for trustmesh apply -f -.
Policies in Istio's root namespace move to trustmesh-system, so they stay
mesh-wide; istio.io/dry-run becomes trustmesh.dev/dry-run. A field trustmesh
does not support is an error naming it; nothing is printed then.`,
		Example: `  trustmesh policy import --istio -f istio-authz.yaml > trustmesh-authz.yaml
  kubectl get authorizationpolicies -A -o yaml | trustmesh policy import --istio -f - | trustmesh apply -f - --data-dir ./data`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if !fromIstio {
				return errors.New("--istio is required: Istio is the only source format")
			}
			data, err := readFileArg(s, file)
			if err != nil {
				return err
			}
			opts := istio.Options{RootNamespace: rootNS, SkipOtherKinds: skipOthers}
			if td != "" {
				if opts.TrustDomain, err = spiffeid.TrustDomainFromString(td); err != nil {
					return fmt.Errorf("--trust-domain %q: %w", td, err)
				}
			}
			objs, err := istio.Convert(data, opts)
			if err != nil {
				return prefixLines(file, policy.NewLocator(data).AnnotateDecode(err))
			}
			td := opts.TrustDomain
			if td.IsZero() {
				td = spiffeid.RequireTrustDomainFromString(istio.DefaultTrustDomain)
			}
			var errs []error
			for _, o := range objs {
				// What Convert's validation cannot see: CUSTOM Rego, inline JWKS.
				if err := authz.Validate(o, td); err != nil {
					errs = append(errs, err)
				}
			}
			if err := errors.Join(errs...); err != nil {
				return fmt.Errorf("%s: %w", file, err)
			}
			var b bytes.Buffer
			for i, o := range objs {
				y, err := policy.ToYAML(o)
				if err != nil {
					return err
				}
				if i > 0 {
					b.WriteString("---\n")
				}
				b.Write(y)
			}
			_, err = s.out.Write(b.Bytes())
			return err
		},
	}
	cmd.Flags().BoolVar(&fromIstio, "istio", false, "the input is Istio YAML (required)")
	cmd.Flags().StringVarP(&file, "filename", "f", "", "file of Istio objects (- for standard input)")
	cmd.Flags().StringVar(&rootNS, "root-namespace", "istio-system", "Istio's root namespace in the input")
	cmd.Flags().StringVar(&td, "trust-domain", "", "trust domain to validate against (default cluster.local)")
	cmd.Flags().BoolVar(&skipOthers, "skip-other-kinds", false, "skip objects that are not Istio security kinds instead of failing")
	return cmd
}

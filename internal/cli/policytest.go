package cli

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/spf13/cobra"
	"sigs.k8s.io/yaml"

	"github.com/trustmesh/trustmesh/internal/policy"
	"github.com/trustmesh/trustmesh/internal/policy/simulate"
	"github.com/trustmesh/trustmesh/internal/server/adminapi"
)

// testCases is the --cases file of policy test.
type testCases struct {
	Cases []testCase `json:"cases"`
}

// testCase is one request and the decision expected for it.
type testCase struct {
	Name string `json:"name"`
	// From is the caller's SPIFFE ID; empty for plaintext.
	From string `json:"from,omitempty"`
	// To is a Service "name[.namespace]" or a Workload's SPIFFE ID, from
	// the -f files; or Destination describes the workload inline.
	To          string            `json:"to,omitempty"`
	Destination *testDestination  `json:"destination,omitempty"`
	Port        uint32            `json:"port,omitempty"`
	TCP         bool              `json:"tcp,omitempty"`
	Method      string            `json:"method,omitempty"`
	Path        string            `json:"path,omitempty"`
	Headers     map[string]string `json:"headers,omitempty"`
	// Claims are the payload of a JWT taken as verified.
	Claims   map[string]any `json:"claims,omitempty"`
	SourceIP string         `json:"sourceIP,omitempty"`
	// Expect is ALLOW or DENY; Reason and Policy, if set, must also match
	// (Policy "namespace/name" of the deciding policy, "" for a default).
	Expect string  `json:"expect"`
	Reason string  `json:"reason,omitempty"`
	Policy *string `json:"policy,omitempty"`
}

// testDestination is a destination workload written inline.
type testDestination struct {
	Namespace string            `json:"namespace,omitempty"`
	Labels    map[string]string `json:"labels,omitempty"`
	// Port is the application port (default 8080).
	Port uint32 `json:"port,omitempty"`
}

func newPolicyTestCmd(s *streams) *cobra.Command {
	var (
		files   []string
		cases   string
		td      string
		verbose bool
	)
	cmd := &cobra.Command{
		Use:   "test -f POLICIES --cases CASES.yaml",
		Short: "Check policies against a table of requests and expected decisions (for CI)",
		Long: `Decide every case of CASES.yaml with the policies of the -f files, exactly as
the destination's proxy would (path normalization, Istio semantics), and compare
with the expected decision. Prints PASS or FAIL per case, with the explanation
of each failure, and exits 1 when any case fails. No server is needed.

CASES.yaml:

  cases:
  - name: frontend reads orders
    from: spiffe://example.org/ns/shop/sa/frontend   # leave out for plaintext
    to: orders.shop            # a Service in the -f files (or a Workload's SPIFFE ID)
    method: GET
    path: /orders/17
    expect: ALLOW
  - name: nobody deletes
    from: spiffe://example.org/ns/shop/sa/frontend
    destination: {namespace: shop, labels: {app: orders}, port: 8080}   # inline workload
    method: DELETE
    path: /orders/17
    headers: {x-tenant: acme}
    claims: {iss: https://idp.example.org, sub: alice, groups: [ops]}   # a verified JWT
    expect: DENY
    reason: deny-policy        # optional: the reason code
    policy: shop/no-deletes    # optional: the deciding policy ("" for a default)`,
		Example: `  trustmesh policy test -f policies.yaml -f services.yaml --cases cases.yaml
  trustmesh policy test -f policies.yaml --cases cases.yaml -v`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			pfs, err := loadValidFiles(s, files, td)
			if err != nil {
				return err
			}
			if cases == "" {
				return errors.New("--cases CASES.yaml is required")
			}
			data, err := readFileArg(s, cases)
			if err != nil {
				return err
			}
			var tc testCases
			if err := yaml.UnmarshalStrict(data, &tc); err != nil {
				return fmt.Errorf("%s: %w", cases, err)
			}
			if len(tc.Cases) == 0 {
				return fmt.Errorf("%s: no cases: want a top-level cases: list", cases)
			}
			in := objectsOf(pfs)
			failed := 0
			for i, c := range tc.Cases {
				name := c.Name
				if name == "" {
					name = fmt.Sprintf("case %d", i+1)
				}
				ok, msg, err := runCase(cmd, in, c, i)
				if err != nil {
					return fmt.Errorf("%s: %s: %w", cases, name, err)
				}
				if ok {
					fmt.Fprintf(s.out, "PASS  %s\n", name)
					if verbose {
						fmt.Fprintf(s.out, "      %s\n", indent(msg))
					}
					continue
				}
				failed++
				fmt.Fprintf(s.out, "FAIL  %s\n      %s\n", name, indent(msg))
			}
			fmt.Fprintf(s.out, "%d case(s), %d passed, %d failed\n", len(tc.Cases), len(tc.Cases)-failed, failed)
			if failed > 0 {
				return ExitError{Code: 1}
			}
			return nil
		},
	}
	cmd.Flags().StringArrayVarP(&files, "filename", "f", nil, "file of policies (and Services, Workloads) (repeatable)")
	cmd.Flags().StringVar(&cases, "cases", "", "YAML file of test cases")
	cmd.Flags().StringVar(&td, "trust-domain", "", "trust domain for SPIFFE ID checks (default: from the files, else cluster.local)")
	cmd.Flags().BoolVarP(&verbose, "verbose", "v", false, "explain passing cases too")
	return cmd
}

// objectsOf sorts the objects of the files by kind.
func objectsOf(pfs []policyFile) simulate.Input {
	var in simulate.Input
	for _, f := range pfs {
		for _, o := range f.objs {
			switch o := o.(type) {
			case *policy.AuthorizationPolicy:
				in.AuthzPolicies = append(in.AuthzPolicies, o)
			case *policy.RequestAuthentication:
				in.RequestAuths = append(in.RequestAuths, o)
			case *policy.Workload:
				in.Workloads = append(in.Workloads, o)
			case *policy.Service:
				in.Services = append(in.Services, o)
			}
		}
	}
	return in
}

func indent(s string) string { return strings.ReplaceAll(s, "\n", "\n      ") }

// runCase decides one case; the message is the explanation.
func runCase(cmd *cobra.Command, in simulate.Input, c testCase, i int) (bool, string, error) {
	want := strings.ToUpper(c.Expect)
	if want != "ALLOW" && want != "DENY" {
		return false, "", fmt.Errorf("expect %q: want ALLOW or DENY", c.Expect)
	}
	req := simulate.Request{From: c.From, To: c.To, Port: c.Port, TCP: c.TCP, Method: c.Method, Path: c.Path,
		Headers: c.Headers, Claims: c.Claims, SourceIP: c.SourceIP}
	switch {
	case c.Destination != nil && c.To != "":
		return false, "", errors.New("give to or destination, not both")
	case c.Destination != nil:
		d := c.Destination
		ns := d.Namespace
		if ns == "" {
			ns = policy.DefaultNamespace
		}
		id := fmt.Sprintf("spiffe://policy-test.invalid/case/%d", i)
		in.Workloads = append([]*policy.Workload{{Metadata: policy.Metadata{Name: "destination", Namespace: ns, Labels: d.Labels}, Spec: policy.WorkloadSpec{SPIFFEID: id}}}, in.Workloads...)
		req.To, req.Port = id, d.Port
		if req.Port == 0 {
			req.Port = 8080
		}
	case c.To == "":
		return false, "", errors.New("to (a Service or a Workload's SPIFFE ID) or destination is required")
	}
	res, err := simulate.Explain(cmd.Context(), in, &req)
	if err != nil {
		return false, "", err
	}
	got := "DENY"
	if res.Allowed {
		got = "ALLOW"
	}
	ok := got == want && (c.Reason == "" || c.Reason == res.Reason) && (c.Policy == nil || *c.Policy == res.Policy)
	msg := res.Summary
	if !ok {
		msg = fmt.Sprintf("got %s (%s) by %s, want %s", got, res.Reason, orNone(res.Policy), want)
		if c.Reason != "" {
			msg += " (" + c.Reason + ")"
		}
		if c.Policy != nil {
			msg += " by " + orNone(*c.Policy)
		}
		msg += "\n" + res.Summary
	}
	return ok, msg, nil
}

func orNone(p string) string {
	if p == "" {
		return "no policy"
	}
	return p
}

func newExplainCmd(s *streams) *cobra.Command {
	var (
		cf      clientFlags
		req     adminapi.ExplainRequest
		headers []string
		out     outputFlag
	)
	cmd := &cobra.Command{
		Use:   "explain --from SPIFFE_ID --to SERVICE --method M --path P",
		Short: "Show the decision for a request and the exact policy, rule and condition that decided",
		Long: `Decide a described request against the server's current policies, exactly as
the destination's proxy would: path normalization, the JWT (verified with the
RequestAuthentications that apply), CUSTOM, DENY, then ALLOW. Prints the
decision, the deciding policy with its revision and rule, the rule itself, and
for every other rule the first condition that did not hold.`,
		Example: `  trustmesh explain --from spiffe://example.org/ns/shop/sa/frontend --to orders.shop --method GET --path /orders/1 --data-dir ./data
  trustmesh explain --to payments --method POST --path /charge --header x-tenant=acme --jwt "$TOKEN"
  trustmesh explain --from spiffe://example.org/ns/shop/sa/batch --to db.shop --tcp -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if req.To == "" {
				return errors.New("--to SERVICE[.NAMESPACE] (or a workload's SPIFFE ID with --port) is required")
			}
			for _, h := range headers {
				k, v, ok := strings.Cut(h, "=")
				if !ok || k == "" {
					return fmt.Errorf("--header %q: want NAME=VALUE", h)
				}
				if req.Headers == nil {
					req.Headers = map[string]string{}
				}
				req.Headers[k] = v
			}
			c, err := cf.client()
			if err != nil {
				return err
			}
			var res adminapi.ExplainResponse
			if err := c.Do(cmd.Context(), http.MethodPost, adminapi.PathExplain, nil, req, &res); err != nil {
				return err
			}
			if out.format == "json" {
				return printStructured(s.out, "json", res)
			}
			printExplanation(s.out, &res)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&req.From, "from", "", "the caller's SPIFFE ID (leave out for a plaintext caller)")
	f.StringVar(&req.To, "to", "", "the destination Service NAME[.NAMESPACE], or a workload's SPIFFE ID")
	f.Uint32Var(&req.Port, "port", 0, "service port (default the first), or the app port with a SPIFFE ID --to")
	f.StringVar(&req.Method, "method", "GET", "HTTP method")
	f.StringVar(&req.Path, "path", "/", "request path (and query)")
	f.StringArrayVar(&headers, "header", nil, "request header NAME=VALUE (repeatable)")
	f.StringVar(&req.JWT, "jwt", "", "bearer token, verified as the proxy would")
	f.StringVar(&req.SourceIP, "source-ip", "", "the caller's IP address (default 127.0.0.1)")
	f.BoolVar(&req.TCP, "tcp", false, "a TCP connection rather than an HTTP request")
	out.register(cmd, "text", "text", "json")
	cf.register(cmd)
	return cmd
}

func printExplanation(w io.Writer, r *adminapi.ExplainResponse) {
	verdict := "DENY"
	if r.Allowed {
		verdict = "ALLOW"
	}
	fmt.Fprintf(w, "decision:  %s (%s)", verdict, r.Reason)
	if r.HTTPStatus != 0 {
		fmt.Fprintf(w, ", the proxy answers %d", r.HTTPStatus)
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "workload:  %s, app port %d (store revision %d)\n", r.Workload, r.Port, r.StoreRevision)
	if r.Path != "" {
		fmt.Fprintf(w, "path:      %s (normalized)\n", r.Path)
	}
	if r.AuthNote != "" {
		fmt.Fprintf(w, "jwt:       %s\n", r.AuthNote)
	}
	if r.Policy != "" {
		fmt.Fprintf(w, "policy:    %s (revision %d), rule %d\n", r.Policy, r.PolicyRevision, r.Rule)
	}
	if r.RuleYAML != "" {
		fmt.Fprintf(w, "rule:\n  %s\n", strings.ReplaceAll(strings.TrimRight(r.RuleYAML, "\n"), "\n", "\n  "))
	}
	if r.Audited != "" {
		fmt.Fprintf(w, "audited:   by %s\n", r.Audited)
	}
	if r.Shadow != "" {
		fmt.Fprintf(w, "dry-run:   %s\n", r.Shadow)
	}
	fmt.Fprintf(w, "why:       %s\n", strings.ReplaceAll(r.Summary, "\n", "\n           "))
	if len(r.Steps) > 0 {
		fmt.Fprintln(w, "rules:")
		for _, st := range r.Steps {
			mark := "no "
			if st.Matched {
				mark = "yes"
			}
			dry := ""
			if st.DryRun {
				dry = " (dry-run)"
			}
			fmt.Fprintf(w, "  %s %s %s%s rule %d", mark, st.Action, st.Policy, dry, st.Rule)
			switch {
			case st.Matched:
			case st.Field == "":
				fmt.Fprintf(w, ": %s", st.Detail)
			default:
				fmt.Fprintf(w, ": %s: %s", st.Field, st.Detail)
			}
			fmt.Fprintln(w)
		}
	}
}

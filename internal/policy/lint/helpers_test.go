package lint

import (
	"fmt"
	"sort"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/trustmesh/trustmesh/internal/policy"
)

// td is the trust domain of the test mesh.
var td = spiffeid.RequireTrustDomainFromString("cluster.local")

// decodeInput decodes and validates YAML documents ("---"-separated, each
// without apiVersion) into an Input. Workloads are nil (unknown) unless
// the documents hold some; Services likewise.
func decodeInput(t *testing.T, docs string) Input {
	t.Helper()
	var in Input
	if strings.TrimSpace(docs) == "" {
		return in
	}
	var withVersion []string
	for _, d := range strings.Split(docs, "\n---\n") {
		withVersion = append(withVersion, "apiVersion: trustmesh.dev/v1\n"+strings.TrimLeft(d, "\n"))
	}
	objs, err := policy.Decode([]byte(strings.Join(withVersion, "\n---\n")))
	if err != nil {
		t.Fatalf("decoding the test's documents: %v", err)
	}
	for _, o := range objs {
		if err := policy.Validate(o, td); err != nil {
			t.Fatalf("the test's documents are not valid: %v", err)
		}
		switch o := o.(type) {
		case *policy.AuthorizationPolicy:
			in.Policies = append(in.Policies, o)
		case *policy.RequestAuthentication:
			in.RequestAuthentications = append(in.RequestAuthentications, o)
		case *policy.Workload:
			in.Workloads = append(in.Workloads, o)
		case *policy.Service:
			in.Services = append(in.Services, o)
		default:
			t.Fatalf("unexpected %s in the test's documents", o.GetKind())
		}
	}
	return in
}

// workload is a Workload document: labels are "k: v" pairs, comma
// separated.
func workload(ns, name, labels string) string {
	return fmt.Sprintf(`kind: Workload
metadata: {name: %[2]s, namespace: %[1]s, labels: {%[3]s}}
spec: {spiffeID: "spiffe://cluster.local/ns/%[1]s/sa/%[2]s", parentID: "spiffe://cluster.local/trustmesh/node/n1", selectors: ["unix:uid:1000"]}`, ns, name, labels)
}

// service is a Service document selecting app: name, with ports such as
// "{port: 5432, protocol: TCP}".
func service(ns, name string, ports ...string) string {
	return fmt.Sprintf(`kind: Service
metadata: {name: %[2]s, namespace: %[1]s}
spec: {ports: [%[3]s], selector: {matchLabels: {app: %[2]s}}, spiffeIDs: ["spiffe://cluster.local/ns/%[1]s/sa/%[2]s"]}`, ns, name, strings.Join(ports, ", "))
}

// docs joins documents.
func docs(ds ...string) string { return strings.Join(ds, "\n---\n") }

// lintCase is one case of a check's table: documents, optional changes to
// the Input, and the findings of the check's code. A wanted Message is a
// substring of the finding's.
type lintCase struct {
	name  string
	docs  string
	input func(*Input)
	want  []Finding
}

// runCases lints every case and compares the findings with the code.
func runCases(t *testing.T, code string, cases []lintCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			in := decodeInput(t, tc.docs)
			if tc.input != nil {
				tc.input(&in)
			}
			var got []Finding
			for _, f := range Lint(in) {
				if f.Code == code {
					got = append(got, f)
				}
			}
			for i := range tc.want {
				tc.want[i].Code = code
			}
			if diff := cmp.Diff(tc.want, got, cmpopts.IgnoreFields(Finding{}, "Message"), cmpopts.EquateEmpty()); diff != "" {
				t.Fatalf("findings (-want +got):\n%s\ngot:\n%s", diff, formatFindings(got))
			}
			for i, w := range tc.want {
				if !strings.Contains(got[i].Message, w.Message) {
					t.Errorf("finding %d: got message %q, want one containing %q", i, got[i].Message, w.Message)
				}
			}
		})
	}
}

func formatFindings(fs []Finding) string {
	lines := make([]string, len(fs))
	for i, f := range fs {
		lines[i] = "  " + f.String()
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

// apName is the Object of a policy.
func apName(ns, name string) string { return fmt.Sprintf("AuthorizationPolicy %q", ns+"/"+name) }

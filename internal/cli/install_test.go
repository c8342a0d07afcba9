package cli

import (
	"bytes"
	"io"
	"slices"
	"strings"
	"testing"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"

	"github.com/trustmesh/trustmesh/deploy/manifests"
	"github.com/trustmesh/trustmesh/internal/k8s/install"
)

// runInstall runs `trustmesh install ARGS` and returns its output.
func runInstall(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var out bytes.Buffer
	root := NewRoot(strings.NewReader(""), &out, io.Discard)
	root.SetArgs(append([]string{"install"}, args...))
	err := root.Execute()
	return out.String(), err
}

func TestInstallDryRun(t *testing.T) {
	got, err := runInstall(t, "--dry-run")
	if err != nil {
		t.Fatal(err)
	}
	if got != manifests.YAML {
		t.Error("install --dry-run does not print deploy/manifests/trustmesh.yaml")
	}

	got, err = runInstall(t, "--dry-run", "--namespace", "mesh", "--trust-domain", "example.org")
	if err != nil {
		t.Fatal(err)
	}
	want, err := install.Manifests(install.Config{Namespace: "mesh", TrustDomain: spiffeid.RequireTrustDomainFromString("example.org")})
	if err != nil {
		t.Fatal(err)
	}
	if got != string(want) {
		t.Error("install --dry-run --namespace mesh --trust-domain example.org does not print install.Manifests for them")
	}
}

func TestInstallErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		want []string
	}{
		{"without --dry-run", nil, []string{"--dry-run", "kubectl apply -f -", "deploy/helm/trustmesh"}},
		{"bad namespace", []string{"--dry-run", "-n", "Mesh"}, []string{"--namespace", `"Mesh"`}},
		{"bad trust domain", []string{"--dry-run", "--trust-domain", "Example.org"}, []string{"--trust-domain", `"Example.org"`}},
		{"empty trust domain", []string{"--dry-run", "--trust-domain", ""}, []string{"--trust-domain"}},
		{"argument", []string{"--dry-run", "trustmesh-system"}, []string{"unknown command"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := runInstall(t, tc.args...)
			if err == nil {
				t.Fatalf("install %q succeeded, want an error", tc.args)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
			if out != "" {
				t.Errorf("printed %d bytes before failing", len(out))
			}
		})
	}
}

// pendingFlags are flags the manifests pass that the binary does not have
// yet (none now: every flag of the chart exists). The test below logs those
// still missing; a flag missing from the binary and not listed fails it.
var pendingFlags = map[string]bool{}

// TestInstallManifestFlags checks that every flag the manifests pass to
// trustmesh is one its command has (or is pending), so that a renamed flag
// breaks this test instead of the cluster.
func TestInstallManifestFlags(t *testing.T) {
	root := NewRoot(strings.NewReader(""), io.Discard, io.Discard)
	var specs []corev1.PodSpec
	for doc := range strings.SplitSeq(manifests.YAML, "\n---\n") {
		var head struct{ Kind string }
		if err := yaml.Unmarshal([]byte(doc), &head); err != nil {
			t.Fatal(err)
		}
		switch head.Kind {
		case "Deployment":
			var d appsv1.Deployment
			if err := yaml.Unmarshal([]byte(doc), &d); err != nil {
				t.Fatal(err)
			}
			specs = append(specs, d.Spec.Template.Spec)
		case "DaemonSet":
			var d appsv1.DaemonSet
			if err := yaml.Unmarshal([]byte(doc), &d); err != nil {
				t.Fatal(err)
			}
			specs = append(specs, d.Spec.Template.Spec)
		}
	}
	if len(specs) != 2 {
		t.Fatalf("found %d workloads, want the server's Deployment and the agent's DaemonSet", len(specs))
	}
	checked := 0
	for _, spec := range specs {
		for _, c := range slices.Concat(spec.InitContainers, spec.Containers) {
			if !slices.Equal(c.Command, []string{"trustmesh"}) {
				continue // the agent's socket-dir init container runs chown
			}
			if len(c.Args) == 0 {
				t.Fatalf("container %s runs trustmesh without a command", c.Name)
			}
			sub, _, err := root.Find(c.Args[:1])
			if err != nil || sub == root {
				t.Fatalf("container %s: trustmesh has no command %q", c.Name, c.Args[0])
			}
			for _, arg := range c.Args[1:] {
				if !strings.HasPrefix(arg, "--") {
					continue
				}
				name, _, _ := strings.Cut(strings.TrimPrefix(arg, "--"), "=")
				key := sub.Name() + " --" + name
				switch {
				case sub.Flags().Lookup(name) != nil:
					checked++
				case pendingFlags[key]:
					t.Logf("trustmesh %s: pending (issue 9), not in the binary yet", key)
				default:
					t.Errorf("container %s passes trustmesh %s, which has no such flag", c.Name, key)
				}
			}
		}
	}
	if checked == 0 {
		t.Error("no flag checked")
	}
}

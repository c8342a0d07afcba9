package install

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/trustmesh/trustmesh/internal/k8s/k8stest"
)

func TestMain(m *testing.M) { k8stest.Main(m) }

// TestManifestsPassServerDryRun sends the manifests, and the chart rendered
// for several servers on PostgreSQL, to a real kube-apiserver with `kubectl
// apply --dry-run=server`: every object is validated and admitted as if
// created (kubectl's own schema validation included), nothing is stored. The
// namespace is one the test creates, since a dry run creates no Namespace for
// the objects in it.
func TestManifestsPassServerDryRun(t *testing.T) {
	kubectl, err := exec.LookPath("kubectl")
	if err != nil {
		t.Fatal("no kubectl: run make test-deps (it installs Debian's kubernetes-client)")
	}
	env := k8stest.Shared(t)
	dir := t.TempDir()
	kubeconfig := filepath.Join(dir, "kubeconfig")
	writeKubeconfig(t, env.Config, kubeconfig)

	for _, tc := range []struct {
		name   string
		render func(t *testing.T, ns string) []byte
	}{
		{"manifests", func(t *testing.T, ns string) []byte {
			out, err := Manifests(Config{Namespace: ns, TrustDomain: spiffeid.RequireTrustDomainFromString("example.org")})
			if err != nil {
				t.Fatal(err)
			}
			return out
		}},
		{"chart with postgres replicas", func(t *testing.T, ns string) []byte {
			return []byte(helm(t, false, slices.Concat([]string{"template", "trustmesh", chartDir, "--namespace", ns, "--include-crds"}, haValues)...))
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ns := env.NewNamespace(t)
			out := tc.render(t, ns)
			objs := parse(t, out)
			cmd := exec.CommandContext(t.Context(), kubectl, "--kubeconfig", kubeconfig, "--cache-dir", filepath.Join(dir, "cache"),
				"apply", "--dry-run=server", "-f", "-")
			cmd.Env = append(os.Environ(), "KUBECONFIG=", "HOME="+dir)
			cmd.Stdin = bytes.NewReader(out)
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			if err := cmd.Run(); err != nil {
				t.Fatalf("kubectl apply --dry-run=server: %v\n%s%s", err, stdout.String(), stderr.String())
			}
			var applied int
			for line := range strings.Lines(stdout.String()) {
				if strings.HasSuffix(strings.TrimSpace(line), "(server dry run)") {
					applied++
				}
			}
			if applied != len(objs) {
				t.Errorf("kubectl dry-ran %d objects, want %d:\n%s%s", applied, len(objs), stdout.String(), stderr.String())
			}
		})
	}
}

// writeKubeconfig writes a kubeconfig for cfg's admin connection to path.
func writeKubeconfig(t *testing.T, cfg *rest.Config, path string) {
	t.Helper()
	host := cfg.Host
	if !strings.Contains(host, "://") {
		host = "https://" + host
	}
	kc := clientcmdapi.NewConfig()
	kc.Clusters["k8stest"] = &clientcmdapi.Cluster{Server: host, CertificateAuthorityData: cfg.CAData}
	kc.AuthInfos["admin"] = &clientcmdapi.AuthInfo{ClientCertificateData: cfg.CertData, ClientKeyData: cfg.KeyData, Token: cfg.BearerToken}
	kc.Contexts["k8stest"] = &clientcmdapi.Context{Cluster: "k8stest", AuthInfo: "admin"}
	kc.CurrentContext = "k8stest"
	if err := clientcmd.WriteToFile(*kc, path); err != nil {
		t.Fatal(err)
	}
}

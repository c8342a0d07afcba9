package e2e

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/trustmesh/trustmesh/internal/k8s/k8stest"
)

// One API server (etcd + kube-apiserver, the CRDs installed) serves every
// test of the binary that needs one, started on first use and stopped by
// TestMain.
var (
	k8sOnce sync.Once
	k8sEnv  *k8stest.Env
	k8sErr  error
)

func kubernetes(t *testing.T) *k8stest.Env {
	t.Helper()
	k8sOnce.Do(func() { k8sEnv, k8sErr = k8stest.Start() })
	if k8sErr != nil {
		t.Fatalf("start the Kubernetes API server: %v", k8sErr)
	}
	return k8sEnv
}

func stopKubernetes() {
	if k8sEnv != nil {
		if err := k8sEnv.Close(); err != nil {
			fmt.Fprintln(os.Stderr, "stop the Kubernetes API server:", err)
		}
	}
}

// writeKubeconfig writes a kubeconfig file for c, for the server process.
func writeKubeconfig(t *testing.T, c *rest.Config) string {
	t.Helper()
	kc := clientcmdapi.NewConfig()
	kc.Clusters["test"] = &clientcmdapi.Cluster{Server: c.Host, CertificateAuthorityData: c.CAData}
	kc.AuthInfos["admin"] = &clientcmdapi.AuthInfo{ClientCertificateData: c.CertData, ClientKeyData: c.KeyData, Token: c.BearerToken}
	kc.Contexts["test"] = &clientcmdapi.Context{Cluster: "test", AuthInfo: "admin"}
	kc.CurrentContext = "test"
	path := filepath.Join(t.TempDir(), "kubeconfig")
	if err := clientcmd.WriteToFile(*kc, path); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestKubernetesResources: a trustmesh server with --kubernetes takes an
// AuthorizationPolicy created in the API server to the running proxies as
// fast as trustmesh apply, reports it in the resource's status once the
// proxies ACKed it, audits it with the Kubernetes actor, and removes it when
// the resource is deleted.
func TestKubernetesResources(t *testing.T) {
	t.Parallel()
	env := kubernetes(t)
	const td = "k8s.example"
	s := startServer(t, td, "--kubernetes", "--kubeconfig", writeKubeconfig(t, env.Config))
	appAddr, appPort := echoApp(t)
	s.apply(t, meshYAML(td, appPort))
	a := startAgent(t, s, filepath.Join(t.TempDir(), "agent"), s.token(t, "node-1"))
	const ordersID, frontID = "spiffe://" + td + "/ns/default/sa/orders", "spiffe://" + td + "/ns/default/sa/frontend"
	inbound, outbound := freeAddr(t), freeAddr(t)
	startProxy(t, s, a, ordersID, "--inbound", inbound+"="+appAddr)
	startProxy(t, s, a, frontID, "--outbound", outbound+"=orders:80")
	url := "http://" + outbound + "/orders/1"
	waitForRequest(t, url)
	waitProxiesReady(t, s, ordersID, frontID)

	// Its own namespace in the API server and in the mesh: the proxies'
	// workloads are in "default", so the policy goes there.
	u := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "trustmesh.dev/v1", "kind": "AuthorizationPolicy",
		"metadata": map[string]any{"namespace": "default", "name": "k8s-deny-orders"},
		"spec": map[string]any{
			"selector": map[string]any{"matchLabels": map[string]any{"app": "orders"}},
			"action":   "DENY",
			"rules": []any{map[string]any{
				"from": []any{map[string]any{"source": map[string]any{"principals": []any{frontID}}}},
				"to":   []any{map[string]any{"operation": map[string]any{"paths": []any{"/orders/*"}}}},
			}},
		},
	}}
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	start := time.Now()
	if err := env.Client.Create(t.Context(), u, client.FieldOwner("kubectl-client-side-apply")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the DENY created in Kubernetes to be enforced", 10*time.Second, func() bool {
		err := request(c, url)
		return err != nil && strings.Contains(err.Error(), "HTTP 403")
	})
	t.Logf("AuthorizationPolicy created in the API server enforced by the proxies %s later", time.Since(start).Round(time.Millisecond))

	// The status says what the mesh did.
	var st map[string]any
	waitFor(t, "the resource's status to report the revision and both proxies' ACKs", 20*time.Second, func() bool {
		got := &unstructured.Unstructured{}
		got.SetGroupVersionKind(schema.GroupVersionKind{Group: "trustmesh.dev", Version: "v1", Kind: "AuthorizationPolicy"})
		if err := env.Client.Get(t.Context(), types.NamespacedName{Namespace: "default", Name: "k8s-deny-orders"}, got); err != nil {
			return false
		}
		st, _, _ = unstructured.NestedMap(got.Object, "status")
		rev, _, _ := unstructured.NestedInt64(st, "appliedRevision")
		acked, _, _ := unstructured.NestedInt64(st, "proxies", "acked")
		return rev > 0 && acked == 2
	})
	t.Logf("status: %v", st)
	if out := mustCLI(t, "get", "authorizationpolicies", "-n", "default", "-o", "yaml", "--data-dir", s.dir); !strings.Contains(out, "k8s-deny-orders") ||
		!strings.Contains(out, "trustmesh.dev/managed-by: kubernetes") {
		t.Errorf("the policy is not in the store, marked as from Kubernetes:\n%s", out)
	}
	if tail := mustCLI(t, "audit", "tail", "-o", "json", "--data-dir", s.dir); !strings.Contains(tail, `"actor":"k8s:kubectl-client-side-apply (kubernetes)"`) {
		t.Errorf("the creation is not audited with the Kubernetes actor:\n%s", tail)
	}

	// Deleted in Kubernetes: gone from the mesh.
	if err := env.Client.Delete(t.Context(), u); err != nil {
		t.Fatal(err)
	}
	waitForRequest(t, url)
	if tail := mustCLI(t, "audit", "tail", "-o", "json", "--data-dir", s.dir); !strings.Contains(tail, `"action":"object.delete"`) {
		t.Errorf("the deletion is not audited:\n%s", tail)
	}
}

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

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/trustmesh/trustmesh/internal/k8s/k8stest"
	"github.com/trustmesh/trustmesh/internal/k8s/webhook"
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
	hook := freeAddr(t)
	s := startServer(t, td, "--kubernetes", "--kubeconfig", writeKubeconfig(t, env.Config),
		"--webhook-listen", hook, "--webhook-url", "https://"+hook, "--inject-image", "example.org/trustmesh:test",
		"--bundle-configmap", "default/trustmesh-bundle-"+strings.ReplaceAll(hook, ":", "-"))
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

	// The validating webhook refuses what trustmesh policy validate
	// refuses, with its message (the webhook configuration takes a moment
	// to be in force: dry runs until then).
	bad := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "trustmesh.dev/v1", "kind": "AuthorizationPolicy",
		"metadata": map[string]any{"namespace": "default", "name": "k8s-bad"},
		"spec":     map[string]any{"rules": []any{map[string]any{"to": []any{map[string]any{"operation": map[string]any{"paths": []any{"/orders/{id}"}}}}}}},
	}}
	var refusal error
	waitFor(t, "the validating webhook to refuse an invalid policy", 30*time.Second, func() bool {
		refusal = env.Client.Create(t.Context(), bad.DeepCopy(), client.DryRunAll)
		return refusal != nil
	})
	if msg := refusal.Error(); !strings.Contains(msg, "spec.rules[0].to[0].operation.paths") || !strings.Contains(msg, "trustmesh") {
		t.Errorf("webhook refusal: got %q, want the validator's message naming the field", msg)
	}
	offline := mustCLIStatus(t, 1, "policy", "validate", "-f", writeFile(t, "bad.yaml", `apiVersion: trustmesh.dev/v1
kind: AuthorizationPolicy
metadata: {name: k8s-bad, namespace: default}
spec:
  rules: [{to: [{operation: {paths: ["/orders/{id}"]}}]}]
`))
	const subject = `AuthorizationPolicy "default/k8s-bad": `
	if i := strings.Index(offline, subject); i < 0 || !strings.Contains(refusal.Error(), strings.TrimSpace(offline[i:])) {
		t.Errorf("the webhook's message differs from trustmesh policy validate's:\nwebhook: %s\nvalidate: %s", refusal, offline)
	}

	// The trust bundle is published for the agents in the ConfigMap.
	waitFor(t, "the trust bundle in its ConfigMap", 10*time.Second, func() bool {
		cm := &corev1.ConfigMap{}
		if err := env.Client.Get(t.Context(), types.NamespacedName{Namespace: "default", Name: "trustmesh-bundle-" + strings.ReplaceAll(hook, ":", "-")}, cm); err != nil {
			return false
		}
		want, err := os.ReadFile(filepath.Join(s.dir, "bundle.pem"))
		return err == nil && cm.Data["bundle.pem"] == string(want)
	})

	// Sidecar injection: pods in a namespace labelled
	// trustmesh.dev/inject=enabled get the proxy as a native sidecar and
	// the redirection init container; elsewhere, or opted out, untouched.
	injected := injectNamespace(t, env, "inject-on", true)
	plain := injectNamespace(t, env, "inject-off", false)
	waitFor(t, "the injection webhook to be in force", 30*time.Second, func() bool {
		p := testPod(injected, "probe", nil)
		return env.Client.Create(t.Context(), p, client.DryRunAll) == nil && len(p.Spec.InitContainers) > 0
	})
	pod := testPod(injected, "app", nil)
	if err := env.Client.Create(t.Context(), pod); err != nil {
		t.Fatal(err)
	}
	var proxy, init *corev1.Container
	for i, c := range pod.Spec.InitContainers {
		switch c.Name {
		case "trustmesh-proxy":
			proxy = &pod.Spec.InitContainers[i]
		case "trustmesh-init":
			init = &pod.Spec.InitContainers[i]
		}
	}
	switch {
	case proxy == nil || init == nil:
		t.Errorf("pod in a labelled namespace: init containers %+v, want trustmesh-init and trustmesh-proxy", pod.Spec.InitContainers)
	case proxy.RestartPolicy == nil || *proxy.RestartPolicy != corev1.ContainerRestartPolicyAlways:
		t.Errorf("the proxy is not a native sidecar (restartPolicy Always): %+v", proxy)
	case !strings.Contains(strings.Join(proxy.Args, " "), "spiffe://"+td+"/ns/"+injected+"/sa/default"):
		t.Errorf("the proxy's args lack the pod's default SPIFFE ID: %v", proxy.Args)
	case proxy.Image != "example.org/trustmesh:test":
		t.Errorf("proxy image %q, want the --inject-image", proxy.Image)
	}
	for _, p := range []*corev1.Pod{testPod(plain, "app", nil), testPod(injected, "opted-out", map[string]string{"trustmesh.dev/inject": "false"})} {
		if err := env.Client.Create(t.Context(), p); err != nil {
			t.Fatal(err)
		}
		if len(p.Spec.InitContainers) != 0 {
			t.Errorf("pod %s/%s was injected: %+v", p.Namespace, p.Name, p.Spec.InitContainers)
		}
	}

	// A CA rotation reaches the webhook configurations' caBundle at once
	// (the prepared authority is trusted before it signs anything).
	mustCLI(t, "ca", "rotate", "--data-dir", s.dir)
	waitFor(t, "the caBundle to carry both authorities", 10*time.Second, func() bool {
		vwc := &admissionregistrationv1.ValidatingWebhookConfiguration{}
		if err := env.Client.Get(t.Context(), types.NamespacedName{Name: webhook.ValidatingConfigurationName}, vwc); err != nil || len(vwc.Webhooks) == 0 {
			return false
		}
		return strings.Count(string(vwc.Webhooks[0].ClientConfig.CABundle), "BEGIN CERTIFICATE") == 2
	})

	// Deleted in Kubernetes: gone from the mesh.
	if err := env.Client.Delete(t.Context(), u); err != nil {
		t.Fatal(err)
	}
	waitForRequest(t, url)
	if tail := mustCLI(t, "audit", "tail", "-o", "json", "--data-dir", s.dir); !strings.Contains(tail, `"action":"object.delete"`) {
		t.Errorf("the deletion is not audited:\n%s", tail)
	}
}

// injectNamespace creates a namespace, labelled for injection or not, with
// the default ServiceAccount kube-controller-manager would create.
func injectNamespace(t *testing.T, env *k8stest.Env, prefix string, inject bool) string {
	t.Helper()
	name := fmt.Sprintf("%s-%d", prefix, time.Now().UnixNano()%1e9)
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}
	if inject {
		ns.Labels = map[string]string{"trustmesh.dev/inject": "enabled"}
	}
	if err := env.Client.Create(t.Context(), ns); err != nil {
		t.Fatal(err)
	}
	if err := env.Client.Create(t.Context(), &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: name, Name: "default"}}); err != nil {
		t.Fatal(err)
	}
	return name
}

func testPod(ns, name string, annotations map[string]string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Annotations: annotations},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "example.org/app:1",
			Ports: []corev1.ContainerPort{{ContainerPort: 8080}}}}},
	}
}

// mustCLIStatus runs a CLI command that must exit with code and returns
// its stdout and stderr.
func mustCLIStatus(t *testing.T, code int, args ...string) string {
	t.Helper()
	out, errOut, err := cli(t, "", args...)
	if got := exitCode(err); got != code {
		t.Fatalf("trustmesh %s: exit %d, want %d\n%s%s", strings.Join(args, " "), got, code, out, errOut)
	}
	return out + errOut
}

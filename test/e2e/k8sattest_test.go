package e2e

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"
	authnv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	nodev1 "github.com/trustmesh/trustmesh/api/node/v1"
	"github.com/trustmesh/trustmesh/internal/k8s/k8stest"
)

// TestKubernetesTokenAttestation: with --kubernetes, an agent attests its
// node with its pod's projected service-account token (audience
// trustmesh, checked by TokenReview on the real API server) and gets
// spiffe://TD/trustmesh/node/k8s/NODE; that node then obtains
// spiffe://TD/ns/NS/sa/SA for a pod on it from the pod's token. Tokens for
// another audience, of a deleted service account, of a pod on another node,
// or of another service account than the agent's (as a node) are refused
// and audited.
func TestKubernetesTokenAttestation(t *testing.T) {
	t.Parallel()
	env := kubernetes(t)
	const td = "k8sattest.example"
	ns := env.NewNamespace(t)
	node, otherNode := ns+"-node", ns+"-other"
	for _, n := range []string{node, otherNode} {
		if err := env.Client.Create(t.Context(), &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: n}}); err != nil {
			t.Fatal(err)
		}
	}
	agentToken := podToken(t, env, ns, "trustmesh-agent", "agent", node, "trustmesh")

	s := startServer(t, td, "--kubernetes", "--kubeconfig", writeKubeconfig(t, env.Config),
		"--k8s-agent-service-account", ns+":trustmesh-agent")
	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte(agentToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "agent")
	startK8sAgent(t, s, dir, tokenFile)
	waitFor(t, "the node SVID", 30*time.Second, exists(filepath.Join(dir, "node.key.pem")))
	nodeSVID, err := x509svid.Load(filepath.Join(dir, "node.crt.pem"), filepath.Join(dir, "node.key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := nodeSVID.ID.String(), "spiffe://"+td+"/trustmesh/node/k8s/"+node; got != want {
		t.Fatalf("node SVID is %s, want %s", got, want)
	}

	bundle, err := x509bundle.Load(spiffeid.RequireTrustDomainFromString(td), filepath.Join(s.dir, "bundle.pem"))
	if err != nil {
		t.Fatal(err)
	}
	serverID := tlsconfig.AuthorizeID(spiffeid.RequireFromPath(bundle.TrustDomain(), "/trustmesh/server"))
	asNode := nodeClient(t, s.nodeAddr, tlsconfig.MTLSClientConfig(nodeSVID, bundle, serverID))
	anonymous := nodeClient(t, s.nodeAddr, tlsconfig.TLSClientConfig(bundle, serverID))

	t.Run("right-audience", func(t *testing.T) {
		tok := podToken(t, env, ns, "orders", "orders-1", node, "trustmesh")
		resp, err := asNode.MintK8SX509SVID(t.Context(), &nodev1.MintK8SX509SVIDRequest{Token: tok, Csr: csr(t)})
		if err != nil {
			t.Fatal(err)
		}
		if got, want := resp.GetSpiffeId(), "spiffe://"+td+"/ns/"+ns+"/sa/orders"; got != want {
			t.Errorf("got SPIFFE ID %s, want %s", got, want)
		}
		leaf, err := x509.ParseCertificate(resp.GetSvidChain()[0])
		if err != nil {
			t.Fatal(err)
		}
		if id, err := x509svid.IDFromCert(leaf); err != nil || id.String() != resp.GetSpiffeId() {
			t.Errorf("SVID names %v (%v), want %s", id, err, resp.GetSpiffeId())
		}
		for _, want := range []string{"k8s:ns:" + ns, "k8s:sa:orders", "k8s:pod-name:orders-1", "k8s:pod-label:app:orders-1"} {
			if !slices.Contains(resp.GetSelectors(), want) {
				t.Errorf("selectors %q lack %q", resp.GetSelectors(), want)
			}
		}
	})

	for _, tc := range []struct {
		name, want string
		token      func(t *testing.T) string
	}{
		{"other-audience", "audience", func(t *testing.T) string {
			return podToken(t, env, ns, "billing", "billing-1", node, "https://kubernetes.default.svc")
		}},
		{"deleted-service-account", "service account deleted", func(t *testing.T) string {
			tok := podToken(t, env, ns, "gone", "gone-1", node, "trustmesh")
			if err := env.Client.Delete(t.Context(), &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "gone"}}); err != nil {
				t.Fatal(err)
			}
			return tok
		}},
		{"pod-on-another-node", "not on this node", func(t *testing.T) string {
			return podToken(t, env, ns, "elsewhere", "elsewhere-1", otherNode, "trustmesh")
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := asNode.MintK8SX509SVID(t.Context(), &nodev1.MintK8SX509SVIDRequest{Token: tc.token(t), Csr: csr(t)})
			if status.Code(err) != codes.PermissionDenied || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v, want PermissionDenied containing %q", err, tc.want)
			}
		})
	}

	t.Run("node-with-another-service-account", func(t *testing.T) {
		tok := podToken(t, env, ns, "impostor", "impostor-1", node, "trustmesh")
		_, err := anonymous.Attest(t.Context(), &nodev1.AttestRequest{K8SPsat: tok, Csr: csr(t)})
		if status.Code(err) != codes.PermissionDenied || !strings.Contains(err.Error(), "is not the agent's") {
			t.Errorf("got %v, want PermissionDenied: not the agent's service account", err)
		}
	})
	t.Run("node-with-other-audience", func(t *testing.T) {
		tok := podToken(t, env, ns, "trustmesh-agent", "agent-2", node, "other")
		_, err := anonymous.Attest(t.Context(), &nodev1.AttestRequest{K8SPsat: tok, Csr: csr(t)})
		if status.Code(err) != codes.PermissionDenied || !strings.Contains(err.Error(), "audience") {
			t.Errorf("got %v, want PermissionDenied: wrong audience", err)
		}
	})

	audit := mustCLI(t, "audit", "tail", "-n", "200", "--data-dir", s.dir)
	for _, want := range []string{"node.attest", "is not the agent's", "not valid for audience", "not on this node"} {
		if !strings.Contains(audit, want) {
			t.Errorf("audit log lacks %q:\n%s", want, audit)
		}
	}
}

// podToken creates the service account sa (if new) and a pod of it on
// node, labelled app=POD, and returns a token of sa for audience bound to
// that pod, as the kubelet would project it.
func podToken(t *testing.T, env *k8stest.Env, ns, sa, pod, node, audience string) string {
	t.Helper()
	ctx := t.Context()
	acct := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: sa}}
	if err := env.Client.Create(ctx, acct); err != nil && !strings.Contains(err.Error(), "already exists") {
		t.Fatal(err)
	}
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: pod, Labels: map[string]string{"app": pod}},
		Spec: corev1.PodSpec{ServiceAccountName: sa, NodeName: node,
			Containers: []corev1.Container{{Name: "app", Image: "example.org/app:1"}}},
	}
	if err := env.Client.Create(ctx, p); err != nil {
		t.Fatal(err)
	}
	expiry := int64(3600)
	tr := &authnv1.TokenRequest{Spec: authnv1.TokenRequestSpec{Audiences: []string{audience}, ExpirationSeconds: &expiry,
		BoundObjectRef: &authnv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: p.Name, UID: p.UID}}}
	if err := env.Client.SubResource("token").Create(ctx, acct, tr); err != nil {
		t.Fatalf("request a token of %s/%s: %v", ns, sa, err)
	}
	return tr.Status.Token
}

// startK8sAgent starts an agent that attests with --k8s-token-file.
func startK8sAgent(t *testing.T, s *server, dir, tokenFile string) *agent {
	t.Helper()
	sockDir, err := os.MkdirTemp("", "tm-sock")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(sockDir) })
	a := &agent{dir: dir, socket: filepath.Join(sockDir, "agent.sock")}
	a.proc = start(t, "agent", "agent", "--server", s.nodeAddr, "--trust-bundle", filepath.Join(s.dir, "bundle.pem"),
		"--socket", a.socket, "--data-dir", dir, "--log-level", "debug", "--k8s-token-file", tokenFile)
	waitFor(t, "agent socket", 30*time.Second, func() bool {
		select {
		case <-a.done:
			t.Fatalf("agent exited: %v\n%s", a.err, a.out)
		default:
		}
		return exists(a.socket)()
	})
	return a
}

func nodeClient(t *testing.T, addr string, conf *tls.Config) nodev1.NodeClient {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(conf)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return nodev1.NewNodeClient(conn)
}

func csr(t *testing.T) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	authnv1 "k8s.io/api/authentication/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	authnv1client "k8s.io/client-go/kubernetes/typed/authentication/v1"
	corev1client "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/rest"

	"github.com/trustmesh/trustmesh/internal/attest"
)

// Kubernetes attestation (server --kubernetes).
//
// Nodes: the agent presents a projected service-account token of its own
// pod (audience K8sTokenAudience). The server asks the API server to review
// it for that audience, and accepts it only when it is authenticated, of
// the one agent service account (Config.K8sAgentServiceAccount: any pod may
// request a token for audience trustmesh, only the agent DaemonSet runs as
// that account), and bound to a pod scheduled on a node (the token's
// node-name extra). The node SVID is then
// spiffe://TD/trustmesh/node/k8s/NODE. A token without a node name is
// refused rather than named after its pod: the node name is what scopes
// the agent's powers (see MintK8sX509SVID), and a pod name says nothing
// about where the pod runs.
//
// Workloads: an attested Kubernetes node passes on a pod's token (same
// audience); it is reviewed the same way and must be bound to a pod on the
// calling node, so an agent can only obtain identities of pods that run on
// its node, which the node holds the tokens of anyway. The identity is the
// service account's default one, spiffe://TD/ns/NS/sa/SA (Istio's), with
// the selectors of attest.K8sIdentity.Selectors.
//
// Failure to reach the API server fails closed: the call is refused (as
// Unavailable, so agents retry) and audited.

// K8sTokenAudience is the audience every service-account token presented
// to trustmesh must be bound to; a token for another audience (the API
// server's own included) is refused.
const K8sTokenAudience = "trustmesh"

// DefaultK8sAgentServiceAccount is Config.K8sAgentServiceAccount when empty.
const DefaultK8sAgentServiceAccount = "trustmesh-system:trustmesh-agent"

// k8sNodePrefix starts the names of nodes attested with a Kubernetes token
// (node SVID spiffe://TD/trustmesh/node/k8s/NODE).
const k8sNodePrefix = "k8s/"

// k8sReviewTimeout bounds one call to the API server.
const k8sReviewTimeout = 10 * time.Second

// k8sAttestor checks service-account tokens with the API server.
type k8sAttestor struct {
	reviews          authnv1client.TokenReviewInterface
	pods             corev1client.PodsGetter
	agentNS, agentSA string
	log              *slog.Logger
}

// parseK8sServiceAccount parses NAMESPACE:NAME.
func parseK8sServiceAccount(s string) (ns, name string, err error) {
	ns, name, ok := strings.Cut(s, ":")
	if !ok || len(validation.IsDNS1123Label(ns)) > 0 || len(validation.IsDNS1123Subdomain(name)) > 0 {
		return "", "", fmt.Errorf("--k8s-agent-service-account %q: want NAMESPACE:NAME such as %s", s, DefaultK8sAgentServiceAccount)
	}
	return ns, name, nil
}

func newK8sAttestor(rc *rest.Config, agentServiceAccount string, log *slog.Logger) (*k8sAttestor, error) {
	if agentServiceAccount == "" {
		agentServiceAccount = DefaultK8sAgentServiceAccount
	}
	ns, sa, err := parseK8sServiceAccount(agentServiceAccount)
	if err != nil {
		return nil, err
	}
	authn, err := authnv1client.NewForConfig(rc)
	if err != nil {
		return nil, fmt.Errorf("kubernetes TokenReview client: %w", err)
	}
	core, err := corev1client.NewForConfig(rc)
	if err != nil {
		return nil, fmt.Errorf("kubernetes pods client: %w", err)
	}
	return &k8sAttestor{reviews: authn.TokenReviews(), pods: core, agentNS: ns, agentSA: sa, log: log}, nil
}

// k8sRefusal is a token the server does not accept; the reason is for the
// audit log and the caller (who holds the token: nothing in it is secret
// from them).
type k8sRefusal struct{ reason string }

func (r *k8sRefusal) Error() string { return r.reason }

func refuse(format string, args ...any) error {
	return &k8sRefusal{reason: fmt.Sprintf(format, args...)}
}

// errK8sUnavailable: the API server could not review the token.
var errK8sUnavailable = errors.New("kubernetes API server unreachable")

// review authenticates token for K8sTokenAudience with a TokenReview.
// The error is a *k8sRefusal or wraps errK8sUnavailable.
func (a *k8sAttestor) review(ctx context.Context, token string) (attest.K8sIdentity, error) {
	if token == "" {
		return attest.K8sIdentity{}, refuse("empty service-account token")
	}
	ctx, cancel := context.WithTimeout(ctx, k8sReviewTimeout)
	defer cancel()
	tr, err := a.reviews.Create(ctx, &authnv1.TokenReview{Spec: authnv1.TokenReviewSpec{Token: token, Audiences: []string{K8sTokenAudience}}}, metav1.CreateOptions{})
	if err != nil {
		return attest.K8sIdentity{}, fmt.Errorf("%w: token review: %w", errK8sUnavailable, err)
	}
	st := tr.Status
	if !st.Authenticated {
		return attest.K8sIdentity{}, &k8sRefusal{reason: unauthenticatedReason(st.Error)}
	}
	// The API server only authenticates a token for the audiences asked
	// for; check anyway that it said so, as TokenReview's contract asks.
	if !slices.Contains(st.Audiences, K8sTokenAudience) {
		return attest.K8sIdentity{}, refuse("token not valid for audience %q (it is for %q)", K8sTokenAudience, st.Audiences)
	}
	id, err := attest.K8sIdentityFromUser(st.User.Username, extraOf(st.User.Extra))
	if err != nil {
		return attest.K8sIdentity{}, refuse("token user: %v", err)
	}
	return id, nil
}

func extraOf(in map[string]authnv1.ExtraValue) map[string][]string {
	out := make(map[string][]string, len(in))
	for k, v := range in {
		out[k] = v
	}
	return out
}

// unauthenticatedReason names why the API server refused a token, from
// its error text (which TokenReview does not structure).
func unauthenticatedReason(apiErr string) string {
	e := strings.ToLower(apiErr)
	var why string
	switch {
	case strings.Contains(e, "audience"):
		why = "token not valid for audience " + K8sTokenAudience
	case strings.Contains(e, "expired"):
		why = "token expired"
	case strings.Contains(e, "serviceaccount") && (strings.Contains(e, "not found") || strings.Contains(e, "deleted")):
		why = "service account deleted"
	case strings.Contains(e, "not found") || strings.Contains(e, "deleted"):
		why = "the pod or secret the token is bound to was deleted"
	default:
		why = "token not authenticated by the Kubernetes API server"
	}
	if apiErr != "" {
		why += " (" + apiErr + ")"
	}
	return why
}

// attestNode reviews an agent's token and returns its node's name,
// k8s/NODE.
func (a *k8sAttestor) attestNode(ctx context.Context, token string) (string, attest.K8sIdentity, error) {
	id, err := a.review(ctx, token)
	if err != nil {
		return "", id, err
	}
	if id.Namespace != a.agentNS || id.ServiceAccount != a.agentSA {
		return "", id, refuse("service account %s/%s is not the agent's (%s/%s, --k8s-agent-service-account)", id.Namespace, id.ServiceAccount, a.agentNS, a.agentSA)
	}
	if id.NodeName == "" {
		return "", id, refuse("token of pod %q is not bound to a node (a projected token of a scheduled pod is required)", id.PodName)
	}
	if errs := validation.IsDNS1123Subdomain(id.NodeName); len(errs) > 0 {
		return "", id, refuse("node name %q: %s", id.NodeName, strings.Join(errs, "; "))
	}
	return k8sNodePrefix + id.NodeName, id, nil
}

// attestWorkload reviews a pod's token passed on by the agent of node
// (its name without k8s/) and returns the pod's identity and selectors.
func (a *k8sAttestor) attestWorkload(ctx context.Context, node, token string) (attest.K8sIdentity, []attest.Selector, error) {
	id, err := a.review(ctx, token)
	if err != nil {
		return id, nil, err
	}
	switch {
	case id.PodName == "":
		return id, nil, refuse("token of %s/%s is not bound to a pod", id.Namespace, id.ServiceAccount)
	case id.NodeName != node:
		return id, nil, refuse("token is bound to pod %s/%s on node %q, not on this node %q", id.Namespace, id.PodName, id.NodeName, node)
	}
	labels, err := a.podLabels(ctx, id)
	if err != nil {
		return id, nil, err
	}
	return id, id.Selectors(labels), nil
}

// podLabels reads the pod's labels. A pod that cannot be read (no RBAC to
// get pods) gives no label selectors, logged; a pod that is gone or is
// another one by now is refused.
func (a *k8sAttestor) podLabels(ctx context.Context, id attest.K8sIdentity) (map[string]string, error) {
	ctx, cancel := context.WithTimeout(ctx, k8sReviewTimeout)
	defer cancel()
	pod, err := a.pods.Pods(id.Namespace).Get(ctx, id.PodName, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		return nil, refuse("pod %s/%s was deleted", id.Namespace, id.PodName)
	case apierrors.IsForbidden(err):
		a.log.Warn("cannot read pods: k8s:pod-label selectors unavailable (grant get on pods)", "pod", id.Namespace+"/"+id.PodName, "error", err)
		return nil, nil
	case err != nil:
		return nil, fmt.Errorf("%w: get pod: %w", errK8sUnavailable, err)
	case string(pod.UID) != id.PodUID:
		return nil, refuse("pod %s/%s was replaced (UID %s, token for %s)", id.Namespace, id.PodName, pod.UID, id.PodUID)
	case pod.Spec.NodeName != id.NodeName:
		return nil, refuse("pod %s/%s runs on node %q, token says %q", id.Namespace, id.PodName, pod.Spec.NodeName, id.NodeName)
	}
	return pod.Labels, nil
}

package webhook

import (
	"errors"
	"fmt"
	"maps"
	"net/url"
	"slices"
	"strings"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Names in the webhook configurations.
const (
	// ValidatingConfigurationName names the ValidatingWebhookConfiguration.
	ValidatingConfigurationName = "trustmesh-validator"
	// MutatingConfigurationName names the MutatingWebhookConfiguration.
	MutatingConfigurationName = "trustmesh-injector"
	// ValidatingWebhookName and InjectionWebhookName name the webhooks
	// (kubectl shows them in denials).
	ValidatingWebhookName = "validate.trustmesh.dev"
	InjectionWebhookName  = "inject.trustmesh.dev"
	// DefaultSystemNamespace is where trustmesh runs; it is never injected.
	DefaultSystemNamespace = "trustmesh-system"
	// webhookTimeoutSeconds is how long the API server waits for an
	// answer. Rego compilation of a large policy takes well under that.
	webhookTimeoutSeconds = 10
)

// resources are the plural resource names of the trustmesh.dev/v1 kinds,
// as the CRDs name them: what the validating webhook intercepts.
var resources = map[string]string{
	"AuthorizationPolicy":   "authorizationpolicies",
	"MeshConfig":            "meshconfigs",
	"PeerAuthentication":    "peerauthentications",
	"RequestAuthentication": "requestauthentications",
	"Service":               "services",
	"Workload":              "workloads",
}

// Endpoint says how the API server reaches the webhook server: through
// an in-cluster Service, or at a URL (a server outside the cluster).
type Endpoint struct {
	// Service is the Service in front of the webhook server (its Path is
	// ignored). Either Service or URL.
	Service *admissionregistrationv1.ServiceReference
	// URL is the server's https:// base URL, such as
	// https://trustmesh.example.org:9443. Either Service or URL.
	URL string
	// CABundle holds the PEM certificates of the CA that issues the
	// server's certificate (trustmesh's own). Required.
	CABundle []byte
}

// clientConfig is the WebhookClientConfig for the webhook at path.
func (e Endpoint) clientConfig(path string) (admissionregistrationv1.WebhookClientConfig, error) {
	cc := admissionregistrationv1.WebhookClientConfig{CABundle: e.CABundle}
	if len(e.CABundle) == 0 {
		return cc, errors.New("webhook endpoint: a CA bundle is required")
	}
	switch {
	case (e.Service == nil) == (e.URL == ""):
		return cc, errors.New("webhook endpoint: give a Service or a URL, not both")
	case e.Service != nil:
		if e.Service.Name == "" || e.Service.Namespace == "" {
			return cc, errors.New("webhook endpoint: the Service needs a name and a namespace")
		}
		svc := *e.Service
		svc.Path = &path
		cc.Service = &svc
	default:
		u, err := url.Parse(e.URL)
		if err != nil || u.Scheme != "https" || u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" {
			return cc, fmt.Errorf("webhook endpoint: URL %q: want https://HOST[:PORT][/PREFIX] without user, query or fragment", e.URL)
		}
		full := strings.TrimSuffix(e.URL, "/") + path
		cc.URL = &full
	}
	return cc, nil
}

// ValidatingWebhookConfiguration returns the configuration that sends
// every CREATE and UPDATE of a trustmesh.dev/v1 object to the validator at
// PathValidate. It fails closed: when the webhook cannot be reached, the
// write is refused.
func ValidatingWebhookConfiguration(e Endpoint) (*admissionregistrationv1.ValidatingWebhookConfiguration, error) {
	cc, err := e.clientConfig(PathValidate)
	if err != nil {
		return nil, err
	}
	var plurals []string
	for _, kind := range slices.Sorted(maps.Keys(resources)) {
		plurals = append(plurals, resources[kind])
	}
	return &admissionregistrationv1.ValidatingWebhookConfiguration{
		TypeMeta:   metav1.TypeMeta{APIVersion: admissionregistrationv1.SchemeGroupVersion.String(), Kind: "ValidatingWebhookConfiguration"},
		ObjectMeta: metav1.ObjectMeta{Name: ValidatingConfigurationName, Labels: map[string]string{"app.kubernetes.io/part-of": "trustmesh"}},
		Webhooks: []admissionregistrationv1.ValidatingWebhook{{
			Name:         ValidatingWebhookName,
			ClientConfig: cc,
			Rules: []admissionregistrationv1.RuleWithOperations{{
				Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create, admissionregistrationv1.Update},
				Rule: admissionregistrationv1.Rule{
					APIGroups: []string{Group}, APIVersions: []string{"v1"}, Resources: plurals, Scope: ptr(admissionregistrationv1.AllScopes),
				},
			}},
			FailurePolicy:           ptr(admissionregistrationv1.Fail),
			MatchPolicy:             ptr(admissionregistrationv1.Equivalent),
			SideEffects:             ptr(admissionregistrationv1.SideEffectClassNone),
			AdmissionReviewVersions: []string{"v1"},
			TimeoutSeconds:          ptr[int32](webhookTimeoutSeconds),
		}},
	}, nil
}

// MutatingWebhookConfiguration returns the configuration that sends the
// CREATE of every pod in a namespace labelled trustmesh.dev/inject=enabled
// (except systemNamespace, default DefaultSystemNamespace) to the injector
// at PathInject. Pods labelled trustmesh.dev/inject or
// sidecar.istio.io/inject "false" are not sent; the injector itself also
// honours those keys as annotations. It fails closed: when the webhook
// cannot be reached, pods in those namespaces are not created, rather than
// run outside the mesh.
func MutatingWebhookConfiguration(e Endpoint, systemNamespace string) (*admissionregistrationv1.MutatingWebhookConfiguration, error) {
	cc, err := e.clientConfig(PathInject)
	if err != nil {
		return nil, err
	}
	if systemNamespace == "" {
		systemNamespace = DefaultSystemNamespace
	}
	return &admissionregistrationv1.MutatingWebhookConfiguration{
		TypeMeta:   metav1.TypeMeta{APIVersion: admissionregistrationv1.SchemeGroupVersion.String(), Kind: "MutatingWebhookConfiguration"},
		ObjectMeta: metav1.ObjectMeta{Name: MutatingConfigurationName, Labels: map[string]string{"app.kubernetes.io/part-of": "trustmesh"}},
		Webhooks: []admissionregistrationv1.MutatingWebhook{{
			Name:         InjectionWebhookName,
			ClientConfig: cc,
			Rules: []admissionregistrationv1.RuleWithOperations{{
				Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create},
				Rule: admissionregistrationv1.Rule{
					APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"pods"}, Scope: ptr(admissionregistrationv1.NamespacedScope),
				},
			}},
			NamespaceSelector: &metav1.LabelSelector{
				MatchLabels: map[string]string{LabelInject: InjectEnabled},
				MatchExpressions: []metav1.LabelSelectorRequirement{{
					Key: "kubernetes.io/metadata.name", Operator: metav1.LabelSelectorOpNotIn, Values: []string{systemNamespace},
				}},
			},
			ObjectSelector: &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{
				{Key: LabelInject, Operator: metav1.LabelSelectorOpNotIn, Values: []string{"false"}},
				{Key: AnnotationIstioInject, Operator: metav1.LabelSelectorOpNotIn, Values: []string{"false"}},
			}},
			FailurePolicy:           ptr(admissionregistrationv1.Fail),
			MatchPolicy:             ptr(admissionregistrationv1.Equivalent),
			SideEffects:             ptr(admissionregistrationv1.SideEffectClassNone),
			AdmissionReviewVersions: []string{"v1"},
			TimeoutSeconds:          ptr[int32](webhookTimeoutSeconds),
			ReinvocationPolicy:      ptr(admissionregistrationv1.NeverReinvocationPolicy),
		}},
	}, nil
}

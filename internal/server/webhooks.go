package server

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strings"
	"sync/atomic"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/trustmesh/trustmesh/internal/ca"
	"github.com/trustmesh/trustmesh/internal/k8s/webhook"
)

// WebhookPath is the SPIFFE ID path of the admission webhooks' serving
// certificate (an X.509-SVID with the DNS names and IPs the API server
// dials; its CA, the trust bundle, is the webhook configurations' caBundle).
const WebhookPath = "/trustmesh/webhook"

// webhooks serves the admission webhooks and keeps the cluster's webhook
// configurations pointing at them with the current trust bundle.
type webhooks struct {
	s        *Server
	srv      *webhook.Server
	endpoint webhook.Endpoint // CABundle filled in at each apply
	dns      []string
	ips      []net.IP
	cert     atomic.Pointer[tls.Certificate]
	client   client.Client
	// configured: the cluster's configurations carry the current bundle
	// (else maintenance retries).
	configured atomic.Bool
	// bundleCM, if set, is the ConfigMap the bundle is published in for
	// the agents (--bundle-configmap), key bundle.pem.
	bundleCM *corev1.ConfigMap
}

// newWebhooks builds the webhooks of --webhook-listen: the validator of
// trustmesh.dev objects and the sidecar injector, reachable by the API
// server at --webhook-url (outside the cluster) or through the Service
// --webhook-service NAMESPACE/NAME (port 443 to --webhook-listen).
func (s *Server) newWebhooks() (*webhooks, error) {
	cfg := s.cfg
	w := &webhooks{s: s}
	switch {
	case (cfg.WebhookURL == "") == (cfg.WebhookService == ""):
		return nil, errors.New("--webhook-listen needs --webhook-url https://HOST:PORT (a server outside the cluster) or --webhook-service NAMESPACE/NAME (in the cluster), not both")
	case cfg.WebhookURL != "":
		u, err := url.Parse(cfg.WebhookURL)
		if err != nil || u.Scheme != "https" || u.Hostname() == "" {
			return nil, fmt.Errorf("--webhook-url %q: want https://HOST[:PORT]", cfg.WebhookURL)
		}
		w.endpoint.URL = cfg.WebhookURL
		if ip := net.ParseIP(u.Hostname()); ip != nil {
			w.ips = append(w.ips, ip)
		} else {
			w.dns = append(w.dns, u.Hostname())
		}
	default:
		ns, name, err := namespacedName("--webhook-service", cfg.WebhookService)
		if err != nil {
			return nil, err
		}
		w.endpoint.Service = &admissionregistrationv1.ServiceReference{Namespace: ns, Name: name}
		w.dns = append(w.dns, name+"."+ns+".svc", name+"."+ns+".svc.cluster.local")
		if cfg.Inject.ServerAddr == "" {
			// The same Service fronts the node API.
			cfg.Inject.ServerAddr = name + "." + ns + ".svc:8443"
		}
	}
	if err := w.renew(); err != nil {
		return nil, err
	}
	validator, err := webhook.NewValidator(webhook.ValidatorConfig{TrustDomain: s.td, Logger: s.cfg.Logger})
	if err != nil {
		return nil, err
	}
	inject := cfg.Inject
	inject.TrustDomain = s.td
	inject.Logger = s.cfg.Logger
	injector, err := webhook.NewInjector(inject)
	if err != nil {
		return nil, err
	}
	w.srv, err = webhook.NewServer(webhook.ServerConfig{Addr: cfg.WebhookListen, GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
		return w.cert.Load(), nil
	}, Validate: validator, Inject: injector, Logger: s.cfg.Logger})
	if err != nil {
		return nil, err
	}
	if cfg.BundleConfigMap != "" {
		ns, name, err := namespacedName("--bundle-configmap", cfg.BundleConfigMap)
		if err != nil {
			return nil, err
		}
		w.bundleCM = &corev1.ConfigMap{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "ConfigMap"},
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
	}
	scheme := runtime.NewScheme()
	if err := admissionregistrationv1.AddToScheme(scheme); err != nil {
		return nil, err
	}
	if err := corev1.AddToScheme(scheme); err != nil {
		return nil, err
	}
	if w.client, err = client.New(s.k8sRest, client.Options{Scheme: scheme}); err != nil {
		return nil, fmt.Errorf("kubernetes client: %w", err)
	}
	return w, nil
}

// renew signs a new serving certificate.
func (w *webhooks) renew() error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return fmt.Errorf("generate webhook key: %w", err)
	}
	id, err := spiffeid.FromPath(w.s.td, WebhookPath)
	if err != nil {
		return err
	}
	chain, _, err := w.s.ca.SignX509SVID(ca.X509Params{ID: id, PublicKey: key.Public(), TTL: serverSVIDTTL, DNSNames: w.dns, IPAddresses: w.ips})
	if err != nil {
		return fmt.Errorf("sign webhook certificate: %w", err)
	}
	w.cert.Store(tlsCert(chain, key))
	return nil
}

// renewIfDue renews the certificate past half its lifetime.
func (w *webhooks) renewIfDue() error {
	if due(w.cert.Load(), w.s.cfg.Now()) {
		return w.renew()
	}
	return nil
}

// configure creates or updates the two webhook configurations with the
// current trust bundle as caBundle: called at start and after every bundle
// change, so a CA rotation never leaves the API server unable to verify the
// webhooks (a prepared authority is in the bundle before it signs).
func (w *webhooks) configure(ctx context.Context) error {
	e := w.endpoint
	e.CABundle = w.s.ca.BundlePEM()
	vwc, err := webhook.ValidatingWebhookConfiguration(e)
	if err != nil {
		return err
	}
	mwc, err := webhook.MutatingWebhookConfiguration(e, w.s.cfg.WebhookSystemNamespace)
	if err != nil {
		return err
	}
	w.configured.Store(false)
	objs := []client.Object{vwc, mwc}
	if w.bundleCM != nil {
		cm := w.bundleCM.DeepCopy()
		cm.Data = map[string]string{"bundle.pem": string(e.CABundle)}
		objs = append(objs, cm)
	}
	for _, obj := range objs {
		obj.SetManagedFields(nil)
		if err := w.client.Patch(ctx, obj, client.Apply, client.FieldOwner("trustmesh-server"), client.ForceOwnership); err != nil {
			return fmt.Errorf("apply %s %s: %w", obj.GetObjectKind().GroupVersionKind().Kind, obj.GetName(), err)
		}
	}
	w.configured.Store(true)
	return nil
}

// run serves the webhooks until ctx is cancelled.
func (w *webhooks) run(ctx context.Context) error {
	if err := w.configure(ctx); err != nil {
		// Keep serving: maintenance retries every tick until it works.
		w.s.log.Error("configure the admission webhooks in the cluster", "error", err)
	}
	return w.srv.Run(ctx)
}

// serviceAccountNamespaceFile holds the namespace of the pod the server runs
// in (mounted by Kubernetes with the service account's token).
const serviceAccountNamespaceFile = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"

// namespacedName parses a flag's NAMESPACE/NAME, or NAME in the server's own
// namespace (in a cluster: POD_NAMESPACE, else the service account's).
func namespacedName(flag, v string) (ns, name string, err error) {
	if ns, name, ok := strings.Cut(v, "/"); ok {
		if ns == "" || name == "" {
			return "", "", fmt.Errorf("%s %q: want NAMESPACE/NAME, or NAME in the server's own namespace", flag, v)
		}
		return ns, name, nil
	}
	if v == "" {
		return "", "", fmt.Errorf("%s is empty: want NAMESPACE/NAME, or NAME in the server's own namespace", flag)
	}
	ns = os.Getenv("POD_NAMESPACE")
	if ns == "" {
		b, err := os.ReadFile(serviceAccountNamespaceFile)
		if err != nil {
			return "", "", fmt.Errorf("%s %q names no namespace and the server's own is unknown outside a cluster (%w): give NAMESPACE/NAME", flag, v, err)
		}
		ns = strings.TrimSpace(string(b))
	}
	return ns, v, nil
}

package install

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"

	"github.com/trustmesh/trustmesh/internal/k8s/webhook"
)

// TestWebhooksMatchPackage checks that the chart's webhook configurations are
// the ones package webhook builds for a server behind the Service
// trustmesh-server (caBundle aside, which the server patches in), so that the
// server only ever changes the caBundle.
func TestWebhooksMatchPackage(t *testing.T) {
	for _, ns := range []string{DefaultNamespace, "mesh"} {
		t.Run(ns, func(t *testing.T) {
			out, err := Manifests(Config{Namespace: ns})
			if err != nil {
				t.Fatal(err)
			}
			objs := parse(t, out)
			port := int32(443)
			ep := webhook.Endpoint{
				Service:  &admissionregistrationv1.ServiceReference{Name: "trustmesh-server", Namespace: ns, Port: &port},
				CABundle: []byte("ca"),
			}

			wantV, err := webhook.ValidatingWebhookConfiguration(ep)
			if err != nil {
				t.Fatal(err)
			}
			for i := range wantV.Webhooks {
				wantV.Webhooks[i].ClientConfig.CABundle = nil
			}
			gotV := decodeStrict[admissionregistrationv1.ValidatingWebhookConfiguration](t, one(t, objs, "ValidatingWebhookConfiguration", webhook.ValidatingConfigurationName))
			// The chart adds app.kubernetes.io/name to the labels.
			gotV.Labels = map[string]string{"app.kubernetes.io/part-of": gotV.Labels["app.kubernetes.io/part-of"]}
			if diff := cmp.Diff(wantV, gotV); diff != "" {
				t.Errorf("ValidatingWebhookConfiguration (-package +chart):\n%s", diff)
			}

			wantM, err := webhook.MutatingWebhookConfiguration(ep, ns)
			if err != nil {
				t.Fatal(err)
			}
			for i := range wantM.Webhooks {
				wantM.Webhooks[i].ClientConfig.CABundle = nil
			}
			gotM := decodeStrict[admissionregistrationv1.MutatingWebhookConfiguration](t, one(t, objs, "MutatingWebhookConfiguration", webhook.MutatingConfigurationName))
			gotM.Labels = map[string]string{"app.kubernetes.io/part-of": gotM.Labels["app.kubernetes.io/part-of"]}
			if diff := cmp.Diff(wantM, gotM); diff != "" {
				t.Errorf("MutatingWebhookConfiguration (-package +chart):\n%s", diff)
			}
		})
	}
}

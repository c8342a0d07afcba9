package webhook

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"math/big"
	"net"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	admissionv1 "k8s.io/api/admission/v1"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"

	"github.com/trustmesh/trustmesh/internal/policy"
)

// testCA issues server certificates for 127.0.0.1, as trustmesh's CA
// would for the webhook's Service.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pool *x509.CertPool
	pem  []byte
}

func newTestCA(t *testing.T) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "trustmesh test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &testCA{cert: cert, key: key, pool: pool, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

func (ca *testCA) issue(t *testing.T, serial int64) *tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: "trustmesh-webhook.trustmesh-system.svc"},
		DNSNames:    []string{"trustmesh-webhook.trustmesh-system.svc"},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:   time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// startServer runs a Server on a loopback port until the test ends and
// checks that Run returns nil then.
func startServer(t *testing.T, cfg ServerConfig) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg.Listener = ln
	s, err := NewServer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run after cancel: got %v, want nil", err)
		}
	})
	return "https://" + ln.Addr().String()
}

func TestServerHTTPS(t *testing.T) {
	ca := newTestCA(t)
	var current atomic.Pointer[tls.Certificate]
	current.Store(ca.issue(t, 100))
	url := startServer(t, ServerConfig{
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return current.Load(), nil },
		Validate:       newValidator(t, nil),
		Inject:         newInjector(t, InjectorConfig{}),
	})
	// The API server's client: our CA, TLS 1.2 at least, no connection
	// reuse so that each request is a new handshake.
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig:   &tls.Config{RootCAs: ca.pool, MinVersion: tls.VersionTLS12},
		DisableKeepAlives: true,
	}}
	// send posts a fixture and returns the status code, the serial number
	// of the server's certificate and the admission response.
	send := func(path, fixtureName string) (int, int64, *admissionv1.AdmissionResponse) {
		t.Helper()
		resp, err := client.Post(url+path, "application/json", bytes.NewReader(fixture(t, fixtureName)))
		if err != nil {
			t.Fatalf("POST %s: %v", path, err)
		}
		defer resp.Body.Close()
		var rv admissionv1.AdmissionReview
		if resp.StatusCode == http.StatusOK {
			if err := json.NewDecoder(resp.Body).Decode(&rv); err != nil {
				t.Fatal(err)
			}
		}
		return resp.StatusCode, resp.TLS.PeerCertificates[0].SerialNumber.Int64(), rv.Response
	}

	code, serial, ar := send(PathValidate, "validate-peerauthentication-bad-mode.json")
	if code != 200 || ar == nil || ar.Allowed {
		t.Errorf("POST %s: got %d %+v, want a denial", PathValidate, code, ar)
	}
	if serial != 100 {
		t.Errorf("got certificate %d, want 100", serial)
	}
	if code, _, ar = send(PathInject, "inject-labelled-pod.json"); code != 200 || ar == nil || !ar.Allowed || ar.Patch == nil {
		t.Errorf("POST %s: got %d %+v, want a patch", PathInject, code, ar)
	}
	if code, _, _ = send(PathInject, "review-truncated.json"); code != 400 {
		t.Errorf("malformed review: got %d, want 400", code)
	}
	if code, _, _ = send("/other", "inject-labelled-pod.json"); code != 404 {
		t.Errorf("unknown path: got %d, want 404", code)
	}

	// A rotated certificate is served from the next handshake on.
	current.Store(ca.issue(t, 101))
	if _, serial, _ = send(PathValidate, "validate-workload-valid.json"); serial != 101 {
		t.Errorf("after rotation: got certificate %d, want 101", serial)
	}

	// TLS 1.1 is refused.
	old := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: ca.pool, MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS11}, // #nosec G402 -- checking that the server refuses it
	}}
	if resp, err := old.Post(url+PathValidate, "application/json", nil); err == nil {
		resp.Body.Close()
		t.Error("TLS 1.1 client: got a response, want the handshake refused")
	}
}

func TestServerRunFailsOnAddressInUse(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	s, err := NewServer(ServerConfig{Addr: ln.Addr().String(), Validate: http.NotFoundHandler(),
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return nil, errors.New("none") }})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Run(t.Context()); err == nil {
		t.Error("Run on a port in use: got nil, want an error")
	}
}

func TestNewServerConfig(t *testing.T) {
	get := func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return nil, nil }
	for name, cfg := range map[string]ServerConfig{
		"no certificate": {Validate: http.NotFoundHandler()},
		"no handler":     {GetCertificate: get},
		"negative":       {GetCertificate: get, Validate: http.NotFoundHandler(), IdleTimeout: -1},
	} {
		if _, err := NewServer(cfg); err == nil {
			t.Errorf("%s: got no error", name)
		}
	}
}

func TestWebhookConfigurations(t *testing.T) {
	ca := []byte("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")
	svc := Endpoint{Service: &admissionregistrationv1.ServiceReference{Namespace: "trustmesh-system", Name: "trustmesh-webhook", Port: ptr[int32](443)}, CABundle: ca}
	vwc, err := ValidatingWebhookConfiguration(svc)
	if err != nil {
		t.Fatal(err)
	}
	mwc, err := MutatingWebhookConfiguration(svc, "")
	if err != nil {
		t.Fatal(err)
	}
	for name, obj := range map[string]any{"validating-configuration.golden": vwc, "mutating-configuration.golden": mwc} {
		data, err := json.MarshalIndent(obj, "", "  ")
		if err != nil {
			t.Fatal(err)
		}
		golden(t, name, append(data, '\n'))
	}

	byURL, err := MutatingWebhookConfiguration(Endpoint{URL: "https://trustmesh.example.org:9443/", CABundle: ca}, "mesh")
	if err != nil {
		t.Fatal(err)
	}
	w := byURL.Webhooks[0]
	if *w.ClientConfig.URL != "https://trustmesh.example.org:9443/inject" || w.ClientConfig.Service != nil {
		t.Errorf("got client config %+v, want the URL with /inject", w.ClientConfig)
	}
	if diff := cmp.Diff([]string{"mesh"}, w.NamespaceSelector.MatchExpressions[0].Values); diff != "" {
		t.Errorf("system namespace not excluded (-want +got):\n%s", diff)
	}

	for name, e := range map[string]Endpoint{
		"neither":      {CABundle: ca},
		"both":         {Service: svc.Service, URL: "https://x", CABundle: ca},
		"no CA":        {URL: "https://x"},
		"http":         {URL: "http://x", CABundle: ca},
		"service name": {Service: &admissionregistrationv1.ServiceReference{Namespace: "ns"}, CABundle: ca},
	} {
		if _, err := ValidatingWebhookConfiguration(e); err == nil {
			t.Errorf("%s: got no error", name)
		}
	}
}

// TestResourcesCoverKinds keeps the validating webhook's rules in step with
// the kinds the policy package knows.
func TestResourcesCoverKinds(t *testing.T) {
	for _, kind := range policy.Kinds() {
		plural, ok := resources[kind]
		if !ok {
			t.Errorf("kind %s has no resource name: the validating webhook would not see it", kind)
			continue
		}
		if got, err := policy.ResolveKind(plural); err != nil || got != kind {
			t.Errorf("resource %q resolves to %q (%v), want %s", plural, got, err, kind)
		}
	}
	if len(resources) != len(policy.Kinds()) {
		t.Errorf("got %d resources for %d kinds", len(resources), len(policy.Kinds()))
	}
}

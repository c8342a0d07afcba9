package webhook

import (
	"bytes"
	"encoding/json"
	"errors"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"testing"

	jsonpatch "gopkg.in/evanphx/json-patch.v4"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"

	"github.com/trustmesh/trustmesh/internal/k8s/redirect"
)

func newInjector(t testing.TB, cfg InjectorConfig) *Injector {
	t.Helper()
	if cfg.TrustDomain.IsZero() {
		cfg.TrustDomain = td
	}
	in, err := NewInjector(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return in
}

// applyPatch applies resp's patch to the pod of the review in body, as
// the API server does, and returns the patched pod as JSON.
func applyPatch(t *testing.T, body []byte, resp *admissionv1.AdmissionResponse) []byte {
	t.Helper()
	if resp.PatchType == nil || *resp.PatchType != admissionv1.PatchTypeJSONPatch {
		t.Fatalf("got patch type %v, want JSONPatch", resp.PatchType)
	}
	rv, err := decodeReview(body)
	if err != nil {
		t.Fatal(err)
	}
	p, err := jsonpatch.DecodePatch(resp.Patch)
	if err != nil {
		t.Fatalf("the patch is no JSON patch: %v", err)
	}
	out, err := p.Apply(rv.Request.Object.Raw)
	if err != nil {
		t.Fatalf("applying the patch: %v", err)
	}
	return out
}

func TestInject(t *testing.T) {
	tests := []struct {
		fixture string
		// patched: a golden patch; else untouched, or denied with want.
		patched bool
		want    string
		// warning is a substring of the response's warning, if any.
		warning string
	}{
		{fixture: "inject-labelled-pod.json", patched: true},
		{fixture: "inject-pod-with-init-containers-and-volumes.json", patched: true},
		{fixture: "inject-pod-two-ports.json", patched: true, warning: "connections to ports 9090 reach port 8080 too"},
		{fixture: "inject-pod-without-ports.json", patched: true},
		{fixture: "inject-pod-inbound-port-annotation.json", patched: true},
		{fixture: "inject-opt-out-annotation.json"},
		{fixture: "inject-opt-out-istio-annotation.json"},
		{fixture: "inject-opt-out-label.json"},
		{fixture: "inject-already-injected.json"},
		{fixture: "inject-host-network.json"},
		{fixture: "inject-update-pod.json"},
		{
			fixture: "inject-bad-inbound-port-annotation.json",
			want:    `trustmesh injection: annotation trustmesh.dev/inbound-port "http": want a port from 1 to 65535`,
		},
		{
			fixture: "inject-app-port-is-proxy-port.json",
			want:    "trustmesh injection: app port 15006 is one of the proxy's ports (inbound 15006, outbound 15001, admin 15000); set trustmesh.dev/inbound-port",
		},
		{
			fixture: "inject-reserved-container-name.json",
			want:    `trustmesh injection: the pod has a container named "trustmesh-proxy" but no trustmesh.dev/status annotation; the name is reserved for the injected proxy`,
		},
	}
	in := newInjector(t, InjectorConfig{ExcludeOutboundCIDRs: []netip.Prefix{netip.MustParsePrefix("10.96.0.1/32")}})
	for _, tt := range tests {
		name := strings.TrimSuffix(tt.fixture, ".json")
		t.Run(name, func(t *testing.T) {
			body := fixture(t, tt.fixture)
			resp := response(t, post(t, in, body), requestUID(t, body))
			switch {
			case tt.want != "":
				if resp.Allowed || resp.Result == nil || resp.Result.Message != tt.want {
					t.Fatalf("got allowed=%v result=%+v, want denied with\n%s", resp.Allowed, resp.Result, tt.want)
				}
				return
			case !resp.Allowed:
				t.Fatalf("got denied: %+v", resp.Result)
			case !tt.patched:
				if resp.Patch != nil || resp.PatchType != nil {
					t.Fatalf("got patch %s, want the pod untouched", resp.Patch)
				}
				return
			}
			golden(t, name+".patch.golden", indent(t, resp.Patch))
			if tt.warning != "" && !slices.ContainsFunc(resp.Warnings, func(w string) bool { return strings.Contains(w, tt.warning) }) {
				t.Errorf("got warnings %q, want one containing %q", resp.Warnings, tt.warning)
			}
			patched := applyPatch(t, body, resp)
			checkInjected(t, body, patched)

			// Injecting the injected pod changes nothing.
			rv, _ := decodeReview(body)
			rv.Request.Object.Raw = patched
			again, err := json.Marshal(rv)
			if err != nil {
				t.Fatal(err)
			}
			if r := response(t, post(t, in, again), requestUID(t, body)); !r.Allowed || r.Patch != nil {
				t.Errorf("second injection: got allowed=%v patch %s, want the pod untouched", r.Allowed, r.Patch)
			}
		})
	}
}

// checkInjected checks the shape of an injected pod against the pod it
// was made from.
func checkInjected(t *testing.T, body, patched []byte) {
	t.Helper()
	rv, _ := decodeReview(body)
	var before, after corev1.Pod
	if err := json.Unmarshal(rv.Request.Object.Raw, &before); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(patched, &after); err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, c := range after.Spec.InitContainers {
		names = append(names, c.Name)
	}
	var own []string
	for _, c := range before.Spec.InitContainers {
		own = append(own, c.Name)
	}
	proxyAt := slices.Index(names, ProxyContainerName)
	if proxyAt < 0 || !slices.Equal(names[proxyAt+1:], own) {
		t.Fatalf("got init containers %q, want [trustmesh-init] trustmesh-proxy then the pod's own %q", names, own)
	}
	if proxyAt == 1 && names[0] != InitContainerName {
		t.Errorf("got init containers %q, want trustmesh-init first", names)
	}
	proxy := after.Spec.InitContainers[proxyAt]
	if proxy.RestartPolicy == nil || *proxy.RestartPolicy != corev1.ContainerRestartPolicyAlways {
		t.Error("the proxy is not a native sidecar (restartPolicy Always)")
	}
	if p := proxy.StartupProbe; p == nil || p.HTTPGet == nil || p.HTTPGet.Path != "/ready" || p.HTTPGet.Port.IntValue() != DefaultAdminPort {
		t.Errorf("got startup probe %+v, want GET /ready on the admin port", proxy.StartupProbe)
	}
	if sc := proxy.SecurityContext; sc == nil || sc.RunAsUser == nil || *sc.RunAsUser != DefaultProxyUID {
		t.Errorf("got proxy security context %+v, want uid %d", proxy.SecurityContext, DefaultProxyUID)
	}
	if !slices.Equal(after.Spec.Containers[0].Args, before.Spec.Containers[0].Args) || len(after.Spec.Containers) != len(before.Spec.Containers) {
		t.Error("the app's containers changed")
	}
	if !slices.ContainsFunc(after.Spec.Volumes, func(v corev1.Volume) bool {
		return v.Name == SocketVolumeName && v.HostPath != nil && v.HostPath.Path == "/run/trustmesh"
	}) || len(after.Spec.Volumes) != len(before.Spec.Volumes)+1 {
		t.Errorf("got volumes %+v, want the pod's and the agent socket's", after.Spec.Volumes)
	}
	var st injectStatus
	if err := json.Unmarshal([]byte(after.Annotations[AnnotationStatus]), &st); err != nil || st.Version != 1 {
		t.Errorf("got status annotation %q (%v), want version 1", after.Annotations[AnnotationStatus], err)
	}
	for k, v := range before.Annotations {
		if after.Annotations[k] != v {
			t.Errorf("annotation %s: got %q, want %q kept", k, after.Annotations[k], v)
		}
	}
	if proxyAt == 1 {
		init := after.Spec.InitContainers[0]
		caps := init.SecurityContext.Capabilities
		if *init.SecurityContext.RunAsUser != 0 || !slices.Equal(caps.Add, []corev1.Capability{"NET_ADMIN", "NET_RAW"}) || init.RestartPolicy != nil {
			t.Errorf("got trustmesh-init %+v, want root with NET_ADMIN and NET_RAW, run to completion", init.SecurityContext)
		}
		if init.Args[0] != "redirect" {
			t.Errorf("got trustmesh-init args %q, want trustmesh redirect", init.Args)
		}
	}
}

// TestInjectedArgsParse checks that the injected containers' arguments
// are what `trustmesh redirect` and the redirect package accept.
func TestInjectedArgsParse(t *testing.T) {
	in := newInjector(t, InjectorConfig{CaptureOutboundPorts: redirect.AllPorts, ExcludeOutboundCIDRs: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}})
	body := fixture(t, "inject-pod-with-init-containers-and-volumes.json")
	resp := response(t, post(t, in, body), requestUID(t, body))
	var pod corev1.Pod
	if err := json.Unmarshal(applyPatch(t, body, resp), &pod); err != nil {
		t.Fatal(err)
	}
	args := map[string]string{}
	for _, a := range pod.Spec.InitContainers[0].Args[1:] {
		k, v, _ := strings.Cut(strings.TrimPrefix(a, "--"), "=")
		args[k] = v
	}
	cfg := redirect.Config{ProxyUID: 1337, InboundPort: 15006, OutboundPort: 15001}
	var errs [4]error
	cfg.InboundPorts, errs[0] = redirect.ParsePorts(args["include-inbound-ports"])
	cfg.ExcludeInboundPorts, errs[1] = redirect.ParsePortList(args["exclude-inbound-ports"])
	cfg.OutboundPorts, errs[2] = redirect.ParsePorts(args["include-outbound-ports"])
	cfg.ExcludeOutboundCIDRs, errs[3] = redirect.ParseCIDRs(args["exclude-outbound-cidrs"])
	if err := errors.Join(errs[:]...); err != nil {
		t.Fatal(err)
	}
	// The pod's annotation (80,8080) wins over the configured default.
	if got := cfg.OutboundPorts.String(); got != "80,8080" {
		t.Errorf("got outbound ports %s, want the annotation's 80,8080", got)
	}
	if got := redirect.JoinPorts(cfg.ExcludeInboundPorts); got != "9090,15000" {
		t.Errorf("got excluded inbound ports %s, want 9090,15000", got)
	}
	if len(cfg.ExcludeOutboundCIDRs) != 2 {
		t.Errorf("got excluded CIDRs %v, want the configured and the annotation's", cfg.ExcludeOutboundCIDRs)
	}
	if _, err := redirect.Rules(cfg); err != nil {
		t.Errorf("the injected arguments make no rules: %v", err)
	}
}

func TestInjectorConfig(t *testing.T) {
	tests := []struct {
		name string
		cfg  InjectorConfig
		want string
	}{
		{"no trust domain", InjectorConfig{}, "a trust domain is required"},
		{"bad server", InjectorConfig{TrustDomain: td, ServerAddr: "server"}, "server address"},
		{"relative socket", InjectorConfig{TrustDomain: td, SocketPath: "agent.sock"}, "socket path"},
		{"socket in /", InjectorConfig{TrustDomain: td, SocketPath: "/agent.sock"}, "socket path"},
		{"same ports", InjectorConfig{TrustDomain: td, InboundPort: 15000}, "must differ"},
		{"root proxy", InjectorConfig{TrustDomain: td, ProxyUID: -1}, "proxy uid"},
		{"ipv6 cidr", InjectorConfig{TrustDomain: td, ExcludeOutboundCIDRs: []netip.Prefix{netip.MustParsePrefix("fd00::/8")}}, "want IPv4"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := NewInjector(tt.cfg)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("got %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

func TestInjectConfigValues(t *testing.T) {
	in := newInjector(t, InjectorConfig{
		Image: "registry.example.org/trustmesh:1.2.3", Command: "/trustmesh", ServerAddr: "a.example.org:8443,b.example.org:8443",
		SocketPath: "/var/run/spire/agent.sock", InboundPort: 16006, OutboundPort: 16001, AdminPort: 16000, ProxyUID: 2000,
		TrustDomain: td,
	})
	body := fixture(t, "inject-labelled-pod.json")
	resp := response(t, post(t, in, body), requestUID(t, body))
	var pod corev1.Pod
	if err := json.Unmarshal(applyPatch(t, body, resp), &pod); err != nil {
		t.Fatal(err)
	}
	init, proxy := pod.Spec.InitContainers[0], pod.Spec.InitContainers[1]
	wantProxy := []string{"proxy", "--socket=/var/run/spire/agent.sock", "--server=a.example.org:8443,b.example.org:8443", "--admin=0.0.0.0:16000",
		"--http-proxy=127.0.0.1:16001", "--spiffe-id=spiffe://example.org/ns/shop/sa/orders", "--inbound=0.0.0.0:16006=127.0.0.1:8080"}
	if !slices.Equal(proxy.Args, wantProxy) || proxy.Image != "registry.example.org/trustmesh:1.2.3" || proxy.Command[0] != "/trustmesh" {
		t.Errorf("got proxy %s %q %q, want %q", proxy.Image, proxy.Command, proxy.Args, wantProxy)
	}
	wantInit := []string{"redirect", "--proxy-uid=2000", "--inbound-port=16006", "--include-inbound-ports=*", "--exclude-inbound-ports=16000"}
	if !slices.Equal(init.Args, wantInit) {
		t.Errorf("got trustmesh-init args %q, want %q", init.Args, wantInit)
	}
	if *proxy.SecurityContext.RunAsUser != 2000 || proxy.VolumeMounts[0].MountPath != "/var/run/spire" || pod.Spec.Volumes[0].HostPath.Path != "/var/run/spire" {
		t.Errorf("got uid %d, mount %s, hostPath %s", *proxy.SecurityContext.RunAsUser, proxy.VolumeMounts[0].MountPath, pod.Spec.Volumes[0].HostPath.Path)
	}
}

func TestInjectHTTPErrors(t *testing.T) {
	in := newInjector(t, InjectorConfig{})
	for _, f := range []string{"review-truncated.json", "review-v1beta1.json", "review-no-request.json", "review-no-uid.json"} {
		if w := post(t, in, fixture(t, f)); w.Code != 400 {
			t.Errorf("%s: got HTTP %d, want 400", f, w.Code)
		}
	}
	// A review whose object is no pod is refused, not injected.
	rv, _ := decodeReview(fixture(t, "inject-labelled-pod.json"))
	rv.Request.Object.Raw = []byte(`{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p"},"spec":{"containers":1}}`)
	body, err := json.Marshal(rv)
	if err != nil {
		t.Fatal(err)
	}
	if resp := response(t, post(t, in, body), "1001"); resp.Allowed || resp.Result.Code != 400 {
		t.Errorf("malformed pod: got allowed=%v result=%+v, want denied with 400", resp.Allowed, resp.Result)
	}
}

func TestInjectLogs(t *testing.T) {
	var logs bytes.Buffer
	in := newInjector(t, InjectorConfig{Logger: slog.New(slog.NewJSONHandler(&logs, nil))})
	post(t, in, fixture(t, "inject-labelled-pod.json"))
	post(t, in, fixture(t, "inject-opt-out-annotation.json"))
	post(t, in, fixture(t, "inject-bad-inbound-port-annotation.json"))
	for _, want := range []string{
		`"msg":"pod injected","component":"webhook-inject","uid":"1001","operation":"CREATE","kind":"Pod","namespace":"shop","name":"orders-7d9f8b6c5-*"`,
		`"msg":"pod not injected"`, `"reason":"opted out (trustmesh.dev/inject: false)"`,
		`"msg":"admission denied: pod cannot be injected"`,
	} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("log lacks %s:\n%s", want, logs.String())
		}
	}
}

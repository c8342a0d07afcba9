package install

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"

	"github.com/trustmesh/trustmesh/deploy/manifests"
)

// object is one document of the manifests.
type object struct {
	Kind     string
	Metadata struct {
		Name      string
		Namespace string
	}
	raw []byte
}

func (o object) String() string { return o.Kind + " " + o.Metadata.Name }

// parse splits a stream into its objects, failing t on a document that is
// not an object.
func parse(t *testing.T, stream []byte) []object {
	t.Helper()
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(stream)))
	var objs []object
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return objs
		}
		if err != nil {
			t.Fatalf("split the manifests: %v", err)
		}
		var o object
		if err := yaml.Unmarshal(doc, &o); err != nil {
			t.Fatalf("parse a document: %v\n%s", err, doc)
		}
		if o.Kind == "" && o.Metadata.Name == "" {
			if strings.TrimSpace(stripComments(doc)) != "" {
				t.Fatalf("a document that is no object:\n%s", doc)
			}
			continue // comments only: helm's "# Source:" before a CRD
		}
		o.raw = doc
		objs = append(objs, o)
	}
}

func stripComments(doc []byte) string {
	var b strings.Builder
	for line := range strings.Lines(string(doc)) {
		if t := strings.TrimSpace(line); t != "---" && !strings.HasPrefix(t, "#") {
			b.WriteString(line)
		}
	}
	return b.String()
}

// decodeStrict decodes o into T, failing t on a field T does not have (a
// typo in the chart).
func decodeStrict[T any](t *testing.T, o object) *T {
	t.Helper()
	v := new(T)
	if err := yaml.UnmarshalStrict(o.raw, v); err != nil {
		t.Fatalf("%s: %v", o, err)
	}
	return v
}

// find returns the objects of kind.
func find(objs []object, kind string) []object {
	var out []object
	for _, o := range objs {
		if o.Kind == kind {
			out = append(out, o)
		}
	}
	return out
}

// one returns the single object of kind and name.
func one(t *testing.T, objs []object, kind, name string) object {
	t.Helper()
	for _, o := range objs {
		if o.Kind == kind && o.Metadata.Name == name {
			return o
		}
	}
	t.Fatalf("no %s %s in the manifests", kind, name)
	return object{}
}

func defaultManifests(t *testing.T) []object {
	t.Helper()
	out, err := Manifests(Config{})
	if err != nil {
		t.Fatal(err)
	}
	return parse(t, out)
}

func TestManifestsDefaultsAreTheCommittedFile(t *testing.T) {
	got, err := Manifests(Config{})
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != manifests.YAML {
		t.Errorf("Manifests(defaults) differs from deploy/manifests/trustmesh.yaml:\n%s", cmp.Diff(manifests.YAML, string(got)))
	}
	td := spiffeid.RequireTrustDomainFromString(DefaultTrustDomain)
	explicit, err := Manifests(Config{Namespace: DefaultNamespace, TrustDomain: td})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(explicit, got) {
		t.Error("Manifests with the defaults spelled out differs from Manifests(Config{})")
	}
}

func TestManifestsKinds(t *testing.T) {
	objs := defaultManifests(t)
	count := map[string]int{}
	for _, o := range objs {
		count[o.Kind]++
		// Every document decodes into its Kubernetes type without unknown
		// fields.
		switch o.Kind {
		case "Namespace":
			decodeStrict[corev1.Namespace](t, o)
		case "ServiceAccount":
			decodeStrict[corev1.ServiceAccount](t, o)
		case "ConfigMap":
			decodeStrict[corev1.ConfigMap](t, o)
		case "PersistentVolumeClaim":
			decodeStrict[corev1.PersistentVolumeClaim](t, o)
		case "Service":
			decodeStrict[corev1.Service](t, o)
		case "ClusterRole":
			decodeStrict[rbacv1.ClusterRole](t, o)
		case "ClusterRoleBinding":
			decodeStrict[rbacv1.ClusterRoleBinding](t, o)
		case "Role":
			decodeStrict[rbacv1.Role](t, o)
		case "RoleBinding":
			decodeStrict[rbacv1.RoleBinding](t, o)
		case "Deployment":
			decodeStrict[appsv1.Deployment](t, o)
		case "DaemonSet":
			decodeStrict[appsv1.DaemonSet](t, o)
		case "ValidatingWebhookConfiguration":
			decodeStrict[admissionregistrationv1.ValidatingWebhookConfiguration](t, o)
		case "MutatingWebhookConfiguration":
			decodeStrict[admissionregistrationv1.MutatingWebhookConfiguration](t, o)
		case "CustomResourceDefinition":
			decodeStrict[apiextensionsv1.CustomResourceDefinition](t, o)
		default:
			t.Errorf("unexpected %s", o)
		}
	}
	want := map[string]int{
		"Namespace": 1, "ServiceAccount": 2, "ConfigMap": 1, "PersistentVolumeClaim": 1, "Service": 1,
		"ClusterRole": 1, "ClusterRoleBinding": 1, "Role": 1, "RoleBinding": 1,
		"Deployment": 1, "DaemonSet": 1,
		"ValidatingWebhookConfiguration": 1, "MutatingWebhookConfiguration": 1,
		"CustomResourceDefinition": len(crdPlurals(t, objs)),
	}
	if diff := cmp.Diff(want, count); diff != "" {
		t.Errorf("kinds (-want +got):\n%s", diff)
	}
	if count["CustomResourceDefinition"] == 0 {
		t.Error("no CRDs: run make manifests after make generate")
	}
}

// crdPlurals returns the plural names of the trustmesh.dev CRDs, sorted.
func crdPlurals(t *testing.T, objs []object) []string {
	t.Helper()
	var out []string
	for _, o := range find(objs, "CustomResourceDefinition") {
		crd := decodeStrict[apiextensionsv1.CustomResourceDefinition](t, o)
		if crd.Spec.Group != "trustmesh.dev" {
			t.Errorf("%s: group %q, want trustmesh.dev", o, crd.Spec.Group)
		}
		out = append(out, crd.Spec.Names.Plural)
	}
	slices.Sort(out)
	return out
}

// TestRBACLeastPrivilege pins the server's permissions rule by rule, so that
// a new permission is a visible change here; and checks there are no
// wildcards, no secrets, no privilege-escalation verbs, and no roles for the
// agent.
func TestRBACLeastPrivilege(t *testing.T) {
	objs := defaultManifests(t)
	plurals := crdPlurals(t, objs)
	status := make([]string, len(plurals))
	for i, p := range plurals {
		status[i] = p + "/status"
	}
	wantCluster := []rbacv1.PolicyRule{
		{APIGroups: []string{"trustmesh.dev"}, Resources: plurals, Verbs: []string{"get", "list", "watch"}},
		{APIGroups: []string{"trustmesh.dev"}, Resources: status, Verbs: []string{"update"}},
		{APIGroups: []string{"authentication.k8s.io"}, Resources: []string{"tokenreviews"}, Verbs: []string{"create"}},
		{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"get", "list", "watch"}},
		{APIGroups: []string{"admissionregistration.k8s.io"}, Resources: []string{"validatingwebhookconfigurations"}, ResourceNames: []string{"trustmesh-validator"}, Verbs: []string{"get", "patch"}},
		{APIGroups: []string{"admissionregistration.k8s.io"}, Resources: []string{"mutatingwebhookconfigurations"}, ResourceNames: []string{"trustmesh-injector"}, Verbs: []string{"get", "patch"}},
	}
	wantNamespaced := []rbacv1.PolicyRule{
		{APIGroups: []string{""}, Resources: []string{"configmaps"}, ResourceNames: []string{"trustmesh-bundle"}, Verbs: []string{"get", "patch"}},
	}
	cr := decodeStrict[rbacv1.ClusterRole](t, one(t, objs, "ClusterRole", "trustmesh-server"))
	if diff := cmp.Diff(wantCluster, cr.Rules); diff != "" {
		t.Errorf("ClusterRole trustmesh-server rules (-want +got):\n%s", diff)
	}
	role := decodeStrict[rbacv1.Role](t, one(t, objs, "Role", "trustmesh-server"))
	if diff := cmp.Diff(wantNamespaced, role.Rules); diff != "" {
		t.Errorf("Role trustmesh-server rules (-want +got):\n%s", diff)
	}

	for _, rules := range [][]rbacv1.PolicyRule{cr.Rules, role.Rules} {
		for _, r := range rules {
			for _, list := range [][]string{r.APIGroups, r.Resources, r.Verbs, r.ResourceNames, r.NonResourceURLs} {
				for _, s := range list {
					if strings.Contains(s, "*") {
						t.Errorf("rule %+v has the wildcard %q", r, s)
					}
				}
			}
			for _, v := range r.Verbs {
				if v == "escalate" || v == "bind" || v == "impersonate" || v == "delete" || v == "deletecollection" {
					t.Errorf("rule %+v grants %s", r, v)
				}
			}
			if slices.Contains(r.Resources, "secrets") || len(r.NonResourceURLs) > 0 {
				t.Errorf("rule %+v reaches secrets or non-resource URLs", r)
			}
		}
	}

	subject := []rbacv1.Subject{{Kind: "ServiceAccount", Name: "trustmesh-server", Namespace: DefaultNamespace}}
	crb := decodeStrict[rbacv1.ClusterRoleBinding](t, one(t, objs, "ClusterRoleBinding", "trustmesh-server"))
	rb := decodeStrict[rbacv1.RoleBinding](t, one(t, objs, "RoleBinding", "trustmesh-server"))
	for _, b := range []struct {
		name     string
		ref      rbacv1.RoleRef
		subjects []rbacv1.Subject
		kind     string
	}{
		{"ClusterRoleBinding", crb.RoleRef, crb.Subjects, "ClusterRole"},
		{"RoleBinding", rb.RoleRef, rb.Subjects, "Role"},
	} {
		if want := (rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: b.kind, Name: "trustmesh-server"}); b.ref != want {
			t.Errorf("%s roleRef %+v, want %+v (never cluster-admin, admin or edit)", b.name, b.ref, want)
		}
		if diff := cmp.Diff(subject, b.subjects); diff != "" {
			t.Errorf("%s subjects (-want +got):\n%s", b.name, diff)
		}
	}

	agent := decodeStrict[corev1.ServiceAccount](t, one(t, objs, "ServiceAccount", "trustmesh-agent"))
	if agent.AutomountServiceAccountToken == nil || *agent.AutomountServiceAccountToken {
		t.Error("ServiceAccount trustmesh-agent mounts an API token; the agent never calls the API server")
	}
}

// TestPodsRunAsNonRoot checks the server's and the agent's pods (see
// checkPod).
func TestPodsRunAsNonRoot(t *testing.T) {
	objs := defaultManifests(t)
	dep := decodeStrict[appsv1.Deployment](t, one(t, objs, "Deployment", "trustmesh-server"))
	ds := decodeStrict[appsv1.DaemonSet](t, one(t, objs, "DaemonSet", "trustmesh-agent"))
	t.Run("server", func(t *testing.T) { checkPod(t, dep.Spec.Template.Spec, false) })
	t.Run("agent", func(t *testing.T) { checkPod(t, ds.Spec.Template.Spec, true) })
}

// checkPod checks a pod of the chart: non-root, no privilege escalation, a
// read-only root file system, every capability dropped, RuntimeDefault
// seccomp, memory limits, fsGroup applied to a volume's root only (so that
// key files stay 0600). The one exception is pinned: the agent's socket-dir
// init container runs chown as root with CAP_CHOWN alone.
func checkPod(t *testing.T, pod corev1.PodSpec, agent bool) {
	t.Helper()
	psc := pod.SecurityContext
	if psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot || psc.RunAsUser == nil || *psc.RunAsUser == 0 || psc.RunAsGroup == nil {
		t.Fatalf("pod securityContext %+v: want runAsNonRoot, a non-zero runAsUser and a runAsGroup", psc)
	}
	if psc.SeccompProfile == nil || psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Errorf("pod seccompProfile %+v, want RuntimeDefault", psc.SeccompProfile)
	}
	if psc.FSGroup != nil && (psc.FSGroupChangePolicy == nil || *psc.FSGroupChangePolicy != corev1.FSGroupChangeOnRootMismatch) {
		t.Errorf("pod fsGroupChangePolicy %v, want OnRootMismatch (the kubelet would make key files group-readable on every mount)", psc.FSGroupChangePolicy)
	}
	if pod.HostNetwork || pod.HostIPC || pod.HostPID != agent {
		t.Errorf("hostNetwork %v, hostIPC %v, hostPID %v; want false, false, %v", pod.HostNetwork, pod.HostIPC, pod.HostPID, agent)
	}
	for _, v := range pod.Volumes {
		if v.HostPath != nil && (!agent || v.HostPath.Path != "/run/trustmesh") {
			t.Errorf("volume %s: hostPath %s (only the agent's /run/trustmesh is allowed)", v.Name, v.HostPath.Path)
		}
	}
	for _, c := range slices.Concat(pod.InitContainers, pod.Containers) {
		sc := c.SecurityContext
		if sc == nil {
			t.Errorf("container %s has no securityContext", c.Name)
			continue
		}
		if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation ||
			sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem ||
			(sc.Privileged != nil && *sc.Privileged) ||
			sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) {
			t.Errorf("container %s: securityContext %+v: want no privilege escalation, a read-only root, not privileged, capabilities drop [ALL]", c.Name, sc)
		}
		if c.Resources.Limits.Memory().IsZero() {
			t.Errorf("container %s has no memory limit", c.Name)
		}
		if agent && c.Name == "socket-dir" {
			root := sc.RunAsUser != nil && *sc.RunAsUser == 0
			if !root || !slices.Equal(sc.Capabilities.Add, []corev1.Capability{"CHOWN"}) ||
				!slices.Equal(c.Command, []string{"chown", fmt.Sprintf("%d:%d", *psc.RunAsUser, *psc.RunAsGroup), "/run/trustmesh"}) || len(c.Args) != 0 {
				t.Errorf("init container socket-dir: want exactly chown UID:GID /run/trustmesh as root with CAP_CHOWN alone, got command %q args %q user %v add %v",
					c.Command, c.Args, sc.RunAsUser, sc.Capabilities.Add)
			}
			continue
		}
		if (sc.RunAsNonRoot != nil && !*sc.RunAsNonRoot) || (sc.RunAsUser != nil && *sc.RunAsUser == 0) {
			t.Errorf("container %s runs as root", c.Name)
		}
		if sc.Capabilities != nil && len(sc.Capabilities.Add) > 0 {
			t.Errorf("container %s adds capabilities %v", c.Name, sc.Capabilities.Add)
		}
	}
}

// containerArgs returns the args of the named workload's first container.
func containerArgs(t *testing.T, objs []object, kind, name string) []string {
	t.Helper()
	var spec corev1.PodSpec
	switch kind {
	case "Deployment":
		spec = decodeStrict[appsv1.Deployment](t, one(t, objs, kind, name)).Spec.Template.Spec
	case "DaemonSet":
		spec = decodeStrict[appsv1.DaemonSet](t, one(t, objs, kind, name)).Spec.Template.Spec
	}
	if len(spec.Containers) == 0 {
		t.Fatalf("%s %s has no container", kind, name)
	}
	return spec.Containers[0].Args
}

// flagValue returns the value after flag in args.
func flagValue(t *testing.T, args []string, flag string) string {
	t.Helper()
	i := slices.Index(args, flag)
	if i < 0 || i+1 >= len(args) {
		t.Fatalf("args %q: no %s VALUE", args, flag)
	}
	return args[i+1]
}

// TestManifestsFitTogether checks what the parts expect of each other: the
// agent's --server is the Service's node API port, the webhooks point at the
// Service's webhook port and the server's webhook container port, the agent's
// token has audience trustmesh, and the CRDs, the RBAC rules and the
// validating webhook cover the same kinds.
func TestManifestsFitTogether(t *testing.T) {
	objs := defaultManifests(t)
	svc := decodeStrict[corev1.Service](t, one(t, objs, "Service", "trustmesh-server"))
	ports := map[string]corev1.ServicePort{}
	for _, p := range svc.Spec.Ports {
		ports[p.Name] = p
	}
	if got, want := flagValue(t, containerArgs(t, objs, "DaemonSet", "trustmesh-agent"), "--server"),
		fmt.Sprintf("trustmesh-server.%s.svc:%d", DefaultNamespace, ports["node-api"].Port); got != want {
		t.Errorf("agent --server %q, want %q", got, want)
	}
	serverArgs := containerArgs(t, objs, "Deployment", "trustmesh-server")
	if !slices.Contains(serverArgs, "--kubernetes") {
		t.Errorf("server args %q lack --kubernetes", serverArgs)
	}
	if got := flagValue(t, serverArgs, "--trust-domain"); got != DefaultTrustDomain {
		t.Errorf("server --trust-domain %q, want %q", got, DefaultTrustDomain)
	}
	if got, want := flagValue(t, serverArgs, "--k8s-agent-service-account"), DefaultNamespace+":trustmesh-agent"; got != want {
		t.Errorf("server --k8s-agent-service-account %q, want %q", got, want)
	}

	dep := decodeStrict[appsv1.Deployment](t, one(t, objs, "Deployment", "trustmesh-server"))
	var webhookPort int32
	for _, p := range dep.Spec.Template.Spec.Containers[0].Ports {
		if p.Name == ports["webhook"].TargetPort.StrVal {
			webhookPort = p.ContainerPort
		}
	}
	if webhookPort != 9443 {
		t.Errorf("the Service's webhook port reaches container port %d, want 9443 (the webhook server's default)", webhookPort)
	}

	vwc := decodeStrict[admissionregistrationv1.ValidatingWebhookConfiguration](t, one(t, objs, "ValidatingWebhookConfiguration", "trustmesh-validator"))
	mwc := decodeStrict[admissionregistrationv1.MutatingWebhookConfiguration](t, one(t, objs, "MutatingWebhookConfiguration", "trustmesh-injector"))
	for _, cc := range []admissionregistrationv1.WebhookClientConfig{vwc.Webhooks[0].ClientConfig, mwc.Webhooks[0].ClientConfig} {
		s := cc.Service
		if s == nil || s.Name != svc.Name || s.Namespace != svc.Namespace || s.Port == nil || *s.Port != ports["webhook"].Port {
			t.Errorf("webhook clientConfig.service %+v does not name the Service's webhook port", s)
		}
		if len(cc.CABundle) != 0 {
			t.Error("a webhook carries a caBundle; the server patches it in")
		}
	}
	if got, want := vwc.Webhooks[0].Rules[0].Resources, crdPlurals(t, objs); !slices.Equal(got, want) {
		t.Errorf("validating webhook resources %q, want the CRDs' %q", got, want)
	}
	if *vwc.Webhooks[0].FailurePolicy != admissionregistrationv1.Fail || *mwc.Webhooks[0].FailurePolicy != admissionregistrationv1.Fail {
		t.Error("a webhook does not fail closed")
	}

	ds := decodeStrict[appsv1.DaemonSet](t, one(t, objs, "DaemonSet", "trustmesh-agent"))
	var audiences []string
	for _, v := range ds.Spec.Template.Spec.Volumes {
		if v.Projected == nil {
			continue
		}
		for _, src := range v.Projected.Sources {
			if src.ServiceAccountToken != nil {
				audiences = append(audiences, src.ServiceAccountToken.Audience)
			}
		}
	}
	if !slices.Equal(audiences, []string{"trustmesh"}) {
		t.Errorf("agent token audiences %q, want [trustmesh]", audiences)
	}
	if got := flagValue(t, containerArgs(t, objs, "DaemonSet", "trustmesh-agent"), "--socket"); got != "/run/trustmesh/agent.sock" {
		t.Errorf("agent --socket %q, want /run/trustmesh/agent.sock (the injector's default)", got)
	}
}

func TestManifestsForNamespaceAndTrustDomain(t *testing.T) {
	base := defaultManifests(t)
	for _, tc := range []struct{ name, ns, td string }{
		{"other namespace", "mesh", DefaultTrustDomain},
		{"other trust domain", DefaultNamespace, "example.org"},
		{"both", "prod-mesh", "prod.example.org"},
		{"namespace holding the default", DefaultNamespace + "-2", "a.cluster.local"},
		{"numeric namespace", "123", "td_with_underscore"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := Manifests(Config{Namespace: tc.ns, TrustDomain: spiffeid.RequireTrustDomainFromString(tc.td)})
			if err != nil {
				t.Fatal(err)
			}
			objs := parse(t, out)
			if len(objs) != len(base) {
				t.Fatalf("got %d objects, want %d", len(objs), len(base))
			}
			for i, o := range objs {
				if o.Kind == "CustomResourceDefinition" {
					if !bytes.Equal(o.raw, base[i].raw) {
						t.Errorf("%s changed", o)
					}
					continue
				}
				if base[i].Metadata.Namespace != "" && o.Metadata.Namespace != tc.ns {
					t.Errorf("%s: namespace %q, want %q", o, o.Metadata.Namespace, tc.ns)
				}
			}
			if got := one(t, objs, "Namespace", tc.ns); got.Metadata.Name != tc.ns {
				t.Errorf("Namespace %q", got.Metadata.Name)
			}
			for _, kind := range []string{"ClusterRoleBinding", "RoleBinding"} {
				b := decodeStrict[rbacv1.RoleBinding](t, one(t, objs, kind, "trustmesh-server"))
				if b.Subjects[0].Namespace != tc.ns {
					t.Errorf("%s subject namespace %q, want %q", kind, b.Subjects[0].Namespace, tc.ns)
				}
			}
			vwc := decodeStrict[admissionregistrationv1.ValidatingWebhookConfiguration](t, one(t, objs, "ValidatingWebhookConfiguration", "trustmesh-validator"))
			mwc := decodeStrict[admissionregistrationv1.MutatingWebhookConfiguration](t, one(t, objs, "MutatingWebhookConfiguration", "trustmesh-injector"))
			if vwc.Webhooks[0].ClientConfig.Service.Namespace != tc.ns || mwc.Webhooks[0].ClientConfig.Service.Namespace != tc.ns {
				t.Error("a webhook's Service is not in the namespace")
			}
			if got := mwc.Webhooks[0].NamespaceSelector.MatchExpressions[0].Values; !slices.Equal(got, []string{tc.ns}) {
				t.Errorf("injector excludes namespaces %q, want [%s]", got, tc.ns)
			}
			if got, want := flagValue(t, containerArgs(t, objs, "DaemonSet", "trustmesh-agent"), "--server"), "trustmesh-server."+tc.ns+".svc:8443"; got != want {
				t.Errorf("agent --server %q, want %q", got, want)
			}
			serverArgs := containerArgs(t, objs, "Deployment", "trustmesh-server")
			if got := flagValue(t, serverArgs, "--trust-domain"); got != tc.td {
				t.Errorf("server --trust-domain %q, want %q", got, tc.td)
			}
			if got, want := flagValue(t, serverArgs, "--k8s-agent-service-account"), tc.ns+":trustmesh-agent"; got != want {
				t.Errorf("server --k8s-agent-service-account %q, want %q", got, want)
			}
			// Only the lines of the sites changed.
			changed := 0
			got, want := strings.Split(string(out), "\n"), strings.Split(manifests.YAML, "\n")
			if len(got) != len(want) {
				t.Fatalf("%d lines, want %d", len(got), len(want))
			}
			for i := range got {
				if got[i] != want[i] {
					changed++
				}
			}
			wantChanged := 0
			if tc.ns != DefaultNamespace {
				// each namespaced object's metadata.namespace, and the
				// Namespace, 2 subjects, 2 webhook Services, the injector's
				// selector, --server, --k8s-agent-service-account
				for _, o := range base {
					if o.Metadata.Namespace != "" {
						wantChanged++
					}
				}
				wantChanged += 1 + 2 + 2 + 1 + 1 + 1
			}
			if tc.td != DefaultTrustDomain {
				wantChanged++
			}
			if changed != wantChanged {
				t.Errorf("%d lines changed, want %d", changed, wantChanged)
			}
		})
	}
}

func TestManifestsRefusesBadNamespace(t *testing.T) {
	for _, ns := range []string{"Trustmesh", "-mesh", "mesh-", "mesh.system", "mesh_system", "mesh system", `a"b`, strings.Repeat("a", 64)} {
		if _, err := Manifests(Config{Namespace: ns}); err == nil {
			t.Errorf("Manifests(namespace %q) succeeded, want an error", ns)
		}
	}
}

// TestRewriteRefusesWhatItDoesNotKnow feeds rewrite manifests the chart does
// not produce: each must fail instead of printing something half-rewritten.
func TestRewriteRefusesWhatItDoesNotKnow(t *testing.T) {
	v := values{namespace: "mesh", trustDomain: "example.org"}
	for _, tc := range []struct{ name, src, want string }{
		{"namespace in a value no site knows",
			"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\n  namespace: \"trustmesh-system\"\ndata:\n  addr: trustmesh-server.trustmesh-system.svc\n",
			"outside the places"},
		{"trust domain in a flag no site knows",
			"apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: x\nspec:\n  template:\n    spec:\n      containers:\n        - name: c\n          args: [--bundle-td, \"cluster.local\"]\n",
			"outside the places"},
		{"unquoted site",
			"apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: x\n  namespace: trustmesh-system\n",
			"not double-quoted"},
		{"site with another value",
			"apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: x\n  namespace: \"kube-system\"\n",
			"the chart changed"},
		{"default in a comment",
			"apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: x\n  # lives in trustmesh-system\n  namespace: \"trustmesh-system\"\n",
			"comment"},
		{"document that is no object", "- a\n- b\n", "not an object"},
		{"object without a name", "apiVersion: v1\nkind: ServiceAccount\n", "without kind or metadata.name"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := rewrite([]byte(tc.src), v)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got error %v, want one containing %q", err, tc.want)
			}
		})
	}
}

func TestRewriteKeepsCRDText(t *testing.T) {
	// A CRD's description may mention the defaults (the mesh-wide policy
	// namespace is trustmesh-system whatever the install namespace); it is
	// no site and stays as it is.
	src := "apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata:\n  name: x.trustmesh.dev\nspec:\n  description: mesh-wide policies live in trustmesh-system (cluster.local)\n" +
		"---\napiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: é-x\n  namespace: \"trustmesh-system\"\n"
	got, err := rewrite([]byte(src), values{namespace: "mesh", trustDomain: "example.org"})
	if err != nil {
		t.Fatal(err)
	}
	want := strings.Replace(src, `namespace: "trustmesh-system"`, `namespace: "mesh"`, 1)
	if string(got) != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
}

func FuzzManifests(f *testing.F) {
	f.Add("mesh", "example.org")
	f.Add(DefaultNamespace, DefaultTrustDomain)
	f.Add("a", "b")
	f.Fuzz(func(t *testing.T, ns, tdName string) {
		td, err := spiffeid.TrustDomainFromString(tdName)
		if err != nil {
			return
		}
		out, err := Manifests(Config{Namespace: ns, TrustDomain: td})
		if ValidateNamespace(ns) != nil && ns != "" {
			if err == nil {
				t.Fatalf("namespace %q accepted", ns)
			}
			return
		}
		if err != nil {
			t.Fatalf("Manifests(%q, %q): %v", ns, td, err)
		}
		if ns == "" {
			ns = DefaultNamespace
		}
		for _, o := range parse(t, out) {
			if o.Kind == "ServiceAccount" && o.Metadata.Namespace != ns {
				t.Fatalf("%s in namespace %q, want %q", o, o.Metadata.Namespace, ns)
			}
		}
	})
}

package install

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
)

// The chart and the CRDs, relative to this package's directory (where go
// test runs its tests).
const (
	chartDir = "../../../deploy/helm/trustmesh"
	crdDir   = "../../../deploy/crds"
)

// envHelm names the helm binary the chart tests run; the Makefile sets it to
// the pinned one it builds into .tools/.
const envHelm = "TRUSTMESH_HELM"

// helmBinary returns the helm to run: $TRUSTMESH_HELM, else the one `make
// test-deps` builds into .tools/. The tests never skip: without helm they
// fail, saying how to get it.
func helmBinary(t *testing.T) string {
	t.Helper()
	if p := os.Getenv(envHelm); p != "" {
		return p
	}
	found, _ := filepath.Glob("../../../.tools/helm-*/helm")
	if len(found) == 0 {
		t.Fatalf("no helm: run make test-deps (it builds the pinned helm into .tools/), or set %s", envHelm)
	}
	slices.Sort(found)
	return found[len(found)-1]
}

// helm runs helm with args and returns its standard output; it fails t when
// helm fails, unless wantErr, when it returns the standard error instead.
func helm(t *testing.T, wantErr bool, args ...string) string {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), helmBinary(t), args...)
	// Keep helm away from the user's configuration and repositories.
	home := t.TempDir()
	cmd.Env = append(os.Environ(), "HELM_CONFIG_HOME="+home, "HELM_CACHE_HOME="+home, "HELM_DATA_HOME="+home)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	switch {
	case wantErr && err == nil:
		t.Fatalf("helm %s succeeded, want an error", strings.Join(args, " "))
	case wantErr:
		return stderr.String()
	case err != nil:
		t.Fatalf("helm %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return stdout.String()
}

// haValues are the values of several servers on PostgreSQL.
var haValues = []string{
	"--set", "server.replicas=3",
	"--set", "server.store.postgresURL=postgres://trustmesh@db:5432/trustmesh",
	"--set", "server.store.kekSecret=trustmesh-kek",
	"--set", "server.store.passwordSecret=trustmesh-db",
	"--set", "server.metricsPort=8445",
}

func TestHelmLint(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"defaults", nil},
		{"with namespace", []string{"--set", "createNamespace=true"}},
		{"postgres replicas", haValues},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := helm(t, false, slices.Concat([]string{"lint", "--strict", "--namespace", "trustmesh-system", chartDir}, tc.args)...)
			if !strings.Contains(out, "0 chart(s) failed") {
				t.Errorf("helm lint:\n%s", out)
			}
		})
	}
}

// TestHelmTemplateMatchesManifests proves the rewrite faithful: for each
// namespace and trust domain, Manifests prints what helm renders from the
// chart for them (after the header comment of deploy/manifests).
func TestHelmTemplateMatchesManifests(t *testing.T) {
	for _, tc := range []struct{ ns, td string }{
		{DefaultNamespace, DefaultTrustDomain},
		{"mesh", "example.org"},
		{DefaultNamespace + "-2", "a.cluster.local"},
		{"123", "td_1"},
	} {
		t.Run(tc.ns+"/"+tc.td, func(t *testing.T) {
			want := helm(t, false, "template", "trustmesh", chartDir, "--namespace", tc.ns,
				"--set", "trustDomain="+tc.td, "--set", "createNamespace=true", "--include-crds")
			out, err := Manifests(Config{Namespace: tc.ns, TrustDomain: spiffeid.RequireTrustDomainFromString(tc.td)})
			if err != nil {
				t.Fatal(err)
			}
			_, got, ok := strings.Cut(string(out), "\n---\n")
			if !ok {
				t.Fatal("no document in the manifests")
			}
			if got = "---\n" + got; got != want {
				t.Errorf("Manifests differs from helm template (-helm +Manifests):\n%s", cmp.Diff(want, got))
			}
		})
	}
}

func TestHelmRefusesBadValues(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"replicas without postgres", []string{"--set", "server.replicas=2"}, "server.replicas > 1 needs a shared store"},
		{"postgres without kek", []string{"--set", "server.store.postgresURL=postgres://db/tm"}, "needs server.store.kekSecret"},
		{"kek without postgres", []string{"--set", "server.store.kekSecret=k"}, "only used with server.store.postgresURL"},
		{"not a postgres url", []string{"--set", "server.store.postgresURL=mysql://db/tm", "--set", "server.store.kekSecret=k"}, "want postgres://"},
		{"uppercase trust domain", []string{"--set", "trustDomain=Example.org"}, "trustDomain"},
		{"misspelt value", []string{"--set", "trustdomain=example.org"}, "additional properties 'trustdomain' not allowed"},
		{"short token lifetime", []string{"--set", "agent.tokenExpirationSeconds=60"}, "tokenExpirationSeconds"},
		{"metrics on the node API port", []string{"--set", "server.metricsPort=8443"}, "metricsPort"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			stderr := helm(t, true, slices.Concat([]string{"template", "trustmesh", chartDir}, tc.args)...)
			if !strings.Contains(stderr, tc.want) {
				t.Errorf("helm template %q: got\n%s\nwant an error containing %q", tc.args, stderr, tc.want)
			}
		})
	}
}

// TestHelmPostgresReplicas checks the shape of several servers on
// PostgreSQL: the store and KEK flags, the password from its Secret, no
// shared volume, rolling updates.
func TestHelmPostgresReplicas(t *testing.T) {
	objs := parse(t, []byte(helm(t, false, slices.Concat([]string{"template", "trustmesh", chartDir, "--namespace", "trustmesh-system"}, haValues)...)))
	if pvcs := find(objs, "PersistentVolumeClaim"); len(pvcs) != 0 {
		t.Errorf("a PersistentVolumeClaim with PostgreSQL: %v", pvcs)
	}
	if ns := find(objs, "Namespace"); len(ns) != 0 {
		t.Errorf("a Namespace without createNamespace: %v", ns)
	}
	dep := decodeStrict[appsv1.Deployment](t, one(t, objs, "Deployment", "trustmesh-server"))
	if *dep.Spec.Replicas != 3 || dep.Spec.Strategy.Type != appsv1.RollingUpdateDeploymentStrategyType {
		t.Errorf("replicas %d strategy %s, want 3 RollingUpdate", *dep.Spec.Replicas, dep.Spec.Strategy.Type)
	}
	c := dep.Spec.Template.Spec.Containers[0]
	for flag, want := range map[string]string{
		"--store":          "postgres://trustmesh@db:5432/trustmesh",
		"--kek-file":       "/etc/trustmesh/kek/kek",
		"--metrics-listen": ":8445",
	} {
		if got := flagValue(t, c.Args, flag); got != want {
			t.Errorf("%s %q, want %q", flag, got, want)
		}
	}
	wantEnv := []corev1.EnvVar{{Name: "PGPASSWORD", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{
		LocalObjectReference: corev1.LocalObjectReference{Name: "trustmesh-db"}, Key: "password",
	}}}}
	if diff := cmp.Diff(wantEnv, c.Env); diff != "" {
		t.Errorf("env (-want +got):\n%s", diff)
	}
	vols := map[string]corev1.VolumeSource{}
	for _, v := range dep.Spec.Template.Spec.Volumes {
		vols[v.Name] = v.VolumeSource
	}
	if vols["data"].EmptyDir == nil {
		t.Errorf("data volume %+v, want an emptyDir (the state is in PostgreSQL)", vols["data"])
	}
	if s := vols["kek-secret"].Secret; s == nil || s.SecretName != "trustmesh-kek" {
		t.Errorf("kek-secret volume %+v, want Secret trustmesh-kek", vols["kek-secret"])
	}
	if e := vols["kek"].EmptyDir; e == nil || e.Medium != corev1.StorageMediumMemory {
		t.Errorf("kek volume %+v, want an emptyDir in memory", vols["kek"])
	}
	// The server sees the KEK only as the 0600 copy the kek init container
	// makes; the Secret is mounted in that init container alone.
	for _, m := range c.VolumeMounts {
		if m.Name == "kek-secret" {
			t.Error("the server container mounts the KEK Secret itself")
		}
	}
	inits := dep.Spec.Template.Spec.InitContainers
	if len(inits) != 1 || inits[0].Name != "kek" ||
		!slices.Equal(inits[0].Command, []string{"sh", "-c", "umask 077 && cp /kek-secret/kek /etc/trustmesh/kek/kek"}) {
		t.Errorf("init containers %+v, want kek copying the Secret with mode 0600", inits)
	}
	checkPod(t, dep.Spec.Template.Spec, false)
}

// TestChartCRDsAreDeployCRDs: the chart's crds/ are the copies of deploy/crds
// that make manifests makes.
func TestChartCRDsAreDeployCRDs(t *testing.T) {
	read := func(dir string) map[string]string {
		files, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]string{}
		for _, f := range files {
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			out[filepath.Base(f)] = string(b)
		}
		return out
	}
	want, got := read(crdDir), read(filepath.Join(chartDir, "crds"))
	if len(want) == 0 {
		t.Fatal("no CRDs in deploy/crds: run make generate")
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("chart crds/ differ from deploy/crds (run make manifests) (-deploy/crds +chart):\n%s", diff)
	}
}

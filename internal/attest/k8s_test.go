package attest

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestK8sIdentityFromUser(t *testing.T) {
	bound := map[string][]string{
		K8sExtraPodName:  {"web-1"},
		K8sExtraPodUID:   {"uid-1"},
		K8sExtraNodeName: {"node-a"},
		"authentication.kubernetes.io/credential-id": {"JTI=x"},
	}
	for _, tc := range []struct {
		name  string
		user  string
		extra map[string][]string
		want  K8sIdentity
	}{
		{"unbound", "system:serviceaccount:default:orders", nil, K8sIdentity{Namespace: "default", ServiceAccount: "orders"}},
		{"bound-to-pod-on-node", "system:serviceaccount:shop:web", bound,
			K8sIdentity{Namespace: "shop", ServiceAccount: "web", PodName: "web-1", PodUID: "uid-1", NodeName: "node-a"}},
		{"bound-to-unscheduled-pod", "system:serviceaccount:shop:web", map[string][]string{K8sExtraPodName: {"p"}, K8sExtraPodUID: {"u"}},
			K8sIdentity{Namespace: "shop", ServiceAccount: "web", PodName: "p", PodUID: "u"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := K8sIdentityFromUser(tc.user, tc.extra)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("K8sIdentityFromUser (-want +got):\n%s", diff)
			}
		})
	}
}

func TestK8sIdentityFromUserErrors(t *testing.T) {
	for _, tc := range []struct {
		name, user string
		extra      map[string][]string
		want       string
	}{
		{"a-person", "alice", nil, `user "alice" is not a service account`},
		{"a-node", "system:node:n1", nil, "is not a service account"},
		{"no-name", "system:serviceaccount:default", nil, "want system:serviceaccount:NAMESPACE:NAME"},
		{"bad-namespace", "system:serviceaccount:Default:x", nil, "namespace"},
		{"bad-name", "system:serviceaccount:default:a:b", nil, "service account"},
		{"two-node-names", "system:serviceaccount:default:x", map[string][]string{K8sExtraNodeName: {"a", "b"}}, "has 2 values"},
		{"empty-pod-name", "system:serviceaccount:default:x", map[string][]string{K8sExtraPodName: {""}, K8sExtraPodUID: {"u"}}, "is empty"},
		{"pod-without-uid", "system:serviceaccount:default:x", map[string][]string{K8sExtraPodName: {"p"}}, "without its UID"},
		{"node-without-pod", "system:serviceaccount:default:x", map[string][]string{K8sExtraNodeName: {"n"}}, "names a node but no pod"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := K8sIdentityFromUser(tc.user, tc.extra)
			if err == nil {
				t.Fatalf("K8sIdentityFromUser(%q) = %+v, want an error", tc.user, got)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got error %q, want one containing %q", err, tc.want)
			}
		})
	}
}

func TestK8sIdentitySelectors(t *testing.T) {
	id := K8sIdentity{Namespace: "shop", ServiceAccount: "web", PodName: "web-1", PodUID: "uid-1", NodeName: "node-a"}
	if got, want := id.SPIFFEPath(), "/ns/shop/sa/web"; got != want {
		t.Errorf("SPIFFEPath() = %q, want %q", got, want)
	}
	var got []string
	for _, s := range id.Selectors(map[string]string{"app": "web", "tier": ""}) {
		if _, err := ParseSelector(s.String()); err != nil {
			t.Errorf("selector %s does not parse: %v", s, err)
		}
		got = append(got, s.String())
	}
	want := []string{"k8s:ns:shop", "k8s:pod-label:app:web", "k8s:pod-label:tier:", "k8s:pod-name:web-1", "k8s:pod-uid:uid-1", "k8s:sa:web"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Selectors (-want +got):\n%s", diff)
	}
	unbound := K8sIdentity{Namespace: "shop", ServiceAccount: "web"}
	if got := len(unbound.Selectors(nil)); got != 2 {
		t.Errorf("unbound token: got %d selectors, want 2 (ns, sa)", got)
	}
}

func FuzzK8sIdentityFromUser(f *testing.F) {
	f.Add("system:serviceaccount:default:orders", "web-1", "uid-1", "node-a")
	f.Add("system:serviceaccount::", "", "", "")
	f.Fuzz(func(t *testing.T, user, pod, uid, node string) {
		extra := map[string][]string{}
		for k, v := range map[string]string{K8sExtraPodName: pod, K8sExtraPodUID: uid, K8sExtraNodeName: node} {
			if v != "" {
				extra[k] = []string{v}
			}
		}
		id, err := K8sIdentityFromUser(user, extra)
		if err != nil {
			return
		}
		if _, err := ParseSelector("k8s:ns:" + id.Namespace); err != nil {
			t.Errorf("accepted namespace %q is not a valid selector: %v", id.Namespace, err)
		}
		if _, err := ParseSelector("k8s:sa:" + id.ServiceAccount); err != nil {
			t.Errorf("accepted service account %q is not a valid selector: %v", id.ServiceAccount, err)
		}
	})
}

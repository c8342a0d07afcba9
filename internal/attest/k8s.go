package attest

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"
)

// The extra keys the Kubernetes API server puts into the user info of a
// service-account token bound to a pod (see k8s.io/apiserver's
// serviceaccount package; copied here to keep that module out of the build).
const (
	K8sExtraPodName  = "authentication.kubernetes.io/pod-name"
	K8sExtraPodUID   = "authentication.kubernetes.io/pod-uid"
	K8sExtraNodeName = "authentication.kubernetes.io/node-name"
)

// k8sServiceAccountUserPrefix starts the user name of every service-account
// token: system:serviceaccount:NAMESPACE:NAME.
const k8sServiceAccountUserPrefix = "system:serviceaccount:"

// K8sIdentity is what an authenticated Kubernetes service-account token
// says about its bearer. PodName, PodUID and NodeName are set only for a
// token bound to a pod (NodeName only when the pod was scheduled).
type K8sIdentity struct {
	Namespace, ServiceAccount string
	PodName, PodUID, NodeName string
}

// K8sIdentityFromUser reads the identity out of the user info of an
// authenticated TokenReview (its username and extra). Anything but a
// well-formed service account user is an error: a TokenReview also
// authenticates people and nodes, which are not workloads.
func K8sIdentityFromUser(username string, extra map[string][]string) (K8sIdentity, error) {
	rest, ok := strings.CutPrefix(username, k8sServiceAccountUserPrefix)
	if !ok {
		return K8sIdentity{}, fmt.Errorf("user %q is not a service account", username)
	}
	ns, sa, ok := strings.Cut(rest, ":")
	if !ok {
		return K8sIdentity{}, fmt.Errorf("user %q: want %sNAMESPACE:NAME", username, k8sServiceAccountUserPrefix)
	}
	if errs := validation.IsDNS1123Label(ns); len(errs) > 0 {
		return K8sIdentity{}, fmt.Errorf("user %q: namespace: %s", username, strings.Join(errs, "; "))
	}
	if errs := validation.IsDNS1123Subdomain(sa); len(errs) > 0 {
		return K8sIdentity{}, fmt.Errorf("user %q: service account: %s", username, strings.Join(errs, "; "))
	}
	id := K8sIdentity{Namespace: ns, ServiceAccount: sa}
	var err error
	if id.PodName, err = singleExtra(extra, K8sExtraPodName); err != nil {
		return K8sIdentity{}, err
	}
	if id.PodUID, err = singleExtra(extra, K8sExtraPodUID); err != nil {
		return K8sIdentity{}, err
	}
	if id.NodeName, err = singleExtra(extra, K8sExtraNodeName); err != nil {
		return K8sIdentity{}, err
	}
	if (id.PodName == "") != (id.PodUID == "") {
		return K8sIdentity{}, errors.New("token names a pod without its UID, or the other way round")
	}
	if id.NodeName != "" && id.PodName == "" {
		return K8sIdentity{}, errors.New("token names a node but no pod")
	}
	return id, nil
}

func singleExtra(extra map[string][]string, key string) (string, error) {
	switch v := extra[key]; len(v) {
	case 0:
		return "", nil
	case 1:
		if v[0] == "" {
			return "", fmt.Errorf("token extra %s is empty", key)
		}
		return v[0], nil
	default:
		return "", fmt.Errorf("token extra %s has %d values, want one", key, len(v))
	}
}

// SPIFFEPath is the service account's default SPIFFE ID path,
// /ns/NAMESPACE/sa/NAME, the one Istio uses.
func (id K8sIdentity) SPIFFEPath() string {
	return "/ns/" + id.Namespace + "/sa/" + id.ServiceAccount
}

// Selectors are the identity's selectors: k8s:ns and k8s:sa always;
// k8s:pod-name and k8s:pod-uid for a token bound to a pod; and
// k8s:pod-label:KEY:VALUE for each of labels, the pod's labels as read from
// the API server (nil when the pod could not be read). Sorted.
func (id K8sIdentity) Selectors(labels map[string]string) []Selector {
	out := []Selector{{Type: "k8s", Value: "ns:" + id.Namespace}, {Type: "k8s", Value: "sa:" + id.ServiceAccount}}
	if id.PodName != "" {
		out = append(out, Selector{Type: "k8s", Value: "pod-name:" + id.PodName}, Selector{Type: "k8s", Value: "pod-uid:" + id.PodUID})
	}
	for _, k := range slices.Sorted(maps.Keys(labels)) {
		out = append(out, Selector{Type: "k8s", Value: "pod-label:" + k + ":" + labels[k]})
	}
	slices.SortFunc(out, func(a, b Selector) int { return strings.Compare(a.Value, b.Value) })
	return out
}

// validateK8s checks the value of a k8s: selector: ns:NAMESPACE,
// sa:NAME, pod-name:NAME, pod-uid:UID or pod-label:KEY:VALUE, with the
// syntax Kubernetes itself enforces on those names.
func validateK8s(value string) error {
	key, v, ok := strings.Cut(value, ":")
	if !ok || (v == "" && key != "pod-label") {
		return errors.New("want k8s:KEY:VALUE with KEY one of ns, sa, pod-name, pod-uid, pod-label")
	}
	var errs []string
	switch key {
	case "ns":
		errs = validation.IsDNS1123Label(v)
	case "sa", "pod-name":
		errs = validation.IsDNS1123Subdomain(v)
	case "pod-uid":
		if strings.ContainsAny(v, ":/ \t\n") || len(v) > 64 {
			errs = []string{"must be a UID such as 0e6c1a4e-5a1f-4d3b-9f5e-1a2b3c4d5e6f"}
		}
	case "pod-label":
		lk, lv, ok := strings.Cut(v, ":")
		if !ok {
			return fmt.Errorf("want k8s:pod-label:KEY:VALUE, got %q", "k8s:"+value)
		}
		errs = append(validation.IsQualifiedName(lk), validation.IsValidLabelValue(lv)...)
	default:
		return fmt.Errorf("unknown k8s key %q (supported: ns, sa, pod-name, pod-uid, pod-label)", key)
	}
	if len(errs) > 0 {
		return fmt.Errorf("%s %q: %s", key, v, strings.Join(errs, "; "))
	}
	return nil
}

package policy

import (
	"errors"
	"fmt"
	"net/netip"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// Validate checks the semantic rules of obj for a server whose trust domain
// is td. It reports every problem it finds, one per line, each naming the
// object and the field:
//
//	Workload "default/web": spec.selectors: at least one selector is required; ...
func Validate(obj Object, td spiffeid.TrustDomain) error {
	ko, err := registered(obj)
	if err != nil {
		return err
	}
	if td.IsZero() {
		return errors.New("no server trust domain given")
	}
	v := &validator{}
	validateTypeMeta(v, ko)
	validateMetadata(v, ko)
	ko.validateSpec(v, td)
	if len(v.errs) == 0 {
		return nil
	}
	prefix := objectName(obj)
	errs := make([]error, len(v.errs))
	for i, err := range v.errs {
		errs[i] = fmt.Errorf("%s: %w", prefix, err)
	}
	return errors.Join(errs...)
}

// validator collects problems, each with its field path.
type validator struct {
	errs []error
}

func (v *validator) add(field, format string, args ...any) {
	v.errs = append(v.errs, fmt.Errorf("%s: %s", field, fmt.Sprintf(format, args...)))
}

// validateTypeMeta accepts empty apiVersion and kind fields (Marshal fills
// them in) but not wrong ones.
func validateTypeMeta(v *validator, obj kindObject) {
	apiVersion, kind := obj.typeMeta()
	if apiVersion != "" && apiVersion != APIVersion {
		v.add("apiVersion", "%q is not supported: want %q", apiVersion, APIVersion)
	}
	if kind != "" && kind != obj.GetKind() {
		v.add("kind", "%q does not match the object's type: want %q", kind, obj.GetKind())
	}
}

func validateMetadata(v *validator, obj Object) {
	m := obj.GetMeta()
	switch m.Name {
	case "":
		v.add("metadata.name", "is required")
	default:
		if err := checkDNSSubdomain(m.Name); err != nil {
			v.add("metadata.name", "%q is not a valid name: %v", m.Name, err)
		}
	}
	switch {
	case !obj.Namespaced() && m.Namespace != "":
		v.add("metadata.namespace", "%s is cluster-scoped: remove the namespace %q", obj.GetKind(), m.Namespace)
	case obj.Namespaced() && m.Namespace == "":
		v.add("metadata.namespace", "is required")
	case obj.Namespaced():
		if err := checkDNSLabel(m.Namespace); err != nil {
			v.add("metadata.namespace", "%q is not a valid namespace: %v", m.Namespace, err)
		}
	}
	checkLabels(v, "metadata.labels", m.Labels)
	for _, k := range sortedKeys(m.Annotations) {
		if err := checkLabelKey(k); err != nil {
			v.add(fmt.Sprintf("metadata.annotations[%q]", k), "invalid annotation key: %v", err)
		}
	}
	if m.Revision < 0 {
		v.add("metadata.revision", "%d is negative; leave it out, or set the revision you expect the stored object to have", m.Revision)
	}
	if m.CreationRevision < 0 {
		v.add("metadata.creationRevision", "%d is negative", m.CreationRevision)
	}
}

// checkLabels checks the keys and values of a map of labels, such as
// metadata.labels or a selector's matchLabels.
func checkLabels(v *validator, field string, labels map[string]string) {
	for _, k := range sortedKeys(labels) {
		field := fmt.Sprintf("%s[%q]", field, k)
		if err := checkLabelKey(k); err != nil {
			v.add(field, "invalid label key: %v", err)
		}
		if err := checkLabelValue(labels[k]); err != nil {
			v.add(field, "invalid label value %q: %v", labels[k], err)
		}
	}
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// SVID lifetimes.
const (
	// DefaultX509SVIDTTL is the X.509-SVID lifetime when MeshConfig sets none.
	DefaultX509SVIDTTL = time.Hour
	// DefaultJWTSVIDTTL is the JWT-SVID lifetime when MeshConfig sets none.
	DefaultJWTSVIDTTL = 5 * time.Minute
	// MinSVIDTTL and MaxSVIDTTL bound every configured SVID lifetime.
	MinSVIDTTL = time.Minute
	MaxSVIDTTL = 24 * time.Hour
)

// checkTTL checks an optional SVID lifetime.
func checkTTL(v *validator, field string, d Duration) {
	if d == 0 {
		return
	}
	if time.Duration(d) < MinSVIDTTL || time.Duration(d) > MaxSVIDTTL {
		v.add(field, "%s is out of range: an SVID lifetime must be between %s and %s", d, Duration(MinSVIDTTL), Duration(MaxSVIDTTL))
	}
}

var (
	dns1123Label = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)
	labelName    = regexp.MustCompile(`^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$`)
)

// checkDNSLabel checks a DNS-1123 label, as Kubernetes namespaces are.
func checkDNSLabel(s string) error {
	if len(s) > 63 {
		return fmt.Errorf("it is %d characters long; at most 63 are allowed", len(s))
	}
	if !dns1123Label.MatchString(s) {
		return errors.New("use lowercase letters, digits and '-', starting and ending with a letter or digit")
	}
	return nil
}

// checkDNSSubdomain checks a DNS-1123 subdomain, as Kubernetes object names
// are: dot-separated DNS-1123 labels, at most 253 characters.
func checkDNSSubdomain(s string) error {
	if len(s) > 253 {
		return fmt.Errorf("it is %d characters long; at most 253 are allowed", len(s))
	}
	for l := range strings.SplitSeq(s, ".") {
		if len(l) > 63 || !dns1123Label.MatchString(l) {
			return errors.New("use lowercase letters, digits, '-' and '.', each dot-separated part starting and ending with a letter or digit")
		}
	}
	return nil
}

// checkDNSName checks a DNS name for an SVID's DNS SANs.
func checkDNSName(s string) error {
	if strings.HasPrefix(s, "*.") {
		return errors.New("wildcard names are not allowed")
	}
	if _, err := netip.ParseAddr(s); err == nil {
		return errors.New("it is an IP address; dnsNames holds DNS names only")
	}
	if strings.HasSuffix(s, ".") {
		return errors.New("leave out the trailing dot")
	}
	if strings.ToLower(s) != s {
		return errors.New("write DNS names in lowercase")
	}
	return checkDNSSubdomain(s)
}

// checkLabelKey checks a Kubernetes label key: an optional DNS-1123
// subdomain prefix and "/", then a name of at most 63 characters.
func checkLabelKey(k string) error {
	prefix, name, hasPrefix := strings.Cut(k, "/")
	if !hasPrefix {
		name = prefix
	} else if err := checkDNSSubdomain(prefix); err != nil {
		return fmt.Errorf("prefix %q: %w", prefix, err)
	}
	switch {
	case name == "":
		return errors.New("the name part is empty")
	case len(name) > 63:
		return fmt.Errorf("the name part is %d characters long; at most 63 are allowed", len(name))
	case !labelName.MatchString(name):
		return errors.New("use letters, digits, '-', '_' and '.', starting and ending with a letter or digit, after an optional DNS subdomain prefix and '/'")
	}
	return nil
}

// checkLabelValue checks a Kubernetes label value; it may be empty.
func checkLabelValue(s string) error {
	switch {
	case s == "":
		return nil
	case len(s) > 63:
		return fmt.Errorf("it is %d characters long; at most 63 are allowed", len(s))
	case !labelName.MatchString(s):
		return errors.New("use letters, digits, '-', '_' and '.', starting and ending with a letter or digit")
	}
	return nil
}

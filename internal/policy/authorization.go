package policy

import (
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// KindAuthorizationPolicy and KindRequestAuthentication are the kinds of the
// authorization plane.
const (
	KindAuthorizationPolicy   = "AuthorizationPolicy"
	KindRequestAuthentication = "RequestAuthentication"
)

// AnnotationDryRun marks a policy as dry-run: it is evaluated and its
// would-be decisions are recorded, never enforced. IstioAnnotationDryRun is
// Istio's name for the same, accepted as an alias.
const (
	AnnotationDryRun      = "trustmesh.dev/dry-run"
	IstioAnnotationDryRun = "istio.io/dry-run"
)

// Action is what an AuthorizationPolicy does with the requests its rules
// match.
type Action string

// The actions, with Istio's meaning.
const (
	ActionAllow  Action = "ALLOW"
	ActionDeny   Action = "DENY"
	ActionAudit  Action = "AUDIT"
	ActionCustom Action = "CUSTOM"
)

var actions = []Action{ActionAllow, ActionDeny, ActionAudit, ActionCustom}

// AuthorizationPolicy decides which requests reach the workloads it
// selects, with the fields and semantics of Istio's AuthorizationPolicy.
// Its scope is mesh-wide (in RootNamespace, without a selector),
// namespace-wide (another namespace, without a selector) or the Workloads
// its selector selects (in its namespace; in every namespace when it is in
// RootNamespace). See the authz package for evaluation.
type AuthorizationPolicy struct {
	APIVersion string                  `json:"apiVersion"`
	Kind       string                  `json:"kind"`
	Metadata   Metadata                `json:"metadata"`
	Spec       AuthorizationPolicySpec `json:"spec"`
}

// AuthorizationPolicySpec is the body of an AuthorizationPolicy.
type AuthorizationPolicySpec struct {
	// Selector narrows the policy to the Workloads it selects.
	Selector *Selector `json:"selector,omitempty"`
	// Action is ALLOW (the default), DENY, AUDIT or CUSTOM.
	Action Action `json:"action,omitempty"`
	// Provider is the decision point of a CUSTOM policy: in trustmesh an
	// inline Rego module evaluated in the proxy.
	Provider *ExtensionProvider `json:"provider,omitempty"`
	// Rules select requests; a policy without rules matches nothing (an
	// ALLOW policy without rules therefore denies every request), and the
	// empty rule {} matches every request.
	Rules []Rule `json:"rules,omitempty"`
}

// ExtensionProvider is the provider of a CUSTOM policy. Istio names an
// external authorizer; trustmesh evaluates Rego in-process.
type ExtensionProvider struct {
	// Name is a label for logs and decisions.
	Name string `json:"name,omitempty"`
	// Rego is a Rego module (v1 syntax) defining `allow` (a boolean) and
	// optionally `reason` (a string), in any package.
	Rego string `json:"rego,omitempty"`
}

// Rule matches a request when every part it sets matches: any of From, any
// of To, and all of When.
type Rule struct {
	From []RuleFrom  `json:"from,omitempty"`
	To   []RuleTo    `json:"to,omitempty"`
	When []Condition `json:"when,omitempty"`
}

// RuleFrom wraps a Source, as in Istio.
type RuleFrom struct {
	Source Source `json:"source"`
}

// RuleTo wraps an Operation, as in Istio.
type RuleTo struct {
	Operation Operation `json:"operation"`
}

// Source is who sends the request. Every field set must match; a list
// matches when any value does, a not-list when none does. Values may be
// exact, a prefix ("abc*"), a suffix ("*abc") or "*" (present).
type Source struct {
	// Principals are peer SPIFFE IDs from mTLS, written
	// "spiffe://td/ns/a/sa/b" or in Istio's form "td/ns/a/sa/b".
	Principals    []string `json:"principals,omitempty"`
	NotPrincipals []string `json:"notPrincipals,omitempty"`
	// RequestPrincipals are JWT identities "iss/sub".
	RequestPrincipals    []string `json:"requestPrincipals,omitempty"`
	NotRequestPrincipals []string `json:"notRequestPrincipals,omitempty"`
	// Namespaces are taken from the peer's SPIFFE ID path (/ns/NAME/...).
	Namespaces    []string `json:"namespaces,omitempty"`
	NotNamespaces []string `json:"notNamespaces,omitempty"`
	// IPBlocks are IPs or CIDRs of the connection's peer.
	IPBlocks    []string `json:"ipBlocks,omitempty"`
	NotIPBlocks []string `json:"notIpBlocks,omitempty"`
	// RemoteIPBlocks are matched against the same peer address in
	// trustmesh (X-Forwarded-For is not trusted).
	RemoteIPBlocks    []string `json:"remoteIpBlocks,omitempty"`
	NotRemoteIPBlocks []string `json:"notRemoteIpBlocks,omitempty"`
}

// Operation is what the request asks for.
type Operation struct {
	// Hosts match the request's host, ignoring case, port and a trailing
	// dot.
	Hosts    []string `json:"hosts,omitempty"`
	NotHosts []string `json:"notHosts,omitempty"`
	// Ports are the workload's (application) ports, as strings.
	Ports    []string `json:"ports,omitempty"`
	NotPorts []string `json:"notPorts,omitempty"`
	// Methods are HTTP methods, matched exactly (gRPC is always POST).
	Methods    []string `json:"methods,omitempty"`
	NotMethods []string `json:"notMethods,omitempty"`
	// Paths match the normalized path, without the query.
	Paths    []string `json:"paths,omitempty"`
	NotPaths []string `json:"notPaths,omitempty"`
}

// Condition is one `when` entry: the attribute Key must have one of Values
// and none of NotValues.
type Condition struct {
	Key       string   `json:"key"`
	Values    []string `json:"values,omitempty"`
	NotValues []string `json:"notValues,omitempty"`
}

var _ kindObject = (*AuthorizationPolicy)(nil)

// GetKind returns "AuthorizationPolicy".
func (p *AuthorizationPolicy) GetKind() string { return KindAuthorizationPolicy }

// GetMeta returns the object's metadata.
func (p *AuthorizationPolicy) GetMeta() *Metadata { return &p.Metadata }

// Namespaced returns true.
func (p *AuthorizationPolicy) Namespaced() bool { return true }

func (p *AuthorizationPolicy) typeMeta() (string, string) { return p.APIVersion, p.Kind }

func (p *AuthorizationPolicy) withTypeMeta() kindObject {
	c := *p
	c.APIVersion, c.Kind = APIVersion, KindAuthorizationPolicy
	return &c
}

// EffectiveAction returns the action, ALLOW when none is set.
func (p *AuthorizationPolicy) EffectiveAction() Action {
	if p.Spec.Action == "" {
		return ActionAllow
	}
	return p.Spec.Action
}

// DryRun reports whether the policy carries the dry-run annotation.
func (p *AuthorizationPolicy) DryRun() bool { return isDryRun(&p.Metadata) }

func isDryRun(m *Metadata) bool {
	return m.Annotations[AnnotationDryRun] == "true" || m.Annotations[IstioAnnotationDryRun] == "true"
}

// AppliesTo reports whether the policy applies to workload w (see
// AppliesTo).
func (p *AuthorizationPolicy) AppliesTo(w *Workload) bool {
	return appliesTo(&p.Metadata, p.Spec.Selector, w)
}

// appliesTo is the scope rule shared by AuthorizationPolicy and
// RequestAuthentication, Istio's: a policy in RootNamespace applies to the
// whole mesh, or with a selector to the selected Workloads of every
// namespace; a policy in another namespace applies to that namespace, or
// with a selector to the Workloads of that namespace it selects.
func appliesTo(m *Metadata, sel *Selector, w *Workload) bool {
	if w == nil {
		return false
	}
	if m.Namespace != RootNamespace && m.Namespace != w.Metadata.Namespace {
		return false
	}
	if sel == nil {
		return true
	}
	return sel.selects(w.Metadata.Namespace, w)
}

// When keys, as in Istio (the experimental envoy filter keys are not
// supported).
const (
	KeyRequestHeaders  = "request.headers"
	KeySourceIP        = "source.ip"
	KeyRemoteIP        = "remote.ip"
	KeySourceNamespace = "source.namespace"
	KeySourcePrincipal = "source.principal"
	KeyAuthPrincipal   = "request.auth.principal"
	KeyAuthAudiences   = "request.auth.audiences"
	KeyAuthPresenter   = "request.auth.presenter"
	KeyAuthClaims      = "request.auth.claims"
	KeyDestinationIP   = "destination.ip"
	KeyDestinationPort = "destination.port"
	KeyConnectionSNI   = "connection.sni"
)

var plainKeys = []string{
	KeySourceIP, KeyRemoteIP, KeySourceNamespace, KeySourcePrincipal,
	KeyAuthPrincipal, KeyAuthAudiences, KeyAuthPresenter,
	KeyDestinationIP, KeyDestinationPort, KeyConnectionSNI,
}

// ParseConditionKey splits a when key into its attribute and, for
// request.headers[NAME] and request.auth.claims[A][B]..., its arguments.
func ParseConditionKey(key string) (attr string, args []string, err error) {
	if slices.Contains(plainKeys, key) {
		return key, nil, nil
	}
	for _, attr := range []string{KeyRequestHeaders, KeyAuthClaims} {
		rest, ok := strings.CutPrefix(key, attr)
		if !ok {
			continue
		}
		if rest == "" || rest[0] != '[' {
			return "", nil, fmt.Errorf("%q needs a name in brackets, such as %s[name]", key, attr)
		}
		for rest != "" {
			if rest[0] != '[' {
				return "", nil, fmt.Errorf("%q: unexpected %q after ]", key, rest)
			}
			end := strings.IndexByte(rest, ']')
			if end < 0 {
				return "", nil, fmt.Errorf("%q: missing ]", key)
			}
			name := rest[1:end]
			if name == "" || strings.ContainsAny(name, "[") {
				return "", nil, fmt.Errorf("%q: empty or malformed name in brackets", key)
			}
			args = append(args, name)
			rest = rest[end+1:]
		}
		if attr == KeyRequestHeaders && len(args) != 1 {
			return "", nil, fmt.Errorf("%q: a header key takes one name: request.headers[name]", key)
		}
		if attr == KeyRequestHeaders && !validToken(args[0]) {
			return "", nil, fmt.Errorf("%q: %q is not a valid header name", key, args[0])
		}
		return attr, args, nil
	}
	return "", nil, fmt.Errorf("%q is not a supported key: want one of request.headers[NAME], request.auth.claims[NAME], %s", key, strings.Join(plainKeys, ", "))
}

// HTTPOnlyKey reports whether a when key needs an HTTP request (it can't
// be evaluated for TCP traffic).
func HTTPOnlyKey(attr string) bool {
	return attr == KeyRequestHeaders || strings.HasPrefix(attr, "request.")
}

func (p *AuthorizationPolicy) validateSpec(v *validator, _ spiffeid.TrustDomain) {
	s := &p.Spec
	checkSelector(v, "spec.selector", s.Selector, "for a namespace-wide (or, in "+RootNamespace+", mesh-wide) policy")
	checkDryRun(v, &p.Metadata)
	switch {
	case s.Action == "":
	case !slices.Contains(actions, s.Action):
		v.add("spec.action", "%q is not an action: want ALLOW, DENY, AUDIT or CUSTOM", s.Action)
	}
	switch {
	case p.EffectiveAction() == ActionCustom && (s.Provider == nil || strings.TrimSpace(s.Provider.Rego) == ""):
		v.add("spec.provider.rego", "is required with action CUSTOM: trustmesh evaluates CUSTOM policies in the proxy with an inline Rego module that defines allow")
	case p.EffectiveAction() != ActionCustom && s.Provider != nil:
		v.add("spec.provider", "is only allowed with action CUSTOM")
	}
	for i, r := range s.Rules {
		validateRule(v, fmt.Sprintf("spec.rules[%d]", i), &r)
	}
}

func checkDryRun(v *validator, m *Metadata) {
	for _, k := range []string{AnnotationDryRun, IstioAnnotationDryRun} {
		if val, ok := m.Annotations[k]; ok && val != "true" && val != "false" {
			v.add(fmt.Sprintf("metadata.annotations[%q]", k), "%q: want \"true\" or \"false\"", val)
		}
	}
}

// valueList is one list field of a Source or Operation, for validation.
type valueList struct {
	name string
	vals []string
	kind valueKind
}

// checkLists checks the list fields of one source or operation at field;
// empty says what to do when they are all empty.
func checkLists(v *validator, field string, lists []valueList, empty string) {
	n := 0
	for _, l := range lists {
		n += len(l.vals)
		checkValues(v, field+"."+l.name, l.vals, l.kind)
	}
	if n == 0 {
		v.add(field, "is empty: %s", empty)
	}
}

func validateRule(v *validator, field string, r *Rule) {
	for i, f := range r.From {
		s := &f.Source
		checkLists(v, fmt.Sprintf("%s.from[%d].source", field, i), []valueList{
			{"principals", s.Principals, valuePrincipal},
			{"notPrincipals", s.NotPrincipals, valuePrincipal},
			{"requestPrincipals", s.RequestPrincipals, valueString},
			{"notRequestPrincipals", s.NotRequestPrincipals, valueString},
			{"namespaces", s.Namespaces, valueString},
			{"notNamespaces", s.NotNamespaces, valueString},
			{"ipBlocks", s.IPBlocks, valueIP},
			{"notIpBlocks", s.NotIPBlocks, valueIP},
			{"remoteIpBlocks", s.RemoteIPBlocks, valueIP},
			{"notRemoteIpBlocks", s.NotRemoteIPBlocks, valueIP},
		}, "set at least one field (principals, namespaces, ipBlocks, requestPrincipals or their not- forms), or leave out the from entry to match every source")
	}
	for i, t := range r.To {
		o := &t.Operation
		checkLists(v, fmt.Sprintf("%s.to[%d].operation", field, i), []valueList{
			{"hosts", o.Hosts, valueHost},
			{"notHosts", o.NotHosts, valueHost},
			{"ports", o.Ports, valuePort},
			{"notPorts", o.NotPorts, valuePort},
			{"methods", o.Methods, valueMethod},
			{"notMethods", o.NotMethods, valueMethod},
			{"paths", o.Paths, valuePath},
			{"notPaths", o.NotPaths, valuePath},
		}, "set at least one field (hosts, ports, methods, paths or their not- forms), or leave out the to entry to match every operation")
	}
	for i, c := range r.When {
		cf := fmt.Sprintf("%s.when[%d]", field, i)
		attr, _, err := ParseConditionKey(c.Key)
		if err != nil {
			v.add(cf+".key", "%v", err)
			continue
		}
		if len(c.Values) == 0 && len(c.NotValues) == 0 {
			v.add(cf, "needs values or notValues")
		}
		kind := valueString
		switch attr {
		case KeySourceIP, KeyRemoteIP, KeyDestinationIP:
			kind = valueIP
		case KeyDestinationPort:
			kind = valuePort
		case KeySourcePrincipal:
			kind = valuePrincipal
		}
		checkValues(v, cf+".values", c.Values, kind)
		checkValues(v, cf+".notValues", c.NotValues, kind)
	}
}

type valueKind int

const (
	valueString valueKind = iota
	valuePrincipal
	valueIP
	valuePort
	valueHost
	valueMethod
	valuePath
)

// checkValues checks a list of match values of one kind.
func checkValues(v *validator, field string, vals []string, kind valueKind) {
	for i, val := range vals {
		f := fmt.Sprintf("%s[%d]", field, i)
		if err := checkValue(val, kind); err != nil {
			v.add(f, "%q: %v", val, err)
		}
	}
}

func checkValue(val string, kind valueKind) error {
	if val == "" {
		return fmt.Errorf("is empty: use \"*\" to mean any value")
	}
	if strings.ContainsFunc(val, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
		return fmt.Errorf("contains a control character")
	}
	switch kind {
	case valueIP:
		if _, err := ParseIPBlock(val); err != nil {
			return err
		}
		return nil
	case valuePort:
		if _, err := ParsePort(val); err != nil {
			return err
		}
		return nil
	}
	if kind == valuePath && strings.ContainsAny(val, "{}") {
		return fmt.Errorf("path templates ({*}, {**}) are not supported: use a prefix (\"/api/*\") or suffix (\"*.json\") match")
	}
	if err := checkWildcard(val); err != nil {
		return err
	}
	switch kind {
	case valueHost:
		h := strings.TrimSuffix(strings.Trim(val, "*"), ".")
		if strings.Contains(h, ":") {
			return fmt.Errorf("leave out the port: hosts are matched without their port (match ports with ports)")
		}
	case valueMethod:
		if val != "*" && strings.ToUpper(val) != val {
			return fmt.Errorf("methods are matched exactly and HTTP methods are uppercase: write %q", strings.ToUpper(val))
		}
	case valuePath:
		if strings.ContainsAny(val, "?#") {
			return fmt.Errorf("paths are matched without query or fragment: leave out ? and #")
		}
		if !strings.HasPrefix(val, "/") && !strings.HasPrefix(val, "*") {
			return fmt.Errorf("a path starts with / (or * for a suffix match)")
		}
	case valuePrincipal:
		if strings.HasPrefix(val, "spiffe://") {
			if val[len(val)-1] != '*' {
				if err := checkSPIFFEID(val); err != nil {
					return fmt.Errorf("not a SPIFFE ID: %w", err)
				}
			}
		} else if strings.Contains(val, "://") {
			return fmt.Errorf("a principal is a SPIFFE ID (spiffe://td/path) or Istio's form td/path")
		}
	}
	return nil
}

// checkWildcard allows one "*" at the start or the end, or "*" alone.
func checkWildcard(val string) error {
	n := strings.Count(val, "*")
	switch {
	case n == 0, val == "*":
		return nil
	case n == 1 && (val[0] == '*' || val[len(val)-1] == '*'):
		return nil
	}
	return fmt.Errorf("a wildcard * is allowed only once, at the start (suffix match) or at the end (prefix match)")
}

// ParseIPBlock parses an IP address or CIDR as a prefix. IPv4-mapped IPv6
// forms (::ffff:10.0.0.0/104) become the IPv4 prefix they mean, since
// request addresses are compared unmapped; zones are refused, as they do
// not exist on the wire.
func ParseIPBlock(s string) (netip.Prefix, error) {
	if strings.Contains(s, "%") {
		return netip.Prefix{}, fmt.Errorf("an IPv6 zone (%%...) is not allowed: write the address without it")
	}
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("not a CIDR such as 10.0.0.0/8: %w", err)
		}
		if p.Masked() != p {
			return netip.Prefix{}, fmt.Errorf("host bits are set: did you mean %s?", p.Masked())
		}
		if p.Addr().Is4In6() {
			if p.Bits() < 96 {
				return netip.Prefix{}, fmt.Errorf("an IPv4-mapped prefix shorter than /96 mixes IPv4 and IPv6: write the IPv4 and IPv6 ranges separately")
			}
			return netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96), nil
		}
		return p, nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("not an IP address or CIDR")
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// ParsePort parses a port number 1..65535 written as a string.
func ParsePort(s string) (uint32, error) {
	n, err := strconv.ParseUint(s, 10, 16)
	if err != nil || n == 0 {
		return 0, fmt.Errorf("not a port: want a number from 1 to %d", maxPort)
	}
	return uint32(n), nil
}

// validToken reports whether s is an HTTP token (a valid header name).
func validToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte("\"(),/:;<=>?@[\\]{}", c) >= 0 {
			return false
		}
	}
	return true
}

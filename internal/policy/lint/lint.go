package lint

import (
	"cmp"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/trustmesh/trustmesh/internal/policy"
	"github.com/trustmesh/trustmesh/internal/policy/authz"
)

// Severity is how much a finding matters.
type Severity int

// The severities, from least to most severe.
const (
	// Info: the policy does what it says, which is worth knowing.
	Info Severity = iota + 1
	// Warning: probably a mistake, or a risk to look at.
	Warning
	// Error: the policy certainly does not do what it says.
	Error
)

// String returns "error", "warning" or "info".
func (s Severity) String() string {
	switch s {
	case Info:
		return "info"
	case Warning:
		return "warning"
	case Error:
		return "error"
	}
	return "Severity(" + strconv.Itoa(int(s)) + ")"
}

// MarshalText writes the severity as String does, for JSON output.
func (s Severity) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// The codes of findings: stable, they appear in output and may be matched
// by scripts. doc.go says what each means.
const (
	CodeShadowedRule                 = "shadowed-rule"
	CodeAllowDenyConflict            = "allow-deny-conflict"
	CodeOverPermissive               = "over-permissive"
	CodeSelectsNoWorkload            = "selects-no-workload"
	CodeRequestPrincipalWithoutAuthn = "request-principal-without-authn"
	CodeAllowNothing                 = "allow-nothing"
	CodeDryRun                       = "dry-run"
	CodeMixedL4L7                    = "mixed-l4-l7"
	CodeUnknownPrincipalTrustDomain  = "unknown-principal-trust-domain"
)

// Finding is one lint finding.
type Finding struct {
	// Severity is Error, Warning or Info.
	Severity Severity
	// Code is stable and kebab-case, such as "shadowed-rule".
	Code string
	// Object names the policy: `AuthorizationPolicy "default/orders"`.
	Object string
	// Field is the policy's field the finding is about, such as
	// "spec.rules[2]", for the CLI to map to a line.
	Field string
	// Message says what is wrong and what to do.
	Message string
}

// String is "severity: object: field: message (code)".
func (f Finding) String() string {
	return fmt.Sprintf("%s: %s: %s: %s (%s)", f.Severity, f.Object, f.Field, f.Message, f.Code)
}

// Input is what lint looks at: the policies plus, when known, the
// workloads and services of the mesh (from the same files or the server).
type Input struct {
	Policies []*policy.AuthorizationPolicy
	// RequestAuthentications are every RequestAuthentication of the mesh:
	// request-principal-without-authn takes their absence to mean that
	// none applies.
	RequestAuthentications []*policy.RequestAuthentication
	// Workloads are every Workload of the mesh; nil means unknown, and the
	// checks that need them are skipped (an empty, non-nil slice means the
	// mesh has none).
	Workloads []*policy.Workload
	// Services are every Service of the mesh; nil means unknown, and
	// mixed-l4-l7 is skipped.
	Services []*policy.Service
	// SensitivePorts are ports where "*" principals or no principal
	// constraint is over-permissive. Nil means DefaultSensitivePorts; an
	// empty, non-nil slice means none.
	SensitivePorts []uint32
}

// DefaultSensitivePorts returns the ports over-permissive guards when
// Input.SensitivePorts is nil: administration and data ports that no
// unauthenticated or arbitrary mesh caller should reach:
//
//	22     SSH
//	2379   etcd clients
//	2380   etcd peers
//	3306   MySQL
//	5432   PostgreSQL
//	6379   Redis
//	8443   trustmesh server (node and admin API)
//	8444   trustmesh server admin listener
//	9090   Prometheus and other admin consoles
//	15000  trustmesh proxy admin (config dump, metrics)
//	27017  MongoDB
func DefaultSensitivePorts() []uint32 {
	return []uint32{22, 2379, 2380, 3306, 5432, 6379, 8443, 8444, 9090, 15000, 27017}
}

// Lint checks the policies of in and returns its findings, sorted by
// object and field. The objects are expected to be valid (policy.Validate):
// a policy that the authz package does not compile is left out of the
// checks that reason about what its rules match. Lint does not modify in.
func Lint(in Input) []Finding {
	l := newLinter(in)
	for _, p := range l.pols {
		l.checkDryRun(p)
		l.checkAllowNothing(p)
		l.checkOverPermissive(p)
		l.checkSelectsNoWorkload(p)
		l.checkRequestPrincipal(p)
		l.checkMixedL4L7(p)
		l.checkTrustDomains(p)
	}
	l.checkShadowsAndConflicts()
	sortFindings(l.findings)
	return l.findings
}

// linter holds what the checks share.
type linter struct {
	in        Input
	sensitive []uint32
	// pols are the policies in authz's evaluation order (namespace, name),
	// then input order.
	pols []*pol
	// trustDomains are those of the Workloads, sorted; td is the trust
	// domain of the principals witnesses are given.
	trustDomains []string
	td           string
	findings     []Finding
}

// pol is one policy with what the checks need of it.
type pol struct {
	ap     *policy.AuthorizationPolicy
	object string
	action policy.Action
	dryRun bool
	scope  scope
	// applies are the indexes in Input.Workloads of the Workloads the
	// policy applies to (when Workloads are known).
	applies []int
	// engine is the policy compiled alone, rules its rules' models; both
	// nil when authz does not compile the policy.
	engine *authz.Engine
	rules  []*ruleModel
}

func newLinter(in Input) *linter {
	l := &linter{in: in, sensitive: in.SensitivePorts}
	if l.sensitive == nil {
		l.sensitive = DefaultSensitivePorts()
	}
	tds := make(map[string]bool)
	for _, w := range in.Workloads {
		if w == nil {
			continue
		}
		if id, err := spiffeid.FromString(w.Spec.SPIFFEID); err == nil {
			tds[id.TrustDomain().Name()] = true
		}
	}
	l.trustDomains = slices.Sorted(maps.Keys(tds))
	for _, ap := range in.Policies {
		if ap == nil {
			continue
		}
		p := &pol{
			ap:     ap,
			object: objectName(&ap.Metadata),
			action: ap.EffectiveAction(),
			dryRun: ap.DryRun(),
			scope:  scopeOf(&ap.Metadata, ap.Spec.Selector),
		}
		for j, w := range in.Workloads {
			if ap.AppliesTo(w) {
				p.applies = append(p.applies, j)
			}
		}
		if e := compileOne(ap); e != nil {
			rules := make([]*ruleModel, 0, len(ap.Spec.Rules))
			for j := range ap.Spec.Rules {
				m, err := modelRule(p.action, j, &ap.Spec.Rules[j])
				if err != nil {
					rules = nil
					break
				}
				rules = append(rules, m)
			}
			if rules != nil {
				p.engine, p.rules = e, rules
			}
		}
		l.pols = append(l.pols, p)
	}
	slices.SortStableFunc(l.pols, func(a, b *pol) int {
		return cmp.Or(strings.Compare(a.ap.Metadata.Namespace, b.ap.Metadata.Namespace),
			strings.Compare(a.ap.Metadata.Name, b.ap.Metadata.Name))
	})
	l.td = l.witnessTrustDomain()
	return l
}

// witnessTrustDomain returns the trust domain of made-up principals: the
// Workloads' first, else the first a policy names, else cluster.local.
func (l *linter) witnessTrustDomain() string {
	if len(l.trustDomains) > 0 {
		return l.trustDomains[0]
	}
	for _, p := range l.pols {
		for _, m := range p.rules {
			for _, a := range m.atoms {
				if a.attr.kind != attrPrincipal {
					continue
				}
				for _, s := range a.strs {
					if td, ok := patternTrustDomain(s); ok {
						return td
					}
				}
			}
		}
	}
	return "cluster.local"
}

func (l *linter) add(p *pol, sev Severity, code, field, format string, args ...any) {
	l.findings = append(l.findings, Finding{
		Severity: sev,
		Code:     code,
		Object:   p.object,
		Field:    field,
		Message:  fmt.Sprintf(format, args...),
	})
}

func (l *linter) workloadsKnown() bool { return l.in.Workloads != nil }

// objectName is how findings name a policy: `AuthorizationPolicy
// "default/orders"`, as policy.Validate does.
func objectName(m *policy.Metadata) string {
	if m.Name == "" {
		return policy.KindAuthorizationPolicy + " (no name)"
	}
	name := m.Name
	if m.Namespace != "" {
		name = m.Namespace + "/" + name
	}
	return fmt.Sprintf("%s %q", policy.KindAuthorizationPolicy, name)
}

// ruleName names rule i of policy p in messages about another policy q.
func ruleName(p, q *pol, i int) string {
	if p == q {
		return fmt.Sprintf("rule %d of this policy", i)
	}
	return fmt.Sprintf("rule %d of %s", i, p.object)
}

// scope is where a policy (or a Service's selector) applies, with the
// rules of policy.AuthorizationPolicy.AppliesTo.
type scope struct {
	ns string
	// root: in policy.RootNamespace, where a policy applies mesh-wide.
	root bool
	// sel is the selector's labels; nil without a selector.
	sel map[string]string
	// none: an empty selector, which selects nothing.
	none bool
}

func scopeOf(m *policy.Metadata, sel *policy.Selector) scope {
	s := scope{ns: m.Namespace, root: m.Namespace == policy.RootNamespace}
	if sel != nil {
		s.sel = sel.MatchLabels
		s.none = len(sel.MatchLabels) == 0
		if s.sel == nil {
			s.sel = map[string]string{}
		}
	}
	return s
}

// meshWide reports whether the scope is the whole mesh.
func (s scope) meshWide() bool { return s.root && s.sel == nil }

// covers reports whether the scope certainly includes every workload b
// includes, whatever the workloads.
func (s scope) covers(b scope) bool {
	switch {
	case s.none || b.none:
		return false
	case s.meshWide():
		return true
	case !s.root && s.ns != b.ns:
		return false // b is elsewhere, or mesh-wide
	case s.sel == nil:
		return true // namespace-wide, b in the namespace
	case b.sel == nil:
		return false
	}
	for k, v := range s.sel {
		if got, ok := b.sel[k]; !ok || got != v {
			return false
		}
	}
	return true
}

// mayOverlap reports whether some workload could be in both scopes: false
// only when they are certainly disjoint.
func (s scope) mayOverlap(b scope) bool {
	if s.none || b.none || (!s.root && !b.root && s.ns != b.ns) {
		return false
	}
	if s.sel != nil && b.sel != nil {
		for k, v := range s.sel {
			if got, ok := b.sel[k]; ok && got != v {
				return false
			}
		}
	}
	return true
}

// coversScope reports whether policy a applies to every workload policy b
// applies to: certainly, or on every known workload (b applying to some).
func (l *linter) coversScope(a, b *pol) bool {
	if a.scope.covers(b.scope) {
		return true
	}
	if !l.workloadsKnown() || len(b.applies) == 0 {
		return false
	}
	return !slices.ContainsFunc(b.applies, func(w int) bool { return !slices.Contains(a.applies, w) })
}

// overlapScope reports whether some workload has both policies: a known
// workload, or (workloads unknown) one scope includes the other.
func (l *linter) overlapScope(a, b *pol) bool {
	if l.workloadsKnown() {
		return slices.ContainsFunc(a.applies, func(w int) bool { return slices.Contains(b.applies, w) })
	}
	return a.scope.covers(b.scope) || b.scope.covers(a.scope)
}

// patternTrustDomain returns the trust domain of every principal p
// matches (p without "spiffe://"), if it is fixed.
func patternTrustDomain(p pattern) (string, bool) {
	switch p.kind {
	case matchExact:
		td, _, _ := strings.Cut(p.s, "/")
		return td, td != ""
	case matchPrefix:
		td, _, ok := strings.Cut(p.s, "/")
		return td, ok && td != ""
	}
	return "", false
}

func sortFindings(fs []Finding) {
	slices.SortStableFunc(fs, func(a, b Finding) int {
		return cmp.Or(
			strings.Compare(a.Object, b.Object),
			compareFields(a.Field, b.Field),
			strings.Compare(a.Code, b.Code),
			strings.Compare(a.Message, b.Message),
		)
	})
}

// compareFields orders field paths with their indexes as numbers, so that
// spec.rules[2] comes before spec.rules[10].
func compareFields(a, b string) int {
	for a != "" && b != "" {
		da, db := digitsPrefix(a), digitsPrefix(b)
		if da > 0 && db > 0 {
			na, _ := strconv.ParseUint(a[:da], 10, 64)
			nb, _ := strconv.ParseUint(b[:db], 10, 64)
			if c := cmp.Compare(na, nb); c != 0 {
				return c
			}
			a, b = a[da:], b[db:]
			continue
		}
		if a[0] != b[0] {
			return cmp.Compare(a[0], b[0])
		}
		a, b = a[1:], b[1:]
	}
	return cmp.Compare(len(a), len(b))
}

func digitsPrefix(s string) int {
	n := 0
	for n < len(s) && '0' <= s[n] && s[n] <= '9' {
		n++
	}
	return n
}

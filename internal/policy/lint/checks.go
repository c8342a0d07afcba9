package lint

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/trustmesh/trustmesh/internal/policy"
)

// checkDryRun reports a dry-run policy.
func (l *linter) checkDryRun(p *pol) {
	if !p.dryRun {
		return
	}
	key := policy.AnnotationDryRun
	if p.ap.Metadata.Annotations[key] != "true" {
		key = policy.IstioAnnotationDryRun
	}
	l.add(p, Info, CodeDryRun, fmt.Sprintf("metadata.annotations[%q]", key),
		"the policy is dry-run: its decisions are recorded, never enforced; remove the annotation (or set it to \"false\") to enforce it")
}

// checkAllowNothing reports an ALLOW policy without rules.
func (l *linter) checkAllowNothing(p *pol) {
	if p.action != policy.ActionAllow || len(p.ap.Spec.Rules) > 0 {
		return
	}
	l.add(p, Info, CodeAllowNothing, "spec.rules",
		"an ALLOW policy without rules matches no request, so it denies every request to the workloads it applies to that no other ALLOW policy allows: Istio's allow-nothing pattern; if that is intended, nothing to do, otherwise add rules")
}

// checkOverPermissive reports an ALLOW rule {} in a namespace-wide or
// mesh-wide policy, and ALLOW rules that let any caller reach a sensitive
// port.
func (l *linter) checkOverPermissive(p *pol) {
	if p.action != policy.ActionAllow {
		return
	}
	for _, m := range p.rules {
		field := fmt.Sprintf("spec.rules[%d]", m.index)
		if m.empty {
			switch {
			case p.scope.meshWide():
				l.add(p, Warning, CodeOverPermissive, field,
					"the empty rule {} allows every request to every workload of the mesh, plaintext ones included, and makes every other ALLOW policy moot; if this is a deliberate allow-all, scope it to the namespaces or workloads that need it, and prefer rules naming principals")
			case p.scope.sel == nil:
				l.add(p, Warning, CodeOverPermissive, field,
					"the empty rule {} allows every request to every workload of namespace %q, plaintext ones included, and makes the namespace's other ALLOW policies moot; if this is a deliberate allow-all, prefer rules naming principals or namespaces", p.ap.Metadata.Namespace)
			}
			continue
		}
		l.checkSensitivePorts(p, m, field)
	}
}

// checkSensitivePorts reports rule m when one of its conjuncts reaches a
// sensitive port without constraining who the caller is.
func (l *linter) checkSensitivePorts(p *pol, m *ruleModel, field string) {
	var ports []uint32
	worst, portField := 0, ""
	for _, c := range m.conj {
		reach, f := reachablePorts(c.atoms, l.sensitive)
		if len(reach) == 0 {
			continue
		}
		who := callerOpenness(c.atoms)
		if who == 0 {
			continue
		}
		for _, port := range reach {
			if !slices.Contains(ports, port) {
				ports = append(ports, port)
			}
		}
		worst = max(worst, who)
		if portField == "" {
			portField = f
		}
	}
	if len(ports) == 0 {
		return
	}
	slices.Sort(ports)
	var who string
	switch worst {
	case openAnyone:
		who = "any caller, plaintext ones included (no from, or only not- fields)"
	case openAnyJWT:
		who = "any caller with a valid JWT of any trusted issuer (requestPrincipals [\"*\"])"
	default:
		who = "any mTLS peer of the mesh (principals or namespaces [\"*\"])"
	}
	l.add(p, Warning, CodeOverPermissive, field+"."+portField,
		"allows %s to reach sensitive port%s %s; name the principals (or namespaces) that need it in from.source.principals", who, plural(len(ports)), joinPorts(ports))
}

// How open a conjunct is to callers, from not at all (0) to anyone.
const (
	openAnyPeer = iota + 1
	openAnyJWT
	openAnyone
)

// callerOpenness returns how open the conjunct is: 0 if it constrains the
// caller's identity or address (a principal, namespace, request principal
// other than "*", or an IP block), else who it admits.
func callerOpenness(as []atom) int {
	open := openAnyone
	for _, a := range as {
		if a.not {
			continue
		}
		switch a.attr.kind {
		case attrSourceIP:
			return 0
		case attrPrincipal, attrNamespace, attrRequestPrincipal:
			if !a.hasPresence() {
				return 0
			}
			o := openAnyPeer
			if a.attr.kind == attrRequestPrincipal {
				o = openAnyJWT
			}
			open = min(open, o)
		}
	}
	return open
}

// reachablePorts returns the sensitive ports the conjunct's positive port
// atoms admit (none if it has none: it names no port), and the field of
// the first such atom.
func reachablePorts(as []atom, sensitive []uint32) ([]uint32, string) {
	var out []uint32
	field := ""
	for _, port := range sensitive {
		named, ok := false, true
		for _, a := range as {
			if a.attr.kind != attrPort {
				continue
			}
			if !a.not {
				named = true
			}
			ok = ok && a.matchPort(port)
		}
		if named && ok {
			out = append(out, port)
		}
	}
	for _, a := range as {
		if a.attr.kind == attrPort && !a.not && len(out) > 0 && slices.Contains(a.ports, out[0]) {
			field = a.field
			break
		}
	}
	return out, field
}

// checkSelectsNoWorkload reports a policy that applies to no known
// Workload.
func (l *linter) checkSelectsNoWorkload(p *pol) {
	if !l.workloadsKnown() || len(p.applies) > 0 {
		return
	}
	ns := p.ap.Metadata.Namespace
	switch {
	case p.scope.sel != nil:
		where := fmt.Sprintf("in namespace %q", ns)
		if p.scope.root {
			where = "in any namespace"
		}
		l.add(p, Warning, CodeSelectsNoWorkload, "spec.selector",
			"selects no workload: no Workload %s has the labels %s; check the labels (and the namespace), or delete the policy", where, formatLabels(p.scope.sel))
	case p.scope.root:
		l.add(p, Warning, CodeSelectsNoWorkload, "metadata.namespace",
			"the mesh has no Workloads, so this mesh-wide policy applies to none")
	default:
		l.add(p, Warning, CodeSelectsNoWorkload, "metadata.namespace",
			"namespace %q has no Workloads, so the policy applies to none; check the namespace", ns)
	}
}

// checkRequestPrincipal reports rules that use request principals or
// request.auth.* keys where no RequestAuthentication applies.
func (l *linter) checkRequestPrincipal(p *pol) {
	if l.authnMayApply(p) {
		return
	}
	for _, m := range p.rules {
		i := slices.IndexFunc(m.atoms, func(a atom) bool {
			switch a.attr.kind {
			case attrRequestPrincipal, attrAudiences, attrPresenter, attrClaim:
				return true
			}
			return false
		})
		if i < 0 {
			continue
		}
		a := m.atoms[i]
		effect := "so its values never match"
		if a.not {
			effect = "so it always holds"
		}
		l.add(p, Warning, CodeRequestPrincipalWithoutAuthn, fmt.Sprintf("spec.rules[%d].%s", m.index, a.field),
			"needs a verified JWT, but no RequestAuthentication applies to the workloads this policy applies to: their requests never carry one, %s; add a RequestAuthentication for the issuer, or remove the field", effect)
	}
}

// authnMayApply reports whether some RequestAuthentication may apply to a
// workload the policy applies to (true when that cannot be ruled out).
func (l *linter) authnMayApply(p *pol) bool {
	if l.workloadsKnown() {
		if len(p.applies) == 0 {
			return true // selects-no-workload says so
		}
		for _, ra := range l.in.RequestAuthentications {
			if ra == nil {
				continue
			}
			for _, w := range p.applies {
				if ra.AppliesTo(l.in.Workloads[w]) {
					return true
				}
			}
		}
		return false
	}
	for _, ra := range l.in.RequestAuthentications {
		if ra != nil && scopeOf(&ra.Metadata, ra.Spec.Selector).mayOverlap(p.scope) {
			return true
		}
	}
	return false
}

// checkMixedL4L7 reports ALLOW and DENY rules with HTTP-only fields that
// name a port a Service serves as TCP.
func (l *linter) checkMixedL4L7(p *pol) {
	if l.in.Services == nil || (p.action != policy.ActionAllow && p.action != policy.ActionDeny) {
		return
	}
	for _, m := range p.rules {
		if !m.httpOnly {
			continue
		}
		var tcp []uint32
		field, svcName, certain := "", "", true
		for _, a := range m.atoms {
			if a.attr.kind != attrPort || a.not {
				continue
			}
			for k, port := range a.ports {
				name, sure, ok := l.tcpService(p, port)
				if !ok || slices.Contains(tcp, port) {
					continue
				}
				tcp = append(tcp, port)
				if field == "" {
					field = fmt.Sprintf("spec.rules[%d].%s[%d]", m.index, a.field, k)
					svcName = name
				}
				certain = certain && sure
			}
		}
		if len(tcp) == 0 {
			continue
		}
		slices.Sort(tcp)
		ports := fmt.Sprintf("port%s %s", plural(len(tcp)), joinPorts(tcp))
		if p.action == policy.ActionAllow {
			sev := Error
			if !certain {
				sev = Warning
			}
			l.add(p, sev, CodeMixedL4L7, field,
				"the rule uses HTTP-only fields (hosts, methods, paths, requestPrincipals or request.* keys) and names %s, which Service %s serves as TCP: Istio ignores such a rule for TCP traffic, so it allows nothing there; put the TCP ports in a rule of their own without HTTP-only fields, or declare the port's protocol HTTP", ports, svcName)
			continue
		}
		l.add(p, Warning, CodeMixedL4L7, field,
			"the rule uses HTTP-only fields (hosts, methods, paths, requestPrincipals or request.* keys) and names %s, which Service %s serves as TCP: for TCP traffic a DENY rule ignores its HTTP-only fields, so it denies every connection to the port that the rest of the rule matches; put the TCP ports in a rule of their own, or declare the port's protocol HTTP", ports, svcName)
	}
}

// tcpService returns the name of a Service that serves port (as its
// application port) as TCP to workloads the policy may apply to; sure
// when a known Workload is both served and under the policy. It returns
// false if no Service does, or one serves the port as HTTP too.
func (l *linter) tcpService(p *pol, port uint32) (name string, sure, ok bool) {
	for _, s := range l.in.Services {
		if s == nil || s.Spec.Selector == nil {
			continue
		}
		var proto policy.Protocol
		for _, sp := range s.Spec.Ports {
			if sp.Target() == port {
				proto = sp.Protocol
				break
			}
		}
		if proto == "" {
			continue
		}
		applies, certain := false, false
		if l.workloadsKnown() {
			for _, w := range p.applies {
				if s.Selects(l.in.Workloads[w]) {
					applies, certain = true, true
					break
				}
			}
		} else {
			svc := scopeOf(&s.Metadata, s.Spec.Selector)
			svc.root = false // a Service selects in its own namespace only
			applies = p.scope.mayOverlap(svc)
		}
		if !applies {
			continue
		}
		if proto != policy.ProtocolTCP {
			return "", false, false
		}
		if !ok {
			name, sure, ok = strconv.Quote(s.Metadata.Namespace+"/"+s.Metadata.Name), certain, true
		}
	}
	return name, sure, ok
}

// checkTrustDomains reports principals whose trust domain is not that of
// any Workload.
func (l *linter) checkTrustDomains(p *pol) {
	if !l.workloadsKnown() || len(l.trustDomains) == 0 {
		return
	}
	known := strings.Join(l.trustDomains, ", ")
	for _, m := range p.rules {
		for _, a := range m.atoms {
			if a.attr.kind != attrPrincipal {
				continue
			}
			for k, s := range a.strs {
				td, ok := patternTrustDomain(s)
				if !ok || slices.Contains(l.trustDomains, td) {
					continue
				}
				l.add(p, Info, CodeUnknownPrincipalTrustDomain, fmt.Sprintf("spec.rules[%d].%s[%d]", m.index, a.field, k),
					"the trust domain %q of %q is not that of any Workload (%s): a typo? Fine if it is a federated trust domain", td, a.raw[k], known)
			}
		}
	}
}

func formatLabels(m map[string]string) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + "=" + m[k]
	}
	return strings.Join(parts, ",")
}

func joinPorts(ports []uint32) string {
	parts := make([]string, len(ports))
	for i, p := range ports {
		parts[i] = strconv.FormatUint(uint64(p), 10)
	}
	return strings.Join(parts, ", ")
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}

package lint

import (
	"fmt"
	"slices"

	"github.com/trustmesh/trustmesh/internal/policy"
	"github.com/trustmesh/trustmesh/internal/policy/authz"
)

// ref is one rule of one policy, with its position in evaluation order.
type ref struct {
	p   *pol
	m   *ruleModel
	pos int
}

func (r ref) field() string { return fmt.Sprintf("spec.rules[%d]", r.m.index) }

// checkShadowsAndConflicts reports shadowed rules (shadowed-rule) and ALLOW
// rules that DENY rules partly override (allow-deny-conflict).
func (l *linter) checkShadowsAndConflicts() {
	var allows, denies []ref
	pos := 0
	for _, p := range l.pols {
		if p.engine == nil {
			continue
		}
		for _, m := range p.rules {
			r := ref{p: p, m: m, pos: pos}
			pos++
			switch p.action {
			case policy.ActionAllow:
				allows = append(allows, r)
			case policy.ActionDeny:
				denies = append(denies, r)
			}
		}
	}

	shadowed := make(map[*ruleModel]bool)
	for _, b := range allows {
		for _, d := range denies {
			if l.shadows(d, b) {
				l.add(b.p, Warning, CodeShadowedRule, b.field(),
					"this ALLOW rule can never allow anything: DENY %s always matches first (it matches every request this rule matches%s); remove this rule, or narrow the DENY rule",
					ruleName(d.p, b.p, d.m.index), onEveryWorkload(d.p, b.p))
				shadowed[b.m] = true
				break
			}
		}
	}
	for _, group := range [][]ref{allows, denies} {
		for _, b := range group {
			if shadowed[b.m] {
				continue
			}
			for _, a := range group {
				if a.m == b.m || !l.shadows(a, b) {
					continue
				}
				if a.pos > b.pos && l.shadows(b, a) {
					continue // the same requests: the later one is reported
				}
				l.add(b.p, Warning, CodeShadowedRule, b.field(),
					"the rule can never change a decision: %s already matches every request it matches%s; remove it, or narrow the other rule if that one is broader than intended",
					ruleName(a.p, b.p, a.m.index), onEveryWorkload(a.p, b.p))
				shadowed[b.m] = true
				break
			}
		}
	}

	for _, b := range allows {
		if shadowed[b.m] {
			continue // its shadow carries the conflicts
		}
		for _, d := range denies {
			if d.p.dryRun && !b.p.dryRun {
				continue // the DENY is not enforced: the dry run is the point
			}
			if !l.overlapScope(b.p, d.p) {
				continue
			}
			w, used, ok := l.overlap(b, d)
			if !ok {
				continue
			}
			l.add(b.p, Warning, CodeAllowDenyConflict, b.field(),
				"some requests match both this ALLOW rule and DENY %s, such as %s: DENY is evaluated first, so this rule does not allow them; if the DENY rule is a deliberate exception, nothing to do, otherwise narrow one of the rules",
				ruleName(d.p, b.p, d.m.index), describeRequest(w, used))
		}
	}
}

// onEveryWorkload qualifies a shadow from another policy.
func onEveryWorkload(a, b *pol) string {
	if a == b {
		return ""
	}
	return ", on every workload this policy applies to"
}

// shadows reports whether rule a matches every request rule b matches, on
// every workload b's policy applies to, in the same evaluation (a is
// enforced, or both are dry-run).
func (l *linter) shadows(a, b ref) bool {
	if a.p.dryRun && !b.p.dryRun {
		return false
	}
	if !l.coversScope(a.p, b.p) || !covers(a.m, b.m) {
		return false
	}
	return l.witnessesAgree(a, b)
}

// witnessesAgree checks a proven shadow against the evaluator: every
// request made up to match a conjunct of b that b matches, a matches.
func (l *linter) witnessesAgree(a, b ref) bool {
	check := func(cs []conjunct, tcp bool) bool {
		for _, c := range cs {
			w, ok := solve(c.atoms, tcp, l.td)
			if ok && ruleMatches(b.p.engine, b.m.index, w) && !ruleMatches(a.p.engine, a.m.index, w) {
				return false
			}
		}
		return true
	}
	return check(b.m.conj, false) && check(b.m.tcp(), true)
}

// overlap returns a request both rules match (HTTP, else TCP) and the
// attributes their matching conjuncts constrain.
func (l *linter) overlap(b, d ref) (*authz.Request, map[attrKind]bool, bool) {
	try := func(bs, ds []conjunct, tcp bool) (*authz.Request, map[attrKind]bool, bool) {
		for _, cb := range bs {
			for _, cd := range ds {
				atoms := slices.Concat(cb.atoms, cd.atoms)
				w, ok := solve(atoms, tcp, l.td)
				if ok && ruleMatches(b.p.engine, b.m.index, w) && ruleMatches(d.p.engine, d.m.index, w) {
					return w, usedAttrs(atoms), true
				}
			}
		}
		return nil, nil, false
	}
	if w, used, ok := try(b.m.conj, d.m.conj, false); ok {
		return w, used, ok
	}
	tb := b.m.tcp()
	if tb == nil {
		return nil, nil, false
	}
	return try(tb, d.m.tcp(), true)
}

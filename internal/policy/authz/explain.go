package authz

import (
	"context"
	"fmt"
	"strings"
)

// Step is the verdict of one rule in an explanation.
type Step struct {
	Policy  *Policy
	Rule    int // -1: the policy has no rules
	Matched bool
	// Field and Detail say why the rule did not match: the first
	// condition that failed, such as
	// "spec.rules[0].to[0].operation.methods" and
	// `"DELETE" does not match ["GET", "HEAD"]`.
	Field, Detail string
}

// Explanation is a decision and how every policy's rules fared.
type Explanation struct {
	Decision Decision
	Steps    []Step
}

// Explain decides r as Evaluate does and records, for every rule of every
// policy, whether it matched and, if not, the first condition that
// failed. It allocates; use it for operators, not on the request path.
func (e *Engine) Explain(ctx context.Context, r *Request) Explanation {
	x := Explanation{Decision: e.Evaluate(ctx, r)}
	for _, p := range e.Policies {
		if len(p.rules) == 0 {
			x.Steps = append(x.Steps, Step{Policy: p, Rule: -1, Detail: "the policy has no rules, so it matches no request"})
			continue
		}
		for _, rl := range p.rules {
			var t tracer
			ok := rl.match(r, &t)
			x.Steps = append(x.Steps, Step{Policy: p, Rule: rl.index, Matched: ok, Field: t.field, Detail: t.detail})
		}
	}
	return x
}

// Summary is a one-paragraph account of the outcome: what was decided and
// by which policy, rule and condition.
func (x *Explanation) Summary() string {
	return describe(x.Decision.Outcome, x.Steps)
}

func describe(o Outcome, steps []Step) string {
	verdict := "DENY"
	if o.Allowed {
		verdict = "ALLOW"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s (%s)", verdict, o.Reason)
	switch o.Reason {
	case ReasonNoPolicy:
		b.WriteString(": no ALLOW policy applies to the workload, and no DENY or CUSTOM rule matched")
	case ReasonAllowPolicy:
		fmt.Fprintf(&b, ": %s rule %d matched%s", o.Policy.describe(), o.Rule, matchedConditions(o, steps))
	case ReasonDenyPolicy:
		fmt.Fprintf(&b, ": %s rule %d matched%s", o.Policy.describe(), o.Rule, matchedConditions(o, steps))
	case ReasonCustomDeny, ReasonCustomError:
		fmt.Fprintf(&b, ": %s rule %d selected the request and its Rego denied it", o.Policy.describe(), o.Rule)
		if o.Detail != "" {
			fmt.Fprintf(&b, " (%s)", o.Detail)
		}
	case ReasonNoAllowMatch:
		b.WriteString(": ALLOW policies apply to the workload and none of their rules matched")
		for _, s := range steps {
			switch {
			case s.Policy.Action != "ALLOW" || s.Matched:
			case s.Rule < 0:
				fmt.Fprintf(&b, "\n  %s: %s", s.Policy.describe(), s.Detail)
			default:
				fmt.Fprintf(&b, "\n  %s rule %d: %s: %s", s.Policy.describe(), s.Rule, s.Field, s.Detail)
			}
		}
	}
	return b.String()
}

func (p *Policy) describe() string {
	return fmt.Sprintf("%s policy %s (revision %d)", p.Action, p, p.Revision)
}

func matchedConditions(o Outcome, steps []Step) string {
	for _, s := range steps {
		if s.Policy == o.Policy && s.Rule == o.Rule {
			return " (every condition of the rule held)"
		}
	}
	return ""
}

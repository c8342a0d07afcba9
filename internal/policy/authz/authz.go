package authz

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/trustmesh/trustmesh/internal/authn"
	"github.com/trustmesh/trustmesh/internal/policy"
	"github.com/trustmesh/trustmesh/internal/policy/rego"
)

// Request is what the engine decides on: one HTTP request, or one TCP
// connection (HTTP false). The proxy fills it once per request, after
// normalizing the path and host and authenticating the JWT.
type Request struct {
	// Principal is the peer's verified SPIFFE ID ("spiffe://td/..."), ""
	// for plaintext.
	Principal string
	// SourceIP is the connection peer's address.
	SourceIP netip.Addr
	// DestinationIP and Port are the workload's address and application
	// port (a Service's targetPort).
	DestinationIP netip.Addr
	Port          uint32
	// SNI is the TLS server name the client sent, if any.
	SNI string

	// HTTP is false for TCP traffic: the fields below are then unset, and
	// rules that need them follow Istio's TCP rules (see rule.match).
	HTTP bool
	// Method, Host (lowercase, without port or trailing dot) and Path
	// (normalized, without query).
	Method, Host, Path string
	Headers            http.Header
	// Auth is the verified JWT; zero when the request carries none.
	Auth Auth
}

// Auth is a request's verified JWT.
type Auth struct {
	// Principal is "iss/sub".
	Principal string
	Audiences []string
	Presenter string
	Claims    map[string]any
}

// Policy is the compiled form of one AuthorizationPolicy.
type Policy struct {
	Namespace, Name string
	Revision        int64
	Action          policy.Action
	DryRun          bool
	// Provider is the CUSTOM provider's name.
	Provider string

	rules []*rule
	rego  *rego.Module
}

// Rules is the number of rules of the policy.
func (p *Policy) Rules() int { return len(p.rules) }

// String is "namespace/name".
func (p *Policy) String() string { return p.Namespace + "/" + p.Name }

// Reason codes of a decision, stable: they appear in the
// x-trustmesh-denied-by header, metrics and audit records.
const (
	ReasonNoPolicy     = "no-policy"      // allowed: no ALLOW policy applies
	ReasonAllowPolicy  = "allow-policy"   // allowed by an ALLOW rule
	ReasonDenyPolicy   = "deny-policy"    // denied by a DENY rule
	ReasonNoAllowMatch = "no-allow-match" // denied: ALLOW policies apply, none matched
	ReasonCustomDeny   = "custom-deny"    // denied by a CUSTOM policy's Rego
	ReasonCustomError  = "custom-error"   // denied: a CUSTOM policy's Rego failed
)

// Outcome is one evaluation's result: the decision and the policy and rule
// that decided (nil and -1 for a default).
type Outcome struct {
	Allowed bool
	Reason  string
	Policy  *Policy
	Rule    int
	// Detail is the CUSTOM policy's reason or error, else "".
	Detail string
}

// Decision is what Evaluate returns.
type Decision struct {
	Outcome
	// Audit is the first AUDIT rule that matched, if Audited.
	Audited bool
	Audit   Outcome
	// Shadow is the decision the dry-run policies would have made (the
	// dry-run policies enforced together with the others), if HasShadow.
	// It is recorded, never enforced.
	HasShadow bool
	Shadow    Outcome
}

// ShadowWorthRecording reports whether the dry-run decision says something
// the enforced one does not: a different outcome, or a dry-run policy that
// decided. Proxies record exactly these; explain shows them.
func (d *Decision) ShadowWorthRecording() bool {
	return d.HasShadow && (d.Shadow.Allowed != d.Allowed || (d.Shadow.Policy != nil && d.Shadow.Policy.DryRun))
}

// Engine decides requests for one workload from the policies that apply
// to it. It is immutable and safe for concurrent use.
type Engine struct {
	live   *evaluator
	shadow *evaluator // nil without dry-run policies
	// Policies are every compiled policy, in evaluation order.
	Policies []*Policy
}

// evaluator is one set of policies, split by action and indexed.
type evaluator struct {
	custom   []*Policy
	deny     *group
	allow    *group
	audit    *group
	hasAllow bool
}

// Compile builds the engine of a workload from the AuthorizationPolicies
// that apply to it (see policy.AuthorizationPolicy.AppliesTo). Policies are
// expected to be valid; errors name the policy and field, and CUSTOM Rego
// that does not compile is an error.
func Compile(aps []*policy.AuthorizationPolicy) (*Engine, error) {
	aps = slices.Clone(aps)
	slices.SortFunc(aps, func(a, b *policy.AuthorizationPolicy) int {
		return cmp.Or(strings.Compare(a.Metadata.Namespace, b.Metadata.Namespace), strings.Compare(a.Metadata.Name, b.Metadata.Name))
	})
	e := &Engine{}
	var errs []error
	for _, ap := range aps {
		if ap == nil {
			continue
		}
		p, err := compilePolicy(ap)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s %s/%s: %w", policy.KindAuthorizationPolicy, ap.Metadata.Namespace, ap.Metadata.Name, err))
			continue
		}
		e.Policies = append(e.Policies, p)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	var live []*Policy
	dry := false
	for _, p := range e.Policies {
		if p.DryRun {
			dry = true
		} else {
			live = append(live, p)
		}
	}
	e.live = newEvaluator(live)
	if dry {
		e.shadow = newEvaluator(e.Policies)
	}
	return e, nil
}

func compilePolicy(ap *policy.AuthorizationPolicy) (*Policy, error) {
	p := &Policy{
		Namespace: ap.Metadata.Namespace,
		Name:      ap.Metadata.Name,
		Revision:  ap.Metadata.Revision,
		Action:    ap.EffectiveAction(),
		DryRun:    ap.DryRun(),
	}
	if p.Action == policy.ActionCustom {
		if ap.Spec.Provider == nil || ap.Spec.Provider.Rego == "" {
			return nil, errors.New("spec.provider.rego: required with action CUSTOM")
		}
		p.Provider = ap.Spec.Provider.Name
		m, err := rego.Compile(p.String(), ap.Spec.Provider.Rego, rego.WithTimeBudget(customBudget))
		if err != nil {
			return nil, fmt.Errorf("spec.provider.rego: %w", err)
		}
		p.rego = m
	}
	for i := range ap.Spec.Rules {
		r, err := compileRule(p, i, &ap.Spec.Rules[i])
		if err != nil {
			return nil, err
		}
		p.rules = append(p.rules, r)
	}
	return p, nil
}

func newEvaluator(ps []*Policy) *evaluator {
	ev := &evaluator{}
	var deny, allow, audit []*rule
	for _, p := range ps {
		switch p.Action {
		case policy.ActionCustom:
			ev.custom = append(ev.custom, p)
		case policy.ActionDeny:
			deny = append(deny, p.rules...)
		case policy.ActionAllow:
			ev.hasAllow = true
			allow = append(allow, p.rules...)
		case policy.ActionAudit:
			audit = append(audit, p.rules...)
		}
	}
	ev.deny, ev.allow, ev.audit = newGroup(deny), newGroup(allow), newGroup(audit)
	return ev
}

// Evaluate decides r with Istio's order: CUSTOM policies first (a request
// their rules select is denied unless the Rego allows it), then DENY, then
// ALLOW (with no ALLOW policy the request is allowed; with any, only what
// an ALLOW rule matches). AUDIT rules never change the decision. Without
// CUSTOM policies, Evaluate allocates nothing.
func (e *Engine) Evaluate(ctx context.Context, r *Request) Decision {
	var d Decision
	d.Outcome = e.live.evaluate(ctx, r)
	if rl := e.live.audit.first(r); rl != nil {
		d.Audited = true
		d.Audit = Outcome{Allowed: d.Allowed, Reason: d.Reason, Policy: rl.pol, Rule: rl.index}
	}
	if e.shadow != nil {
		d.HasShadow = true
		d.Shadow = e.shadow.evaluate(ctx, r)
	}
	return d
}

// HasCustom reports whether any CUSTOM policy is loaded (its evaluation
// allocates).
func (e *Engine) HasCustom() bool {
	return len(e.live.custom) > 0 || (e.shadow != nil && len(e.shadow.custom) > 0)
}

func (ev *evaluator) evaluate(ctx context.Context, r *Request) Outcome {
	for _, p := range ev.custom {
		for _, rl := range p.rules {
			if !rl.match(r, nil) {
				continue
			}
			dec, err := p.rego.Eval(ctx, RegoInput(r))
			switch {
			case err != nil:
				return Outcome{Reason: ReasonCustomError, Policy: p, Rule: rl.index, Detail: err.Error()}
			case !dec.Allow:
				return Outcome{Reason: ReasonCustomDeny, Policy: p, Rule: rl.index, Detail: dec.Reason}
			}
			break // allowed by this CUSTOM policy: on to the next
		}
	}
	if rl := ev.deny.first(r); rl != nil {
		return Outcome{Reason: ReasonDenyPolicy, Policy: rl.pol, Rule: rl.index}
	}
	if !ev.hasAllow {
		return Outcome{Allowed: true, Reason: ReasonNoPolicy, Rule: -1}
	}
	if rl := ev.allow.first(r); rl != nil {
		return Outcome{Allowed: true, Reason: ReasonAllowPolicy, Policy: rl.pol, Rule: rl.index}
	}
	return Outcome{Reason: ReasonNoAllowMatch, Rule: -1}
}

// RegoInput is the input document of a CUSTOM policy's Rego for r (see
// the rego package).
func RegoInput(r *Request) map[string]any {
	src := map[string]any{"principal": r.Principal, "namespace": namespaceOf(r.Principal)}
	if r.SourceIP.IsValid() {
		src["ip"] = r.SourceIP.String()
	}
	dst := map[string]any{"port": int(r.Port)}
	if r.DestinationIP.IsValid() {
		dst["ip"] = r.DestinationIP.String()
	}
	in := map[string]any{
		"source":      src,
		"destination": dst,
		"connection":  map[string]any{"mtls": r.Principal != "", "sni": r.SNI},
	}
	if r.HTTP {
		headers := make(map[string]any, len(r.Headers))
		for k, vs := range r.Headers {
			headers[strings.ToLower(k)] = strings.Join(vs, ",")
		}
		auds := make([]any, len(r.Auth.Audiences))
		for i, a := range r.Auth.Audiences {
			auds[i] = a
		}
		claims := map[string]any{}
		if r.Auth.Claims != nil {
			claims = r.Auth.Claims
		}
		in["request"] = map[string]any{
			"method": r.Method, "path": r.Path, "host": r.Host, "headers": headers,
			"auth": map[string]any{"principal": r.Auth.Principal, "audiences": auds, "presenter": r.Auth.Presenter, "claims": claims},
		}
	}
	return in
}

// Check compiles one policy on its own, reporting what Compile would
// (CUSTOM Rego that does not compile, for one), so that a bad policy is
// refused when it is applied rather than NACKed by every proxy.
func Check(ap *policy.AuthorizationPolicy) error {
	_, err := compilePolicy(ap)
	return err
}

// Validate is policy.Validate plus the checks that need the compilers:
// an AuthorizationPolicy's Rego, a RequestAuthentication's inline keys.
// The server runs it on apply and the CLI on `policy validate`, so both
// refuse the same objects with the same messages.
func Validate(obj policy.Object, td spiffeid.TrustDomain) error {
	if err := policy.Validate(obj, td); err != nil {
		return err
	}
	name := fmt.Sprintf("%s %q", obj.GetKind(), obj.GetMeta().Name)
	if obj.Namespaced() {
		name = fmt.Sprintf("%s %q", obj.GetKind(), obj.GetMeta().Namespace+"/"+obj.GetMeta().Name)
	}
	switch o := obj.(type) {
	case *policy.AuthorizationPolicy:
		if err := Check(o); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
	case *policy.RequestAuthentication:
		if err := authn.Check(o); err != nil {
			return fmt.Errorf("%s: spec.jwtRules: %w", name, err)
		}
	}
	return nil
}

// customBudget bounds one CUSTOM evaluation. It guards against runaway
// modules, not latency: on a busy 2-core machine Go's 10 ms preemption
// slice alone can push a 15 µs module past a 10 ms budget, and a budget hit
// denies.
const customBudget = 100 * time.Millisecond

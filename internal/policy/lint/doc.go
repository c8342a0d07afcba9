// Package lint finds AuthorizationPolicies that are valid but probably not
// what their author meant: rules that can never change a decision, ALLOW
// rules a DENY rule overrides, callers let in too widely, policies that
// apply to no workload. It is the engine of `trustmesh policy lint`.
//
// Lint takes an Input (the policies, the RequestAuthentications and, when
// known, the Workloads and Services of the mesh) and returns Findings, each
// with a Severity, a stable Code, the Object and Field it is about and a
// Message saying what is wrong and what to do. The severities mean:
//
//   - Error: the policy certainly does not do what it says.
//   - Warning: probably a mistake, or a risk to look at.
//   - Info: the policy does what it says, which is worth knowing.
//
// # Codes
//
// shadowed-rule (warning): a rule of an ALLOW or DENY policy that can
// never change a decision, because another rule of the same action matches
// every request it matches on every workload its policy applies to; or an
// ALLOW rule that can never allow anything, because a DENY rule matches
// every request it matches (DENY is evaluated first). Of two rules that
// match the same requests, the later one in evaluation order (namespace,
// name, rule index) is reported.
//
// allow-deny-conflict (warning): an ALLOW rule and a DENY rule that apply
// to the same workloads and match some of the same requests: the DENY
// wins, so the ALLOW rule does not allow those. The message names the DENY
// rule and an example request. This is also how a deliberate exception
// ("allow namespace foo, but not /admin") looks: nothing to do then. An
// ALLOW rule that a DENY rule overrides entirely is shadowed-rule instead.
//
// over-permissive (warning): an ALLOW rule that lets any caller (no from,
// or only not- fields: plaintext callers included), any mTLS peer
// (principals or namespaces ["*"]) or any JWT holder (requestPrincipals
// ["*"]) reach a sensitive port it names (see DefaultSensitivePorts); or
// the empty rule {} in a namespace-wide or mesh-wide ALLOW policy, which
// allows every request to every workload in scope. The latter is a warning,
// not an error, even in the root namespace: it is Istio's documented
// allow-all pattern and has legitimate uses (opening a namespace while
// policies are rolled out, undoing an allow-nothing), but it makes every
// other ALLOW policy in scope moot and lets plaintext callers in, so it
// should be a conscious choice.
//
// selects-no-workload (warning, only when Workloads are known): a policy
// whose selector selects no Workload, or without a selector in a namespace
// (or a mesh) with no Workloads: it applies to nothing.
//
// request-principal-without-authn (warning): a rule using requestPrincipals,
// notRequestPrincipals or a request.auth.* key where no
// RequestAuthentication applies to any workload the policy applies to:
// requests there never carry a verified JWT, so requestPrincipals and
// values never match (an ALLOW rule never matches) and notRequestPrincipals
// and notValues always do.
//
// allow-nothing (info): an ALLOW policy without rules, which denies every
// request to its workloads that no other ALLOW policy allows: Istio's
// allow-nothing pattern, intentional if so.
//
// dry-run (info): a dry-run policy: its decisions are recorded, never
// enforced.
//
// mixed-l4-l7 (only when Services are known): a rule with HTTP-only fields
// (hosts, methods, paths, requestPrincipals, request.* keys) that names a
// port some Service serves as TCP to the policy's workloads. Istio ignores
// such an ALLOW rule for TCP traffic, so it allows nothing on that port:
// an error when a known Workload is both served and under the policy, a
// warning when Workloads are unknown and the Service is merely in scope. A
// DENY rule ignores its HTTP-only fields for TCP traffic and so denies
// every connection to the port the rest of it matches: a warning.
//
// unknown-principal-trust-domain (info, only when Workloads are known): a
// principal whose trust domain is not that of any Workload: a typo, unless
// the trust domain is federated.
//
// # How rules are compared
//
// A rule matches when any from entry, any to entry and all when conditions
// match; within a field, a list matches when any value does and a not-list
// when none does. Lint writes each rule as a disjunction of conjunctions
// of such list fields, one per (from, to) pair, and proves that rule A
// matches all that rule B matches when each conjunction of B implies one
// of A: every field of A is implied by a field of B on the same attribute
// (A's paths contain B's by exact, prefix and suffix matching, A's
// notPaths are among B's or disjoint from B's paths, and so on). It does
// so for HTTP requests and TCP connections, where ALLOW rules with
// HTTP-only fields never match and DENY rules ignore those fields. The
// proof is sound but not complete: when in doubt nothing is reported.
// Overlaps (allow-deny-conflict) are shown by a concrete request built from
// the rules' values, and every such request, as every proven shadow, is
// checked against the authz evaluator itself.
//
// Two policies apply to the same workloads as policy.AuthorizationPolicy
// AppliesTo says, on the known Workloads; without them, a policy certainly
// covers another when it is mesh-wide, namespace-wide in the other's
// namespace, or has a selector whose labels the other's selector also
// requires (in the same namespace, or in the root namespace). A dry-run
// rule never shadows or overrides an enforced one.
//
// # Concurrency
//
// Lint holds no state between calls and does not modify its Input; it is
// safe for concurrent use on inputs that are not being modified.
package lint

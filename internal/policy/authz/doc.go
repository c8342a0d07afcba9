// Package authz decides requests with AuthorizationPolicies, with Istio's
// semantics, in the data path of the proxy.
//
// # Model
//
// Compile turns the policies that apply to one workload into an Engine: an
// immutable structure in which every rule is compiled (values parsed,
// principals stripped of "spiffe://", hosts folded) and filed by action
// (CUSTOM, DENY, ALLOW, AUDIT) and, within an action, indexed by path
// (exact paths and prefixes) or, for rules without paths, by exact
// principal. Evaluate walks only the candidate lists of a request, each
// sorted in rule order, and returns the same rule a scan of every rule
// would (tests and a fuzz target check this). Without CUSTOM policies,
// Evaluate allocates nothing.
//
// Evaluation order is Istio's: CUSTOM (a request its rules select is
// denied unless its Rego allows), DENY, then ALLOW (with no ALLOW policy
// the request is allowed, with any only what an ALLOW rule matches). AUDIT
// matches are reported, never enforced; so are the decisions the dry-run
// policies would make (Decision.Shadow). For TCP traffic, an ALLOW or
// AUDIT rule with HTTP-only fields never matches and a DENY rule's
// HTTP-only fields are ignored.
//
// Explain evaluates the same way and records, for every rule, the first
// condition that failed, for operators (it allocates). Cache memoizes
// decisions keyed on the attributes the engine's rules read.
//
// # Concurrency
//
// An Engine and a Cache are safe for concurrent use; an Engine never
// changes after Compile.
package authz

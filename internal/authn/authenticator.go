package authn

import (
	"encoding/json"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Result is the verified identity of a request.
type Result struct {
	// Principal is "iss/sub", as Istio's request.auth.principal; "" when
	// no token was presented.
	Principal string
	Issuer    string
	Subject   string
	Audiences []string
	// Presenter is the "azp" claim.
	Presenter string
	// Claims is the verified payload, numbers as json.Number.
	Claims map[string]any
}

// Authenticated reports whether a verified token was presented.
func (r Result) Authenticated() bool { return r.Principal != "" }

// Authenticator checks the JWTs of requests against one config's rules.
// It is immutable and safe for concurrent use.
type Authenticator struct {
	rules    []compiledRule
	byIssuer map[string]int
	locs     []*location
	outputs  []string // every output header of every rule, canonical
	keys     *KeySets
	clock    func() time.Time
}

// NewAuthenticator validates rules and builds an Authenticator. keys
// serves the rules with a JWKSURI (it may be nil if none has one); the
// caller passes [Authenticator.JWKSURIs] to keys.Want. clock defaults to
// time.Now. The error lists every problem, each naming the rule index and
// the field.
func NewAuthenticator(rules []Rule, keys *KeySets, clock func() time.Time) (*Authenticator, error) {
	compiled, locs, err := compile(rules, keys != nil)
	if err != nil {
		return nil, err
	}
	if clock == nil {
		clock = time.Now
	}
	a := &Authenticator{rules: compiled, byIssuer: map[string]int{}, locs: locs, keys: keys, clock: clock}
	for i, r := range compiled {
		a.byIssuer[r.issuer] = i
		if r.payloadHeader != "" && !slices.Contains(a.outputs, r.payloadHeader) {
			a.outputs = append(a.outputs, r.payloadHeader)
		}
		for _, c := range r.claimHeaders {
			if !slices.Contains(a.outputs, c.Header) {
				a.outputs = append(a.outputs, c.Header)
			}
		}
	}
	return a, nil
}

// JWKSURIs returns the remote JWKS URIs of the rules, for KeySets.Want.
func (a *Authenticator) JWKSURIs() []string {
	var out []string
	for _, r := range a.rules {
		if r.jwksURI != "" && !slices.Contains(out, r.jwksURI) {
			out = append(out, r.jwksURI)
		}
	}
	return out
}

// Authenticate checks the token of r, if it has one, and prepares r for
// the app. It always first removes every output header of every rule from
// r, so a client cannot forge them. Then:
//
//   - no token at any location: (Result{}, nil). A missing token is not
//     an error; a policy requiring a principal refuses the request later.
//   - more than one token: *Error multiple-tokens.
//   - one token that does not verify: *Error with the reason; r is left
//     as it is (the caller answers 401 with [Error.Challenge]).
//   - one valid token: its Result. Unless the rule forwards it, the token
//     is removed from r (see the package doc for the fields touched), and
//     the rule's output headers are set.
func (a *Authenticator) Authenticate(r *http.Request) (Result, error) {
	for _, h := range a.outputs {
		delHeader(r.Header, h)
	}
	tokens, ferr := extract(r, a.locs)
	if ferr != nil {
		return Result{}, ferr
	}
	switch len(tokens) {
	case 0:
		return Result{}, nil
	case 1:
	default:
		return Result{}, failure(ReasonMultipleTokens, "more than one token in the request", nil)
	}
	f := tokens[0]
	rule, payload, res, err := a.verify(f)
	if err != nil {
		return Result{}, err
	}
	if !rule.forward {
		remove(r, f)
	}
	if rule.payloadHeader != "" {
		r.Header.Set(rule.payloadHeader, payload)
	}
	for _, c := range rule.claimHeaders {
		if v, ok := claimHeaderValue(res.Claims, c.Claim); ok {
			r.Header.Set(c.Header, v)
		}
	}
	return res, nil
}

// verify checks the token f against the one rule its issuer chooses, and
// returns the rule, the payload segment (canonical base64url of the
// verified payload: parseToken refuses any other encoding) and the Result.
func (a *Authenticator) verify(f found) (*compiledRule, string, Result, *Error) {
	t, err := parseToken(f.value)
	if err != nil {
		return nil, "", Result{}, err
	}
	if !allowedAlg(t.alg) {
		return nil, "", Result{}, failure(ReasonAlgNotAllowed, "token algorithm is not allowed", nil)
	}
	// The issuer is read unverified, only to choose the rule: the
	// signature is then checked with that rule's keys and no other.
	iss, isString := t.claims["iss"].(string)
	if _, present := t.claims["iss"]; present && !isString {
		return nil, "", Result{}, failure(ReasonMalformed, `claim "iss" is not a string`, nil)
	}
	i, ok := a.byIssuer[iss]
	if !ok || iss == "" {
		return nil, "", Result{}, failure(ReasonUnknownIssuer, "token issuer is not trusted", nil)
	}
	rule := &a.rules[i]
	fail := func(e *Error) (*compiledRule, string, Result, *Error) {
		e.Issuer = rule.issuer
		return nil, "", Result{}, e
	}
	if !f.loc.owns(i) {
		return fail(failure(ReasonUnknownIssuer, "token issuer is not accepted at this token location", nil))
	}
	set := rule.inline
	if set == nil {
		s, err := a.keys.lookup(rule.jwksURI)
		if err != nil {
			return fail(failure(ReasonJWKSUnavailable, "the issuer's keys are not available", err))
		}
		set = s
	}
	if e := t.verify(set); e != nil {
		return fail(e)
	}
	// Verified: the payload is the issuer's from here on.
	c, e := readClaims(t.claims)
	if e != nil {
		return fail(e)
	}
	if e := c.checkTimes(a.clock()); e != nil {
		return fail(e)
	}
	if len(rule.audiences) > 0 && !slices.ContainsFunc(c.aud, func(s string) bool { return slices.Contains(rule.audiences, s) }) {
		return fail(failure(ReasonWrongAudience, "token audience is not accepted", nil))
	}
	return rule, t.payloadB64, Result{
		Principal: c.iss + "/" + c.sub,
		Issuer:    c.iss,
		Subject:   c.sub,
		Audiences: c.aud,
		Presenter: c.azp,
		Claims:    t.claims,
	}, nil
}

// claimHeaderValue renders the claim named name (top level, else a dotted
// path into nested objects) for a header: strings as they are, booleans
// and numbers as their JSON text. Other types, and strings that are not
// valid header values, give false.
func claimHeaderValue(claims map[string]any, name string) (string, bool) {
	v, ok := claims[name]
	if !ok && strings.Contains(name, ".") {
		var cur any = claims
		for part := range strings.SplitSeq(name, ".") {
			m, isMap := cur.(map[string]any)
			if !isMap {
				return "", false
			}
			if cur, ok = m[part]; !ok {
				return "", false
			}
		}
		v = cur
	}
	if !ok {
		return "", false
	}
	var s string
	switch x := v.(type) {
	case string:
		s = x
	case bool:
		s = strconv.FormatBool(x)
	case json.Number:
		s = x.String()
	default:
		return "", false
	}
	if !validHeaderValue(s) {
		return "", false
	}
	return s, true
}

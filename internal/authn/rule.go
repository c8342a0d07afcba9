package authn

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
)

// HeaderLocation is where a token is read from a header: the value after
// Prefix (e.g. Name "Authorization", Prefix "Bearer "). The prefix is
// matched case-insensitively; a value without it is not a token for this
// location (so "Authorization: Basic ..." is left alone).
type HeaderLocation struct{ Name, Prefix string }

// ClaimToHeader copies a claim to a request header.
type ClaimToHeader struct{ Header, Claim string }

// Rule is one trusted issuer (Istio's JWTRule).
type Rule struct {
	// Issuer is required and matched exactly against "iss".
	Issuer string
	// Audiences, if non-empty: "aud" (a string or a list) must contain
	// one of them. If empty, any audience, or none, is accepted (Istio).
	Audiences []string
	// JWKSURI is the http(s) URL of the issuer's JWKS, fetched by the
	// KeySets. Exactly one of JWKSURI and JWKS.
	JWKSURI string
	// JWKS is an inline JWKS (JSON).
	JWKS string
	// FromHeaders and FromParams are where this issuer's tokens are
	// read. When both are empty: the Authorization header with prefix
	// "Bearer " and the query parameter "access_token" (Istio's default).
	FromHeaders []HeaderLocation
	FromParams  []string
	// ForwardOriginalToken keeps the token in the request. By default it
	// is removed before the request goes to the app.
	ForwardOriginalToken bool
	// OutputPayloadToHeader, if set, is a header that receives the
	// base64url (unpadded) of the verified payload.
	OutputPayloadToHeader string
	// OutputClaimToHeaders copy claims of the verified payload to
	// headers. A claim is named at the top level of the payload, or else
	// as a dotted path into nested objects ("a.b"); string, boolean and
	// number claims are copied, others (lists, objects, null) and values
	// that are not valid in a header are not.
	OutputClaimToHeaders []ClaimToHeader
}

// Defaults (Istio's) when a rule names no location.
const (
	defaultHeader = "Authorization"
	defaultPrefix = "Bearer "
	defaultParam  = "access_token"
)

// reservedHeaders cannot be output headers: framing and hop-by-hop
// headers, and the ones the proxy itself sets for the app.
var reservedHeaders = []string{
	"Host", "Content-Length", "Transfer-Encoding", "Connection", "Keep-Alive",
	"Proxy-Connection", "Te", "Trailer", "Upgrade",
	"X-Trustmesh-Peer-Identity", "X-Forwarded-Client-Cert",
}

// compiledRule is a validated Rule with canonical header names.
type compiledRule struct {
	issuer        string
	audiences     []string
	jwksURI       string
	inline        *keySet
	forward       bool
	payloadHeader string
	claimHeaders  []ClaimToHeader
}

// location is one place tokens are read from, shared by every rule that
// names it.
type location struct {
	header string // canonical header name; "" for a query parameter
	prefix string
	param  string
	owners []int // indices of the rules reading here, ascending
}

func (l *location) owns(rule int) bool { return slices.Contains(l.owners, rule) }

// compile validates rules and builds the Authenticator's tables. Every
// problem is reported, each naming the rule index and the field.
func compile(rules []Rule, haveKeySets bool) ([]compiledRule, []*location, error) {
	var errs []error
	bad := func(i int, field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("rules[%d].%s: %s", i, field, fmt.Sprintf(format, args...)))
	}
	out := make([]compiledRule, len(rules))
	issuers := map[string]int{}
	var locs []*location
	addLoc := func(l location, rule int) {
		for _, have := range locs {
			if have.header == l.header && have.param == l.param && strings.EqualFold(have.prefix, l.prefix) {
				if !have.owns(rule) {
					have.owners = append(have.owners, rule)
				}
				return
			}
		}
		l.owners = []int{rule}
		locs = append(locs, &l)
	}
	outputs := map[string]int{} // output header -> first rule using it

	for i, r := range rules {
		c := compiledRule{issuer: r.Issuer, forward: r.ForwardOriginalToken}
		switch {
		case r.Issuer == "":
			bad(i, "Issuer", "is required")
		case strings.TrimSpace(r.Issuer) != r.Issuer:
			bad(i, "Issuer", "has leading or trailing space")
		default:
			if j, dup := issuers[r.Issuer]; dup {
				bad(i, "Issuer", "%q is also the issuer of rules[%d]; an issuer may have one rule only", r.Issuer, j)
			} else {
				issuers[r.Issuer] = i
			}
		}
		for j, a := range r.Audiences {
			if a == "" {
				bad(i, fmt.Sprintf("Audiences[%d]", j), "is empty")
			}
		}
		c.audiences = slices.Clone(r.Audiences)

		switch {
		case r.JWKSURI == "" && r.JWKS == "":
			bad(i, "JWKSURI", "one of JWKSURI and JWKS is required")
		case r.JWKSURI != "" && r.JWKS != "":
			bad(i, "JWKS", "only one of JWKSURI and JWKS may be set")
		case r.JWKSURI != "":
			if err := checkJWKSURI(r.JWKSURI); err != nil {
				bad(i, "JWKSURI", "%v", err)
			} else if !haveKeySets {
				bad(i, "JWKSURI", "a remote JWKS needs a KeySets (NewAuthenticator was given nil)")
			}
			c.jwksURI = r.JWKSURI
		default:
			set, err := parseJWKS([]byte(r.JWKS), true)
			if err != nil {
				bad(i, "JWKS", "%v", err)
			}
			c.inline = set
		}

		headers, params := r.FromHeaders, r.FromParams
		if len(headers) == 0 && len(params) == 0 {
			headers = []HeaderLocation{{Name: defaultHeader, Prefix: defaultPrefix}}
			params = []string{defaultParam}
		}
		seenHeader := map[string]bool{}
		for j, h := range headers {
			field := fmt.Sprintf("FromHeaders[%d]", j)
			if !validHeaderName(h.Name) {
				bad(i, field+".Name", "%q is not a valid header name", h.Name)
				continue
			}
			if !validHeaderValue(h.Prefix) {
				bad(i, field+".Prefix", "has a control character")
				continue
			}
			name := http.CanonicalHeaderKey(h.Name)
			key := name + "\x00" + strings.ToLower(h.Prefix)
			if seenHeader[key] {
				bad(i, field, "%s with prefix %q is listed twice", name, h.Prefix)
				continue
			}
			seenHeader[key] = true
			addLoc(location{header: name, prefix: h.Prefix}, i)
		}
		seenParam := map[string]bool{}
		for j, p := range params {
			field := fmt.Sprintf("FromParams[%d]", j)
			switch {
			case p == "":
				bad(i, field, "is empty")
			case seenParam[p]:
				bad(i, field, "%q is listed twice", p)
			default:
				seenParam[p] = true
				addLoc(location{param: p}, i)
			}
		}

		ruleOutputs := map[string]bool{}
		checkOutput := func(field, h string) (string, bool) {
			if !validHeaderName(h) {
				bad(i, field, "%q is not a valid header name", h)
				return "", false
			}
			name := http.CanonicalHeaderKey(h)
			if slices.Contains(reservedHeaders, name) {
				bad(i, field, "%s is reserved", name)
				return "", false
			}
			if ruleOutputs[name] {
				bad(i, field, "%s is written twice by this rule", name)
				return "", false
			}
			ruleOutputs[name] = true
			if _, ok := outputs[name]; !ok {
				outputs[name] = i
			}
			return name, true
		}
		if r.OutputPayloadToHeader != "" {
			if name, ok := checkOutput("OutputPayloadToHeader", r.OutputPayloadToHeader); ok {
				c.payloadHeader = name
			}
		}
		for j, ch := range r.OutputClaimToHeaders {
			field := fmt.Sprintf("OutputClaimToHeaders[%d]", j)
			if ch.Claim == "" {
				bad(i, field+".Claim", "is empty")
				continue
			}
			if name, ok := checkOutput(field+".Header", ch.Header); ok {
				c.claimHeaders = append(c.claimHeaders, ClaimToHeader{Header: name, Claim: ch.Claim})
			}
		}
		out[i] = c
	}
	// Output headers are stripped from every request before tokens are
	// read, so none may be a header tokens are read from.
	for _, l := range locs {
		if l.header == "" {
			continue
		}
		if i, ok := outputs[l.header]; ok {
			errs = append(errs, fmt.Errorf("rules[%d]: output header %s is a header tokens are read from (rules[%d])", i, l.header, l.owners[0]))
		}
	}
	if len(errs) > 0 {
		return nil, nil, errors.Join(errs...)
	}
	return out, locs, nil
}

func checkJWKSURI(s string) error {
	u, err := url.Parse(s)
	if err != nil {
		return errors.New("is not a valid url")
	}
	if u.Scheme != "https" && u.Scheme != "http" {
		return fmt.Errorf("scheme %q is not http or https", u.Scheme)
	}
	if u.Host == "" {
		return errors.New("has no host")
	}
	if u.Fragment != "" {
		return errors.New("has a fragment")
	}
	return nil
}

// validHeaderName reports whether s is an RFC 9110 token.
func validHeaderName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' {
			continue
		}
		if !strings.ContainsRune("!#$%&'*+-.^_`|~", rune(c)) {
			return false
		}
	}
	return true
}

// validHeaderValue reports whether s may be sent as a header value: no
// control characters other than tab (so no CR, LF or NUL).
func validHeaderValue(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 && c != '\t' || c == 0x7f {
			return false
		}
	}
	return true
}

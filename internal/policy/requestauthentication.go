package policy

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// RequestAuthentication says which JWTs the workloads it selects accept,
// with the fields and semantics of Istio's RequestAuthentication: a
// request carrying an invalid token is rejected (401); a request without a
// token passes authentication and is only rejected where an
// AuthorizationPolicy requires a request principal. Scope as for
// AuthorizationPolicy.
type RequestAuthentication struct {
	APIVersion string                    `json:"apiVersion"`
	Kind       string                    `json:"kind"`
	Metadata   Metadata                  `json:"metadata"`
	Spec       RequestAuthenticationSpec `json:"spec"`
}

// RequestAuthenticationSpec is the body of a RequestAuthentication.
type RequestAuthenticationSpec struct {
	Selector *Selector `json:"selector,omitempty"`
	JWTRules []JWTRule `json:"jwtRules,omitempty"`
}

// JWTRule is one trusted issuer.
type JWTRule struct {
	// Issuer is matched exactly against the token's iss claim. Required.
	Issuer string `json:"issuer"`
	// Audiences, if any, must include one of the token's aud values.
	Audiences []string `json:"audiences,omitempty"`
	// JWKSURI is an http(s) URL the proxy fetches the keys from; JWKS is
	// an inline key set. Exactly one is required.
	JWKSURI string `json:"jwksUri,omitempty"`
	JWKS    string `json:"jwks,omitempty"`
	// FromHeaders and FromParams say where the token is read; by default
	// "Authorization: Bearer TOKEN" and the access_token query parameter.
	FromHeaders []JWTHeader `json:"fromHeaders,omitempty"`
	FromParams  []string    `json:"fromParams,omitempty"`
	// ForwardOriginalToken keeps the token in the request to the app; by
	// default it is removed.
	ForwardOriginalToken  bool   `json:"forwardOriginalToken,omitempty"`
	OutputPayloadToHeader string `json:"outputPayloadToHeader,omitempty"`
	// OutputClaimToHeaders copies claims into request headers.
	OutputClaimToHeaders []ClaimToHeader `json:"outputClaimToHeaders,omitempty"`
}

// JWTHeader is a header a token is read from, after Prefix.
type JWTHeader struct {
	Name   string `json:"name"`
	Prefix string `json:"prefix,omitempty"`
}

// ClaimToHeader copies a claim to a request header.
type ClaimToHeader struct {
	Header string `json:"header"`
	Claim  string `json:"claim"`
}

var _ kindObject = (*RequestAuthentication)(nil)

// GetKind returns "RequestAuthentication".
func (p *RequestAuthentication) GetKind() string { return KindRequestAuthentication }

// GetMeta returns the object's metadata.
func (p *RequestAuthentication) GetMeta() *Metadata { return &p.Metadata }

// Namespaced returns true.
func (p *RequestAuthentication) Namespaced() bool { return true }

func (p *RequestAuthentication) typeMeta() (string, string) { return p.APIVersion, p.Kind }

func (p *RequestAuthentication) withTypeMeta() kindObject {
	c := *p
	c.APIVersion, c.Kind = APIVersion, KindRequestAuthentication
	return &c
}

// AppliesTo reports whether the policy applies to workload w, with the
// scope rules of AuthorizationPolicy.AppliesTo.
func (p *RequestAuthentication) AppliesTo(w *Workload) bool {
	return appliesTo(&p.Metadata, p.Spec.Selector, w)
}

func (p *RequestAuthentication) validateSpec(v *validator, _ spiffeid.TrustDomain) {
	s := &p.Spec
	checkSelector(v, "spec.selector", s.Selector, "for a namespace-wide (or, in "+RootNamespace+", mesh-wide) policy")
	if len(s.JWTRules) == 0 {
		v.add("spec.jwtRules", "at least one rule is required: the issuers whose tokens are accepted")
	}
	issuers := make(map[string]int)
	for i, r := range s.JWTRules {
		f := fmt.Sprintf("spec.jwtRules[%d]", i)
		if r.Issuer == "" {
			v.add(f+".issuer", "is required: the iss claim of the tokens this rule accepts")
		} else {
			if j, dup := issuers[r.Issuer]; dup {
				v.add(f+".issuer", "%q repeats spec.jwtRules[%d]: one rule per issuer", r.Issuer, j)
			}
			issuers[r.Issuer] = i
		}
		switch {
		case r.JWKSURI == "" && r.JWKS == "":
			v.add(f, "needs jwksUri (a URL the proxy fetches the keys from) or jwks (an inline key set)")
		case r.JWKSURI != "" && r.JWKS != "":
			v.add(f, "set only one of jwksUri and jwks")
		case r.JWKSURI != "":
			u, err := url.Parse(r.JWKSURI)
			if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
				v.add(f+".jwksUri", "%q: want an http or https URL", r.JWKSURI)
			}
		default:
			var ks struct {
				Keys []json.RawMessage `json:"keys"`
			}
			if err := json.Unmarshal([]byte(r.JWKS), &ks); err != nil || len(ks.Keys) == 0 {
				v.add(f+".jwks", "is not a JWKS: want a JSON object with a non-empty \"keys\" list")
			}
		}
		for j, a := range r.Audiences {
			if a == "" {
				v.add(fmt.Sprintf("%s.audiences[%d]", f, j), "is empty")
			}
		}
		for j, h := range r.FromHeaders {
			checkHeaderName(v, fmt.Sprintf("%s.fromHeaders[%d].name", f, j), h.Name)
		}
		for j, q := range r.FromParams {
			if q == "" || strings.ContainsAny(q, "&=#? ") {
				v.add(fmt.Sprintf("%s.fromParams[%d]", f, j), "%q is not a query parameter name", q)
			}
		}
		if r.OutputPayloadToHeader != "" {
			checkHeaderName(v, f+".outputPayloadToHeader", r.OutputPayloadToHeader)
		}
		for j, c := range r.OutputClaimToHeaders {
			cf := fmt.Sprintf("%s.outputClaimToHeaders[%d]", f, j)
			checkHeaderName(v, cf+".header", c.Header)
			if c.Claim == "" {
				v.add(cf+".claim", "is required")
			}
		}
	}
}

// checkHeaderName checks an HTTP header field name (a token).
func checkHeaderName(v *validator, field, name string) {
	if name == "" {
		v.add(field, "is required")
		return
	}
	if !validToken(name) {
		v.add(field, "%q is not a valid header name", name)
		return
	}
	if http.CanonicalHeaderKey(name) == "X-Trustmesh-Peer-Identity" {
		v.add(field, "%q is reserved for the proxy", name)
	}
}

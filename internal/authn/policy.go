package authn

import "github.com/trustmesh/trustmesh/internal/policy"

// RulesFrom converts a RequestAuthentication's JWT rules.
func RulesFrom(ra *policy.RequestAuthentication) []Rule {
	out := make([]Rule, 0, len(ra.Spec.JWTRules))
	for _, r := range ra.Spec.JWTRules {
		ar := Rule{
			Issuer: r.Issuer, Audiences: r.Audiences, JWKSURI: r.JWKSURI, JWKS: r.JWKS,
			FromParams: r.FromParams, ForwardOriginalToken: r.ForwardOriginalToken,
			OutputPayloadToHeader: r.OutputPayloadToHeader,
		}
		for _, h := range r.FromHeaders {
			ar.FromHeaders = append(ar.FromHeaders, HeaderLocation{Name: h.Name, Prefix: h.Prefix})
		}
		for _, c := range r.OutputClaimToHeaders {
			ar.OutputClaimToHeaders = append(ar.OutputClaimToHeaders, ClaimToHeader{Header: c.Header, Claim: c.Claim})
		}
		out = append(out, ar)
	}
	return out
}

// Check reports the problems NewAuthenticator would find in ra's rules
// (an inline JWKS that does not parse, for one), so that a bad object is
// refused when it is applied rather than NACKed by every proxy.
func Check(ra *policy.RequestAuthentication) error {
	_, err := NewAuthenticator(RulesFrom(ra), NewKeySets(KeySetsConfig{}), nil)
	return err
}

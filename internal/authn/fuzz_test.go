package authn

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// FuzzAuthenticate sends arbitrary Authorization header values against a
// fixed rule. Never a panic; every failure is an *Error with a known
// reason; and a request is authenticated only by a token byte-identical
// (after the prefix and surrounding blanks) to one of the valid seeds: a
// mutation of a valid token never verifies.
func FuzzAuthenticate(f *testing.F) {
	k := tk(f)
	a, err := NewAuthenticator([]Rule{{
		Issuer:    issA,
		Audiences: []string{"orders"},
		JWKS: jwksJSON(f,
			jwkOf(f, k.rsaA, "a-rsa", nil),
			jwkOf(f, k.ec256, "a-ec", nil),
			jwkOf(f, k.ed, "a-ed", nil)),
		OutputClaimToHeaders: []ClaimToHeader{{Header: "X-Sub", Claim: "sub"}},
	}}, nil, clockAt(fixedNow))
	if err != nil {
		f.Fatal(err)
	}
	// Deterministic signatures only (RS, ES with RFC 6979, EdDSA), so that
	// every fuzz worker mints the same valid tokens.
	valid := map[string]bool{}
	for _, tok := range []string{
		mint(f, "RS256", k.rsaA, "a-rsa", claimsFor(issA)),
		mint(f, "RS384", k.rsaA, "", claimsFor(issA)),
		mint(f, "ES256", k.ec256, "a-ec", claimsFor(issA)),
		mint(f, "EdDSA", k.ed, "a-ed", with(claimsFor(issA), "aud", []string{"x", "orders"})),
		mint(f, "EdDSA", k.ed, "", with(claimsFor(issA), "exp", nil)),
	} {
		valid[tok] = true
		f.Add("Bearer " + tok)
	}
	for _, h := range []string{
		"", "Bearer ", "Basic dXNlcjpwYXNz", "Bearer a.b.c", "Bearer ..",
		"Bearer " + sign(f, "none", nil, []byte(`{"alg":"none"}`), mustJSON(f, claimsFor(issA))),
		"Bearer " + mint(f, "HS256", k.rsaA.N.Bytes(), "a-rsa", claimsFor(issA)),
		"Bearer " + mint(f, "RS256", k.rsaA, "a-rsa", with(claimsFor(issA), "exp", fixedNow.Unix()-3600)),
		"Bearer " + mint(f, "RS256", k.rsaB, "a-rsa", claimsFor(issA)),
		"Bearer " + mint(f, "ES256", k.ec256, "a-ec", with(claimsFor(issA), "aud", "nope")),
	} {
		f.Add(h)
	}
	known := map[Reason]bool{
		ReasonMultipleTokens: true, ReasonMalformed: true, ReasonAlgNotAllowed: true, ReasonUnknownIssuer: true,
		ReasonJWKSUnavailable: true, ReasonUnknownKey: true, ReasonBadSignature: true, ReasonExpired: true,
		ReasonNotYetValid: true, ReasonWrongAudience: true,
	}
	f.Fuzz(func(t *testing.T, header string) {
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		r.Header.Set("Authorization", header)
		r.Header.Set("X-Sub", "forged")
		res, err := a.Authenticate(r)
		if got := r.Header.Get("X-Sub"); got == "forged" {
			t.Fatalf("a forged output header survived")
		}
		if err != nil {
			var e *Error
			if !errors.As(err, &e) || !known[e.Reason] {
				t.Fatalf("got error %v (%T), want an *Error with a known reason", err, err)
			}
			if res.Authenticated() || res.Claims != nil {
				t.Fatalf("got a result %+v with an error", res)
			}
			return
		}
		if !res.Authenticated() {
			if res.Claims != nil {
				t.Fatalf("got claims without a principal")
			}
			return
		}
		if !hasPrefixFold(header, defaultPrefix) {
			t.Fatalf("authenticated %q, which has no bearer prefix", header)
		}
		tok := strings.Trim(header[len(defaultPrefix):], " \t")
		if !valid[tok] {
			t.Fatalf("authenticated a token that is not one of the valid ones: %q", header)
		}
		if got := r.Header.Get("Authorization"); got != "" {
			t.Fatalf("the token was not removed: Authorization %q", got)
		}
	})
}

// FuzzParseJWKS feeds arbitrary bytes to the JWKS parser (inline and
// remote modes). Never a panic; a parsed set has 1..maxKeys keys, each an
// allowed public key type that fits some allowed algorithm; strict mode
// accepts nothing that lenient mode refuses.
func FuzzParseJWKS(f *testing.F) {
	k := tk(f)
	f.Add([]byte(jwksJSON(f, jwkOf(f, k.rsaA, "a", nil), jwkOf(f, k.ec256, "e", map[string]any{"use": "sig", "alg": "ES256"}))))
	f.Add([]byte(jwksJSON(f, jwkOf(f, k.ed, "ed", map[string]any{"key_ops": []string{"verify"}}), jwkOf(f, k.ec384, "", nil))))
	f.Add([]byte(jwksJSON(f, map[string]any{"kty": "oct", "k": "c2VjcmV0"}, jwkOf(f, k.rsa1024, "w", nil))))
	f.Add([]byte(`{"keys":[{"kty":"EC","crv":"P-256","x":"AA","y":"AA"}]}`))
	f.Add([]byte(`{"keys":[{"kty":"RSA","n":"AQAB","e":"AQAB"}]}`))
	f.Add([]byte(`{"keys":[{"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo","d":"nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A"}]}`))
	f.Add([]byte(`{"keys":[],"keys":[]}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, data []byte) {
		lenient, lerr := parseJWKS(data, false)
		strict, serr := parseJWKS(data, true)
		if serr == nil && lerr != nil {
			t.Fatalf("strict accepted what lenient refused: %v", lerr)
		}
		for _, set := range []*keySet{lenient, strict} {
			if set == nil {
				continue
			}
			if n := len(set.keys); n == 0 || n > maxKeys {
				t.Fatalf("got %d keys, want 1..%d", n, maxKeys)
			}
			for _, key := range set.keys {
				fitsSome := false
				for _, alg := range []string{algRS256, algRS384, algRS512, algPS256, algPS384, algPS512, algES256, algES384, algES512, algEdDSA} {
					fitsSome = fitsSome || key.fits(alg)
				}
				if !fitsSome {
					t.Fatalf("key %+v fits no allowed algorithm", key)
				}
				for _, bad := range []string{"none", "HS256", "HS384", "HS512", "ES256K", "Ed25519", ""} {
					if key.fits(bad) {
						t.Fatalf("key %+v fits %q", key, bad)
					}
				}
			}
		}
	})
}

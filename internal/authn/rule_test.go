package authn

import (
	"strings"
	"testing"
)

func TestNewAuthenticatorValidates(t *testing.T) {
	k := tk(t)
	jwks := jwksJSON(t, jwkOf(t, k.rsaA, "a", nil))
	ok := func(iss string) Rule { return Rule{Issuer: iss, JWKS: jwks} }
	privateJWK := jwkOf(t, k.ed, "priv", map[string]any{"d": b64u(k.ed.Seed())})

	tests := []struct {
		name     string
		rules    []Rule
		noKeys   bool     // NewAuthenticator gets a nil KeySets
		wantErrs []string // each in the error; none: valid
	}{
		{name: "valid", rules: []Rule{ok("a"), {Issuer: "b", JWKSURI: "https://idp.example/jwks"}}},
		{name: "empty issuer", rules: []Rule{{JWKS: jwks}}, wantErrs: []string{"rules[0].Issuer: is required"}},
		{name: "issuer with space", rules: []Rule{ok(" a")}, wantErrs: []string{"rules[0].Issuer: has leading or trailing space"}},
		{name: "duplicate issuer", rules: []Rule{ok("a"), ok("b"), ok("a")}, wantErrs: []string{`rules[2].Issuer: "a" is also the issuer of rules[0]`}},
		{name: "neither jwks source", rules: []Rule{{Issuer: "a"}}, wantErrs: []string{"rules[0].JWKSURI: one of JWKSURI and JWKS is required"}},
		{name: "both jwks sources", rules: []Rule{{Issuer: "a", JWKS: jwks, JWKSURI: "https://x/jwks"}}, wantErrs: []string{"rules[0].JWKS: only one of JWKSURI and JWKS may be set"}},
		{name: "non-http uri", rules: []Rule{ok("a"), {Issuer: "b", JWKSURI: "file:///etc/jwks.json"}}, wantErrs: []string{`rules[1].JWKSURI: scheme "file" is not http or https`}},
		{name: "uri without host", rules: []Rule{{Issuer: "b", JWKSURI: "https:///jwks"}}, wantErrs: []string{"rules[0].JWKSURI: has no host"}},
		{name: "uri not a url", rules: []Rule{{Issuer: "b", JWKSURI: "https://[::1"}}, wantErrs: []string{"rules[0].JWKSURI: is not a valid url"}},
		{name: "remote jwks without key sets", rules: []Rule{{Issuer: "b", JWKSURI: "https://idp.example/jwks"}}, noKeys: true, wantErrs: []string{"rules[0].JWKSURI: a remote JWKS needs a KeySets"}},
		{name: "inline jwks not json", rules: []Rule{{Issuer: "a", JWKS: "{"}}, wantErrs: []string{"rules[0].JWKS: jwks: json"}},
		{name: "inline jwks without keys", rules: []Rule{{Issuer: "a", JWKS: `{"keys":[]}`}}, wantErrs: []string{"rules[0].JWKS: jwks: no keys"}},
		{name: "inline jwks with a bad key", rules: []Rule{{Issuer: "a", JWKS: `{"keys":[{"kty":"RSA","n":"!!"}]}`}}, wantErrs: []string{"rules[0].JWKS: jwks: key 0:"}},
		{name: "inline jwks with only an hmac key", rules: []Rule{{Issuer: "a", JWKS: `{"keys":[{"kty":"oct","k":"c2VjcmV0"}]}`}}, wantErrs: []string{"HMAC is never accepted"}},
		{name: "inline jwks with a private key", rules: []Rule{{Issuer: "a", JWKS: jwksJSON(t, privateJWK)}}, wantErrs: []string{"private key material"}},
		{name: "inline jwks with a weak rsa key", rules: []Rule{{Issuer: "a", JWKS: jwksJSON(t, jwkOf(t, k.rsa1024, "w", nil))}}, wantErrs: []string{"1024 bits"}},
		{name: "empty audience", rules: []Rule{{Issuer: "a", JWKS: jwks, Audiences: []string{"x", ""}}}, wantErrs: []string{"rules[0].Audiences[1]: is empty"}},
		{name: "bad header name", rules: []Rule{{Issuer: "a", JWKS: jwks, FromHeaders: []HeaderLocation{{Name: "x token"}}}}, wantErrs: []string{`rules[0].FromHeaders[0].Name: "x token" is not a valid header name`}},
		{name: "prefix with newline", rules: []Rule{{Issuer: "a", JWKS: jwks, FromHeaders: []HeaderLocation{{Name: "x", Prefix: "a\n"}}}}, wantErrs: []string{"rules[0].FromHeaders[0].Prefix: has a control character"}},
		{name: "header listed twice", rules: []Rule{{Issuer: "a", JWKS: jwks, FromHeaders: []HeaderLocation{{Name: "x-t"}, {Name: "X-T"}}}}, wantErrs: []string{"rules[0].FromHeaders[1]: X-T with prefix"}},
		{name: "empty param", rules: []Rule{{Issuer: "a", JWKS: jwks, FromParams: []string{""}}}, wantErrs: []string{"rules[0].FromParams[0]: is empty"}},
		{name: "param listed twice", rules: []Rule{{Issuer: "a", JWKS: jwks, FromParams: []string{"t", "t"}}}, wantErrs: []string{`rules[0].FromParams[1]: "t" is listed twice`}},
		{name: "reserved output header", rules: []Rule{{Issuer: "a", JWKS: jwks, OutputPayloadToHeader: "host"}}, wantErrs: []string{"rules[0].OutputPayloadToHeader: Host is reserved"}},
		{name: "output header written twice", rules: []Rule{{Issuer: "a", JWKS: jwks, OutputPayloadToHeader: "x-p", OutputClaimToHeaders: []ClaimToHeader{{Header: "X-P", Claim: "sub"}}}}, wantErrs: []string{"rules[0].OutputClaimToHeaders[0].Header: X-P is written twice"}},
		{name: "empty claim", rules: []Rule{{Issuer: "a", JWKS: jwks, OutputClaimToHeaders: []ClaimToHeader{{Header: "X-P"}}}}, wantErrs: []string{"rules[0].OutputClaimToHeaders[0].Claim: is empty"}},
		{name: "output header is a token header", rules: []Rule{ok("a"), {Issuer: "b", JWKS: jwks, OutputPayloadToHeader: "authorization"}}, wantErrs: []string{"rules[1]: output header Authorization is a header tokens are read from (rules[0])"}},
		{
			name:     "every problem is reported",
			rules:    []Rule{{}, {Issuer: "b", JWKSURI: "ftp://x"}},
			wantErrs: []string{"rules[0].Issuer", "rules[0].JWKSURI", "rules[1].JWKSURI"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var keys *KeySets
			if !tt.noKeys {
				keys = NewKeySets(KeySetsConfig{})
			}
			a, err := NewAuthenticator(tt.rules, keys, nil)
			if len(tt.wantErrs) == 0 {
				if err != nil {
					t.Fatalf("got error %v, want none", err)
				}
				if a == nil {
					t.Fatal("got a nil Authenticator")
				}
				return
			}
			if err == nil {
				t.Fatalf("got no error, want %q", tt.wantErrs)
			}
			for _, want := range tt.wantErrs {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("got error %q, want it to contain %q", err, want)
				}
			}
		})
	}
}

func TestJWKSURIs(t *testing.T) {
	k := tk(t)
	a, err := NewAuthenticator([]Rule{
		{Issuer: "a", JWKSURI: "https://idp.example/jwks"},
		{Issuer: "b", JWKS: jwksJSON(t, jwkOf(t, k.ed, "", nil))},
		{Issuer: "c", JWKSURI: "https://idp.example/jwks"},
		{Issuer: "d", JWKSURI: "http://other.example/keys"},
	}, NewKeySets(KeySetsConfig{}), nil)
	if err != nil {
		t.Fatal(err)
	}
	got := strings.Join(a.JWKSURIs(), " ")
	if want := "https://idp.example/jwks http://other.example/keys"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

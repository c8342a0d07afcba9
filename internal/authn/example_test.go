package authn_test

import (
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"time"

	"github.com/trustmesh/trustmesh/internal/authn"
)

// An issuer's key and a token it signed (an Ed25519 key from a fixed seed,
// for the example only).
func exampleIssuer() (jwks string, sign func(claims string) string) {
	priv := ed25519.NewKeyFromSeed(make([]byte, ed25519.SeedSize))
	enc := base64.RawURLEncoding.EncodeToString
	jwks = fmt.Sprintf(`{"keys":[{"kty":"OKP","crv":"Ed25519","kid":"k1","x":%q}]}`, enc(priv.Public().(ed25519.PublicKey)))
	sign = func(claims string) string {
		input := enc([]byte(`{"alg":"EdDSA","kid":"k1"}`)) + "." + enc([]byte(claims))
		return input + "." + enc(ed25519.Sign(priv, []byte(input)))
	}
	return jwks, sign
}

func ExampleAuthenticator_Authenticate() {
	jwks, sign := exampleIssuer()
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	a, err := authn.NewAuthenticator([]authn.Rule{{
		Issuer:               "https://idp.example",
		Audiences:            []string{"orders"},
		JWKS:                 jwks,
		OutputClaimToHeaders: []authn.ClaimToHeader{{Header: "X-User", Claim: "sub"}},
	}}, nil, func() time.Time { return now })
	if err != nil {
		fmt.Println(err)
		return
	}

	tok := sign(fmt.Sprintf(`{"iss":"https://idp.example","sub":"alice","aud":"orders","exp":%d}`, now.Add(time.Hour).Unix()))
	r := httptest.NewRequest(http.MethodGet, "/orders", nil)
	r.Header.Set("Authorization", "Bearer "+tok)
	r.Header.Set("X-User", "mallory") // forged: always removed
	res, err := a.Authenticate(r)
	fmt.Println(res.Principal, err)
	fmt.Printf("Authorization=%q X-User=%q\n", r.Header.Get("Authorization"), r.Header.Get("X-User"))

	expired := sign(fmt.Sprintf(`{"iss":"https://idp.example","sub":"alice","aud":"orders","exp":%d}`, now.Add(-time.Hour).Unix()))
	r = httptest.NewRequest(http.MethodGet, "/orders?access_token="+expired, nil)
	_, err = a.Authenticate(r)
	var e *authn.Error
	if errors.As(err, &e) {
		fmt.Println(e.Reason)
		fmt.Println("401", e.Error())
		fmt.Println("WWW-Authenticate:", e.Challenge())
	}

	res, err = a.Authenticate(httptest.NewRequest(http.MethodGet, "/orders", nil))
	fmt.Println(res.Authenticated(), err)
	// Output:
	// https://idp.example/alice <nil>
	// Authorization="" X-User="alice"
	// expired
	// 401 invalid token: token has expired
	// WWW-Authenticate: Bearer error="invalid_token", error_description="token has expired"
	// false <nil>
}

func ExampleNewAuthenticator_errors() {
	_, err := authn.NewAuthenticator([]authn.Rule{
		{Issuer: "https://a.example", JWKSURI: "ftp://a.example/jwks"},
		{Issuer: "https://a.example", JWKS: `{"keys":[{"kty":"oct","k":"c2VjcmV0"}]}`},
	}, authn.NewKeySets(authn.KeySetsConfig{}), nil)
	fmt.Println(err)
	// Output:
	// rules[0].JWKSURI: scheme "ftp" is not http or https
	// rules[1].Issuer: "https://a.example" is also the issuer of rules[0]; an issuer may have one rule only
	// rules[1].JWKS: jwks: no usable signing key (key 0 (kid ""): symmetric key: HMAC is never accepted)
}

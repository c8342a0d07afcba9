package authn

import (
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

const (
	issA = "https://a.example"
	issB = "https://b.example"
	issD = "https://d.example"
)

// testRules: A reads the default locations and requires audience
// "orders"; B reads only header X-B-Token (no prefix) and accepts any
// audience; D has an EC key only and reads the custom header
// "X-D: Token <jwt>".
func testRules(t *testing.T) []Rule {
	t.Helper()
	k := tk(t)
	return []Rule{
		{
			Issuer:    issA,
			Audiences: []string{"orders", "payments"},
			JWKS: jwksJSON(t,
				jwkOf(t, k.rsaA, "a-rsa", nil),
				jwkOf(t, k.ec256, "a-ec", nil),
				jwkOf(t, k.ed, "a-ed", nil)),
			OutputPayloadToHeader: "X-Jwt-Payload",
			OutputClaimToHeaders: []ClaimToHeader{
				{Header: "X-Sub", Claim: "sub"},
				{Header: "X-Level", Claim: "level"},
				{Header: "X-Admin", Claim: "admin"},
				{Header: "X-Team", Claim: "org.team"},
				{Header: "X-Groups", Claim: "groups"},
				{Header: "X-Evil", Claim: "evil"},
			},
		},
		{
			Issuer:      issB,
			JWKS:        jwksJSON(t, jwkOf(t, k.rsaB, "b-rsa", nil)),
			FromHeaders: []HeaderLocation{{Name: "x-b-token"}},
		},
		{
			Issuer:               issD,
			JWKS:                 jwksJSON(t, jwkOf(t, k.ec256, "d-ec", nil)),
			FromHeaders:          []HeaderLocation{{Name: "X-D", Prefix: "Token "}},
			ForwardOriginalToken: true,
		},
	}
}

func newTestAuthenticator(t *testing.T) *Authenticator {
	t.Helper()
	a, err := NewAuthenticator(testRules(t), nil, clockAt(fixedNow))
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func TestAuthenticate(t *testing.T) {
	k := tk(t)
	a := newTestAuthenticator(t)
	valid := mint(t, "RS256", k.rsaA, "a-rsa", claimsFor(issA))
	now := fixedNow.Unix()

	rsaPubDER, err := x509.MarshalPKIXPublicKey(&k.rsaA.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	rsaPubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: rsaPubDER})
	parts := strings.Split(valid, ".")
	flipSig := func(tok string) string {
		p := strings.Split(tok, ".")
		sig, _ := base64.RawURLEncoding.DecodeString(p[2])
		sig[0] ^= 1
		return p[0] + "." + p[1] + "." + b64u(sig)
	}
	tamperedPayload := parts[0] + "." + b64u(mustJSON(t, with(claimsFor(issA), "sub", "admin"))) + "." + parts[2]

	tests := []struct {
		name          string
		req           *http.Request
		wantReason    Reason
		wantPrincipal string
	}{
		// Valid tokens, one per algorithm family and more.
		{name: "rs256", req: request(t, "/", bearer(valid)...), wantPrincipal: issA + "/user-1"},
		{name: "rs512", req: request(t, "/", bearer(mint(t, "RS512", k.rsaA, "a-rsa", claimsFor(issA)))...), wantPrincipal: issA + "/user-1"},
		{name: "ps256", req: request(t, "/", bearer(mint(t, "PS256", k.rsaA, "a-rsa", claimsFor(issA)))...), wantPrincipal: issA + "/user-1"},
		{name: "es256", req: request(t, "/", bearer(mint(t, "ES256", k.ec256, "a-ec", claimsFor(issA)))...), wantPrincipal: issA + "/user-1"},
		{name: "eddsa", req: request(t, "/", bearer(mint(t, "EdDSA", k.ed, "a-ed", claimsFor(issA)))...), wantPrincipal: issA + "/user-1"},
		{name: "no kid tries each key of the type", req: request(t, "/", bearer(mint(t, "ES256", k.ec256, "", claimsFor(issA)))...), wantPrincipal: issA + "/user-1"},
		{name: "no exp is accepted", req: request(t, "/", bearer(mint(t, "RS256", k.rsaA, "a-rsa", with(claimsFor(issA), "exp", nil)))...), wantPrincipal: issA + "/user-1"},
		{name: "audience list containing an accepted one", req: request(t, "/", bearer(mint(t, "RS256", k.rsaA, "a-rsa", with(claimsFor(issA), "aud", []string{"other", "payments"})))...), wantPrincipal: issA + "/user-1"},
		{name: "rule without audiences accepts any", req: request(t, "/", "X-B-Token", mint(t, "RS256", k.rsaB, "b-rsa", with(claimsFor(issB), "aud", "anything"))), wantPrincipal: issB + "/user-1"},
		{name: "exp within the clock skew", req: request(t, "/", bearer(mint(t, "RS256", k.rsaA, "a-rsa", with(claimsFor(issA), "exp", now-59)))...), wantPrincipal: issA + "/user-1"},
		{name: "nbf within the clock skew", req: request(t, "/", bearer(mint(t, "RS256", k.rsaA, "a-rsa", with(claimsFor(issA), "nbf", now+59)))...), wantPrincipal: issA + "/user-1"},
		{name: "fractional exp", req: request(t, "/", bearer(mint(t, "RS256", k.rsaA, "a-rsa", with(claimsFor(issA), "exp", float64(now)+0.5)))...), wantPrincipal: issA + "/user-1"},
		{name: "token in query param", req: request(t, "/p?x=1&access_token="+valid), wantPrincipal: issA + "/user-1"},
		{name: "custom header with prefix", req: request(t, "/", "X-D", "Token "+mint(t, "ES256", k.ec256, "d-ec", claimsFor(issD))), wantPrincipal: issD + "/user-1"},
		{name: "bearer prefix is case-insensitive", req: request(t, "/", "Authorization", "bearer "+valid), wantPrincipal: issA + "/user-1"},
		{name: "token with surrounding whitespace", req: request(t, "/", "Authorization", "Bearer   "+valid+" \t"), wantPrincipal: issA + "/user-1"},

		// No token: not an error.
		{name: "no token", req: request(t, "/")},
		{name: "basic auth is not a bearer token", req: request(t, "/", "Authorization", "Basic dXNlcjpwYXNz")},
		{name: "other query params only", req: request(t, "/?token=x&access_tokens=y")},

		// Algorithm attacks.
		{name: "alg none with empty signature", req: request(t, "/", bearer(sign(t, "none", nil, []byte(`{"alg":"none"}`), mustJSON(t, claimsFor(issA))))...), wantReason: ReasonAlgNotAllowed},
		{name: "alg none with a signature", req: request(t, "/", bearer(b64u([]byte(`{"alg":"none"}`))+"."+parts[1]+"."+parts[2])...), wantReason: ReasonAlgNotAllowed},
		{name: "alg None spelled differently", req: request(t, "/", bearer(sign(t, "none", nil, []byte(`{"alg":"None"}`), mustJSON(t, claimsFor(issA))))...), wantReason: ReasonAlgNotAllowed},
		{name: "hs256 signed with the rsa public key pem", req: request(t, "/", bearer(mint(t, "HS256", rsaPubPEM, "a-rsa", claimsFor(issA)))...), wantReason: ReasonAlgNotAllowed},
		{name: "hs256 signed with the rsa public key der", req: request(t, "/", bearer(mint(t, "HS256", rsaPubDER, "", claimsFor(issA)))...), wantReason: ReasonAlgNotAllowed},
		{name: "hs512 signed with the rsa modulus", req: request(t, "/", bearer(mint(t, "HS512", k.rsaA.N.Bytes(), "a-rsa", claimsFor(issA)))...), wantReason: ReasonAlgNotAllowed},
		{name: "rs256 naming an ec key", req: request(t, "/", "X-D", "Token "+mint(t, "RS256", k.rsaA, "d-ec", claimsFor(issD))), wantReason: ReasonAlgNotAllowed},
		{name: "rs256 without kid when the issuer has ec keys only", req: request(t, "/", "X-D", "Token "+mint(t, "RS256", k.rsaA, "", claimsFor(issD))), wantReason: ReasonUnknownKey},
		{name: "es384 naming a p-256 key", req: request(t, "/", bearer(mint(t, "ES384", k.ec384, "a-ec", claimsFor(issA)))...), wantReason: ReasonAlgNotAllowed},
		{name: "es256k is not allowed", req: request(t, "/", bearer(sign(t, "none", nil, []byte(`{"alg":"ES256K"}`), mustJSON(t, claimsFor(issA)))+"AAAA")...), wantReason: ReasonAlgNotAllowed},

		// Signature attacks.
		{name: "tampered payload", req: request(t, "/", bearer(tamperedPayload)...), wantReason: ReasonBadSignature},
		{name: "tampered signature", req: request(t, "/", bearer(flipSig(valid))...), wantReason: ReasonBadSignature},
		{name: "tampered eddsa signature", req: request(t, "/", bearer(flipSig(mint(t, "EdDSA", k.ed, "a-ed", claimsFor(issA))))...), wantReason: ReasonBadSignature},
		{name: "empty signature", req: request(t, "/", bearer(parts[0]+"."+parts[1]+".")...), wantReason: ReasonBadSignature},
		{name: "issuer matched but signed by another issuer's key", req: request(t, "/", bearer(mint(t, "RS256", k.rsaB, "", claimsFor(issA)))...), wantReason: ReasonBadSignature},
		{name: "issuer matched but kid of another issuer's key", req: request(t, "/", bearer(mint(t, "RS256", k.rsaB, "b-rsa", claimsFor(issA)))...), wantReason: ReasonUnknownKey},
		{name: "kid unknown", req: request(t, "/", bearer(mint(t, "RS256", k.rsaA, "nope", claimsFor(issA)))...), wantReason: ReasonUnknownKey},

		// Claims.
		{name: "expired", req: request(t, "/", bearer(mint(t, "RS256", k.rsaA, "a-rsa", with(claimsFor(issA), "exp", now-61)))...), wantReason: ReasonExpired},
		{name: "nbf in the future", req: request(t, "/", bearer(mint(t, "RS256", k.rsaA, "a-rsa", with(claimsFor(issA), "nbf", now+61)))...), wantReason: ReasonNotYetValid},
		{name: "iat in the future", req: request(t, "/", bearer(mint(t, "RS256", k.rsaA, "a-rsa", with(claimsFor(issA), "iat", now+3600)))...), wantReason: ReasonNotYetValid},
		{name: "wrong issuer", req: request(t, "/", bearer(mint(t, "RS256", k.rsaA, "a-rsa", with(claimsFor(issA), "iss", "https://evil.example")))...), wantReason: ReasonUnknownIssuer},
		{name: "no issuer", req: request(t, "/", bearer(mint(t, "RS256", k.rsaA, "a-rsa", with(claimsFor(issA), "iss", nil)))...), wantReason: ReasonUnknownIssuer},
		{name: "issuer not accepted at this location", req: request(t, "/", bearer(mint(t, "RS256", k.rsaB, "b-rsa", claimsFor(issB)))...), wantReason: ReasonUnknownIssuer},
		{name: "wrong audience", req: request(t, "/", bearer(mint(t, "RS256", k.rsaA, "a-rsa", with(claimsFor(issA), "aud", "billing")))...), wantReason: ReasonWrongAudience},
		{name: "audience list without an accepted one", req: request(t, "/", bearer(mint(t, "RS256", k.rsaA, "a-rsa", with(claimsFor(issA), "aud", []string{"billing", "x"})))...), wantReason: ReasonWrongAudience},
		{name: "no audience when the rule requires one", req: request(t, "/", bearer(mint(t, "RS256", k.rsaA, "a-rsa", with(claimsFor(issA), "aud", nil)))...), wantReason: ReasonWrongAudience},
		{name: "exp is a string", req: request(t, "/", bearer(mint(t, "RS256", k.rsaA, "a-rsa", with(claimsFor(issA), "exp", "tomorrow")))...), wantReason: ReasonMalformed},
		{name: "aud is a number", req: request(t, "/", bearer(mint(t, "RS256", k.rsaA, "a-rsa", with(claimsFor(issA), "aud", 7)))...), wantReason: ReasonMalformed},
		{name: "iss is a list", req: request(t, "/", bearer(mint(t, "RS256", k.rsaA, "a-rsa", with(claimsFor(issA), "iss", []string{issA})))...), wantReason: ReasonMalformed},

		// Encoding.
		{name: "two segments", req: request(t, "/", bearer(parts[0]+"."+parts[1])...), wantReason: ReasonMalformed},
		{name: "five segments (jwe)", req: request(t, "/", bearer(valid+".a.b")...), wantReason: ReasonMalformed},
		{name: "padded base64", req: request(t, "/", bearer(parts[0]+"=."+parts[1]+"."+parts[2])...), wantReason: ReasonMalformed},
		{name: "standard base64 alphabet", req: request(t, "/", bearer(strings.NewReplacer("-", "+", "_", "/").Replace(valid))...), wantReason: ReasonMalformed},
		{name: "whitespace inside the token", req: request(t, "/", bearer(parts[0]+". "+parts[1]+"."+parts[2])...), wantReason: ReasonMalformed},
		{name: "empty bearer token", req: request(t, "/", "Authorization", "Bearer "), wantReason: ReasonMalformed},
		{name: "json serialization", req: request(t, "/", bearer(`{"payload":"x","signatures":[]}`)...), wantReason: ReasonMalformed},
		{name: "duplicate iss in the payload", req: request(t, "/", bearer(sign(t, "RS256", k.rsaA, []byte(`{"alg":"RS256","kid":"a-rsa"}`), []byte(`{"iss":"https://evil.example","iss":"`+issA+`","sub":"x","aud":"orders"}`)))...), wantReason: ReasonMalformed},
		{name: "duplicate alg in the header", req: request(t, "/", bearer(sign(t, "RS256", k.rsaA, []byte(`{"alg":"HS256","alg":"RS256"}`), mustJSON(t, claimsFor(issA))))...), wantReason: ReasonMalformed},
		{name: "crit header", req: request(t, "/", bearer(sign(t, "RS256", k.rsaA, []byte(`{"alg":"RS256","crit":["exp"],"exp":1}`), mustJSON(t, claimsFor(issA))))...), wantReason: ReasonMalformed},
		{name: "b64 header", req: request(t, "/", bearer(sign(t, "RS256", k.rsaA, []byte(`{"alg":"RS256","b64":false}`), mustJSON(t, claimsFor(issA))))...), wantReason: ReasonMalformed},
		{name: "invalid utf-8 in the payload", req: request(t, "/", bearer(sign(t, "RS256", k.rsaA, []byte(`{"alg":"RS256"}`), []byte("{\"iss\":\""+issA+"\",\"sub\":\"a\xffb\",\"aud\":\"orders\"}")))...), wantReason: ReasonMalformed},
		{name: "lone surrogate in the payload", req: request(t, "/", bearer(sign(t, "RS256", k.rsaA, []byte(`{"alg":"RS256"}`), []byte(`{"iss":"`+issA+`","sub":"a\ud800b","aud":"orders"}`)))...), wantReason: ReasonMalformed},
		{name: "payload is not an object", req: request(t, "/", bearer(sign(t, "RS256", k.rsaA, []byte(`{"alg":"RS256"}`), []byte(`["x"]`)))...), wantReason: ReasonMalformed},
		{name: "data after the payload object", req: request(t, "/", bearer(sign(t, "RS256", k.rsaA, []byte(`{"alg":"RS256"}`), []byte(`{"iss":"`+issA+`"} {}`)))...), wantReason: ReasonMalformed},
		{name: "token too large", req: request(t, "/", bearer(strings.Repeat("a", maxTokenBytes)+".b.c")...), wantReason: ReasonMalformed},
		{name: "query param badly escaped", req: request(t, "/?access_token=%zz"), wantReason: ReasonMalformed},

		// More than one token.
		{name: "two authorization headers", req: request(t, "/", "Authorization", "Bearer "+valid, "Authorization", "Bearer "+valid), wantReason: ReasonMultipleTokens},
		{name: "header and query param", req: request(t, "/?access_token="+valid, bearer(valid)...), wantReason: ReasonMultipleTokens},
		{name: "two query params", req: request(t, "/?access_token="+valid+"&access_token="+valid), wantReason: ReasonMultipleTokens},
		{name: "query param after a semicolon", req: request(t, "/?a=1;access_token="+valid, bearer(valid)...), wantReason: ReasonMultipleTokens},
		{name: "tokens of two issuers", req: request(t, "/", "X-B-Token", mint(t, "RS256", k.rsaB, "b-rsa", claimsFor(issB)), "Authorization", "Bearer "+valid), wantReason: ReasonMultipleTokens},
		{name: "non-canonical header key", req: func() *http.Request {
			r := request(t, "/", bearer(valid)...)
			r.Header["authorization"] = []string{"Bearer " + valid}
			return r
		}(), wantReason: ReasonMultipleTokens},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := a.Authenticate(tt.req)
			if got := reasonOf(t, err); got != tt.wantReason {
				t.Fatalf("got reason %q (%v), want %q", got, err, tt.wantReason)
			}
			if got := res.Principal; got != tt.wantPrincipal {
				t.Errorf("got principal %q, want %q", got, tt.wantPrincipal)
			}
			if got, want := res.Authenticated(), tt.wantPrincipal != ""; got != want {
				t.Errorf("got Authenticated() %v, want %v", got, want)
			}
			if err != nil {
				if res.Claims != nil {
					t.Errorf("got claims %v with an error, want none", res.Claims)
				}
				var e *Error
				if errors.As(err, &e) && (strings.Contains(e.Error(), parts[1]) || strings.Contains(e.Challenge(), parts[1])) {
					t.Errorf("error text %q contains token contents", e.Error())
				}
				checkChallenge(t, e.Challenge())
			}
		})
	}
}

func TestAuthenticateResult(t *testing.T) {
	k := tk(t)
	a := newTestAuthenticator(t)
	claims := with(claimsFor(issA), "aud", []string{"orders", "x"}, "azp", "web-client")
	r := request(t, "/", bearer(mint(t, "ES256", k.ec256, "a-ec", claims))...)
	res, err := a.Authenticate(r)
	if err != nil {
		t.Fatal(err)
	}
	want := Result{
		Principal: issA + "/user-1",
		Issuer:    issA,
		Subject:   "user-1",
		Audiences: []string{"orders", "x"},
		Presenter: "web-client",
		Claims: map[string]any{
			"iss": issA, "sub": "user-1", "aud": []any{"orders", "x"}, "azp": "web-client",
			"iat": json.Number(strconv.FormatInt(fixedNow.Add(-time.Minute).Unix(), 10)),
			"exp": json.Number(strconv.FormatInt(fixedNow.Add(time.Hour).Unix(), 10)),
		},
	}
	if diff := cmp.Diff(want, res); diff != "" {
		t.Errorf("result (-want +got):\n%s", diff)
	}
}

func TestAuthenticateRewritesRequest(t *testing.T) {
	k := tk(t)
	a := newTestAuthenticator(t)
	claims := with(claimsFor(issA),
		"level", 3, "admin", true, "org", map[string]any{"team": "payments"},
		"groups", []string{"a", "b"}, "evil", "x\r\nX-Injected: 1")
	tokA := mint(t, "RS256", k.rsaA, "a-rsa", claims)
	tokD := mint(t, "ES256", k.ec256, "d-ec", claimsFor(issD))
	forged := []string{"X-Jwt-Payload", "forged", "X-Sub", "forged", "x-sub", "forged2", "X-Groups", "forged", "X-Evil", "forged"}

	tests := []struct {
		name           string
		req            *http.Request
		wantHeader     http.Header // exact headers after Authenticate
		wantRawQuery   string
		wantRequestURI string
	}{
		{
			name: "header token removed and outputs set",
			req:  request(t, "/p", append(bearer(tokA), append([]string{"Authorization", "Basic abc", "Accept", "text/plain"}, forged...)...)...),
			wantHeader: http.Header{
				"Authorization": {"Basic abc"},
				"Accept":        {"text/plain"},
				"X-Jwt-Payload": {strings.Split(tokA, ".")[1]},
				"X-Sub":         {"user-1"},
				"X-Level":       {"3"},
				"X-Admin":       {"true"},
				"X-Team":        {"payments"},
			},
			wantRawQuery:   "",
			wantRequestURI: "/p",
		},
		{
			name: "query token removed from RawQuery and RequestURI",
			req:  request(t, "/p?a=1&access_token="+tokA+"&b=2;c=3"),
			wantHeader: http.Header{
				"X-Jwt-Payload": {strings.Split(tokA, ".")[1]},
				"X-Sub":         {"user-1"},
				"X-Level":       {"3"},
				"X-Admin":       {"true"},
				"X-Team":        {"payments"},
			},
			wantRawQuery:   "a=1&b=2;c=3",
			wantRequestURI: "/p?a=1&b=2;c=3",
		},
		{
			name:           "query token alone leaves no query",
			req:            request(t, "/p?access_token="+tokA),
			wantHeader:     http.Header{"X-Jwt-Payload": {strings.Split(tokA, ".")[1]}, "X-Sub": {"user-1"}, "X-Level": {"3"}, "X-Admin": {"true"}, "X-Team": {"payments"}},
			wantRawQuery:   "",
			wantRequestURI: "/p",
		},
		{
			name:           "query token last",
			req:            request(t, "/p?a=1&access_token="+tokA),
			wantHeader:     http.Header{"X-Jwt-Payload": {strings.Split(tokA, ".")[1]}, "X-Sub": {"user-1"}, "X-Level": {"3"}, "X-Admin": {"true"}, "X-Team": {"payments"}},
			wantRawQuery:   "a=1",
			wantRequestURI: "/p?a=1",
		},
		{
			name:           "forwarded token kept",
			req:            request(t, "/p?q=1", "X-D", "Token "+tokD),
			wantHeader:     http.Header{"X-D": {"Token " + tokD}},
			wantRawQuery:   "q=1",
			wantRequestURI: "/p?q=1",
		},
		{
			name:           "forged outputs stripped without a token",
			req:            request(t, "/p", forged...),
			wantHeader:     http.Header{},
			wantRequestURI: "/p",
		},
		{
			name:           "forged outputs stripped for another issuer's token",
			req:            request(t, "/p", append([]string{"X-B-Token", mint(t, "RS256", k.rsaB, "b-rsa", claimsFor(issB))}, forged...)...),
			wantHeader:     http.Header{},
			wantRequestURI: "/p",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := a.Authenticate(tt.req); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.wantHeader, tt.req.Header); diff != "" {
				t.Errorf("headers (-want +got):\n%s", diff)
			}
			if got := tt.req.URL.RawQuery; got != tt.wantRawQuery {
				t.Errorf("got RawQuery %q, want %q", got, tt.wantRawQuery)
			}
			if got := tt.req.RequestURI; got != tt.wantRequestURI {
				t.Errorf("got RequestURI %q, want %q", got, tt.wantRequestURI)
			}
		})
	}
}

func TestAuthenticatePayloadHeaderDecodes(t *testing.T) {
	k := tk(t)
	a := newTestAuthenticator(t)
	r := request(t, "/", bearer(mint(t, "RS256", k.rsaA, "a-rsa", claimsFor(issA)))...)
	if _, err := a.Authenticate(r); err != nil {
		t.Fatal(err)
	}
	raw, err := base64.RawURLEncoding.DecodeString(r.Header.Get("X-Jwt-Payload"))
	if err != nil {
		t.Fatalf("payload header is not base64url: %v", err)
	}
	var got map[string]any
	if err := json.Unmarshal(raw, &got); err != nil {
		t.Fatal(err)
	}
	if got["iss"] != issA {
		t.Errorf("got iss %v in the payload header, want %q", got["iss"], issA)
	}
}

func TestAuthenticateClockSkewAndClock(t *testing.T) {
	k := tk(t)
	tok := mint(t, "RS256", k.rsaA, "a-rsa", with(claimsFor(issA), "nbf", fixedNow.Unix(), "exp", fixedNow.Add(10*time.Minute).Unix()))
	tests := []struct {
		name string
		now  time.Time
		want Reason
	}{
		{"before nbf minus skew", fixedNow.Add(-61 * time.Second), ReasonNotYetValid},
		{"before nbf within skew", fixedNow.Add(-59 * time.Second), ""},
		{"valid", fixedNow.Add(5 * time.Minute), ""},
		{"after exp within skew", fixedNow.Add(10*time.Minute + 59*time.Second), ""},
		{"after exp plus skew", fixedNow.Add(10*time.Minute + 61*time.Second), ReasonExpired},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, err := NewAuthenticator(testRules(t), nil, clockAt(tt.now))
			if err != nil {
				t.Fatal(err)
			}
			_, err = a.Authenticate(request(t, "/", bearer(tok)...))
			if got := reasonOf(t, err); got != tt.want {
				t.Errorf("got reason %q, want %q", got, tt.want)
			}
		})
	}
}

func TestErrorIsSafeForClients(t *testing.T) {
	k := tk(t)
	a := newTestAuthenticator(t)
	tok := mint(t, "RS256", k.rsaA, "a-rsa", with(claimsFor(issA), "exp", fixedNow.Add(-time.Hour).Unix()))
	_, err := a.Authenticate(request(t, "/", bearer(tok)...))
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("got %v, want an *Error", err)
	}
	if got, want := e.Error(), "invalid token: token has expired"; got != want {
		t.Errorf("got Error() %q, want %q", got, want)
	}
	if got, want := e.Challenge(), `Bearer error="invalid_token", error_description="token has expired"`; got != want {
		t.Errorf("got Challenge() %q, want %q", got, want)
	}
	if got, want := e.Issuer, issA; got != want {
		t.Errorf("got Issuer %q, want %q", got, want)
	}
	for _, seg := range strings.Split(tok, ".") {
		if strings.Contains(e.Error(), seg) || strings.Contains(e.Challenge(), seg) {
			t.Errorf("error text contains a token segment")
		}
	}
}

func TestNoRulesNeverAuthenticates(t *testing.T) {
	k := tk(t)
	a, err := NewAuthenticator(nil, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	res, err := a.Authenticate(request(t, "/", bearer(mint(t, "RS256", k.rsaA, "a-rsa", claimsFor(issA)))...))
	if err != nil || res.Authenticated() {
		t.Errorf("got (%+v, %v), want no identity and no error", res, err)
	}
}

// A rule that names its locations reads only those: not the defaults.
func TestCustomLocationsReplaceDefaults(t *testing.T) {
	k := tk(t)
	a, err := NewAuthenticator([]Rule{{
		Issuer:     issA,
		JWKS:       jwksJSON(t, jwkOf(t, k.rsaA, "a-rsa", nil)),
		FromParams: []string{"token"},
	}}, nil, clockAt(fixedNow))
	if err != nil {
		t.Fatal(err)
	}
	tok := mint(t, "RS256", k.rsaA, "a-rsa", claimsFor(issA))
	tests := []struct {
		name          string
		req           *http.Request
		wantPrincipal string
		wantRawQuery  string
	}{
		{name: "custom param", req: request(t, "/?token="+tok+"&x=1"), wantPrincipal: issA + "/user-1", wantRawQuery: "x=1"},
		{name: "escaped param name", req: request(t, "/?x=1&t%6Fken="+tok), wantPrincipal: issA + "/user-1", wantRawQuery: "x=1"},
		{name: "default header not read", req: request(t, "/", bearer(tok)...)},
		{name: "default param not read", req: request(t, "/?access_token="+tok), wantRawQuery: "access_token=" + tok},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := a.Authenticate(tt.req)
			if err != nil {
				t.Fatal(err)
			}
			if res.Principal != tt.wantPrincipal {
				t.Errorf("got principal %q, want %q", res.Principal, tt.wantPrincipal)
			}
			if got := tt.req.URL.RawQuery; got != tt.wantRawQuery {
				t.Errorf("got RawQuery %q, want %q", got, tt.wantRawQuery)
			}
		})
	}
}

// checkChallenge checks a WWW-Authenticate value against RFC 6750's
// grammar for error_description (%x20-21 / %x23-5B / %x5D-7E).
func checkChallenge(t *testing.T, c string) {
	t.Helper()
	const prefix = `Bearer error="invalid_token", error_description="`
	if !strings.HasPrefix(c, prefix) || !strings.HasSuffix(c, `"`) {
		t.Fatalf("got challenge %q, want %s...\"", c, prefix)
	}
	for _, b := range []byte(c[len(prefix) : len(c)-1]) {
		if b < 0x20 || b == '"' || b == '\\' || b > 0x7e {
			t.Errorf("challenge %q has %q, not allowed in error_description", c, b)
		}
	}
}

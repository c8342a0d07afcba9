package authn

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/lestrrat-go/jwx/v3/jws/jwsbb"
)

// maxTokenBytes bounds a token before any decoding (the proxy's header
// limit is 64 KiB too).
const maxTokenBytes = 64 << 10

// clockSkew is the leeway on exp, nbf and iat, as Envoy's default.
const clockSkew = 60 * time.Second

// b64 is the only encoding a segment may use: base64url without padding,
// canonical (Strict: no stray low bits). The alphabet is checked before
// decoding, since the decoder skips CR and LF even when strict.
var b64 = base64.RawURLEncoding.Strict()

// token is a JWS compact serialization split and decoded, not yet verified.
type token struct {
	signingInput string // header "." payload, as received
	payloadB64   string
	signature    []byte
	alg, kid     string
	claims       map[string]any // the payload, unverified until verify succeeds
}

// parseToken splits and decodes a compact JWS. It refuses anything a
// verifier could read two ways: a JWE or JSON serialization, non-canonical
// base64url, JSON with duplicate members or invalid UTF-8, "crit" (no
// extension is understood) and "b64" (RFC 7797 unencoded payloads).
func parseToken(s string) (*token, *Error) {
	if len(s) > maxTokenBytes {
		return nil, failure(ReasonMalformed, "token is too large", nil)
	}
	parts := strings.Split(s, ".")
	if len(parts) != 3 {
		return nil, failure(ReasonMalformed, "token is not a signed jwt (header.payload.signature)", nil)
	}
	var dec [3][]byte
	for i, p := range parts {
		// An empty signature passes here so that {"alg":"none"} is
		// refused for its algorithm; no allowed algorithm verifies it.
		if p == "" && i < 2 || !isBase64URL(p) {
			return nil, failure(ReasonMalformed, "token segment is not base64url", nil)
		}
		b, err := b64.DecodeString(p)
		if err != nil {
			return nil, failure(ReasonMalformed, "token segment is not canonical base64url", nil)
		}
		dec[i] = b
	}
	hdr, err := decodeObject(dec[0])
	if err != nil {
		return nil, failure(ReasonMalformed, "token header is not a valid json object", err)
	}
	t := &token{signingInput: parts[0] + "." + parts[1], payloadB64: parts[1], signature: dec[2]}
	alg, ok := hdr["alg"].(string)
	if !ok {
		return nil, failure(ReasonMalformed, `token header has no "alg" string`, nil)
	}
	t.alg = alg
	if v, present := hdr["kid"]; present {
		if t.kid, ok = v.(string); !ok {
			return nil, failure(ReasonMalformed, `token header "kid" is not a string`, nil)
		}
	}
	if _, present := hdr["crit"]; present {
		return nil, failure(ReasonMalformed, `token header "crit" is not supported`, nil)
	}
	if _, present := hdr["b64"]; present {
		return nil, failure(ReasonMalformed, `token header "b64" is not supported`, nil)
	}
	if t.claims, err = decodeObject(dec[1]); err != nil {
		return nil, failure(ReasonMalformed, "token payload is not a valid json object", err)
	}
	return t, nil
}

func isBase64URL(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < 'A' || c > 'Z') && (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '-' && c != '_' {
			return false
		}
	}
	return true
}

// verify checks t's signature with the keys of set, and only those. With a
// "kid", the keys having it are tried; without, every key that fits alg.
func (t *token) verify(set *keySet) *Error {
	var candidates []verifyKey
	if t.kid != "" {
		named := false
		for _, k := range set.keys {
			if k.kid != t.kid {
				continue
			}
			named = true
			if k.fits(t.alg) {
				candidates = append(candidates, k)
			}
		}
		if !named {
			return failure(ReasonUnknownKey, "no key of the issuer has the token's key id", nil)
		}
		if len(candidates) == 0 {
			return failure(ReasonAlgNotAllowed, "token algorithm does not match the key it names", nil)
		}
	} else {
		for _, k := range set.keys {
			if k.fits(t.alg) {
				candidates = append(candidates, k)
			}
		}
		if len(candidates) == 0 {
			return failure(ReasonUnknownKey, "the issuer has no key for the token's algorithm", nil)
		}
	}
	input := []byte(t.signingInput)
	var errs []error
	for _, k := range candidates {
		// jwsbb.Verify is jwx's primitive: the algorithm is ours, not
		// read from the header again, and no key comes from the token.
		err := jwsbb.Verify(k.pub, t.alg, input, t.signature)
		if err == nil {
			return nil
		}
		errs = append(errs, err)
	}
	return failure(ReasonBadSignature, "signature does not verify", errors.Join(errs...))
}

// claimsView is the registered claims, type-checked.
type claimsView struct {
	iss, sub, azp string
	aud           []string
	exp, nbf, iat *float64
}

func readClaims(c map[string]any) (claimsView, *Error) {
	var v claimsView
	var ok bool
	str := func(name string, dst *string) *Error {
		x, present := c[name]
		if !present {
			return nil
		}
		if *dst, ok = x.(string); !ok {
			return failure(ReasonMalformed, fmt.Sprintf("claim %q is not a string", name), nil)
		}
		return nil
	}
	for _, f := range []struct {
		name string
		dst  *string
	}{{"iss", &v.iss}, {"sub", &v.sub}, {"azp", &v.azp}} {
		if err := str(f.name, f.dst); err != nil {
			return v, err
		}
	}
	switch a := c["aud"].(type) {
	case nil:
		if _, present := c["aud"]; present {
			return v, failure(ReasonMalformed, `claim "aud" is not a string or a list of strings`, nil)
		}
	case string:
		v.aud = []string{a}
	case []any:
		v.aud = make([]string, 0, len(a))
		for _, e := range a {
			s, ok := e.(string)
			if !ok {
				return v, failure(ReasonMalformed, `claim "aud" is not a string or a list of strings`, nil)
			}
			v.aud = append(v.aud, s)
		}
	default:
		return v, failure(ReasonMalformed, `claim "aud" is not a string or a list of strings`, nil)
	}
	for _, d := range []struct {
		name string
		dst  **float64
	}{{"exp", &v.exp}, {"nbf", &v.nbf}, {"iat", &v.iat}} {
		name, dst := d.name, d.dst
		x, present := c[name]
		if !present {
			continue
		}
		n, ok := x.(json.Number)
		if !ok {
			return v, failure(ReasonMalformed, fmt.Sprintf("claim %q is not a number", name), nil)
		}
		f, err := strconv.ParseFloat(string(n), 64)
		if err != nil && !errors.Is(err, strconv.ErrRange) || math.IsNaN(f) {
			return v, failure(ReasonMalformed, fmt.Sprintf("claim %q is not a number", name), nil)
		}
		// Out of range parses as ±Inf, which compares correctly.
		*dst = &f
	}
	return v, nil
}

// checkTimes applies exp, nbf and iat with clockSkew. exp is optional
// (Istio's rule), but when present it is enforced.
func (v claimsView) checkTimes(now time.Time) *Error {
	t := float64(now.UnixNano()) / 1e9
	skew := clockSkew.Seconds()
	if v.exp != nil && t > *v.exp+skew {
		return failure(ReasonExpired, "token has expired", nil)
	}
	if v.nbf != nil && t+skew < *v.nbf {
		return failure(ReasonNotYetValid, "token is not valid yet", nil)
	}
	if v.iat != nil && t+skew < *v.iat {
		return failure(ReasonNotYetValid, "token is issued in the future", nil)
	}
	return nil
}

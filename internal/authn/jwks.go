package authn

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	"github.com/lestrrat-go/jwx/v3/jwk"
)

// Key limits. RSA keys below 2048 bits are factorable by a determined
// attacker; above 8192 bits each verification is a denial-of-service
// lever. maxKeys bounds the work of a token without "kid", which is tried
// against every key of its type.
const (
	minRSABits = 2048
	maxRSABits = 8192
	maxKeys    = 100
)

// Signature algorithms accepted in a token's "alg" header. Nothing else is
// ever verified: not "none", not HS* (a JWKS's public key used as an HMAC
// secret is the classic key-confusion forgery), not ES256K or Ed448.
const (
	algRS256 = "RS256"
	algRS384 = "RS384"
	algRS512 = "RS512"
	algPS256 = "PS256"
	algPS384 = "PS384"
	algPS512 = "PS512"
	algES256 = "ES256"
	algES384 = "ES384"
	algES512 = "ES512"
	algEdDSA = "EdDSA"
)

func allowedAlg(alg string) bool {
	switch alg {
	case algRS256, algRS384, algRS512, algPS256, algPS384, algPS512, algES256, algES384, algES512, algEdDSA:
		return true
	}
	return false
}

// keySet is the parsed, filtered public keys of one JWKS. Immutable.
type keySet struct {
	keys []verifyKey
	// skipped says why each unusable entry was left out, for the log.
	skipped []string
}

// verifyKey is one usable public key: *rsa.PublicKey, *ecdsa.PublicKey
// (P-256, P-384 or P-521) or ed25519.PublicKey.
type verifyKey struct {
	kid string
	alg string // the JWK's "alg", "" when it names none
	pub any
}

// fits reports whether k may verify a signature made with alg: the key's
// type, and for EC its curve, must be the one alg is defined for, and a
// key that names its own "alg" is used with that one only.
func (k verifyKey) fits(alg string) bool {
	if k.alg != "" && k.alg != alg {
		return false
	}
	switch pub := k.pub.(type) {
	case *rsa.PublicKey:
		switch alg {
		case algRS256, algRS384, algRS512, algPS256, algPS384, algPS512:
			return true
		}
	case *ecdsa.PublicKey:
		name := pub.Curve.Params().Name
		switch alg {
		case algES256:
			return name == "P-256"
		case algES384:
			return name == "P-384"
		case algES512:
			return name == "P-521"
		}
	case ed25519.PublicKey:
		return alg == algEdDSA
	}
	return false
}

// parseJWKS parses a JSON Web Key Set (RFC 7517 section 5): an object
// whose "keys" member is an array of JWKs. Entries that cannot verify a
// token we accept are left out and listed in skipped: symmetric ("oct")
// keys, keys of other types or curves, keys for encryption ("use" other
// than "sig", "key_ops" without "verify"), keys naming an "alg" we do not
// allow, RSA keys outside 2048..8192 bits, and keys carrying private
// material (a private key that was published is compromised). An entry
// that is not a valid JWK at all is an error when strict (inline JWKS in
// config: a typo must be loud) and skipped otherwise (a remote JWKS: one
// bad entry must not take the issuer's other keys down). A set with no
// usable key, or more than maxKeys, is an error either way.
func parseJWKS(data []byte, strict bool) (*keySet, error) {
	doc, err := decodeObject(data)
	if err != nil {
		return nil, fmt.Errorf("jwks: %w", err)
	}
	list, ok := doc["keys"].([]any)
	if !ok {
		return nil, errors.New(`jwks: no "keys" array`)
	}
	set := &keySet{}
	for i, entry := range list {
		k, skip, err := parseJWK(entry)
		switch {
		case err != nil && strict:
			return nil, fmt.Errorf("jwks: key %d: %w", i, err)
		case err != nil:
			set.skipped = append(set.skipped, fmt.Sprintf("key %d: %v", i, err))
		case skip != "":
			set.skipped = append(set.skipped, fmt.Sprintf("key %d (kid %q): %s", i, k.kid, skip))
		default:
			set.keys = append(set.keys, k)
		}
	}
	if len(set.keys) == 0 {
		if len(set.skipped) > 0 {
			return nil, fmt.Errorf("jwks: no usable signing key (%s)", set.skipped[0])
		}
		return nil, errors.New("jwks: no keys")
	}
	if len(set.keys) > maxKeys {
		return nil, fmt.Errorf("jwks: %d usable keys, more than the %d allowed", len(set.keys), maxKeys)
	}
	return set, nil
}

// parseJWK turns one "keys" entry into a verifyKey. err means the entry is
// not a valid JWK; skip (non-empty) says why a valid one is not usable.
func parseJWK(entry any) (k verifyKey, skip string, err error) {
	obj, ok := entry.(map[string]any)
	if !ok {
		return k, "", errors.New("not a json object")
	}
	// Members read here, before the JWK library, are type-checked so a
	// number where a string belongs is an error and not a silent "".
	str := func(name string) (string, error) {
		v, present := obj[name]
		if !present {
			return "", nil
		}
		s, ok := v.(string)
		if !ok {
			return "", fmt.Errorf("%q is not a string", name)
		}
		return s, nil
	}
	kty, err := str("kty")
	if err != nil {
		return k, "", err
	}
	if k.kid, err = str("kid"); err != nil {
		return k, "", err
	}
	if k.alg, err = str("alg"); err != nil {
		return k, "", err
	}
	use, err := str("use")
	if err != nil {
		return k, "", err
	}
	switch kty {
	case "":
		return k, "", errors.New(`no "kty"`)
	case "oct":
		return k, "symmetric key: HMAC is never accepted", nil
	case "RSA", "EC", "OKP":
	default:
		return k, fmt.Sprintf("unsupported key type %q", kty), nil
	}
	if use != "" && use != "sig" {
		return k, fmt.Sprintf("use %q is not sig", use), nil
	}
	if ops, present := obj["key_ops"]; present {
		list, ok := ops.([]any)
		if !ok {
			return k, "", errors.New(`"key_ops" is not an array`)
		}
		if !slices.Contains(list, any("verify")) {
			return k, `key_ops has no "verify"`, nil
		}
	}
	if k.alg != "" && !allowedAlg(k.alg) {
		return k, fmt.Sprintf("alg %q is not allowed", k.alg), nil
	}
	raw, err := json.Marshal(obj)
	if err != nil {
		return k, "", err
	}
	key, err := jwk.ParseKey(raw)
	if err != nil {
		return k, "", err
	}
	if jwk.IsUnsupportedKey(key) {
		return k, "unsupported key", nil
	}
	private, err := jwk.IsPrivateKey(key)
	if err != nil {
		return k, "", err
	}
	if private {
		return k, "holds private key material: a published private key is compromised", nil
	}
	var pub any
	if err := jwk.Export(key, &pub); err != nil {
		return k, "", err
	}
	switch p := pub.(type) {
	case *rsa.PublicKey:
		if bits := p.N.BitLen(); bits < minRSABits || bits > maxRSABits {
			return k, fmt.Sprintf("rsa key of %d bits is outside %d..%d", bits, minRSABits, maxRSABits), nil
		}
		if p.E < 3 || p.E%2 == 0 {
			return k, "", errors.New("rsa public exponent is invalid")
		}
	case *ecdsa.PublicKey:
		switch p.Curve.Params().Name {
		case "P-256", "P-384", "P-521":
		default:
			return k, fmt.Sprintf("unsupported curve %q", p.Curve.Params().Name), nil
		}
		if _, err := p.ECDH(); err != nil {
			return k, "", errors.New("ec point is not on the curve")
		}
	case ed25519.PublicKey:
		if len(p) != ed25519.PublicKeySize {
			return k, "", errors.New("ed25519 key has the wrong length")
		}
	default:
		return k, fmt.Sprintf("unsupported key (%T)", pub), nil
	}
	k.pub = pub
	return k, "", nil
}

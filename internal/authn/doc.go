// Package authn authenticates the end user of a request in the sidecar:
// it verifies the JWT a request carries against trusted issuers, with the
// semantics of Istio's RequestAuthentication, and tells who the request
// is from (the request principal "iss/sub") for the policy that follows.
// Every failure is fail-closed and explained by a stable reason; no token,
// signature or claim is ever logged or echoed.
//
// # Model
//
// A [Rule] is one trusted issuer (Istio's JWTRule): the "iss" it matches,
// the audiences it accepts, where its keys are (an inline JWKS, or a JWKS
// URI) and where its tokens are read (headers with a prefix, query
// parameters; by default "Authorization: Bearer" and "access_token").
//
// An [Authenticator] is built per config by [NewAuthenticator], which
// validates every rule (each error names the rule index and the field)
// and parses inline JWKS. It is immutable: a new config builds a new one,
// which the assembler swaps in (an atomic.Pointer), as for other snapshots.
//
// A [KeySets] fetches remote JWKS for every Authenticator, keyed by URI, so
// it survives config changes and a URI kept by the new config keeps its
// keys. It is long-lived and has a [KeySets.Run]. The assembler, on each
// config:
//
//	a, err := authn.NewAuthenticator(rules, keys, clock) // bad config: keep the old
//	keys.Want(a.JWKSURIs())                              // new URIs fetched at once
//	current.Store(a)
//
// # Authenticate
//
// [Authenticator.Authenticate] does, in order:
//
//  1. Remove from the request every output header of every rule (payload
//     and claim headers, any spelling), always, token or not, valid or
//     not: a client cannot forge them.
//  2. Collect the tokens at the union of the rules' locations. A header
//     value is a token when it starts with a location's prefix (case
//     insensitive; the longest matching prefix wins); the token is the rest
//     without surrounding blanks. "Authorization: Basic ..." is no token
//     for a "Bearer " location. Query parameters are read from
//     r.URL.RawQuery split on '&' and ';'.
//  3. No token: (Result{}, nil). A missing token is not an error; a
//     policy requiring a request principal refuses the request later.
//     More than one token: multiple-tokens.
//  4. Parse strictly (see below) and check "alg" against the allowlist:
//     RS256/384/512, PS256/384/512, ES256/384/512, EdDSA. "none" and HS*
//     are never accepted: HS256 "signed" with an issuer's RSA public key
//     (PEM, DER or modulus) as the secret is the classic key-confusion
//     forgery, and no HMAC key is ever loaded.
//  5. Read "iss" from the unverified payload only to choose the rule. No
//     rule: unknown-issuer; a rule that does not read tokens at the
//     location this one came from: unknown-issuer too (as Envoy).
//  6. Verify the signature with that rule's keys and no other: with a
//     "kid", the keys having it (none: unknown-key; none whose type fits
//     the alg: alg-not-allowed); without, every key whose type fits the
//     alg (none: unknown-key). A key fits an alg when its type is the
//     alg's (RSA for RS/PS, EC P-256/P-384/P-521 for ES256/384/512
//     exactly, Ed25519 for EdDSA) and its own "alg", if any, is the same.
//     The primitive is jwx's jwsbb.Verify with our algorithm; keys never
//     come from the token (jku, jwk, x5u, x5c headers are ignored).
//     A remote JWKS never fetched successfully: jwks-unavailable.
//  7. Check the verified claims: types (iss, sub, azp strings; aud a
//     string or a list of strings; exp, nbf, iat numbers, fractions
//     allowed), exp (optional, as Istio; if present, enforced), nbf and iat
//     (not in the future), all with 60 s of clock skew (Envoy's default),
//     then the rule's audiences (if listed, "aud" must contain one).
//  8. On success: unless the rule has ForwardOriginalToken, remove the
//     token; set the rule's output headers; return the [Result].
//
// A failure is an [*Error] whose Reason is a stable code (multiple-tokens,
// malformed, alg-not-allowed, unknown-issuer, jwks-unavailable,
// unknown-key, bad-signature, expired, not-yet-valid, wrong-audience);
// Error() is short, fixed per cause and safe for the client; the caller
// answers 401 with [Error.Challenge] as WWW-Authenticate. The wrapped
// cause and [Error.LogValue] are for the log.
//
// Fields of the request Authenticate touches: r.Header (output headers
// removed and set; the one value that carried the token removed, the
// header deleted if it had no other value); for a query-parameter token,
// r.URL.RawQuery (that one piece and one separator removed, the rest byte
// for byte), r.URL.ForceQuery (cleared if the query became empty) and
// r.RequestURI (when set, its query replaced by the new RawQuery, so the
// two agree). Nothing else: not r.Form (authenticate before anything
// parses the form), not the path, not the body. On an error r is left as
// it is, apart from step 1.
//
// # Strict parsing
//
// A verifier must not accept anything that another reader of the same
// bytes could read differently, so a token is malformed when: it is over
// 64 KiB; it has other than three segments (JWE, JSON serialization); a
// segment is not canonical unpadded base64url (no '=', '+', '/',
// whitespace or non-zero trailing bits: a re-encoded payload is the same
// bytes, and no two encodings of one token verify); the header or payload
// is not exactly one JSON object, has a duplicate member name at any
// depth, invalid UTF-8 or a lone surrogate, or nests over 32 levels; the
// header has "crit" or "b64"; a registered claim has the wrong type.
// Claims are exposed with numbers as json.Number.
//
// # Keys
//
// A JWKS is an object with a "keys" array (a bare JWK is not a set). Each
// entry is parsed by jwx (jwk.ParseKey) and kept only if it can verify a
// token we accept: RSA of 2048..8192 bits, EC on P-256/P-384/P-521,
// Ed25519; "use", if present, "sig"; "key_ops", if present, containing
// "verify"; "alg", if present, allowed. Symmetric ("oct") keys are never
// kept, nor keys that carry private material (a published private key is
// compromised). An entry that is not a valid JWK makes an inline JWKS an
// error (a typo in config is loud) and is skipped in a remote one (one bad
// entry must not take the issuer's other keys down). A set with no usable
// key, or over 100, is an error.
//
// # Remote key sets
//
// [KeySets.Run] fetches each wanted URI at once, then every Refresh (20
// min, as Istio). While a URI has never been fetched or is failing, it is
// retried after RetryInterval (1 s), doubling up to MaxRetryInterval (30
// s). A failed fetch keeps the last good keys: tokens keep verifying
// against them, and only a URI never fetched fails closed
// (jwks-unavailable). A failure is logged once per change of error (with
// whether the last good keys are still served), a recovery once. A
// response must be 200 and at most MaxBytes (1 MiB), read through a limit
// whatever Content-Length says. The default client has a 5 s timeout and
// refuses redirects from https to http. URIs are logged and shown in
// [KeySets.Status] with any password redacted, and fetch errors never
// repeat the URL (its query may hold a key). [KeySets.Refresh] fetches
// every wanted URI now, for tests and an operator's "refresh now".
//
// # Deliberate differences from Istio
//
//   - More than one token in a request (two locations, or one header or
//     parameter twice) is refused as multiple-tokens. Istio documents
//     such requests as unsupported, with an undefined principal; Envoy
//     verifies each. An ambiguous credential is no credential.
//   - Two rules with the same issuer are a config error. Istio leaves
//     that case undefined (istio/istio#19245); here the issuer alone
//     chooses the rule, so it must be unique. An issuer is required
//     (recent Istio allows a rule without one).
//   - Every rule names its keys (JWKS or JWKSURI): there is no OpenID
//     discovery of the JWKS URI from the issuer.
//   - HMAC algorithms and "oct" keys are never accepted (Envoy accepts
//     HS256/384/512 with an inline symmetric JWKS); neither are ES256K,
//     Ed448, RSA keys under 2048 bits or JWKS entries with private keys.
//   - iat in the future (beyond the skew) is refused; Envoy checks only exp
//     and nbf.
//   - Strict parsing (above): duplicate JSON members, non-canonical
//     base64url, "crit" and "b64" are refused.
//   - Output headers are removed from every request, not only overwritten
//     after a successful verification, so a request without a token cannot
//     carry a forged payload or claim header to the app.
//   - Query parameters are also split on ';' when looking for tokens, so
//     an app that splits on it cannot receive a token the sidecar did not
//     check.
//   - Claim headers: a string, boolean or number claim is copied (numbers
//     as their JSON text), top-level by name, else by a dotted path into
//     nested objects; lists, objects and values not valid in a header
//     (control characters) are not copied.
//   - Not supported: fromCookies, per-rule fetch timeouts, and issuers
//     matched by anything but exact equality.
//
// # Concurrency
//
// An Authenticator is immutable and safe for concurrent use; Authenticate
// changes only the request it is given and makes no call out of the
// process. A KeySets is safe for concurrent use: the request path takes
// its read lock only to look a URI's last good key set up (an immutable
// value, replaced whole); Want, Status, Ready and Refresh may be called
// from any goroutine at any time. No lock is held across I/O. Run owns one
// goroutine per fetch in flight; a URI dropped by Want has its fetch
// cancelled; cancelling Run's context cancels the fetches in flight and
// waits for them (and closes the idle connections of the default client)
// before Run returns nil. Only one Run at a time; a KeySets needs no Close.
package authn

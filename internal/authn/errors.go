package authn

import (
	"log/slog"
	"strings"
)

// Reason is the stable code of an authentication failure, for metrics
// labels, audit records and the error_description a client sees. Codes are
// never renamed; new ones may be added.
type Reason string

// Reasons, roughly in the order Authenticate checks them.
const (
	// ReasonMultipleTokens: more than one token was presented (two
	// locations, or one location twice). Which one is meant is ambiguous,
	// so none is.
	ReasonMultipleTokens Reason = "multiple-tokens"
	// ReasonMalformed: not a JWS compact serialization we accept: wrong
	// number of segments, non-canonical base64url, JSON that is invalid,
	// has duplicate members or invalid UTF-8, a claim of the wrong type, an
	// unsupported "crit" or "b64" header, or an oversized token.
	ReasonMalformed Reason = "malformed"
	// ReasonAlgNotAllowed: the "alg" header is not one of RS256/384/512,
	// PS256/384/512, ES256/384/512, EdDSA ("none" and HS* never are), or
	// it does not fit the key the "kid" names.
	ReasonAlgNotAllowed Reason = "alg-not-allowed"
	// ReasonUnknownIssuer: the "iss" claim is missing or names no rule, or
	// names a rule that does not read tokens from the location this one
	// came from.
	ReasonUnknownIssuer Reason = "unknown-issuer"
	// ReasonJWKSUnavailable: the issuer's remote JWKS has never been
	// fetched successfully (or is not wanted by the KeySets).
	ReasonJWKSUnavailable Reason = "jwks-unavailable"
	// ReasonUnknownKey: no key of the issuer has the token's "kid", or,
	// without a "kid", none has a type usable with the token's "alg".
	ReasonUnknownKey Reason = "unknown-key"
	// ReasonBadSignature: the signature does not verify with the issuer's
	// keys.
	ReasonBadSignature Reason = "bad-signature"
	// ReasonExpired: "exp" is more than the clock skew in the past.
	ReasonExpired Reason = "expired"
	// ReasonNotYetValid: "nbf" or "iat" is more than the clock skew in the
	// future.
	ReasonNotYetValid Reason = "not-yet-valid"
	// ReasonWrongAudience: the rule lists audiences and "aud" contains
	// none of them.
	ReasonWrongAudience Reason = "wrong-audience"
)

// Error is why a presented token was refused. Its Error text is short,
// fixed per cause and safe to send to the client (it never contains any
// part of the token); the wrapped cause, for logs, may say more (key ids,
// library errors) but never holds the token, its signature or its claims.
//
// The caller answers 401 with the header from [Error.Challenge].
type Error struct {
	// Reason is the stable code.
	Reason Reason
	// Issuer is the issuer of the rule the token was checked against,
	// "" when the failure came before a rule was chosen.
	Issuer string

	msg   string
	cause error
}

func (e *Error) Error() string { return "invalid token: " + e.msg }

// Unwrap returns the internal cause, if any, for logs.
func (e *Error) Unwrap() error { return e.cause }

// Challenge is the value of the WWW-Authenticate header for the 401
// response (RFC 6750 section 3). The description is the Error text, with
// double quotes turned into single ones (RFC 6750 allows neither '"' nor
// '\\' in it).
func (e *Error) Challenge() string {
	return `Bearer error="invalid_token", error_description="` + strings.ReplaceAll(e.msg, `"`, "'") + `"`
}

// LogValue logs the reason, the issuer and the cause.
func (e *Error) LogValue() slog.Value {
	attrs := []slog.Attr{slog.String(logReason, string(e.Reason)), slog.String(logMessage, e.msg)}
	if e.Issuer != "" {
		attrs = append(attrs, slog.String(logIssuer, e.Issuer))
	}
	if e.cause != nil {
		attrs = append(attrs, slog.String(logError, e.cause.Error()))
	}
	return slog.GroupValue(attrs...)
}

var _ slog.LogValuer = (*Error)(nil)

func failure(reason Reason, msg string, cause error) *Error {
	return &Error{Reason: reason, msg: msg, cause: cause}
}

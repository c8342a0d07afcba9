// Package httpnorm normalizes the path and host of an HTTP request once, at
// the sidecar, so that authorization policies match exactly the path the
// application then receives.
//
// # Model
//
// Path confusion is a disagreement between two parsers: the proxy that
// authorizes "/public/..%2fadmin" as a public path and the application that
// serves it as "/admin". httpnorm removes the disagreement instead of
// guessing who is right: the proxy calls Path once, matches policies against
// the result and forwards that same result to the application, so both sides
// see one string. Where no single string is right for every server behind a
// proxy (an encoded slash, a Tomcat path parameter, a ".." above the root),
// the request is rejected with an *Error whose Reason is a stable code, and
// the proxy answers 400.
//
// The output of Path is a fixed point: Path(Path(p)) == Path(p) for every
// Options value, so forwarding it through a second normalizing hop, or
// normalizing again in the application, changes nothing. An already-normal
// path is returned as the same string, without allocating.
//
// The zero Options is the strict stance and the right one unless an
// application is known to need otherwise; each relaxation is documented at
// its field.
//
// # Rules for paths
//
// Path applies these rules to the path of an origin-form request-target, as
// it was received (r.RequestURI split by Split, or r.URL.EscapedPath()),
// without the query:
//
//  1. The path must start with '/' (else "not-origin-form"). Raw bytes below
//     0x21 (controls and space) and 0x7F are rejected ("control-character",
//     or "null-byte" for 0x00), and so are raw bytes above 0x7F
//     ("non-ascii"): clients must percent-encode them, and servers disagree
//     on what raw ones mean. A raw '#' is "fragment"; a raw '?' is
//     "not-origin-form", because the caller must split the query off first.
//     The raw characters RFC 3986 does not allow in a path but that clients
//     send anyway (" < > [ ] ^ ` { | }) are percent-encoded, as Go's
//     url.URL.EscapedPath does, so that "/a|b" and "/a%7Cb" are one path.
//  2. Every '%' must be followed by two hex digits ("invalid-percent-encoding";
//     this also rejects IIS-style "%u002e"). An encoded unreserved character
//     (ALPHA, DIGIT, '-', '.', '_', '~') is decoded, because RFC 3986 says it
//     is the same as the raw one: "%61dmin" is "admin" and "%2e%2E" is "..".
//     Every other encoded byte stays encoded, with uppercase hex ("%2f"
//     becomes "%2F"), because decoding reserved characters changes what the
//     path means. "%00" is "null-byte"; "%01" to "%1F" and "%7F" are
//     "control-character". Encoded bytes above 0x7F must form valid UTF-8
//     ("invalid-utf8"): overlong forms such as "%C0%AE" (a disguised '.'),
//     UTF-16 surrogates, code points above U+10FFFF and truncated sequences
//     are rejected. Valid UTF-8 stays encoded and is data, never syntax:
//     "%EF%BC%8F" (U+FF0F FULLWIDTH SOLIDUS) is not a slash. The path is
//     decoded once, never twice: "%252e" stays "%252e" (an encoded '%'
//     followed by "2e"), which is what every correct server does with it; an
//     application that decodes twice is broken and httpnorm cannot protect
//     it.
//  3. "%2F" and "%5C" follow Options.EncodedSlashes: rejected by default
//     ("encoded-slash"), because some servers treat them as separators and
//     others as data. A raw '\' follows Options.Backslashes: rejected by
//     default ("backslash"), because Windows servers and browsers treat it
//     as '/'.
//  4. ';' follows Options.PathParams: rejected by default ("path-parameter"),
//     because Tomcat and Spring strip "path parameters" (";jsessionid=...")
//     that other servers keep, so "/admin;x" and "/public/..;/admin" are
//     "/admin" to them and something else to everybody else. "%3B" is
//     rejected with it: some servers decode before they strip parameters.
//  5. Runs of '/' are merged into one ("//admin" is "/admin"), unless
//     Options.KeepDuplicateSlashes. Merging happens before rule 6, as in
//     Go's path.Clean and nginx: "/a//../b" is "/b".
//  6. Dot segments are removed as RFC 3986 section 5.2.4 says, after
//     decoding, so "%2e%2e" is a dot segment; "..." and "admin." are not. A
//     ".." that would climb above the root is rejected
//     ("dot-segment-above-root"), because servers disagree on whether to
//     clamp it. A path ending in "/." or "/.." keeps a trailing slash, like
//     RFC 3986: "/a/b/.." is "/a/".
//  7. With Options.LowercasePath, ASCII letters are lowercased last (never
//     the hex digits of an escape, which stay uppercase). Non-ASCII code
//     points are not case-folded; one whose case mapping or folding is an
//     ASCII letter, such as U+212A KELVIN SIGN (folds to 'k') or U+0130
//     (lowercases to 'i'), is rejected ("ambiguous-case"), because a
//     case-insensitive application could fold "/%E2%84%AAey" into "/key"
//     behind a policy that only saw the Kelvin sign.
//
// # Request-targets and hosts
//
// Split separates the path from the query of an origin-form request-target
// and rejects fragments; absolute-form and asterisk-form targets are not
// origin-form and are rejected too. The query is returned as received; its
// normalization is the business of whoever interprets it.
//
// Host normalizes a Host header or :authority to the name policies match:
// lowercase, no port, no trailing dot, IPv6 literals in RFC 5952 form inside
// brackets. It is stricter than RFC 3986 reg-name on purpose: only letters,
// digits, '-', '.' and '_' are allowed, and a name that a browser would read
// as a legacy IPv4 address ("127.1", "0x7f.0.0.1", "2130706433") must be a
// canonical dotted quad, because those spellings are how host-based rules are
// bypassed.
//
// # Errors
//
// Every rejection is an *Error. Its Reason is one of the Reason constants
// and is safe to put in a metric label or the x-trustmesh-denied-by response
// header. Its Detail says what was found and where (a byte offset), and never
// repeats the path, which may carry secrets.
//
// # Concurrency
//
// All functions are pure and safe for concurrent use.
package httpnorm

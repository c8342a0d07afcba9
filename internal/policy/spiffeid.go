package policy

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// Limits of the SPIFFE ID specification, which go-spiffe does not enforce.
const (
	maxSPIFFEIDLength    = 2048
	maxTrustDomainLength = 255
)

// parseSPIFFEID parses s as a SPIFFE ID. On failure the error says which
// rule of the SPIFFE ID specification s breaks, and where.
//
// The rules are checked here, with the strict character set of the
// specification, before go-spiffe parses s: go-spiffe built with the
// spiffeid_charset_backcompat tag accepts more characters than the
// specification, and it enforces no length limits.
func parseSPIFFEID(s string) (spiffeid.ID, error) {
	if err := checkSPIFFEID(s); err != nil {
		return spiffeid.ID{}, err
	}
	id, err := spiffeid.FromString(s)
	if err != nil {
		return spiffeid.ID{}, err // not reached while the rules agree
	}
	return id, nil
}

func checkSPIFFEID(s string) error {
	if s == "" {
		return errors.New("it is empty")
	}
	if len(s) > maxSPIFFEIDLength {
		return fmt.Errorf("it is %d bytes long; a SPIFFE ID is at most %d bytes", len(s), maxSPIFFEIDLength)
	}
	rest, ok := strings.CutPrefix(s, "spiffe://")
	if !ok {
		scheme, _, found := strings.Cut(s, "://")
		switch {
		case found && strings.EqualFold(scheme, "spiffe"):
			return errors.New(`the scheme must be written in lowercase: "spiffe://"`)
		case found:
			return fmt.Errorf(`the scheme must be "spiffe", not %q`, scheme)
		default:
			return errors.New(`it must start with "spiffe://" followed by the trust domain`)
		}
	}
	td, path, hasPath := strings.Cut(rest, "/")
	if err := checkTrustDomainName(td); err != nil {
		return err
	}
	if !hasPath {
		return nil
	}
	segments := strings.Split(path, "/")
	for i, seg := range segments {
		switch seg {
		case "":
			if i == len(segments)-1 {
				return errors.New("the path must not end with a slash")
			}
			return errors.New(`path segments must not be empty (found "//")`)
		case ".", "..":
			return fmt.Errorf(`path segments must not be "." or ".." (found %q)`, "/"+seg)
		}
		if r, ok := firstInvalid(seg, isPathSegmentChar); ok {
			var why string
			switch r {
			case "?":
				why = ": a query is not allowed"
			case "#":
				why = ": a fragment is not allowed"
			case "%":
				why = ": percent-encoding is not allowed"
			}
			return fmt.Errorf("path segment characters must be letters, digits, dots, dashes or underscores (found %q in segment %q%s)", r, seg, why)
		}
	}
	return nil
}

// checkTrustDomainName checks a trust domain name, such as "example.org".
func checkTrustDomainName(td string) error {
	if td == "" {
		return errors.New("the trust domain is missing: want spiffe://TRUST-DOMAIN/PATH")
	}
	if len(td) > maxTrustDomainLength {
		return fmt.Errorf("the trust domain is %d characters long; at most %d are allowed", len(td), maxTrustDomainLength)
	}
	if r, ok := firstInvalid(td, isTrustDomainChar); ok {
		var why string
		switch {
		case len(r) == 1 && r[0] >= 'A' && r[0] <= 'Z':
			why = "; write the trust domain in lowercase"
		case r == "@":
			why = ": user info is not allowed"
		case r == ":":
			why = ": a port is not allowed"
		case r == "?":
			why = ": a query is not allowed"
		case r == "#":
			why = ": a fragment is not allowed"
		}
		return fmt.Errorf("trust domain characters must be lowercase letters, digits, dots, dashes or underscores (found %q%s)", r, why)
	}
	return nil
}

// firstInvalid returns the first character of s (a rune, or a byte that is
// not UTF-8) for which valid is false.
func firstInvalid(s string, valid func(byte) bool) (string, bool) {
	for i := 0; i < len(s); i++ {
		if valid(s[i]) {
			continue
		}
		if _, size := utf8.DecodeRuneInString(s[i:]); size > 1 {
			return s[i : i+size], true
		}
		return s[i : i+1], true
	}
	return "", false
}

func isTrustDomainChar(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '.' || c == '-' || c == '_'
}

func isPathSegmentChar(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '-' || c == '_'
}

package httpnorm

import (
	"fmt"
	"strconv"
)

// Options is the normalization stance. The zero value is the strict, safe
// default; every other setting makes the proxy agree with a particular kind
// of application and is only safe in front of it.
type Options struct {
	// EncodedSlashes is what "%2F" and "%5C" mean. RejectEncodedSlashes
	// (the default) refuses them.
	EncodedSlashes SlashPolicy

	// Backslashes is what a raw '\' means. RejectBackslashes (the default)
	// refuses it.
	Backslashes BackslashPolicy

	// KeepDuplicateSlashes keeps runs of '/' as they are. By default they
	// are merged into one, which is what nginx and Go's path.Clean do; keep
	// them only for an application that gives "//" a meaning, and write
	// policies that expect it. A kept leading "//" can read as a
	// scheme-relative URL to an application that builds redirects from the
	// path.
	KeepDuplicateSlashes bool

	// PathParams is what a ';' (raw, or "%3B") means. RejectPathParams (the
	// default) refuses it.
	PathParams ParamPolicy

	// LowercasePath lowercases the ASCII letters of the path, for
	// applications that serve paths case-insensitively; the application
	// receives the lowercased path. By default paths are case-sensitive.
	LowercasePath bool
}

// Validate reports whether every policy is one this package knows. Path
// treats an unknown value as the strict one, but a configuration that holds
// one is a bug worth failing start-up for.
func (o Options) Validate() error {
	if o.EncodedSlashes > DecodeEncodedSlashes {
		return fmt.Errorf("unknown encoded-slash policy %d", uint8(o.EncodedSlashes))
	}
	if o.Backslashes > BackslashToSlash {
		return fmt.Errorf("unknown backslash policy %d", uint8(o.Backslashes))
	}
	if o.PathParams > KeepPathParams {
		return fmt.Errorf("unknown path-parameter policy %d", uint8(o.PathParams))
	}
	return nil
}

// SlashPolicy is what "%2F" (an encoded '/') and "%5C" (an encoded '\') mean.
type SlashPolicy uint8

const (
	// RejectEncodedSlashes rejects the request ("encoded-slash"): some
	// servers decode "%2F" into a separator and others keep it as data, so
	// no single path is right for both.
	RejectEncodedSlashes SlashPolicy = iota
	// KeepEncodedSlashes keeps them encoded, as opaque data inside a
	// segment: "/a/..%2Fadmin" has the segments "a" and "..%2Fadmin". Only
	// safe in front of an application that never decodes them into
	// separators (it routes on the escaped path, e.g. Go's ServeMux with
	// {name...} wildcards over r.URL.EscapedPath, or treats them as data).
	KeepEncodedSlashes
	// DecodeEncodedSlashes decodes "%2F" to '/' and "%5C" to '\' (which
	// then follows Options.Backslashes) before duplicate slashes are merged
	// and dot segments removed, like Istio's DECODE_AND_MERGE_SLASHES. The
	// application receives real slashes; it can no longer tell "%2F" from
	// '/'.
	DecodeEncodedSlashes
)

var slashWords = [...]string{"reject", "keep", "decode"}

func (p SlashPolicy) String() string {
	if int(p) < len(slashWords) {
		return slashWords[p]
	}
	return "SlashPolicy(" + strconv.Itoa(int(p)) + ")"
}

// ParseSlashPolicy reads the configuration word for a SlashPolicy: "reject",
// "keep" or "decode".
func ParseSlashPolicy(s string) (SlashPolicy, error) {
	for p := SlashPolicy(0); int(p) < len(slashWords); p++ {
		if s == slashWords[p] {
			return p, nil
		}
	}
	return 0, fmt.Errorf("unknown encoded-slash policy %q: want reject, keep or decode", s)
}

// MarshalText writes the configuration word, so that a policy round-trips
// through YAML and JSON configuration.
func (p SlashPolicy) MarshalText() ([]byte, error) {
	if int(p) >= len(slashWords) {
		return nil, fmt.Errorf("unknown encoded-slash policy %d", uint8(p))
	}
	return []byte(slashWords[p]), nil
}

// UnmarshalText reads the configuration word, as ParseSlashPolicy.
func (p *SlashPolicy) UnmarshalText(text []byte) error {
	v, err := ParseSlashPolicy(string(text))
	if err != nil {
		return err
	}
	*p = v
	return nil
}

// BackslashPolicy is what a raw '\' in a path means.
type BackslashPolicy uint8

const (
	// RejectBackslashes rejects the request ("backslash"): Windows servers,
	// and browsers for http URLs, treat '\' as '/', others as data.
	RejectBackslashes BackslashPolicy = iota
	// BackslashToSlash turns every '\' into '/' before duplicate slashes
	// are merged and dot segments removed, so "\..\admin" is "/admin". For
	// applications on Windows.
	BackslashToSlash
)

var backslashWords = [...]string{"reject", "slash"}

func (p BackslashPolicy) String() string {
	if int(p) < len(backslashWords) {
		return backslashWords[p]
	}
	return "BackslashPolicy(" + strconv.Itoa(int(p)) + ")"
}

// ParseBackslashPolicy reads the configuration word for a BackslashPolicy:
// "reject" or "slash".
func ParseBackslashPolicy(s string) (BackslashPolicy, error) {
	for p := BackslashPolicy(0); int(p) < len(backslashWords); p++ {
		if s == backslashWords[p] {
			return p, nil
		}
	}
	return 0, fmt.Errorf("unknown backslash policy %q: want reject or slash", s)
}

// MarshalText writes the configuration word.
func (p BackslashPolicy) MarshalText() ([]byte, error) {
	if int(p) >= len(backslashWords) {
		return nil, fmt.Errorf("unknown backslash policy %d", uint8(p))
	}
	return []byte(backslashWords[p]), nil
}

// UnmarshalText reads the configuration word, as ParseBackslashPolicy.
func (p *BackslashPolicy) UnmarshalText(text []byte) error {
	v, err := ParseBackslashPolicy(string(text))
	if err != nil {
		return err
	}
	*p = v
	return nil
}

// ParamPolicy is what a ';' in a path segment means.
type ParamPolicy uint8

const (
	// RejectPathParams rejects the request ("path-parameter"): Tomcat and
	// Spring strip ";..." from each segment before routing, so
	// "/admin;x" and "/public/..;/admin" both reach "/admin" there.
	RejectPathParams ParamPolicy = iota
	// KeepPathParams keeps ';' as opaque data, for applications that do
	// not strip path parameters. A segment that is "." or ".." once its
	// parameters are stripped ("..;x", "..%3Bx") is still rejected, since
	// that is the Tomcat traversal and is never a real name.
	KeepPathParams
)

var paramWords = [...]string{"reject", "keep"}

func (p ParamPolicy) String() string {
	if int(p) < len(paramWords) {
		return paramWords[p]
	}
	return "ParamPolicy(" + strconv.Itoa(int(p)) + ")"
}

// ParseParamPolicy reads the configuration word for a ParamPolicy: "reject"
// or "keep".
func ParseParamPolicy(s string) (ParamPolicy, error) {
	for p := ParamPolicy(0); int(p) < len(paramWords); p++ {
		if s == paramWords[p] {
			return p, nil
		}
	}
	return 0, fmt.Errorf("unknown path-parameter policy %q: want reject or keep", s)
}

// MarshalText writes the configuration word.
func (p ParamPolicy) MarshalText() ([]byte, error) {
	if int(p) >= len(paramWords) {
		return nil, fmt.Errorf("unknown path-parameter policy %d", uint8(p))
	}
	return []byte(paramWords[p]), nil
}

// UnmarshalText reads the configuration word, as ParseParamPolicy.
func (p *ParamPolicy) UnmarshalText(text []byte) error {
	v, err := ParseParamPolicy(string(text))
	if err != nil {
		return err
	}
	*p = v
	return nil
}

package httpnorm

import (
	"errors"
	"strconv"
)

// Reason codes of an *Error. They are stable: dashboards, alerts and the
// x-trustmesh-denied-by header depend on them.
const (
	ReasonNotOriginForm       = "not-origin-form"
	ReasonFragment            = "fragment"
	ReasonControlCharacter    = "control-character"
	ReasonNullByte            = "null-byte"
	ReasonNonASCII            = "non-ascii"
	ReasonInvalidPercent      = "invalid-percent-encoding"
	ReasonInvalidUTF8         = "invalid-utf8"
	ReasonEncodedSlash        = "encoded-slash"
	ReasonBackslash           = "backslash"
	ReasonPathParameter       = "path-parameter"
	ReasonDotSegmentAboveRoot = "dot-segment-above-root"
	ReasonAmbiguousCase       = "ambiguous-case"
	ReasonBadHost             = "bad-host"
)

// Error is returned for every rejection.
type Error struct {
	// Reason is a short stable code, one of the Reason constants.
	Reason string
	// Detail says what was found and where, for logs. It never contains
	// the path or host itself, which may carry secrets.
	Detail string
}

func (e *Error) Error() string {
	return e.Reason + ": " + e.Detail
}

// ReasonOf returns the Reason of the *Error in err's chain, or "" if there is
// none, for the metric label and response header.
func ReasonOf(err error) string {
	if e, ok := errors.AsType[*Error](err); ok {
		return e.Reason
	}
	return ""
}

// rejectAt builds the error for a path problem at byte offset at. Building
// the detail allocates, which is fine: only rejected requests pay for it.
func rejectAt(reason string, at int, detail string) error {
	return &Error{Reason: reason, Detail: detail + " at byte " + strconv.Itoa(at)}
}

func badHost(detail string) error {
	return &Error{Reason: ReasonBadHost, Detail: detail}
}

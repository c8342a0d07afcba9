// Package unixnano is how the SQL stores keep a time.Time: an int64 of Unix
// nanoseconds, returned in UTC, with the zero time as NULL in a nullable
// column (a nil *int64, which database/sql and pgx both bind and scan as
// NULL). Times an int64 cannot hold (before 1677-09-21 or after 2262-04-11)
// are rejected rather than wrapped.
package unixnano

import (
	"fmt"
	"math"
	"time"
)

// The instants an int64 of Unix nanoseconds can hold.
var (
	minTime = time.Unix(0, math.MinInt64)
	maxTime = time.Unix(0, math.MaxInt64)
)

// Encode converts t for a NOT NULL time column; field names it in errors.
func Encode(field string, t time.Time) (int64, error) {
	if t.IsZero() {
		return 0, fmt.Errorf("%s is not set", field)
	}
	if t.Before(minTime) || t.After(maxTime) {
		return 0, fmt.Errorf("%s %s is outside the storable range %s to %s",
			field, t.UTC().Format(time.RFC3339), minTime.UTC().Format(time.RFC3339), maxTime.UTC().Format(time.RFC3339))
	}
	return t.UnixNano(), nil
}

// EncodeNull converts t for a nullable time column: the zero time is nil
// (NULL).
func EncodeNull(field string, t time.Time) (*int64, error) {
	if t.IsZero() {
		return nil, nil
	}
	n, err := Encode(field, t)
	if err != nil {
		return nil, err
	}
	return &n, nil
}

// Decode is the time of a NOT NULL column, in UTC.
func Decode(n int64) time.Time {
	return time.Unix(0, n).UTC()
}

// DecodeNull is the time of a nullable column: the zero time for nil.
func DecodeNull(n *int64) time.Time {
	if n == nil {
		return time.Time{}
	}
	return Decode(*n)
}

package policy

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Duration is a length of time written as a Go duration string: "30m",
// "1h30m", "90s". The zero Duration means "not set"; a set Duration is
// always positive, so "0s" and negative values are rejected when decoding.
//
// +kubebuilder:validation:Type=string
type Duration time.Duration

// String returns d in the shortest Go duration form that parses back to
// it: "1h" rather than "1h0m0s".
func (d Duration) String() string {
	s := time.Duration(d).String()
	if strings.HasSuffix(s, "m0s") {
		s = s[:len(s)-2]
	}
	if strings.HasSuffix(s, "h0m") {
		s = s[:len(s)-2]
	}
	return s
}

// MarshalJSON encodes d as a duration string.
func (d Duration) MarshalJSON() ([]byte, error) {
	return json.Marshal(d.String())
}

// UnmarshalJSON decodes a duration string. Numbers are rejected: a bare 30
// has no unit.
func (d *Duration) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		return nil
	}
	var v any
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.UseNumber()
	if err := dec.Decode(&v); err != nil {
		return err
	}
	n, err := normalizeJSON(v)
	if err != nil {
		return err
	}
	return d.unmarshalNode(n)
}

// unmarshalNode implements nodeUnmarshaler for the object decoder.
func (d *Duration) unmarshalNode(n any) error {
	s, ok := n.(string)
	if !ok {
		return fmt.Errorf(`want a duration such as "30m" or "1h", got %s (a duration needs a unit)`, describe(n))
	}
	v, err := parseDuration(s)
	if err != nil {
		return err
	}
	*d = v
	return nil
}

func parseDuration(s string) (Duration, error) {
	if s == "" {
		return 0, errors.New(`want a duration such as "30m" or "1h", got an empty string`)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf(`invalid duration %q: want a number and a unit such as "30m" or "1h" (units: ns, us, ms, s, m, h)`, s)
	}
	if v <= 0 {
		return 0, fmt.Errorf("duration %q must be positive; leave the field out to use the default", s)
	}
	return Duration(v), nil
}

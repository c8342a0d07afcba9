// Package demotest holds what the tests of the demo services share: a fake
// downstream service, networks that fail on demand, requests as the mesh
// delivers them, a reader for JSON log lines, and a driver for command-line
// tests.
package demotest

import (
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/trustmesh/trustmesh/examples/internal/demo"
)

// Downstream is a fake downstream service: an HTTP server on loopback that
// answers with a handler and counts the requests that reach it.
type Downstream struct {
	// URL is the server's base URL.
	URL   *url.URL
	calls atomic.Int32
}

// StartDownstream starts a fake downstream that answers with h. It is closed
// when the test ends.
func StartDownstream(t testing.TB, h http.HandlerFunc) *Downstream {
	t.Helper()
	d := &Downstream{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		d.calls.Add(1)
		h(w, r)
	}))
	t.Cleanup(srv.Close)
	d.URL = URL(t, srv.URL)
	return d
}

// Calls returns how many requests reached the downstream.
func (d *Downstream) Calls() int32 { return d.calls.Load() }

// Answer returns a handler that always answers status and body.
func Answer(status int, body string) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(status)
		_, _ = io.WriteString(w, body)
	}
}

// RefusingTransport returns a transport whose every dial is refused, as when
// nothing listens on the downstream's address.
func RefusingTransport() http.RoundTripper {
	return roundTripFunc(func(*http.Request) (*http.Response, error) {
		return nil, &net.OpError{Op: "dial", Net: "tcp", Err: errors.New("connection refused")}
	})
}

// TimingOutTransport returns a transport whose every request times out.
func TimingOutTransport() http.RoundTripper {
	return roundTripFunc(func(*http.Request) (*http.Response, error) {
		return nil, timeoutError{}
	})
}

// Client returns demo.NewClient(timeout), with its transport replaced when
// transport is not nil.
func Client(timeout time.Duration, transport http.RoundTripper) *http.Client {
	c := demo.NewClient(timeout)
	if transport != nil {
		c.Transport = transport
	}
	return c
}

// NewRequest returns an incoming request as the mesh delivers it: with the
// caller's SPIFFE ID in demo.PeerIdentityHeader, unless peer is empty.
func NewRequest(method, target string, body io.Reader, peer string) *http.Request {
	r := httptest.NewRequest(method, target, body)
	if peer != "" {
		r.Header.Set(demo.PeerIdentityHeader, peer)
	}
	return r
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

var _ net.Error = timeoutError{}

// timeoutError is a net.Error that timed out.
type timeoutError struct{}

func (timeoutError) Error() string   { return "i/o timeout" }
func (timeoutError) Timeout() bool   { return true }
func (timeoutError) Temporary() bool { return true }

// URL parses raw, or fails the test.
func URL(t testing.TB, raw string) *url.URL {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// LogRecords parses the lines of a slog JSON log, leaving out the time and
// the duration, which change from run to run.
func LogRecords(t testing.TB, logs string) []map[string]any {
	t.Helper()
	var records []map[string]any
	for line := range strings.Lines(logs) {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		delete(m, "time")
		delete(m, demo.LogKeyDuration)
		records = append(records, m)
	}
	return records
}

// ParseCase is one case of a command-line test: Args parse to WantListen and
// WantDownstream ("" when the command has no downstream), or fail with an
// error that contains WantErr.
type ParseCase struct {
	Name           string
	Args           []string
	WantListen     string
	WantDownstream string
	WantErr        string
}

// CheckParse runs each case against c.Parse, as a subtest.
func CheckParse(t *testing.T, c demo.Command, cases []ParseCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.Name, func(t *testing.T) {
			got, err := c.Parse(tc.Args, io.Discard)
			if tc.WantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.WantErr) {
					t.Fatalf("got error %v, want one containing %q", err, tc.WantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("got error %v, want none", err)
			}
			var gotDownstream string
			if got.Downstream != nil {
				gotDownstream = got.Downstream.String()
			}
			if got.Listen != tc.WantListen || gotDownstream != tc.WantDownstream {
				t.Errorf("got listen %q downstream %q, want %q %q", got.Listen, gotDownstream, tc.WantListen, tc.WantDownstream)
			}
		})
	}
}

package demo_test

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/trustmesh/trustmesh/examples/internal/demo"
	"github.com/trustmesh/trustmesh/examples/internal/demo/demotest"
)

func TestDownstreamPost(t *testing.T) {
	tests := []struct {
		name       string
		answer     http.HandlerFunc  // the downstream behind the proxy
		transport  http.RoundTripper // replaces the network, when set
		want       string            // the body Post returns
		wantReason string            // the reason of the *CallError, when one is wanted
		wantCause  bool              // whether the *CallError wraps a cause
	}{
		{name: "ok", answer: demotest.Answer(http.StatusCreated, `{"id":1}`), want: `{"id":1}`},
		{
			name: "error-json", answer: demotest.Answer(http.StatusForbidden, `{"error":"denied"}`),
			wantReason: "api answered 403 Forbidden: denied",
		},
		{
			name: "error-text", answer: demotest.Answer(http.StatusForbidden, "  denied by policy\n"),
			wantReason: "api answered 403 Forbidden: denied by policy",
		},
		{
			name: "error-empty", answer: demotest.Answer(http.StatusOK, ""),
			wantReason: "api answered 200 OK: (empty body)",
		},
		{
			name: "error-long", answer: demotest.Answer(http.StatusInternalServerError, strings.Repeat("x", 300)),
			wantReason: "api answered 500 Internal Server Error: " + strings.Repeat("x", 200) + "…",
		},
		{
			name: "error-not-utf8", answer: demotest.Answer(http.StatusInternalServerError, "bad \xff byte"),
			wantReason: "api answered 500 Internal Server Error: bad ? byte",
		},
		{
			name: "redirect-not-followed",
			answer: func(w http.ResponseWriter, r *http.Request) {
				http.Redirect(w, r, "http://192.0.2.1/", http.StatusFound)
			},
			wantReason: "api answered 302 Found: (empty body)",
		},
		{
			name: "too-large", answer: demotest.Answer(http.StatusCreated, strings.Repeat(" ", demo.MaxBodyBytes+1)),
			wantReason: "api answered with more than 65536 bytes",
		},
		{
			name: "largest", answer: demotest.Answer(http.StatusCreated, strings.Repeat(" ", demo.MaxBodyBytes)),
			want: strings.Repeat(" ", demo.MaxBodyBytes),
		},
		{
			name: "unreachable", transport: demotest.RefusingTransport(),
			wantReason: "api is unreachable (is this app's trustmesh proxy running?)", wantCause: true,
		},
		{
			name: "timeout", transport: demotest.TimingOutTransport(),
			wantReason: "api did not answer within 3s", wantCause: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			answer := tt.answer
			if answer == nil {
				answer = func(http.ResponseWriter, *http.Request) { t.Error("the request reached the downstream") }
			}
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.Method != http.MethodPost || r.URL.Path != "/things" {
					t.Errorf("got %s %s, want POST /things", r.Method, r.URL.Path)
				}
				if got := r.Header.Get("Content-Type"); got != "application/json" {
					t.Errorf("got Content-Type %q, want application/json", got)
				}
				var body struct{ N int }
				if err := json.NewDecoder(r.Body).Decode(&body); err != nil || body.N != 7 {
					t.Errorf("got body %+v (%v), want N 7", body, err)
				}
				answer(w, r)
			}))
			t.Cleanup(srv.Close)
			client := demo.NewClient(3 * time.Second)
			if tt.transport != nil {
				client.Transport = tt.transport
			}
			d := demo.Downstream{Name: "api", URL: srv.URL + "/things", Client: client}

			got, err := d.Post(t.Context(), "thing", struct{ N int }{7}, http.StatusCreated)
			if tt.wantReason == "" {
				if err != nil {
					t.Fatalf("got error %v, want none", err)
				}
				if string(got) != tt.want {
					t.Errorf("got body %q, want %q", got, tt.want)
				}
				return
			}
			ce, ok := errors.AsType[*demo.CallError](err)
			if !ok {
				t.Fatalf("got error %v, want a *demo.CallError", err)
			}
			if ce.Reason != tt.wantReason {
				t.Errorf("got reason %q, want %q", ce.Reason, tt.wantReason)
			}
			if gotCause := ce.Cause != nil; gotCause != tt.wantCause {
				t.Errorf("got cause %v, want one: %v", ce.Cause, tt.wantCause)
			}
		})
	}
}

func TestCallError(t *testing.T) {
	cause := errors.New("connection refused")
	tests := []struct {
		name string
		err  *demo.CallError
		want string
	}{
		{name: "reason-only", err: &demo.CallError{Reason: "api is down"}, want: "api is down"},
		{name: "with-cause", err: &demo.CallError{Reason: "api is down", Cause: cause}, want: "api is down: connection refused"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.err.Error(); got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
			if got, want := errors.Is(tt.err, cause), tt.err.Cause != nil; got != want {
				t.Errorf("errors.Is(err, cause): got %v, want %v", got, want)
			}
		})
	}
}

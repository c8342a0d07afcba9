package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

const callerID = "spiffe://demo.trustmesh.dev/ns/default/sa/orders"

func TestHandler(t *testing.T) {
	tests := []struct {
		name       string
		method     string
		path       string
		body       string
		peer       string
		wantStatus int
		wantJSON   map[string]any // compared whole, when set
		wantBody   string         // substring, when set
	}{
		{
			name: "pay", method: "POST", path: "/pay",
			body: `{"order":"ord-1","amount":12}`, peer: callerID,
			wantStatus: http.StatusOK,
			wantJSON:   map[string]any{"paid": true, "order": "ord-1", "caller": callerID},
		},
		{
			name: "pay-without-mesh-identity", method: "POST", path: "/pay",
			body:       `{"order":"ord-1","amount":12}`,
			wantStatus: http.StatusOK,
			wantJSON:   map[string]any{"paid": true, "order": "ord-1", "caller": ""},
		},
		{
			name: "bad-json", method: "POST", path: "/pay", body: `{"order":`,
			wantStatus: http.StatusBadRequest,
			wantJSON:   map[string]any{"error": "invalid JSON body: unexpected EOF"},
		},
		{
			name: "empty-body", method: "POST", path: "/pay",
			wantStatus: http.StatusBadRequest, wantBody: "request body is empty",
		},
		{
			name: "not-an-object", method: "POST", path: "/pay", body: `[1,2]`,
			wantStatus: http.StatusBadRequest, wantBody: "invalid JSON body",
		},
		{
			name: "unknown-field", method: "POST", path: "/pay",
			body:       `{"order":"ord-1","amount":12,"currency":"EUR"}`,
			wantStatus: http.StatusBadRequest, wantBody: `unknown field \"currency\"`,
		},
		{
			name: "trailing-data", method: "POST", path: "/pay",
			body:       `{"order":"ord-1","amount":12} {"order":"ord-2","amount":1}`,
			wantStatus: http.StatusBadRequest, wantBody: "unexpected data after the JSON object",
		},
		{
			name: "missing-order", method: "POST", path: "/pay", body: `{"amount":12}`,
			wantStatus: http.StatusBadRequest, wantBody: `\"order\" is required`,
		},
		{
			name: "zero-amount", method: "POST", path: "/pay", body: `{"order":"ord-1"}`,
			wantStatus: http.StatusBadRequest, wantBody: `\"amount\" must be between 1 and 1000000`,
		},
		{
			name: "negative-amount", method: "POST", path: "/pay", body: `{"order":"ord-1","amount":-5}`,
			wantStatus: http.StatusBadRequest, wantBody: `\"amount\" must be between`,
		},
		{
			name: "fractional-amount", method: "POST", path: "/pay", body: `{"order":"ord-1","amount":1.5}`,
			wantStatus: http.StatusBadRequest, wantBody: "invalid JSON body",
		},
		{
			name: "body-too-large", method: "POST", path: "/pay",
			body:       `{"order":"` + strings.Repeat("x", maxBodyBytes) + `","amount":1}`,
			wantStatus: http.StatusRequestEntityTooLarge, wantBody: "larger than 65536 bytes",
		},
		{
			name: "wrong-method", method: "GET", path: "/pay",
			wantStatus: http.StatusMethodNotAllowed,
		},
		{
			name: "healthz", method: "GET", path: "/healthz",
			wantStatus: http.StatusOK, wantBody: "ok",
		},
		{
			name: "unknown-path", method: "GET", path: "/refund",
			wantStatus: http.StatusNotFound,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHandler(slog.New(slog.DiscardHandler))
			req := httptest.NewRequest(tt.method, tt.path, strings.NewReader(tt.body))
			if tt.peer != "" {
				req.Header.Set(peerIdentityHeader, tt.peer)
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)

			if rec.Code != tt.wantStatus {
				t.Errorf("got status %d, want %d (body %q)", rec.Code, tt.wantStatus, rec.Body)
			}
			if tt.wantJSON != nil {
				var got map[string]any
				if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil {
					t.Fatalf("body %q is not JSON: %v", rec.Body, err)
				}
				if diff := cmp.Diff(tt.wantJSON, got); diff != "" {
					t.Errorf("body mismatch (-want +got):\n%s", diff)
				}
			}
			if !strings.Contains(rec.Body.String(), tt.wantBody) {
				t.Errorf("got body %q, want it to contain %q", rec.Body, tt.wantBody)
			}
		})
	}
}

func TestHandlerLogsOneLinePerRequest(t *testing.T) {
	var buf bytes.Buffer
	h := newHandler(slog.New(slog.NewJSONHandler(&buf, nil)))
	req := httptest.NewRequest("POST", "/pay", strings.NewReader(`{"order":"ord-1","amount":3}`))
	req.Header.Set(peerIdentityHeader, callerID)
	h.ServeHTTP(httptest.NewRecorder(), req)
	h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("POST", "/pay", strings.NewReader("nope")))

	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("got %d log lines, want 2:\n%s", len(lines), buf.String())
	}
	want := []map[string]any{
		{logKeyMethod: "POST", logKeyPath: "/pay", logKeyStatus: 200.0, logKeyPeer: callerID},
		{logKeyMethod: "POST", logKeyPath: "/pay", logKeyStatus: 400.0, logKeyPeer: ""},
	}
	for i, line := range lines {
		var got map[string]any
		if err := json.Unmarshal([]byte(line), &got); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		for k, v := range want[i] {
			if got[k] != v {
				t.Errorf("line %d: got %s=%v, want %v", i, k, got[k], v)
			}
		}
	}
}

func TestParseFlags(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		want    options
		wantErr string
	}{
		{name: "defaults", want: options{listen: "127.0.0.1:8083"}},
		{name: "listen", args: []string{"--listen", "127.0.0.1:9999"}, want: options{listen: "127.0.0.1:9999"}},
		{name: "listen-ipv6-loopback", args: []string{"--listen=[::1]:9999"}, want: options{listen: "[::1]:9999"}},
		{name: "listen-localhost", args: []string{"--listen=localhost:0"}, want: options{listen: "localhost:0"}},
		{name: "listen-all-interfaces", args: []string{"--listen", ":8083"}, wantErr: "not a loopback address"},
		{name: "listen-public", args: []string{"--listen", "192.0.2.1:8083"}, wantErr: "not a loopback address"},
		{name: "listen-no-port", args: []string{"--listen", "127.0.0.1"}, wantErr: "missing port"},
		{name: "unknown-flag", args: []string{"--nope"}, wantErr: "flag provided but not defined"},
		{name: "extra-args", args: []string{"extra"}, wantErr: "unexpected arguments"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseFlags(tt.args, io.Discard)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("got error %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("got error %v, want none", err)
			}
			if got != tt.want {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestRunStopsWhenContextIsCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := run(ctx, []string{"--listen", "127.0.0.1:0"}); err != nil {
		t.Fatalf("got %v, want nil after cancellation", err)
	}
}

func TestRunRejectsBadFlags(t *testing.T) {
	err := run(t.Context(), []string{"--listen", "0.0.0.0:0"})
	if err == nil || !strings.Contains(err.Error(), "not a loopback address") {
		t.Fatalf("got %v, want a loopback error", err)
	}
}

func TestServeShutsDownGracefully(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	srv := &http.Server{Handler: newHandler(slog.New(slog.DiscardHandler))}
	done := make(chan error, 1)
	go func() { done <- serve(ctx, srv, ln) }()

	resp, err := http.Get("http://" + ln.Addr().String() + "/healthz")
	if err != nil {
		t.Fatalf("GET /healthz: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("got status %d, want 200", resp.StatusCode)
	}

	cancel()
	if err := <-done; err != nil {
		t.Errorf("serve: got %v, want nil after cancellation", err)
	}
}

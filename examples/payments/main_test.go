package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/trustmesh/trustmesh/examples/internal/demo"
	"github.com/trustmesh/trustmesh/examples/internal/demo/demotest"
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
			body:       `{"order":"` + strings.Repeat("x", demo.MaxBodyBytes) + `","amount":1}`,
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
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, demotest.NewRequest(tt.method, tt.path, strings.NewReader(tt.body), tt.peer))

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
	h.ServeHTTP(httptest.NewRecorder(), demotest.NewRequest("POST", "/pay", strings.NewReader(`{"order":"ord-1","amount":3}`), callerID))
	h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("POST", "/pay", strings.NewReader("nope")))

	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("got %d log lines, want 2:\n%s", len(lines), buf.String())
	}
	want := []map[string]any{
		{demo.LogKeyMethod: "POST", demo.LogKeyPath: "/pay", demo.LogKeyStatus: 200.0, demo.LogKeyPeer: callerID},
		{demo.LogKeyMethod: "POST", demo.LogKeyPath: "/pay", demo.LogKeyStatus: 400.0, demo.LogKeyPeer: ""},
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
	demotest.CheckParse(t, command(), []demotest.ParseCase{
		{Name: "defaults", WantListen: "127.0.0.1:8083"},
		{Name: "listen", Args: []string{"--listen", "127.0.0.1:9999"}, WantListen: "127.0.0.1:9999"},
		{Name: "listen-ipv6-loopback", Args: []string{"--listen=[::1]:9999"}, WantListen: "[::1]:9999"},
		{Name: "listen-localhost", Args: []string{"--listen=localhost:0"}, WantListen: "localhost:0"},
		{Name: "listen-all-interfaces", Args: []string{"--listen", ":8083"}, WantErr: "not a loopback address"},
		{Name: "listen-public", Args: []string{"--listen", "192.0.2.1:8083"}, WantErr: "not a loopback address"},
		{Name: "listen-no-port", Args: []string{"--listen", "127.0.0.1"}, WantErr: "missing port"},
		{Name: "unknown-flag", Args: []string{"--nope"}, WantErr: "flag provided but not defined"},
		{Name: "extra-args", Args: []string{"extra"}, WantErr: "unexpected arguments"},
	})
}

func TestRunStopsWhenContextIsCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := command().Run(ctx, []string{"--listen", "127.0.0.1:0"}, io.Discard); err != nil {
		t.Fatalf("got %v, want nil after cancellation", err)
	}
}

func TestRunRejectsBadFlags(t *testing.T) {
	err := command().Run(t.Context(), []string{"--listen", "0.0.0.0:0"}, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "not a loopback address") {
		t.Fatalf("got %v, want a loopback error", err)
	}
}

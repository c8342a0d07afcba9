package demo_test

import (
	"bytes"
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

func TestDecodeJSON(t *testing.T) {
	type thing struct {
		N int `json:"n"`
	}
	tests := []struct {
		name       string
		body       string
		want       thing
		wantStatus int // 0: decoded
		wantErr    string
	}{
		{name: "ok", body: `{"n":1}`, want: thing{N: 1}},
		{name: "ok-trailing-space", body: "{\"n\":1}\n", want: thing{N: 1}},
		{name: "empty", wantStatus: http.StatusBadRequest, wantErr: "request body is empty: want a JSON object"},
		{name: "truncated", body: `{"n":`, wantStatus: http.StatusBadRequest, wantErr: "invalid JSON body: unexpected EOF"},
		{name: "unknown-field", body: `{"n":1,"m":2}`, wantStatus: http.StatusBadRequest, wantErr: `invalid JSON body: json: unknown field "m"`},
		{name: "trailing-data", body: `{"n":1} {}`, wantStatus: http.StatusBadRequest, wantErr: "invalid JSON body: unexpected data after the JSON object"},
		{
			name: "too-large", body: `{"n":1,"pad":"` + strings.Repeat("x", demo.MaxBodyBytes) + `"}`,
			wantStatus: http.StatusRequestEntityTooLarge, wantErr: "request body is larger than 65536 bytes",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got thing
			r := httptest.NewRequest("POST", "/", strings.NewReader(tt.body))
			status, err := demo.DecodeJSON(httptest.NewRecorder(), r, &got)
			if status != tt.wantStatus {
				t.Errorf("got status %d, want %d", status, tt.wantStatus)
			}
			var gotErr string
			if err != nil {
				gotErr = err.Error()
			}
			if gotErr != tt.wantErr {
				t.Errorf("got error %q, want %q", gotErr, tt.wantErr)
			}
			if tt.wantErr == "" && got != tt.want {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestWriteJSON(t *testing.T) {
	tests := []struct {
		name       string
		write      func(w http.ResponseWriter)
		wantStatus int
		wantType   string
		wantBody   string
	}{
		{
			name:       "value",
			write:      func(w http.ResponseWriter) { demo.WriteJSON(w, http.StatusCreated, map[string]int{"n": 1}) },
			wantStatus: http.StatusCreated, wantType: "application/json", wantBody: "{\"n\":1}\n",
		},
		{
			name:       "error",
			write:      func(w http.ResponseWriter) { demo.WriteError(w, http.StatusBadRequest, `"n" is required`) },
			wantStatus: http.StatusBadRequest, wantType: "application/json", wantBody: "{\"error\":\"\\\"n\\\" is required\"}\n",
		},
		{
			name:       "cannot-encode",
			write:      func(w http.ResponseWriter) { demo.WriteJSON(w, http.StatusOK, func() {}) },
			wantStatus: http.StatusInternalServerError, wantType: "text/plain; charset=utf-8", wantBody: "internal error\n",
		},
		{
			name:       "healthz",
			write:      func(w http.ResponseWriter) { demo.HandleHealthz(w, nil) },
			wantStatus: http.StatusOK, wantType: "text/plain; charset=utf-8", wantBody: "ok\n",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			tt.write(rec)
			if rec.Code != tt.wantStatus {
				t.Errorf("got status %d, want %d", rec.Code, tt.wantStatus)
			}
			if got := rec.Header().Get("Content-Type"); got != tt.wantType {
				t.Errorf("got Content-Type %q, want %q", got, tt.wantType)
			}
			if got := rec.Body.String(); got != tt.wantBody {
				t.Errorf("got body %q, want %q", got, tt.wantBody)
			}
		})
	}
}

func TestLogRequests(t *testing.T) {
	const peer = "spiffe://demo.trustmesh.dev/ns/default/sa/orders"
	tests := []struct {
		name    string
		handler http.HandlerFunc
		peer    string
		want    map[string]any
	}{
		{
			name:    "implicit-ok",
			handler: func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "hi") },
			peer:    peer,
			want:    map[string]any{"level": "INFO", "msg": "request", demo.LogKeyMethod: "GET", demo.LogKeyPath: "/x", demo.LogKeyStatus: 200.0, demo.LogKeyPeer: peer},
		},
		{
			name: "first-status-wins",
			handler: func(w http.ResponseWriter, _ *http.Request) {
				w.WriteHeader(http.StatusTeapot)
				w.WriteHeader(http.StatusInternalServerError)
			},
			want: map[string]any{"level": "INFO", "msg": "request", demo.LogKeyMethod: "GET", demo.LogKeyPath: "/x", demo.LogKeyStatus: 418.0, demo.LogKeyPeer: ""},
		},
		{
			name: "status-after-body-is-ignored",
			handler: func(w http.ResponseWriter, _ *http.Request) {
				io.WriteString(w, "hi")
				w.WriteHeader(http.StatusInternalServerError)
			},
			want: map[string]any{"level": "INFO", "msg": "request", demo.LogKeyMethod: "GET", demo.LogKeyPath: "/x", demo.LogKeyStatus: 200.0, demo.LogKeyPeer: ""},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			h := demo.LogRequests(slog.New(slog.NewJSONHandler(&buf, nil)), tt.handler)
			req := httptest.NewRequest("GET", "/x?q=1", nil)
			if tt.peer != "" {
				req.Header.Set(demo.PeerIdentityHeader, tt.peer)
			}
			h.ServeHTTP(httptest.NewRecorder(), req)
			if diff := cmp.Diff([]map[string]any{tt.want}, demotest.LogRecords(t, buf.String())); diff != "" {
				t.Errorf("log mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestLogRequestsLetsTheHandlerFlush(t *testing.T) {
	h := demo.LogRequests(slog.New(slog.DiscardHandler), http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		if err := http.NewResponseController(w).Flush(); err != nil {
			t.Errorf("flush: got %v, want nil", err)
		}
	}))
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/", nil))
	if !rec.Flushed {
		t.Error("got no flush, want the handler's flush to reach the writer")
	}
}

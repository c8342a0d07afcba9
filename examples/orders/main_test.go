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

const (
	frontendID = "spiffe://demo.trustmesh.dev/ns/default/sa/frontend"
	ordersID   = "spiffe://demo.trustmesh.dev/ns/default/sa/orders"
	testOrder  = "ord-test"
)

// fakePayments answers like payments behind its proxy: it confirms the order
// it was sent, as called by orders.
func fakePayments(t *testing.T) http.HandlerFunc {
	t.Helper()
	return func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.URL.Path != "/pay" {
			t.Errorf("payments got %s %s, want POST /pay", r.Method, r.URL.Path)
		}
		if got := r.Header.Get(demo.PeerIdentityHeader); got != "" {
			t.Errorf("orders sent %s %q to payments, want none: only the mesh sets it", demo.PeerIdentityHeader, got)
		}
		var req struct {
			Order  string `json:"order"`
			Amount int64  `json:"amount"`
		}
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			t.Errorf("payments got a bad body: %v", err)
		}
		if req.Order != testOrder || req.Amount != 12 {
			t.Errorf("payments got order %q amount %d, want %q 12", req.Order, req.Amount, testOrder)
		}
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"paid": true, "order": "`+req.Order+`", "caller": "`+ordersID+`"}`+"\n")
	}
}

func TestCreateOrder(t *testing.T) {
	const goodBody = `{"item":"book","amount":12}`
	tests := []struct {
		name       string
		body       string
		peer       string
		payments   http.HandlerFunc  // the payments behind the proxy
		transport  http.RoundTripper // replaces the network, when set
		wantStatus int
		wantJSON   map[string]any
		wantCalls  int32 // calls that reached payments
	}{
		{
			name: "created-and-paid", body: goodBody, peer: frontendID,
			wantStatus: http.StatusCreated,
			wantJSON: map[string]any{
				"order":   testOrder,
				"payment": map[string]any{"paid": true, "order": testOrder, "caller": ordersID},
				"caller":  frontendID,
			},
			wantCalls: 1,
		},
		{
			name: "created-without-mesh-identity", body: goodBody,
			wantStatus: http.StatusCreated,
			wantJSON: map[string]any{
				"order":   testOrder,
				"payment": map[string]any{"paid": true, "order": testOrder, "caller": ordersID},
				"caller":  "",
			},
			wantCalls: 1,
		},
		{
			name: "bad-json", body: `{"item":"book",`,
			wantStatus: http.StatusBadRequest,
			wantJSON:   map[string]any{"error": "invalid JSON body: unexpected EOF"},
		},
		{
			name: "empty-body", body: ``,
			wantStatus: http.StatusBadRequest,
			wantJSON:   map[string]any{"error": "request body is empty: want a JSON object"},
		},
		{
			name: "unknown-field", body: `{"item":"book","amount":12,"discount":100}`,
			wantStatus: http.StatusBadRequest,
			wantJSON:   map[string]any{"error": `invalid JSON body: json: unknown field "discount"`},
		},
		{
			name: "amount-as-string", body: `{"item":"book","amount":"12"}`,
			wantStatus: http.StatusBadRequest,
			wantJSON:   map[string]any{"error": "invalid JSON body: json: cannot unmarshal string into Go struct field orderRequest.amount of type int64"},
		},
		{
			name: "missing-item", body: `{"amount":12}`,
			wantStatus: http.StatusBadRequest,
			wantJSON:   map[string]any{"error": `"item" is required`},
		},
		{
			name: "item-too-long", body: `{"item":"` + strings.Repeat("b", 65) + `","amount":12}`,
			wantStatus: http.StatusBadRequest,
			wantJSON:   map[string]any{"error": `"item" is longer than 64 bytes`},
		},
		{
			name: "amount-too-large", body: `{"item":"book","amount":1000001}`,
			wantStatus: http.StatusBadRequest,
			wantJSON:   map[string]any{"error": `"amount" must be between 1 and 1000000`},
		},
		{
			name: "payments-denied-by-mesh", body: goodBody,
			payments:   demotest.Answer(http.StatusForbidden, "denied by policy\n"),
			wantStatus: http.StatusBadGateway,
			wantJSON:   map[string]any{"error": "payment failed: payments answered 403 Forbidden: denied by policy"},
			wantCalls:  1,
		},
		{
			name: "payments-error-json", body: goodBody,
			payments:   demotest.Answer(http.StatusInternalServerError, `{"error":"ledger offline"}`),
			wantStatus: http.StatusBadGateway,
			wantJSON:   map[string]any{"error": "payment failed: payments answered 500 Internal Server Error: ledger offline"},
			wantCalls:  1,
		},
		{
			name: "payments-error-empty", body: goodBody,
			payments:   demotest.Answer(http.StatusServiceUnavailable, ""),
			wantStatus: http.StatusBadGateway,
			wantJSON:   map[string]any{"error": "payment failed: payments answered 503 Service Unavailable: (empty body)"},
			wantCalls:  1,
		},
		{
			name: "payments-redirect-not-followed", body: goodBody,
			payments: func(w http.ResponseWriter, r *http.Request) {
				http.Redirect(w, r, "http://192.0.2.1/pay", http.StatusFound)
			},
			wantStatus: http.StatusBadGateway,
			wantJSON:   map[string]any{"error": "payment failed: payments answered 302 Found: (empty body)"},
			wantCalls:  1,
		},
		{
			name: "payments-invalid-json", body: goodBody,
			payments:   demotest.Answer(http.StatusOK, `{"paid":tru`),
			wantStatus: http.StatusBadGateway,
			wantJSON:   map[string]any{"error": "payment failed: payments answered with invalid JSON"},
			wantCalls:  1,
		},
		{
			name: "payments-not-paid", body: goodBody,
			payments:   demotest.Answer(http.StatusOK, `{"paid":false,"order":"ord-test"}`),
			wantStatus: http.StatusBadGateway,
			wantJSON:   map[string]any{"error": "payment failed: payments did not confirm order ord-test"},
			wantCalls:  1,
		},
		{
			name: "payments-confirms-another-order", body: goodBody,
			payments:   demotest.Answer(http.StatusOK, `{"paid":true,"order":"ord-other"}`),
			wantStatus: http.StatusBadGateway,
			wantJSON:   map[string]any{"error": "payment failed: payments did not confirm order ord-test"},
			wantCalls:  1,
		},
		{
			name: "payments-answer-too-large", body: goodBody,
			payments:   demotest.Answer(http.StatusOK, strings.Repeat(" ", demo.MaxBodyBytes+1)),
			wantStatus: http.StatusBadGateway,
			wantJSON:   map[string]any{"error": "payment failed: payments answered with more than 65536 bytes"},
			wantCalls:  1,
		},
		{
			name: "payments-unreachable", body: goodBody,
			transport:  demotest.RefusingTransport(),
			wantStatus: http.StatusBadGateway,
			wantJSON:   map[string]any{"error": "payment failed: payments is unreachable (is this app's trustmesh proxy running?)"},
		},
		{
			name: "payments-timeout", body: goodBody,
			transport:  demotest.TimingOutTransport(),
			wantStatus: http.StatusBadGateway,
			wantJSON:   map[string]any{"error": "payment failed: payments did not answer within 5s"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			payments := tt.payments
			if payments == nil {
				payments = fakePayments(t)
			}
			ps := demotest.StartDownstream(t, payments)
			h := newHandler(config{
				paymentsURL: ps.URL,
				client:      demotest.Client(paymentsTimeout, tt.transport),
				newOrderID:  func() string { return testOrder },
				logger:      slog.New(slog.DiscardHandler),
			})

			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, demotest.NewRequest("POST", "/orders", strings.NewReader(tt.body), tt.peer))

			if rec.Code != tt.wantStatus {
				t.Errorf("got status %d, want %d (body %q)", rec.Code, tt.wantStatus, rec.Body)
			}
			if got := rec.Header().Get("Content-Type"); got != "application/json" {
				t.Errorf("got Content-Type %q, want application/json", got)
			}
			var got map[string]any
			if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil {
				t.Fatalf("body %q is not JSON: %v", rec.Body, err)
			}
			if diff := cmp.Diff(tt.wantJSON, got); diff != "" {
				t.Errorf("body mismatch (-want +got):\n%s", diff)
			}
			if got := ps.Calls(); got != tt.wantCalls {
				t.Errorf("got %d calls to payments, want %d", got, tt.wantCalls)
			}
		})
	}
}

func TestOtherRoutes(t *testing.T) {
	tests := []struct {
		name       string
		method     string
		path       string
		wantStatus int
		wantBody   string
	}{
		{name: "healthz", method: "GET", path: "/healthz", wantStatus: http.StatusOK, wantBody: "ok\n"},
		{name: "orders-wrong-method", method: "GET", path: "/orders", wantStatus: http.StatusMethodNotAllowed},
		{name: "unknown-path", method: "GET", path: "/pay", wantStatus: http.StatusNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHandler(config{
				paymentsURL: demotest.URL(t, "http://127.0.0.1:1"),
				client:      demo.NewClient(paymentsTimeout),
				newOrderID:  newOrderID,
				logger:      slog.New(slog.DiscardHandler),
			})
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest(tt.method, tt.path, nil))
			if rec.Code != tt.wantStatus {
				t.Errorf("got status %d, want %d", rec.Code, tt.wantStatus)
			}
			if tt.wantBody != "" && rec.Body.String() != tt.wantBody {
				t.Errorf("got body %q, want %q", rec.Body, tt.wantBody)
			}
		})
	}
}

func TestHandlerLogsRequestAndPaymentFailure(t *testing.T) {
	var buf bytes.Buffer
	ps := demotest.StartDownstream(t, demotest.Answer(http.StatusForbidden, "denied by policy"))
	h := newHandler(config{
		paymentsURL: ps.URL,
		client:      demo.NewClient(paymentsTimeout),
		newOrderID:  func() string { return testOrder },
		logger:      slog.New(slog.NewJSONHandler(&buf, nil)),
	})
	h.ServeHTTP(httptest.NewRecorder(), demotest.NewRequest("POST", "/orders", strings.NewReader(`{"item":"book","amount":12}`), frontendID))

	got := demotest.LogRecords(t, buf.String())
	want := []map[string]any{
		{"level": "WARN", "msg": "payment failed", logKeyOrder: testOrder, demo.LogKeyError: "payments answered 403 Forbidden: denied by policy"},
		{"level": "INFO", "msg": "request", demo.LogKeyMethod: "POST", demo.LogKeyPath: "/orders", demo.LogKeyStatus: 502.0, demo.LogKeyPeer: frontendID},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("log mismatch (-want +got):\n%s", diff)
	}
}

func TestNewOrderID(t *testing.T) {
	a, b := newOrderID(), newOrderID()
	if a == b {
		t.Errorf("got the same id %q twice, want fresh ids", a)
	}
	if !strings.HasPrefix(a, "ord-") || len(a) != len("ord-")+12 {
		t.Errorf("got id %q, want ord- and 12 characters", a)
	}
}

func TestParseFlags(t *testing.T) {
	demotest.CheckParse(t, command(), []demotest.ParseCase{
		{
			Name: "defaults", Args: []string{"--payments-url", "http://127.0.0.1:15003"},
			WantListen: "127.0.0.1:8082", WantDownstream: "http://127.0.0.1:15003",
		},
		{
			Name: "all", Args: []string{"--listen=127.0.0.1:9000", "--payments-url=http://localhost:15003/"},
			WantListen: "127.0.0.1:9000", WantDownstream: "http://localhost:15003/",
		},
		{Name: "payments-url-missing", WantErr: "--payments-url is required"},
		{Name: "payments-url-https", Args: []string{"--payments-url", "https://127.0.0.1:15003"}, WantErr: "want an http:// URL"},
		{Name: "payments-url-remote", Args: []string{"--payments-url", "http://payments.example:8083"}, WantErr: "not a loopback address"},
		{Name: "payments-url-no-port", Args: []string{"--payments-url", "http://127.0.0.1"}, WantErr: "missing port"},
		{Name: "payments-url-query", Args: []string{"--payments-url", "http://127.0.0.1:15003?x=1"}, WantErr: "want no user info, query or fragment"},
		{Name: "payments-url-garbage", Args: []string{"--payments-url", "http://[::1"}, WantErr: "--payments-url"},
		{Name: "listen-public", Args: []string{"--listen", "0.0.0.0:8082", "--payments-url", "http://127.0.0.1:15003"}, WantErr: "not a loopback address"},
		{Name: "unknown-flag", Args: []string{"--orders-url", "x"}, WantErr: "flag provided but not defined"},
		{Name: "extra-args", Args: []string{"--payments-url", "http://127.0.0.1:15003", "now"}, WantErr: "unexpected arguments"},
	})
}

func TestRunStopsWhenContextIsCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := command().Run(ctx, []string{"--listen", "127.0.0.1:0", "--payments-url", "http://127.0.0.1:15003"}, io.Discard); err != nil {
		t.Fatalf("got %v, want nil after cancellation", err)
	}
}

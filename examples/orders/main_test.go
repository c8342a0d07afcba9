package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/google/go-cmp/cmp"
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
		if got := r.Header.Get(peerIdentityHeader); got != "" {
			t.Errorf("orders sent %s %q to payments, want none: only the mesh sets it", peerIdentityHeader, got)
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

// answer returns a payments handler that always answers status and body.
func answer(status int, body string) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(status)
		io.WriteString(w, body)
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// timeoutError is a net.Error that timed out.
type timeoutError struct{}

func (timeoutError) Error() string   { return "i/o timeout" }
func (timeoutError) Timeout() bool   { return true }
func (timeoutError) Temporary() bool { return true }

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
			payments:   answer(http.StatusForbidden, "denied by policy\n"),
			wantStatus: http.StatusBadGateway,
			wantJSON:   map[string]any{"error": "payment failed: payments answered 403 Forbidden: denied by policy"},
			wantCalls:  1,
		},
		{
			name: "payments-error-json", body: goodBody,
			payments:   answer(http.StatusInternalServerError, `{"error":"ledger offline"}`),
			wantStatus: http.StatusBadGateway,
			wantJSON:   map[string]any{"error": "payment failed: payments answered 500 Internal Server Error: ledger offline"},
			wantCalls:  1,
		},
		{
			name: "payments-error-empty", body: goodBody,
			payments:   answer(http.StatusServiceUnavailable, ""),
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
			payments:   answer(http.StatusOK, `{"paid":tru`),
			wantStatus: http.StatusBadGateway,
			wantJSON:   map[string]any{"error": "payment failed: payments answered with invalid JSON"},
			wantCalls:  1,
		},
		{
			name: "payments-not-paid", body: goodBody,
			payments:   answer(http.StatusOK, `{"paid":false,"order":"ord-test"}`),
			wantStatus: http.StatusBadGateway,
			wantJSON:   map[string]any{"error": "payment failed: payments did not confirm order ord-test"},
			wantCalls:  1,
		},
		{
			name: "payments-confirms-another-order", body: goodBody,
			payments:   answer(http.StatusOK, `{"paid":true,"order":"ord-other"}`),
			wantStatus: http.StatusBadGateway,
			wantJSON:   map[string]any{"error": "payment failed: payments did not confirm order ord-test"},
			wantCalls:  1,
		},
		{
			name: "payments-answer-too-large", body: goodBody,
			payments:   answer(http.StatusOK, strings.Repeat(" ", maxBodyBytes+1)),
			wantStatus: http.StatusBadGateway,
			wantJSON:   map[string]any{"error": "payment failed: payments answered with more than 65536 bytes"},
			wantCalls:  1,
		},
		{
			name: "payments-unreachable", body: goodBody,
			transport: roundTripFunc(func(*http.Request) (*http.Response, error) {
				return nil, &net.OpError{Op: "dial", Net: "tcp", Err: errors.New("connection refused")}
			}),
			wantStatus: http.StatusBadGateway,
			wantJSON:   map[string]any{"error": "payment failed: payments is unreachable (is this app's trustmesh proxy running?)"},
		},
		{
			name: "payments-timeout", body: goodBody,
			transport: roundTripFunc(func(*http.Request) (*http.Response, error) {
				return nil, timeoutError{}
			}),
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
			var calls atomic.Int32
			ps := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				calls.Add(1)
				payments(w, r)
			}))
			t.Cleanup(ps.Close)
			client := newClient()
			if tt.transport != nil {
				client.Transport = tt.transport
			}
			h := newHandler(config{
				paymentsURL: mustParseURL(t, ps.URL),
				client:      client,
				newOrderID:  func() string { return testOrder },
				logger:      slog.New(slog.DiscardHandler),
			})

			req := httptest.NewRequest("POST", "/orders", strings.NewReader(tt.body))
			if tt.peer != "" {
				req.Header.Set(peerIdentityHeader, tt.peer)
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)

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
			if got := calls.Load(); got != tt.wantCalls {
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
				paymentsURL: mustParseURL(t, "http://127.0.0.1:1"),
				client:      newClient(),
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
	ps := httptest.NewServer(answer(http.StatusForbidden, "denied by policy"))
	t.Cleanup(ps.Close)
	h := newHandler(config{
		paymentsURL: mustParseURL(t, ps.URL),
		client:      newClient(),
		newOrderID:  func() string { return testOrder },
		logger:      slog.New(slog.NewJSONHandler(&buf, nil)),
	})
	req := httptest.NewRequest("POST", "/orders", strings.NewReader(`{"item":"book","amount":12}`))
	req.Header.Set(peerIdentityHeader, frontendID)
	h.ServeHTTP(httptest.NewRecorder(), req)

	var got []map[string]any
	for line := range strings.Lines(buf.String()) {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		delete(m, "time")
		delete(m, logKeyDuration)
		got = append(got, m)
	}
	want := []map[string]any{
		{"level": "WARN", "msg": "payment failed", logKeyOrder: testOrder, logKeyError: "payments answered 403 Forbidden: denied by policy"},
		{"level": "INFO", "msg": "request", logKeyMethod: "POST", logKeyPath: "/orders", logKeyStatus: 502.0, logKeyPeer: frontendID},
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
	tests := []struct {
		name       string
		args       []string
		wantListen string
		wantPayURL string
		wantErr    string
	}{
		{
			name: "defaults", args: []string{"--payments-url", "http://127.0.0.1:15003"},
			wantListen: "127.0.0.1:8082", wantPayURL: "http://127.0.0.1:15003",
		},
		{
			name: "all", args: []string{"--listen=127.0.0.1:9000", "--payments-url=http://localhost:15003/"},
			wantListen: "127.0.0.1:9000", wantPayURL: "http://localhost:15003/",
		},
		{name: "payments-url-missing", wantErr: "--payments-url is required"},
		{name: "payments-url-https", args: []string{"--payments-url", "https://127.0.0.1:15003"}, wantErr: "want an http:// URL"},
		{name: "payments-url-remote", args: []string{"--payments-url", "http://payments.example:8083"}, wantErr: "not a loopback address"},
		{name: "payments-url-no-port", args: []string{"--payments-url", "http://127.0.0.1"}, wantErr: "missing port"},
		{name: "payments-url-query", args: []string{"--payments-url", "http://127.0.0.1:15003?x=1"}, wantErr: "want no user info, query or fragment"},
		{name: "payments-url-garbage", args: []string{"--payments-url", "http://[::1"}, wantErr: "--payments-url"},
		{name: "listen-public", args: []string{"--listen", "0.0.0.0:8082", "--payments-url", "http://127.0.0.1:15003"}, wantErr: "not a loopback address"},
		{name: "unknown-flag", args: []string{"--orders-url", "x"}, wantErr: "flag provided but not defined"},
		{name: "extra-args", args: []string{"--payments-url", "http://127.0.0.1:15003", "now"}, wantErr: "unexpected arguments"},
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
			if got.listen != tt.wantListen || got.paymentsURL.String() != tt.wantPayURL {
				t.Errorf("got listen %q payments %q, want %q %q", got.listen, got.paymentsURL, tt.wantListen, tt.wantPayURL)
			}
		})
	}
}

func TestRunStopsWhenContextIsCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := run(ctx, []string{"--listen", "127.0.0.1:0", "--payments-url", "http://127.0.0.1:15003"}); err != nil {
		t.Fatalf("got %v, want nil after cancellation", err)
	}
}

func TestServeShutsDownGracefully(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	srv := &http.Server{Handler: http.HandlerFunc(handleHealthz)}
	done := make(chan error, 1)
	go func() { done <- serve(ctx, srv, ln) }()

	resp, err := http.Get("http://" + ln.Addr().String() + "/healthz")
	if err != nil {
		t.Fatalf("GET /healthz: %v", err)
	}
	resp.Body.Close()
	cancel()
	if err := <-done; err != nil {
		t.Errorf("serve: got %v, want nil after cancellation", err)
	}
}

func mustParseURL(t *testing.T, raw string) *url.URL {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

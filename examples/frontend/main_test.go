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
	userID     = "spiffe://demo.trustmesh.dev/ns/default/sa/user"
	frontendID = "spiffe://demo.trustmesh.dev/ns/default/sa/frontend"
)

// ordersAnswer is what the fake orders answers when all goes well.
const ordersAnswer = `{"order":"ord-1","payment":{"paid":true,"order":"ord-1","caller":"spiffe://demo.trustmesh.dev/ns/default/sa/orders"},"caller":"` + frontendID + `"}` + "\n"

// fakeOrders answers like orders behind its proxy: it checks it was asked for
// one book at 12 and creates the order.
func fakeOrders(t *testing.T) http.HandlerFunc {
	t.Helper()
	return func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.URL.Path != "/orders" {
			t.Errorf("orders got %s %s, want POST /orders", r.Method, r.URL.Path)
		}
		if got := r.Header.Get(peerIdentityHeader); got != "" {
			t.Errorf("frontend sent %s %q to orders, want none: only the mesh sets it", peerIdentityHeader, got)
		}
		var req struct {
			Item   string `json:"item"`
			Amount int64  `json:"amount"`
		}
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			t.Errorf("orders got a bad body: %v", err)
		}
		if req.Item != "book" || req.Amount != 12 {
			t.Errorf("orders got item %q amount %d, want book 12", req.Item, req.Amount)
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusCreated)
		io.WriteString(w, ordersAnswer)
	}
}

// answer returns an orders handler that always answers status and body.
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

func TestHandler(t *testing.T) {
	const wantIndented = `{
  "order": "ord-1",
  "payment": {
    "paid": true,
    "order": "ord-1",
    "caller": "spiffe://demo.trustmesh.dev/ns/default/sa/orders"
  },
  "caller": "` + frontendID + `"
}
`
	tests := []struct {
		name       string
		target     string
		peer       string
		orders     http.HandlerFunc  // the orders behind the proxy
		transport  http.RoundTripper // replaces the network, when set
		wantStatus int
		wantBody   string
		wantCalls  int32 // calls that reached orders
	}{
		{
			name: "buy", target: "/buy?item=book&amount=12", peer: userID,
			wantStatus: http.StatusOK,
			wantBody:   wantIndented + "frontend saw caller: " + userID + "\n",
			wantCalls:  1,
		},
		{
			name: "buy-without-mesh-identity", target: "/buy?item=book&amount=12",
			wantStatus: http.StatusOK,
			wantBody:   wantIndented + "frontend saw caller: (none: not called through the mesh)\n",
			wantCalls:  1,
		},
		{
			name: "missing-item", target: "/buy?amount=12",
			wantStatus: http.StatusBadRequest,
			wantBody:   "bad request: \"item\" is required\ntry /buy?item=book&amount=12\n",
		},
		{
			name: "item-too-long", target: "/buy?amount=12&item=" + strings.Repeat("b", 65),
			wantStatus: http.StatusBadRequest,
			wantBody:   "bad request: \"item\" is longer than 64 bytes\ntry /buy?item=book&amount=12\n",
		},
		{
			name: "missing-amount", target: "/buy?item=book",
			wantStatus: http.StatusBadRequest,
			wantBody:   "bad request: \"amount\" must be a whole number between 1 and 1000000\ntry /buy?item=book&amount=12\n",
		},
		{
			name: "amount-not-a-number", target: "/buy?item=book&amount=twelve",
			wantStatus: http.StatusBadRequest,
			wantBody:   "bad request: \"amount\" must be a whole number between 1 and 1000000\ntry /buy?item=book&amount=12\n",
		},
		{
			name: "amount-negative", target: "/buy?item=book&amount=-3",
			wantStatus: http.StatusBadRequest,
			wantBody:   "bad request: \"amount\" must be a whole number between 1 and 1000000\ntry /buy?item=book&amount=12\n",
		},
		{
			name: "amount-overflow", target: "/buy?item=book&amount=99999999999999999999",
			wantStatus: http.StatusBadRequest,
			wantBody:   "bad request: \"amount\" must be a whole number between 1 and 1000000\ntry /buy?item=book&amount=12\n",
		},
		{
			name: "bad-query-encoding", target: "/buy?item=%zz&amount=12",
			wantStatus: http.StatusBadRequest,
			wantBody:   "bad request: \"item\" is required\ntry /buy?item=book&amount=12\n",
		},
		{
			name: "orders-reports-payment-failure", target: "/buy?item=book&amount=12", peer: userID,
			orders:     answer(http.StatusBadGateway, `{"error":"payment failed: payments answered 403 Forbidden: denied by policy"}`),
			wantStatus: http.StatusBadGateway,
			wantBody: "order failed: orders answered 502 Bad Gateway: payment failed: payments answered 403 Forbidden: denied by policy\n" +
				"frontend saw caller: " + userID + "\n",
			wantCalls: 1,
		},
		{
			name: "orders-denied-by-mesh", target: "/buy?item=book&amount=12", peer: userID,
			orders:     answer(http.StatusForbidden, "denied by policy\n"),
			wantStatus: http.StatusBadGateway,
			wantBody:   "order failed: orders answered 403 Forbidden: denied by policy\nfrontend saw caller: " + userID + "\n",
			wantCalls:  1,
		},
		{
			name: "orders-invalid-json", target: "/buy?item=book&amount=12", peer: userID,
			orders:     answer(http.StatusCreated, `{"order":`),
			wantStatus: http.StatusBadGateway,
			wantBody:   "order failed: orders answered with invalid JSON\nfrontend saw caller: " + userID + "\n",
			wantCalls:  1,
		},
		{
			name: "orders-answer-too-large", target: "/buy?item=book&amount=12", peer: userID,
			orders:     answer(http.StatusCreated, strings.Repeat(" ", maxBodyBytes+1)),
			wantStatus: http.StatusBadGateway,
			wantBody:   "order failed: orders answered with more than 65536 bytes\nfrontend saw caller: " + userID + "\n",
			wantCalls:  1,
		},
		{
			name: "orders-unreachable", target: "/buy?item=book&amount=12", peer: userID,
			transport: roundTripFunc(func(*http.Request) (*http.Response, error) {
				return nil, &net.OpError{Op: "dial", Net: "tcp", Err: errors.New("connection refused")}
			}),
			wantStatus: http.StatusBadGateway,
			wantBody:   "order failed: orders is unreachable (is this app's trustmesh proxy running?)\nfrontend saw caller: " + userID + "\n",
		},
		{
			name: "orders-timeout", target: "/buy?item=book&amount=12", peer: userID,
			transport: roundTripFunc(func(*http.Request) (*http.Response, error) {
				return nil, timeoutError{}
			}),
			wantStatus: http.StatusBadGateway,
			wantBody:   "order failed: orders did not answer within 10s\nfrontend saw caller: " + userID + "\n",
		},
		{
			name: "index", target: "/", peer: userID,
			wantStatus: http.StatusOK,
			wantBody:   indexText + "frontend saw caller: " + userID + "\n",
		},
		{name: "healthz", target: "/healthz", wantStatus: http.StatusOK, wantBody: "ok\n"},
		{name: "unknown-path", target: "/admin", wantStatus: http.StatusNotFound, wantBody: "404 page not found\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			orders := tt.orders
			if orders == nil {
				orders = fakeOrders(t)
			}
			var calls atomic.Int32
			upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				calls.Add(1)
				orders(w, r)
			}))
			t.Cleanup(upstream.Close)
			client := newClient()
			if tt.transport != nil {
				client.Transport = tt.transport
			}
			h := newHandler(config{
				ordersURL: mustParseURL(t, upstream.URL),
				client:    client,
				logger:    slog.New(slog.DiscardHandler),
			})

			req := httptest.NewRequest("GET", tt.target, nil)
			if tt.peer != "" {
				req.Header.Set(peerIdentityHeader, tt.peer)
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)

			if rec.Code != tt.wantStatus {
				t.Errorf("got status %d, want %d (body %q)", rec.Code, tt.wantStatus, rec.Body)
			}
			if diff := cmp.Diff(tt.wantBody, rec.Body.String()); diff != "" {
				t.Errorf("body mismatch (-want +got):\n%s", diff)
			}
			if got := rec.Header().Get("Content-Type"); got != "text/plain; charset=utf-8" {
				t.Errorf("got Content-Type %q, want text/plain; charset=utf-8", got)
			}
			if got := calls.Load(); got != tt.wantCalls {
				t.Errorf("got %d calls to orders, want %d", got, tt.wantCalls)
			}
		})
	}
}

func TestWrongMethod(t *testing.T) {
	h := newHandler(config{
		ordersURL: mustParseURL(t, "http://127.0.0.1:1"),
		client:    newClient(),
		logger:    slog.New(slog.DiscardHandler),
	})
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("POST", "/buy?item=book&amount=12", nil))
	if rec.Code != http.StatusMethodNotAllowed {
		t.Errorf("got status %d, want %d", rec.Code, http.StatusMethodNotAllowed)
	}
}

func TestHandlerLogsRequestAndOrderFailure(t *testing.T) {
	var buf bytes.Buffer
	upstream := httptest.NewServer(answer(http.StatusForbidden, "denied by policy"))
	t.Cleanup(upstream.Close)
	h := newHandler(config{
		ordersURL: mustParseURL(t, upstream.URL),
		client:    newClient(),
		logger:    slog.New(slog.NewJSONHandler(&buf, nil)),
	})
	req := httptest.NewRequest("GET", "/buy?item=book&amount=12", nil)
	req.Header.Set(peerIdentityHeader, userID)
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
		{"level": "WARN", "msg": "order failed", logKeyError: "orders answered 403 Forbidden: denied by policy"},
		{"level": "INFO", "msg": "request", logKeyMethod: "GET", logKeyPath: "/buy", logKeyStatus: 502.0, logKeyPeer: userID},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("log mismatch (-want +got):\n%s", diff)
	}
}

func TestParseFlags(t *testing.T) {
	tests := []struct {
		name          string
		args          []string
		wantListen    string
		wantOrdersURL string
		wantErr       string
	}{
		{
			name: "defaults", args: []string{"--orders-url", "http://127.0.0.1:15002"},
			wantListen: "127.0.0.1:8081", wantOrdersURL: "http://127.0.0.1:15002",
		},
		{
			name: "all", args: []string{"--listen=[::1]:9000", "--orders-url=http://[::1]:15002"},
			wantListen: "[::1]:9000", wantOrdersURL: "http://[::1]:15002",
		},
		{name: "orders-url-missing", wantErr: "--orders-url is required"},
		{name: "orders-url-no-scheme", args: []string{"--orders-url", "127.0.0.1:15002"}, wantErr: "--orders-url"},
		{name: "orders-url-remote", args: []string{"--orders-url", "http://10.0.0.7:8082"}, wantErr: "not a loopback address"},
		{name: "orders-url-user", args: []string{"--orders-url", "http://me@127.0.0.1:15002"}, wantErr: "want no user info"},
		{name: "listen-public", args: []string{"--listen", ":8081", "--orders-url", "http://127.0.0.1:15002"}, wantErr: "not a loopback address"},
		{name: "unknown-flag", args: []string{"--payments-url", "x"}, wantErr: "flag provided but not defined"},
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
			if got.listen != tt.wantListen || got.ordersURL.String() != tt.wantOrdersURL {
				t.Errorf("got listen %q orders %q, want %q %q", got.listen, got.ordersURL, tt.wantListen, tt.wantOrdersURL)
			}
		})
	}
}

func TestRunStopsWhenContextIsCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := run(ctx, []string{"--listen", "127.0.0.1:0", "--orders-url", "http://127.0.0.1:15002"}); err != nil {
		t.Fatalf("got %v, want nil after cancellation", err)
	}
}

func TestRunHelpIsNotAnError(t *testing.T) {
	if err := run(t.Context(), []string{"-h"}); err != nil {
		t.Fatalf("got %v, want nil for -h", err)
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

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
		if got := r.Header.Get(demo.PeerIdentityHeader); got != "" {
			t.Errorf("frontend sent %s %q to orders, want none: only the mesh sets it", demo.PeerIdentityHeader, got)
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
			orders:     demotest.Answer(http.StatusBadGateway, `{"error":"payment failed: payments answered 403 Forbidden: denied by policy"}`),
			wantStatus: http.StatusBadGateway,
			wantBody: "order failed: orders answered 502 Bad Gateway: payment failed: payments answered 403 Forbidden: denied by policy\n" +
				"frontend saw caller: " + userID + "\n",
			wantCalls: 1,
		},
		{
			name: "orders-denied-by-mesh", target: "/buy?item=book&amount=12", peer: userID,
			orders:     demotest.Answer(http.StatusForbidden, "denied by policy\n"),
			wantStatus: http.StatusBadGateway,
			wantBody:   "order failed: orders answered 403 Forbidden: denied by policy\nfrontend saw caller: " + userID + "\n",
			wantCalls:  1,
		},
		{
			name: "orders-invalid-json", target: "/buy?item=book&amount=12", peer: userID,
			orders:     demotest.Answer(http.StatusCreated, `{"order":`),
			wantStatus: http.StatusBadGateway,
			wantBody:   "order failed: orders answered with invalid JSON\nfrontend saw caller: " + userID + "\n",
			wantCalls:  1,
		},
		{
			name: "orders-answer-too-large", target: "/buy?item=book&amount=12", peer: userID,
			orders:     demotest.Answer(http.StatusCreated, strings.Repeat(" ", demo.MaxBodyBytes+1)),
			wantStatus: http.StatusBadGateway,
			wantBody:   "order failed: orders answered with more than 65536 bytes\nfrontend saw caller: " + userID + "\n",
			wantCalls:  1,
		},
		{
			name: "orders-unreachable", target: "/buy?item=book&amount=12", peer: userID,
			transport:  demotest.RefusingTransport(),
			wantStatus: http.StatusBadGateway,
			wantBody:   "order failed: orders is unreachable (is this app's trustmesh proxy running?)\nfrontend saw caller: " + userID + "\n",
		},
		{
			name: "orders-timeout", target: "/buy?item=book&amount=12", peer: userID,
			transport:  demotest.TimingOutTransport(),
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
			upstream := demotest.StartDownstream(t, orders)
			h := newHandler(config{
				ordersURL: upstream.URL,
				client:    demotest.Client(ordersTimeout, tt.transport),
				logger:    slog.New(slog.DiscardHandler),
			})

			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, demotest.NewRequest("GET", tt.target, nil, tt.peer))

			if rec.Code != tt.wantStatus {
				t.Errorf("got status %d, want %d (body %q)", rec.Code, tt.wantStatus, rec.Body)
			}
			if diff := cmp.Diff(tt.wantBody, rec.Body.String()); diff != "" {
				t.Errorf("body mismatch (-want +got):\n%s", diff)
			}
			if got := rec.Header().Get("Content-Type"); got != "text/plain; charset=utf-8" {
				t.Errorf("got Content-Type %q, want text/plain; charset=utf-8", got)
			}
			if got := upstream.Calls(); got != tt.wantCalls {
				t.Errorf("got %d calls to orders, want %d", got, tt.wantCalls)
			}
		})
	}
}

func TestWrongMethod(t *testing.T) {
	h := newHandler(config{
		ordersURL: demotest.URL(t, "http://127.0.0.1:1"),
		client:    demo.NewClient(ordersTimeout),
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
	upstream := demotest.StartDownstream(t, demotest.Answer(http.StatusForbidden, "denied by policy"))
	h := newHandler(config{
		ordersURL: upstream.URL,
		client:    demo.NewClient(ordersTimeout),
		logger:    slog.New(slog.NewJSONHandler(&buf, nil)),
	})
	h.ServeHTTP(httptest.NewRecorder(), demotest.NewRequest("GET", "/buy?item=book&amount=12", nil, userID))

	got := demotest.LogRecords(t, buf.String())
	want := []map[string]any{
		{"level": "WARN", "msg": "order failed", demo.LogKeyError: "orders answered 403 Forbidden: denied by policy"},
		{"level": "INFO", "msg": "request", demo.LogKeyMethod: "GET", demo.LogKeyPath: "/buy", demo.LogKeyStatus: 502.0, demo.LogKeyPeer: userID},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("log mismatch (-want +got):\n%s", diff)
	}
}

func TestParseFlags(t *testing.T) {
	demotest.CheckParse(t, command(), []demotest.ParseCase{
		{
			Name: "defaults", Args: []string{"--orders-url", "http://127.0.0.1:15002"},
			WantListen: "127.0.0.1:8081", WantDownstream: "http://127.0.0.1:15002",
		},
		{
			Name: "all", Args: []string{"--listen=[::1]:9000", "--orders-url=http://[::1]:15002"},
			WantListen: "[::1]:9000", WantDownstream: "http://[::1]:15002",
		},
		{Name: "orders-url-missing", WantErr: "--orders-url is required"},
		{Name: "orders-url-no-scheme", Args: []string{"--orders-url", "127.0.0.1:15002"}, WantErr: "--orders-url"},
		{Name: "orders-url-remote", Args: []string{"--orders-url", "http://10.0.0.7:8082"}, WantErr: "not a loopback address"},
		{Name: "orders-url-user", Args: []string{"--orders-url", "http://me@127.0.0.1:15002"}, WantErr: "want no user info"},
		{Name: "listen-public", Args: []string{"--listen", ":8081", "--orders-url", "http://127.0.0.1:15002"}, WantErr: "not a loopback address"},
		{Name: "unknown-flag", Args: []string{"--payments-url", "x"}, WantErr: "flag provided but not defined"},
	})
}

func TestRunStopsWhenContextIsCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := command().Run(ctx, []string{"--listen", "127.0.0.1:0", "--orders-url", "http://127.0.0.1:15002"}, io.Discard); err != nil {
		t.Fatalf("got %v, want nil after cancellation", err)
	}
}

func TestRunHelpIsNotAnError(t *testing.T) {
	if err := command().Run(t.Context(), []string{"-h"}, io.Discard); err != nil {
		t.Fatalf("got %v, want nil for -h", err)
	}
}

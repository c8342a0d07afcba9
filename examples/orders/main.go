// Command orders is the middle hop of the trustmesh demo (frontend → orders →
// payments). It creates an order, pays for it by calling payments, and says
// which SPIFFE ID asked for the order.
//
// It speaks plaintext HTTP on loopback only. Its trustmesh proxy terminates
// mTLS in front of it and sets the X-Trustmesh-Peer-Identity header to the
// caller's verified SPIFFE ID; it reaches payments through the proxy's local
// outbound listener (--payments-url), which opens the mTLS connection and
// checks payments' SPIFFE ID. The app itself holds no keys.
package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/trustmesh/trustmesh/examples/internal/demo"
)

const (
	serviceName = "orders"

	// maxAmount bounds the amount of one order.
	maxAmount = 1_000_000
	// maxItemLen bounds the length of an item name, in bytes.
	maxItemLen = 64

	// paymentsTimeout bounds one call to payments, connection included.
	paymentsTimeout = 5 * time.Second
)

// logKeyOrder is the log attribute key of an order id.
const logKeyOrder = "order"

func main() {
	os.Exit(command().Main()) //nolint:forbidigo // main is the one place that exits (STYLE.md rule 4)
}

// command is the orders command line: --listen, and --payments-url, the local
// trustmesh outbound listener for payments.
func command() demo.Command {
	return demo.Command{
		Name:              serviceName,
		DefaultListen:     "127.0.0.1:8082",
		Downstream:        "payments",
		DownstreamExample: "http://127.0.0.1:15003",
		DownstreamTimeout: paymentsTimeout,
		NewHandler: func(opts demo.Options, logger *slog.Logger) http.Handler {
			return newHandler(config{
				paymentsURL: opts.Downstream,
				client:      demo.NewClient(paymentsTimeout),
				newOrderID:  newOrderID,
				logger:      logger,
			})
		},
	}
}

// newOrderID returns a random order id such as "ord-k3jz7q2mxa4b".
func newOrderID() string {
	return "ord-" + strings.ToLower(rand.Text()[:12])
}

// config is what the orders API needs.
type config struct {
	// paymentsURL is payments' base URL as this app reaches it: the local
	// outbound listener of its trustmesh proxy.
	paymentsURL *url.URL
	// client calls payments; it has a timeout.
	client *http.Client
	// newOrderID returns a fresh order id.
	newOrderID func() string
	// logger gets one line per request and the cause of each failed payment.
	logger *slog.Logger
}

type api struct {
	payments   demo.Downstream
	newOrderID func() string
	logger     *slog.Logger
}

// newHandler returns the orders API.
func newHandler(cfg config) http.Handler {
	a := &api{
		payments: demo.Downstream{
			Name:   "payments",
			URL:    cfg.paymentsURL.JoinPath("pay").String(),
			Client: cfg.client,
		},
		newOrderID: cfg.newOrderID,
		logger:     cfg.logger,
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", demo.HandleHealthz)
	mux.HandleFunc("POST /orders", a.handleCreate)
	return demo.LogRequests(cfg.logger, mux)
}

type orderRequest struct {
	Item   string `json:"item"`
	Amount int64  `json:"amount"`
}

type orderResponse struct {
	Order   string          `json:"order"`
	Payment json.RawMessage `json:"payment"`
	Caller  string          `json:"caller"`
}

func (a *api) handleCreate(w http.ResponseWriter, r *http.Request) {
	var req orderRequest
	if status, err := demo.DecodeJSON(w, r, &req); err != nil {
		demo.WriteError(w, status, err.Error())
		return
	}
	switch {
	case req.Item == "":
		demo.WriteError(w, http.StatusBadRequest, `"item" is required`)
		return
	case len(req.Item) > maxItemLen:
		demo.WriteError(w, http.StatusBadRequest, fmt.Sprintf(`"item" is longer than %d bytes`, maxItemLen))
		return
	case req.Amount <= 0 || req.Amount > maxAmount:
		demo.WriteError(w, http.StatusBadRequest, fmt.Sprintf(`"amount" must be between 1 and %d`, maxAmount))
		return
	}

	id := a.newOrderID()
	payment, err := a.pay(r.Context(), id, req.Amount)
	if err != nil {
		a.logger.LogAttrs(r.Context(), slog.LevelWarn, "payment failed",
			slog.String(logKeyOrder, id), slog.String(demo.LogKeyError, err.Error()))
		reason := "payments failed"
		if ce, ok := errors.AsType[*demo.CallError](err); ok {
			reason = ce.Reason
		}
		demo.WriteError(w, http.StatusBadGateway, "payment failed: "+reason)
		return
	}
	demo.WriteJSON(w, http.StatusCreated, orderResponse{
		Order:   id,
		Payment: payment,
		Caller:  r.Header.Get(demo.PeerIdentityHeader),
	})
}

// pay asks payments to pay for the order and returns its confirmation, as
// payments wrote it. Every error is a *demo.CallError.
func (a *api) pay(ctx context.Context, order string, amount int64) (json.RawMessage, error) {
	raw, err := a.payments.Post(ctx, "payment", struct {
		Order  string `json:"order"`
		Amount int64  `json:"amount"`
	}{order, amount}, http.StatusOK)
	if err != nil {
		return nil, err
	}
	var confirmation struct {
		Paid  bool   `json:"paid"`
		Order string `json:"order"`
	}
	if err := json.Unmarshal(raw, &confirmation); err != nil {
		return nil, &demo.CallError{Reason: "payments answered with invalid JSON", Cause: err}
	}
	if !confirmation.Paid || confirmation.Order != order {
		return nil, &demo.CallError{Reason: fmt.Sprintf("payments did not confirm order %s", order)}
	}
	var compact bytes.Buffer
	if err := json.Compact(&compact, raw); err != nil {
		return nil, &demo.CallError{Reason: "payments answered with invalid JSON", Cause: err}
	}
	return compact.Bytes(), nil
}

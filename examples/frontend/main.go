// Command frontend is the first hop of the trustmesh demo (frontend → orders →
// payments): a plain-text page and a /buy endpoint that places an order by
// calling orders.
//
// It speaks plaintext HTTP on loopback only. Its trustmesh proxy terminates
// TLS in front of it and sets the X-Trustmesh-Peer-Identity header to the
// caller's verified SPIFFE ID, if the caller has one; it reaches orders
// through the proxy's local outbound listener (--orders-url), which opens the
// mTLS connection and checks orders' SPIFFE ID. The app itself holds no keys.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"time"

	"github.com/trustmesh/trustmesh/examples/internal/demo"
)

const (
	serviceName = "frontend"

	// maxAmount bounds the amount of one order.
	maxAmount = 1_000_000
	// maxItemLen bounds the length of an item name, in bytes.
	maxItemLen = 64

	// ordersTimeout bounds one call to orders. It is longer than orders'
	// own timeout for payments, so that orders can say what went wrong.
	ordersTimeout = 10 * time.Second

	// noCaller is shown when a request did not come through the mesh.
	noCaller = "(none: not called through the mesh)"
)

func main() {
	os.Exit(command().Main()) //nolint:forbidigo // main is the one place that exits (STYLE.md rule 4)
}

// command is the frontend command line: --listen, and --orders-url, the local
// trustmesh outbound listener for orders.
func command() demo.Command {
	return demo.Command{
		Name:              serviceName,
		DefaultListen:     "127.0.0.1:8081",
		Downstream:        "orders",
		DownstreamExample: "http://127.0.0.1:15002",
		DownstreamTimeout: ordersTimeout,
		NewHandler: func(opts demo.Options, logger *slog.Logger) http.Handler {
			return newHandler(config{
				ordersURL: opts.Downstream,
				client:    demo.NewClient(ordersTimeout),
				logger:    logger,
			})
		},
	}
}

// config is what the frontend needs.
type config struct {
	// ordersURL is orders' base URL as this app reaches it: the local
	// outbound listener of its trustmesh proxy.
	ordersURL *url.URL
	// client calls orders; it has a timeout.
	client *http.Client
	// logger gets one line per request and the cause of each failed order.
	logger *slog.Logger
}

type frontend struct {
	orders demo.Downstream
	logger *slog.Logger
}

// newHandler returns the frontend's routes.
func newHandler(cfg config) http.Handler {
	f := &frontend{
		orders: demo.Downstream{
			Name:   "orders",
			URL:    cfg.ordersURL.JoinPath("orders").String(),
			Client: cfg.client,
		},
		logger: cfg.logger,
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", handleIndex)
	mux.HandleFunc("GET /healthz", handleHealthz)
	mux.HandleFunc("GET /buy", f.handleBuy)
	return demo.LogRequests(cfg.logger, mux)
}

func handleHealthz(w http.ResponseWriter, _ *http.Request) {
	writeText(w, http.StatusOK, "ok\n")
}

const indexText = `trustmesh demo: frontend → orders → payments

Each hop goes through trustmesh proxies over mutual TLS; each app reads its
caller's SPIFFE ID from the X-Trustmesh-Peer-Identity header its proxy sets.

  GET /buy?item=book&amount=12   place an order; orders pays for it with payments
  GET /healthz                   liveness

`

func handleIndex(w http.ResponseWriter, r *http.Request) {
	writeText(w, http.StatusOK, indexText+sawCaller(r))
}

// sawCaller is the line that says who called the frontend.
func sawCaller(r *http.Request) string {
	caller := r.Header.Get(demo.PeerIdentityHeader)
	if caller == "" {
		caller = noCaller
	}
	return "frontend saw caller: " + caller + "\n"
}

func (f *frontend) handleBuy(w http.ResponseWriter, r *http.Request) {
	item, amount, err := parseBuy(r.URL.Query())
	if err != nil {
		writeText(w, http.StatusBadRequest, "bad request: "+err.Error()+"\ntry /buy?item=book&amount=12\n")
		return
	}
	order, err := f.order(r.Context(), item, amount)
	if err != nil {
		f.logger.LogAttrs(r.Context(), slog.LevelWarn, "order failed", slog.String(demo.LogKeyError, err.Error()))
		reason := "orders failed"
		if ce, ok := errors.AsType[*demo.CallError](err); ok {
			reason = ce.Reason
		}
		writeText(w, http.StatusBadGateway, "order failed: "+reason+"\n"+sawCaller(r))
		return
	}
	writeText(w, http.StatusOK, string(order)+"\n"+sawCaller(r))
}

// parseBuy validates the query of /buy.
func parseBuy(q url.Values) (item string, amount int64, err error) {
	item = q.Get("item")
	switch {
	case item == "":
		return "", 0, errors.New(`"item" is required`)
	case len(item) > maxItemLen:
		return "", 0, fmt.Errorf(`"item" is longer than %d bytes`, maxItemLen)
	}
	amount, err = strconv.ParseInt(q.Get("amount"), 10, 64)
	if err != nil || amount <= 0 || amount > maxAmount {
		return "", 0, fmt.Errorf(`"amount" must be a whole number between 1 and %d`, maxAmount)
	}
	return item, amount, nil
}

// order asks orders to create and pay for an order, and returns its answer
// as indented JSON. Every error is a *demo.CallError.
func (f *frontend) order(ctx context.Context, item string, amount int64) ([]byte, error) {
	raw, err := f.orders.Post(ctx, "order", struct {
		Item   string `json:"item"`
		Amount int64  `json:"amount"`
	}{item, amount}, http.StatusCreated)
	if err != nil {
		return nil, err
	}
	var indented bytes.Buffer
	if err := json.Indent(&indented, bytes.TrimSpace(raw), "", "  "); err != nil {
		return nil, &demo.CallError{Reason: "orders answered with invalid JSON", Cause: err}
	}
	return indented.Bytes(), nil
}

func writeText(w http.ResponseWriter, status int, text string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, _ = io.WriteString(w, text) //nolint:gosec // G705: text/plain with nosniff, never rendered as HTML
}

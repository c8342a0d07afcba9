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
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"
)

const (
	serviceName = "frontend"

	// peerIdentityHeader carries the caller's SPIFFE ID, set by the mesh.
	peerIdentityHeader = "X-Trustmesh-Peer-Identity"

	// maxBodyBytes bounds what is read of an answer from orders.
	maxBodyBytes = 64 << 10
	// maxAmount bounds the amount of one order.
	maxAmount = 1_000_000
	// maxItemLen bounds the length of an item name, in bytes.
	maxItemLen = 64

	// ordersTimeout bounds one call to orders. It is longer than orders'
	// own timeout for payments, so that orders can say what went wrong.
	ordersTimeout   = 10 * time.Second
	shutdownTimeout = 10 * time.Second

	// noCaller is shown when a request did not come through the mesh.
	noCaller = "(none: not called through the mesh)"
)

// Log attribute keys.
const (
	logKeyComponent = "component"
	logKeyMethod    = "method"
	logKeyPath      = "path"
	logKeyStatus    = "status"
	logKeyPeer      = "peer"
	logKeyDuration  = "duration"
	logKeyAddr      = "addr"
	logKeyOrders    = "orders_url"
	logKeyError     = "error"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	err := run(ctx, os.Args[1:])
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, serviceName+": error:", err)
		os.Exit(1) //nolint:forbidigo // main is the one place that exits (STYLE.md rule 4)
	}
}

// run serves until ctx is cancelled, then shuts down gracefully.
func run(ctx context.Context, args []string) error {
	opts, err := parseFlags(args, os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	if err != nil {
		return err
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, nil)).With(logKeyComponent, serviceName)

	ln, err := net.Listen("tcp", opts.listen)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	srv := &http.Server{
		Handler: newHandler(config{
			ordersURL: opts.ordersURL,
			client:    newClient(),
			logger:    logger,
		}),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      ordersTimeout + 10*time.Second,
		IdleTimeout:       60 * time.Second,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
	logger.Info("listening", logKeyAddr, ln.Addr().String(), logKeyOrders, opts.ordersURL.String())
	return serve(ctx, srv, ln)
}

// options are the command-line settings.
type options struct {
	// listen is the loopback address the app serves plaintext HTTP on.
	listen string
	// ordersURL is the local trustmesh outbound listener for orders.
	ordersURL *url.URL
}

func parseFlags(args []string, output io.Writer) (options, error) {
	fs := flag.NewFlagSet(serviceName, flag.ContinueOnError)
	fs.SetOutput(output)
	var o options
	var orders string
	fs.StringVar(&o.listen, "listen", "127.0.0.1:8081", "loopback `address` to serve plaintext HTTP on (its trustmesh proxy forwards here)")
	fs.StringVar(&orders, "orders-url", "", "`URL` of this app's local trustmesh outbound listener for orders, e.g. http://127.0.0.1:15002 (required)")
	if err := fs.Parse(args); err != nil {
		return options{}, err
	}
	if fs.NArg() > 0 {
		return options{}, fmt.Errorf("unexpected arguments: %q", fs.Args())
	}
	if err := checkLoopback(o.listen); err != nil {
		return options{}, fmt.Errorf("--listen: %w: the app trusts the %s header, so only its trustmesh proxy may reach it", err, peerIdentityHeader)
	}
	if orders == "" {
		return options{}, errors.New("--orders-url is required: the local trustmesh outbound listener for orders, e.g. http://127.0.0.1:15002")
	}
	u, err := parseUpstreamURL(orders)
	if err != nil {
		return options{}, fmt.Errorf("--orders-url: %w", err)
	}
	o.ordersURL = u
	return o, nil
}

// parseUpstreamURL accepts http://LOOPBACK:PORT[/path]: the app sends
// plaintext, so it may only send it to its own proxy.
func parseUpstreamURL(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, err
	}
	if u.Scheme != "http" {
		return nil, fmt.Errorf("%q: want an http:// URL (the app speaks plaintext to its proxy, which adds mTLS)", raw)
	}
	if u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("%q: want no user info, query or fragment", raw)
	}
	if err := checkLoopback(u.Host); err != nil {
		return nil, fmt.Errorf("%w: plaintext may only go to the local trustmesh outbound listener", err)
	}
	return u, nil
}

// checkLoopback accepts only host:port addresses on the loopback interface.
func checkLoopback(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return err
	}
	if host == "localhost" {
		return nil
	}
	if ip, err := netip.ParseAddr(host); err == nil && ip.IsLoopback() {
		return nil
	}
	return fmt.Errorf("%q is not a loopback address (want 127.0.0.1:PORT)", addr)
}

// newClient returns the client for orders. It does not follow redirects:
// every hop must go through the proxy's listener, nowhere else.
func newClient() *http.Client {
	return &http.Client{
		Timeout: ordersTimeout,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
}

// serve runs srv on ln until ctx is cancelled, then shuts it down.
func serve(ctx context.Context, srv *http.Server, ln net.Listener) error {
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	err := srv.Shutdown(shutdownCtx)
	if serveErr := <-errc; !errors.Is(serveErr, http.ErrServerClosed) {
		err = errors.Join(err, serveErr)
	}
	if err != nil {
		return fmt.Errorf("shut down: %w", err)
	}
	return nil
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
	ordersURL string
	client    *http.Client
	logger    *slog.Logger
}

// newHandler returns the frontend's routes.
func newHandler(cfg config) http.Handler {
	f := &frontend{
		ordersURL: cfg.ordersURL.JoinPath("orders").String(),
		client:    cfg.client,
		logger:    cfg.logger,
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", handleIndex)
	mux.HandleFunc("GET /healthz", handleHealthz)
	mux.HandleFunc("GET /buy", f.handleBuy)
	return logRequests(cfg.logger, mux)
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
	caller := r.Header.Get(peerIdentityHeader)
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
		f.logger.LogAttrs(r.Context(), slog.LevelWarn, "order failed", slog.String(logKeyError, err.Error()))
		reason := "orders failed"
		if oe, ok := errors.AsType[*ordersError](err); ok {
			reason = oe.reason
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

// ordersError is a failed call to orders: reason is for the client, the
// wrapped cause only for the log.
type ordersError struct {
	reason string
	cause  error
}

func (e *ordersError) Error() string {
	if e.cause == nil {
		return e.reason
	}
	return e.reason + ": " + e.cause.Error()
}

func (e *ordersError) Unwrap() error { return e.cause }

// order asks orders to create and pay for an order, and returns its answer
// as indented JSON. Every error is an *ordersError.
func (f *frontend) order(ctx context.Context, item string, amount int64) ([]byte, error) {
	body, err := json.Marshal(struct {
		Item   string `json:"item"`
		Amount int64  `json:"amount"`
	}{item, amount})
	if err != nil {
		return nil, &ordersError{reason: "cannot encode the order", cause: err}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, f.ordersURL, bytes.NewReader(body))
	if err != nil {
		return nil, &ordersError{reason: "cannot build the order request", cause: err}
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := f.client.Do(req)
	if err != nil {
		if ne, ok := errors.AsType[net.Error](err); ok && ne.Timeout() {
			return nil, &ordersError{reason: fmt.Sprintf("orders did not answer within %s", ordersTimeout), cause: err}
		}
		return nil, &ordersError{reason: "orders is unreachable (is this app's trustmesh proxy running?)", cause: err}
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxBodyBytes+1))
	if err != nil {
		return nil, &ordersError{reason: "reading the answer of orders failed", cause: err}
	}
	if len(raw) > maxBodyBytes {
		return nil, &ordersError{reason: fmt.Sprintf("orders answered with more than %d bytes", maxBodyBytes)}
	}
	if resp.StatusCode != http.StatusCreated {
		return nil, &ordersError{reason: fmt.Sprintf("orders answered %s: %s", resp.Status, errorDetail(raw))}
	}
	var indented bytes.Buffer
	if err := json.Indent(&indented, bytes.TrimSpace(raw), "", "  "); err != nil {
		return nil, &ordersError{reason: "orders answered with invalid JSON", cause: err}
	}
	return indented.Bytes(), nil
}

// errorDetail extracts a short reason from an error answer: the "error" field
// of a JSON body, else the start of the body as text.
func errorDetail(body []byte) string {
	const maxLen = 200
	var e struct {
		Error string `json:"error"`
	}
	msg := strings.TrimSpace(string(body))
	if json.Unmarshal(body, &e) == nil && e.Error != "" {
		msg = e.Error
	}
	if msg == "" {
		return "(empty body)"
	}
	if len(msg) > maxLen {
		msg = msg[:maxLen] + "…"
	}
	return strings.ToValidUTF8(msg, "?")
}

func writeText(w http.ResponseWriter, status int, text string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, _ = io.WriteString(w, text) //nolint:gosec // G705: text/plain with nosniff, never rendered as HTML
}

// logRequests logs one line per request: method, path, status and the
// caller's SPIFFE ID as the mesh reported it.
func logRequests(logger *slog.Logger, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
		next.ServeHTTP(rec, r)
		logger.LogAttrs(r.Context(), slog.LevelInfo, "request",
			slog.String(logKeyMethod, r.Method),
			slog.String(logKeyPath, r.URL.Path),
			slog.Int(logKeyStatus, rec.status),
			slog.String(logKeyPeer, r.Header.Get(peerIdentityHeader)),
			slog.Duration(logKeyDuration, time.Since(start)),
		)
	})
}

// statusRecorder remembers the status code written through it.
type statusRecorder struct {
	http.ResponseWriter
	status      int
	wroteHeader bool
}

func (s *statusRecorder) WriteHeader(code int) {
	if !s.wroteHeader {
		s.status, s.wroteHeader = code, true
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusRecorder) Write(b []byte) (int, error) {
	s.wroteHeader = true
	return s.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (s *statusRecorder) Unwrap() http.ResponseWriter { return s.ResponseWriter }

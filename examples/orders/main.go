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
	"strings"
	"syscall"
	"time"
)

const (
	serviceName = "orders"

	// peerIdentityHeader carries the caller's SPIFFE ID, set by the mesh.
	peerIdentityHeader = "X-Trustmesh-Peer-Identity"

	// maxBodyBytes bounds a request body, and what is read of a payments answer.
	maxBodyBytes = 64 << 10
	// maxAmount bounds the amount of one order.
	maxAmount = 1_000_000
	// maxItemLen bounds the length of an item name, in bytes.
	maxItemLen = 64

	// paymentsTimeout bounds one call to payments, connection included.
	paymentsTimeout = 5 * time.Second
	shutdownTimeout = 10 * time.Second
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
	logKeyPayments  = "payments_url"
	logKeyOrder     = "order"
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
			paymentsURL: opts.paymentsURL,
			client:      newClient(),
			newOrderID:  newOrderID,
			logger:      logger,
		}),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      paymentsTimeout + 10*time.Second,
		IdleTimeout:       60 * time.Second,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
	logger.Info("listening", logKeyAddr, ln.Addr().String(), logKeyPayments, opts.paymentsURL.String())
	return serve(ctx, srv, ln)
}

// options are the command-line settings.
type options struct {
	// listen is the loopback address the app serves plaintext HTTP on.
	listen string
	// paymentsURL is the local trustmesh outbound listener for payments.
	paymentsURL *url.URL
}

func parseFlags(args []string, output io.Writer) (options, error) {
	fs := flag.NewFlagSet(serviceName, flag.ContinueOnError)
	fs.SetOutput(output)
	var o options
	var payments string
	fs.StringVar(&o.listen, "listen", "127.0.0.1:8082", "loopback `address` to serve plaintext HTTP on (its trustmesh proxy forwards here)")
	fs.StringVar(&payments, "payments-url", "", "`URL` of this app's local trustmesh outbound listener for payments, e.g. http://127.0.0.1:15003 (required)")
	if err := fs.Parse(args); err != nil {
		return options{}, err
	}
	if fs.NArg() > 0 {
		return options{}, fmt.Errorf("unexpected arguments: %q", fs.Args())
	}
	if err := checkLoopback(o.listen); err != nil {
		return options{}, fmt.Errorf("--listen: %w: the app trusts the %s header, so only its trustmesh proxy may reach it", err, peerIdentityHeader)
	}
	if payments == "" {
		return options{}, errors.New("--payments-url is required: the local trustmesh outbound listener for payments, e.g. http://127.0.0.1:15003")
	}
	u, err := parseUpstreamURL(payments)
	if err != nil {
		return options{}, fmt.Errorf("--payments-url: %w", err)
	}
	o.paymentsURL = u
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

// newClient returns the client for payments. It does not follow redirects:
// every hop must go through the proxy's listener, nowhere else.
func newClient() *http.Client {
	return &http.Client{
		Timeout: paymentsTimeout,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
}

// newOrderID returns a random order id such as "ord-k3jz7q2mxa4b".
func newOrderID() string {
	return "ord-" + strings.ToLower(rand.Text()[:12])
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
	payURL     string
	client     *http.Client
	newOrderID func() string
	logger     *slog.Logger
}

// newHandler returns the orders API.
func newHandler(cfg config) http.Handler {
	a := &api{
		payURL:     cfg.paymentsURL.JoinPath("pay").String(),
		client:     cfg.client,
		newOrderID: cfg.newOrderID,
		logger:     cfg.logger,
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", handleHealthz)
	mux.HandleFunc("POST /orders", a.handleCreate)
	return logRequests(cfg.logger, mux)
}

func handleHealthz(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = io.WriteString(w, "ok\n")
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
	if status, err := decodeJSON(w, r, &req); err != nil {
		writeError(w, status, err.Error())
		return
	}
	switch {
	case req.Item == "":
		writeError(w, http.StatusBadRequest, `"item" is required`)
		return
	case len(req.Item) > maxItemLen:
		writeError(w, http.StatusBadRequest, fmt.Sprintf(`"item" is longer than %d bytes`, maxItemLen))
		return
	case req.Amount <= 0 || req.Amount > maxAmount:
		writeError(w, http.StatusBadRequest, fmt.Sprintf(`"amount" must be between 1 and %d`, maxAmount))
		return
	}

	id := a.newOrderID()
	payment, err := a.pay(r.Context(), id, req.Amount)
	if err != nil {
		a.logger.LogAttrs(r.Context(), slog.LevelWarn, "payment failed",
			slog.String(logKeyOrder, id), slog.String(logKeyError, err.Error()))
		reason := "payments failed"
		if pe, ok := errors.AsType[*paymentError](err); ok {
			reason = pe.reason
		}
		writeError(w, http.StatusBadGateway, "payment failed: "+reason)
		return
	}
	writeJSON(w, http.StatusCreated, orderResponse{
		Order:   id,
		Payment: payment,
		Caller:  r.Header.Get(peerIdentityHeader),
	})
}

// paymentError is a failed call to payments: reason is for the client, the
// wrapped cause only for the log.
type paymentError struct {
	reason string
	cause  error
}

func (e *paymentError) Error() string {
	if e.cause == nil {
		return e.reason
	}
	return e.reason + ": " + e.cause.Error()
}

func (e *paymentError) Unwrap() error { return e.cause }

// pay asks payments to pay for the order and returns its confirmation, as
// payments wrote it. Every error is a *paymentError.
func (a *api) pay(ctx context.Context, order string, amount int64) (json.RawMessage, error) {
	body, err := json.Marshal(struct {
		Order  string `json:"order"`
		Amount int64  `json:"amount"`
	}{order, amount})
	if err != nil {
		return nil, &paymentError{reason: "cannot encode the payment", cause: err}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, a.payURL, bytes.NewReader(body))
	if err != nil {
		return nil, &paymentError{reason: "cannot build the payment request", cause: err}
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := a.client.Do(req)
	if err != nil {
		if ne, ok := errors.AsType[net.Error](err); ok && ne.Timeout() {
			return nil, &paymentError{reason: fmt.Sprintf("payments did not answer within %s", paymentsTimeout), cause: err}
		}
		return nil, &paymentError{reason: "payments is unreachable (is this app's trustmesh proxy running?)", cause: err}
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxBodyBytes+1))
	if err != nil {
		return nil, &paymentError{reason: "reading the answer of payments failed", cause: err}
	}
	if len(raw) > maxBodyBytes {
		return nil, &paymentError{reason: fmt.Sprintf("payments answered with more than %d bytes", maxBodyBytes)}
	}
	if resp.StatusCode != http.StatusOK {
		return nil, &paymentError{reason: fmt.Sprintf("payments answered %s: %s", resp.Status, errorDetail(raw))}
	}

	var confirmation struct {
		Paid  bool   `json:"paid"`
		Order string `json:"order"`
	}
	if err := json.Unmarshal(raw, &confirmation); err != nil {
		return nil, &paymentError{reason: "payments answered with invalid JSON", cause: err}
	}
	if !confirmation.Paid || confirmation.Order != order {
		return nil, &paymentError{reason: fmt.Sprintf("payments did not confirm order %s", order)}
	}
	var compact bytes.Buffer
	if err := json.Compact(&compact, raw); err != nil {
		return nil, &paymentError{reason: "payments answered with invalid JSON", cause: err}
	}
	return compact.Bytes(), nil
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

// decodeJSON reads exactly one JSON object into v. On failure it returns the
// HTTP status to answer with and a message for the client.
func decodeJSON(w http.ResponseWriter, r *http.Request, v any) (int, error) {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBodyBytes))
	dec.DisallowUnknownFields()
	err := dec.Decode(v)
	if err == nil {
		if _, next := dec.Token(); !errors.Is(next, io.EOF) {
			err = errors.New("unexpected data after the JSON object")
		}
	}
	var tooLarge *http.MaxBytesError
	switch {
	case err == nil:
		return 0, nil
	case errors.As(err, &tooLarge):
		return http.StatusRequestEntityTooLarge, fmt.Errorf("request body is larger than %d bytes", tooLarge.Limit)
	case errors.Is(err, io.EOF):
		return http.StatusBadRequest, errors.New("request body is empty: want a JSON object")
	default:
		return http.StatusBadRequest, fmt.Errorf("invalid JSON body: %w", err)
	}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(append(body, '\n'))
}

func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, struct {
		Error string `json:"error"`
	}{msg})
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

// Command payments is the last hop of the trustmesh demo (frontend → orders →
// payments). It accepts a payment for an order and says which SPIFFE ID asked
// for it.
//
// It speaks plaintext HTTP on a loopback address only: its trustmesh proxy
// terminates mTLS in front of it and sets the X-Trustmesh-Peer-Identity header
// to the caller's verified SPIFFE ID. Anything that can reach the app directly
// could forge that header, which is why a non-loopback --listen is refused.
package main

import (
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
	"os"
	"os/signal"
	"syscall"
	"time"
)

const (
	serviceName = "payments"

	// peerIdentityHeader carries the caller's SPIFFE ID, set by the mesh.
	peerIdentityHeader = "X-Trustmesh-Peer-Identity"

	// maxBodyBytes bounds a request body.
	maxBodyBytes = 64 << 10
	// maxAmount bounds the amount of one payment.
	maxAmount = 1_000_000

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
		Handler:           newHandler(logger),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      10 * time.Second,
		IdleTimeout:       60 * time.Second,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
	logger.Info("listening", logKeyAddr, ln.Addr().String())
	return serve(ctx, srv, ln)
}

// options are the command-line settings.
type options struct {
	// listen is the loopback address the app serves plaintext HTTP on.
	listen string
}

func parseFlags(args []string, output io.Writer) (options, error) {
	fs := flag.NewFlagSet(serviceName, flag.ContinueOnError)
	fs.SetOutput(output)
	var o options
	fs.StringVar(&o.listen, "listen", "127.0.0.1:8083", "loopback `address` to serve plaintext HTTP on (its trustmesh proxy forwards here)")
	if err := fs.Parse(args); err != nil {
		return options{}, err
	}
	if fs.NArg() > 0 {
		return options{}, fmt.Errorf("unexpected arguments: %q", fs.Args())
	}
	if err := checkLoopback(o.listen); err != nil {
		return options{}, fmt.Errorf("--listen: %w: the app trusts the %s header, so only its trustmesh proxy may reach it", err, peerIdentityHeader)
	}
	return o, nil
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

// newHandler returns the payments API.
func newHandler(logger *slog.Logger) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", handleHealthz)
	mux.HandleFunc("POST /pay", handlePay)
	return logRequests(logger, mux)
}

func handleHealthz(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = io.WriteString(w, "ok\n")
}

type payRequest struct {
	Order  string `json:"order"`
	Amount int64  `json:"amount"`
}

type payResponse struct {
	Paid   bool   `json:"paid"`
	Order  string `json:"order"`
	Caller string `json:"caller"`
}

func handlePay(w http.ResponseWriter, r *http.Request) {
	var req payRequest
	if status, err := decodeJSON(w, r, &req); err != nil {
		writeError(w, status, err.Error())
		return
	}
	switch {
	case req.Order == "":
		writeError(w, http.StatusBadRequest, `"order" is required`)
		return
	case len(req.Order) > 64:
		writeError(w, http.StatusBadRequest, `"order" is longer than 64 bytes`)
		return
	case req.Amount <= 0 || req.Amount > maxAmount:
		writeError(w, http.StatusBadRequest, fmt.Sprintf(`"amount" must be between 1 and %d`, maxAmount))
		return
	}
	writeJSON(w, http.StatusOK, payResponse{
		Paid:   true,
		Order:  req.Order,
		Caller: r.Header.Get(peerIdentityHeader),
	})
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

package webhook

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"
)

// The paths the Server serves the webhooks on.
const (
	PathValidate = "/validate"
	PathInject   = "/inject"
)

// Defaults of ServerConfig.
const (
	DefaultAddr              = ":9443"
	DefaultReadHeaderTimeout = 5 * time.Second
	// DefaultRequestTimeout bounds reading a request and writing its
	// answer; the API server gives up on a webhook after at most 30 s.
	DefaultRequestTimeout = 30 * time.Second
	DefaultIdleTimeout    = 90 * time.Second
	shutdownTimeout       = 5 * time.Second
)

// ServerConfig configures a Server.
type ServerConfig struct {
	// Addr is the HOST:PORT to listen on, unless Listener is set.
	// Default DefaultAddr.
	Addr string
	// Listener, if set, is served instead of listening on Addr; Run
	// closes it.
	Listener net.Listener
	// GetCertificate returns the server's certificate for each TLS
	// handshake, so that a rotated certificate is used from the next
	// handshake on. Its CA is the caBundle of the webhook configurations.
	// Required.
	GetCertificate func(*tls.ClientHelloInfo) (*tls.Certificate, error)
	// Validate is served at PathValidate and Inject at PathInject; nil
	// leaves the path unserved (404). At least one is required.
	Validate, Inject http.Handler
	// Logger receives the server's own errors. Default: discard.
	Logger *slog.Logger
	// ReadHeaderTimeout, RequestTimeout and IdleTimeout bound each
	// connection; defaults DefaultReadHeaderTimeout, DefaultRequestTimeout
	// (for reading a request and for writing its answer) and
	// DefaultIdleTimeout.
	ReadHeaderTimeout, RequestTimeout, IdleTimeout time.Duration
}

// Server serves the admission webhooks over HTTPS (TLS 1.2 and up: the
// API server is the client).
type Server struct {
	cfg ServerConfig
	log *slog.Logger
	srv *http.Server
}

// NewServer checks cfg and returns a Server; nothing listens until Run.
func NewServer(cfg ServerConfig) (*Server, error) {
	if cfg.GetCertificate == nil {
		return nil, errors.New("webhook server: GetCertificate is required")
	}
	if cfg.Validate == nil && cfg.Inject == nil {
		return nil, errors.New("webhook server: no webhook to serve")
	}
	if cfg.Addr == "" {
		cfg.Addr = DefaultAddr
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	for _, d := range []*time.Duration{&cfg.ReadHeaderTimeout, &cfg.RequestTimeout, &cfg.IdleTimeout} {
		if *d < 0 {
			return nil, fmt.Errorf("webhook server: timeout %v is negative", *d)
		}
	}
	if cfg.ReadHeaderTimeout == 0 {
		cfg.ReadHeaderTimeout = DefaultReadHeaderTimeout
	}
	if cfg.RequestTimeout == 0 {
		cfg.RequestTimeout = DefaultRequestTimeout
	}
	if cfg.IdleTimeout == 0 {
		cfg.IdleTimeout = DefaultIdleTimeout
	}
	log := cfg.Logger.With(slog.String(logComponent, "webhook-server"))
	mux := http.NewServeMux()
	if cfg.Validate != nil {
		mux.Handle(PathValidate, cfg.Validate)
	}
	if cfg.Inject != nil {
		mux.Handle(PathInject, cfg.Inject)
	}
	srv := &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: cfg.ReadHeaderTimeout,
		ReadTimeout:       cfg.RequestTimeout,
		WriteTimeout:      cfg.RequestTimeout,
		IdleTimeout:       cfg.IdleTimeout,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		TLSConfig: &tls.Config{
			MinVersion:     tls.VersionTLS12,
			GetCertificate: cfg.GetCertificate,
			NextProtos:     []string{"h2", "http/1.1"},
		},
	}
	return &Server{cfg: cfg, log: log, srv: srv}, nil
}

// Run serves until ctx is cancelled, then shuts down, letting requests in
// flight finish for a few seconds. It returns nil after a cancellation and
// the error otherwise.
func (s *Server) Run(ctx context.Context) error {
	ln := s.cfg.Listener
	if ln == nil {
		var err error
		if ln, err = (&net.ListenConfig{}).Listen(ctx, "tcp", s.cfg.Addr); err != nil {
			return fmt.Errorf("webhook server: %w", err)
		}
	}
	s.log.Info("serving admission webhooks", slog.String("addr", ln.Addr().String()))
	errc := make(chan error, 1)
	go func() { errc <- s.srv.ServeTLS(ln, "", "") }()
	select {
	case err := <-errc:
		return fmt.Errorf("webhook server: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownTimeout)
	defer cancel()
	err := s.srv.Shutdown(sctx)
	if serr := <-errc; !errors.Is(serr, http.ErrServerClosed) {
		err = errors.Join(err, serr)
	}
	if err != nil {
		return fmt.Errorf("webhook server: shutdown: %w", err)
	}
	return nil
}

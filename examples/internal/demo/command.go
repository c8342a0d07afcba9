package demo

import (
	"context"
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
	"syscall"
	"time"
)

const shutdownTimeout = 10 * time.Second

// Command is the command line of one demo service: the flags it takes and
// the handler it serves.
type Command struct {
	// Name is the service's name, as in "orders". It names the flag set and
	// is the component attribute of every log line.
	Name string
	// DefaultListen is the default of --listen, the loopback address the
	// service serves plaintext HTTP on.
	DefaultListen string
	// Downstream, if set, is the service this one calls, as in "payments".
	// The command then requires --<Downstream>-url, the local outbound
	// listener of the app's trustmesh proxy for that service, and logs it at
	// start-up as <Downstream>_url.
	Downstream string
	// DownstreamExample is an example value of --<Downstream>-url, for the
	// help and the error that says the flag is missing.
	DownstreamExample string
	// DownstreamTimeout bounds one call to the downstream. The server's write
	// timeout is 10s longer, so that the service can still say what went
	// wrong.
	DownstreamTimeout time.Duration
	// NewHandler returns what the service serves; it is called once, after
	// the flags are validated and the listener is open.
	NewHandler func(opts Options, logger *slog.Logger) http.Handler
}

// Options are the validated command-line settings of a demo service.
type Options struct {
	// Listen is the loopback address the service serves plaintext HTTP on.
	Listen string
	// Downstream is the local trustmesh outbound listener for the downstream
	// service: an http:// URL on loopback. It is nil when the command has no
	// Downstream.
	Downstream *url.URL
}

// Parse parses and validates args, writing help and flag errors to output.
// It returns flag.ErrHelp when args ask for help.
func (c Command) Parse(args []string, output io.Writer) (Options, error) {
	fs := flag.NewFlagSet(c.Name, flag.ContinueOnError)
	fs.SetOutput(output)
	var o Options
	var downstream string
	fs.StringVar(&o.Listen, "listen", c.DefaultListen, "loopback `address` to serve plaintext HTTP on (its trustmesh proxy forwards here)")
	if c.Downstream != "" {
		fs.StringVar(&downstream, c.Downstream+"-url", "", "`URL` of this app's local trustmesh outbound listener for "+c.Downstream+", e.g. "+c.DownstreamExample+" (required)")
	}
	if err := fs.Parse(args); err != nil {
		return Options{}, err
	}
	if fs.NArg() > 0 {
		return Options{}, fmt.Errorf("unexpected arguments: %q", fs.Args())
	}
	if err := checkLoopback(o.Listen); err != nil {
		return Options{}, fmt.Errorf("--listen: %w: the app trusts the %s header, so only its trustmesh proxy may reach it", err, PeerIdentityHeader)
	}
	if c.Downstream == "" {
		return o, nil
	}
	flagName := "--" + c.Downstream + "-url"
	if downstream == "" {
		return Options{}, fmt.Errorf("%s is required: the local trustmesh outbound listener for %s, e.g. %s", flagName, c.Downstream, c.DownstreamExample)
	}
	u, err := parseDownstreamURL(downstream)
	if err != nil {
		return Options{}, fmt.Errorf("%s: %w", flagName, err)
	}
	o.Downstream = u
	return o, nil
}

// Main is the body of the service's main function: it runs the command with
// the process's arguments until SIGINT or SIGTERM, writes its error to
// stderr, and returns the exit code. main passes that code to os.Exit, so
// that main stays the one place that exits.
func (c Command) Main() int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	err := c.Run(ctx, os.Args[1:], os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, c.Name+": error:", err)
		return 1
	}
	return 0
}

// Run parses args, then serves until ctx is cancelled and shuts down
// gracefully. Help, flag errors and the log go to stderr. Asking for help is
// not an error.
func (c Command) Run(ctx context.Context, args []string, stderr io.Writer) error {
	opts, err := c.Parse(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	if err != nil {
		return err
	}
	logger := slog.New(slog.NewTextHandler(stderr, nil)).With(LogKeyComponent, c.Name)

	ln, err := net.Listen("tcp", opts.Listen)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	srv := &http.Server{
		Handler:           c.NewHandler(opts, logger),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      c.DownstreamTimeout + 10*time.Second,
		IdleTimeout:       60 * time.Second,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
	attrs := []any{LogKeyAddr, ln.Addr().String()}
	if opts.Downstream != nil {
		attrs = append(attrs, c.Downstream+"_url", opts.Downstream.String())
	}
	logger.Info("listening", attrs...)
	return serve(ctx, srv, ln)
}

// parseDownstreamURL accepts http://LOOPBACK:PORT[/path]: the app sends
// plaintext, so it may only send it to its own proxy.
func parseDownstreamURL(raw string) (*url.URL, error) {
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

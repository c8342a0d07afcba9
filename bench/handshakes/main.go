// Command handshakes measures new mutual-TLS handshakes per second, without
// session resumption, against a TLS 1.3 server that requires client
// certificates (a trustmesh inbound proxy or HAProxy's inbound side in
// bench/run.sh).
//
//	go run ./bench/handshakes --addr 127.0.0.1:19111 --cert svid.pem --key key.pem \
//	    --ca bundle.pem --seconds 10 --conns 8 --groups X25519MLKEM768,X25519 [--alpn trustmesh-tcp]
//
// For each group, --conns workers loop for --seconds: dial TCP, TLS 1.3
// handshake offering only that group (CurvePreferences=[group], so the key
// share is always right and there is no HelloRetryRequest), close. Nothing
// resumes: the client has no session cache and tickets are disabled.
//
// The server's chain is verified against --ca in VerifyConnection, by this
// program (InsecureSkipVerify is set only to skip Go's host name check:
// SPIFFE SVIDs carry a URI SAN and no DNS name). With --server-id the
// leaf's URI SAN must also equal that SPIFFE ID.
//
// A handshake counts as an error when it fails, when the negotiated group
// is not the one offered, or when the server refuses the client afterwards.
// In TLS 1.3 the server checks the client certificate after the client has
// sent its Finished, so HandshakeContext returning nil does not mean the
// server accepted: the worker then reads with a --read-wait deadline. A
// TLS alert or a close before acceptance counts as an error; a timeout
// counts as accepted. To keep that wait from capping the rate at
// conns/read-wait, the worker also treats the server's first post-handshake
// record (a NewSessionTicket, which both Go and OpenSSL servers send once
// they have accepted the client's Finished and certificate) as acceptance:
// once crypto/tls has consumed it without error and asks the socket for
// more, the read is cut short.
//
// Latency is dial + handshake; the acceptance wait is not in it, but it is
// in the rate. JSON goes to stdout, a table to stderr.
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"
)

func main() {
	if err := parseAndRun(os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "handshakes:", err)
		os.Exit(1) //nolint:forbidigo // this is main
	}
}

type options struct {
	addr, cert, key, ca, alpn, serverName, serverID string
	seconds                                         float64
	conns                                           int
	groups                                          []tls.CurveID
	readWait, timeout                               time.Duration
	maxPending                                      int
}

func parseAndRun(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("handshakes", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o options
	fs.StringVar(&o.addr, "addr", "", "server HOST:PORT (required)")
	fs.StringVar(&o.cert, "cert", "", "client certificate chain, PEM (required)")
	fs.StringVar(&o.key, "key", "", "client private key, PEM (required)")
	fs.StringVar(&o.ca, "ca", "", "trust bundle the server chain must verify against, PEM (required)")
	fs.Float64Var(&o.seconds, "seconds", 10, "measured seconds per group")
	fs.IntVar(&o.conns, "conns", 8, "concurrent workers")
	groups := fs.String("groups", "X25519MLKEM768,X25519", "comma-separated key exchange groups, one run each")
	fs.StringVar(&o.alpn, "alpn", "trustmesh-tcp", "comma-separated ALPN protocols to offer (empty: none)")
	fs.StringVar(&o.serverName, "server-name", "", "SNI to send (default: none for an IP address, else the host)")
	fs.StringVar(&o.serverID, "server-id", "", "if set, the server's SPIFFE ID (URI SAN) must equal this")
	fs.DurationVar(&o.readWait, "read-wait", time.Second, "post-handshake read deadline to surface a server-side refusal")
	fs.IntVar(&o.maxPending, "max-pending", 4000, "at most this many connections waiting for their acceptance check")
	fs.DurationVar(&o.timeout, "timeout", 5*time.Second, "dial + handshake timeout")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if o.addr == "" || o.cert == "" || o.key == "" || o.ca == "" {
		return errors.New("--addr, --cert, --key and --ca are required")
	}
	if o.conns < 1 || o.seconds <= 0 || o.maxPending < 1 {
		return errors.New("--conns and --max-pending must be >= 1 and --seconds > 0")
	}
	for _, g := range strings.Split(*groups, ",") {
		id, err := parseGroup(strings.TrimSpace(g))
		if err != nil {
			return err
		}
		o.groups = append(o.groups, id)
	}
	if o.serverName == "" {
		host, _, err := net.SplitHostPort(o.addr)
		if err != nil {
			return fmt.Errorf("--addr: %w", err)
		}
		if net.ParseIP(host) == nil {
			o.serverName = host
		}
	}
	return run(o, stdout, stderr)
}

// knownGroups are the groups crypto/tls implements, by their String names.
var knownGroups = []tls.CurveID{
	tls.X25519MLKEM768, tls.SecP256r1MLKEM768, tls.SecP384r1MLKEM1024,
	tls.X25519, tls.CurveP256, tls.CurveP384, tls.CurveP521,
}

func parseGroup(s string) (tls.CurveID, error) {
	var names []string
	for _, id := range knownGroups {
		if strings.EqualFold(s, id.String()) {
			return id, nil
		}
		names = append(names, id.String())
	}
	return 0, fmt.Errorf("unknown group %q (known: %s)", s, strings.Join(names, ", "))
}

type result struct {
	Group          string         `json:"group"`
	HandshakesPerS float64        `json:"handshakes_per_s"`
	Handshakes     int            `json:"handshakes"`
	Errors         int            `json:"errors"`
	P50ms          float64        `json:"p50_ms"`
	P99ms          float64        `json:"p99_ms"`
	Seconds        float64        `json:"seconds"`
	ErrorKinds     map[string]int `json:"error_kinds,omitempty"`
	PendingFull    int64          `json:"pending_full,omitempty"`
}

type report struct {
	Addr    string   `json:"addr"`
	ALPN    string   `json:"alpn"`
	Conns   int      `json:"conns"`
	Results []result `json:"results"`
}

func run(o options, stdout, stderr io.Writer) error {
	pair, err := tls.LoadX509KeyPair(o.cert, o.key)
	if err != nil {
		return fmt.Errorf("client certificate: %w", err)
	}
	pemBytes, err := os.ReadFile(o.ca)
	if err != nil {
		return err
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(pemBytes) {
		return fmt.Errorf("%s: no certificates", o.ca)
	}
	rep := report{Addr: o.addr, ALPN: o.alpn, Conns: o.conns}
	for _, g := range o.groups {
		rep.Results = append(rep.Results, measure(o, g, clientConfig(o, g, pair, roots)))
	}
	tw := tabwriter.NewWriter(stderr, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "group\thandshakes/s\thandshakes\terrors\tp50 ms\tp99 ms\t\n")
	for _, r := range rep.Results {
		fmt.Fprintf(tw, "%s\t%.1f\t%d\t%d\t%.3f\t%.3f\t\n", r.Group, r.HandshakesPerS, r.Handshakes, r.Errors, r.P50ms, r.P99ms)
	}
	tw.Flush()
	for _, r := range rep.Results {
		for k, n := range r.ErrorKinds {
			fmt.Fprintf(stderr, "%s: %d x %s\n", r.Group, n, k)
		}
	}
	enc := json.NewEncoder(stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(rep)
}

// clientConfig offers only group and never resumes; it is shared by the
// workers of one run (no session cache, so there is no state to share).
func clientConfig(o options, group tls.CurveID, pair tls.Certificate, roots *x509.CertPool) *tls.Config {
	var protos []string
	if o.alpn != "" {
		protos = strings.Split(o.alpn, ",")
	}
	return &tls.Config{
		MinVersion:             tls.VersionTLS13,
		CurvePreferences:       []tls.CurveID{group},
		Certificates:           []tls.Certificate{pair},
		NextProtos:             protos,
		ServerName:             o.serverName,
		ClientSessionCache:     nil,
		SessionTicketsDisabled: true,
		// The chain is verified in VerifyConnection against the bundle;
		// SVIDs have no DNS SAN, so Go's host name check cannot be used.
		InsecureSkipVerify: true, //nolint:gosec // chain verified in VerifyConnection
		VerifyConnection: func(cs tls.ConnectionState) error {
			return verifyServer(cs, roots, o.serverID)
		},
	}
}

func verifyServer(cs tls.ConnectionState, roots *x509.CertPool, wantID string) error {
	if len(cs.PeerCertificates) == 0 {
		return errors.New("server sent no certificate")
	}
	inter := x509.NewCertPool()
	for _, c := range cs.PeerCertificates[1:] {
		inter.AddCert(c)
	}
	leaf := cs.PeerCertificates[0]
	if _, err := leaf.Verify(x509.VerifyOptions{
		Roots:         roots,
		Intermediates: inter,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}); err != nil {
		return fmt.Errorf("server chain: %w", err)
	}
	if wantID != "" {
		if len(leaf.URIs) != 1 || leaf.URIs[0].String() != wantID {
			return fmt.Errorf("server ID %v, want %s", leaf.URIs, wantID)
		}
	}
	return nil
}

// collector gathers one run's outcomes; acceptance checks finish after
// their worker has moved on, so it is shared and locked.
type collector struct {
	mu    sync.Mutex
	lat   []time.Duration
	kinds map[string]int
	wg    sync.WaitGroup
	sem   chan struct{} // bounds the connections waiting for acceptance
	full  atomic.Int64  // times a worker waited for a free slot
}

func (c *collector) fail(kind string) {
	c.mu.Lock()
	c.kinds[kind]++
	c.mu.Unlock()
}

func (c *collector) ok(lat time.Duration) {
	c.mu.Lock()
	c.lat = append(c.lat, lat)
	c.mu.Unlock()
}

func measure(o options, group tls.CurveID, cfg *tls.Config) result {
	c := &collector{kinds: map[string]int{}, sem: make(chan struct{}, o.maxPending)}
	dur := time.Duration(o.seconds * float64(time.Second))
	start := time.Now()
	end := start.Add(dur)
	var wg sync.WaitGroup
	for range o.conns {
		wg.Go(func() {
			for time.Now().Before(end) {
				one(o, group, cfg, c)
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	c.wg.Wait() // the last acceptance checks, up to --read-wait

	r := result{Group: group.String(), Seconds: elapsed.Seconds(), ErrorKinds: c.kinds, PendingFull: c.full.Load()}
	r.Handshakes = len(c.lat)
	for _, n := range c.kinds {
		r.Errors += n
	}
	r.HandshakesPerS = float64(r.Handshakes) / elapsed.Seconds()
	slices.Sort(c.lat)
	r.P50ms = pct(c.lat, 0.50)
	r.P99ms = pct(c.lat, 0.99)
	if len(r.ErrorKinds) == 0 {
		r.ErrorKinds = nil
	}
	return r
}

// pct is the nearest-rank percentile of sorted d, in milliseconds.
func pct(d []time.Duration, p float64) float64 {
	if len(d) == 0 {
		return 0
	}
	i := int(p*float64(len(d))+0.5) - 1
	i = max(0, min(i, len(d)-1))
	return float64(d[i]) / float64(time.Millisecond)
}

// one does one dial + handshake and starts its acceptance check, which
// records the outcome in c. Only accepted handshakes have their latency
// recorded.
func one(o options, group tls.CurveID, cfg *tls.Config, c *collector) {
	t0 := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), o.timeout)
	defer cancel()
	var d net.Dialer
	raw, err := d.DialContext(ctx, "tcp", o.addr)
	if err != nil {
		c.fail("dial: " + errKind(err))
		return
	}
	wc := &watchConn{Conn: raw}
	tc := tls.Client(wc, cfg)
	if err := tc.HandshakeContext(ctx); err != nil {
		_ = raw.Close()
		c.fail("handshake: " + errKind(err))
		return
	}
	lat := time.Since(t0)
	if got := tc.ConnectionState().CurveID; got != group {
		_ = tc.Close()
		c.fail(fmt.Sprintf("group mismatch: got %v", got))
		return
	}
	select {
	case c.sem <- struct{}{}:
	default:
		c.full.Add(1)
		c.sem <- struct{}{}
	}
	c.wg.Go(func() {
		defer func() { <-c.sem }()
		err := accepted(tc, wc, o.readWait)
		_ = tc.Close()
		if err != nil {
			c.fail("after handshake: " + errKind(err))
			return
		}
		c.ok(lat)
	})
}

// errAccepted is returned by watchConn to cut the post-handshake read short
// once crypto/tls has consumed the server's first post-handshake record
// without error.
var errAccepted = errors.New("server accepted (post-handshake record consumed)")

// watchConn, once armed, notes when the server has sent bytes and fails
// the next socket read after that with errAccepted: crypto/tls asks for more
// only when it has processed what it had without an alert.
type watchConn struct {
	net.Conn
	armed, got atomic.Bool
}

func (c *watchConn) Read(b []byte) (int, error) {
	if c.armed.Load() && c.got.Load() {
		return 0, errAccepted
	}
	n, err := c.Conn.Read(b)
	if n > 0 && c.armed.Load() {
		c.got.Store(true)
	}
	return n, err
}

// accepted reads once with a deadline: a timeout, application data or
// errAccepted mean the server accepted the client; EOF, a reset or an
// alert mean it did not.
func accepted(tc *tls.Conn, wc *watchConn, wait time.Duration) error {
	wc.armed.Store(true)
	if err := tc.SetReadDeadline(time.Now().Add(wait)); err != nil {
		return err
	}
	var b [1]byte
	_, err := tc.Read(b[:])
	var ne net.Error
	switch {
	case err == nil, errors.Is(err, errAccepted):
		return nil
	case errors.As(err, &ne) && ne.Timeout():
		return nil
	case errors.Is(err, io.EOF):
		return errors.New("server closed the connection (EOF)")
	}
	return err
}

// errKind shortens an error to a stable label for counting.
func errKind(err error) string {
	var ae tls.AlertError
	if errors.As(err, &ae) {
		return "local alert " + ae.Error()
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return "timeout"
	}
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Err != nil {
		if oe.Op == "remote error" { // an alert from the server
			return "remote error: " + oe.Err.Error()
		}
		err = oe.Err // drop the addresses, which differ per connection
	}
	s := err.Error()
	if len(s) > 120 {
		s = s[:120]
	}
	return s
}

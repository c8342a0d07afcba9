package adminapi

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/trustmesh/trustmesh/internal/atomicfile"
)

// Files of a credentials directory.
const (
	CertFile   = "cert.pem" // operator certificate
	KeyFile    = "key.pem"  // its private key (0600)
	CAFile     = "ca.pem"   // the admin CA, which also signs the server's admin certificate
	ServerFile = "server"   // host:port of the admin API, written for convenience
)

// WriteCredentials writes a credentials directory (0700, key 0600).
func WriteCredentials(dir string, certPEM, keyPEM, caPEM []byte, server string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create credentials dir: %w", err)
	}
	files := []struct {
		name string
		data []byte
		mode fs.FileMode
	}{
		{KeyFile, keyPEM, 0o600},
		{CertFile, certPEM, 0o644},
		{CAFile, caPEM, 0o644},
		{ServerFile, []byte(server + "\n"), 0o644},
	}
	for _, f := range files {
		if err := atomicfile.Write(filepath.Join(dir, f.name), f.data, f.mode); err != nil {
			return err
		}
	}
	return nil
}

// Client calls the admin API with an operator credential.
type Client struct {
	base   string
	server string
	http   *http.Client
}

// Server is the admin API address the client calls (HOST:PORT).
func (c *Client) Server() string { return c.server }

// NewClient loads a credentials directory. server overrides the address in
// the directory's server file.
func NewClient(credDir, server string) (*Client, error) {
	if credDir == "" {
		return nil, errors.New("no admin credentials: pass --data-dir of a local server, or --credentials DIR (env TRUSTMESH_CREDENTIALS)")
	}
	cert, err := tls.LoadX509KeyPair(filepath.Join(credDir, CertFile), filepath.Join(credDir, KeyFile))
	if err != nil {
		return nil, fmt.Errorf("load admin credentials from %s: %w", credDir, err)
	}
	caPEM, err := os.ReadFile(filepath.Join(credDir, CAFile))
	if err != nil {
		return nil, fmt.Errorf("load admin credentials: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, fmt.Errorf("load admin credentials: %s holds no PEM certificate", filepath.Join(credDir, CAFile))
	}
	if server == "" {
		b, err := os.ReadFile(filepath.Join(credDir, ServerFile))
		if err != nil {
			return nil, fmt.Errorf("no server address: pass --server (env TRUSTMESH_SERVER) or add a %q file to %s", ServerFile, credDir)
		}
		server = strings.TrimSpace(string(b))
	}
	base := server
	if !strings.Contains(base, "://") {
		base = "https://" + base
	}
	u, err := url.Parse(base)
	if err != nil || u.Scheme != "https" || u.Host == "" {
		return nil, fmt.Errorf("server address %q: want HOST:PORT or https://HOST:PORT", server)
	}
	tlsConf := &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{cert},
		RootCAs:      pool,
		// The admin server certificate carries the names trustmesh-server,
		// localhost and the listen addresses; when the operator dials
		// another name (a load balancer), verify the chain and that name.
		ServerName: u.Hostname(),
	}
	return &Client{
		server: u.Host,
		base:   strings.TrimRight(u.String(), "/"),
		http: &http.Client{
			Timeout: 30 * time.Second,
			// HTTP/1.1: with HTTP/2 a refused handshake surfaces as "client
			// conn could not be established", hiding the TLS alert that
			// tells the operator what is wrong with the credential.
			Transport: &http.Transport{TLSClientConfig: tlsConf},
		},
	}, nil
}

// Do sends one request; in and out are JSON bodies (either may be nil).
func (c *Client) Do(ctx context.Context, method, path string, query url.Values, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("encode request: %w", err)
		}
		body = bytes.NewReader(b)
	}
	u := c.base + path
	if len(query) > 0 {
		u += "?" + query.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		return fmt.Errorf("build request: %w", err)
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		if strings.Contains(err.Error(), "tls: ") {
			return fmt.Errorf("admin API at %s refused the TLS handshake (%w): the credential must come from this server's admin CA (`trustmesh admin issue`), be unexpired, and ca.pem must be the server's admin CA", c.base, err)
		}
		return fmt.Errorf("call admin API at %s: %w", c.base, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("read admin API response: %w", err)
	}
	if resp.StatusCode/100 != 2 {
		var e Error
		if json.Unmarshal(data, &e) == nil && e.Error != "" {
			return &StatusError{Code: resp.StatusCode, Message: e.Error}
		}
		return &StatusError{Code: resp.StatusCode, Message: strings.TrimSpace(string(data))}
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("decode admin API response: %w", err)
	}
	return nil
}

// Stream opens a long-lived GET (such as the tap stream) and returns its
// body; the caller closes it. ctx ends the stream.
func (c *Client) Stream(ctx context.Context, path string, query url.Values) (io.ReadCloser, error) {
	u := c.base + path
	if len(query) > 0 {
		u += "?" + query.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, fmt.Errorf("build request: %w", err)
	}
	// No overall timeout: the stream lasts as long as ctx.
	hc := &http.Client{Transport: c.http.Transport}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("call admin API at %s: %w", c.base, err)
	}
	if resp.StatusCode/100 != 2 {
		defer resp.Body.Close()
		data, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		var e Error
		if json.Unmarshal(data, &e) == nil && e.Error != "" {
			return nil, &StatusError{Code: resp.StatusCode, Message: e.Error}
		}
		return nil, &StatusError{Code: resp.StatusCode, Message: strings.TrimSpace(string(data))}
	}
	return resp.Body, nil
}

// StatusError is a refusal from the server.
type StatusError struct {
	Code    int
	Message string
}

func (e *StatusError) Error() string {
	return fmt.Sprintf("server refused (HTTP %d): %s", e.Code, e.Message)
}

// Package proxy is the data path of `trustmesh proxy`, the sidecar: it
// accepts mesh traffic for the local application over mTLS, forwards the
// application's calls to other services over mTLS, and serves health,
// readiness, a config dump and metrics.
//
// # Model
//
// A [Proxy] is built once from a [Config] by [New], which validates it and
// binds every listener (so a port conflict fails before anything serves),
// and is served by [Proxy.Run] until its context is cancelled. What it
// forwards where, which peers it refuses and which ports accept plaintext
// come from the control plane's snapshot, given to [Proxy.Apply]. Its own
// identity comes from [Config.Source] (the agent's Workload API).
//
// Inbound (--inbound LISTEN=APP): each connection's first bytes are sniffed
// (at most 8 KiB, for at most 5 s). A TLS ClientHello is mesh traffic: a
// TLS 1.3 handshake with our SVID, requiring a client SVID. Anything else is
// plaintext, allowed by the app port's mode: STRICT (the default, and the
// mode before any snapshot) refuses it, PERMISSIVE accepts it, DISABLE
// accepts it too; every plaintext connection is counted in
// trustmesh_plaintext_connections_total{port,action}. After TLS, ALPN
// "h2" or "http/1.1" selects the HTTP server, "trustmesh-tcp" selects TCP
// passthrough, and no ALPN means the decrypted stream is sniffed: an
// HTTP/1.x request line or the h2 preface is HTTP, anything else (or
// silence until the deadline, as from a server-speaks-first protocol) is
// TCP, spliced to the app with half-close. HTTP requests go through
// httputil.ReverseProxy to the app over a pooled transport, HTTP/1.1 when
// the peer spoke HTTP/1.1 and h2c (prior knowledge) when it spoke h2, with
// X-Forwarded-Client-Cert and X-Trustmesh-Peer-Identity removed and
// X-Trustmesh-Peer-Identity set to the verified peer's SPIFFE ID (absent on
// plaintext). Streaming responses (no Content-Length: gRPC, server-sent
// events) are flushed write by write, and trailers pass, so gRPC, including
// streaming, works; other responses are buffered as net/http does.
//
// Outbound (--outbound LISTEN=SERVICE[.NS][:PORT]): the app speaks
// plaintext. The service port is resolved in the current snapshot per
// connection (TCP) or per request (HTTP, HTTP2, GRPC). HTTP ports are served
// by an HTTP/1.1 + h2c server and forwarded round robin over the port's
// endpoints through a pooled http.Transport per service port, with mTLS,
// TLS session resumption (an LRU ClientSessionCache) and keep-alive. Between
// proxies, HTTP ports use HTTP/1.1 and HTTP2/GRPC ports use h2, so the
// inbound side speaks to the app what the app expects. TCP ports dial an
// endpoint per connection with ALPN "trustmesh-tcp" and splice. An unknown
// service or a port without endpoints is a 503 naming the service (HTTP) or
// a closed connection (TCP).
//
// HTTP-proxy mode (--http-proxy LISTEN): for apps using HTTP_PROXY.
// Requests are routed by the absolute-form URL's host, else the Host
// header (lowercased, trailing dot removed), matched against the services'
// hosts; the port is the URL's, else 80, else the service's only port. An
// unknown host is a 502 saying so. CONNECT is answered 405: tunnelling
// HTTPS through the mesh is not supported yet (the mesh already encrypts
// plain http:// calls).
//
// # Identity and revocation
//
// Mesh TLS is TLS 1.3 only, with CurvePreferences X25519MLKEM768 then
// X25519 (hybrid post-quantum first); each handshake's group and whether it
// resumed are counted in trustmesh_tls_handshakes_total{direction,group,
// resumed}. Our certificate is read from the Source on every handshake, so
// a rotated SVID is used by new connections and established ones are not
// disturbed. A peer is verified in VerifyConnection, which runs on full and
// resumed handshakes alike: an X.509-SVID chaining to the Source's bundle,
// in Config.TrustDomain (a peer of any other trust domain is refused), not
// revoked by the current snapshot's revocation list (ca.RevocationList), and
// on outbound connections one of the service's spiffe_ids and, if the
// endpoint names one, the endpoint's spiffe_id. Refusals are logged and
// counted in trustmesh_peers_refused_total{direction,reason}.
//
// Revocation also reaches open connections: every inbound HTTP request
// checks its peer against the current list (403 if revoked); Apply closes
// at once every tracked mesh connection (inbound HTTP and TCP, outbound
// TCP) whose peer the new list revokes, and drops idle pooled outbound
// connections so they re-verify on redial; an outbound response from a peer
// revoked since the dial is refused (502).
//
// # Limits
//
// Set explicitly on every HTTP server the proxy runs (see the constants in
// proxy.go):
//
//	ReadHeaderTimeout          10 s
//	IdleTimeout                2 min
//	MaxHeaderBytes             64 KiB (HTTP/1: 431; HTTP/2: the header list size)
//	header fields              at most 100 per request, else 431
//	HTTP/2 MaxConcurrentStreams        250
//	HTTP/2 MaxReadFrameSize            256 KiB
//	HTTP/2 Max{De,En}coderHeaderTableSize  4 KiB
//	sniff deadline             5 s, at most 8 KiB read
//	TLS handshake deadline     10 s
//	TCP passthrough idle       10 min without a byte in either direction
//	dial timeout               5 s
//	graceful shutdown          5 s, then remaining connections are closed
//
// HTTP/2 is net/http's own implementation (Go 1.26; the module requires
// go 1.26.8). It carries the fixes for HTTP/2 rapid reset (CVE-2023-44487,
// Go's CVE-2023-39325: Go 1.21.3): at most MaxConcurrentStreams handlers
// run per connection, further streams wait, and a connection whose queue
// grows too long is closed; and for CONTINUATION floods (CVE-2023-45288:
// Go 1.22.2 / x/net 0.23.0): header bytes read per request, across
// CONTINUATION frames, are capped by MaxHeaderBytes. The proxy relies
// on those fixes plus the limits above; it does not use golang.org/x/net's
// http2 package.
//
// # Concurrency
//
// The current snapshot is an immutable compiled view behind an
// atomic.Pointer: Apply builds and validates a complete new view (an invalid
// snapshot changes nothing), then swaps it in. Handshakes and requests load
// the pointer once and never lock it; the only mutable state inside a view
// is the per-port round-robin counters, which are atomics. No lock is held
// across I/O: the tracked-connection set and the transport pool take a
// mutex only to read or update their maps, and close connections after
// releasing it. Nothing on the request path calls out of the process.
//
// Goroutines: Run owns the accept loops, one goroutine per connection
// being classified or spliced (two per TCP passthrough), and the
// http.Servers'. Cancelling Run's context closes the listeners, shuts the
// HTTP servers down gracefully, closes what remains and waits for every
// goroutine before Run returns nil. Close releases the listeners of a Proxy
// that was never run; it is safe to call twice. Apply, Ready and
// InboundListeners may be called from any goroutine at any time.
package proxy

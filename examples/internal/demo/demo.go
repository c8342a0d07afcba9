// Package demo is what the three trustmesh demo services (frontend, orders,
// payments) share: their command line and HTTP server, the request log, the
// JSON replies, and the client for the next service of the chain.
//
// Every demo service speaks plaintext HTTP on loopback only. Its trustmesh
// proxy terminates mutual TLS in front of it and sets [PeerIdentityHeader] to
// the caller's verified SPIFFE ID; it reaches the next service through the
// proxy's local outbound listener, which opens the mTLS connection. The apps
// hold no keys: identity, mutual TLS and policy come from the mesh.
package demo

// PeerIdentityHeader carries the caller's SPIFFE ID, set by the mesh.
const PeerIdentityHeader = "X-Trustmesh-Peer-Identity"

// MaxBodyBytes bounds a request body, and what is read of a downstream answer.
const MaxBodyBytes = 64 << 10

// Log attribute keys.
const (
	LogKeyComponent = "component"
	LogKeyMethod    = "method"
	LogKeyPath      = "path"
	LogKeyStatus    = "status"
	LogKeyPeer      = "peer"
	LogKeyDuration  = "duration"
	LogKeyAddr      = "addr"
	LogKeyError     = "error"
)

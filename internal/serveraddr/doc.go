// Package serveraddr is how agents and proxies name and reach the control
// plane: a list of server replicas (--server a:8443,b:8443) and one gRPC
// connection that uses any reachable one and moves to another when the one
// in use goes away.
//
// # Model
//
// Parse validates the list once, at start-up. Dial builds a grpc.ClientConn
// over all of it with gRPC's own machinery: a resolver private to that
// ClientConn (registered with grpc.WithResolvers, so nothing global) hands
// the whole list to the pick_first balancer, which connects to one address
// at a time, trying the next after a failure (or after 250 ms without an
// answer), and keeps the first that connects. When that connection is lost
// the balancer goes idle; the next call or stream starts over at the top
// of the list and waits while it connects, so callers fail over just by
// retrying, as their reconnect loops already do. Every replica presents
// the same SPIFFE ID, so the caller's TLS verification is the same for
// all of them.
//
// Order: by default each ClientConn tries the list in its own random order
// (pick_first's shuffleAddressList), which spreads clients across the
// replicas; Config.InOrder keeps the order given. See Config.InOrder.
//
// A server that exits or restarts closes its connections and is left at
// once. One that vanishes without closing them (a host lost, a network
// partition) is noticed by keepalive, within 40 s.
//
// # Concurrency
//
// Parse and FromContext are pure. The ClientConn is gRPC's and safe for
// concurrent use; its resolver holds no goroutine and no state beyond the
// list. Closing the ClientConn releases everything Dial started.
package serveraddr

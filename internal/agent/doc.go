// Package agent is the trustmesh node agent: it holds the SVIDs of the
// registrations on its node and hands them to local workloads over the SPIFFE
// Workload API, on a unix socket.
//
// # Model
//
// What the agent can serve is a State: the identities of this node (each a
// registration's SPIFFE ID, selectors and current X.509-SVID) and the trust
// bundle. A State is immutable; rotation, a registration change or a bundle
// change publishes a new State as a whole through a StateHolder, which checks
// it first and keeps the old one if it is invalid.
//
// The WorkloadAPI server identifies each caller by the kernel's credentials
// for its socket connection (attest.PeerCredentials) and attests it
// (attest.UnixSelectors by default). The caller gets exactly the identities
// whose selectors are all among its own; a caller that matches none, or
// cannot be attested, gets PermissionDenied "no identity issued" and the
// denial is logged with its pid, uid and selectors. Private keys are never
// logged.
//
// Streams (FetchX509SVID, FetchX509Bundles, FetchJWTBundles) send at once,
// then re-attest the caller on every new State and send again only when what
// that caller receives changed. A caller that loses its last identity gets
// PermissionDenied and the stream ends. JWT-SVIDs are minted on demand by a
// JWTMinter and cached until half their lifetime. The WIT-SVID RPCs are not
// implemented (Unimplemented, which clients treat as "profile not
// supported").
//
// # Concurrency
//
// StateHolder is safe for concurrent use: Set swaps an atomic pointer and
// closes the channel the previous State handed out, so streams wait on a
// channel instead of polling and never hold a lock while they send. Readers
// only ever see a complete State.
//
// WorkloadAPI.Run owns every goroutine the server starts: the gRPC server's,
// its RPC handlers and its shutdown helper. When its context is cancelled it
// ends the streams, stops the server (gracefully, then forcibly after a few
// seconds) and returns only once all of them have returned.
package agent

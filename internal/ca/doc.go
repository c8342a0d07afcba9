// Package ca is the SPIFFE certificate authority of the trustmesh control plane.
//
// It mints X.509-SVIDs and JWT-SVIDs for the trust domain, owns the trust
// bundle that agents and proxies verify peers against, rotates its signing
// keys without breaking any SVID already issued, and keeps a separate admin CA
// for operator client certificates.
//
// # Authorities
//
// An authority is one X.509 signing CA (ECDSA P-256 key + certificate) paired
// with one JWT signing key (ECDSA P-256, ES256). Exactly one authority is
// active: it signs every SVID. Rotation is two explicit steps so that the new
// keys reach every verifier before anything is signed with them:
//
//	          Prepare()              Activate()            Activate() of the next one
//	(new) ───────────────▶ prepared ─────────────▶ active ──────────────────────────▶ retired
//	                                                                                     │ Tidy(), once
//	                                                                                     │ now ≥ RemoveAfter
//	                                                                                     ▼
//	                                                                                 (removed)
//
//	state      in the bundle                  signs SVIDs
//	prepared   yes                            no
//	active     yes                            yes; exactly one authority is active
//	retired    yes, until RemoveAfter         no
//	removed    no; its files are deleted      no
//
// (In upstream mode an authority's X.509 CA is an intermediate: what enters
// and leaves the bundle is its JWT key; the X.509 part is the upstream root.)
//
// A prepared authority is published in [CA.Bundle] (its X.509 CA certificate
// and its JWT public key) but signs nothing; the server activates it after a
// propagation delay ([CA.PreparedSince]). On activation the previous active
// authority is retired: it stays in the bundle until RemoveAfter, the latest
// expiry of anything it signed, and [CA.Tidy] removes it from the bundle and
// from disk after that.
//
// Nothing an authority signs outlives its own CA certificate: SVID expiry is
// capped at the signing CA's NotAfter, for X.509 and JWT alike.
//
// # Reservations
//
// To know when a retired authority may leave the bundle, each authority keeps
// a persisted ReservedNotAfter that is always at least the expiry of anything
// it has signed. Before signing an SVID that would expire after the
// reservation, the CA first moves the reservation to that expiry plus ten
// minutes and writes it to disk; only then does it sign. Writes are therefore
// rare (at most one every ten minutes under steady load) and a crash can only
// over-estimate, never under-estimate, how long an authority must be trusted.
// On activation of a successor, RemoveAfter = ReservedNotAfter.
//
// # Upstream mode
//
// With Config.UpstreamCertFile and Config.UpstreamKeyFile the CA runs as an
// intermediate under an existing PKI: each authority's X.509 CA is signed by
// the upstream key (its validity capped by the upstream chain), the bundle's
// X.509 part is the upstream root, and every X.509-SVID chain is
// leaf → our intermediate → upstream intermediates (if any). Rotation re-signs
// a new intermediate; the bundle's X.509 part does not change.
//
// # Admin CA
//
// Operator client certificates ([CA.SignAdmin]) come from a separate
// self-signed admin CA that is never part of the SPIFFE bundle, so no workload
// SVID can pass as an operator and no operator certificate can pass as a
// workload. The admin CA is not rotated by Prepare/Activate.
//
// # Files
//
// Config.Dir (mode 0700) holds:
//
//	authorities.json      metadata only: states, times, reservations, bundle sequence number
//	<id>.crt.pem          an authority's X.509 CA certificate
//	<id>.key.pem          its private key (PKCS#8, 0600)
//	<id>.jwt.key.pem      its JWT signing key (PKCS#8, 0600)
//	admin-ca.crt.pem      the admin CA certificate
//	admin-ca.key.pem      the admin CA key (PKCS#8, 0600)
//
// <id> is the hex SubjectKeyId of the authority's CA certificate. Every write
// is atomic (temporary file, fsync, rename, fsync of the directory), and
// authorities.json is the commit point: key and certificate files are written
// before it references them and deleted only after it no longer does. Key
// material is never logged.
//
// # Concurrency
//
// All methods are safe for concurrent use. SignX509SVID and SignJWTSVID hold a
// read lock while signing and do no file I/O except the rare reservation
// write, which takes the write lock. Prepare, Activate and Tidy are serialised
// with each other; they generate keys and write key files without blocking
// signers and take the write lock only to commit the new state.
package ca

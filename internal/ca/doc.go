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
// from storage after that.
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
// minutes and writes it to storage; only then does it sign. Writes are therefore
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
// # Storage
//
// The CA keeps its state in a [Storage]: a flat set of named values, each
// with a version for compare-and-swap. The names are file names:
//
//	authorities.json      metadata only: states, times, reservations, bundle sequence number
//	<id>.crt.pem          an authority's X.509 CA certificate
//	<id>.key.pem          its private key (PKCS#8 PEM; secret)
//	<id>.jwt.key.pem      its JWT signing key (PKCS#8 PEM; secret)
//	admin-ca.crt.pem      the admin CA certificate
//	admin-ca.key.pem      the admin CA key (PKCS#8 PEM; secret)
//
// <id> is the hex SubjectKeyId of the authority's CA certificate. There are
// two storages:
//
//   - Config.Dir, the default: one file per value in a directory of mode
//     0700; secret files and authorities.json have mode 0600 and
//     certificates 0644, and a secret file that group or others can access
//     is refused. Every write is atomic (temporary file, fsync, rename,
//     fsync of the directory). Versions are a hash of the content.
//   - [NewStoreStorage], for several server replicas on one database: one
//     store blob per value, named prefix+name, with the store's blob
//     versions. Secret values are sealed with a KEK (package kek) for their
//     blob name before they reach the store, and a secret value that is not
//     sealed is refused; certificates and authorities.json are plain.
//
// authorities.json is the commit point: key and certificate values are
// written before it references them and deleted only after it no longer
// does. Key material is never logged.
//
// # Replicas
//
// Several CAs (one per server replica) may share one storage. Every write
// of authorities.json compares and swaps on the version the CA last read or
// wrote, so no CA overwrites a state it has not seen:
//
//   - A reservation write that finds a newer version reloads it and merges
//     (the reservation only ever grows; the other CA's changes are kept),
//     then tries again; if the authority is no longer active, the signer
//     moves to the new active one.
//   - Prepare, Activate and Tidy (run by one elected replica, but a short
//     overlap with a successor is possible) reload the state and return an
//     error wrapping [ErrConcurrentChange]: the caller retries on its next
//     tick, when the step may be done already. A Prepare that lost removes
//     its new authority's values, which nothing references.
//   - On first start, every CA that finds no authorities.json creates its
//     own first authority and then creates authorities.json only if it
//     still does not exist: one wins, the others remove their authority's
//     values and load the winner's. The admin CA's key is created the same
//     way (a key without a certificate gets one; the first certificate
//     written wins).
//   - [CA.Reload] re-reads authorities.json (one read if it has not
//     changed) and loads the authorities it references that the CA has not
//     seen, so a replica follows another's rotation; the server calls it
//     when the store reports a blob change and on a periodic tick. A
//     replica that has not reloaded yet keeps signing with the authority it
//     knows as active only within that authority's reservation: extending
//     it is a write, which fails and reloads.
//
// Because RemoveAfter is computed from the reservation in the state that
// Activate swaps, and every reservation that state did not include was
// refused, no authority leaves the bundle before anything any replica
// signed with it expires (given clocks in step to within the ten minutes
// of slack).
//
// # Concurrency
//
// All methods are safe for concurrent use. SignX509SVID and SignJWTSVID hold a
// read lock while signing and do no storage I/O except the rare reservation
// write, which takes the write lock. Prepare, Activate and Tidy are serialised
// with each other; they generate keys and write key values without blocking
// signers and take the write lock only to commit the new state. Reload reads
// without a lock and takes the write lock only to swap in what it read, if
// no commit happened meanwhile (it starts over otherwise). Each operation's
// storage I/O is bounded by a timeout.
package ca

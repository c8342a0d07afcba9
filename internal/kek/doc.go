// Package kek holds the key-encryption key (KEK) that seals the control
// plane's secrets before they reach the shared database, so that the
// database alone (a dump, a backup, a read-only credential) never yields a
// usable private key. Every server replica of a trust domain loads the same
// KEK from a file the operator provides.
//
// # Key file
//
// A KEK file holds 32 random bytes, base64-encoded (standard alphabet, with
// padding: 44 characters) on one line; a trailing newline is tolerated.
// The file must not be accessible to group or others (mode 0600 or
// stricter): [Load] refuses it otherwise. [Generate] writes a new one and
// never overwrites an existing file.
//
// # Key ID
//
// A KEK is named by its key ID: the first 8 bytes of
//
//	SHA-256("trustmesh kek id v1" || 0x00 || key)
//
// written as 16 lowercase hex digits. The hash is one-way and
// domain-separated, so the ID reveals nothing about the key and never equals
// a hash computed for another purpose. The ID is in every sealed value, so a
// server started with the wrong KEK says which key sealed the value and
// which one it holds.
//
// # Envelope
//
// [KEK.Seal] encrypts with AES-256-GCM under a fresh random 96-bit nonce and
// returns, in order:
//
//	offset  size  field
//	0       3     magic "tmk"
//	3       1     envelope version, 1
//	4       8     key ID (raw bytes)
//	12      12    nonce
//	24      n+16  AES-256-GCM ciphertext of the n-byte plaintext, then its tag
//
// The additional authenticated data is the 12-byte header (magic, version,
// key ID) followed by the name the value is sealed for (the header has a
// fixed length, so the concatenation is unambiguous). A sealed value
// therefore opens only under the name it was sealed for: a value copied to
// another name, or with any byte of the header, nonce, ciphertext or tag
// changed, fails to open. Random nonces are safe for far more values than
// the control plane ever seals under one key (NIST SP 800-38D: up to 2^32).
//
// A future envelope version will use another version byte; [KEK.Open]
// refuses versions it does not know.
//
// # Secrets
//
// The key bytes never leave the package: they are not kept once the cipher
// is built, and no error, log line or formatted value (String, GoString)
// holds them.
//
// # Concurrency
//
// A KEK is immutable; its methods are safe for concurrent use.
package kek

package kek

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
)

const (
	// KeySize is the size of a KEK in bytes (AES-256).
	KeySize = 32

	// IDSize is the size of a key ID in bytes.
	IDSize = 8

	// envelopeVersion is the version byte of the envelopes Seal writes.
	envelopeVersion = 1

	magic       = "tmk"
	headerSize  = len(magic) + 1 + IDSize // magic, version, key ID
	nonceSize   = 12
	tagSize     = 16
	minSealSize = headerSize + nonceSize + tagSize

	// keyIDDomain separates the key ID hash from any other use of the key.
	keyIDDomain = "trustmesh kek id v1\x00"

	// fileMode is the mode of a key file Generate writes.
	fileMode fs.FileMode = 0o600
	// maxFileSize bounds what Load reads: a key file is one short line.
	maxFileSize = 1 << 10

	// generateHint tells an operator how to make a key file.
	generateHint = "generate one with: trustmesh kek generate --out FILE"
)

// KEK is a key-encryption key. It holds the AES-256-GCM cipher built from the
// key, not the key bytes.
type KEK struct {
	aead cipher.AEAD
	id   [IDSize]byte
}

// New returns the KEK for a 32-byte key. key is not retained: the caller may
// overwrite it afterwards.
func New(key []byte) (*KEK, error) {
	if len(key) != KeySize {
		return nil, fmt.Errorf("KEK is %d bytes, want %d", len(key), KeySize)
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("build KEK cipher: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("build KEK cipher: %w", err)
	}
	return &KEK{aead: aead, id: keyID(key)}, nil
}

// keyID is the first IDSize bytes of SHA-256(keyIDDomain || key).
func keyID(key []byte) [IDSize]byte {
	h := sha256.New()
	h.Write([]byte(keyIDDomain))
	h.Write(key)
	var id [IDSize]byte
	copy(id[:], h.Sum(nil))
	return id
}

// Load reads the KEK file at path (see the package documentation for the
// format). It refuses a file that group or others can access, and a file
// that does not hold exactly one base64 key of 32 bytes.
func Load(path string) (*KEK, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read KEK file: %w", err)
	}
	defer f.Close()
	// Stat the open file, not the path, so that the mode checked is the
	// mode of what is read.
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("read KEK file: %w", err)
	}
	switch {
	case !fi.Mode().IsRegular():
		return nil, fmt.Errorf("KEK file %s is not a regular file", path)
	case fi.Mode().Perm()&0o077 != 0:
		return nil, fmt.Errorf("KEK file %s has mode %04o: group or others can access it; run chmod 600 %s", path, fi.Mode().Perm(), path)
	}
	b, err := io.ReadAll(io.LimitReader(f, maxFileSize+1))
	defer clear(b)
	if err != nil {
		return nil, fmt.Errorf("read KEK file %s: %w", path, err)
	}
	if len(b) > maxFileSize {
		return nil, fmt.Errorf("KEK file %s is larger than %d bytes: it is not a KEK file (%s)", path, maxFileSize, generateHint)
	}
	k, err := decode(b)
	if err != nil {
		return nil, fmt.Errorf("KEK file %s %w (%s)", path, err, generateHint)
	}
	return k, nil
}

// decode parses the content of a key file. Its errors never quote the
// content; they complete a sentence that starts with the file name.
func decode(b []byte) (*KEK, error) {
	line := bytes.TrimSuffix(b, []byte("\n"))
	line = bytes.TrimSuffix(line, []byte("\r"))
	switch {
	case len(line) == 0:
		return nil, errors.New("is empty")
	case bytes.ContainsAny(line, "\r\n"):
		return nil, errors.New("holds more than one line, want one base64 line")
	}
	key := make([]byte, base64.StdEncoding.DecodedLen(len(line)))
	defer clear(key)
	n, err := base64.StdEncoding.Strict().Decode(key, line)
	if err != nil {
		// The error is only an offset; still, say nothing about the content.
		return nil, fmt.Errorf("is not base64 (standard alphabet, %d characters), want %d random bytes in base64",
			base64.StdEncoding.EncodedLen(KeySize), KeySize)
	}
	if n != KeySize {
		return nil, fmt.Errorf("holds a %d-byte key, want %d bytes (%d base64 characters)",
			n, KeySize, base64.StdEncoding.EncodedLen(KeySize))
	}
	return New(key[:n])
}

// Generate writes a new random KEK to a new file at path, mode 0600 (Load
// it to learn its key ID). It never replaces an existing file: values sealed
// with the key in it could no longer be opened.
func Generate(path string) (err error) {
	key := make([]byte, KeySize)
	defer clear(key)
	if _, err := rand.Read(key); err != nil {
		return fmt.Errorf("generate KEK: %w", err)
	}
	line := make([]byte, base64.StdEncoding.EncodedLen(KeySize)+1)
	defer clear(line)
	base64.StdEncoding.Encode(line, key)
	line[len(line)-1] = '\n'

	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, fileMode)
	if errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("KEK file %s already exists: it is not replaced, as values sealed with it could no longer be opened", path)
	}
	if err != nil {
		return fmt.Errorf("write KEK file: %w", err)
	}
	defer func() {
		if err != nil {
			_ = f.Close()
			_ = os.Remove(path)
		}
	}()
	// The umask may only have cleared bits; make the mode exact.
	if err := f.Chmod(fileMode); err != nil {
		return fmt.Errorf("write KEK file: %w", err)
	}
	if _, err := f.Write(line); err != nil {
		return fmt.Errorf("write KEK file: %w", err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("write KEK file: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write KEK file: %w", err)
	}
	if err := syncDir(filepath.Dir(path)); err != nil {
		return fmt.Errorf("write KEK file %s: sync its directory: %w", path, err)
	}
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	return errors.Join(d.Sync(), d.Close())
}

// ID returns the key ID: 16 lowercase hex digits (see the package
// documentation). It is safe to log.
func (k *KEK) ID() string {
	return hex.EncodeToString(k.id[:])
}

// String describes k by its key ID only.
func (k *KEK) String() string {
	return "KEK " + k.ID()
}

// GoString is String, so that %#v does not print the cipher's state.
func (k *KEK) GoString() string {
	return k.String()
}

// header returns the envelope header for k.
func (k *KEK) header() []byte {
	h := make([]byte, 0, headerSize)
	h = append(h, magic...)
	h = append(h, envelopeVersion)
	return append(h, k.id[:]...)
}

// additionalData is the AAD of a value sealed for name under header.
func additionalData(header []byte, name string) []byte {
	ad := make([]byte, 0, len(header)+len(name))
	ad = append(ad, header...)
	return append(ad, name...)
}

// Seal encrypts plaintext for name (see the package documentation for the
// envelope). Only Open with the same KEK and the same name opens it.
func (k *KEK) Seal(name string, plaintext []byte) ([]byte, error) {
	header := k.header()
	out := make([]byte, headerSize+nonceSize, minSealSize+len(plaintext))
	copy(out, header)
	nonce := out[headerSize:]
	if _, err := rand.Read(nonce); err != nil {
		return nil, fmt.Errorf("seal: generate nonce: %w", err)
	}
	return k.aead.Seal(out, nonce, plaintext, additionalData(header, name)), nil
}

// Open decrypts a value Seal returned for name. It fails, with an error that
// says why, for a value that is not an envelope, has an unknown envelope
// version, was sealed with another KEK (the error names both key IDs), or
// does not authenticate (modified, or sealed for another name).
func (k *KEK) Open(name string, sealed []byte) ([]byte, error) {
	switch {
	case len(sealed) < minSealSize || string(sealed[:len(magic)]) != magic:
		return nil, errors.New("not a sealed value: no KEK envelope header")
	case sealed[len(magic)] != envelopeVersion:
		return nil, fmt.Errorf("sealed value has envelope version %d, this server reads version %d", sealed[len(magic)], envelopeVersion)
	}
	header := sealed[:headerSize]
	if id := header[len(magic)+1:]; !bytes.Equal(id, k.id[:]) {
		return nil, fmt.Errorf("sealed with KEK key ID %x, but this server's KEK has key ID %s: every server must load the same KEK file", id, k.ID())
	}
	nonce := sealed[headerSize : headerSize+nonceSize]
	plaintext, err := k.aead.Open(nil, nonce, sealed[headerSize+nonceSize:], additionalData(header, name))
	if err != nil {
		return nil, fmt.Errorf("sealed value does not authenticate as %q: it was modified, or sealed for another name", name)
	}
	return plaintext, nil
}

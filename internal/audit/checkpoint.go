package audit

import (
	"bufio"
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/trustmesh/trustmesh/internal/atomicfile"
	"github.com/trustmesh/trustmesh/internal/store"
	"github.com/trustmesh/trustmesh/internal/store/auditchain"
)

// Files of the server's audit directory (DATA_DIR/audit).
const (
	KeyFile         = "checkpoint.key"
	PublicKeyFile   = "checkpoint.pub"
	CheckpointsFile = "checkpoints.jsonl"
)

// checkpointDomain separates checkpoint signatures from every other use of
// the key; "v1" versions the signed encoding.
const checkpointDomain = "trustmesh-audit-checkpoint-v1\n"

// maxCheckpointLine bounds one line of a checkpoint file (a real line is
// about 250 bytes).
const maxCheckpointLine = 4096

// KeyID names a checkpoint public key: the lowercase hex of the first 8
// bytes of its SHA-256.
func KeyID(pub ed25519.PublicKey) string {
	sum := sha256.Sum256(pub)
	return hex.EncodeToString(sum[:8])
}

// CheckpointMessage returns the bytes a checkpoint's signature covers (see
// the package documentation).
func CheckpointMessage(c store.AuditCheckpoint) []byte {
	b := make([]byte, 0, 192)
	b = append(b, checkpointDomain...)
	b = append(b, `{"hash":`...)
	b = auditchain.AppendString(b, c.Hash)
	b = append(b, `,"key_id":`...)
	b = auditchain.AppendString(b, c.KeyID)
	b = append(b, `,"seq":`...)
	b = strconv.AppendInt(b, c.Seq, 10)
	b = append(b, `,"time":"`...)
	b = auditchain.AppendTime(b, c.Time)
	b = append(b, `"}`...)
	return b
}

// SignCheckpoint returns the checkpoint of record (seq, hash) at time t,
// signed with key.
func SignCheckpoint(key ed25519.PrivateKey, seq int64, hash string, t time.Time) store.AuditCheckpoint {
	pub, _ := key.Public().(ed25519.PublicKey)
	c := store.AuditCheckpoint{Seq: seq, Hash: hash, Time: t.UTC(), KeyID: KeyID(pub)}
	c.Signature = ed25519.Sign(key, CheckpointMessage(c))
	return c
}

// VerifyCheckpoint checks c's signature against the key among keys whose
// KeyID is c's.
func VerifyCheckpoint(c store.AuditCheckpoint, keys []ed25519.PublicKey) error {
	for _, k := range keys {
		if KeyID(k) != c.KeyID {
			continue
		}
		if !ed25519.Verify(k, CheckpointMessage(c), c.Signature) {
			return errors.New("its signature does not verify")
		}
		return nil
	}
	return fmt.Errorf("it was signed by key %s, which is not among the public keys given", c.KeyID)
}

// AppendCheckpointLine appends c as one line of a checkpoint file, newline
// included.
func AppendCheckpointLine(dst []byte, c store.AuditCheckpoint) []byte {
	dst = append(dst, `{"seq":`...)
	dst = strconv.AppendInt(dst, c.Seq, 10)
	dst = append(dst, `,"hash":`...)
	dst = auditchain.AppendString(dst, c.Hash)
	dst = append(dst, `,"time":"`...)
	dst = auditchain.AppendTime(dst, c.Time)
	dst = append(dst, `","key_id":`...)
	dst = auditchain.AppendString(dst, c.KeyID)
	dst = append(dst, `,"signature":"`...)
	dst = base64.StdEncoding.AppendEncode(dst, c.Signature)
	return append(dst, "\"}\n"...)
}

// checkpointLine is the JSON shape of a checkpoint file line.
type checkpointLine struct {
	Seq       *int64  `json:"seq"`
	Hash      *string `json:"hash"`
	Time      *string `json:"time"`
	KeyID     *string `json:"key_id"`
	Signature *string `json:"signature"`
}

// ParseCheckpointLine parses one line of a checkpoint file (without its
// newline). Every field must be present and well formed; the signature is
// not checked (see VerifyCheckpoint).
func ParseCheckpointLine(line []byte) (store.AuditCheckpoint, error) {
	var l checkpointLine
	if err := decodeStrict(line, &l); err != nil {
		return store.AuditCheckpoint{}, err
	}
	if l.Seq == nil || l.Hash == nil || l.Time == nil || l.KeyID == nil || l.Signature == nil {
		return store.AuditCheckpoint{}, errors.New("want every field of seq, hash, time, key_id and signature")
	}
	c := store.AuditCheckpoint{Seq: *l.Seq, Hash: *l.Hash, KeyID: *l.KeyID}
	if c.Seq < 1 {
		return store.AuditCheckpoint{}, fmt.Errorf("seq %d: want 1 or more", c.Seq)
	}
	if !isHash(c.Hash) {
		return store.AuditCheckpoint{}, fmt.Errorf("hash %q: want 64 lowercase hex digits", c.Hash)
	}
	t, err := parseTime(*l.Time)
	if err != nil {
		return store.AuditCheckpoint{}, err
	}
	c.Time = t
	if c.Signature, err = base64.StdEncoding.Strict().DecodeString(*l.Signature); err != nil {
		return store.AuditCheckpoint{}, fmt.Errorf("signature: %w", err)
	}
	if len(c.Signature) != ed25519.SignatureSize {
		return store.AuditCheckpoint{}, fmt.Errorf("signature has %d bytes, want %d", len(c.Signature), ed25519.SignatureSize)
	}
	return c, nil
}

// FileCheckpoint is a checkpoint read from a file, with its line number.
type FileCheckpoint struct {
	store.AuditCheckpoint
	Line int
}

// ReadCheckpoints parses a checkpoint file. Empty lines are skipped; a line
// that is not a checkpoint is an error naming it.
func ReadCheckpoints(r io.Reader) ([]FileCheckpoint, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 512), maxCheckpointLine)
	var (
		cps []FileCheckpoint
		n   int
	)
	for sc.Scan() {
		n++
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 {
			continue
		}
		c, err := ParseCheckpointLine(line)
		if err != nil {
			return cps, &lineError{line: n, err: err}
		}
		cps = append(cps, FileCheckpoint{AuditCheckpoint: c, Line: n})
	}
	switch err := sc.Err(); {
	case errors.Is(err, bufio.ErrTooLong):
		return cps, &lineError{line: n + 1, err: fmt.Errorf("longer than %d bytes", maxCheckpointLine)}
	case err != nil:
		return cps, fmt.Errorf("after line %d: %w", n, err)
	}
	return cps, nil
}

type lineError struct {
	line int
	err  error
}

func (e *lineError) Error() string { return fmt.Sprintf("line %d: %v", e.line, e.err) }
func (e *lineError) Unwrap() error { return e.err }

// appendCheckpointFile appends c to the checkpoint file at path (created
// with mode 0600) in one write, and syncs it.
func appendCheckpointFile(path string, cps ...store.AuditCheckpoint) error {
	var b []byte
	for _, c := range cps {
		b = AppendCheckpointLine(b, c)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	return errors.Join(err, f.Close())
}

// lastCheckpointInFile returns the seq of the file's last checkpoint, 0 for
// an empty file, and fs.ErrNotExist if there is no file. Only the file's end
// is read.
func lastCheckpointInFile(path string) (int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return 0, err
	}
	off := max(fi.Size()-2*maxCheckpointLine, 0)
	tail := make([]byte, fi.Size()-off)
	if _, err := f.ReadAt(tail, off); err != nil && !errors.Is(err, io.EOF) {
		return 0, err
	}
	lines := bytes.Split(bytes.TrimSpace(tail), []byte("\n"))
	last := bytes.TrimSpace(lines[len(lines)-1])
	if len(last) == 0 {
		return 0, nil
	}
	c, err := ParseCheckpointLine(last)
	if err != nil {
		return 0, fmt.Errorf("last line of %s: %w", path, err)
	}
	return c.Seq, nil
}

// LoadOrCreateKey returns the checkpoint signing key of dir (the server's
// DATA_DIR/audit): KeyFile, PKCS#8 PEM with mode 0600. On first start it
// generates one and writes it with PublicKeyFile; a missing PublicKeyFile is
// rewritten, one that does not match the key is an error. created reports a
// new key. The key is never logged.
func LoadOrCreateKey(dir string) (key ed25519.PrivateKey, created bool, err error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, false, fmt.Errorf("create audit dir: %w", err)
	}
	keyPath, pubPath := filepath.Join(dir, KeyFile), filepath.Join(dir, PublicKeyFile)
	key, err = readPrivateKey(keyPath)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if _, statErr := os.Stat(filepath.Join(dir, CheckpointsFile)); statErr == nil {
			return nil, false, fmt.Errorf("%s is missing but %s exists: restore the key from a backup, or move %s and %s aside (keep them: with that public key they still verify the log up to now) to start with a new key",
				keyPath, CheckpointsFile, CheckpointsFile, PublicKeyFile)
		}
		_, key, err = ed25519.GenerateKey(rand.Reader)
		if err != nil {
			return nil, false, fmt.Errorf("generate checkpoint key: %w", err)
		}
		der, err := x509.MarshalPKCS8PrivateKey(key)
		if err != nil {
			return nil, false, fmt.Errorf("encode checkpoint key: %w", err)
		}
		if err := atomicfile.Write(keyPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
			return nil, false, fmt.Errorf("write checkpoint key: %w", err)
		}
		created = true
	case err != nil:
		return nil, false, err
	}

	pub, _ := key.Public().(ed25519.PublicKey)
	pubs, err := ReadPublicKeys(pubPath)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if err := writePublicKey(pubPath, pub); err != nil {
			return nil, false, err
		}
	case err != nil:
		return nil, false, err
	case len(pubs) != 1 || !pubs[0].Equal(pub):
		return nil, false, fmt.Errorf("%s does not match %s: restore the original, or remove %s to have it rewritten from the key", pubPath, keyPath, pubPath)
	}
	return key, created, nil
}

func writePublicKey(path string, pub ed25519.PublicKey) error {
	b, err := EncodePublicKey(pub)
	if err != nil {
		return fmt.Errorf("encode checkpoint public key: %w", err)
	}
	if err := atomicfile.Write(path, b, 0o644); err != nil {
		return fmt.Errorf("write checkpoint public key: %w", err)
	}
	return nil
}

// readPrivateKey reads an Ed25519 PKCS#8 PEM key that group and others
// cannot access.
func readPrivateKey(path string) (ed25519.PrivateKey, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("%s has mode %04o, want 0600 (run chmod 600 %s)", path, fi.Mode().Perm(), path)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	block, _ := pem.Decode(b)
	if block == nil || block.Type != "PRIVATE KEY" {
		return nil, fmt.Errorf("%s: no PEM PRIVATE KEY block", path)
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		// The parse error carries no key material.
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	key, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("%s: got a %T, want an Ed25519 key", path, k)
	}
	return key, nil
}

// ReadPublicKeys reads every PUBLIC KEY block of a PEM file: the current
// checkpoint.pub, or several concatenated to verify a log across a key
// change.
func ReadPublicKeys(path string) ([]ed25519.PublicKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	keys, err := ParsePublicKeys(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return keys, nil
}

// ParsePublicKeys parses every PUBLIC KEY block of PEM data.
func ParsePublicKeys(b []byte) ([]ed25519.PublicKey, error) {
	var keys []ed25519.PublicKey
	for {
		var block *pem.Block
		block, b = pem.Decode(b)
		if block == nil {
			break
		}
		if block.Type != "PUBLIC KEY" {
			continue
		}
		k, err := x509.ParsePKIXPublicKey(block.Bytes)
		if err != nil {
			return nil, err
		}
		pub, ok := k.(ed25519.PublicKey)
		if !ok {
			return nil, fmt.Errorf("got a %T public key, want Ed25519", k)
		}
		keys = append(keys, pub)
	}
	if len(keys) == 0 {
		return nil, errors.New("no PEM PUBLIC KEY block")
	}
	return keys, nil
}

// EncodePublicKey returns pub as a PKIX PEM block.
func EncodePublicKey(pub ed25519.PublicKey) ([]byte, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), nil
}

// decodeStrict decodes one JSON object that has no unknown fields and
// nothing after it.
func decodeStrict(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return errors.New("data after the JSON object")
	}
	return nil
}

// parseTime parses an RFC 3339 time (the encodings write TimeLayout; any
// RFC 3339 form is read) into UTC.
func parseTime(s string) (time.Time, error) {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("time %q: want RFC 3339", s)
	}
	t = t.UTC()
	if y := t.Year(); y < 0 || y > 9999 {
		// An offset can carry a four-digit year past what the encoding
		// (and RFC 3339) can write in UTC.
		return time.Time{}, fmt.Errorf("time %q: year %d in UTC is outside 0000 to 9999", s, y)
	}
	return t, nil
}

func isHash(s string) bool {
	if len(s) != sha256.Size*2 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

package ca

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/trustmesh/trustmesh/internal/atomicfile"
	"github.com/trustmesh/trustmesh/internal/store"
)

// Names of the CA's values: file names inside Config.Dir, blob names
// after the prefix in a StoreStorage.
const (
	metadataFile     = "authorities.json"
	adminCertFile    = "admin-ca.crt.pem"
	adminKeyFile     = "admin-ca.key.pem"
	certFileSuffix   = ".crt.pem"
	keyFileSuffix    = ".key.pem"
	jwtKeyFileSuffix = ".jwt.key.pem"

	dirMode    fs.FileMode = 0o700
	keyMode    fs.FileMode = 0o600
	publicMode fs.FileMode = 0o644

	metadataVersion = 1
)

// Modes recorded in authorities.json, so that a directory created for one
// mode is never silently reused by the other.
const (
	modeSelfSigned = "self-signed"
	modeUpstream   = "upstream"
)

// metadata is the content of authorities.json: everything but key material
// and certificates.
type metadata struct {
	Version        int                 `json:"version"`
	TrustDomain    string              `json:"trustDomain"`
	Mode           string              `json:"mode"`
	SequenceNumber uint64              `json:"sequenceNumber"`
	Authorities    []authorityMetadata `json:"authorities"`
}

// authorityMetadata is one authority's entry in authorities.json.
type authorityMetadata struct {
	ID               string         `json:"id"`
	State            AuthorityState `json:"state"`
	JWTKeyID         string         `json:"jwtKeyID"`
	CreatedAt        time.Time      `json:"createdAt"`
	ActivatedAt      time.Time      `json:"activatedAt,omitzero"`
	RetiredAt        time.Time      `json:"retiredAt,omitzero"`
	RemoveAfter      time.Time      `json:"removeAfter,omitzero"`
	ReservedNotAfter time.Time      `json:"reservedNotAfter,omitzero"`
}

func certFileName(id string) string   { return id + certFileSuffix }
func keyFileName(id string) string    { return id + keyFileSuffix }
func jwtKeyFileName(id string) string { return id + jwtKeyFileSuffix }

// authorityFiles lists the names of the values that belong to authority id.
func authorityFiles(id string) []string {
	return []string{certFileName(id), keyFileName(id), jwtKeyFileName(id)}
}

// readMetadata reads authorities.json and its version. It returns
// (nil, 0, nil) if there is none.
func readMetadata(ctx context.Context, s Storage) (*metadata, int64, error) {
	b, version, err := s.Read(ctx, metadataFile, ClassPrivate)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, 0, nil
	}
	if err != nil {
		return nil, 0, err
	}
	md, err := parseMetadata(b)
	if err != nil {
		return nil, 0, err
	}
	return md, version, nil
}

func parseMetadata(b []byte) (*metadata, error) {
	var md metadata
	if err := json.Unmarshal(b, &md); err != nil {
		return nil, fmt.Errorf("parse %s: %w", metadataFile, err)
	}
	if md.Version != metadataVersion {
		return nil, fmt.Errorf("%s: unsupported version %d, want %d", metadataFile, md.Version, metadataVersion)
	}
	return &md, nil
}

func encodeMetadata(md *metadata) ([]byte, error) {
	b, err := json.MarshalIndent(md, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

// writeFileAtomic replaces path with data (see package atomicfile) and then
// syncs the directory, so that the rename itself survives a crash: a
// reservation that was reported written must never be lost.
func writeFileAtomic(path string, data []byte, mode fs.FileMode) error {
	if err := atomicfile.Write(path, data, mode); err != nil {
		return err
	}
	return syncDir(filepath.Dir(path))
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	return errors.Join(d.Sync(), d.Close())
}

func removeIfExists(path string) error {
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

// prepareDir creates dir with mode 0700. An existing dir that group or
// others can write to is refused (its files could have been replaced); one
// they can only read is tightened to 0700, and tightened reports that.
func prepareDir(dir string) (tightened bool, err error) {
	fi, err := os.Stat(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if err := os.MkdirAll(dir, dirMode); err != nil {
			return false, err
		}
		// MkdirAll is subject to the umask; make the mode exact.
		return false, os.Chmod(dir, dirMode)
	case err != nil:
		return false, err
	case !fi.IsDir():
		return false, fmt.Errorf("%s is not a directory", dir)
	case fi.Mode().Perm()&0o022 != 0:
		return false, fmt.Errorf("%s has mode %04o: group or others can write to it; check its files and run chmod 700 %s", dir, fi.Mode().Perm(), dir)
	case fi.Mode().Perm()&0o077 != 0:
		return true, os.Chmod(dir, dirMode)
	}
	return false, nil
}

func encodeCertPEM(certs ...*x509.Certificate) []byte {
	var out []byte
	for _, c := range certs {
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	return out
}

func encodeKeyPEM(key crypto.Signer) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// parseCerts returns every CERTIFICATE block of PEM data, in order. where
// names the data in errors.
func parseCerts(b []byte, where string) ([]*x509.Certificate, error) {
	var certs []*x509.Certificate
	for {
		var block *pem.Block
		block, b = pem.Decode(b)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", where, err)
		}
		certs = append(certs, cert)
	}
	if len(certs) == 0 {
		return nil, fmt.Errorf("%s: no PEM CERTIFICATE block", where)
	}
	return certs, nil
}

// readCerts reads every CERTIFICATE block of a PEM file, in order.
func readCerts(path string) ([]*x509.Certificate, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return parseCerts(b, path)
}

// parseCert parses PEM data that holds exactly one certificate.
func parseCert(b []byte, where string) (*x509.Certificate, error) {
	certs, err := parseCerts(b, where)
	if err != nil {
		return nil, err
	}
	if len(certs) != 1 {
		return nil, fmt.Errorf("%s: got %d certificates, want 1", where, len(certs))
	}
	return certs[0], nil
}

// readKey reads a PEM private key file (see parseKey). If private is true,
// the file must not be accessible to group or others.
func readKey(path string, private bool) (crypto.Signer, error) {
	if private {
		fi, err := os.Stat(path)
		if err != nil {
			return nil, err
		}
		if fi.Mode().Perm()&0o077 != 0 {
			return nil, fmt.Errorf("%s has mode %04o, want 0600 (run chmod 600 %s)", path, fi.Mode().Perm(), path)
		}
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return parseKey(b, path)
}

// parseKey parses a PEM private key: PKCS#8 ("PRIVATE KEY"), SEC 1
// ("EC PRIVATE KEY") or PKCS#1 ("RSA PRIVATE KEY"); ECDSA, RSA or Ed25519.
func parseKey(b []byte, where string) (crypto.Signer, error) {
	for {
		var block *pem.Block
		block, b = pem.Decode(b)
		if block == nil {
			return nil, fmt.Errorf("%s: no PEM private key block", where)
		}
		var (
			key any
			err error
		)
		switch block.Type {
		case "PRIVATE KEY":
			key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
		case "EC PRIVATE KEY":
			key, err = x509.ParseECPrivateKey(block.Bytes)
		case "RSA PRIVATE KEY":
			key, err = x509.ParsePKCS1PrivateKey(block.Bytes)
		default:
			continue
		}
		if err != nil {
			// The parse error carries no key material.
			return nil, fmt.Errorf("%s: parse %s: %w", where, block.Type, err)
		}
		switch k := key.(type) {
		case *ecdsa.PrivateKey:
			return k, nil
		case *rsa.PrivateKey:
			return k, nil
		case ed25519.PrivateKey:
			return k, nil
		default:
			return nil, fmt.Errorf("%s: unsupported key type %T", where, key)
		}
	}
}

// parseECKey parses one of our own keys: PKCS#8 ECDSA P-256.
func parseECKey(b []byte, where string) (*ecdsa.PrivateKey, error) {
	key, err := parseKey(b, where)
	if err != nil {
		return nil, err
	}
	k, ok := key.(*ecdsa.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("%s: got %T, want an ECDSA key", where, key)
	}
	return k, nil
}

// readCertFrom reads the value called name of s as one certificate.
func readCertFrom(ctx context.Context, s Storage, name string) (*x509.Certificate, error) {
	b, _, err := s.Read(ctx, name, ClassPublic)
	if err != nil {
		return nil, err
	}
	return parseCert(b, s.Locate(name))
}

// readECKeyFrom reads the value called name of s as one of our own keys.
func readECKeyFrom(ctx context.Context, s Storage, name string) (*ecdsa.PrivateKey, error) {
	b, _, err := s.Read(ctx, name, ClassSecret)
	if err != nil {
		return nil, err
	}
	return parseECKey(b, s.Locate(name))
}

// writeCertTo creates the value called name of s.
func writeCertTo(ctx context.Context, s Storage, name string, cert *x509.Certificate) error {
	_, err := s.Write(ctx, name, encodeCertPEM(cert), ClassPublic, store.MustNotExist)
	return err
}

// writeKeyTo creates the value called name of s: key as PKCS#8 PEM, secret.
func writeKeyTo(ctx context.Context, s Storage, name string, key crypto.Signer) error {
	b, err := encodeKeyPEM(key)
	if err != nil {
		return err
	}
	_, err = s.Write(ctx, name, b, ClassSecret, store.MustNotExist)
	return err
}

package ca

import (
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
)

// File names inside Config.Dir.
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

func certPath(dir, id string) string   { return filepath.Join(dir, id+certFileSuffix) }
func keyPath(dir, id string) string    { return filepath.Join(dir, id+keyFileSuffix) }
func jwtKeyPath(dir, id string) string { return filepath.Join(dir, id+jwtKeyFileSuffix) }

// authorityFiles lists the files that belong to authority id.
func authorityFiles(dir, id string) []string {
	return []string{certPath(dir, id), keyPath(dir, id), jwtKeyPath(dir, id)}
}

// readMetadata reads authorities.json. It returns (nil, nil) if the file does
// not exist.
func readMetadata(dir string) (*metadata, error) {
	b, err := os.ReadFile(filepath.Join(dir, metadataFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var md metadata
	if err := json.Unmarshal(b, &md); err != nil {
		return nil, fmt.Errorf("parse %s: %w", metadataFile, err)
	}
	if md.Version != metadataVersion {
		return nil, fmt.Errorf("%s: unsupported version %d, want %d", metadataFile, md.Version, metadataVersion)
	}
	return &md, nil
}

func writeMetadata(dir string, md *metadata) error {
	b, err := json.MarshalIndent(md, "", "  ")
	if err != nil {
		return err
	}
	return writeFileAtomic(filepath.Join(dir, metadataFile), append(b, '\n'), keyMode)
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

func writeCert(path string, cert *x509.Certificate) error {
	return writeFileAtomic(path, encodeCertPEM(cert), publicMode)
}

func writeKey(path string, key crypto.Signer) error {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return err
	}
	return writeFileAtomic(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), keyMode)
}

// readCerts reads every CERTIFICATE block of a PEM file, in order.
func readCerts(path string) ([]*x509.Certificate, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
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
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		certs = append(certs, cert)
	}
	if len(certs) == 0 {
		return nil, fmt.Errorf("%s: no PEM CERTIFICATE block", path)
	}
	return certs, nil
}

func readCert(path string) (*x509.Certificate, error) {
	certs, err := readCerts(path)
	if err != nil {
		return nil, err
	}
	if len(certs) != 1 {
		return nil, fmt.Errorf("%s: got %d certificates, want 1", path, len(certs))
	}
	return certs[0], nil
}

// readKey reads a PEM private key: PKCS#8 ("PRIVATE KEY"), SEC 1
// ("EC PRIVATE KEY") or PKCS#1 ("RSA PRIVATE KEY"). If private is true, the
// file must not be accessible to group or others.
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
	for {
		var block *pem.Block
		block, b = pem.Decode(b)
		if block == nil {
			return nil, fmt.Errorf("%s: no PEM private key block", path)
		}
		var key any
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
			return nil, fmt.Errorf("%s: parse %s: %w", path, block.Type, err)
		}
		switch k := key.(type) {
		case *ecdsa.PrivateKey:
			return k, nil
		case *rsa.PrivateKey:
			return k, nil
		case ed25519.PrivateKey:
			return k, nil
		default:
			return nil, fmt.Errorf("%s: unsupported key type %T", path, key)
		}
	}
}

// readECKey reads one of our own keys: PKCS#8 ECDSA P-256, mode 0600.
func readECKey(path string) (*ecdsa.PrivateKey, error) {
	key, err := readKey(path, true)
	if err != nil {
		return nil, err
	}
	k, ok := key.(*ecdsa.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("%s: got %T, want an ECDSA key", path, key)
	}
	return k, nil
}

package audit

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/trustmesh/trustmesh/internal/store"
)

// SharedKeyBlob is the store blob that holds the checkpoint key when
// several server replicas share one database: each of them may be elected
// to sign, and a verifier pins one public key.
const SharedKeyBlob = "audit/checkpoint.key"

// Sealer encrypts secrets before they reach a shared store (package kek).
// name is bound to the sealed value, so it cannot be moved to another blob.
type Sealer interface {
	Seal(name string, plaintext []byte) ([]byte, error)
	Open(name string, sealed []byte) ([]byte, error)
}

// BlobStore is what LoadOrCreateSharedKey needs of the store.
type BlobStore interface {
	GetBlob(ctx context.Context, name string) (store.Blob, error)
	PutBlob(ctx context.Context, name string, data []byte, expectVersion int64) (int64, error)
}

// LoadOrCreateSharedKey returns the checkpoint key kept sealed in st, and
// creates it if no replica has yet (two replicas starting together agree:
// the blob is created once, the loser reads the winner's). The public key
// is written to dir/PublicKeyFile for operators to pin; an existing one that
// does not match is an error, as for LoadOrCreateKey.
func LoadOrCreateSharedKey(ctx context.Context, st BlobStore, sealer Sealer, dir string) (key ed25519.PrivateKey, created bool, err error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, false, fmt.Errorf("create audit dir: %w", err)
	}
	for attempt := 0; key == nil; attempt++ {
		b, err := st.GetBlob(ctx, SharedKeyBlob)
		switch {
		case err == nil:
			pt, err := sealer.Open(SharedKeyBlob, b.Data)
			if err != nil {
				return nil, false, fmt.Errorf("open the shared audit checkpoint key: %w", err)
			}
			k, err := x509.ParsePKCS8PrivateKey(pt)
			if err != nil {
				return nil, false, fmt.Errorf("shared audit checkpoint key: %w", err)
			}
			var ok bool
			if key, ok = k.(ed25519.PrivateKey); !ok {
				return nil, false, fmt.Errorf("shared audit checkpoint key: got a %T, want an Ed25519 key", k)
			}
		case errors.Is(err, store.ErrNotFound) && attempt == 0:
			_, k, err := ed25519.GenerateKey(rand.Reader)
			if err != nil {
				return nil, false, fmt.Errorf("generate checkpoint key: %w", err)
			}
			der, err := x509.MarshalPKCS8PrivateKey(k)
			if err != nil {
				return nil, false, fmt.Errorf("encode checkpoint key: %w", err)
			}
			sealed, err := sealer.Seal(SharedKeyBlob, der)
			if err != nil {
				return nil, false, fmt.Errorf("seal checkpoint key: %w", err)
			}
			switch _, err := st.PutBlob(ctx, SharedKeyBlob, sealed, store.MustNotExist); {
			case err == nil:
				key, created = k, true
			case errors.Is(err, store.ErrConflict):
				// Another replica created it first: read theirs.
			default:
				return nil, false, fmt.Errorf("store checkpoint key: %w", err)
			}
		case err != nil:
			return nil, false, fmt.Errorf("read the shared audit checkpoint key: %w", err)
		}
	}
	pub, _ := key.Public().(ed25519.PublicKey)
	pubPath := filepath.Join(dir, PublicKeyFile)
	pubs, err := ReadPublicKeys(pubPath)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if err := writePublicKey(pubPath, pub); err != nil {
			return nil, false, err
		}
	case err != nil:
		return nil, false, err
	case len(pubs) != 1 || !pubs[0].Equal(pub):
		return nil, false, fmt.Errorf("%s does not match the shared checkpoint key in the database: this data dir was used with another store; move it aside or remove %s", pubPath, pubPath)
	}
	return key, created, nil
}

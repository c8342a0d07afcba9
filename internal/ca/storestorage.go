package ca

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"strings"

	"github.com/trustmesh/trustmesh/internal/kek"
	"github.com/trustmesh/trustmesh/internal/store"
)

// StoreStorage keeps the CA's state in blobs of a store.Store, so that every
// server replica on the same database shares one CA. Each value is the blob
// called prefix+name. Secret values (private keys) are sealed with the KEK,
// for their blob name, before they reach the store: the database alone never
// yields a usable key, a sealed key copied to another blob name does not
// open, and a plain value where a sealed one belongs is refused. Public and
// private values (certificates, the metadata) are stored as they are.
// Versions are the store's blob versions.
type StoreStorage struct {
	st     store.Store
	prefix string
	kek    *kek.KEK
}

var _ Storage = (*StoreStorage)(nil)

// NewStoreStorage returns the storage of the CA whose blobs are named
// prefix+name in st, secret ones sealed with k. Every replica must use the
// same prefix and the same KEK.
func NewStoreStorage(st store.Store, prefix string, k *kek.KEK) (*StoreStorage, error) {
	switch {
	case st == nil:
		return nil, errors.New("CA storage: a store is required")
	case k == nil:
		return nil, errors.New("CA storage: a KEK is required: private keys are sealed before they reach the store")
	case prefix == "":
		return nil, errors.New("CA storage: a blob name prefix is required")
	}
	return &StoreStorage{st: st, prefix: prefix, kek: k}, nil
}

func (s *StoreStorage) blobName(name string) string {
	return s.prefix + name
}

// Locate returns the blob name of name.
func (s *StoreStorage) Locate(name string) string {
	return "store blob " + s.blobName(name)
}

// Read returns a blob's data, opened with the KEK if class is ClassSecret.
func (s *StoreStorage) Read(ctx context.Context, name string, class Class) ([]byte, int64, error) {
	blob := s.blobName(name)
	b, err := s.st.GetBlob(ctx, blob)
	if errors.Is(err, store.ErrNotFound) {
		return nil, 0, fmt.Errorf("%s: %w", s.Locate(name), fs.ErrNotExist)
	}
	if err != nil {
		return nil, 0, err
	}
	if class != ClassSecret {
		return b.Data, b.Version, nil
	}
	data, err := s.kek.Open(blob, b.Data)
	if err != nil {
		return nil, 0, fmt.Errorf("%s: %w", s.Locate(name), err)
	}
	return data, b.Version, nil
}

// Write puts a blob, sealed with the KEK if class is ClassSecret.
func (s *StoreStorage) Write(ctx context.Context, name string, data []byte, class Class, expectVersion int64) (int64, error) {
	blob := s.blobName(name)
	if class == ClassSecret {
		sealed, err := s.kek.Seal(blob, data)
		if err != nil {
			return 0, fmt.Errorf("%s: %w", s.Locate(name), err)
		}
		data = sealed
	}
	v, err := s.st.PutBlob(ctx, blob, data, expectVersion)
	if errors.Is(err, store.ErrConflict) {
		return 0, fmt.Errorf("%w: %w", ErrConcurrentChange, err)
	}
	if err != nil {
		return 0, err
	}
	return v, nil
}

// Remove deletes a blob; no error if it does not exist.
func (s *StoreStorage) Remove(ctx context.Context, name string) error {
	err := s.st.DeleteBlob(ctx, s.blobName(name), store.AnyRevision)
	if errors.Is(err, store.ErrNotFound) {
		return nil
	}
	return err
}

// List returns the names (without the prefix) of the blobs under the prefix.
func (s *StoreStorage) List(ctx context.Context) ([]string, error) {
	blobs, err := s.st.ListBlobs(ctx, s.prefix)
	if err != nil {
		return nil, err
	}
	names := make([]string, 0, len(blobs))
	for _, b := range blobs {
		names = append(names, strings.TrimPrefix(b.Name, s.prefix))
	}
	return names, nil
}

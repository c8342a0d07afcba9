package ca

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"github.com/trustmesh/trustmesh/internal/store"
)

// ErrConcurrentChange means that someone else, usually another server
// replica on the same storage, changed the CA's state first. A Storage write
// whose expected version is not the current one fails with it. Prepare,
// Activate and Tidy return it after reloading the new state: the caller
// retries on its next tick, when the step may no longer be needed.
var ErrConcurrentChange = errors.New("the CA state was changed concurrently, by another server or process")

// Class says how a Storage must protect a value.
type Class uint8

// The classes of the CA's values.
const (
	// ClassPublic is for certificates: mode 0644 in a directory, plain in
	// a database.
	ClassPublic Class = iota
	// ClassPrivate is for the metadata: not secret, but no one else's:
	// mode 0600 in a directory, plain in a database.
	ClassPrivate
	// ClassSecret is for private keys: mode 0600 in a directory (refused
	// on read if group or others can access the file), sealed with a KEK
	// in a database (refused on read if it is not sealed, so that whoever
	// can write the database cannot substitute a key of their choosing).
	ClassSecret
)

// Storage keeps the CA's state: a flat set of named values (the file names
// of the package documentation), each with a version for compare-and-swap.
// The CA is its only writer; several CAs (server replicas) may share one.
// Implementations must be safe for concurrent use.
type Storage interface {
	// Read returns the value called name and its version. The error wraps
	// fs.ErrNotExist if there is no such value. class is the class the
	// value is written with; a Secret value not protected as one is
	// refused.
	Read(ctx context.Context, name string, class Class) (data []byte, version int64, err error)
	// Write stores data as the value called name, protected as class, if
	// its current version is expectVersion: store.MustNotExist to create
	// it, store.AnyRevision for any, or a version Read or Write returned.
	// Otherwise it fails with an error that wraps ErrConcurrentChange. It
	// returns the version written. A write that returned is durable and
	// atomic: readers see the old value or the new one.
	Write(ctx context.Context, name string, data []byte, class Class, expectVersion int64) (version int64, err error)
	// Remove deletes the value called name; no error if there is none.
	Remove(ctx context.Context, name string) error
	// List returns the names of every value, in byte order.
	List(ctx context.Context) ([]string, error)
	// Locate says where the value called name is kept, for messages: a
	// file path, a blob name.
	Locate(name string) string
}

// dirStorage is the CA's state in a directory, one file per value (see
// the package documentation): Config.Dir.
//
// Versions are synthetic: a hash of the content (never 0 or negative), so
// compare-and-swap compares contents. A write compares and renames under a
// mutex, which makes it atomic within this process; the data directory is
// locked to one server process.
type dirStorage struct {
	dir string
	mu  sync.Mutex // held by writes from the version check to the rename
}

var _ Storage = (*dirStorage)(nil)

func newDirStorage(dir string) *dirStorage {
	return &dirStorage{dir: dir}
}

func (d *dirStorage) path(name string) string {
	return filepath.Join(d.dir, name)
}

func (d *dirStorage) Locate(name string) string {
	return d.path(name)
}

// open creates the directory or checks the existing one (see prepareDir)
// and removes temporary files an interrupted write left. New calls it once
// every check that needs no write has passed.
func (d *dirStorage) open(log *slog.Logger) error {
	tightened, err := prepareDir(d.dir)
	if err != nil {
		return err
	}
	if tightened {
		log.Warn("CA directory was readable by group or others: set its mode to 0700", attrPath, d.dir)
	}
	removeTempFiles(d.dir, log)
	return nil
}

func (d *dirStorage) Read(_ context.Context, name string, class Class) ([]byte, int64, error) {
	path := d.path(name)
	if class == ClassSecret {
		fi, err := os.Stat(path)
		if err != nil {
			return nil, 0, err
		}
		if fi.Mode().Perm()&0o077 != 0 {
			return nil, 0, fmt.Errorf("%s has mode %04o, want 0600 (run chmod 600 %s)", path, fi.Mode().Perm(), path)
		}
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, 0, err
	}
	return b, contentVersion(b), nil
}

func (d *dirStorage) Write(_ context.Context, name string, data []byte, class Class, expectVersion int64) (int64, error) {
	path := d.path(name)
	d.mu.Lock()
	defer d.mu.Unlock()
	if expectVersion != store.AnyRevision {
		cur, err := os.ReadFile(path)
		switch {
		case errors.Is(err, fs.ErrNotExist) && expectVersion == store.MustNotExist:
		case errors.Is(err, fs.ErrNotExist):
			return 0, fmt.Errorf("write %s: it was removed: %w", path, ErrConcurrentChange)
		case err != nil:
			return 0, fmt.Errorf("write %s: %w", path, err)
		case expectVersion == store.MustNotExist:
			return 0, fmt.Errorf("write %s: it exists: %w", path, ErrConcurrentChange)
		case contentVersion(cur) != expectVersion:
			return 0, fmt.Errorf("write %s: it was changed: %w", path, ErrConcurrentChange)
		}
	}
	mode := keyMode
	if class == ClassPublic {
		mode = publicMode
	}
	if err := writeFileAtomic(path, data, mode); err != nil {
		return 0, err
	}
	return contentVersion(data), nil
}

func (d *dirStorage) Remove(_ context.Context, name string) error {
	if err := removeIfExists(d.path(name)); err != nil {
		return err
	}
	return syncDir(d.dir)
}

func (d *dirStorage) List(context.Context) ([]string, error) {
	entries, err := os.ReadDir(d.dir)
	if err != nil {
		return nil, err
	}
	var names []string
	for _, e := range entries {
		if e.Type().IsRegular() && !strings.HasPrefix(e.Name(), ".tmp-") {
			names = append(names, e.Name())
		}
	}
	slices.Sort(names)
	return names, nil
}

// contentVersion is the synthetic version of a file: the first 62 bits of
// the SHA-256 of its content, odd, so that it is positive and never
// store.MustNotExist.
func contentVersion(b []byte) int64 {
	sum := sha256.Sum256(b)
	return int64(binary.BigEndian.Uint64(sum[:8])>>2) | 1
}

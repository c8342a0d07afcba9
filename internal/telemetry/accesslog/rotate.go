package accesslog

import (
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"
)

// Not gopkg.in/natefinch/lumberjack.v2: its v2.2.1 starts a goroutine per
// Logger that nothing stops (natefinch/lumberjack#56, open since 2017),
// and it creates missing directories 0755. What is needed here is small.

// backupTime is the time format in a rotated file's name.
const backupTime = "2006-01-02T15-04-05.000"

const gzSuffix = ".gz"

type rotateConfig struct {
	path       string
	maxBytes   int64
	maxBackups int
	maxAge     time.Duration // 0: no limit
	compress   bool
	now        func() time.Time
	onError    func(error)                         // rotation and cleanup errors
	rename     func(oldpath, newpath string) error // os.Rename; tests make it fail
}

// rotatingFile is an append-only file rotated by size. Write and Close
// are called by one goroutine (the Logger's writer); the cleanup pass after
// a rotation runs in a goroutine of its own, which Close waits for, and
// touches only rotated files.
type rotatingFile struct {
	cfg  rotateConfig
	f    *os.File
	size int64

	millMu  sync.Mutex
	milling bool // a cleanup goroutine is running
	again   bool // a rotation happened while it ran
	millWG  sync.WaitGroup
}

var _ io.WriteCloser = (*rotatingFile)(nil)

func openRotating(cfg rotateConfig) (*rotatingFile, error) {
	if cfg.rename == nil {
		cfg.rename = os.Rename
	}
	f, size, err := openAppend(cfg.path, 0o600)
	if err != nil {
		return nil, err
	}
	return &rotatingFile{cfg: cfg, f: f, size: size}, nil
}

// openAppend opens path for appending, creating it with mode perm.
func openAppend(path string, perm fs.FileMode) (*os.File, int64, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, perm)
	if err != nil {
		return nil, 0, err
	}
	fi, err := f.Stat()
	if err != nil {
		_ = f.Close()
		return nil, 0, err
	}
	if !fi.Mode().IsRegular() {
		_ = f.Close()
		return nil, 0, fmt.Errorf("%s is not a regular file", path)
	}
	return f, fi.Size(), nil
}

// Write appends p, rotating first if p would take the file past its
// size. A failed rotation is reported and the write goes to the current
// file: an oversized log is better than a lost one.
func (r *rotatingFile) Write(p []byte) (int, error) {
	if r.size > 0 && r.size+int64(len(p)) > r.cfg.maxBytes {
		if err := r.rotate(); err != nil {
			r.cfg.onError(err)
			r.size = 0 // try again after another maxBytes
		}
	}
	n, err := r.f.Write(p)
	r.size += int64(n)
	return n, err
}

// rotate renames the current file to a backup name, opens a new one with
// the same permissions (an operator's chmod 0640 for a log shipper lasts)
// and starts the cleanup pass.
func (r *rotatingFile) rotate() error {
	perm := fs.FileMode(0o600)
	if fi, err := r.f.Stat(); err == nil {
		perm = fi.Mode().Perm()
	}
	backup, err := r.backupName()
	if err != nil {
		return err
	}
	// A missing file (removed by hand, or a failed rotation) is simply
	// opened anew.
	if err := r.cfg.rename(r.cfg.path, backup); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("rotate: %w", err)
	}
	f, size, err := openAppend(r.cfg.path, perm)
	if err != nil {
		// Keep appending to the renamed file rather than losing entries.
		return fmt.Errorf("rotate: %w", err)
	}
	_ = f.Chmod(perm) // exactly, whatever the umask
	_ = r.f.Close()
	r.f, r.size = f, size
	r.startMill()
	return nil
}

// backupName is a name for the current file that no file has yet.
func (r *rotatingFile) backupName() (string, error) {
	dir, prefix, ext := r.parts()
	t := r.cfg.now().UTC()
	for range 1000 {
		name := filepath.Join(dir, prefix+t.Format(backupTime)+ext)
		_, err1 := os.Lstat(name)
		_, err2 := os.Lstat(name + gzSuffix)
		if errors.Is(err1, fs.ErrNotExist) && errors.Is(err2, fs.ErrNotExist) {
			return name, nil
		}
		t = t.Add(time.Millisecond)
	}
	return "", fmt.Errorf("rotate %s: no free backup name", r.cfg.path)
}

// parts splits the path into its directory, the backup name prefix
// ("access-") and the extension (".log").
func (r *rotatingFile) parts() (dir, prefix, ext string) {
	dir = filepath.Dir(r.cfg.path)
	base := filepath.Base(r.cfg.path)
	ext = filepath.Ext(base)
	return dir, strings.TrimSuffix(base, ext) + "-", ext
}

func (r *rotatingFile) startMill() {
	r.millMu.Lock()
	defer r.millMu.Unlock()
	if r.milling {
		r.again = true
		return
	}
	r.milling = true
	r.millWG.Add(1)
	go func() {
		defer r.millWG.Done()
		for {
			if err := r.mill(); err != nil {
				r.cfg.onError(err)
			}
			r.millMu.Lock()
			if !r.again {
				r.milling = false
				r.millMu.Unlock()
				return
			}
			r.again = false
			r.millMu.Unlock()
		}
	}()
}

// backup is a rotated file.
type backup struct {
	name string // full path, without .gz
	t    time.Time
	gz   bool // name.gz exists
	raw  bool // name exists
}

// mill removes backups beyond maxBackups or older than maxAge and
// compresses the others if asked to.
func (r *rotatingFile) mill() error {
	dir, prefix, ext := r.parts()
	ents, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("clean up rotated logs: %w", err)
	}
	byName := map[string]*backup{}
	var errs []error
	for _, de := range ents {
		n := de.Name()
		if !de.Type().IsRegular() || !strings.HasPrefix(n, prefix) {
			continue
		}
		if strings.HasSuffix(n, gzSuffix+tmpSuffix) {
			// Left by a pass that did not finish (one runs at a time).
			errs = append(errs, os.Remove(filepath.Join(dir, n)))
			continue
		}
		gz := strings.HasSuffix(n, gzSuffix)
		stem := strings.TrimSuffix(n, gzSuffix)
		if !strings.HasSuffix(stem, ext) {
			continue
		}
		t, err := time.Parse(backupTime, strings.TrimSuffix(strings.TrimPrefix(stem, prefix), ext))
		if err != nil {
			continue
		}
		b := byName[stem]
		if b == nil {
			b = &backup{name: filepath.Join(dir, stem), t: t}
			byName[stem] = b
		}
		if gz {
			b.gz = true
		} else {
			b.raw = true
		}
	}
	backups := make([]*backup, 0, len(byName))
	for _, b := range byName {
		backups = append(backups, b)
	}
	slices.SortFunc(backups, func(a, b *backup) int { return b.t.Compare(a.t) }) // newest first
	now := r.cfg.now()
	for i, b := range backups {
		if i >= r.cfg.maxBackups || (r.cfg.maxAge > 0 && now.Sub(b.t) > r.cfg.maxAge) {
			if b.raw {
				errs = append(errs, os.Remove(b.name))
			}
			if b.gz {
				errs = append(errs, os.Remove(b.name+gzSuffix))
			}
			continue
		}
		switch {
		case b.raw && b.gz: // compressed, but the original was not removed
			errs = append(errs, os.Remove(b.name))
		case b.raw && r.cfg.compress:
			errs = append(errs, compressFile(b.name))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("clean up rotated logs: %w", err)
	}
	return nil
}

const tmpSuffix = ".tmp"

// compressFile writes name.gz (through name.gz.tmp, so a complete .gz is
// never confused with a partial one) and removes name.
func compressFile(name string) (err error) {
	src, err := os.Open(name)
	if err != nil {
		return err
	}
	defer src.Close()
	tmp := name + gzSuffix + tmpSuffix
	dst, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			_ = dst.Close()
			_ = os.Remove(tmp)
		}
	}()
	zw := gzip.NewWriter(dst)
	if _, err := io.Copy(zw, src); err != nil {
		return err
	}
	if err := zw.Close(); err != nil {
		return err
	}
	if err := dst.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, name+gzSuffix); err != nil {
		return err
	}
	return os.Remove(name)
}

// Close closes the current file and waits for the cleanup pass.
func (r *rotatingFile) Close() error {
	err := r.f.Close()
	r.millWG.Wait()
	return err
}

// Package datadir guards a component's data directory: one process at a
// time, so two servers never interleave CA state and two agents never renew
// the same node SVID.
package datadir

import (
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

// Lock takes an exclusive, non-blocking lock on dir for the life of the
// process (the kernel releases it when the process dies). what names the
// component in the error. Close the returned file to release it.
func Lock(dir, what string) (*os.File, error) {
	f, err := os.OpenFile(filepath.Join(dir, ".lock"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock data dir: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("data dir %s is in use by another trustmesh %s; stop it first, or give this one its own --data-dir", dir, what)
	}
	return f, nil
}

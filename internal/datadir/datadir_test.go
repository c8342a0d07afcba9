package datadir

import (
	"strings"
	"testing"
)

func TestLock(t *testing.T) {
	dir := t.TempDir()
	first, err := Lock(dir, "server")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Lock(dir, "server"); err == nil || !strings.Contains(err.Error(), "in use by another trustmesh server") {
		t.Fatalf("second lock: got %v, want an in-use error", err)
	}
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	again, err := Lock(dir, "server")
	if err != nil {
		t.Fatalf("lock after release: %v", err)
	}
	again.Close()
}

package kek

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// testKey returns a fixed 32-byte key whose bytes are b, b+1, ...
func testKey(b byte) []byte {
	key := make([]byte, KeySize)
	for i := range key {
		key[i] = b + byte(i)
	}
	return key
}

func mustNew(t testing.TB, key []byte) *KEK {
	t.Helper()
	k, err := New(key)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return k
}

func writeFile(t *testing.T, data string, mode fs.FileMode) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "kek")
	if err := os.WriteFile(path, []byte(data), mode); err != nil {
		t.Fatal(err)
	}
	// WriteFile's mode is subject to the umask.
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestLoad(t *testing.T) {
	key := testKey(1)
	enc := base64.StdEncoding.EncodeToString(key)
	want := mustNew(t, key).ID()
	tests := []struct {
		name    string
		content string
		mode    fs.FileMode
		wantErr string // "" for success
	}{
		{name: "one line", content: enc, mode: 0o600},
		{name: "trailing newline", content: enc + "\n", mode: 0o600},
		{name: "trailing CRLF", content: enc + "\r\n", mode: 0o600},
		{name: "owner read-only", content: enc + "\n", mode: 0o400},
		{name: "readable by others", content: enc, mode: 0o604, wantErr: "run chmod 600 "},
		{name: "readable by group", content: enc, mode: 0o640, wantErr: "run chmod 600 "},
		{name: "writable by group", content: enc, mode: 0o620, wantErr: "run chmod 600 "},
		{name: "empty", content: "", mode: 0o600, wantErr: "is empty"},
		{name: "only a newline", content: "\n", mode: 0o600, wantErr: "is empty"},
		{name: "two newlines", content: enc + "\n\n", mode: 0o600, wantErr: "more than one line"},
		{name: "two lines", content: enc + "\n" + enc + "\n", mode: 0o600, wantErr: "more than one line"},
		{name: "leading space", content: " " + enc, mode: 0o600, wantErr: "is not base64"},
		{name: "hex, not base64", content: fmt.Sprintf("%x", key), mode: 0o600, wantErr: "holds a 48-byte key"},
		{name: "URL alphabet", content: base64.URLEncoding.EncodeToString(bytes.Repeat([]byte{0xfb}, KeySize)), mode: 0o600, wantErr: "is not base64"},
		{name: "unpadded", content: base64.RawStdEncoding.EncodeToString(key), mode: 0o600, wantErr: "is not base64"},
		{name: "16 bytes", content: base64.StdEncoding.EncodeToString(key[:16]), mode: 0o600, wantErr: "holds a 16-byte key, want 32 bytes"},
		{name: "33 bytes", content: base64.StdEncoding.EncodeToString(append(key, 0)), mode: 0o600, wantErr: "holds a 33-byte key, want 32 bytes"},
		{name: "too large", content: strings.Repeat("A", maxFileSize+4), mode: 0o600, wantErr: "larger than"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := writeFile(t, tt.content, tt.mode)
			k, err := Load(path)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("Load: %v", err)
				}
				if got := k.ID(); got != want {
					t.Errorf("key ID = %s, want %s", got, want)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Load: got error %v, want one containing %q", err, tt.wantErr)
			}
			if !strings.Contains(err.Error(), path) {
				t.Errorf("error %q does not name the file %s", err, path)
			}
			if strings.Contains(err.Error(), enc) || strings.Contains(err.Error(), enc[:8]) {
				t.Errorf("error %q quotes the key", err)
			}
			if strings.Contains(tt.wantErr, "byte") || strings.Contains(tt.wantErr, "base64") || strings.Contains(tt.wantErr, "empty") {
				if !strings.Contains(err.Error(), "trustmesh kek generate --out") {
					t.Errorf("error %q does not say how to generate a key file", err)
				}
			}
		})
	}
}

func TestLoadErrors(t *testing.T) {
	tests := []struct {
		name    string
		path    func(t *testing.T) string
		wantErr string
	}{
		{"missing", func(t *testing.T) string { return filepath.Join(t.TempDir(), "none") }, "no such file"},
		{"directory", func(t *testing.T) string {
			dir := filepath.Join(t.TempDir(), "d")
			if err := os.Mkdir(dir, 0o700); err != nil {
				t.Fatal(err)
			}
			return dir
		}, "not a regular file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Load(tt.path(t))
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Load: got error %v, want one containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestGenerate(t *testing.T) {
	path := filepath.Join(t.TempDir(), "kek")
	if err := Generate(path); err != nil {
		t.Fatalf("Generate: %v", err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := fi.Mode().Perm(); got != 0o600 {
		t.Errorf("mode = %04o, want 0600", got)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := len(b), 45; got != want || b[len(b)-1] != '\n' {
		t.Errorf("file is %d bytes %q, want %d: 44 base64 characters and a newline", got, b, want)
	}
	k, err := Load(path)
	if err != nil {
		t.Fatalf("Load of a generated file: %v", err)
	}
	sealed, err := k.Seal("n", []byte("secret"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := k.Open("n", sealed); err != nil {
		t.Errorf("Open of what Seal returned: %v", err)
	}

	// A second Generate keeps the first key.
	if err := Generate(path); err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Errorf("Generate over an existing file: got error %v, want one containing %q", err, "already exists")
	}
	after, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(after, b) {
		t.Error("Generate replaced an existing key file")
	}

	otherPath := filepath.Join(t.TempDir(), "kek")
	if err := Generate(otherPath); err != nil {
		t.Fatal(err)
	}
	other, err := Load(otherPath)
	if err != nil {
		t.Fatal(err)
	}
	if other.ID() == k.ID() {
		t.Error("two generated KEKs have the same key ID")
	}
}

func TestNewKeySize(t *testing.T) {
	for _, n := range []int{0, 16, 24, 31, 33, 64} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			if _, err := New(make([]byte, n)); err == nil {
				t.Errorf("New with a %d-byte key succeeded", n)
			}
		})
	}
}

func TestKeyID(t *testing.T) {
	k := mustNew(t, testKey(1))
	// SHA-256("trustmesh kek id v1\x00" || 01 02 ... 20), first 8 bytes:
	// a regression value, so that the ID of a deployed key never changes.
	if got, want := k.ID(), "9c76231f1ff5aa97"; got != want {
		t.Errorf("ID = %s, want %s", got, want)
	}
	if len(k.ID()) != 2*IDSize {
		t.Errorf("ID %q is not %d hex digits", k.ID(), 2*IDSize)
	}
	for _, s := range []string{k.String(), fmt.Sprintf("%v", k), fmt.Sprintf("%+v", k), fmt.Sprintf("%#v", k)} {
		if s != "KEK "+k.ID() {
			t.Errorf("formatted KEK = %q, want %q", s, "KEK "+k.ID())
		}
	}
}

func TestSealOpen(t *testing.T) {
	k := mustNew(t, testKey(1))
	tests := []struct {
		name      string
		plaintext []byte
	}{
		{"empty", nil},
		{"one byte", []byte{0}},
		{"PEM key", []byte("-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMG\n-----END PRIVATE KEY-----\n")},
		{"large", bytes.Repeat([]byte{0xa5}, 1<<16)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sealed, err := k.Seal("ca/x.key.pem", tt.plaintext)
			if err != nil {
				t.Fatalf("Seal: %v", err)
			}
			if got, want := len(sealed), len(tt.plaintext)+minSealSize; got != want {
				t.Errorf("sealed is %d bytes, want %d", got, want)
			}
			if len(tt.plaintext) > 4 && bytes.Contains(sealed, tt.plaintext[:len(tt.plaintext)/2]) {
				t.Error("sealed value contains the plaintext")
			}
			got, err := k.Open("ca/x.key.pem", sealed)
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			if !bytes.Equal(got, tt.plaintext) {
				t.Errorf("Open = %q, want %q", got, tt.plaintext)
			}
			again, err := k.Seal("ca/x.key.pem", tt.plaintext)
			if err != nil {
				t.Fatal(err)
			}
			if bytes.Equal(again, sealed) {
				t.Error("two Seals of the same value are equal: the nonce is not random")
			}
		})
	}
}

func TestSealedLayout(t *testing.T) {
	k := mustNew(t, testKey(1))
	sealed, err := k.Seal("n", []byte("p"))
	if err != nil {
		t.Fatal(err)
	}
	if got := string(sealed[:3]); got != "tmk" {
		t.Errorf("magic = %q, want %q", got, "tmk")
	}
	if got := sealed[3]; got != 1 {
		t.Errorf("version = %d, want 1", got)
	}
	if got := fmt.Sprintf("%x", sealed[4:12]); got != k.ID() {
		t.Errorf("key ID in the envelope = %s, want %s", got, k.ID())
	}
}

func TestOpenErrors(t *testing.T) {
	k := mustNew(t, testKey(1))
	other := mustNew(t, testKey(2))
	const name = "ca/x.key.pem"
	sealed, err := k.Seal(name, []byte("the plaintext"))
	if err != nil {
		t.Fatal(err)
	}
	modified := func(i int) []byte {
		b := bytes.Clone(sealed)
		b[i] ^= 0x01
		return b
	}
	tests := []struct {
		name    string
		kek     *KEK
		open    string
		sealed  []byte
		wantErr string
	}{
		{"empty", k, name, nil, "not a sealed value"},
		{"too short", k, name, sealed[:minSealSize-1], "not a sealed value"},
		{"plaintext PEM", k, name, []byte("-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg\n-----END PRIVATE KEY-----\n"), "not a sealed value"},
		{"bad magic", k, name, modified(0), "not a sealed value"},
		{"unknown version", k, name, modified(3), "envelope version 0"},
		{"other KEK", other, name, sealed, "sealed with KEK key ID " + k.ID() + ", but this server's KEK has key ID " + other.ID()},
		{"key ID changed", k, name, modified(4), "sealed with KEK key ID"},
		{"other name", k, "ca/y.key.pem", sealed, "does not authenticate"},
		{"name prefix", k, "ca/x.key.pe", sealed, "does not authenticate"},
		{"nonce changed", k, name, modified(headerSize), "does not authenticate"},
		{"ciphertext changed", k, name, modified(headerSize + nonceSize), "does not authenticate"},
		{"tag changed", k, name, modified(len(sealed) - 1), "does not authenticate"},
		{"truncated", k, name, sealed[:len(sealed)-1], "does not authenticate"},
		{"extended", k, name, append(bytes.Clone(sealed), 0), "does not authenticate"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.kek.Open(tt.open, tt.sealed)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Open: got %q, error %v; want an error containing %q", got, err, tt.wantErr)
			}
			if got != nil {
				t.Errorf("Open returned %q with an error", got)
			}
		})
	}
}

func FuzzOpen(f *testing.F) {
	k := mustNew(f, testKey(1))
	sealed, err := k.Seal("ca/x.key.pem", []byte("seed"))
	if err != nil {
		f.Fatal(err)
	}
	f.Add("ca/x.key.pem", sealed)
	f.Add("ca/x.key.pem", sealed[:minSealSize])
	f.Add("", []byte("tmk\x01"))
	f.Add("n", []byte{})
	f.Fuzz(func(t *testing.T, name string, data []byte) {
		plaintext, err := k.Open(name, data)
		if err != nil {
			if plaintext != nil {
				t.Fatalf("Open returned plaintext with error %v", err)
			}
		} else if name != "ca/x.key.pem" || string(plaintext) != "seed" {
			// Forging a value needs the key: only a seed opens (each fuzz
			// worker seals its own, with another nonce).
			t.Fatalf("Open of a value Seal did not return succeeded: %q", plaintext)
		}
		// Whatever the input, sealing it round-trips.
		resealed, err := k.Seal(name, data)
		if err != nil {
			t.Fatal(err)
		}
		got, err := k.Open(name, resealed)
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("round trip: got %q, %v; want %q", got, err, data)
		}
	})
}

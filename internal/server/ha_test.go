package server

import (
	"strings"
	"testing"
)

func TestOpenStoreRefuses(t *testing.T) {
	for _, tc := range []struct{ name, spec, want string }{
		{"unknown scheme, password hidden", "mysql://bob:s3cret@db/x", `--store "mysql://bob:xxxxx@db/x": want sqlite://PATH or postgres://`},
		{"empty sqlite path", "sqlite://", "the path is empty"},
		{"sqlite dir missing", "sqlite:///nonexistent/dir/x.db", "open store"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st, _, err := openStore(t.Context(), t.TempDir(), tc.spec)
			if err == nil {
				st.Close()
				t.Fatalf("openStore(%q): got nil error", tc.spec)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("openStore(%q): got %v, want it to contain %q", tc.spec, err, tc.want)
			}
			if strings.Contains(err.Error(), "s3cret") {
				t.Errorf("the error shows the password: %v", err)
			}
		})
	}
}

func TestCheckKEKFlag(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
		want string
	}{
		{"postgres without KEK", Config{StoreURL: "postgres://db/x"}, "--kek-file is required"},
		{"postgresql without KEK", Config{StoreURL: "postgresql://db/x"}, "--kek-file is required"},
		{"sqlite with KEK", Config{StoreURL: "sqlite:///x.db", KEKFile: "k"}, "only used with a PostgreSQL store"},
		{"default with KEK", Config{KEKFile: "k"}, "only used with a PostgreSQL store"},
		{"postgres with KEK", Config{StoreURL: "postgres://db/x", KEKFile: "k"}, ""},
		{"default", Config{}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := checkKEKFlag(tc.cfg)
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("got %v, want nil", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Errorf("got %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

func TestRedactDSN(t *testing.T) {
	for in, want := range map[string]string{
		"postgres://bob:s3cret@db:5432/x?sslmode=require": "postgres://bob:xxxxx@db:5432/x?sslmode=require",
		"postgres://bob@db/x":                             "postgres://bob@db/x",
		"postgres://bob:s3cret@db:bad port/x":             "…@db:bad port/x",
	} {
		if got := redactDSN(in); got != want {
			t.Errorf("redactDSN(%q) = %q, want %q", in, got, want)
		}
	}
}

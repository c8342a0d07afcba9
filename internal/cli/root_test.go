package cli

import (
	"bytes"
	"io"
	"strings"
	"testing"

	"github.com/spf13/cobra"
)

// TestEveryCommandHasAnExample: --help of every command shows how to use it.
func TestEveryCommandHasAnExample(t *testing.T) {
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		if c.Hidden || c.Name() == "help" {
			return
		}
		if c.Example == "" {
			t.Errorf("%q has no Example", c.CommandPath())
		}
		if c.Short == "" {
			t.Errorf("%q has no Short description", c.CommandPath())
		}
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	root := NewRoot(strings.NewReader(""), io.Discard, io.Discard)
	for _, c := range root.Commands() {
		walk(c)
	}
}

func TestLogFlags(t *testing.T) {
	tests := []struct {
		name, level, format, wantErr string
	}{
		{"defaults", "info", "text", ""},
		{"json debug", "debug", "json", ""},
		{"upper case format", "warn", "JSON", ""},
		{"bad level", "loud", "text", `--log-level "loud"`},
		{"bad format", "info", "xml", `--log-format "xml"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := logFlags{level: tc.level, format: tc.format}
			var buf bytes.Buffer
			log, err := f.logger(&buf)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("got %v, want an error containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			log.Error("hello", "k", "v")
			if !strings.Contains(buf.String(), "hello") {
				t.Errorf("got %q, want the message logged", buf.String())
			}
		})
	}
}

// TestUsageErrors: bad flags and arguments fail with one clear line, before
// anything is contacted.
func TestUsageErrors(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"get"}, "accepts between 1 and 2 arg(s)"},
		{[]string{"get", "widgets"}, "widgets"},
		{[]string{"get", "workloads", "-o", "xml"}, `-o "xml"`},
		{[]string{"cert", "revoke"}, "exactly one of --serial and --spiffe-id"},
		{[]string{"admin", "issue", "--role", "king", "--name", "x"}, `--role "king"`},
		{[]string{"apply"}, "-f FILE is required"},
		{[]string{"server", "--data-dir", "/nonexistent/x", "--log-format", "xml"}, "--log-format"},
		{[]string{"token", "create"}, `required flag(s) "node"`},
	}
	for _, tc := range tests {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			t.Setenv("TRUSTMESH_CREDENTIALS", "")
			t.Setenv("TRUSTMESH_SERVER", "")
			root := NewRoot(strings.NewReader(""), io.Discard, io.Discard)
			root.SetArgs(tc.args)
			err := root.Execute()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

package demo_test

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/trustmesh/trustmesh/examples/internal/demo"
	"github.com/trustmesh/trustmesh/examples/internal/demo/demotest"
)

// testCommand is a service "web" that calls a service "api".
func testCommand() demo.Command {
	return demo.Command{
		Name:              "web",
		DefaultListen:     "127.0.0.1:8080",
		Downstream:        "api",
		DownstreamExample: "http://127.0.0.1:15000",
		DownstreamTimeout: time.Second,
		NewHandler: func(demo.Options, *slog.Logger) http.Handler {
			return http.HandlerFunc(demo.HandleHealthz)
		},
	}
}

func TestCommandParse(t *testing.T) {
	demotest.CheckParse(t, testCommand(), []demotest.ParseCase{
		{
			Name: "defaults", Args: []string{"--api-url", "http://127.0.0.1:15000"},
			WantListen: "127.0.0.1:8080", WantDownstream: "http://127.0.0.1:15000",
		},
		{
			Name: "downstream-with-path", Args: []string{"--api-url", "http://localhost:15000/v1/"},
			WantListen: "127.0.0.1:8080", WantDownstream: "http://localhost:15000/v1/",
		},
		{
			Name: "ipv6-loopback", Args: []string{"--listen=[::1]:0", "--api-url=http://[::1]:15000"},
			WantListen: "[::1]:0", WantDownstream: "http://[::1]:15000",
		},
		{Name: "help", Args: []string{"-h"}, WantErr: flag.ErrHelp.Error()},
		{Name: "extra-args", Args: []string{"--api-url", "http://127.0.0.1:15000", "now"}, WantErr: `unexpected arguments: ["now"]`},
		{
			Name: "listen-public", Args: []string{"--listen", "192.0.2.1:8080", "--api-url", "http://127.0.0.1:15000"},
			WantErr: `--listen: "192.0.2.1:8080" is not a loopback address (want 127.0.0.1:PORT): the app trusts the X-Trustmesh-Peer-Identity header, so only its trustmesh proxy may reach it`,
		},
		{
			Name:    "downstream-missing",
			WantErr: "--api-url is required: the local trustmesh outbound listener for api, e.g. http://127.0.0.1:15000",
		},
		{
			Name: "downstream-https", Args: []string{"--api-url", "https://127.0.0.1:15000"},
			WantErr: `--api-url: "https://127.0.0.1:15000": want an http:// URL (the app speaks plaintext to its proxy, which adds mTLS)`,
		},
		{
			Name: "downstream-fragment", Args: []string{"--api-url", "http://127.0.0.1:15000#x"},
			WantErr: `--api-url: "http://127.0.0.1:15000#x": want no user info, query or fragment`,
		},
		{
			Name: "downstream-remote", Args: []string{"--api-url", "http://192.0.2.1:15000"},
			WantErr: `--api-url: "192.0.2.1:15000" is not a loopback address (want 127.0.0.1:PORT): plaintext may only go to the local trustmesh outbound listener`,
		},
		{Name: "downstream-no-port", Args: []string{"--api-url", "http://127.0.0.1"}, WantErr: "--api-url: address 127.0.0.1: missing port in address"},
	})
}

func TestCommandParseWithoutDownstream(t *testing.T) {
	c := testCommand()
	c.Downstream, c.DownstreamExample = "", ""
	demotest.CheckParse(t, c, []demotest.ParseCase{
		{Name: "defaults", WantListen: "127.0.0.1:8080"},
		{Name: "no-downstream-flag", Args: []string{"--api-url", "http://127.0.0.1:15000"}, WantErr: "flag provided but not defined: -api-url"},
	})
}

func TestCommandHelpListsTheFlags(t *testing.T) {
	var out bytes.Buffer
	if _, err := testCommand().Parse([]string{"-h"}, &out); !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("got error %v, want flag.ErrHelp", err)
	}
	for _, want := range []string{
		"Usage of web:",
		"-api-url URL\n    \tURL of this app's local trustmesh outbound listener for api, e.g. http://127.0.0.1:15000 (required)",
		"-listen address\n    \tloopback address to serve plaintext HTTP on (its trustmesh proxy forwards here) (default \"127.0.0.1:8080\")",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("help %q does not contain %q", out.String(), want)
		}
	}
}

func TestCommandRun(t *testing.T) {
	tests := []struct {
		name     string
		args     []string
		wantErr  string
		wantLogs []string // substrings of what Run writes to stderr
	}{
		{
			name: "serves-until-cancelled", args: []string{"--listen", "127.0.0.1:0", "--api-url", "http://127.0.0.1:15000"},
			wantLogs: []string{"level=INFO msg=listening component=web addr=127.0.0.1:", " api_url=http://127.0.0.1:15000\n"},
		},
		{name: "help-is-not-an-error", args: []string{"-h"}, wantLogs: []string{"Usage of web:"}},
		{name: "bad-flags", args: []string{"--listen", "0.0.0.0:0"}, wantErr: "not a loopback address"},
		{name: "listen-fails", args: []string{"--listen", "127.0.0.1:99999", "--api-url", "http://127.0.0.1:15000"}, wantErr: "listen: "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(t.Context())
			cancel()
			var stderr bytes.Buffer
			err := testCommand().Run(ctx, tt.args, &stderr)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("got error %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("got %v, want nil", err)
			}
			for _, want := range tt.wantLogs {
				if !strings.Contains(stderr.String(), want) {
					t.Errorf("stderr %q does not contain %q", stderr.String(), want)
				}
			}
		})
	}
}

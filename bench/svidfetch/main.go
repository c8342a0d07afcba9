// Command svidfetch writes one chosen X.509-SVID of the calling process, with
// its key and trust bundle, for the benchmark's HAProxy configuration.
// `trustmesh cert fetch --write` saves only the first SVID the agent grants;
// this picks the one named by -spiffe-id and waits until the agent has it.
//
//	go run ./bench/svidfetch -socket AGENT_SOCK -spiffe-id spiffe://td/echo -write DIR
//
// DIR gets svid.pem, key.pem (0600), bundle.pem and haproxy.pem (chain + key,
// for HAProxy's crt).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/spiffe/go-spiffe/v2/workloadapi"
)

func main() {
	if err := parseAndRun(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "svidfetch:", err)
		os.Exit(1) //nolint:forbidigo // this is main
	}
}

func parseAndRun(args []string) error {
	fs := flag.NewFlagSet("svidfetch", flag.ContinueOnError)
	socket := fs.String("socket", "/tmp/trustmesh/agent.sock", "the agent's Workload API socket")
	id := fs.String("spiffe-id", "", "the SPIFFE ID to write (required)")
	dir := fs.String("write", "", "directory to write the files to (required)")
	timeout := fs.Duration("timeout", 20*time.Second, "give up after this long")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *id == "" || *dir == "" {
		return errors.New("-spiffe-id and -write are required")
	}
	return run(*socket, *id, *dir, *timeout)
}

func run(socket, id, dir string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	var seen []string
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		resp, err := workloadapi.FetchX509Context(ctx, workloadapi.WithAddr("unix://"+socket))
		cancel()
		if err == nil {
			seen = seen[:0]
			for _, svid := range resp.SVIDs {
				seen = append(seen, svid.ID.String())
				if svid.ID.String() != id {
					continue
				}
				certs, key, err := svid.Marshal()
				if err != nil {
					return err
				}
				b, ok := resp.Bundles.Get(svid.ID.TrustDomain())
				if !ok {
					return fmt.Errorf("no bundle for %s", svid.ID.TrustDomain())
				}
				bundle, err := b.Marshal()
				if err != nil {
					return err
				}
				if err := os.MkdirAll(dir, 0o700); err != nil {
					return err
				}
				files := []struct {
					name string
					data []byte
					mode os.FileMode
				}{
					{"svid.pem", certs, 0o644},
					{"key.pem", key, 0o600},
					{"bundle.pem", bundle, 0o644},
					{"haproxy.pem", append(append([]byte{}, certs...), key...), 0o600},
				}
				for _, f := range files {
					if err := os.WriteFile(filepath.Join(dir, f.name), f.data, f.mode); err != nil {
						return err
					}
				}
				return nil
			}
		}
		if time.Now().After(deadline) {
			if err != nil {
				return fmt.Errorf("fetch from %s: %w", socket, err)
			}
			return fmt.Errorf("the agent grants %v, not %s", seen, id)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

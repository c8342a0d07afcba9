// Command trustmesh is the single binary of the trustmesh mesh: control-plane
// server, node agent, proxy and operator CLI.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/trustmesh/trustmesh/internal/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	err := run(ctx, os.Args[1:])
	stop()
	if err != nil {
		var exit cli.ExitError
		if errors.As(err, &exit) {
			os.Exit(exit.Code)
		}
		fmt.Fprintln(os.Stderr, "trustmesh: error:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string) error {
	root := cli.NewRoot(os.Stdin, os.Stdout, os.Stderr)
	root.SetArgs(args)
	return root.ExecuteContext(ctx)
}

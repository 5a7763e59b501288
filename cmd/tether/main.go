// Command tether is the hub, the agent and the client of Tether, a
// self-hosted "cluster connect": kubectl access to Kubernetes clusters that
// accept no inbound connection. All the work is in internal/cli.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"tether.dev/tether/internal/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	go func() {
		// The first signal starts a graceful stop (a hub drains); a second
		// one gets the default action and ends the process at once.
		<-ctx.Done()
		stop()
	}()
	if err := servePprof(); err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		os.Exit(2)
	}
	err := cli.Run(ctx, os.Args, os.Stdin, os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		os.Exit(cli.ExitCode(err))
	}
}

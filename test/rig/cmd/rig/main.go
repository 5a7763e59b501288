// Command rig builds and runs Tether's test cluster by hand.
//
//	rig build              build (or find cached) the rig's binaries
//	rig up                 start a cluster, print its kubeconfig, block until Ctrl+C
//	rig run -- CMD ARGS    start a cluster, run CMD with KUBECONFIG set, stop
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"syscall"

	"tether.dev/tether/test/rig"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		os.Exit(exit.ExitCode())
	case err != nil:
		fmt.Fprintln(os.Stderr, "rig:", err)
		os.Exit(1)
	}
}

const usage = "usage: rig build | rig up | rig run -- COMMAND [ARGS...]"

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return errors.New(usage)
	}
	bins, err := rig.Build(ctx, rig.BuildOptions{Log: stderr})
	if err != nil {
		return err
	}
	switch args[0] {
	case "build":
		fmt.Fprintf(stdout, "%s\n%s\n%s\n", bins.Kube, bins.Etcd, bins.Node)
		return nil
	case "up":
		cluster, err := rig.Start(ctx, rig.Config{Binaries: bins, Log: stderr})
		if err != nil {
			return err
		}
		defer cluster.Stop()
		fmt.Fprintf(stdout, "export KUBECONFIG=%s\n", cluster.Kubeconfig)
		fmt.Fprintln(stderr, "cluster up; Ctrl+C stops it and removes its files")
		<-ctx.Done()
		return cluster.Stop()
	case "run":
		if len(args) < 3 || args[1] != "--" {
			return errors.New(usage)
		}
		cluster, err := rig.Start(ctx, rig.Config{Binaries: bins, Log: stderr})
		if err != nil {
			return err
		}
		defer cluster.Stop()
		fmt.Fprintf(stderr, "$ KUBECONFIG=%s %s\n", cluster.Kubeconfig, strings.Join(args[2:], " "))
		cmd := exec.CommandContext(ctx, args[2], args[3:]...)
		cmd.Env = append(os.Environ(), "KUBECONFIG="+cluster.Kubeconfig)
		cmd.Stdout, cmd.Stderr = stdout, stderr
		runErr := cmd.Run()
		if err := cluster.Stop(); err != nil {
			return err
		}
		return runErr
	default:
		return errors.New(usage)
	}
}

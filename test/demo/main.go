// Command demo runs Tether's main job on one machine, with real parts only:
// a real Kubernetes cluster and the tether agent inside a network namespace
// that refuses every inbound connection, the tether hub outside, the seed
// flow's service account, `tether proxy --token`, and kubectl through it.
// It prints each step, then stops everything and removes what it made.
package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"tether.dev/tether/test/testenv"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, stdout, stderr io.Writer) error {
	say := func(format string, args ...any) { fmt.Fprintf(stderr, "==> "+format+"\n", args...) }
	say("building tether and the test cluster (the first run compiles Kubernetes: about 6 minutes on 2 cores)")
	began := time.Now()
	e, err := testenv.Start(ctx, testenv.Options{Log: prefixWriter{w: stderr}})
	if err != nil {
		return err
	}
	defer e.Close()
	say("installation ready after %s", time.Since(began).Round(time.Second))

	u, _ := url.Parse(e.Cluster.Server)
	if c, err := net.DialTimeout("tcp", u.Host, 2*time.Second); err == nil {
		c.Close()
		return fmt.Errorf("the API server at %s answered from outside; the namespace should refuse it", u.Host)
	} else {
		say("from outside, a direct connection to the API server %s fails: %v", u.Host, err)
	}

	say("inside the cluster, its admin deploys something to look at: kubectl create deployment hello")
	for _, args := range [][]string{
		{"create", "deployment", "hello", "--image=none", "--", "/bin/sh", "-c", "while true; do echo hello from the cluster; sleep 2; done"},
		{"rollout", "status", "deployment/hello", "--timeout=60s"},
	} {
		if out, err := e.Cluster.Kubectl(ctx, args...).CombinedOutput(); err != nil {
			return fmt.Errorf("kubectl %s (inside): %w\n%s", strings.Join(args, " "), err, out)
		}
	}

	dir, err := os.MkdirTemp("", "tether-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	say("$ tether proxy -g %s -n %s --token <demo-user's service-account token>", e.Group, e.Name)
	lp, err := e.StartProxy(ctx, dir, e.SAToken)
	if err != nil {
		return err
	}
	defer lp.Proc.Stop(syscall.SIGINT, 15*time.Second)
	for line := range strings.Lines(lp.Output) {
		fmt.Fprint(stderr, "    ", line)
	}
	fmt.Fprintln(stderr)
	for _, args := range [][]string{
		{"get", "pods", "-A"},
		{"auth", "whoami"},
		{"logs", "deploy/hello", "--tail=1"},
		{"exec", "deploy/hello", "--", "/bin/sh", "-c", "echo exec through the tunnel, in $PWD"},
	} {
		say("$ kubectl %s", strings.Join(args, " "))
		cmd := lp.Kubectl(ctx, "", args...)
		cmd.Stdout, cmd.Stderr = stdout, stderr
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("kubectl %s through the tunnel: %w", strings.Join(args, " "), err)
		}
	}
	say("done; stopping the proxy, agent, hub and cluster")
	return nil
}

// prefixWriter indents the environment's progress lines under the steps.
type prefixWriter struct{ w io.Writer }

func (p prefixWriter) Write(b []byte) (int, error) {
	for line := range strings.Lines(string(b)) {
		fmt.Fprint(p.w, "    ", line)
	}
	return len(b), nil
}

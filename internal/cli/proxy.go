package cli

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strconv"
	"syscall"

	"github.com/spf13/cobra"

	"tether.dev/tether/internal/credentials"
	"tether.dev/tether/internal/kubeconfig"
	"tether.dev/tether/internal/localproxy"
	"tether.dev/tether/internal/store"
)

// defaultProxyPort is the port `tether proxy` tries first, the same as
// Azure Arc's `az connectedk8s proxy`.
const defaultProxyPort = 47011

func newProxyCmd() *cobra.Command {
	var (
		sf                              signInFlags
		group, name, token, kubeContext string
		file                            string
		port                            int
	)
	cmd := &cobra.Command{
		Use:   "proxy -g GROUP -n NAME [--token TOKEN]",
		Short: "Open a local proxy to a cluster through the hub and point kubectl at it",
		Long: `Open a proxy on 127.0.0.1 to the cluster GROUP/NAME through the hub, write a
kubeconfig context that points at it (kubectl's file rules: --file, else
$KUBECONFIG, else ~/.kube/config; other entries untouched; mode 0600), make it
the current context, and block until Ctrl+C. The kubeconfig holds only a
credential for this local proxy, valid while it runs; the real credential
stays in this process.

With --token, kubectl acts as the service account whose token it is (the
cluster's own RBAC decides). Without it, kubectl acts as whoever signed in
with tether login (or -u CLIENT_ID: that service principal), with tokens
refreshed as needed.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := validateClusterName(group, name); err != nil {
				return err
			}
			hubURL, err := sf.hub.parse()
			if err != nil {
				return err
			}
			transport, err := sf.hub.transport()
			if err != nil {
				return err
			}
			credential := func(context.Context) (string, error) { return token, nil }
			if token == "" {
				src, err := sf.source(cmd.Context(), "", false, cmd.ErrOrStderr())
				if err != nil {
					return err
				}
				if _, err := src.Get(cmd.Context()); err != nil { // fail now, not on kubectl's first request
					return err
				}
				credential = func(ctx context.Context) (string, error) {
					tok, err := src.Get(ctx)
					if err != nil {
						return "", err
					}
					return tok.Bearer(credentials.PresentAccessToken)
				}
			}
			upstream := gatewayURL(hubURL, group, name)
			logger := newLogger(cmd, logText)
			p, err := localproxy.New(localproxy.Config{
				Upstream:   upstream,
				Transport:  transport,
				Credential: credential,
				Logger:     logger,
			})
			if err != nil {
				return err
			}
			l, err := listenProxy(port, cmd.Flags().Changed("port"))
			if err != nil {
				return err
			}
			defer l.Close()
			if kubeContext == "" {
				kubeContext = "tether-" + group + "-" + name
			}
			entry := kubeconfig.Entry{
				Name:   kubeContext,
				Server: "https://" + l.Addr().String(),
				CAData: p.CAData(),
				Token:  p.LocalToken(),
			}
			if err := writeContext(cmd, file, entry); err != nil {
				return err
			}
			info(cmd, "proxying https://%s to cluster %s/%s through %s\n", l.Addr(), group, name, hubURL.Host)
			info(cmd, "ready: run kubectl in another shell; Ctrl+C stops the proxy\n")
			return p.Serve(cmd.Context(), l)
		},
	}
	sf.register(cmd)
	f := cmd.Flags()
	clusterNameFlags(cmd, &group, &name)
	f.StringVar(&token, "token", "", "service-account token to present to the cluster's API server (default: your tether login)")
	f.IntVar(&port, "port", defaultProxyPort, "local port; 0 picks a free one (without --port, a busy 47011 falls back to a free port)")
	f.StringVar(&kubeContext, "kube-context", "", "name of the kubeconfig context to write (default tether-GROUP-NAME)")
	f.StringVarP(&file, "file", "f", "", "kubeconfig file to write; - prints the kubeconfig to stdout instead of writing one")
	return cmd
}

// validateClusterName checks -g and -n as the hub would.
func validateClusterName(group, name string) error {
	if err := store.ValidateName(group); err != nil {
		return usageError{fmt.Errorf("--group: %w", err)}
	}
	if err := store.ValidateName(name); err != nil {
		return usageError{fmt.Errorf("--name: %w", err)}
	}
	return nil
}

// gatewayURL is the hub's URL for one cluster.
func gatewayURL(hub *url.URL, group, name string) *url.URL {
	u := *hub
	u.Path += "/k8s/" + url.PathEscape(group) + "/" + url.PathEscape(name)
	return &u
}

// writeContext prints entry as a kubeconfig (file "-") or merges it into
// the kubeconfig kubectl would use (or file), making it current.
func writeContext(cmd *cobra.Command, file string, entry kubeconfig.Entry) error {
	if file == "-" {
		b, err := kubeconfig.Serialize(entry)
		if err != nil {
			return err
		}
		_, err = cmd.OutOrStdout().Write(b)
		return err
	}
	paths := kubeconfig.Paths{Explicit: file, Env: os.Getenv("KUBECONFIG")}
	paths.Home, _ = os.UserHomeDir()
	target := paths.Target(entry.Name)
	previous, err := kubeconfig.Merge(target, entry, true)
	if err != nil {
		return err
	}
	info(cmd, "wrote context %q to %s and made it current (was %q)\n", entry.Name, target, previous)
	return nil
}

// listenProxy listens on 127.0.0.1:port. A busy default port falls back to
// a free one; a busy port the user asked for is an error that says so.
func listenProxy(port int, explicit bool) (net.Listener, error) {
	if port < 0 || port > 65535 {
		return nil, usageError{fmt.Errorf("--port %d: want 0 to 65535", port)}
	}
	l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err == nil {
		return l, nil
	}
	if !errors.Is(err, syscall.EADDRINUSE) {
		return nil, fmt.Errorf("listen on 127.0.0.1:%d: %w", port, err)
	}
	if explicit {
		return nil, fmt.Errorf("port %d on 127.0.0.1 is in use (another tether proxy?); pass another --port, or --port 0 for a free one", port)
	}
	return net.Listen("tcp", "127.0.0.1:0")
}

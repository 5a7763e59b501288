package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"tether.dev/tether/internal/agentinstall"
	"tether.dev/tether/internal/hub"
)

// kubeFlags choose the Kubernetes cluster to install the agent into, as
// kubectl does: --kubeconfig (else $KUBECONFIG, else ~/.kube/config) and
// --kube-context (else the current context).
type kubeFlags struct {
	kubeconfig, context string
}

func (f *kubeFlags) register(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.kubeconfig, "kubeconfig", "", "kubeconfig of the cluster to install the agent into (default: $KUBECONFIG, else ~/.kube/config)")
	cmd.Flags().StringVar(&f.context, "kube-context", "", "context in the kubeconfig (default: its current context)")
}

// restConfig loads the kubeconfig and checks that its API server answers.
func (f *kubeFlags) restConfig(ctx context.Context) (*rest.Config, string, error) {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	rules.ExplicitPath = f.kubeconfig
	cc := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{CurrentContext: f.context})
	cfg, err := cc.ClientConfig()
	if err != nil {
		return nil, "", fmt.Errorf("load the kubeconfig: %w; pass --kubeconfig FILE and --kube-context NAME for the cluster to connect", err)
	}
	cfg.Timeout = 30 * time.Second
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, "", err
	}
	v, err := cs.Discovery().ServerVersion()
	if err != nil {
		return nil, "", fmt.Errorf("reach the cluster's API server at %s: %w; check --kubeconfig/--kube-context and that this machine can reach it", cfg.Host, err)
	}
	return cfg, v.GitVersion, nil
}

// progress reports a command's steps on stderr: a spinner on a terminal,
// plain lines otherwise.
type progress struct {
	w        io.Writer
	terminal bool
	start    time.Time
}

func newProgress(w io.Writer) *progress {
	f, ok := w.(*os.File)
	return &progress{w: w, terminal: ok && term.IsTerminal(int(f.Fd())), start: time.Now()}
}

// step reports a finished step.
func (p *progress) step(format string, args ...any) {
	if p.terminal {
		fmt.Fprint(p.w, "\r\033[K")
	}
	fmt.Fprintf(p.w, "[%5.1fs] %s\n", time.Since(p.start).Seconds(), fmt.Sprintf(format, args...))
}

// waiting reports what is being waited for: redrawn in place on a
// terminal, one line per change otherwise.
func (p *progress) waiting(tick int, msg string, last *string) {
	if p.terminal {
		frames := `|/-\`
		fmt.Fprintf(p.w, "\r\033[K%c %s", frames[tick%len(frames)], msg)
		return
	}
	if msg != *last {
		fmt.Fprintf(p.w, "[%5.1fs] %s\n", time.Since(p.start).Seconds(), msg)
	}
	*last = msg
}

func newClusterConnectCmd() *cobra.Command {
	var (
		af                              adminFlags
		kf                              kubeFlags
		out                             outputFlag
		group, name, location, mode     string
		image, namespace                string
		proxyHTTPS, proxySkip, proxyPEM string
		timeout                         time.Duration
	)
	cmd := &cobra.Command{
		Use:   "connect -g GROUP -n NAME",
		Short: "Register a cluster, install its agent with the current kubeconfig, and wait until it is connected",
		Long: `Register the cluster on the hub (if it is not yet), issue a join token,
install the agent into the cluster the kubeconfig points at (namespace,
service account with impersonation RBAC, Secret, Deployment: server-side
apply, the same objects as the Helm chart in deploy/helm/tether-agent), and
wait until the agent's tunnel is up. Re-running it is safe: the objects are
applied again and an enrolled agent keeps its key.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := validateClusterName(group, name); err != nil {
				return err
			}
			if err := out.validate(); err != nil {
				return err
			}
			if mode != "kubernetes-rbac" && mode != "hub-rbac" {
				return usageError{fmt.Errorf("--mode %q: want kubernetes-rbac or hub-rbac", mode)}
			}
			if (proxySkip != "" || proxyPEM != "") && proxyHTTPS == "" {
				return usageError{errors.New("--proxy-skip-range and --proxy-cert need --proxy-https")}
			}
			var proxyCA []byte
			if proxyPEM != "" {
				b, err := os.ReadFile(proxyPEM)
				if err != nil {
					return fmt.Errorf("read --proxy-cert: %w", err)
				}
				proxyCA = b
			}
			ctx := cmd.Context()
			p := newProgress(progressOut(cmd))
			kcfg, kver, err := kf.restConfig(ctx)
			if err != nil {
				return err
			}
			p.step("reached the cluster's API server %s (Kubernetes %s)", kcfg.Host, kver)
			c, err := af.client(ctx)
			if err != nil {
				return err
			}
			path := clusterPath(group, name)
			view, err := registerForConnect(ctx, c, kcfg, namespace, hub.ClusterRequest{Group: group, Name: name, Location: location, Mode: mode}, cmd.Flags().Changed("mode"))
			if err != nil {
				return err
			}
			p.step("cluster %s registered on the hub (location %s, mode %s)", view.ID, view.Location, view.Mode)
			var join hub.JoinTokenView
			if err := c.do(ctx, http.MethodPost, path+"/join-tokens", nil, &join); err != nil {
				return err
			}
			var hubCA []byte
			if af.signIn.hub.ca != "" {
				if hubCA, err = os.ReadFile(af.signIn.hub.ca); err != nil {
					return fmt.Errorf("read hub CA: %w", err)
				}
			}
			objs, err := agentinstall.Objects(agentinstall.Options{
				Namespace: namespace, Image: image, HubURL: c.base.String(), HubCA: hubCA, JoinToken: join.JoinToken,
				ClusterID: view.ID, Mode: view.Mode, HTTPSProxy: proxyHTTPS, NoProxy: proxySkip, ProxyCA: proxyCA,
			})
			if err != nil {
				return usageError{err}
			}
			if err := agentinstall.Apply(ctx, kcfg, objs, func(s string) { p.step("%s", s) }); err != nil {
				return fmt.Errorf("install the agent: %w", err)
			}
			view, err = waitConnected(ctx, c, path, kcfg, namespace, timeout, p)
			if err != nil {
				return err
			}
			p.step("connected: agent %s, Kubernetes %s", view.AgentVersion, view.KubernetesVersion)
			return out.print(cmd.OutOrStdout(), view, func(w *tabwriter.Writer) { clusterTable(w, []hub.ClusterView{view}, colorEnabled(cmd.OutOrStdout())) })
		},
	}
	af.register(cmd)
	kf.register(cmd)
	out.register(cmd.Flags())
	clusterNameFlags(cmd, &group, &name)
	f := cmd.Flags()
	f.StringVarP(&location, "location", "l", "", "the cluster's location, e.g. \"East US 2\" (default: the hub's first; tether locations list)")
	f.StringVar(&mode, "mode", "kubernetes-rbac", "who authorizes requests: kubernetes-rbac or hub-rbac")
	f.StringVar(&namespace, "namespace", agentinstall.DefaultNamespace, "namespace for the agent")
	f.StringVar(&image, "agent-image", "", "the agent's container image (default: the release matching this CLI)")
	f.StringVar(&proxyHTTPS, "proxy-https", "", "HTTPS proxy the agent must use to reach the hub, e.g. http://proxy.corp:3128")
	f.StringVar(&proxySkip, "proxy-skip-range", "", "comma-separated hosts and CIDRs the agent reaches without the proxy (its NO_PROXY)")
	f.StringVar(&proxyPEM, "proxy-cert", "", "PEM CA of a proxy that intercepts TLS, trusted by the agent for the hub connection")
	f.DurationVar(&timeout, "timeout", 5*time.Minute, "how long to wait for the agent to connect")
	return cmd
}

// registerForConnect registers the cluster, or finds it registered by an
// earlier connect to this same Kubernetes cluster (its agent namespace
// carries the cluster ID). A registered cluster whose agent enrolled from
// elsewhere is another cluster under this name: refused.
func registerForConnect(ctx context.Context, c *adminClient, kcfg *rest.Config, namespace string, req hub.ClusterRequest, modeGiven bool) (hub.ClusterView, error) {
	var created hub.CreatedCluster
	err := c.do(ctx, http.MethodPost, "/api/v1/clusters", req, &created)
	var he *hubError
	if err == nil || !errors.As(err, &he) || he.Code != http.StatusConflict {
		return created.Cluster, err
	}
	var view hub.ClusterView
	if err := c.do(ctx, http.MethodGet, "/api/v1/groups/"+url.PathEscape(req.Group)+"/clusters/"+url.PathEscape(req.Name), nil, &view); err != nil {
		return view, err
	}
	if modeGiven && view.Mode != req.Mode {
		return view, fmt.Errorf("cluster %s is registered in %s mode, not %s; connect it without --mode, or delete it first (tether cluster delete -g %s -n %s)", view.ID, view.Mode, req.Mode, req.Group, req.Name)
	}
	cs, err := kubernetes.NewForConfig(kcfg)
	if err != nil {
		return view, err
	}
	ns, err := cs.CoreV1().Namespaces().Get(ctx, namespace, metav1.GetOptions{})
	same := err == nil && ns.Annotations[agentinstall.ClusterIDAnnotation] == view.ID
	if !same && view.Enrolled {
		return view, fmt.Errorf("cluster %s is already registered and its agent enrolled from another Kubernetes cluster (this one, %s, has no agent of it in namespace %s); choose another name, or delete the other first (tether cluster delete -g %s -n %s)",
			view.ID, kcfg.Host, namespace, req.Group, req.Name)
	}
	return view, nil
}

// waitConnected polls the hub until the cluster is Connected, showing why
// not yet; at the timeout it says the last reason.
func waitConnected(ctx context.Context, c *adminClient, clusterPath string, kcfg *rest.Config, namespace string, timeout time.Duration, p *progress) (hub.ClusterView, error) {
	deadline := time.Now().Add(timeout)
	var last, reason string
	for tick := 0; ; tick++ {
		var view hub.ClusterView
		if err := c.do(ctx, http.MethodGet, clusterPath, nil, &view); err != nil {
			return view, err
		}
		if view.Status == hub.StatusConnected {
			return view, nil
		}
		if tick%5 == 0 { // asking the cluster costs more than asking the hub
			reason = agentinstall.Diagnose(ctx, kcfg, namespace)
		}
		msg := "waiting for the agent to connect (status " + string(view.Status) + ")"
		if view.LastError != "" {
			msg += "; the agent reports: " + view.LastError
		} else if reason != "" {
			msg += ": " + reason
		}
		if time.Now().After(deadline) {
			if p.terminal {
				fmt.Fprintln(p.w)
			}
			return view, fmt.Errorf("the agent did not connect within %s: %s; see the agent's log: kubectl -n %s logs deploy/tether-agent", timeout, strings.TrimPrefix(msg, "waiting for the agent to connect "), namespace)
		}
		p.waiting(tick, msg, &last)
		select {
		case <-ctx.Done():
			return view, ctx.Err()
		case <-time.After(time.Second): // polling the hub's view of the agent
		}
	}
}

// removeAgentFromCluster removes the agent of cluster id from the cluster
// the kubeconfig reaches, if its namespace there belongs to that cluster.
// A cluster it cannot reach is no error: the message says what was left.
func removeAgentFromCluster(ctx context.Context, kf *kubeFlags, namespace, id string) (string, error) {
	kcfg, _, err := kf.restConfig(ctx)
	if err != nil {
		return fmt.Sprintf("warning: the agent was not removed from the cluster (%v); remove it there with: kubectl delete namespace %s", err, namespace), nil
	}
	cs, err := kubernetes.NewForConfig(kcfg)
	if err != nil {
		return "", err
	}
	ns, err := cs.CoreV1().Namespaces().Get(ctx, namespace, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		return fmt.Sprintf("no agent in namespace %s of the cluster at %s: nothing to remove there", namespace, kcfg.Host), nil
	case err != nil:
		return fmt.Sprintf("warning: the agent was not removed from the cluster (%v)", err), nil
	case ns.Annotations[agentinstall.ClusterIDAnnotation] != id:
		return fmt.Sprintf("warning: namespace %s of the cluster at %s holds the agent of %q, not of %s: left alone", namespace, kcfg.Host, ns.Annotations[agentinstall.ClusterIDAnnotation], id), nil
	}
	if err := agentinstall.Remove(ctx, kcfg, namespace); err != nil {
		return "", fmt.Errorf("remove the agent from the cluster at %s: %w; retry, or pass --kubeconfig of another cluster to skip it", kcfg.Host, err)
	}
	return fmt.Sprintf("removed the agent's objects from the cluster at %s", kcfg.Host), nil
}

package cli

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"tether.dev/tether/internal/agent"
)

const (
	// defaultStateDir is where the agent keeps its state outside a cluster.
	defaultStateDir = "/var/lib/tether-agent"
	// namespaceFile names the namespace of a pod's service account.
	namespaceFile = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"
	// defaultProbeAddr and defaultMetricsAddr are the agent's probe and
	// metrics ports (controller-runtime's defaults).
	defaultProbeAddr   = ":8081"
	defaultMetricsAddr = ":8080"
)

func newAgentCmd() *cobra.Command {
	var (
		hf                                             hubFlags
		stateDir, stateSecret, joinToken, joinFile     string
		kubeFile, healthListen, probeAddr, metricsAddr string
	)
	cmd := &cobra.Command{
		Use:   "agent",
		Short: "Run the agent inside a cluster: dial out to the hub and forward to the API server",
		Long: `Run the agent. It needs only outbound HTTPS to the hub (HTTPS_PROXY and
NO_PROXY are honoured for the hub connection, never for the API server).
On first start it enrolls with the cluster's one-time join token and keeps
its key and the hub's answer in a Secret (--state-secret; the default in a
pod: NAMESPACE/tether-agent-state in its own namespace) or a directory
(--state-dir); later starts need no token, and a token given again is
ignored. --health-probe-bind-address serves /livez and /readyz (with
/readyz/tunnel and the other checks), --metrics-bind-address serves /metrics
(docs/agent.md).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			logger := newLogger(cmd, logJSON)
			hubURL, err := hf.parse()
			if err != nil {
				return err
			}
			transport, err := hf.transport()
			if err != nil {
				return err
			}
			flags := cmd.Flags()
			token, err := agentJoinToken(joinToken, flags.Changed("join-token"), joinFile, os.Getenv("TETHER_JOIN_TOKEN"), logger)
			if err != nil {
				return err
			}
			// In a pod, as rest.InClusterConfig tells it.
			inCluster := kubeFile == "" && os.Getenv("KUBERNETES_SERVICE_HOST") != ""
			dir, secret, err := agentState(stateDir, stateSecret, inCluster, namespaceFile)
			if err != nil {
				return err
			}
			restCfg, err := apiServerConfig(kubeFile)
			if err != nil {
				return err
			}
			health, metrics, err := agentListeners(
				bindFlag{probeAddr, flags.Changed("health-probe-bind-address")},
				bindFlag{metricsAddr, flags.Changed("metrics-bind-address")},
				bindFlag{healthListen, flags.Changed("health-listen")}, logger)
			if err != nil {
				return err
			}
			a, err := agent.New(agent.Config{
				Hub:             hubURL,
				HubClient:       &http.Client{Transport: transport},
				JoinToken:       token,
				StateDir:        dir,
				StateSecret:     secret,
				APIServer:       restCfg,
				Version:         Version,
				HealthListener:  health,
				MetricsListener: metrics,
			}, logger)
			if err != nil {
				closeListeners(health, metrics)
				return err
			}
			return a.Run(cmd.Context())
		},
	}
	hf.register(cmd.Flags())
	f := cmd.Flags()
	f.StringVar(&stateDir, "state-dir", "", "directory for the agent's key and enrollment (0700; default "+defaultStateDir+" outside a cluster)")
	f.StringVar(&stateSecret, "state-secret", "", "Secret NAMESPACE/NAME for the agent's key and enrollment (default in a pod without --state-dir: its namespace/"+agent.DefaultStateSecretName+")")
	f.StringVar(&joinToken, "join-token", "", "one-time join token, needed until the agent has enrolled (env TETHER_JOIN_TOKEN)")
	f.StringVar(&joinFile, "join-token-file", "", "file holding the join token, e.g. from a mounted Secret; a missing file means no token")
	f.StringVar(&kubeFile, "kubeconfig", "", "kubeconfig for the API server (default: the in-cluster service account)")
	f.StringVar(&probeAddr, "health-probe-bind-address", defaultProbeAddr, "address for /livez and /readyz (plain HTTP); 0 turns them off")
	f.StringVar(&metricsAddr, "metrics-bind-address", defaultMetricsAddr, "address for /metrics (plain HTTP, Prometheus); 0 turns it off; the same address as --health-probe-bind-address serves both on one port")
	f.StringVar(&healthListen, "health-listen", "", "one address for /livez, /readyz and /metrics; empty turns them off")
	f.MarkDeprecated("health-listen", "use --health-probe-bind-address and --metrics-bind-address (the same address for both serves all three on one port)")
	return cmd
}

// agentJoinToken is --join-token, else the content of --join-token-file,
// else $TETHER_JOIN_TOKEN.
func agentJoinToken(flag string, flagSet bool, file, env string, logger *slog.Logger) (string, error) {
	switch {
	case flagSet && file != "":
		return "", usageError{errors.New("give --join-token or --join-token-file, not both")}
	case flagSet:
		return strings.TrimSpace(flag), nil
	case file != "":
		b, err := os.ReadFile(file)
		if errors.Is(err, fs.ErrNotExist) {
			logger.Info("no join token file; continuing without a join token", "path", file)
			return "", nil
		}
		if err != nil {
			return "", fmt.Errorf("read join token: %w", err)
		}
		return strings.TrimSpace(string(b)), nil
	}
	return strings.TrimSpace(env), nil
}

// agentState says where the agent keeps its state: --state-secret,
// --state-dir, else in a cluster the Secret tether-agent-state in the
// agent's namespace (read from nsFile), else defaultStateDir.
func agentState(dir, secret string, inCluster bool, nsFile string) (string, types.NamespacedName, error) {
	switch {
	case dir != "" && secret != "":
		return "", types.NamespacedName{}, usageError{errors.New("give --state-dir or --state-secret, not both")}
	case secret != "":
		ns, name, ok := strings.Cut(secret, "/")
		if !ok || len(validation.IsDNS1123Label(ns)) > 0 || len(validation.IsDNS1123Subdomain(name)) > 0 {
			return "", types.NamespacedName{}, usageError{fmt.Errorf("--state-secret %q must be NAMESPACE/NAME", secret)}
		}
		return "", types.NamespacedName{Namespace: ns, Name: name}, nil
	case dir != "":
		return dir, types.NamespacedName{}, nil
	case !inCluster:
		return defaultStateDir, types.NamespacedName{}, nil
	}
	b, err := os.ReadFile(nsFile)
	if err != nil {
		return "", types.NamespacedName{}, fmt.Errorf("find the agent's namespace for its state Secret (or pass --state-secret NAMESPACE/NAME): %w", err)
	}
	return "", types.NamespacedName{Namespace: strings.TrimSpace(string(b)), Name: agent.DefaultStateSecretName}, nil
}

// agentListeners opens the agent's probe and metrics listeners. The
// deprecated --health-listen, when given, serves both on its one address,
// as it did before the two flags existed; it cannot be mixed with them.
func agentListeners(probes, metrics, healthListen bindFlag, logger *slog.Logger) (health, metricsL net.Listener, err error) {
	if healthListen.explicit {
		if probes.explicit || metrics.explicit {
			return nil, nil, usageError{errors.New("--health-listen is the deprecated form of --health-probe-bind-address and --metrics-bind-address: give those, not both kinds")}
		}
		l, err := listenAddr("--health-listen", healthListen.addr, true, logger)
		return l, l, err
	}
	return listenProbes(probes, metrics, logger)
}

// apiServerConfig is the in-cluster config, or the given kubeconfig file.
func apiServerConfig(kubeconfig string) (*rest.Config, error) {
	if kubeconfig == "" {
		cfg, err := rest.InClusterConfig()
		if errors.Is(err, rest.ErrNotInCluster) {
			return nil, usageError{errors.New("not running in a cluster: pass --kubeconfig FILE")}
		}
		return cfg, err
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return nil, fmt.Errorf("load kubeconfig %s: %w", kubeconfig, err)
	}
	return cfg, nil
}

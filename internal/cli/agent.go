package cli

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"tether.dev/tether/internal/agent"
)

func newAgentCmd() *cobra.Command {
	var (
		hf                                      hubFlags
		stateDir, joinToken, joinFile, kubeFile string
	)
	cmd := &cobra.Command{
		Use:   "agent",
		Short: "Run the agent inside a cluster: dial out to the hub and forward to the API server",
		Long: `Run the agent. It needs only outbound HTTPS to the hub (HTTPS_PROXY and
NO_PROXY are honoured for the hub connection, never for the API server).
On first start it enrolls with the cluster's one-time join token and keeps
its key in --state-dir; later starts need no token.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			hubURL, err := hf.parse()
			if err != nil {
				return err
			}
			transport, err := hf.transport()
			if err != nil {
				return err
			}
			if joinFile != "" {
				b, err := os.ReadFile(joinFile)
				if err != nil {
					return fmt.Errorf("read join token: %w", err)
				}
				joinToken = strings.TrimSpace(string(b))
			}
			restCfg, err := apiServerConfig(kubeFile)
			if err != nil {
				return err
			}
			logger := slog.New(slog.NewJSONHandler(cmd.ErrOrStderr(), nil))
			a, err := agent.New(agent.Config{
				Hub:       hubURL,
				HubClient: &http.Client{Transport: transport},
				JoinToken: joinToken,
				StateDir:  stateDir,
				APIServer: restCfg,
				Version:   Version,
			}, logger)
			if err != nil {
				return err
			}
			return a.Run(cmd.Context())
		},
	}
	hf.register(cmd.Flags())
	f := cmd.Flags()
	f.StringVar(&stateDir, "state-dir", "/var/lib/tether-agent", "directory for the agent's key and cluster ID (0700)")
	f.StringVar(&joinToken, "join-token", os.Getenv("TETHER_JOIN_TOKEN"), "one-time join token, needed until the agent has enrolled (env TETHER_JOIN_TOKEN)")
	f.StringVar(&joinFile, "join-token-file", "", "file holding the join token (instead of --join-token)")
	f.StringVar(&kubeFile, "kubeconfig", "", "kubeconfig for the API server (default: the in-cluster service account)")
	return cmd
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

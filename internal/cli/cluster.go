package cli

import (
	"bytes"
	"context"
	"encoding/json"
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

	"tether.dev/tether/internal/credentials"
	"tether.dev/tether/internal/hub"
)

// adminClient calls the hub's admin API with a bearer token: the admin
// token, or a signed-in principal's.
type adminClient struct {
	base   *url.URL
	client *http.Client
	token  string
}

// adminFlags choose how an admin command authenticates: with the hub's
// bootstrap admin token (--admin-token-file), else with the token of
// whoever signed in with tether login, or of the service principal -u
// names. The hub's role assignments decide what a signed-in caller may do.
type adminFlags struct {
	signIn    signInFlags
	tokenFile string
}

func (f *adminFlags) register(cmd *cobra.Command) {
	f.signIn.register(cmd)
	cmd.Flags().StringVar(&f.tokenFile, "admin-token-file", os.Getenv("TETHER_ADMIN_TOKEN_FILE"), "file holding the hub's admin token (DATA_DIR/admin.token on the hub; env TETHER_ADMIN_TOKEN_FILE); without it, the token of whoever signed in with tether login")
}

func (f *adminFlags) client(ctx context.Context) (*adminClient, error) {
	base, err := f.signIn.hub.parse()
	if err != nil {
		return nil, err
	}
	token, err := f.token(ctx, base)
	if err != nil {
		return nil, err
	}
	t, err := f.signIn.hub.transport()
	if err != nil {
		return nil, err
	}
	return &adminClient{base: base, client: &http.Client{Transport: t, Timeout: 30 * time.Second}, token: token}, nil
}

// token returns the bearer token for the admin API of the hub at base:
// the admin token, else a cached (or refreshed) sign-in; it never starts
// an interactive sign-in.
func (f *adminFlags) token(ctx context.Context, base *url.URL) (string, error) {
	if f.tokenFile != "" {
		if f.signIn.clientID != "" {
			return "", usageError{errors.New("-u (a service principal's sign-in) and --admin-token-file (or TETHER_ADMIN_TOKEN_FILE) exclude each other")}
		}
		b, err := os.ReadFile(f.tokenFile)
		if err != nil {
			return "", fmt.Errorf("read admin token: %w", err)
		}
		return strings.TrimSpace(string(b)), nil
	}
	src, err := f.signIn.source(ctx, "", false, io.Discard)
	if err != nil {
		return "", fmt.Errorf("no admin token (--admin-token-file), and no sign-in: %w", err)
	}
	tok, err := src.Get(ctx)
	switch {
	case errors.Is(err, credentials.ErrLoginRequired) && f.signIn.clientID != "":
		return "", fmt.Errorf("service principal %s is not signed in to %s: run tether login --service-principal -u %s (or pass --admin-token-file)", f.signIn.clientID, base.Host, f.signIn.clientID)
	case errors.Is(err, credentials.ErrLoginRequired):
		return "", fmt.Errorf("not signed in to %s: run tether login (or pass --admin-token-file)", base.Host)
	case err != nil:
		return "", err
	}
	return tok.Bearer(credentials.PresentAccessToken)
}

// do sends a JSON request and decodes a JSON answer into out; a non-2xx
// answer becomes an error carrying the hub's message.
func (c *adminClient) do(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	u := *c.base
	u.Path += path
	req, err := http.NewRequestWithContext(ctx, method, u.String(), body)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.client.Do(req)
	if err != nil {
		return fmt.Errorf("hub %s: %w", c.base.Host, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return fmt.Errorf("hub %s: %w", c.base.Host, err)
	}
	if resp.StatusCode/100 != 2 {
		var st struct{ Message string }
		if json.Unmarshal(data, &st) == nil && st.Message != "" {
			return fmt.Errorf("hub %s: %s", c.base.Host, st.Message)
		}
		return fmt.Errorf("hub %s: HTTP %d: %s", c.base.Host, resp.StatusCode, bytes.TrimSpace(data))
	}
	if out != nil && len(data) > 0 {
		if err := json.Unmarshal(data, out); err != nil {
			return fmt.Errorf("hub %s: unexpected answer: %w", c.base.Host, err)
		}
	}
	return nil
}

// adminCall validates -o, calls the admin API and decodes the answer.
func adminCall(cmd *cobra.Command, af *adminFlags, out *outputFlag, method, path string, in, result any) error {
	if err := out.validate(); err != nil {
		return err
	}
	c, err := af.client(cmd.Context())
	if err != nil {
		return err
	}
	return c.do(cmd.Context(), method, path, in, result)
}

func newClusterCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "cluster",
		Short: "Register clusters on the hub and issue join tokens",
	}
	cmd.AddCommand(newClusterCreateCmd(), newClusterShowCmd(), newClusterListCmd(), newClusterJoinTokenCmd())
	return cmd
}

func newClusterCreateCmd() *cobra.Command {
	var (
		af                          adminFlags
		out                         outputFlag
		group, name, location, mode string
	)
	cmd := &cobra.Command{
		Use:   "create -g GROUP -n NAME",
		Short: "Register a cluster and print its one-time join token for the agent",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var created hub.CreatedCluster
			if err := adminCall(cmd, &af, &out, http.MethodPost, "/api/v1/clusters", hub.ClusterRequest{Group: group, Name: name, Location: location, Mode: mode}, &created); err != nil {
				return err
			}
			return out.print(cmd.OutOrStdout(), created, func(w *tabwriter.Writer) {
				fmt.Fprintf(w, "CLUSTER\tLOCATION\tMODE\tJOIN TOKEN\tEXPIRES\n")
				fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\n", created.Cluster.ID, created.Cluster.Location, created.Cluster.Mode,
					created.Join.JoinToken, created.Join.ExpiresAt.UTC().Format(time.RFC3339))
			})
		},
	}
	af.register(cmd)
	out.register(cmd.Flags())
	clusterNameFlags(cmd, &group, &name)
	cmd.Flags().StringVarP(&location, "location", "l", "", "location of the cluster, e.g. eastus2")
	cmd.Flags().StringVar(&mode, "mode", "kubernetes-rbac", "who authorizes requests: kubernetes-rbac or hub-rbac")
	return cmd
}

func newClusterJoinTokenCmd() *cobra.Command {
	return newClusterCallCmd("join-token -g GROUP -n NAME", "Issue a new one-time join token for a registered cluster",
		http.MethodPost, "/join-tokens", func(w io.Writer, join hub.JoinTokenView) {
			fmt.Fprintf(w, "CLUSTER\tJOIN TOKEN\tEXPIRES\n%s\t%s\t%s\n", join.Cluster, join.JoinToken, join.ExpiresAt.UTC().Format(time.RFC3339))
		})
}

func newClusterShowCmd() *cobra.Command {
	return newClusterCallCmd("show -g GROUP -n NAME", "Show a registered cluster and its agent",
		http.MethodGet, "", func(w io.Writer, v hub.ClusterView) { clusterTable(w, []hub.ClusterView{v}) })
}

// newClusterCallCmd makes a command that sends method to the admin API path
// of one cluster (-g, -n) plus suffix, and prints the answer, a T.
func newClusterCallCmd[T any](use, short, method, suffix string, table func(io.Writer, T)) *cobra.Command {
	var (
		af          adminFlags
		out         outputFlag
		group, name string
	)
	cmd := &cobra.Command{
		Use:   use,
		Short: short,
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var v T
			path := "/api/v1/groups/" + url.PathEscape(group) + "/clusters/" + url.PathEscape(name) + suffix
			if err := adminCall(cmd, &af, &out, method, path, nil, &v); err != nil {
				return err
			}
			return out.print(cmd.OutOrStdout(), v, func(w *tabwriter.Writer) { table(w, v) })
		},
	}
	af.register(cmd)
	out.register(cmd.Flags())
	clusterNameFlags(cmd, &group, &name)
	return cmd
}

func newClusterListCmd() *cobra.Command {
	var (
		af    adminFlags
		out   outputFlag
		group string
	)
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List registered clusters",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			path := "/api/v1/clusters"
			if group != "" {
				path += "?group=" + url.QueryEscape(group)
			}
			var vs []hub.ClusterView
			if err := adminCall(cmd, &af, &out, http.MethodGet, path, nil, &vs); err != nil {
				return err
			}
			return out.print(cmd.OutOrStdout(), vs, func(w *tabwriter.Writer) { clusterTable(w, vs) })
		},
	}
	af.register(cmd)
	out.register(cmd.Flags())
	cmd.Flags().StringVarP(&group, "group", "g", "", "only clusters of this group")
	return cmd
}

func clusterTable(w io.Writer, vs []hub.ClusterView) {
	fmt.Fprintf(w, "GROUP\tNAME\tLOCATION\tMODE\tCONNECTED\tAGENT\tKUBERNETES\tLAST SEEN\n")
	for _, v := range vs {
		seen := "never"
		if !v.LastSeenAt.IsZero() {
			seen = v.LastSeenAt.UTC().Format(time.RFC3339)
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%t\t%s\t%s\t%s\n", v.Group, v.Name, v.Location, v.Mode, v.Connected,
			orDash(v.AgentVersion), orDash(v.KubernetesVersion), seen)
	}
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func clusterNameFlags(cmd *cobra.Command, group, name *string) {
	cmd.Flags().StringVarP(group, "group", "g", "", "the cluster's group (required)")
	cmd.Flags().StringVarP(name, "name", "n", "", "the cluster's name (required)")
	cmd.MarkFlagRequired("group")
	cmd.MarkFlagRequired("name")
}

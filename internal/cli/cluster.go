package cli

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"tether.dev/tether/internal/agentinstall"
	"tether.dev/tether/internal/credentials"
	"tether.dev/tether/internal/hub"
	"tether.dev/tether/internal/store"
)

// adminClient calls the hub's API with a bearer token: the admin token, or
// a signed-in principal's; without one (empty) only what anyone may read.
type adminClient struct {
	base   *url.URL
	client *http.Client
	token  string
}

// client returns a client of the hub's public API, which sends no token.
func (f *hubFlags) client() (*adminClient, error) {
	base, err := f.parse()
	if err != nil {
		return nil, err
	}
	t, err := f.transport()
	if err != nil {
		return nil, err
	}
	return &adminClient{base: base, client: &http.Client{Transport: t, Timeout: 30 * time.Second}}, nil
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
	c, err := f.signIn.hub.client()
	if err != nil {
		return nil, err
	}
	if c.token, err = f.token(ctx, c.base); err != nil {
		return nil, err
	}
	return c, nil
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

// hubError is a non-2xx answer of the admin API.
type hubError struct {
	Host    string
	Code    int
	Message string
}

func (e *hubError) Error() string { return "hub " + e.Host + ": " + e.Message }

// do sends a JSON request to path (escaped, with any query) and decodes a
// JSON answer into out; a non-2xx answer becomes an error carrying the
// hub's message.
func (c *adminClient) do(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	// path is escaped already, and may carry a query.
	req, err := http.NewRequestWithContext(ctx, method, c.base.String()+path, body)
	if err != nil {
		return err
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.client.Do(req)
	if err != nil {
		return fmt.Errorf("hub %s: %w", c.base.Host, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer+1))
	if err != nil {
		return fmt.Errorf("hub %s: %w", c.base.Host, err)
	}
	if len(data) > maxAnswer {
		return fmt.Errorf("hub %s: the answer to %s %s is larger than %d MiB, more than this client reads; ask for less (a --limit, a narrower filter)", c.base.Host, method, path, maxAnswer>>20)
	}
	if resp.StatusCode/100 != 2 {
		he := &hubError{Host: c.base.Host, Code: resp.StatusCode}
		var st struct{ Message string }
		if json.Unmarshal(data, &st) == nil && st.Message != "" {
			he.Message = st.Message
		} else {
			he.Message = fmt.Sprintf("HTTP %d: %s", resp.StatusCode, bytes.TrimSpace(data))
		}
		return he
	}
	if out != nil && len(data) > 0 {
		if err := json.Unmarshal(data, out); err != nil {
			return fmt.Errorf("hub %s: unexpected answer: %w", c.base.Host, err)
		}
	}
	return nil
}

// maxAnswer bounds what the client reads of one answer of the hub.
const maxAnswer = 16 << 20

// adminCall validates -o, calls the admin API and decodes the answer.
func adminCall(cmd *cobra.Command, af *adminFlags, out *outputFlag, method, path string, in, result any) error {
	return hubCall(cmd, out, func() (*adminClient, error) { return af.client(cmd.Context()) }, method, path, in, result)
}

// publicCall validates -o and GETs a path of the hub's API that anyone may
// read (no sign-in) into result.
func publicCall(cmd *cobra.Command, hf *hubFlags, out *outputFlag, path string, result any) error {
	return hubCall(cmd, out, hf.client, http.MethodGet, path, nil, result)
}

// hubCall validates -o, then calls the hub with the client connect makes
// and decodes the answer.
func hubCall(cmd *cobra.Command, out *outputFlag, connect func() (*adminClient, error), method, path string, in, result any) error {
	if err := out.validate(); err != nil {
		return err
	}
	c, err := connect()
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
	cmd.AddCommand(newClusterConnectCmd(), newClusterCreateCmd(), newClusterShowCmd(), newClusterListCmd(), newClusterDeleteCmd(), newClusterJoinTokenCmd())
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
	cmd.Flags().StringVarP(&location, "location", "l", "", `one of the hub's locations, by name or ID ("East US 2", eastus2; see tether locations list); default the hub's first`)
	cmd.Flags().StringVar(&mode, "mode", "kubernetes-rbac", "who authorizes requests: kubernetes-rbac or hub-rbac")
	return cmd
}

func newClusterJoinTokenCmd() *cobra.Command {
	return newClusterCallCmd("join-token -g GROUP -n NAME", "Issue a new one-time join token for a registered cluster",
		http.MethodPost, "/join-tokens", func(w io.Writer, join hub.JoinTokenView, _ bool) {
			fmt.Fprintf(w, "CLUSTER\tJOIN TOKEN\tEXPIRES\n%s\t%s\t%s\n", join.Cluster, join.JoinToken, join.ExpiresAt.UTC().Format(time.RFC3339))
		})
}

func newClusterShowCmd() *cobra.Command {
	return newClusterCallCmd("show -g GROUP -n NAME", "Show a registered cluster and its agent",
		http.MethodGet, "", func(w io.Writer, v hub.ClusterView, colour bool) { clusterTable(w, []hub.ClusterView{v}, colour) })
}

// newClusterCallCmd makes a command that sends method to the admin API path
// of one cluster (-g, -n) plus suffix, and prints the answer, a T (table
// is told whether stdout takes colour).
func newClusterCallCmd[T any](use, short, method, suffix string, table func(io.Writer, T, bool)) *cobra.Command {
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
			if err := validateClusterName(group, name); err != nil {
				return err
			}
			var v T
			path := clusterPath(group, name) + suffix
			if err := adminCall(cmd, &af, &out, method, path, nil, &v); err != nil {
				return err
			}
			return out.print(cmd.OutOrStdout(), v, func(w *tabwriter.Writer) { table(w, v, colorEnabled(cmd.OutOrStdout())) })
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
				if err := store.ValidateName(group); err != nil {
					return usageError{fmt.Errorf("--group: %w", err)}
				}
				path += "?group=" + url.QueryEscape(group)
			}
			var vs []hub.ClusterView
			if err := adminCall(cmd, &af, &out, http.MethodGet, path, nil, &vs); err != nil {
				return err
			}
			return out.print(cmd.OutOrStdout(), vs, func(w *tabwriter.Writer) { clusterTable(w, vs, colorEnabled(cmd.OutOrStdout())) })
		},
	}
	af.register(cmd)
	out.register(cmd.Flags())
	cmd.Flags().StringVarP(&group, "group", "g", "", "only clusters of this group")
	return cmd
}

// clusterTable prints clusters one a line; with colour, the status is
// green, yellow or red (every cell of its column, the header too, carries
// codes of the same length, so the columns stay aligned).
func clusterTable(w io.Writer, vs []hub.ClusterView, colour bool) {
	fmt.Fprintf(w, "NAME\tGROUP\tLOCATION\tMODE\t%s\tAGENT\tKUBERNETES\tNODES\tLAST SEEN\n", colourCell(colour, ansiPlain, "STATUS"))
	for _, v := range vs {
		seen := "never"
		if !v.LastSeenAt.IsZero() {
			seen = v.LastSeenAt.UTC().Format(time.RFC3339)
		}
		nodes := "-"
		if v.NodeCount >= 0 {
			nodes = strconv.Itoa(v.NodeCount)
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", v.Name, v.Group, orDash(v.Location), v.Mode, colourCell(colour, statusColour(string(v.Status)), string(v.Status)),
			orDash(v.AgentVersion), orDash(v.KubernetesVersion), nodes, seen)
	}
}

func newClusterDeleteCmd() *cobra.Command {
	var (
		af                     adminFlags
		kf                     kubeFlags
		group, name, namespace string
		yes                    bool
	)
	cmd := &cobra.Command{
		Use:   "delete -g GROUP -n NAME [--yes]",
		Short: "Delete a cluster: its agent is removed from the cluster, its key revoked, its record deleted",
		Long: `Delete a cluster. First the agent's objects are removed from the cluster,
when the kubeconfig (--kubeconfig, --kube-context, as kubectl chooses) reaches
it and its agent namespace belongs to this cluster; otherwise that step is
skipped with a warning. Then the hub deletes the record with its join tokens
and role assignments, revokes the agent's key and closes its tunnel: the agent
is refused from then on and exits. Without --yes it asks first, and only at a
terminal.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := validateClusterName(group, name); err != nil {
				return err
			}
			if !yes {
				ok, err := confirm(cmd, fmt.Sprintf("Delete cluster %s/%s? [y/N] ", group, name))
				if err != nil || !ok {
					return err
				}
			}
			for _, step := range clusterDeleteSteps(cmd, &af, &kf, namespace, group, name) {
				if err := step.run(); err != nil {
					return err
				}
				if step.done != "" {
					info(cmd, "%s\n", step.done)
				}
			}
			return nil
		},
	}
	af.register(cmd)
	kf.register(cmd)
	clusterNameFlags(cmd, &group, &name)
	cmd.Flags().StringVar(&namespace, "namespace", agentinstall.DefaultNamespace, "the agent's namespace in the cluster")
	cmd.Flags().BoolVarP(&yes, "yes", "y", false, "do not ask for confirmation (needed when stdin is not a terminal)")
	return cmd
}

// deleteStep is one step of tether cluster delete: run, then done is
// said on stderr. A failed step stops the ones after it.
type deleteStep struct {
	run  func() error
	done string
}

// clusterDeleteSteps are the steps of tether cluster delete, in order.
// Removing the agent's objects from the cluster (with --kubeconfig, the
// counterpart of tether cluster connect) belongs before the hub step,
// while the agent's key still works.
func clusterDeleteSteps(cmd *cobra.Command, af *adminFlags, kf *kubeFlags, namespace, group, name string) []deleteStep {
	return []deleteStep{{
		run: func() error {
			msg, err := removeAgentFromCluster(cmd.Context(), kf, namespace, store.ClusterID(group, name))
			if err == nil {
				info(cmd, "%s\n", msg)
			}
			return err
		},
	}, {
		run:  func() error { return deleteClusterOnHub(cmd, af, group, name) },
		done: fmt.Sprintf("deleted cluster %s/%s from the hub; its agent's key is revoked", group, name),
	}}
}

// deleteClusterOnHub deletes the cluster's record on the hub, which revokes
// its agent's key and closes its tunnel.
func deleteClusterOnHub(cmd *cobra.Command, af *adminFlags, group, name string) error {
	c, err := af.client(cmd.Context())
	if err != nil {
		return err
	}
	return c.do(cmd.Context(), http.MethodDelete, clusterPath(group, name), nil, nil)
}

// confirm asks question on stderr and reads the answer from stdin, which
// must be a terminal: without one it is a usage error to leave out --yes.
func confirm(cmd *cobra.Command, question string) (bool, error) {
	in, ok := cmd.InOrStdin().(*os.File)
	if !ok || !term.IsTerminal(int(in.Fd())) {
		return false, usageError{errors.New("not asking for confirmation without a terminal: pass --yes to delete")}
	}
	fmt.Fprint(cmd.ErrOrStderr(), question)
	answer, err := bufio.NewReader(in).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return false, fmt.Errorf("read the answer: %w", err)
	}
	switch strings.ToLower(strings.TrimSpace(answer)) {
	case "y", "yes":
		return true, nil
	}
	fmt.Fprintln(cmd.ErrOrStderr(), "not deleted")
	return false, nil
}

// clusterPath is the admin API path of one cluster.
func clusterPath(group, name string) string {
	return "/api/v1/groups/" + url.PathEscape(group) + "/clusters/" + url.PathEscape(name)
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

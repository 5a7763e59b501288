package cli

import (
	"cmp"
	"context"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"tether.dev/tether/internal/hub"
)

// completionTimeout bounds what one completion may wait for the hub: a
// shell waits for the answer while the user waits at the prompt, and no
// completion at all is better than a hung Tab.
const completionTimeout = 3 * time.Second

// addCompletionCmd adds cobra's "completion" command (bash, zsh, fish,
// powershell) now rather than when the command line runs, so that it is
// there for refuseUnknownSubcommands, and says where the kubectl plugin's
// completion comes from.
func addCompletionCmd(root *cobra.Command) {
	root.InitDefaultCompletionCmd()
	for _, c := range root.Commands() {
		if c.Name() != "completion" {
			continue
		}
		c.Long += `
Group names (-g), cluster names (-n, of the chosen -g) and locations (-l)
complete with the hub's answer, asked with the command line's --hub,
--hub-ca and sign-in (or admin token) and at most ` + completionTimeout.String() + `; without a hub
or a sign-in they do not complete.

As a kubectl plugin (kubectl 1.26 or later) completion needs no script:
install the binary also as kubectl_complete-tether on PATH, which kubectl
runs to complete "kubectl tether ...". See docs/cli.md.
`
	}
}

// registerCompletions gives the flags of c and of every command under it
// that name hub objects their dynamic completion: -g a group of clusters,
// -n a registered cluster (for cluster create, whose name is new, nothing),
// -l a location; -o completes its formats.
func registerCompletions(c *cobra.Command) {
	for _, sub := range c.Commands() {
		registerCompletions(sub)
	}
	fs := c.LocalNonPersistentFlags()
	creates := c.Name() == "create" && c.HasParent() && c.Parent().Name() == "cluster"
	for _, reg := range []struct {
		name, short string
		skip        bool
		complete    cobra.CompletionFunc
	}{
		{name: "group", short: "g", complete: completeGroups},
		{name: "name", short: "n", skip: creates, complete: completeClusterNames},
		{name: "name", short: "n", skip: !creates, complete: cobra.NoFileCompletions},
		{name: "location", short: "l", complete: completeLocations},
		{name: "output", short: "o", complete: cobra.FixedCompletions([]string{"table", "json", "yaml", "tsv"}, cobra.ShellCompDirectiveNoFileComp)},
	} {
		if f := fs.Lookup(reg.name); f != nil && f.Shorthand == reg.short && !reg.skip {
			// The only error is a second registration, which the walk
			// never makes.
			_ = c.RegisterFlagCompletionFunc(reg.name, reg.complete)
		}
	}
}

// completeGroups completes -g with the groups of the clusters the caller
// may see.
func completeGroups(cmd *cobra.Command, _ []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
	vs, err := completionClusters(cmd, "")
	if err != nil {
		return completionFailed(err)
	}
	count := map[string]int{}
	for _, v := range vs {
		count[v.Group]++
	}
	var out []cobra.Completion
	for _, g := range slices.Sorted(maps.Keys(count)) {
		if strings.HasPrefix(g, toComplete) {
			out = append(out, cobra.CompletionWithDesc(g, plural(count[g], "cluster")))
		}
	}
	return out, cobra.ShellCompDirectiveNoFileComp
}

// completeClusterNames completes -n with the names of the clusters the
// caller may see, of the group -g names when it is given.
func completeClusterNames(cmd *cobra.Command, _ []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
	group, _ := cmd.Flags().GetString("group")
	vs, err := completionClusters(cmd, group)
	if err != nil {
		return completionFailed(err)
	}
	slices.SortFunc(vs, func(a, b hub.ClusterView) int {
		return cmp.Or(cmp.Compare(a.Name, b.Name), cmp.Compare(a.Group, b.Group))
	})
	var out []cobra.Completion
	for _, v := range vs {
		if strings.HasPrefix(v.Name, toComplete) {
			out = append(out, cobra.CompletionWithDesc(v.Name, v.Group+", "+string(v.Status)))
		}
	}
	return out, cobra.ShellCompDirectiveNoFileComp
}

// completeLocations completes -l with the hub's location IDs, which anyone
// may list; their display names are the descriptions.
func completeLocations(cmd *cobra.Command, _ []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
	ctx, cancel := context.WithTimeout(cmd.Context(), completionTimeout)
	defer cancel()
	hf := completionHubFlags(cmd)
	c, err := hf.client()
	if err != nil {
		return completionFailed(err)
	}
	var ls []hub.LocationView
	if err := c.do(ctx, http.MethodGet, "/api/v1/locations", nil, &ls); err != nil {
		return completionFailed(err)
	}
	var out []cobra.Completion
	for _, l := range ls {
		if strings.HasPrefix(l.ID, toComplete) {
			out = append(out, cobra.CompletionWithDesc(l.ID, l.Name))
		}
	}
	return out, cobra.ShellCompDirectiveNoFileComp
}

// completionClusters lists the clusters (of group, if not empty) the
// caller may see, authenticated as the command would be, never
// interactively: a completion must not prompt or open a browser.
func completionClusters(cmd *cobra.Command, group string) ([]hub.ClusterView, error) {
	ctx, cancel := context.WithTimeout(cmd.Context(), completionTimeout)
	defer cancel()
	af := adminFlags{
		signIn: signInFlags{
			hub:      completionHubFlags(cmd),
			clientID: flagOrEnv(cmd, "client-id", ""),
			issuer:   flagOrEnv(cmd, "issuer", "TETHER_ISSUER"),
		},
		tokenFile: flagOrEnv(cmd, "admin-token-file", "TETHER_ADMIN_TOKEN_FILE"),
	}
	c, err := af.client(ctx)
	if err != nil {
		return nil, err
	}
	path := "/api/v1/clusters"
	if group != "" {
		path += "?group=" + url.QueryEscape(group)
	}
	var vs []hub.ClusterView
	if err := c.do(ctx, http.MethodGet, path, nil, &vs); err != nil {
		return nil, err
	}
	return vs, nil
}

// completionHubFlags are the hub flags of the command being completed.
func completionHubFlags(cmd *cobra.Command) hubFlags {
	return hubFlags{url: flagOrEnv(cmd, "hub", "TETHER_HUB"), ca: flagOrEnv(cmd, "hub-ca", "TETHER_HUB_CA")}
}

// flagOrEnv is the value of cmd's flag name (whose default is already the
// environment's, where it has one), or, on a command without that flag,
// the environment variable env.
func flagOrEnv(cmd *cobra.Command, name, env string) string {
	if f := cmd.Flags().Lookup(name); f != nil {
		return f.Value.String()
	}
	if env == "" {
		return ""
	}
	return os.Getenv(env)
}

// completionFailed gives no completions, and files nothing either: the
// reason goes to cobra's debug log ($BASH_COMP_DEBUG_FILE), not to the
// terminal in the middle of the user's line.
func completionFailed(err error) ([]cobra.Completion, cobra.ShellCompDirective) {
	cobra.CompDebugln(fmt.Sprintf("tether: no completions from the hub: %v", err), false)
	return nil, cobra.ShellCompDirectiveNoFileComp | cobra.ShellCompDirectiveError
}

func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}

package cli

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"text/tabwriter"

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/util/version"

	"tether.dev/tether/internal/hub"
)

// versions is what tether version -o json prints.
type versions struct {
	Client string `json:"client"`
	// Hub is the hub's version, when --hub (or TETHER_HUB) names a hub
	// that answers.
	Hub string `json:"hub,omitempty"`
	// Agent is the version of the agent of the cluster -g and -n name.
	Agent string `json:"agent,omitempty"`
}

func newVersionCmd() *cobra.Command {
	var (
		af          adminFlags
		out         outputFlag
		group, name string
	)
	cmd := &cobra.Command{
		Use:   "version [-g GROUP -n NAME]",
		Short: "Print the version of this binary, the hub's, and a cluster's agent's",
		Long: `Print the version of this binary; with a hub (--hub or TETHER_HUB), the hub's
too; with -g and -n, that cluster's agent's (which needs the right to read the
cluster). Warns on stderr when the major or minor versions of the client and
the hub, or of the hub and the agent, differ.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := out.validate(); err != nil {
				return err
			}
			if (group == "") != (name == "") {
				return usageError{errors.New("-g and -n name a cluster together: pass both to see its agent's version, or neither")}
			}
			stderr := cmd.ErrOrStderr()
			v := versions{Client: Version}
			if af.signIn.hub.url != "" || group != "" {
				c, err := af.signIn.hub.client()
				if err != nil {
					return err
				}
				var info hub.VersionInfo
				if err := c.do(cmd.Context(), http.MethodGet, "/api/v1/version", nil, &info); err != nil {
					fmt.Fprintf(stderr, "warning: the hub's version is unknown: %v\n", err)
				}
				v.Hub = info.HubVersion
			}
			if group != "" {
				if err := validateClusterName(group, name); err != nil {
					return err
				}
				var cv hub.ClusterView
				if err := adminCall(cmd, &af, &out, http.MethodGet, clusterPath(group, name), nil, &cv); err != nil {
					return err
				}
				if v.Agent = cv.AgentVersion; v.Agent == "" {
					fmt.Fprintf(stderr, "warning: the agent of cluster %s/%s has not reported its version (status %s)\n", group, name, cv.Status)
				}
			}
			for _, w := range skewWarnings(v, group+"/"+name) {
				fmt.Fprintln(stderr, "warning: "+w)
			}
			return out.print(cmd.OutOrStdout(), v, func(w *tabwriter.Writer) { versionTable(w, v, group+"/"+name) })
		},
	}
	af.register(cmd)
	out.register(cmd.Flags())
	cmd.Flags().StringVarP(&group, "group", "g", "", "with -n: also the version of this cluster's agent")
	cmd.Flags().StringVarP(&name, "name", "n", "", "with -g: also the version of this cluster's agent")
	return cmd
}

// versionTable prints the client's version alone as it always has, and
// with the hub's or an agent's one line each.
func versionTable(w io.Writer, v versions, cluster string) {
	if v.Hub == "" && v.Agent == "" {
		fmt.Fprintln(w, v.Client)
		return
	}
	fmt.Fprintf(w, "Client Version:\t%s\n", v.Client)
	if v.Hub != "" {
		fmt.Fprintf(w, "Hub Version:\t%s\n", v.Hub)
	}
	if v.Agent != "" {
		fmt.Fprintf(w, "Agent Version:\t%s (cluster %s)\n", v.Agent, cluster)
	}
}

// skewWarnings says which of the versions to upgrade when the client and
// the hub, or the hub and the agent, differ in major or minor version.
// Versions that do not parse (development builds) are not compared.
func skewWarnings(v versions, cluster string) []string {
	var ws []string
	if w := skew("this client", v.Client, "the hub", v.Hub); w != "" {
		ws = append(ws, w)
	}
	if w := skew("the hub", v.Hub, "the agent of cluster "+cluster, v.Agent); w != "" {
		ws = append(ws, w)
	}
	return ws
}

// skew compares two components' versions and, when their major.minor
// differ, says to upgrade the older.
func skew(aName, a, bName, b string) string {
	av, aerr := version.ParseGeneric(a)
	bv, berr := version.ParseGeneric(b)
	if aerr != nil || berr != nil || (av.Major() == bv.Major() && av.Minor() == bv.Minor()) {
		return ""
	}
	older, newer := aName, bv
	if av.Major() > bv.Major() || (av.Major() == bv.Major() && av.Minor() > bv.Minor()) {
		older, newer = bName, av
	}
	return fmt.Sprintf("version skew: %s is %s and %s is %s; upgrade %s to v%d.%d", aName, a, bName, b, older, newer.Major(), newer.Minor())
}

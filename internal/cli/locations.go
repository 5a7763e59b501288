package cli

import (
	"fmt"
	"net/url"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"tether.dev/tether/internal/hub"
)

func newLocationsCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "locations",
		Short: "The hub's locations (regions): where clusters are registered and their agents connect",
	}
	var (
		hf  hubFlags
		out outputFlag
	)
	list := &cobra.Command{
		Use:   "list",
		Short: "List the hub's locations",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var ls []hub.LocationView
			if err := publicCall(cmd, &hf, &out, "/api/v1/locations", &ls); err != nil {
				return err
			}
			return out.print(cmd.OutOrStdout(), ls, func(w *tabwriter.Writer) {
				fmt.Fprintf(w, "NAME\tID\tURL\n")
				for _, l := range ls {
					fmt.Fprintf(w, "%s\t%s\t%s\n", l.Name, l.ID, orDash(l.URL))
				}
			})
		},
	}
	hf.register(list.Flags())
	out.register(list.Flags())
	cmd.AddCommand(list)
	return cmd
}

func newEndpointsCmd() *cobra.Command {
	var (
		hf       hubFlags
		out      outputFlag
		location string
	)
	cmd := &cobra.Command{
		Use:   "endpoints --location LOCATION",
		Short: "List the HOST:PORT endpoints an agent in a location must be allowed to reach (outbound)",
		Long: `List the endpoints an agent in the location must be allowed to reach: the
only outbound connections its cluster needs (HTTPS). The location is a name
or an ID: "East US 2" and eastus2 are the same.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var l hub.LocationView
			if err := publicCall(cmd, &hf, &out, "/api/v1/locations/"+url.PathEscape(location), &l); err != nil {
				return err
			}
			return out.print(cmd.OutOrStdout(), l.Endpoints, func(w *tabwriter.Writer) {
				fmt.Fprintf(w, "ENDPOINT\n")
				for _, e := range l.Endpoints {
					fmt.Fprintln(w, e)
				}
			})
		},
	}
	hf.register(cmd.Flags())
	out.register(cmd.Flags())
	cmd.Flags().StringVarP(&location, "location", "l", "", `the location, by name or ID ("East US 2" or eastus2; see tether locations list) (required)`)
	cmd.MarkFlagRequired("location")
	return cmd
}

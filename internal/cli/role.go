package cli

import (
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"tether.dev/tether/internal/hub"
)

func newRoleCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "role",
		Short: "Role definitions and assignments (who may do what, where)",
	}
	def := &cobra.Command{Use: "definition", Short: "Built-in role definitions"}
	def.AddCommand(newRoleDefinitionListCmd())
	asg := &cobra.Command{Use: "assignment", Short: "Role assignments: a principal, a role, a scope"}
	asg.AddCommand(newRoleAssignmentCreateCmd(), newRoleAssignmentListCmd(), newRoleAssignmentDeleteCmd())
	cmd.AddCommand(def, asg)
	return cmd
}

func newRoleDefinitionListCmd() *cobra.Command {
	var (
		af  adminFlags
		out outputFlag
	)
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List the built-in roles",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var roles []hub.RoleView
			if err := adminCall(cmd, &af, &out, http.MethodGet, "/api/v1/role-definitions", nil, &roles); err != nil {
				return err
			}
			return out.print(cmd.OutOrStdout(), roles, func(w *tabwriter.Writer) {
				fmt.Fprintf(w, "ID\tNAME\tKUBERNETES\tDESCRIPTION\n")
				for _, r := range roles {
					fmt.Fprintf(w, "%s\t%s\t%s\t%s\n", r.ID, r.Name, orDash(r.ClusterRole), r.Description)
				}
			})
		},
	}
	af.register(cmd)
	out.register(cmd.Flags())
	return cmd
}

func newRoleAssignmentCreateCmd() *cobra.Command {
	var (
		af  adminFlags
		out outputFlag
		req hub.AssignmentRequest
	)
	cmd := &cobra.Command{
		Use:   "create --role ROLE --assignee OBJECT_ID --scope SCOPE",
		Short: "Give a principal a role at a scope (a group, a cluster ID, or CLUSTER_ID/namespaces/NS)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var v hub.AssignmentView
			if err := adminCall(cmd, &af, &out, http.MethodPost, "/api/v1/role-assignments", req, &v); err != nil {
				return err
			}
			return out.print(cmd.OutOrStdout(), v, func(w *tabwriter.Writer) { assignmentTable(w, []hub.AssignmentView{v}) })
		},
	}
	af.register(cmd)
	out.register(cmd.Flags())
	f := cmd.Flags()
	f.StringVar(&req.Role, "role", "", `role ID or name, e.g. "Cluster User" or kubernetes-viewer (required)`)
	f.StringVar(&req.Assignee, "assignee", "", "object ID of the user, service principal or group (required)")
	f.StringVar(&req.AssigneeType, "assignee-type", "user", "user, servicePrincipal or group")
	f.StringVar(&req.Scope, "scope", "", "/groups/G, /groups/G/clusters/C or /groups/G/clusters/C/namespaces/NS (required)")
	for _, name := range []string{"role", "assignee", "scope"} {
		cmd.MarkFlagRequired(name)
	}
	return cmd
}

func newRoleAssignmentListCmd() *cobra.Command {
	var (
		af              adminFlags
		out             outputFlag
		scope, assignee string
	)
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List role assignments, optionally at or below a scope, or of one principal",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			q := url.Values{}
			if scope != "" {
				q.Set("scope", scope)
			}
			if assignee != "" {
				q.Set("assignee", assignee)
			}
			path := "/api/v1/role-assignments"
			if len(q) > 0 {
				path += "?" + q.Encode()
			}
			var vs []hub.AssignmentView
			if err := adminCall(cmd, &af, &out, http.MethodGet, path, nil, &vs); err != nil {
				return err
			}
			return out.print(cmd.OutOrStdout(), vs, func(w *tabwriter.Writer) { assignmentTable(w, vs) })
		},
	}
	af.register(cmd)
	out.register(cmd.Flags())
	cmd.Flags().StringVar(&scope, "scope", "", "only assignments at or below this scope")
	cmd.Flags().StringVar(&assignee, "assignee", "", "only assignments of this object ID")
	return cmd
}

func newRoleAssignmentDeleteCmd() *cobra.Command {
	var (
		af  adminFlags
		ids []string
	)
	cmd := &cobra.Command{
		Use:   "delete --ids ID[,ID...]",
		Short: "Delete role assignments; the principal loses the access on its next request",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := af.client(cmd.Context())
			if err != nil {
				return err
			}
			for _, id := range ids {
				if err := c.do(cmd.Context(), http.MethodDelete, "/api/v1/role-assignments/"+url.PathEscape(strings.TrimSpace(id)), nil, nil); err != nil {
					return err
				}
				info(cmd, "deleted role assignment %s\n", id)
			}
			return nil
		},
	}
	af.register(cmd)
	cmd.Flags().StringSliceVar(&ids, "ids", nil, "IDs of the assignments to delete (required)")
	cmd.MarkFlagRequired("ids")
	return cmd
}

func assignmentTable(w io.Writer, vs []hub.AssignmentView) {
	fmt.Fprintf(w, "ID\tROLE\tPRINCIPAL\tTYPE\tSCOPE\n")
	for _, v := range vs {
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\n", v.ID, v.RoleName, v.PrincipalID, v.PrincipalType, v.Scope)
	}
}

package cli

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"tether.dev/tether/internal/hub"
)

// tether ad manages the hub's embedded directory, shaped like az ad: the
// same subcommands, flags and output field names, so that scripts written
// for Entra ID carry over.

func newADCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "ad",
		Short: "Users, service principals and groups of the hub's directory (like az ad)",
	}
	me := &cobra.Command{Use: "signed-in-user", Short: "Who is signed in"}
	me.AddCommand(adCall("show", "Show the signed-in user or service principal (its object ID is what role assignments name)",
		func(*cobra.Command) (adRequest, error) {
			return adRequest{method: http.MethodGet, path: "/api/v1/me"}, nil
		},
		printed(meTable)))

	user := &cobra.Command{Use: "user", Short: "Users: people who sign in with a login name and password"}
	user.AddCommand(newADUserCreateCmd(), newADUserUpdateCmd(), adUsers.showCmd(), adUsers.listCmd(), adUsers.deleteCmd())

	sp := &cobra.Command{Use: "sp", Short: "Service principals: programs that sign in with an app ID and a secret"}
	cred := &cobra.Command{Use: "credential", Short: "Client secrets of a service principal"}
	cred.AddCommand(newADCredentialResetCmd(), newADCredentialListCmd(), newADCredentialDeleteCmd())
	sp.AddCommand(newADSPCreateCmd(), adSPs.showCmd(), adSPs.listCmd(), adSPs.deleteCmd(), cred)

	group := &cobra.Command{Use: "group", Short: "Groups of users, service principals and groups"}
	member := &cobra.Command{Use: "member", Short: "Members of a group"}
	member.AddCommand(newADMemberAddCmd(), newADMemberRemoveCmd(), newADMemberListCmd(), newADMemberCheckCmd())
	group.AddCommand(newADGroupCreateCmd(), adGroups.showCmd(), adGroups.listCmd(), adGroups.deleteCmd(), member)

	cmd.AddCommand(me, user, sp, group)
	return cmd
}

// adRequest is the admin API call of a tether ad command.
type adRequest struct {
	method, path string
	body         any
}

// adCall makes a tether ad command: it sends the request that req builds
// from the parsed flags, and hands the answer, a T, to show. It registers
// the admin and output flags; the caller adds its own.
func adCall[T any](use, short string, req func(*cobra.Command) (adRequest, error), show func(*cobra.Command, *outputFlag, T) error) *cobra.Command {
	var (
		af  adminFlags
		out outputFlag
	)
	cmd := &cobra.Command{
		Use:   use,
		Short: short,
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			r, err := req(cmd)
			if err != nil {
				return err
			}
			var v T
			if err := adminCall(cmd, &af, &out, r.method, r.path, r.body, &v); err != nil {
				return err
			}
			return show(cmd, &out, v)
		},
	}
	af.register(cmd)
	out.register(cmd.Flags())
	return cmd
}

// printed shows an answer on stdout, with table for the table format.
func printed[T any](table func(io.Writer, T)) func(*cobra.Command, *outputFlag, T) error {
	return func(cmd *cobra.Command, out *outputFlag, v T) error {
		return out.print(cmd.OutOrStdout(), v, func(w *tabwriter.Writer) { table(w, v) })
	}
}

// said reports on stderr that a request without an answer succeeded.
func said(msg func() string) func(*cobra.Command, *outputFlag, struct{}) error {
	return func(cmd *cobra.Command, _ *outputFlag, _ struct{}) error {
		info(cmd, "%s\n", msg())
		return nil
	}
}

// adKind is what tether ad says about one principal type.
type adKind struct {
	cmd    string // the subcommand: user, sp, group
	path   string // the collection's path under /api/v1
	noun   string
	idFlag string // --id, or --group for groups (as az ad)
	idHelp string
}

var (
	adUsers  = adKind{cmd: "user", path: "users", noun: "user", idFlag: "id", idHelp: "the user's object ID or login name (required)"}
	adSPs    = adKind{cmd: "sp", path: "service-principals", noun: "service principal", idFlag: "id", idHelp: "the service principal's object ID or app (client) ID (required)"}
	adGroups = adKind{cmd: "group", path: "groups", noun: "group", idFlag: "group", idHelp: "the group's object ID or display name (required)"}
)

// itemPath is the path of the principal ref names, plus suffix.
func (k adKind) itemPath(ref, suffix string) string {
	return "/api/v1/" + k.path + "/" + url.PathEscape(ref) + suffix
}

// refFlag adds the required flag that names one principal of kind k.
func (k adKind) refFlag(cmd *cobra.Command, ref *string) {
	cmd.Flags().StringVar(ref, k.idFlag, "", k.idHelp)
	cmd.MarkFlagRequired(k.idFlag)
}

func (k adKind) showCmd() *cobra.Command {
	var ref string
	cmd := adCall(fmt.Sprintf("show --%s REF", k.idFlag), "Show a "+k.noun,
		func(*cobra.Command) (adRequest, error) {
			return adRequest{method: http.MethodGet, path: k.itemPath(ref, "")}, nil
		},
		printPrincipal)
	k.refFlag(cmd, &ref)
	return cmd
}

func (k adKind) listCmd() *cobra.Command {
	return adCall("list", "List the "+k.noun+"s",
		func(*cobra.Command) (adRequest, error) {
			return adRequest{method: http.MethodGet, path: "/api/v1/" + k.path}, nil
		},
		printed(principalTable))
}

func (k adKind) deleteCmd() *cobra.Command {
	var ref string
	cmd := adCall(fmt.Sprintf("delete --%s REF", k.idFlag), "Delete a "+k.noun+", with its memberships and role assignments",
		func(*cobra.Command) (adRequest, error) {
			return adRequest{method: http.MethodDelete, path: k.itemPath(ref, "")}, nil
		},
		said(func() string { return "deleted " + k.noun + " " + ref }))
	k.refFlag(cmd, &ref)
	return cmd
}

func newADUserCreateCmd() *cobra.Command {
	var (
		req          hub.UserRequest
		passwordFile string
	)
	cmd := adCall("create --display-name NAME --user-principal-name LOGIN", "Create a user; without --password-file a password is generated and printed once on stderr",
		func(cmd *cobra.Command) (adRequest, error) {
			if passwordFile != "" {
				pw, err := readSecret(cmd.InOrStdin(), passwordFile)
				if err != nil {
					return adRequest{}, err
				}
				if pw == "" {
					return adRequest{}, usageError{fmt.Errorf("--password-file %s is empty", passwordFile)}
				}
				req.Password = pw
			}
			return adRequest{method: http.MethodPost, path: "/api/v1/users", body: req}, nil
		},
		func(cmd *cobra.Command, out *outputFlag, v hub.CreatedUser) error {
			if v.Password != "" {
				fmt.Fprintf(cmd.ErrOrStderr(), "password of %s (shown once, not stored): %s\n", v.UserPrincipalName, v.Password)
			}
			return printPrincipal(cmd, out, v.PrincipalView)
		})
	f := cmd.Flags()
	f.StringVar(&req.DisplayName, "display-name", "", "the user's display name (required)")
	f.StringVar(&req.LoginName, "user-principal-name", "", "the login name, such as alice@example.com (required)")
	f.StringVar(&passwordFile, "password-file", "", "file holding the password; - reads it from stdin (default: generate one)")
	cmd.MarkFlagRequired("display-name")
	cmd.MarkFlagRequired("user-principal-name")
	return cmd
}

func newADUserUpdateCmd() *cobra.Command {
	var ref, displayName, passwordFile string
	cmd := adCall("update --id REF [--display-name NAME] [--password-file FILE|-]", "Rename a user or set its password (an empty password file removes it)",
		func(cmd *cobra.Command) (adRequest, error) {
			var up hub.UserUpdate
			if cmd.Flags().Changed("display-name") {
				up.DisplayName = &displayName
			}
			if passwordFile != "" {
				pw, err := readSecret(cmd.InOrStdin(), passwordFile)
				if err != nil {
					return adRequest{}, err
				}
				up.Password = &pw
			}
			if up.DisplayName == nil && up.Password == nil {
				return adRequest{}, usageError{errors.New("nothing to update: pass --display-name or --password-file")}
			}
			return adRequest{method: http.MethodPatch, path: adUsers.itemPath(ref, ""), body: up}, nil
		},
		printPrincipal)
	adUsers.refFlag(cmd, &ref)
	cmd.Flags().StringVar(&displayName, "display-name", "", "the new display name")
	cmd.Flags().StringVar(&passwordFile, "password-file", "", "file holding the new password; - reads it from stdin")
	return cmd
}

func newADSPCreateCmd() *cobra.Command {
	var req hub.ServicePrincipalRequest
	cmd := adCall("create --display-name NAME [--years N]", "Create a service principal with a first client secret (printed once, as password)",
		func(*cobra.Command) (adRequest, error) {
			return adRequest{method: http.MethodPost, path: "/api/v1/service-principals", body: req}, nil
		},
		func(cmd *cobra.Command, out *outputFlag, v hub.CreatedServicePrincipal) error {
			fmt.Fprintln(cmd.ErrOrStderr(), "the output includes a client secret (password): keep it safe, it is not shown again")
			return printed(func(w io.Writer, v hub.CreatedServicePrincipal) {
				fmt.Fprintf(w, "APP ID\tID\tDISPLAY NAME\tPASSWORD\tEXPIRES\n%s\t%s\t%s\t%s\t%s\n",
					v.AppID, v.ID, v.DisplayName, v.Password, v.ExpiresAt.UTC().Format(time.RFC3339))
			})(cmd, out, v)
		})
	cmd.Flags().StringVar(&req.DisplayName, "display-name", "", "the service principal's display name (required)")
	cmd.Flags().IntVar(&req.Years, "years", 1, fmt.Sprintf("how long the secret is valid, 1 to %d years", hub.MaxSecretYears))
	cmd.MarkFlagRequired("display-name")
	return cmd
}

func newADCredentialResetCmd() *cobra.Command {
	var (
		ref string
		req hub.SecretRequest
	)
	cmd := adCall("reset --id REF [--years N]", "Add a new client secret (printed once, as password); older secrets stay valid until deleted",
		func(*cobra.Command) (adRequest, error) {
			return adRequest{method: http.MethodPost, path: adSPs.itemPath(ref, "/secrets"), body: req}, nil
		},
		printed(func(w io.Writer, v hub.NewCredential) {
			fmt.Fprintf(w, "APP ID\tKEY ID\tPASSWORD\tEXPIRES\n%s\t%s\t%s\t%s\n", v.AppID, v.KeyID, v.Password, v.ExpiresAt.UTC().Format(time.RFC3339))
		}))
	adSPs.refFlag(cmd, &ref)
	cmd.Flags().IntVar(&req.Years, "years", 1, fmt.Sprintf("how long the secret is valid, 1 to %d years", hub.MaxSecretYears))
	cmd.Flags().StringVar(&req.Description, "display-name", "", "a description of the secret")
	return cmd
}

func newADCredentialListCmd() *cobra.Command {
	var ref string
	cmd := adCall("list --id REF", "List a service principal's client secrets (never the secrets themselves)",
		func(*cobra.Command) (adRequest, error) {
			return adRequest{method: http.MethodGet, path: adSPs.itemPath(ref, "/secrets")}, nil
		},
		printed(func(w io.Writer, vs []hub.SecretView) {
			fmt.Fprintf(w, "KEY ID\tDESCRIPTION\tCREATED\tEXPIRES\n")
			for _, v := range vs {
				fmt.Fprintf(w, "%s\t%s\t%s\t%s\n", v.ID, orDash(v.Description), v.CreatedAt.UTC().Format(time.RFC3339), v.ExpiresAt.UTC().Format(time.RFC3339))
			}
		}))
	adSPs.refFlag(cmd, &ref)
	return cmd
}

func newADCredentialDeleteCmd() *cobra.Command {
	var ref, keyID string
	cmd := adCall("delete --id REF --key-id KEY_ID", "Delete a client secret: it no longer signs in",
		func(*cobra.Command) (adRequest, error) {
			return adRequest{method: http.MethodDelete, path: adSPs.itemPath(ref, "/secrets/"+url.PathEscape(keyID))}, nil
		},
		said(func() string { return "deleted client secret " + keyID }))
	adSPs.refFlag(cmd, &ref)
	cmd.Flags().StringVar(&keyID, "key-id", "", "the secret's key ID, from tether ad sp credential list (required)")
	cmd.MarkFlagRequired("key-id")
	return cmd
}

func newADGroupCreateCmd() *cobra.Command {
	var req hub.GroupRequest
	cmd := adCall("create --display-name NAME", "Create a group",
		func(*cobra.Command) (adRequest, error) {
			return adRequest{method: http.MethodPost, path: "/api/v1/groups", body: req}, nil
		},
		printPrincipal)
	cmd.Flags().StringVar(&req.DisplayName, "display-name", "", "the group's display name (required)")
	cmd.MarkFlagRequired("display-name")
	return cmd
}

// memberFlags adds --group and, with member, the required --member-id.
func memberFlags(cmd *cobra.Command, group, member *string) {
	adGroups.refFlag(cmd, group)
	if member != nil {
		cmd.Flags().StringVar(member, "member-id", "", "the object ID of the user, service principal or group (required)")
		cmd.MarkFlagRequired("member-id")
	}
}

func newADMemberAddCmd() *cobra.Command {
	var group, member string
	cmd := adCall("add --group REF --member-id OBJECT_ID", "Add a member to a group",
		func(*cobra.Command) (adRequest, error) {
			return adRequest{method: http.MethodPost, path: adGroups.itemPath(group, "/members"), body: hub.MemberRequest{MemberID: member}}, nil
		},
		said(func() string { return "added " + member + " to group " + group }))
	memberFlags(cmd, &group, &member)
	return cmd
}

func newADMemberRemoveCmd() *cobra.Command {
	var group, member string
	cmd := adCall("remove --group REF --member-id OBJECT_ID", "Remove a member from a group",
		func(*cobra.Command) (adRequest, error) {
			return adRequest{method: http.MethodDelete, path: adGroups.itemPath(group, "/members/"+url.PathEscape(member))}, nil
		},
		said(func() string { return "removed " + member + " from group " + group }))
	memberFlags(cmd, &group, &member)
	return cmd
}

func newADMemberListCmd() *cobra.Command {
	var group string
	cmd := adCall("list --group REF", "List a group's direct members",
		func(*cobra.Command) (adRequest, error) {
			return adRequest{method: http.MethodGet, path: adGroups.itemPath(group, "/members")}, nil
		},
		printed(principalTable))
	memberFlags(cmd, &group, nil)
	return cmd
}

func newADMemberCheckCmd() *cobra.Command {
	var group, member string
	cmd := adCall("check --group REF --member-id OBJECT_ID", "Check whether a principal is a member of a group, directly or through nested groups",
		func(*cobra.Command) (adRequest, error) {
			return adRequest{method: http.MethodGet, path: adGroups.itemPath(group, "/members/"+url.PathEscape(member)+"/check")}, nil
		},
		printed(func(w io.Writer, v hub.CheckResult) { fmt.Fprintf(w, "VALUE\n%t\n", v.Value) }))
	memberFlags(cmd, &group, &member)
	return cmd
}

// printPrincipal shows one principal on stdout.
func printPrincipal(cmd *cobra.Command, out *outputFlag, v hub.PrincipalView) error {
	return out.print(cmd.OutOrStdout(), v, func(w *tabwriter.Writer) { principalTable(w, []hub.PrincipalView{v}) })
}

func principalTable(w io.Writer, vs []hub.PrincipalView) {
	fmt.Fprintf(w, "ID\tDISPLAY NAME\tTYPE\tUSER PRINCIPAL NAME / APP ID\tCREATED\n")
	for _, v := range vs {
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\n", v.ID, v.DisplayName, v.Type, signInName(v), v.CreatedAt.UTC().Format(time.RFC3339))
	}
}

func meTable(w io.Writer, v hub.MeView) {
	fmt.Fprintf(w, "ID\tDISPLAY NAME\tTYPE\tUSER PRINCIPAL NAME / APP ID\tISSUER\tGROUPS\n")
	fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%d\n", v.ID, orDash(v.DisplayName), v.Type, signInName(v.PrincipalView), v.Issuer, len(v.Groups))
}

// signInName is the name a principal signs in with: a user's login name,
// a service principal's app ID, else "-".
func signInName(v hub.PrincipalView) string {
	if v.UserPrincipalName != "" {
		return v.UserPrincipalName
	}
	return orDash(v.AppID)
}

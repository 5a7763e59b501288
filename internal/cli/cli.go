// Package cli is the command tree of the tether binary: flags, environment and
// output formats are read and written here and nowhere else.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"
)

// Version is the release this binary was built from, set with
// -ldflags "-X tether.dev/tether/internal/cli.Version=v1.2.3".
var Version = "v0.0.0-dev"

// usageError marks a mistake in how the command was called (exit code 2).
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

// ExitCode maps an error returned by Run to the process exit code:
// 2 for a usage mistake, 1 for anything else.
func ExitCode(err error) int {
	var u usageError
	if errors.As(err, &u) {
		return 2
	}
	return 1
}

// Run executes the command line args. args[0] is the program name, which
// decides whether we run as "tether", as the kubectl plugin
// "kubectl-tether", or as its completion helper "kubectl_complete-tether"
// (kubectl 1.26 and later run that with the words typed after
// "kubectl tether" to complete them: it is "tether __complete WORDS...").
func Run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	name := strings.TrimSuffix(filepath.Base(args[0]), ".exe")
	rest := args[1:]
	if name == kubectlCompleteName {
		name = kubectlPluginName
		rest = append([]string{cobra.ShellCompRequestCmd}, rest...)
	}
	root := newRoot(name, stdout, stderr)
	root.SetArgs(rest)
	root.SetIn(stdin)
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	_, err := root.ExecuteContextC(ctx)
	if err != nil && isCobraUsageError(err) {
		return usageError{err}
	}
	return err
}

// isCobraUsageError recognises the errors cobra itself returns for unknown
// commands and wrong argument counts, which carry no type of their own.
func isCobraUsageError(err error) bool {
	msg := err.Error()
	return strings.HasPrefix(msg, "unknown command") ||
		strings.HasPrefix(msg, "accepts ") ||
		strings.HasPrefix(msg, "requires ") ||
		strings.HasPrefix(msg, "required flag") ||
		strings.HasPrefix(msg, "invalid argument") ||
		strings.HasPrefix(msg, "if any flags in the group") ||
		strings.HasPrefix(msg, "at least one of the flags")
}

// The names the binary answers to as a kubectl plugin: kubectl runs
// kubectl-tether for "kubectl tether ...", and kubectl_complete-tether to
// complete its arguments.
const (
	kubectlPluginName   = "kubectl-tether"
	kubectlCompleteName = "kubectl_complete-tether"
)

// newRoot builds the command tree writing to stdout and stderr (set
// before the completion command is made: it keeps the writer it finds).
func newRoot(name string, stdout, stderr io.Writer) *cobra.Command {
	root := &cobra.Command{
		Use:   "tether",
		Short: "kubectl access to Kubernetes clusters that accept no inbound connection",
		Long: `kubectl access to Kubernetes clusters that accept no inbound connection.

Results go to stdout; progress, prompts, warnings and errors to stderr.
Exit codes: 0 success, 1 failure, 2 a usage mistake (unknown command or
flag, missing or invalid flag value). Colour is used on a terminal only, and
never when NO_COLOR is set. "tether completion --help" sets up shell
completion; docs/cli.md has the details.`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	if name == kubectlPluginName {
		// Usage lines say "kubectl tether ..." while the command keeps its
		// name, which completion scripts are generated for.
		root.Annotations = map[string]string{cobra.CommandDisplayNameAnnotation: "kubectl tether"}
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	registerOutputFlags(root)
	root.AddCommand(newVersionCmd(), newHubCmd(), newAgentCmd(), newClusterCmd(), newLocationsCmd(), newEndpointsCmd(), newProxyCmd(), newRoleCmd(), newADCmd(), newLoginCmd(), newLogoutCmd(), newGetTokenCmd(), newGetCredentialsCmd(), newAuditCmd(), newDoctorCmd())
	addCompletionCmd(root)
	refuseUnknownSubcommands(root)
	registerCompletions(root)
	return root
}

// refuseUnknownSubcommands makes every command that only groups others
// (cluster, role, ad ...) print its help when called alone, and refuse an
// argument that names none of its subcommands as a usage error (exit 2):
// cobra by default prints the help and succeeds, so "tether cluster lsit"
// would look like it worked.
func refuseUnknownSubcommands(c *cobra.Command) {
	for _, sub := range c.Commands() {
		refuseUnknownSubcommands(sub)
	}
	if c.Runnable() || !c.HasSubCommands() || !c.HasParent() {
		return
	}
	c.Args = cobra.ArbitraryArgs
	c.RunE = func(cmd *cobra.Command, args []string) error {
		if len(args) > 0 {
			return usageError{fmt.Errorf("unknown command %q for %q; see %s --help", args[0], cmd.CommandPath(), cmd.CommandPath())}
		}
		return cmd.Help()
	}
}

// Package cli is the command tree of the tether binary: flags, environment and
// output formats are read and written here and nowhere else.
package cli

import (
	"context"
	"errors"
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

// Run executes the command line args (args[0] is the program name, which
// decides whether we run as "tether" or as the kubectl plugin
// "kubectl-tether").
func Run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	root := newRoot(filepath.Base(args[0]))
	root.SetArgs(args[1:])
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
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
		strings.HasPrefix(msg, "required flag")
}

func newRoot(name string) *cobra.Command {
	use := "tether"
	if name == "kubectl-tether" {
		use = "kubectl tether"
	}
	root := &cobra.Command{
		Use:           use,
		Short:         "kubectl access to Kubernetes clusters that accept no inbound connection",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(newVersionCmd(), newHubCmd(), newAgentCmd(), newClusterCmd(), newLocationsCmd(), newEndpointsCmd(), newProxyCmd(), newRoleCmd(), newADCmd(), newLoginCmd(), newLogoutCmd(), newGetTokenCmd(), newGetCredentialsCmd(), newAuditCmd())
	return root
}

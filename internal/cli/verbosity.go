package cli

import (
	"fmt"
	"io"
	"log/slog"
	"os"

	"github.com/spf13/cobra"
	"golang.org/x/term"
)

// The root's persistent flags that shape what goes to the terminal:
//
//	-q, --quiet   no informational messages on stderr (results, warnings
//	              that need action, and errors stay)
//	-v, --v N     log verbosity, as kubectl's -v: 0 the default; 1 and up
//	              add debug logs (tether hub, agent and proxy log at Debug)
//
// They are read back from the command being run (cmd.Flags() holds the
// inherited persistent flags once parsed), so no command needs them passed
// in and there is no package state.
const (
	quietFlag     = "quiet"
	verbosityFlag = "v"
)

func registerOutputFlags(root *cobra.Command) {
	pf := root.PersistentFlags()
	pf.BoolP(quietFlag, "q", false, "print no informational messages on stderr; results and errors still print")
	pf.IntP(verbosityFlag, "v", 0, "log verbosity: 0 is the default; 1 or more adds debug logs (hub, agent, proxy)")
}

// quiet reports whether --quiet was given to the command being run.
func quiet(cmd *cobra.Command) bool {
	q, _ := cmd.Flags().GetBool(quietFlag) // absent (a command outside the tree) is false
	return q
}

// verbosity is the -v level given to the command being run.
func verbosity(cmd *cobra.Command) int {
	v, _ := cmd.Flags().GetInt(verbosityFlag)
	return v
}

// info writes an informational message (what was done, where a file went)
// to stderr, unless --quiet. Results go to stdout, and errors and warnings
// that ask for action are written whatever --quiet says.
func info(cmd *cobra.Command, format string, args ...any) {
	if quiet(cmd) {
		return
	}
	fmt.Fprintf(cmd.ErrOrStderr(), format, args...)
}

// logFormat is how a long-running command's logs are written.
type logFormat int

const (
	logJSON logFormat = iota // one JSON object a line, for log collectors (hub, agent)
	logText                  // key=value lines, for a person at a terminal (proxy)
)

// newLogger builds the slog logger of a long-running command (hub, agent,
// proxy) on its stderr: Info and up by default, Debug and up with -v 1 or
// more, Warn and up with --quiet.
func newLogger(cmd *cobra.Command, format logFormat) *slog.Logger {
	level := slog.LevelInfo
	switch {
	case verbosity(cmd) >= 1:
		level = slog.LevelDebug
	case quiet(cmd):
		level = slog.LevelWarn
	}
	opts := &slog.HandlerOptions{Level: level}
	if format == logText {
		return slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), opts))
	}
	return slog.New(slog.NewJSONHandler(cmd.ErrOrStderr(), opts))
}

// colorEnabled reports whether w, the command's stdout, gets colours: only
// a terminal does, and not when NO_COLOR is set to anything non-empty
// (https://no-color.org).
func colorEnabled(w io.Writer) bool {
	if os.Getenv("NO_COLOR") != "" {
		return false
	}
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// ANSI colours. Every code is five bytes, plain included, so that a
// tabwriter column whose cells are all wrapped (colourCell) stays aligned:
// tabwriter counts the codes' bytes as width, the same for every cell.
const (
	ansiGreen  = "\x1b[32m"
	ansiRed    = "\x1b[31m"
	ansiYellow = "\x1b[33m"
	ansiPlain  = "\x1b[39m" // the terminal's default colour
	ansiReset  = "\x1b[0m"
)

// colourCell wraps s in colour when on; off, it is s unchanged.
func colourCell(on bool, colour, s string) string {
	if !on {
		return s
	}
	return colour + s + ansiReset
}

// statusColour is the colour of a cluster's connectivity status: green
// Connected, yellow Connecting, red Offline and Expired.
func statusColour(status string) string {
	switch status {
	case "Connected":
		return ansiGreen
	case "Connecting":
		return ansiYellow
	case "Offline", "Expired":
		return ansiRed
	}
	return ansiPlain
}

// progressOut is where a command's progress goes: stderr, or nowhere with
// --quiet.
func progressOut(cmd *cobra.Command) io.Writer {
	if quiet(cmd) {
		return io.Discard
	}
	return cmd.ErrOrStderr()
}

package cli

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"text/tabwriter"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"tether.dev/tether/internal/hub"
)

func TestQuiet(t *testing.T) {
	t.Setenv("HOME", t.TempDir())
	tests := []struct {
		name       string
		args       []string
		wantStderr string
	}{
		{name: "informational message", args: []string{"tether", "logout"}, wantStderr: "removed 0 cached sign-in(s)\n"},
		{name: "--quiet", args: []string{"tether", "logout", "--quiet"}, wantStderr: ""},
		{name: "-q before the command", args: []string{"tether", "-q", "logout"}, wantStderr: ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			if err := Run(context.Background(), tt.args, nil, &out, &errOut); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.wantStderr, errOut.String()); diff != "" {
				t.Errorf("stderr (-want +got):\n%s", diff)
			}
			if out.Len() != 0 {
				t.Errorf("stdout %q, want nothing", out.String())
			}
		})
	}
}

func TestNewLogger(t *testing.T) {
	tests := []struct {
		name      string
		args      []string
		format    logFormat
		wantLevel slog.Level // the lowest level logged
		wantJSON  bool
	}{
		{name: "default", format: logJSON, wantLevel: slog.LevelInfo, wantJSON: true},
		{name: "-v 1", args: []string{"-v", "1"}, format: logJSON, wantLevel: slog.LevelDebug, wantJSON: true},
		{name: "--v=4", args: []string{"--v=4"}, format: logText, wantLevel: slog.LevelDebug},
		{name: "--quiet", args: []string{"--quiet"}, format: logText, wantLevel: slog.LevelWarn},
		{name: "-v wins over --quiet", args: []string{"-q", "-v", "2"}, format: logJSON, wantLevel: slog.LevelDebug, wantJSON: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cmd := &cobra.Command{Use: "x"}
			registerOutputFlags(cmd)
			if err := cmd.ParseFlags(tt.args); err != nil {
				t.Fatal(err)
			}
			var errOut bytes.Buffer
			cmd.SetErr(&errOut)
			logger := newLogger(cmd, tt.format)
			for _, l := range []slog.Level{slog.LevelDebug, slog.LevelInfo, slog.LevelWarn, slog.LevelError} {
				if got, want := logger.Enabled(context.Background(), l), l >= tt.wantLevel; got != want {
					t.Errorf("level %s enabled: %t, want %t", l, got, want)
				}
			}
			logger.Error("boom", "err", "x")
			if got := strings.HasPrefix(errOut.String(), "{"); got != tt.wantJSON {
				t.Errorf("log line %q: JSON %t, want %t", errOut.String(), got, tt.wantJSON)
			}
		})
	}
}

// openPTY opens a pseudo-terminal: the terminal side, which the command
// writes to as its stdout, and the side that reads what it wrote.
func openPTY(t *testing.T) (tty, reader *os.File) {
	t.Helper()
	ptmx, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("no pseudo-terminals here: %v", err)
	}
	t.Cleanup(func() { ptmx.Close() })
	if err := unix.IoctlSetPointerInt(int(ptmx.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		t.Skipf("unlock the pseudo-terminal: %v", err)
	}
	n, err := unix.IoctlGetInt(int(ptmx.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Skipf("name the pseudo-terminal: %v", err)
	}
	tty, err = os.OpenFile("/dev/pts/"+strconv.Itoa(n), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("open the pseudo-terminal: %v", err)
	}
	t.Cleanup(func() { tty.Close() })
	// Raw mode: what is written arrives as written (no \n to \r\n).
	termios, err := unix.IoctlGetTermios(int(tty.Fd()), unix.TCGETS)
	if err != nil {
		t.Fatal(err)
	}
	termios.Oflag &^= unix.OPOST
	if err := unix.IoctlSetTermios(int(tty.Fd()), unix.TCSETS, termios); err != nil {
		t.Fatal(err)
	}
	return tty, ptmx
}

func TestColorEnabled(t *testing.T) {
	tty, _ := openPTY(t)
	file, err := os.Create(t.TempDir() + "/out")
	if err != nil {
		t.Fatal(err)
	}
	defer file.Close()
	tests := []struct {
		name    string
		w       io.Writer
		noColor string
		want    bool
	}{
		{name: "a terminal", w: tty, want: true},
		{name: "a terminal with NO_COLOR", w: tty, noColor: "1", want: false},
		{name: "a file", w: file, want: false},
		{name: "a buffer", w: &bytes.Buffer{}, want: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("NO_COLOR", tt.noColor)
			if got := colorEnabled(tt.w); got != tt.want {
				t.Errorf("colorEnabled = %t, want %t", got, tt.want)
			}
		})
	}
}

// ansi matches the colour codes.
var ansi = regexp.MustCompile("\x1b\\[[0-9;]*m")

// TestClusterTableColour checks that colour changes only the status cells'
// colour: without the codes the table is the plain one, columns aligned.
func TestClusterTableColour(t *testing.T) {
	seen := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	vs := []hub.ClusterView{
		{Name: "edge-1", Group: "prod", Location: "eastus2", Mode: "kubernetes-rbac", Status: hub.StatusConnected, AgentVersion: "v1.2.0", KubernetesVersion: "v1.31.0", NodeCount: 3, LastSeenAt: seen},
		{Name: "lab", Group: "dev", Location: "eastus2", Mode: "hub-rbac", Status: hub.StatusOffline, NodeCount: -1, LastSeenAt: seen},
		{Name: "new", Group: "dev", Location: "eastus2", Mode: "hub-rbac", Status: hub.StatusConnecting, NodeCount: -1},
	}
	table := func(colour bool) string {
		var b bytes.Buffer
		o := outputFlag{format: "table"}
		if err := o.print(&b, vs, func(w *tabwriter.Writer) { clusterTable(w, vs, colour) }); err != nil {
			t.Fatal(err)
		}
		return b.String()
	}
	plain, coloured := table(false), table(true)
	if diff := cmp.Diff(plain, ansi.ReplaceAllString(coloured, "")); diff != "" {
		t.Errorf("coloured table without its codes (-want +got):\n%s", diff)
	}
	for _, want := range []string{"\x1b[32mConnected\x1b[0m", "\x1b[31mOffline\x1b[0m", "\x1b[33mConnecting\x1b[0m"} {
		if !strings.Contains(coloured, want) {
			t.Errorf("coloured table lacks %q:\n%s", want, coloured)
		}
	}
	if ansi.MatchString(plain) {
		t.Errorf("plain table has colour codes:\n%q", plain)
	}
}

// TestColourOnATerminal runs tether cluster list with a terminal for
// stdout: the status is coloured; with NO_COLOR it is not.
func TestColourOnATerminal(t *testing.T) {
	th := fleetHub(t)
	th.admin(t, "", "cluster", "create", "-g", "prod", "-n", "edge-1")
	tests := []struct {
		name    string
		noColor string
		want    string
	}{
		{name: "colour", want: "\x1b[33mConnecting\x1b[0m"},
		{name: "NO_COLOR", noColor: "yes", want: " Connecting "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("NO_COLOR", tt.noColor)
			tty, reader := openPTY(t)
			var errOut bytes.Buffer
			args := []string{"tether", "cluster", "list", "--hub", th.url, "--hub-ca", th.ca, "--admin-token-file", th.tokenFile}
			if err := Run(context.Background(), args, nil, tty, &errOut); err != nil {
				t.Fatalf("cluster list: %v\n%s", err, errOut.String())
			}
			if err := reader.SetReadDeadline(time.Now().Add(10 * time.Second)); err != nil {
				t.Skipf("the pseudo-terminal cannot time out reads: %v", err)
			}
			var got []byte
			buf := make([]byte, 4096)
			for !bytes.Contains(got, []byte("never\n")) {
				n, err := reader.Read(buf)
				if err != nil {
					t.Fatalf("read the terminal: %v; so far %q", err, got)
				}
				got = append(got, buf[:n]...)
			}
			if !strings.Contains(string(got), tt.want) {
				t.Errorf("the terminal shows %q; want %q in it", got, tt.want)
			}
			if tt.noColor != "" && ansi.Match(got) {
				t.Errorf("colour codes with NO_COLOR: %q", got)
			}
		})
	}
}

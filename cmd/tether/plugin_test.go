package main

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// buildPlugin builds the tether binary into a directory with the names
// the kubectl plugin is installed under (kubectl-tether and
// kubectl_complete-tether, links to it) and returns the directory.
func buildPlugin(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	bin := filepath.Join(dir, "tether")
	build := exec.Command("go", "build", "-o", bin, ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	for _, name := range []string{"kubectl-tether", "kubectl_complete-tether"} {
		if err := os.Symlink("tether", filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// run runs a command with PATH starting at dir and no hub, and returns
// its stdout, stderr and exit code.
func run(t *testing.T, dir string, name string, args ...string) (string, string, int) {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), "PATH="+dir+string(os.PathListSeparator)+os.Getenv("PATH"), "TETHER_HUB=", "HOME="+t.TempDir())
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		return out.String(), errOut.String(), exit.ExitCode()
	case err != nil:
		t.Fatalf("%s: %v", name, err)
	}
	return out.String(), errOut.String(), 0
}

func TestKubectlPlugin(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	dir := buildPlugin(t)
	version, _, _ := run(t, dir, filepath.Join(dir, "tether"), "version")
	if !strings.HasPrefix(version, "v") {
		t.Fatalf("tether version printed %q, want a version", version)
	}
	tests := []struct {
		name     string
		cmd      string
		args     []string
		wantOut  string
		wantErr  string // in stderr
		wantCode int
	}{
		{name: "as kubectl-tether", cmd: "kubectl-tether", args: []string{"version"}, wantOut: version},
		{name: "usage says kubectl tether", cmd: "kubectl-tether", args: []string{"cluster", "show", "--help"}, wantOut: "  kubectl tether cluster show -g GROUP -n NAME [flags]\n"},
		{name: "completion helper", cmd: "kubectl_complete-tether", args: []string{"cluster", "list", "-o", ""}, wantOut: "table\njson\nyaml\ntsv\n:4\n"},
		{name: "completion helper completes commands", cmd: "kubectl_complete-tether", args: []string{"doc"},
			wantOut: "doctor\tCheck the way to the hub, the sign-in, and with -g and -n a cluster's tunnel, one line per check\n:4\n"},
		{name: "usage mistake", cmd: "kubectl-tether", args: []string{"cluster", "list", "-o", "xml"}, wantErr: "error: --output \"xml\"", wantCode: 2},
		{name: "failure", cmd: "kubectl-tether", args: []string{"doctor"}, wantOut: "FAIL  hub url  no hub URL", wantErr: "error: 1 of 8 checks failed\n", wantCode: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, errOut, code := run(t, dir, filepath.Join(dir, tt.cmd), tt.args...)
			if diff := cmp.Diff(tt.wantCode, code); diff != "" {
				t.Errorf("exit code (-want +got):\n%s\nstderr: %s", diff, errOut)
			}
			if !strings.Contains(out, tt.wantOut) {
				t.Errorf("stdout %q, want it to hold %q", out, tt.wantOut)
			}
			if !strings.Contains(errOut, tt.wantErr) {
				t.Errorf("stderr %q, want it to hold %q", errOut, tt.wantErr)
			}
		})
	}

	// kubectl finds the plugin on PATH, and (1.26 and later) asks the
	// completion helper to complete its arguments.
	if _, err := exec.LookPath("kubectl"); err != nil {
		t.Skip("no kubectl on PATH")
	}
	out, errOut, code := run(t, dir, "kubectl", "tether", "version")
	if diff := cmp.Diff(version, out); diff != "" || code != 0 {
		t.Errorf("kubectl tether version: exit code %d, stdout (-want +got):\n%s\nstderr: %s", code, diff, errOut)
	}
	out, errOut, code = run(t, dir, "kubectl", "__complete", "tether", "cluster", "list", "-o", "")
	if diff := cmp.Diff("table\njson\nyaml\ntsv\n:4\n", out); diff != "" || code != 0 {
		t.Errorf("kubectl __complete tether: exit code %d, stdout (-want +got):\n%s\nstderr: %s", code, diff, errOut)
	}
}

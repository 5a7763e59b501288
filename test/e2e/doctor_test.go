package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"tether.dev/tether/test/testenv"
)

// TestDoctor runs tether doctor as a signed-in service principal against
// the real hub and a cluster whose real agent is connected: every check
// passes, and the tunnel check reaches the rig's kube-apiserver, as
// kubectl would.
func TestDoctor(t *testing.T) {
	e := getEnv(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if err := e.WaitConnected(ctx, true, time.Minute); err != nil {
		t.Fatal(err)
	}
	out, err := e.TetherCmd(ctx, "ad", "sp", "create", "--display-name", "doctor", "-o", "json").Output()
	if err != nil {
		t.Fatalf("ad sp create: %v", testenv.ExitDetail(err))
	}
	var sp struct{ ID, AppID, Password string }
	if err := json.Unmarshal(out, &sp); err != nil {
		t.Fatal(err)
	}
	scope := "/groups/" + e.Group + "/clusters/" + e.Name
	if out, err := e.TetherCmd(ctx, "role", "assignment", "create", "--role", "Cluster User", "--assignee", sp.ID, "--assignee-type", "servicePrincipal", "--scope", scope).CombinedOutput(); err != nil {
		t.Fatalf("role assignment create: %v\n%s", err, out)
	}
	home := t.TempDir()
	login := e.UserCmd(ctx, home, "login", "--issuer", "embedded", "--service-principal", "-u", sp.AppID, "--password-file", "-")
	login.Stdin = strings.NewReader(sp.Password)
	if out, err := login.CombinedOutput(); err != nil {
		t.Fatalf("service principal login: %v\n%s", err, out)
	}
	doctor := func(args ...string) *exec.Cmd {
		return e.UserCmd(ctx, home, append([]string{"doctor", "-u", sp.AppID, "--issuer", "embedded", "-g", e.Group, "-n", e.Name}, args...)...)
	}

	out, err = doctor("-o", "json").Output()
	if err != nil {
		t.Fatalf("tether doctor -o json: %v\n%s", testenv.ExitDetail(err), out)
	}
	var checks []struct {
		Name, Status, Detail, Fix string
		LatencyMS                 *int64
	}
	if err := json.Unmarshal(out, &checks); err != nil {
		t.Fatalf("doctor -o json: %v\n%s", err, out)
	}
	var got []string
	details := map[string]string{}
	for _, c := range checks {
		got = append(got, c.Name+" "+c.Status)
		details[c.Name] = c.Detail
	}
	want := []string{"hub url ok", "dns ok", "tcp ok", "tls ok", "hub api ok", "clock ok", "version ok", "sign-in ok", "cluster ok", "agent ok", "tunnel ok"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("checks (-want +got):\n%s\n%s", diff, out)
	}
	for name, words := range map[string]string{
		"sign-in": `signed in as "doctor" (servicePrincipal ` + sp.ID + ")",
		"cluster": e.Group + "/" + e.Name + " is Connected",
		"agent":   "Kubernetes v1.",
		"tunnel":  "GET /version through the tunnel answered in ",
	} {
		if !strings.Contains(details[name], words) {
			t.Errorf("check %s says %q, want it to say %q", name, details[name], words)
		}
	}
	if c := checks[len(checks)-1]; c.LatencyMS == nil || !strings.Contains(c.Detail, ": Kubernetes v1.") {
		t.Errorf("the tunnel check has no latency or no API server version: %+v", c)
	}

	// The table: one line a check, and exit code 0.
	var stderr strings.Builder
	cmd := doctor()
	cmd.Stderr = &stderr
	out, err = cmd.Output()
	if err != nil {
		t.Fatalf("tether doctor: %v\n%s\n%s", err, out, stderr.String())
	}
	t.Logf("tether doctor:\n%s", out)
	lines := strings.Split(strings.TrimSuffix(string(out), "\n"), "\n")
	if len(lines) != len(want) || !strings.HasPrefix(lines[len(lines)-1], "ok    tunnel   GET /version through the tunnel answered in ") {
		t.Errorf("doctor printed:\n%s\nwant %d lines, the last the tunnel's", out, len(want))
	}
	if stderr.Len() != 0 {
		t.Errorf("doctor wrote to stderr: %s", stderr.String())
	}

	// A cluster that is registered but has no agent: the cluster check
	// fails with what to do, the tunnel is not tried, the exit code is 1.
	if out, err := e.TetherCmd(ctx, "cluster", "create", "-g", e.Group, "-n", "doctor-no-agent").CombinedOutput(); err != nil {
		t.Fatalf("cluster create: %v\n%s", err, out)
	}
	t.Cleanup(func() {
		if out, err := e.TetherCmd(context.Background(), "cluster", "delete", "-g", e.Group, "-n", "doctor-no-agent", "--yes").CombinedOutput(); err != nil {
			t.Errorf("cluster delete: %v\n%s", err, out)
		}
	})
	if out, err := e.TetherCmd(ctx, "role", "assignment", "create", "--role", "Cluster User", "--assignee", sp.ID, "--assignee-type", "servicePrincipal", "--scope", "/groups/"+e.Group+"/clusters/doctor-no-agent").CombinedOutput(); err != nil {
		t.Fatalf("role assignment create: %v\n%s", err, out)
	}
	out, err = e.UserCmd(ctx, home, "doctor", "-u", sp.AppID, "--issuer", "embedded", "-g", e.Group, "-n", "doctor-no-agent").Output()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 1 {
		t.Errorf("doctor of a cluster without agent: %v, want exit code 1\n%s", err, out)
	}
	for _, line := range []string{
		"FAIL  cluster  " + e.Group + "/doctor-no-agent is Connecting",
		"skip  tunnel   skipped: needs a sign-in and a connected cluster",
	} {
		if !strings.Contains(string(out), line) {
			t.Errorf("doctor of a cluster without agent printed:\n%s\nwant a line starting %q", out, line)
		}
	}
}

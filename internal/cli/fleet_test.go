package cli

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"tether.dev/tether/internal/hub"
)

// fleetHub is a hub with two locations and a version.
func fleetHub(t *testing.T) testHub {
	return startHubConfig(t, func(c *hub.Config) {
		c.Version = "v9.9.0"
		c.Locations = []hub.Location{
			{Name: "East US 2", URL: "https://eastus2.hub.example.com", Endpoints: []string{"eastus2.hub.example.com:443", "relay.eastus2.hub.example.com:443"}},
			{Name: "West Europe", URL: "https://westeurope.hub.example.com:8443"},
		}
	})
}

// asAdmin is args with the admin token.
func (th testHub) asAdmin(args ...string) []string {
	return append(args, "--admin-token-file", th.tokenFile)
}

// fails runs tether and checks that it fails with the exit code and an
// error that mentions msg.
func (th testHub) fails(t *testing.T, code int, msg string, args ...string) {
	t.Helper()
	_, _, err := th.run(t, "", args...)
	if err == nil {
		t.Fatalf("tether %s succeeded, want exit code %d", strings.Join(args, " "), code)
	}
	if got := ExitCode(err); got != code || !strings.Contains(err.Error(), msg) {
		t.Errorf("tether %s: exit code %d, error %q; want %d and an error mentioning %q", strings.Join(args, " "), got, err, code, msg)
	}
}

func TestClusterLifecycleCommands(t *testing.T) {
	th := fleetHub(t)
	th.admin(t, "", "cluster", "create", "-g", "prod", "-n", "edge-1", "-l", "East US 2")
	th.admin(t, "", "cluster", "create", "-g", "dev", "-n", "lab")

	out, _ := th.admin(t, "", "cluster", "list")
	want := `NAME    GROUP  LOCATION  MODE             STATUS      AGENT  KUBERNETES  NODES  LAST SEEN
lab     dev    eastus2   kubernetes-rbac  Connecting  -      -           -      never
edge-1  prod   eastus2   kubernetes-rbac  Connecting  -      -           -      never
`
	if diff := cmp.Diff(want, out); diff != "" {
		t.Errorf("cluster list (-want +got):\n%s", diff)
	}
	out, _ = th.admin(t, "", "cluster", "list", "-g", "prod", "--query", "[].{name: name, status: status, nodes: nodeCount}", "-o", "tsv")
	if diff := cmp.Diff("edge-1\tConnecting\t-1\n", out); diff != "" {
		t.Errorf("cluster list -g prod (-want +got):\n%s", diff)
	}
	out, _ = th.admin(t, "", "cluster", "show", "-g", "prod", "-n", "edge-1", "-o", "json")
	v := decodeOut[map[string]any](t, out)
	for key, want := range map[string]any{"id": "/groups/prod/clusters/edge-1", "location": "eastus2", "status": "Connecting", "nodeCount": -1.0, "connected": false} {
		if v[key] != want {
			t.Errorf("show: %s = %v, want %v", key, v[key], want)
		}
	}
	if _, ok := v["lastError"]; ok {
		t.Errorf("show: lastError without an error: %s", out)
	}

	th.fails(t, 1, `location "Mars" is not one of this hub's: eastus2, westeurope`, th.asAdmin("cluster", "create", "-g", "prod", "-n", "x", "-l", "Mars")...)
	th.fails(t, 2, "--group", th.asAdmin("cluster", "list", "-g", "Prod_1")...)
	th.fails(t, 2, "pass --yes", th.asAdmin("cluster", "delete", "-g", "prod", "-n", "edge-1")...)
	th.fails(t, 2, "--name", th.asAdmin("cluster", "delete", "-g", "prod", "-n", "Edge_1", "--yes")...)
	th.fails(t, 1, `no cluster "nope" in group "prod"`, th.asAdmin("cluster", "delete", "-g", "prod", "-n", "nope", "--yes")...)

	_, errOut := th.admin(t, "", "cluster", "delete", "-g", "prod", "-n", "edge-1", "--yes")
	if !strings.Contains(errOut, "deleted cluster prod/edge-1 from the hub; its agent's key is revoked") {
		t.Errorf("delete said %q", errOut)
	}
	th.fails(t, 1, `no cluster "edge-1"`, th.asAdmin("cluster", "show", "-g", "prod", "-n", "edge-1")...)
}

func TestLocationCommands(t *testing.T) {
	th := fleetHub(t)
	// No admin token or sign-in: anyone may read the locations.
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"locations table", []string{"locations", "list"}, `NAME         ID          URL
East US 2    eastus2     https://eastus2.hub.example.com
West Europe  westeurope  https://westeurope.hub.example.com:8443
`},
		{"endpoints by name", []string{"endpoints", "--location", "East US 2"}, "ENDPOINT\neastus2.hub.example.com:443\nrelay.eastus2.hub.example.com:443\n"},
		{"endpoints by ID, tsv", []string{"endpoints", "-l", "westeurope", "-o", "tsv"}, "westeurope.hub.example.com:8443\n"},
		{"endpoints, json", []string{"endpoints", "-l", "eastus2", "-o", "json"}, "[\n  \"eastus2.hub.example.com:443\",\n  \"relay.eastus2.hub.example.com:443\"\n]\n"},
		{"locations, query", []string{"locations", "list", "--query", "[?id=='westeurope'].url", "-o", "tsv"}, "https://westeurope.hub.example.com:8443\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, errOut, err := th.run(t, "", tt.args...)
			if err != nil {
				t.Fatalf("%v\n%s", err, errOut)
			}
			if diff := cmp.Diff(tt.want, out); diff != "" {
				t.Errorf("stdout (-want +got):\n%s", diff)
			}
		})
	}
	th.fails(t, 1, `no location "Mars" on this hub; valid locations: eastus2, westeurope`, "endpoints", "--location", "Mars")
	th.fails(t, 2, "location", "endpoints")
}

func TestVersionCommand(t *testing.T) {
	th := fleetHub(t)
	th.admin(t, "", "cluster", "create", "-g", "prod", "-n", "edge-1")

	out, errOut := th.admin(t, "", "version", "-o", "json")
	if diff := cmp.Diff(versions{Client: Version, Hub: "v9.9.0"}, decodeOut[versions](t, out)); diff != "" {
		t.Errorf("version (-want +got):\n%s", diff)
	}
	if !strings.Contains(errOut, "upgrade this client to v9.9") {
		t.Errorf("stderr %q: want a skew warning saying to upgrade the client", errOut)
	}
	out, errOut = th.admin(t, "", "version", "-g", "prod", "-n", "edge-1")
	if diff := cmp.Diff("Client Version:  "+Version+"\nHub Version:     v9.9.0\n", out); diff != "" {
		t.Errorf("version table (-want +got):\n%s", diff)
	}
	if !strings.Contains(errOut, "the agent of cluster prod/edge-1 has not reported its version (status Connecting)") {
		t.Errorf("stderr %q: want a note that the agent has not reported", errOut)
	}
	th.fails(t, 2, "-g and -n", th.asAdmin("version", "-g", "prod")...)
	th.fails(t, 1, `no cluster "nope"`, th.asAdmin("version", "-g", "prod", "-n", "nope")...)

	// A hub that does not answer: the client's version, and a warning.
	var stdout, stderr bytes.Buffer
	err := Run(context.Background(), []string{"tether", "version", "--hub", "https://127.0.0.1:1"}, strings.NewReader(""), &stdout, &stderr)
	if err != nil || stdout.String() != Version+"\n" || !strings.Contains(stderr.String(), "the hub's version is unknown") {
		t.Errorf("version with an unreachable hub: %v, stdout %q, stderr %q", err, stdout.String(), stderr.String())
	}
}

func TestSkewWarnings(t *testing.T) {
	tests := []struct {
		name string
		in   versions
		want []string
	}{
		{name: "all alike", in: versions{Client: "v1.2.3", Hub: "v1.2.0", Agent: "v1.2.9"}},
		{name: "client only", in: versions{Client: "v1.2.3"}},
		{name: "development builds are not compared", in: versions{Client: "(devel)", Hub: "v1.4.0", Agent: "unknown"}},
		{name: "old client", in: versions{Client: "v1.2.3", Hub: "v1.4.0"},
			want: []string{"version skew: this client is v1.2.3 and the hub is v1.4.0; upgrade this client to v1.4"}},
		{name: "old hub", in: versions{Client: "v2.0.0", Hub: "v1.4.0", Agent: "v1.4.1"},
			want: []string{"version skew: this client is v2.0.0 and the hub is v1.4.0; upgrade the hub to v2.0"}},
		{name: "old agent", in: versions{Client: "v1.4.0", Hub: "v1.4.0", Agent: "v1.3.2-dirty"},
			want: []string{"version skew: the hub is v1.4.0 and the agent of cluster prod/edge-1 is v1.3.2-dirty; upgrade the agent of cluster prod/edge-1 to v1.4"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, skewWarnings(tt.in, "prod/edge-1")); diff != "" {
				t.Errorf("warnings (-want +got):\n%s", diff)
			}
		})
	}
}

func TestLoadLocations(t *testing.T) {
	dir := t.TempDir()
	file := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	tests := []struct {
		name    string
		path    string
		want    []hub.Location
		wantErr string
	}{
		{name: "no file: local at the hub's URL", want: []hub.Location{{Name: "local", URL: "https://hub.example.com:8443"}}},
		{name: "a file", path: file("ok.json", `[{"name": "East US 2", "url": "https://e.example.com", "endpoints": ["e.example.com:443"]}]`),
			want: []hub.Location{{Name: "East US 2", URL: "https://e.example.com", Endpoints: []string{"e.example.com:443"}}}},
		{name: "unknown field", path: file("typo.json", `[{"name": "x", "URL": "https://e.example.com", "endpoint": []}]`), wantErr: `unknown field "endpoint"`},
		{name: "empty list", path: file("empty.json", `[]`), wantErr: "the list is empty"},
		{name: "missing file", path: filepath.Join(dir, "nope.json"), wantErr: "read --locations"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := loadLocations(tt.path, "https://hub.example.com:8443")
			if (err == nil) != (tt.wantErr == "") || (err != nil && !strings.Contains(err.Error(), tt.wantErr)) {
				t.Fatalf("error %v, want one mentioning %q", err, tt.wantErr)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("locations (-want +got):\n%s", diff)
			}
		})
	}
}

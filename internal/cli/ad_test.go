package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/pem"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"tether.dev/tether/internal/hub"
	"tether.dev/tether/internal/identity"
	"tether.dev/tether/internal/store/sqlite"
)

// testHub is a real hub over SQLite, served with TLS, and the flags that
// reach it with its admin token.
type testHub struct {
	url, ca, tokenFile string
}

func startHub(t *testing.T) testHub { return startHubConfig(t, func(*hub.Config) {}) }

// startHubConfig is startHub with the hub's Config changed by edit.
func startHubConfig(t *testing.T, edit func(*hub.Config)) testHub {
	t.Helper()
	dir := t.TempDir()
	st, err := sqlite.Open(context.Background(), filepath.Join(dir, "hub.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	key, err := identity.GenerateAssertionKey()
	if err != nil {
		t.Fatal(err)
	}
	const token = "tat_cli-test"
	cfg := hub.Config{
		Store: st, AdminTokenHash: hub.HashToken(token), HubID: "cli-test", AssertionKey: key, Replica: "test",
		Logins: []hub.LoginConfig{{Issuer: "https://issuer.invalid", ClientID: "tether-cli", Audience: "https://hub.invalid"}},
	}
	edit(&cfg)
	h, err := hub.New(cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewTLSServer(h.Handler())
	t.Cleanup(srv.Close)
	th := testHub{url: srv.URL, ca: filepath.Join(dir, "ca.pem"), tokenFile: filepath.Join(dir, "admin.token")}
	caPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	if err := os.WriteFile(th.ca, caPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(th.tokenFile, []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// No sign-in is cached for this test, whatever the machine has.
	t.Setenv("HOME", t.TempDir())
	t.Setenv("TETHER_ADMIN_TOKEN_FILE", "")
	return th
}

// run runs tether with args against the hub, with stdin, and returns
// stdout, stderr and the error.
func (th testHub) run(t *testing.T, stdin string, args ...string) (string, string, error) {
	t.Helper()
	var out, errOut bytes.Buffer
	args = append([]string{"tether"}, append(args, "--hub", th.url, "--hub-ca", th.ca)...)
	err := Run(context.Background(), args, strings.NewReader(stdin), &out, &errOut)
	return out.String(), errOut.String(), err
}

// admin runs tether with the admin token and fails the test on error.
func (th testHub) admin(t *testing.T, stdin string, args ...string) (stdout, stderr string) {
	t.Helper()
	stdout, stderr, err := th.run(t, stdin, append(args, "--admin-token-file", th.tokenFile)...)
	if err != nil {
		t.Fatalf("tether %s: %v\n%s", strings.Join(args, " "), err, stderr)
	}
	return stdout, stderr
}

func decodeOut[T any](t *testing.T, s string) T {
	t.Helper()
	var v T
	if err := json.Unmarshal([]byte(s), &v); err != nil {
		t.Fatalf("output is not the JSON expected: %v\n%s", err, s)
	}
	return v
}

func TestADCommands(t *testing.T) {
	th := startHub(t)

	out, errOut := th.admin(t, "", "ad", "user", "create", "--display-name", "Alice", "--user-principal-name", "alice@example.com", "-o", "json")
	alice := decodeOut[map[string]any](t, out)
	if _, ok := alice["password"]; ok || alice["userPrincipalName"] != "alice@example.com" {
		t.Errorf("create output %s: want the user, without its password", out)
	}
	if !strings.Contains(errOut, "password of alice@example.com (shown once") {
		t.Errorf("stderr %q: want the generated password", errOut)
	}
	aliceID := alice["id"].(string)

	out, _ = th.admin(t, "", "ad", "user", "show", "--id", "ALICE@example.com", "-o", "json")
	if got := decodeOut[hub.PrincipalView](t, out); got.ID != aliceID {
		t.Errorf("show by login name: %s, want %s", got.ID, aliceID)
	}
	out, _ = th.admin(t, "a new password for alice\n", "ad", "user", "update", "--id", aliceID, "--display-name", "Alice L", "--password-file", "-", "-o", "json")
	if got := decodeOut[hub.PrincipalView](t, out); got.DisplayName != "Alice L" {
		t.Errorf("update: %+v", got)
	}

	out, _ = th.admin(t, "", "ad", "group", "create", "--display-name", "Ops", "-o", "json")
	ops := decodeOut[hub.PrincipalView](t, out)
	_, errOut = th.admin(t, "", "ad", "group", "member", "add", "--group", "Ops", "--member-id", aliceID)
	if !strings.Contains(errOut, "added "+aliceID) {
		t.Errorf("member add said %q", errOut)
	}
	out, _ = th.admin(t, "", "ad", "group", "member", "check", "--group", ops.ID, "--member-id", aliceID, "-o", "json")
	if diff := cmp.Diff(hub.CheckResult{Value: true}, decodeOut[hub.CheckResult](t, out)); diff != "" {
		t.Errorf("member check (-want +got):\n%s", diff)
	}
	out, _ = th.admin(t, "", "ad", "group", "member", "list", "--group", "ops")
	if !strings.Contains(out, aliceID) || !strings.HasPrefix(out, "ID ") {
		t.Errorf("member list table:\n%s", out)
	}

	out, errOut = th.admin(t, "", "ad", "sp", "create", "--display-name", "deployer", "--years", "2", "-o", "json")
	sp := decodeOut[hub.CreatedServicePrincipal](t, out)
	if sp.AppID == "" || sp.ID == "" || !strings.HasPrefix(sp.Password, "tcs_") || !strings.Contains(errOut, "not shown again") {
		t.Errorf("sp create: %s / %s", out, errOut)
	}
	out, _ = th.admin(t, "", "ad", "sp", "credential", "reset", "--id", sp.AppID, "-o", "json")
	second := decodeOut[hub.NewCredential](t, out)
	th.admin(t, "", "ad", "sp", "credential", "delete", "--id", sp.ID, "--key-id", sp.KeyID)
	out, _ = th.admin(t, "", "ad", "sp", "credential", "list", "--id", sp.AppID, "-o", "json")
	if got := decodeOut[[]hub.SecretView](t, out); len(got) != 1 || got[0].ID != second.KeyID || strings.Contains(out, "tcs_") {
		t.Errorf("credential list after reset and delete: %s", out)
	}

	th.admin(t, "", "ad", "user", "delete", "--id", "alice@example.com")
	out, _ = th.admin(t, "", "ad", "user", "list", "-o", "json")
	if got := decodeOut[[]hub.PrincipalView](t, out); len(got) != 0 {
		t.Errorf("users after delete: %s", out)
	}
	if _, _, err := th.run(t, "", "ad", "user", "show", "--id", aliceID, "--admin-token-file", th.tokenFile); err == nil || !strings.Contains(err.Error(), "tether ad user list") {
		t.Errorf("show a deleted user: %v", err)
	}
}

func TestAdminAuthentication(t *testing.T) {
	th := startHub(t)
	host := strings.TrimPrefix(th.url, "https://")
	tests := []struct {
		name     string
		args     []string
		wantErr  string
		wantCode int
	}{
		{name: "nobody signed in", args: []string{"ad", "signed-in-user", "show"}, wantCode: 1,
			wantErr: "not signed in to " + host + ": run tether login (or pass --admin-token-file)"},
		{name: "the cluster commands too", args: []string{"cluster", "list"}, wantCode: 1, wantErr: "not signed in to " + host},
		{name: "a service principal not signed in", args: []string{"role", "assignment", "list", "-u", "0c9e4a8d-5b6f-4e1a-8c2d-3f4a5b6c7d8e"}, wantCode: 1,
			wantErr: "run tether login --service-principal -u 0c9e4a8d-5b6f-4e1a-8c2d-3f4a5b6c7d8e"},
		{name: "-u and the admin token", args: []string{"ad", "user", "list", "-u", "x", "--admin-token-file", th.tokenFile}, wantCode: 2, wantErr: "exclude each other"},
		{name: "the admin token is no principal", args: []string{"ad", "signed-in-user", "show", "--admin-token-file", th.tokenFile}, wantCode: 1, wantErr: "not a principal"},
		{name: "a required flag", args: []string{"ad", "group", "show"}, wantCode: 2, wantErr: `"group" not set`},
		{name: "nothing to update", args: []string{"ad", "user", "update", "--id", "x"}, wantCode: 2, wantErr: "nothing to update"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := th.run(t, "", tt.args...)
			if err == nil {
				t.Fatal("no error")
			}
			if diff := cmp.Diff(tt.wantCode, ExitCode(err)); diff != "" {
				t.Errorf("exit code (-want +got):\n%s (err: %v)", diff, err)
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("error %q does not mention %q", err, tt.wantErr)
			}
		})
	}
}

package e2e

import (
	"context"
	"encoding/json"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"tether.dev/tether/test/oidcprovider"
	"tether.dev/tether/test/playwright"
	"tether.dev/tether/test/rig"
	"tether.dev/tether/test/testenv"
)

// TestConsoleExternalIssuer signs in to the hub's web console through an
// external OIDC provider in a real browser: a hub of the test's own (no
// cluster needed: the console shows what the hub's API answers) trusts a
// real OpenID provider (test/oidcprovider) through --oidc-issuers, with the
// console registered there as a web client whose redirect URI is the hub's
// /console/auth/callback: a confidential one (consoleClientSecretFile), or
// a public one that has PKCE alone and asks for other scopes
// (consoleScopes, no refresh token). A person of that provider, with a
// Reader role at one group of the hub (assigned to the object ID the hub
// maps from the oid claim), picks the provider on the console's sign-in
// page, signs in and consents on the provider's pages, lands on the
// clusters page under their name, and sees that group's clusters and no
// other. The session cookie is HttpOnly, Secure and SameSite=Lax, and the
// hub's log holds neither the client secret nor the password.
func TestConsoleExternalIssuer(t *testing.T) {
	tests := []struct {
		name   string
		secret string   // empty: a public client
		scopes []string // the console's scopes; nil: its default
	}{
		{"confidential client", "console-web-secret-4f1c", nil},
		{"public client with PKCE alone", "", []string{"openid", "profile"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			consoleExternalIssuer(t, tt.secret, tt.scopes)
		})
	}
}

func consoleExternalIssuer(t *testing.T, consoleSecret string, scopes []string) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	dir := t.TempDir()

	// The hub's address first: the provider registers its callback.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hubAddr := l.Addr().String()
	l.Close()
	hubURL := "https://" + hubAddr

	dana := oidcprovider.User{Username: "dana@external.test", Password: "dana-trusts-no-one-2", Name: "Dana Scully",
		Claims: map[string]any{"email": "dana@external.test"}}
	const consoleClient = "tether-console-web"
	grants := []string{oidcprovider.GrantAuthorizationCode, oidcprovider.GrantRefreshToken}
	if consoleSecret == "" {
		grants = grants[:1]
	}
	idp, err := oidcprovider.Start(ctx, oidcprovider.Config{
		Users: []oidcprovider.User{dana},
		Clients: []oidcprovider.Client{{ID: consoleClient, Secret: consoleSecret, Name: "Tether console",
			GrantTypes: grants, RedirectURIs: []string{hubURL + "/console/auth/callback"}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if t.Failed() {
			b, _ := os.ReadFile(filepath.Join(idp.Dir, "provider.log"))
			t.Logf("provider log:\n%s", lastLines(string(b), 40))
		}
		idp.Close()
	}()
	dana, _ = idp.User(dana.Username) // with its object ID

	entry := map[string]any{
		"url": idp.Issuer, "audiences": []string{oidcprovider.DefaultAudience}, "caFile": idp.CAFile,
		"tenants": []string{idp.Config.TenantID}, "consoleClientID": consoleClient,
	}
	if consoleSecret != "" {
		entry["consoleClientSecretFile"] = filepath.Join(dir, "console-secret")
		if err := os.WriteFile(filepath.Join(dir, "console-secret"), []byte(consoleSecret+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if scopes != nil {
		entry["consoleScopes"] = scopes
	}
	issuers, _ := json.Marshal([]map[string]any{entry})
	issuersFile := filepath.Join(dir, "issuers.json")
	if err := os.WriteFile(issuersFile, issuers, 0o600); err != nil {
		t.Fatal(err)
	}

	h := startHub(t, ctx, dir, hubAddr, "--oidc-issuers", issuersFile)
	admin := func(t *testing.T, args ...string) string {
		t.Helper()
		out, err := h.cmd(ctx, args...).Output()
		if err != nil {
			t.Fatalf("tether %s: %v", strings.Join(args, " "), testenv.ExitDetail(err))
		}
		return string(out)
	}
	// Dana may read the clusters of one group; another group's stay hidden.
	visible := []string{"ext-team/alpha-edge", "ext-team/beta-edge"}
	hidden := []string{"ext-other/secret-edge"}
	for _, c := range append(slices.Clone(visible), hidden...) {
		g, n, _ := strings.Cut(c, "/")
		admin(t, "cluster", "create", "-g", g, "-n", n, "-o", "json")
	}
	admin(t, "role", "assignment", "create", "--role", "Reader", "--assignee", dana.ObjectID, "--scope", "/groups/ext-team")

	shots := screenshotDir(t)
	// The browser trusts the hub's self-signed certificate and the
	// provider's, each pinned by its key.
	var trust []byte
	for _, f := range []string{h.ca, filepath.Join(idp.Dir, "tls.crt")} {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		trust = append(append(trust, b...), '\n')
	}
	res, err := playwright.Run(ctx, playwright.Options{
		Script: "console-external.spec.mjs",
		Params: map[string]any{
			"consoleURL":  hubURL + "/console/",
			"issuer":      idp.Issuer,
			"login":       dana.Username,
			"password":    dana.Password,
			"displayName": dana.Name,
			"visible":     visible,
			"hidden":      hidden,
		},
		TrustPEM:    trust,
		Screenshots: shots,
		Log:         testWriter{t},
	})
	if err != nil {
		t.Fatal(err)
	}
	if !res.OK {
		t.Fatalf("the console in the browser: %s\nhub log:\n%s", res.Failed(), h.proc.Tail(30))
	}
	for _, s := range res.Steps {
		checkScreenshot(t, s.Screenshot)
	}

	var seen []string
	if err := json.Unmarshal(res.Data["clusters"], &seen); err != nil {
		t.Fatalf("the script reported no clusters: %v", err)
	}
	slices.Sort(seen)
	if diff := cmp.Diff(visible, seen); diff != "" {
		t.Errorf("the clusters Dana saw in the console (-want +got):\n%s", diff)
	}
	var whoami string
	json.Unmarshal(res.Data["whoami"], &whoami)
	t.Logf("signed in through %s as %q", idp.Issuer, whoami)

	// Nothing secret in the hub's log.
	hubLog, err := os.ReadFile(h.proc.LogPath)
	if err != nil {
		t.Fatal(err)
	}
	for what, s := range map[string]string{"the console's client secret": consoleSecret, "Dana's password": dana.Password} {
		if s != "" && strings.Contains(string(hubLog), s) {
			t.Errorf("the hub's log holds %s", what)
		}
	}
}

// standaloneHub is a tether hub of one test's own, with SQLite in its data
// directory and a self-signed certificate.
type standaloneHub struct {
	url, ca, adminToken, tether string
	proc                        *rig.Process
}

// startHub builds tether and runs `tether hub` on addr (a loopback
// address) with args, until the test ends.
func startHub(t *testing.T, ctx context.Context, dir, addr string, args ...string) *standaloneHub {
	t.Helper()
	root, err := rig.FindRepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	h := &standaloneHub{url: "https://" + addr, tether: filepath.Join(dir, "tether")}
	build := exec.CommandContext(ctx, "go", "build", "-o", h.tether, "./cmd/tether")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build tether: %v\n%s", err, out)
	}
	dataDir := filepath.Join(dir, "hub")
	h.ca, h.adminToken = filepath.Join(dataDir, "tls.crt"), filepath.Join(dataDir, "admin.token")
	cmd := exec.Command(h.tether, append([]string{"hub", "--listen", addr, "--data-dir", dataDir}, args...)...)
	if h.proc, err = rig.StartProcess("hub", filepath.Join(dir, "hub.log"), cmd); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := h.proc.Stop(syscall.SIGTERM, 15*time.Second); err != nil {
			t.Error(err)
		}
	})
	for deadline := time.Now().Add(30 * time.Second); ; {
		out, err := h.cmd(ctx, "cluster", "list", "-o", "json").CombinedOutput()
		if err == nil {
			break
		}
		select {
		case <-h.proc.Done():
			t.Fatalf("the hub exited: %v\n%s", h.proc.Err(), h.proc.Tail(40))
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("the hub does not answer 30 s after its start: %v\n%s\nhub log:\n%s", err, out, h.proc.Tail(40))
		}
		time.Sleep(200 * time.Millisecond) // polling the hub's start
	}
	return h
}

// cmd runs the tether CLI as the hub's admin.
func (h *standaloneHub) cmd(ctx context.Context, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, h.tether, args...)
	cmd.Env = append(os.Environ(), "TETHER_HUB="+h.url, "TETHER_HUB_CA="+h.ca, "TETHER_ADMIN_TOKEN_FILE="+h.adminToken)
	return cmd
}

// lastLines is the last n lines of s.
func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

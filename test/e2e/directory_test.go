package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"tether.dev/tether/test/browser"
	"tether.dev/tether/test/testenv"
)

// signInPage fields and buttons of the embedded issuer's pages.
const (
	loginField     = "login"
	passwordField  = "password"
	approveButtonQ = `button[name="action"][value="approve"]`
)

var urlPattern = regexp.MustCompile(`https?://\S+`)

// interactiveLogin runs `tether login ARGS` for a person in home, reads the
// URL it prints, signs in at it with a real browser, and waits for the
// login to finish. It returns what the browser showed last.
func interactiveLogin(t *testing.T, ctx context.Context, e *testenv.Env, b *browser.Browser, home, login, password string, args ...string) string {
	t.Helper()
	cmd := e.UserCmd(ctx, home, append([]string{"login"}, args...)...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var printed strings.Builder
	found := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		sent := false
		for sc.Scan() {
			printed.WriteString(sc.Text() + "\n")
			if u := urlPattern.FindString(sc.Text()); u != "" && !sent {
				found <- u
				sent = true
			}
		}
		if !sent {
			close(found)
		}
		io.Copy(io.Discard, stderr)
	}()
	var u string
	select {
	case u = <-found:
	case <-time.After(30 * time.Second):
	}
	if u == "" {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("tether login %s printed no URL:\n%s", strings.Join(args, " "), printed.String())
	}
	tab, cancel := b.NewTab(ctx)
	defer cancel()
	final, text, err := browser.SubmitForm(tab, u, map[string]string{loginField: login, passwordField: password}, approveButtonQ)
	if err != nil {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("sign in at %s: %v", u, err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("tether login %s: %v\n%s\nthe browser ended at %s showing:\n%s", strings.Join(args, " "), err, printed.String(), final, text)
	}
	return text
}

// adminTether runs tether as the hub's admin (Env.TetherCmd) and returns
// what it printed on stdout; t fails, with the exit status and stderr, if
// it fails.
func adminTether(t *testing.T, ctx context.Context, e *testenv.Env, args ...string) string {
	t.Helper()
	out, err := e.TetherCmd(ctx, args...).Output()
	if err != nil {
		t.Fatalf("tether %s: %v", strings.Join(args, " "), testenv.ExitDetail(err))
	}
	return string(out)
}

// TestEmbeddedDirectory is the seed flow with the hub's own directory and
// nothing else: a person signs in with a device code (and with the
// browser flow), a service principal with client credentials, both reach
// clusters in both authorization modes, and hub roles govern the admin
// API.
func TestEmbeddedDirectory(t *testing.T) {
	e := getEnv(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	admin := func(t *testing.T, args ...string) string { t.Helper(); return adminTether(t, ctx, e, args...) }
	caPEM, err := os.ReadFile(e.HubCA)
	if err != nil {
		t.Fatal(err)
	}
	b, err := browser.Start(ctx, browser.Options{TrustPEM: caPEM, Log: testWriter{t}})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()

	const password = "dana-correct-horse-1"
	pwFile := filepath.Join(t.TempDir(), "pw")
	os.WriteFile(pwFile, []byte(password+"\n"), 0o600)
	admin(t, "ad", "user", "create", "--display-name", "Dana Scully", "--user-principal-name", "dana@example.com", "--password-file", pwFile)
	oid := strings.TrimSpace(admin(t, "ad", "user", "show", "--id", "DANA@example.com", "--query", "id", "-o", "tsv"))
	if len(oid) != 36 {
		t.Fatalf("ad user show --query id -o tsv printed %q, want an object ID", oid)
	}
	clusterID := strings.TrimSpace(admin(t, "cluster", "show", "-g", e.Group, "-n", e.Name, "--query", "id", "-o", "tsv"))
	home := t.TempDir()
	user := func(args ...string) (string, error) {
		out, err := e.UserCmd(ctx, home, args...).CombinedOutput()
		return string(out), err
	}

	t.Run("a person signs in with a device code in a browser", func(t *testing.T) {
		shown := interactiveLogin(t, ctx, e, b, home, "dana@example.com", password, "--issuer", "embedded", "--use-device-code")
		if !strings.Contains(shown, "Dana Scully") {
			t.Errorf("the device page after sign-in shows %q; want the signed-in name", shown)
		}
		out, err := user("ad", "signed-in-user", "show", "--issuer", "embedded", "--query", "id", "-o", "tsv")
		if diff := cmp.Diff(oid+"\n", out); err != nil || diff != "" {
			t.Errorf("ad signed-in-user show (-want +got):\n%s (err %v)", diff, err)
		}
	})

	t.Run("hub roles govern the admin API", func(t *testing.T) {
		out, err := user("cluster", "list", "--issuer", "embedded", "-o", "json")
		if err != nil || strings.Contains(out, e.Name) {
			t.Errorf("with no role, cluster list: err=%v\n%s\nwant an empty list", err, out)
		}
		admin(t, "role", "assignment", "create", "--role", "Reader", "--assignee", oid, "--scope", "/groups/"+e.Group)
		if out, err := user("cluster", "list", "--issuer", "embedded", "--query", "[].name", "-o", "tsv"); err != nil || !strings.Contains(out, e.Name) {
			t.Errorf("Reader at the group, cluster list: err=%v\n%s", err, out)
		}
		if out, err := user("cluster", "create", "--issuer", "embedded", "-g", e.Group, "-n", "dana-made"); err == nil || !strings.Contains(out, "Contributor") || !strings.Contains(out, oid) {
			t.Errorf("Reader creating a cluster: err=%v\n%s\nwant a refusal naming the caller and Contributor", err, out)
		}
		if out, err := user("ad", "user", "list", "--issuer", "embedded"); err == nil || !strings.Contains(out, "Forbidden") && !strings.Contains(out, "Reader") {
			t.Errorf("Reader at a group listing the directory: err=%v\n%s", err, out)
		}
	})

	kc := filepath.Join(t.TempDir(), "kubeconfig")
	kubectl := func(args ...string) (string, error) {
		cmd := exec.CommandContext(ctx, "kubectl", append([]string{"--kubeconfig", kc}, args...)...)
		cmd.Env = append(os.Environ(), "HOME="+home)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}

	t.Run("Kubernetes-RBAC mode: the seed flow through the exec plugin", func(t *testing.T) {
		admin(t, "role", "assignment", "create", "--role", "Cluster User", "--assignee", oid, "--scope", clusterID)
		if out, err := e.Cluster.Kubectl(ctx, "create", "clusterrolebinding", "dana-cluster-admin", "--clusterrole", "cluster-admin", "--user="+oid).CombinedOutput(); err != nil {
			t.Fatalf("bind: %v\n%s", err, out)
		}
		if out, err := user("get-credentials", "--issuer", "embedded", "-g", e.Group, "-n", e.Name, "-f", kc); err != nil {
			t.Fatalf("get-credentials: %v\n%s", err, out)
		}
		if out, err := kubectl("auth", "whoami", "-o", "jsonpath={.status.userInfo.username}"); err != nil || out != oid {
			t.Errorf("whoami = %q (err %v), want %s", out, err, oid)
		}
		if out, err := kubectl("get", "secrets", "-n", "kube-system", "-o", "name"); err != nil {
			t.Errorf("cluster-admin reading secrets: %v\n%s", err, out)
		}
	})

	t.Run("the exec plugin refreshes an expired cached token", func(t *testing.T) {
		entries, _ := filepath.Glob(filepath.Join(home, ".kube", "cache", "tether", "*.json"))
		var path string
		var entry map[string]any
		for _, p := range entries {
			raw, _ := os.ReadFile(p)
			var m map[string]any
			if json.Unmarshal(raw, &m) == nil && m["grant"] != "clientCredentials" {
				path, entry = p, m
			}
		}
		if path == "" {
			t.Fatalf("no cached sign-in among %v", entries)
		}
		tok := entry["token"].(map[string]any)
		oldAccess, oldRefresh := tok["access_token"], tok["refresh_token"]
		if oldRefresh == nil || oldRefresh == "" {
			t.Fatal("the device-code sign-in cached no refresh token")
		}
		// Expired an hour ago, and the token itself garbled: only a real
		// refresh gets kubectl through.
		tok["expiry"] = time.Now().Add(-time.Hour).Format(time.RFC3339)
		tok["access_token"] = "garbled"
		raw, _ := json.Marshal(entry)
		if err := os.WriteFile(path, raw, 0o600); err != nil {
			t.Fatal(err)
		}
		if out, err := kubectl("get", "serviceaccounts", "-o", "name"); err != nil || !strings.Contains(out, "serviceaccount/default") {
			t.Fatalf("kubectl after the cached token expired: %v\n%s", err, out)
		}
		raw, _ = os.ReadFile(path)
		var after struct {
			Token struct {
				AccessToken  string    `json:"access_token"`
				RefreshToken string    `json:"refresh_token"`
				Expiry       time.Time `json:"expiry"`
			}
		}
		json.Unmarshal(raw, &after)
		if after.Token.AccessToken == "garbled" || after.Token.AccessToken == oldAccess || after.Token.RefreshToken == oldRefresh || !after.Token.Expiry.After(time.Now()) {
			t.Errorf("the cache was not renewed by a refresh: new access token %t, rotated refresh token %t, expiry %s",
				after.Token.AccessToken != oldAccess, after.Token.RefreshToken != oldRefresh, after.Token.Expiry)
		}
	})

	t.Run("group membership counts on the next request", func(t *testing.T) {
		gid := strings.TrimSpace(admin(t, "ad", "group", "create", "--display-name", "sre", "--query", "id", "-o", "tsv"))
		admin(t, "ad", "group", "member", "add", "--group", gid, "--member-id", oid)
		out, err := kubectl("auth", "whoami", "-o", "jsonpath={.status.userInfo.groups}")
		if err != nil || !strings.Contains(out, gid) {
			t.Errorf("whoami groups = %q (err %v), want %s", out, err, gid)
		}
		if out := admin(t, "ad", "group", "member", "check", "--group", "sre", "--member-id", oid, "--query", "value", "-o", "tsv"); strings.TrimSpace(out) != "true" {
			t.Errorf("member check printed %q", out)
		}
		admin(t, "ad", "group", "member", "remove", "--group", gid, "--member-id", oid)
		if out, err := kubectl("auth", "whoami", "-o", "jsonpath={.status.userInfo.groups}"); err != nil || strings.Contains(out, gid) {
			t.Errorf("after removal, whoami groups = %q (err %v)", out, err)
		}
	})

	t.Run("the browser sign-in (authorization code with PKCE)", func(t *testing.T) {
		home2 := t.TempDir()
		interactiveLogin(t, ctx, e, b, home2, "dana@example.com", password, "--issuer", "embedded", "--auth-code")
		out, err := e.UserCmd(ctx, home2, "ad", "signed-in-user", "show", "--issuer", "embedded", "--query", "id", "-o", "tsv").CombinedOutput()
		if err != nil || strings.TrimSpace(string(out)) != oid {
			t.Errorf("after the browser sign-in, signed-in-user = %q (err %v), want %s", out, err, oid)
		}
	})

	t.Run("a service principal, hub-RBAC mode", func(t *testing.T) {
		var sp struct {
			ID, AppID, Password string
		}
		if err := json.Unmarshal([]byte(admin(t, "ad", "sp", "create", "--display-name", "deployer", "-o", "json")), &sp); err != nil || sp.AppID == "" || sp.Password == "" {
			t.Fatalf("ad sp create: %+v %v", sp, err)
		}
		if got := strings.TrimSpace(admin(t, "ad", "sp", "show", "--id", sp.AppID, "--query", "id", "-o", "tsv")); got != sp.ID {
			t.Errorf("ad sp show --id APPID --query id = %q, want %s", got, sp.ID)
		}
		var created struct {
			Cluster struct{ ID string }
			Join    struct{ JoinToken string }
		}
		if err := json.Unmarshal([]byte(admin(t, "cluster", "create", "-g", e.Group, "-n", "edge-embedded-hub", "--mode", "hub-rbac", "-o", "json")), &created); err != nil {
			t.Fatal(err)
		}
		agent, err := e.StartAgent("agent-embedded-hub", created.Join.JoinToken)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { agent.Stop(syscall.SIGTERM, 15*time.Second) })
		admin(t, "role", "assignment", "create", "--role", "Cluster User", "--assignee", sp.ID, "--assignee-type", "servicePrincipal", "--scope", created.Cluster.ID)
		admin(t, "role", "assignment", "create", "--role", "Kubernetes Viewer", "--assignee", sp.ID, "--assignee-type", "servicePrincipal", "--scope", created.Cluster.ID)
		spHome := t.TempDir()
		login := e.UserCmd(ctx, spHome, "login", "--issuer", "embedded", "--service-principal", "-u", sp.AppID, "--password-file", "-")
		login.Stdin = strings.NewReader(sp.Password)
		if out, err := login.CombinedOutput(); err != nil {
			t.Fatalf("service principal login: %v\n%s", err, out)
		}
		lp, err := e.StartProxyWith(ctx, t.TempDir(), "edge-embedded-hub", []string{"-u", sp.AppID, "--issuer", "embedded"}, []string{"HOME=" + spHome})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { lp.Proc.Stop(syscall.SIGINT, 15*time.Second) })
		run := func(args ...string) (string, error) {
			out, err := lp.Kubectl(ctx, "", args...).CombinedOutput()
			return string(out), err
		}
		deadline := time.Now().Add(60 * time.Second)
		for {
			out, err := run("get", "serviceaccounts", "-o", "name")
			if err == nil && strings.Contains(out, "serviceaccount/default") {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("the service principal as Viewer never listed service accounts: %v\n%s\nagent log:\n%s", err, out, agent.Tail(30))
			}
			time.Sleep(200 * time.Millisecond) // polling the agent's reconciler from outside
		}
		if out, err := run("auth", "whoami", "-o", "jsonpath={.status.userInfo.username}"); err != nil || out != sp.ID {
			t.Errorf("whoami = %q (err %v), want %s", out, err, sp.ID)
		}
		if out, err := run("get", "secrets"); err == nil || !strings.Contains(out, "Forbidden") {
			t.Errorf("Viewer read secrets: err=%v\n%s", err, out)
		}
	})

	t.Run("a deleted user is refused on the next request", func(t *testing.T) {
		admin(t, "ad", "user", "delete", "--id", oid)
		if out, err := kubectl("get", "pods"); err == nil {
			t.Errorf("the deleted user still reached the cluster:\n%s", out)
		}
	})
}

// testWriter sends a browser's log to the test log.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

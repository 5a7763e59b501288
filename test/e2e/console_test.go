package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"image/png"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"tether.dev/tether/internal/audit"
	"tether.dev/tether/test/playwright"
	"tether.dev/tether/test/testenv"
)

// artifactsEnv names a directory where tests leave what a person may want
// to look at afterwards (the console's screenshots); CI uploads it.
const artifactsEnv = "TETHER_TEST_ARTIFACTS"

// TestConsole is the hub's web console in a real browser (Playwright
// driving the system's headless Chromium, test/playwright): a person with
// a password signs in through the embedded issuer, sees their cluster
// Connected, creates a role assignment with the form, gets the commands to
// connect another cluster (which an agent then uses), and sees the
// cluster turn Offline without a reload when its agent stops. The hub's API
// confirms the assignment and its audit trail records the change as that
// person.
func TestConsole(t *testing.T) {
	e := getEnv(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	admin := func(t *testing.T, args ...string) string {
		t.Helper()
		return adminTether(t, ctx, e, args...)
	}
	const group, name = "console-e2e", "console-edge"

	// A cluster of the test's own, so stopping its agent leaves the shared
	// one alone.
	var created struct {
		Cluster struct{ ID string }
		Join    struct{ JoinToken string }
	}
	if err := json.Unmarshal([]byte(admin(t, "cluster", "create", "-g", group, "-n", name, "-o", "json")), &created); err != nil || created.Join.JoinToken == "" {
		t.Fatalf("cluster create: %+v %v", created, err)
	}
	agent, err := e.StartAgent("agent-console", created.Join.JoinToken)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { agent.Stop(syscall.SIGTERM, 15*time.Second) })
	status := func() string {
		out, err := e.TetherCmd(ctx, "cluster", "show", "-g", group, "-n", name, "--query", "status", "-o", "tsv").Output()
		if err != nil {
			return fmt.Sprintf("(cluster show: %v)", testenv.ExitDetail(err))
		}
		return strings.TrimSpace(string(out))
	}
	for deadline := time.Now().Add(60 * time.Second); status() != "Connected"; {
		if time.Now().After(deadline) {
			t.Fatalf("the console's cluster is %s after 60 s, not Connected; agent log:\n%s", status(), agent.Tail(30))
		}
		time.Sleep(200 * time.Millisecond) // polling the hub's view
	}

	// The person who signs in, an Owner of the group and a Reader of the
	// whole hub (for the audit trail); the principal they
	// assign a role to; and one a forged request tries to assign.
	const password = "fox-trust-no-one-1"
	pwFile := filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(pwFile, []byte(password+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	admin(t, "ad", "user", "create", "--display-name", "Fox Mulder", "--user-principal-name", "fox@example.com", "--password-file", pwFile)
	userID := func(login string) string {
		t.Helper()
		id := strings.TrimSpace(admin(t, "ad", "user", "show", "--id", login, "--query", "id", "-o", "tsv"))
		if len(id) != 36 {
			t.Fatalf("ad user show --id %s printed %q, want an object ID", login, id)
		}
		return id
	}
	fox := userID("fox@example.com")
	admin(t, "ad", "user", "create", "--display-name", "Walter Skinner", "--user-principal-name", "skinner@example.com", "--password-file", pwFile)
	skinner := userID("skinner@example.com")
	admin(t, "ad", "user", "create", "--display-name", "Alex Krycek", "--user-principal-name", "krycek@example.com", "--password-file", pwFile)
	krycek := userID("krycek@example.com")
	admin(t, "role", "assignment", "create", "--role", "Owner", "--assignee", fox, "--scope", "/groups/"+group)
	// The audit trail is read at the root only.
	admin(t, "role", "assignment", "create", "--role", "Reader", "--assignee", fox, "--scope", "/")

	// Requests through the gateway for the audit page's chart: a token
	// the cluster refuses, so each is recorded for the cluster.
	hc := hubClient(t, e)
	for range 3 {
		if code, body := getWithToken(t, hc, e.HubURL+"/k8s/"+group+"/"+name+"/version", "not-a-token"); code != http.StatusUnauthorized {
			t.Fatalf("GET /version with a bad token through the gateway: %d %s, want 401 from the cluster", code, body)
		}
	}

	shots := screenshotDir(t)
	caPEM, err := os.ReadFile(e.HubCA)
	if err != nil {
		t.Fatal(err)
	}
	scope := created.Cluster.ID
	const connectName = "console-made"
	started := time.Now()
	res, err := playwright.Run(ctx, playwright.Options{
		Script: "console.spec.mjs",
		Params: map[string]any{
			"consoleURL":       e.HubURL + "/console/",
			"login":            "fox@example.com",
			"password":         password,
			"displayName":      "Fox Mulder",
			"cluster":          group + "/" + name,
			"assignee":         skinner,
			"assigneeName":     "Walter Skinner",
			"role":             "Reader",
			"scope":            scope,
			"forgedAssignee":   krycek,
			"connectGroup":     group,
			"connectName":      connectName,
			"offlineTimeoutMs": 45_000, // the shared hub's offline window is 3 s
		},
		TrustPEM:    caPEM,
		Screenshots: shots,
		Log:         testWriter{t},
		Barrier: func(ctx context.Context, barrier string) error {
			if barrier != "stop-agent" {
				return fmt.Errorf("unknown barrier %q", barrier)
			}
			t.Logf("stopping the agent of %s/%s", group, name)
			return agent.Stop(syscall.SIGTERM, 15*time.Second)
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("the browser's run took %s", time.Since(started).Round(time.Second))
	if !res.OK {
		t.Fatalf("the console in the browser: %s\nthe hub says the cluster is %s", res.Failed(), status())
	}
	for _, s := range res.Steps {
		checkScreenshot(t, s.Screenshot)
	}
	t.Logf("the console's Content-Security-Policy: %s; a forged same-site post (session cookie sent: %s) got %s",
		res.Data["csp"], res.Data["forgedCookieSent"], res.Data["forgedStatus"])

	var assignmentID string
	if err := json.Unmarshal(res.Data["assignmentID"], &assignmentID); err != nil {
		t.Fatalf("the script reported no assignment ID: %v", err)
	}
	t.Run("the hub holds the assignment made in the browser", func(t *testing.T) {
		var got []struct{ ID, Role, PrincipalID, Scope string }
		if err := json.Unmarshal([]byte(admin(t, "role", "assignment", "list", "--assignee", skinner, "-o", "json")), &got); err != nil {
			t.Fatal(err)
		}
		if len(got) != 1 || got[0].ID != assignmentID || got[0].Role != "reader" || got[0].PrincipalID != skinner || got[0].Scope != scope {
			t.Errorf("Walter Skinner's assignments: %+v; want one, %s: reader at %s", got, assignmentID, scope)
		}
		if out := admin(t, "role", "assignment", "list", "--assignee", krycek, "-o", "json"); strings.TrimSpace(out) != "[]" {
			t.Errorf("the forged cross-site request made an assignment:\n%s", out)
		}
	})
	t.Run("the audit trail records the change as the person", func(t *testing.T) {
		var evs []audit.Event
		out := admin(t, "audit", "list", "--type", "change", "--principal", fox, "--verb", "create", "--since", "15m", "-o", "json")
		if err := json.Unmarshal([]byte(out), &evs); err != nil {
			t.Fatalf("audit list printed %.300s: %v", out, err)
		}
		var found *audit.Event
		for i, ev := range evs {
			if ev.Path == "/api/v1/role-assignments" && ev.Decision == audit.DecisionAllow {
				found = &evs[i]
			}
		}
		if found == nil {
			t.Fatalf("no allowed create of a role assignment by Fox Mulder (%s) in the audit trail; their change events:\n%s", fox, out)
		}
		if found.PrincipalID != fox || found.PrincipalType != "user" || found.PrincipalName == "" || found.Status/100 != 2 {
			t.Errorf("the console's change event: %+v; want Fox Mulder as a user and a 2xx status", *found)
		}
	})
	t.Run("the join token the connect page showed connects an agent", func(t *testing.T) {
		var token string
		if err := json.Unmarshal(res.Data["joinToken"], &token); err != nil || token == "" {
			t.Fatalf("the script reported no join token: %v", err)
		}
		made, err := e.StartAgent("agent-console-made", token)
		if err != nil {
			t.Fatal(err)
		}
		defer made.Stop(syscall.SIGTERM, 15*time.Second)
		for deadline := time.Now().Add(60 * time.Second); ; {
			out, err := e.TetherCmd(ctx, "cluster", "show", "-g", group, "-n", connectName, "--query", "status", "-o", "tsv").Output()
			if err == nil && strings.TrimSpace(string(out)) == "Connected" {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s/%s is %q (%v) 60 s after its agent started with the console's join token; agent log:\n%s", group, connectName, out, err, made.Tail(30))
			}
			time.Sleep(200 * time.Millisecond) // polling the hub's view
		}
	})
	if got := status(); got != "Offline" {
		t.Errorf("the hub says the stopped agent's cluster is %s; the browser saw Offline", got)
	}
}

// checkScreenshot fails unless path is a PNG image with pixels.
// screenshotDir is where a browser test saves its screenshots: the test's
// own directory under $TETHER_TEST_ARTIFACTS, emptied first so that no
// screenshot of an earlier run passes for one of this run; else a
// temporary directory.
func screenshotDir(t *testing.T) string {
	t.Helper()
	shots := t.TempDir()
	if dir := os.Getenv(artifactsEnv); dir != "" {
		shots = filepath.Join(dir, t.Name())
		if err := os.RemoveAll(shots); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("console screenshots in %s", shots)
	return shots
}

func checkScreenshot(t *testing.T, path string) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Errorf("screenshot: %v", err)
		return
	}
	defer f.Close()
	if fi, err := f.Stat(); err != nil || fi.Size() == 0 {
		t.Errorf("screenshot %s is empty (%v)", path, err)
		return
	}
	img, err := png.Decode(f)
	if err != nil {
		t.Errorf("screenshot %s: %v", path, err)
		return
	}
	if b := img.Bounds(); b.Dx() == 0 || b.Dy() == 0 {
		t.Errorf("screenshot %s is %dx%d", path, b.Dx(), b.Dy())
	}
}

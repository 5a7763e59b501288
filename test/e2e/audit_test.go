package e2e

import (
	"context"
	"database/sql"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	_ "modernc.org/sqlite"

	"tether.dev/tether/internal/audit"
	"tether.dev/tether/test/testenv"
)

// TestAuditTrail runs kubectl through the tunnel (a list and an exec) and
// reads the hub's audit trail with the CLI: each request is one event with
// who, what and the outcome, the exec a session with its bytes; the chain
// verifies, and an event edited in the hub's database is found.
func TestAuditTrail(t *testing.T) {
	e := getEnv(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	lp := startProxy(t, e, e.SAToken)
	marker := fmt.Sprintf("audit-%d", time.Now().UnixNano())
	kubectl := func(args ...string) string {
		t.Helper()
		out, err := lp.Kubectl(ctx, "", args...).CombinedOutput()
		if err != nil {
			t.Fatalf("kubectl %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	kubectl("get", "configmaps", "-n", "default", "-l", "marker="+marker)
	pod := fmt.Sprintf(`{"apiVersion":"v1","kind":"Pod","metadata":{"name":"audited","namespace":"default"},
		"spec":{"nodeName":%q,"containers":[{"name":"c","image":"none","command":["/bin/sh","-c","while true; do sleep 1; done"]}]}}`, e.Cluster.NodeName)
	apply := e.Cluster.Kubectl(ctx, "apply", "-f", "-")
	apply.Stdin = strings.NewReader(pod)
	if out, err := apply.CombinedOutput(); err != nil {
		t.Fatalf("create pod: %v\n%s", err, out)
	}
	if out, err := e.Cluster.Kubectl(ctx, "wait", "--for=condition=Ready", "pod/audited", "--timeout=60s").CombinedOutput(); err != nil {
		t.Fatalf("wait: %v\n%s", err, out)
	}
	exec := lp.Kubectl(ctx, "", "exec", "-i", "audited", "--", "/bin/cat")
	exec.Stdin = strings.NewReader(marker + "\n")
	if out, err := exec.CombinedOutput(); err != nil || !strings.Contains(string(out), marker) {
		t.Fatalf("exec -i cat: %v\n%s", err, out)
	}

	list := func(args ...string) []audit.Event {
		t.Helper()
		out, err := e.TetherCmd(ctx, append([]string{"audit", "list", "-g", e.Group, "-n", e.Name, "-o", "json"}, args...)...).Output()
		if err != nil {
			t.Fatalf("tether audit list: %v", testenv.ExitDetail(err))
		}
		var evs []audit.Event
		if err := json.Unmarshal(out, &evs); err != nil {
			t.Fatalf("audit list printed %.300s: %v", out, err)
		}
		return evs
	}
	sa := "system:serviceaccount:default:demo-user"
	var listEv, session *audit.Event
	deadline := time.Now().Add(20 * time.Second)
	for listEv == nil || session == nil {
		if time.Now().After(deadline) {
			t.Fatalf("no audit events for the list (%v) or the exec session (%v)", listEv != nil, session != nil)
		}
		time.Sleep(300 * time.Millisecond)
		for _, ev := range list("--since", "5m") {
			switch {
			case ev.Type == audit.TypeRequest && ev.Verb == "list" && ev.Resource == "configmaps" && ev.Namespace == "default":
				listEv = &ev
			case ev.Type == audit.TypeSessionEnd && ev.Subresource == "exec" && ev.Name == "audited":
				session = &ev
			}
		}
	}
	if listEv.PrincipalName != sa || listEv.Decision != audit.DecisionAllow || listEv.Status != 200 || listEv.AuthMode != "token" || listEv.SourceAddr == "" || listEv.BytesOut == 0 {
		t.Errorf("the list's event: %+v", *listEv)
	}
	// kubectl execs over a WebSocket, a GET: the API server's own request
	// attributes say get pods/exec too (it checks create on top).
	if session.PrincipalName != sa || session.Verb != "get" || session.Status != 101 || session.BytesOut == 0 || session.BytesIn == 0 || session.Duration <= 0 {
		t.Errorf("the exec session's end: %+v; want the service account, get pods/exec, 101, bytes both ways and a duration", *session)
	}
	for _, ev := range list() {
		if strings.Contains(fmt.Sprintf("%+v", ev), e.SAToken) {
			t.Fatalf("audit event %d holds the service-account token", ev.Seq)
		}
	}
	if out, err := e.TetherCmd(ctx, "audit", "list", "--decision", "deny", "--limit", "5").CombinedOutput(); err != nil || !strings.Contains(string(out), "SEQ") {
		t.Errorf("audit list as a table: %v\n%s", err, out)
	}

	verify := func() (string, error) {
		out, err := e.TetherCmd(ctx, "audit", "verify").CombinedOutput()
		return string(out), err
	}
	out, err := verify()
	if err != nil || !strings.Contains(out, "intact") {
		t.Fatalf("tether audit verify: %v\n%s", err, out)
	}
	// Someone with the database edits the list's event: verify finds it.
	db, err := sql.Open("sqlite", filepath.Join(e.HubDataDir(), "tether.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.ExecContext(ctx, `UPDATE audit_events SET verb = 'get' WHERE seq = ?`, listEv.Seq); err != nil {
		t.Fatal(err)
	}
	out, err = verify()
	if err == nil || !strings.Contains(out, fmt.Sprintf("event %d", listEv.Seq)) || !strings.Contains(out, "edited") {
		t.Errorf("verify after an edit: err=%v\n%s\nwant exit 1 naming event %d as edited", err, out, listEv.Seq)
	}
	if _, err := db.ExecContext(ctx, `UPDATE audit_events SET verb = 'list' WHERE seq = ?`, listEv.Seq); err != nil {
		t.Fatal(err)
	}
	if out, err := verify(); err != nil {
		t.Errorf("verify after the edit was undone: %v\n%s", err, out)
	}
}

// TestAuditRecordsRefusals: requests the hub refuses are in the audit
// trail as denials with the reason, and the tokens they carried are not.
func TestAuditRecordsRefusals(t *testing.T) {
	e := getEnv(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	hc := hubClient(t, e)
	marker := fmt.Sprintf("refused-%d", time.Now().UnixNano())
	b64 := base64.RawURLEncoding.EncodeToString
	noneToken := b64([]byte(`{"alg":"none","typ":"JWT"}`)) + "." +
		b64([]byte(fmt.Sprintf(`{"iss":%q,"sub":"x","oid":"x","aud":"tether","exp":%d}`, e.HubURL+"/oidc", time.Now().Add(time.Hour).Unix()))) + "."
	cases := []struct {
		name, namespace string
		header          http.Header
		reason          string
	}{
		{"no credentials", marker + "-a", http.Header{}, "no credentials"},
		{"an unsigned token naming the hub's issuer", marker + "-b", http.Header{"Authorization": {"Bearer " + noneToken}}, "refused"},
		{"an oversized token", marker + "-c", http.Header{"Authorization": {"Bearer " + strings.Repeat("x", 70<<10)}}, "more than any valid token"},
	}
	for _, c := range cases {
		req, _ := http.NewRequestWithContext(ctx, "GET", e.HubURL+"/k8s/"+e.Group+"/"+e.Name+"/api/v1/namespaces/"+c.namespace+"/pods", nil)
		req.Header = c.header
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("%s: %d, want 401", c.name, resp.StatusCode)
		}
	}
	deadline := time.Now().Add(20 * time.Second)
	for _, c := range cases {
		for {
			out, err := e.TetherCmd(ctx, "audit", "list", "--decision", "deny", "--since", "5m", "-o", "json").Output()
			if err != nil {
				t.Fatalf("audit list: %v", testenv.ExitDetail(err))
			}
			var evs []audit.Event
			json.Unmarshal(out, &evs)
			var found *audit.Event
			for i, ev := range evs {
				if ev.Namespace == c.namespace {
					found = &evs[i]
				}
			}
			if found != nil {
				if found.Status != 401 || !strings.Contains(found.Reason, c.reason) || found.SourceAddr == "" || found.Resource != "pods" {
					t.Errorf("%s: event %+v; want a 401 denial saying %q", c.name, *found, c.reason)
				}
				if strings.Contains(string(out), e.SAToken) || strings.Contains(string(out), "xxxxxxxx") || strings.Contains(string(out), noneToken) {
					t.Errorf("%s: the audit trail holds a token", c.name)
				}
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: no denial event for namespace %s", c.name, c.namespace)
			}
			time.Sleep(300 * time.Millisecond)
		}
	}
}

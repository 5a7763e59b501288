// Package e2e proves Tether end to end with real parts only: the rig's real
// kube-apiserver, controller manager, scheduler and kubelet-API node, and
// the real tether agent, all inside a network namespace that drops every
// inbound connection; the real tether hub and real kubectl binaries outside.
package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"tether.dev/tether/test/oidcprovider"
	"tether.dev/tether/test/podprog"
	"tether.dev/tether/test/testenv"
)

// The test binary is also the program of the test pods and the
// port-forward client (package podprog).
func TestMain(m *testing.M) {
	podprog.Main()
	code := m.Run()
	if shared != nil {
		shared.Close()
	}
	if sharedIdP != nil {
		sharedIdP.Close()
	}
	if otherTenantIdP != nil {
		otherTenantIdP.Close()
	}
	if idpDir != "" {
		os.RemoveAll(idpDir)
	}
	os.Exit(code)
}

// The external directory of the sign-in tests: a real OIDC provider
// process outside, trusted by the hub through --oidc-issuers.
var (
	sharedIdP *oidcprovider.Provider
	// otherTenantIdP is trusted for one tenant its tokens never carry.
	otherTenantIdP *oidcprovider.Provider
	idpDir         string
	alice          = oidcprovider.User{Username: "alice", Password: "alice-pw", Groups: oidcprovider.GroupIDs("alice", 3)}
	mallory        = oidcprovider.User{Username: "mallory", Password: "mallory-pw", Groups: []string{"system:masters"}}
	// olga is in 500 groups: her tokens carry an Entra-style group overage.
	olga  = oidcprovider.User{Username: "olga", Password: "olga-pw", Groups: oidcprovider.GroupIDs("olga", 500)}
	ciBot = oidcprovider.Client{ID: "ci-bot", Secret: "ci-bot-secret"}
)

// startIdP starts the provider and writes the hub's --oidc-issuers file.
func startIdP(ctx context.Context, dir string) ([]string, error) {
	p, err := oidcprovider.Start(ctx, oidcprovider.Config{Users: []oidcprovider.User{alice, mallory, olga}, Clients: []oidcprovider.Client{ciBot}})
	if err != nil {
		return nil, err
	}
	sharedIdP = p
	u, err := url.Parse(p.Issuer)
	if err != nil {
		return nil, err
	}
	other, err := oidcprovider.Start(ctx, oidcprovider.Config{Users: []oidcprovider.User{alice}})
	if err != nil {
		return nil, err
	}
	otherTenantIdP = other
	issuers := fmt.Sprintf(`[{"url": %q, "audiences": [%q], "caFile": %q, "groupEndpointHosts": [%q], "cliClientID": %q, "tenants": [%q]},
		{"url": %q, "audiences": [%q], "caFile": %q, "tenants": [%q]}]`,
		p.Issuer, oidcprovider.DefaultAudience, p.CAFile, u.Host, oidcprovider.HarnessClientID, p.Config.TenantID,
		other.Issuer, oidcprovider.DefaultAudience, other.CAFile, "00000000-0000-4000-8000-00000000beef")
	path := filepath.Join(dir, "issuers.json")
	if err := os.WriteFile(path, []byte(issuers), 0o600); err != nil {
		return nil, err
	}
	return []string{"--oidc-issuers", path}, nil
}

var (
	sharedOnce sync.Once
	shared     *testenv.Env
	sharedErr  error
	// hubMetricsAddr and hubProbeAddr are where the shared hub serves
	// /metrics and /livez, /readyz in plain HTTP.
	hubMetricsAddr, hubProbeAddr string
)

// getEnv brings the installation up once for the whole package; TestMain
// tears it down.
func getEnv(t *testing.T) *testenv.Env {
	t.Helper()
	sharedOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
		defer cancel()
		dir, err := os.MkdirTemp("", "tether-e2e-idp-")
		if err != nil {
			sharedErr = err
			return
		}
		idpDir = dir
		hubArgs, err := startIdP(ctx, dir)
		if err != nil {
			sharedErr = err
			return
		}
		// Quick heartbeats, so that Offline shows within seconds.
		hubArgs = append(hubArgs, "--heartbeat-interval", "1s", "--offline-after", "3s")
		// The hub's metrics and probe ports (docs/operations.md), on
		// loopback ports of the test's host.
		if hubMetricsAddr, hubProbeAddr, err = freeAddrs(); err != nil {
			sharedErr = err
			return
		}
		hubArgs = append(hubArgs, "--metrics-bind-address", hubMetricsAddr, "--health-probe-bind-address", hubProbeAddr)
		shared, sharedErr = testenv.Start(ctx, testenv.Options{Log: os.Stderr, ForwardProxy: true, HubArgs: hubArgs, Locations: []string{"East US 2", "West Europe"}})
	})
	if sharedErr != nil {
		t.Fatalf("set up the end-to-end environment: %v", sharedErr)
	}
	return shared
}

// startProxy runs `tether proxy` for the test, stopped (Ctrl+C) at its end.
func startProxy(t *testing.T, e *testenv.Env, token string) *testenv.LocalProxy {
	t.Helper()
	lp, err := e.StartProxy(context.Background(), t.TempDir(), token)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("tether proxy:\n%s", lp.Output)
	t.Cleanup(func() { lp.Proc.Stop(syscall.SIGINT, 15*time.Second) })
	return lp
}

func TestEndToEnd(t *testing.T) {
	e := getEnv(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	lp := startProxy(t, e, e.SAToken)
	kubectl := func(t *testing.T, args ...string) string {
		t.Helper()
		out, err := lp.Kubectl(ctx, "", args...).CombinedOutput()
		if err != nil {
			t.Fatalf("kubectl %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	admin := func(t *testing.T, stdin string, args ...string) string {
		t.Helper()
		cmd := e.Cluster.Kubectl(ctx, args...)
		if stdin != "" {
			cmd.Stdin = strings.NewReader(stdin)
		}
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("kubectl (cluster admin, inside) %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	echoPort := 20000 + rand.IntN(20000)
	pod := fmt.Sprintf(`{"apiVersion":"v1","kind":"Pod","metadata":{"name":"worker","namespace":"default"},
		"spec":{"nodeName":%q,"restartPolicy":"Always","containers":[
		  {"name":"ticker","image":"none","command":["/bin/sh","-c","i=0; while true; do echo tick $i; i=$((i+1)); sleep 0.1; done"]},
		  {"name":"echo","image":"none","command":[%q],"env":[{"name":%q,"value":%q},{"name":%q,"value":"%d"}]},
		  {"name":"reader","image":"none","stdin":true,"command":["/bin/sh","-c","while read l; do echo got:$l; done"]}]}}`,
		e.Cluster.NodeName, self, podprog.Env, podprog.EchoServer, podprog.Port, echoPort)
	admin(t, pod, "apply", "-f", "-")
	admin(t, "", "wait", "--for=condition=Ready", "pod/worker", "--timeout=60s")

	t.Run("the cluster accepts no inbound connection", func(t *testing.T) {
		u, _ := url.Parse(e.Cluster.Server)
		c, err := net.DialTimeout("tcp", u.Host, 3*time.Second)
		if err == nil {
			c.Close()
			t.Fatalf("dialled the API server at %s from outside; the namespace must refuse it", u.Host)
		}
		t.Logf("direct dial to %s from outside: %v", u.Host, err)
	})

	t.Run("the agent reaches the hub only through the forward proxy", func(t *testing.T) {
		if e.Proxy == nil {
			t.Fatal("the environment has no forward proxy")
		}
		// tinyproxy logs each CONNECT it serves: the agent's tunnel is one.
		if !strings.Contains(e.Proxy.Tail(1000), "CONNECT "+e.HubAddr) {
			t.Errorf("tinyproxy's log shows no CONNECT %s:\n%s", e.HubAddr, e.Proxy.Tail(20))
		}
	})

	t.Run("get pods -A", func(t *testing.T) {
		out := kubectl(t, "get", "pods", "-A", "-o", "name")
		if !strings.Contains(out, "pod/worker") {
			t.Errorf("kubectl get pods -A through the tunnel:\n%s\nwant pod/worker", out)
		}
	})

	t.Run("auth whoami is the service account", func(t *testing.T) {
		out := kubectl(t, "auth", "whoami", "-o", "jsonpath={.status.userInfo.username}")
		if diff := cmp.Diff("system:serviceaccount:default:demo-user", out); diff != "" {
			t.Errorf("whoami (-want +got):\n%s", diff)
		}
	})

	t.Run("a wrong token gets the API server's 401", func(t *testing.T) {
		bad := startProxy(t, e, e.SAToken+"x")
		out, err := bad.Kubectl(ctx, "", "get", "pods").CombinedOutput()
		if err == nil || !strings.Contains(string(out), "You must be logged in to the server") {
			t.Errorf("kubectl with a wrong token: err=%v\n%s\nwant kubectl's message for a 401", err, out)
		}
		// The 401 is the API server's own: its Status says just "Unauthorized"
		// (the hub's and the agent's refusals explain themselves at length).
		cfg, err := clientcmd.BuildConfigFromFlags("", bad.Kubeconfig)
		if err != nil {
			t.Fatal(err)
		}
		client, err := kubernetes.NewForConfig(cfg)
		if err != nil {
			t.Fatal(err)
		}
		_, err = client.CoreV1().Pods("default").List(ctx, metav1.ListOptions{})
		var status *apierrors.StatusError
		if !errors.As(err, &status) || status.ErrStatus.Code != 401 || status.ErrStatus.Message != "Unauthorized" {
			t.Errorf("list pods with a wrong token: %v; want the API server's 401 Status", err)
		}
	})

	t.Run("impersonation headers are stripped", func(t *testing.T) {
		// demo-user is cluster-admin, so it may impersonate; the hub and agent
		// must still drop the header: whoami stays demo-user.
		out := kubectl(t, "auth", "whoami", "--as", "someone-else", "-o", "jsonpath={.status.userInfo.username}")
		if diff := cmp.Diff("system:serviceaccount:default:demo-user", out); diff != "" {
			t.Errorf("whoami --as (-want +got):\n%s", diff)
		}
	})

	t.Run("watch receives a later change", func(t *testing.T) {
		wctx, wcancel := context.WithTimeout(ctx, 60*time.Second)
		defer wcancel()
		cmd := lp.Kubectl(wctx, "", "get", "configmaps", "-n", "default", "-w", "-o", "name")
		out, _ := cmd.StdoutPipe()
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		defer cmd.Wait()
		defer wcancel()
		sc := bufio.NewScanner(out)
		if !sc.Scan() { // the initial list (kube-root-ca.crt) proves the watch is established
			t.Fatal("watch printed nothing")
		}
		admin(t, "", "create", "configmap", "watched-later", "-n", "default")
		for sc.Scan() {
			if sc.Text() == "configmap/watched-later" {
				return
			}
		}
		t.Fatal("the watch ended without showing configmap/watched-later")
	})

	t.Run("apply and delete a deployment", func(t *testing.T) {
		deploy := `{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"sleeper","namespace":"default"},
			"spec":{"replicas":1,"selector":{"matchLabels":{"app":"sleeper"}},"template":{"metadata":{"labels":{"app":"sleeper"}},
			"spec":{"containers":[{"name":"s","image":"none","command":["/bin/sleep","3600"]}]}}}}`
		apply := lp.Kubectl(ctx, "", "apply", "-f", "-")
		apply.Stdin = strings.NewReader(deploy)
		if out, err := apply.CombinedOutput(); err != nil {
			t.Fatalf("apply: %v\n%s", err, out)
		}
		kubectl(t, "rollout", "status", "deployment/sleeper", "--timeout=60s")
		kubectl(t, "delete", "deployment", "sleeper", "--wait=true", "--timeout=60s")
		kubectl(t, "wait", "--for=delete", "pod", "-l", "app=sleeper", "--timeout=60s")
		if out := kubectl(t, "get", "deployments", "-o", "name"); strings.Contains(out, "sleeper") {
			t.Errorf("deployment still listed after delete:\n%s", out)
		}
	})

	t.Run("logs -f streams", func(t *testing.T) {
		lctx, lcancel := context.WithTimeout(ctx, 60*time.Second)
		defer lcancel()
		cmd := lp.Kubectl(lctx, "", "logs", "-f", "worker", "-c", "ticker", "--tail=1")
		out, _ := cmd.StdoutPipe()
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		defer cmd.Wait()
		defer lcancel()
		sc := bufio.NewScanner(out)
		var seen []string
		for len(seen) < 10 && sc.Scan() {
			seen = append(seen, sc.Text())
		}
		// --tail=1 shows one old line; the other nine were written while
		// the stream was open, so they prove streaming, not buffering.
		if len(seen) < 10 || seen[0] == seen[9] {
			t.Fatalf("logs -f gave %q, want ten successive ticks", seen)
		}
	})

	for _, tc := range []struct {
		name, version string
		env           []string
	}{
		{name: "WebSocket (kubectl 1.33)", version: "1.33"},
		{name: "SPDY (kubectl 1.27)", version: "1.27"},
	} {
		t.Run("exec with stdin and exit code over "+tc.name, func(t *testing.T) {
			cmd := lp.Kubectl(ctx, tc.version, "exec", "-i", "worker", "-c", "ticker", "--", "/bin/sh", "-c", "tr a-z A-Z; exit 7")
			cmd.Stdin = strings.NewReader("through the tunnel\n")
			out, err := cmd.Output()
			if diff := cmp.Diff("THROUGH THE TUNNEL\n", string(out)); diff != "" {
				t.Errorf("stdout (-want +got):\n%s (err %v)", diff, testenv.ExitDetail(err))
			}
			if code := cmd.ProcessState.ExitCode(); code != 7 {
				t.Errorf("exit code %d, want 7", code)
			}
		})
		t.Run("exec -it with a TTY over "+tc.name, func(t *testing.T) {
			bin := lp.Kubectl(ctx, tc.version).Path
			// script(1) gives kubectl a real terminal, as a person's shell would.
			line := fmt.Sprintf("KUBECONFIG=%s %s exec -it worker -c ticker -- /bin/sh -c 'tty; stty size; read x; echo got-$x'", lp.Kubeconfig, bin)
			cmd := exec.CommandContext(ctx, "script", "-qec", line, "/dev/null")
			// The typed line, and no end of input until the command is
			// done: at the end of its input script(1) ends the session,
			// and on a slow machine that came before `read x` (kubectl 1.27
			// printed the tty and the size, then nothing).
			stdin, typed, err := os.Pipe()
			if err != nil {
				t.Fatal(err)
			}
			defer stdin.Close()
			defer typed.Close()
			if _, err := typed.WriteString("hello\n"); err != nil {
				t.Fatal(err)
			}
			cmd.Stdin = stdin
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("exec -it: %v\n%s", err, out)
			}
			s := string(out)
			if !strings.Contains(s, "/dev/pts/") || !strings.Contains(s, "got-hello") {
				t.Errorf("exec -it output %q: want a pts device name and got-hello", s)
			}
		})
	}

	t.Run("attach to the main process", func(t *testing.T) {
		actx, acancel := context.WithTimeout(ctx, 60*time.Second)
		defer acancel()
		cmd := lp.Kubectl(actx, "", "attach", "-i", "worker", "-c", "reader")
		stdin, _ := cmd.StdinPipe()
		out, _ := cmd.StdoutPipe()
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		defer cmd.Wait()
		defer acancel()
		sc := bufio.NewScanner(out)
		// The attach is live once the first echo comes back; keep writing
		// until it does, since attach may connect after the first line.
		got := make(chan string, 1)
		go func() {
			for sc.Scan() {
				if strings.HasPrefix(sc.Text(), "got:attach-") {
					got <- sc.Text()
					return
				}
			}
		}()
		tick := time.NewTicker(200 * time.Millisecond)
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case line := <-got:
				t.Logf("attach echoed %q", line)
				return
			case <-tick.C:
				fmt.Fprintf(stdin, "attach-%d\n", i)
			case <-actx.Done():
				t.Fatal("attach never echoed a line")
			}
		}
	})

	t.Run("cp both ways", func(t *testing.T) {
		dir := t.TempDir()
		local := filepath.Join(dir, "up.bin")
		data := make([]byte, 3<<20)
		rand.NewChaCha8([32]byte{1}).Read(data)
		if err := os.WriteFile(local, data, 0o600); err != nil {
			t.Fatal(err)
		}
		remote := fmt.Sprintf("/tmp/tether-e2e-cp-%d.bin", rand.Int())
		defer os.Remove(remote)
		kubectl(t, "cp", local, "worker:"+remote, "-c", "ticker")
		back := filepath.Join(dir, "down.bin")
		kubectl(t, "cp", "worker:"+remote, back, "-c", "ticker")
		got, err := os.ReadFile(back)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, data) {
			t.Errorf("cp round trip: got %d bytes, want the %d sent", len(got), len(data))
		}
	})

	t.Run("port-forward carries 64 MiB intact", func(t *testing.T) {
		const size = 64 << 20
		through := portForwardRun(t, ctx, self, size, func(pctx context.Context, local int) *exec.Cmd {
			return lp.Kubectl(pctx, "", "port-forward", "pod/worker", fmt.Sprintf("%d:%d", local, echoPort))
		}, func(pctx context.Context, name string, args ...string) *exec.Cmd {
			return exec.CommandContext(pctx, name, args...)
		})
		direct := portForwardRun(t, ctx, self, size, func(pctx context.Context, local int) *exec.Cmd {
			return e.Cluster.Kubectl(pctx, "port-forward", "pod/worker", fmt.Sprintf("%d:%d", local, echoPort))
		}, e.NS.Command)
		mib := float64(2*size) / (1 << 20) // sent and echoed back
		t.Logf("port-forward 64 MiB echo: through tether %.2fs (%.1f MiB/s), direct inside the cluster %.2fs (%.1f MiB/s), ratio %.2f",
			through, mib/through, direct, mib/direct, through/direct)
	})

	t.Run("a stalled stream does not slow the others", func(t *testing.T) {
		sctx, scancel := context.WithCancel(ctx)
		defer scancel()
		// logs -f of a chatty container whose output nobody reads: kubectl
		// stops reading its socket, the tunnel stream's window fills, and the
		// agent stops reading from the API server for that stream only.
		stalled := lp.Kubectl(sctx, "", "logs", "-f", "worker", "-c", "ticker", "--tail=-1")
		pr, pw, _ := os.Pipe()
		stalled.Stdout = pw
		if err := stalled.Start(); err != nil {
			t.Fatal(err)
		}
		pw.Close()
		defer func() {
			scancel()
			stalled.Wait()
			pr.Close()
		}()
		var worst time.Duration
		for i := range 20 {
			start := time.Now()
			rctx, rcancel := context.WithTimeout(ctx, 30*time.Second)
			out, err := lp.Kubectl(rctx, "", "get", "--raw", "/version").CombinedOutput()
			rcancel()
			if err != nil {
				t.Fatalf("request %d alongside the stalled stream: %v\n%s", i, err, out)
			}
			worst = max(worst, time.Since(start))
		}
		t.Logf("20 requests alongside a stalled logs -f: slowest %s (kubectl process start included)", worst.Round(time.Millisecond))
	})

	t.Run("signed-in user, Kubernetes-RBAC mode: the seed flow with the object ID", func(t *testing.T) {
		tok, err := sharedIdP.UserToken(ctx, alice.Username, alice.Password, oidcprovider.DefaultAudience)
		if err != nil {
			t.Fatal(err)
		}
		oid := oidcprovider.NameUUID("user/" + alice.Username)
		user := startProxy(t, e, tok.AccessToken)
		run := func(args ...string) (string, error) {
			out, err := user.Kubectl(ctx, "", args...).CombinedOutput()
			return string(out), err
		}
		// No Cluster User yet: refused at the hub, naming the role. (--raw:
		// a fresh kubectl's discovery prints only "Forbidden: unknown" for
		// any 403 on /api, whatever the Status says.)
		if out, err := run("get", "--raw", "/api/v1/namespaces/default/pods"); err == nil || !strings.Contains(out, "Cluster User") {
			t.Fatalf("before any assignment: err=%v\n%s\nwant a Forbidden Status naming Cluster User", err, out)
		}
		clusterID := "/groups/" + e.Group + "/clusters/" + e.Name
		if out, err := e.TetherCmd(ctx, "role", "assignment", "create", "--role", "Cluster User", "--assignee", alice.Groups[0],
			"--assignee-type", "group", "--scope", clusterID).CombinedOutput(); err != nil {
			t.Fatalf("assign Cluster User: %v\n%s", err, out)
		}
		who, err := run("auth", "whoami", "-o", "jsonpath={.status.userInfo.username} {.status.userInfo.groups}")
		if err != nil {
			t.Fatalf("whoami: %v\n%s", err, who)
		}
		for _, want := range append([]string{oid}, alice.Groups...) {
			if !strings.Contains(who, want) {
				t.Errorf("whoami %q lacks %s", who, want)
			}
		}
		// The API server decides: nothing bound to the object ID yet.
		if out, err := run("get", "pods"); err == nil || !strings.Contains(out, "Forbidden") || !strings.Contains(out, oid) {
			t.Errorf("get pods before the binding: err=%v\n%s\nwant the API server's Forbidden for %s", err, out, oid)
		}
		admin(t, "", "create", "clusterrolebinding", "alice-view", "--clusterrole", "view", "--user", oid)
		if out, err := run("get", "pods", "-o", "name"); err != nil || !strings.Contains(out, "pod/worker") {
			t.Errorf("get pods after binding view to the object ID: err=%v\n%s", err, out)
		}
		if out, err := run("get", "secrets"); err == nil {
			t.Errorf("view let the user read secrets:\n%s", out)
		}
		if out, err := run("auth", "whoami", "--as", "admin", "--as-group", "system:masters"); err != nil || !strings.Contains(out, oid) {
			t.Errorf("client impersonation headers changed the identity: err=%v\n%s", err, out)
		}
	})

	t.Run("signed-in user, hub-RBAC mode: roles from the hub, revocation on the next request", func(t *testing.T) {
		// The same cluster registered a second time, in hub-RBAC mode, with
		// its own agent: the hub's assignments decide there.
		out, err := e.TetherCmd(ctx, "cluster", "create", "-g", e.Group, "-n", "edge-1-hub", "--mode", "hub-rbac", "-o", "json").Output()
		if err != nil {
			t.Fatalf("register the hub-RBAC cluster: %v", testenv.ExitDetail(err))
		}
		var created struct {
			Cluster struct{ ID string }
			Join    struct{ JoinToken string }
		}
		if err := json.Unmarshal(out, &created); err != nil {
			t.Fatal(err)
		}
		agent2, err := e.StartAgent("agent-hub-rbac", created.Join.JoinToken)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { agent2.Stop(syscall.SIGTERM, 15*time.Second) })
		oid := oidcprovider.NameUUID("user/" + alice.Username)
		assign := func(role, scope string) string {
			out, err := e.TetherCmd(ctx, "role", "assignment", "create", "--role", role, "--assignee", oid, "--scope", scope, "-o", "json").Output()
			if err != nil {
				t.Fatalf("assign %s at %s: %v", role, scope, testenv.ExitDetail(err))
			}
			var v struct{ ID string }
			json.Unmarshal(out, &v)
			return v.ID
		}
		assign("Cluster User", created.Cluster.ID)
		assign("Kubernetes Viewer", created.Cluster.ID)
		tok, err := sharedIdP.UserToken(ctx, alice.Username, alice.Password, oidcprovider.DefaultAudience)
		if err != nil {
			t.Fatal(err)
		}
		dir := t.TempDir()
		user, err := e.StartProxyTo(ctx, dir, "edge-1-hub", tok.AccessToken)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { user.Proc.Stop(syscall.SIGINT, 15*time.Second) })
		run := func(args ...string) (string, error) {
			out, err := user.Kubectl(ctx, "", args...).CombinedOutput()
			return string(out), err
		}
		// The agent's reconciler makes the bindings once it learns the mode.
		deadline := time.Now().Add(60 * time.Second)
		for {
			out, err := run("get", "pods", "-o", "name")
			if err == nil && strings.Contains(out, "pod/worker") {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("Viewer never listed pods: %v\n%s\nagent log:\n%s", err, out, agent2.Tail(30))
			}
			time.Sleep(200 * time.Millisecond) // polling the agent's reconciler from outside
		}
		exec := []string{"exec", "worker", "-c", "ticker", "--", "/bin/echo", "exec-ok"}
		if out, err := run("get", "secrets"); err == nil || !strings.Contains(out, "Forbidden") {
			t.Errorf("Viewer read secrets: err=%v\n%s", err, out)
		}
		if out, err := run(exec...); err == nil || !strings.Contains(out, "Forbidden") {
			t.Errorf("Viewer could exec: err=%v\n%s", err, out)
		}
		writer := assign("Kubernetes Writer", created.Cluster.ID+"/namespaces/default")
		if out, err := run(exec...); err != nil || !strings.Contains(out, "exec-ok") {
			t.Errorf("Writer in default could not exec: err=%v\n%s", err, out)
		}
		if out, err := run("get", "pods", "-n", "kube-system", "-o", "name"); err != nil {
			t.Errorf("cluster-wide Viewer could not list kube-system: err=%v\n%s", err, out)
		}
		if out, err := e.TetherCmd(ctx, "role", "assignment", "delete", "--ids", writer).CombinedOutput(); err != nil {
			t.Fatalf("delete the Writer assignment: %v\n%s", err, out)
		}
		if out, err := run(exec...); err == nil || !strings.Contains(out, "Forbidden") {
			t.Errorf("exec still allowed on the request after the Writer assignment was deleted: err=%v\n%s", err, out)
		}
	})

	t.Run("a user in 500 groups: the overage is resolved, a group assignment works", func(t *testing.T) {
		tok, err := sharedIdP.UserToken(ctx, olga.Username, olga.Password, oidcprovider.DefaultAudience)
		if err != nil {
			t.Fatal(err)
		}
		claims, err := oidcprovider.DecodeClaims(tok.AccessToken)
		if err != nil {
			t.Fatal(err)
		}
		if _, inline := claims["groups"]; inline || claims["_claim_names"] == nil {
			t.Fatalf("olga's token should carry a group overage, not inline groups: %v", claims["_claim_names"])
		}
		oid := oidcprovider.NameUUID("user/" + olga.Username)
		clusterID := "/groups/" + e.Group + "/clusters/" + e.Name
		// Cluster User through her 322nd group, view through her 458th.
		if out, err := e.TetherCmd(ctx, "role", "assignment", "create", "--role", "Cluster User", "--assignee", olga.Groups[321],
			"--assignee-type", "group", "--scope", clusterID).CombinedOutput(); err != nil {
			t.Fatalf("assign: %v\n%s", err, out)
		}
		admin(t, "", "create", "clusterrolebinding", "olga-group-view", "--clusterrole", "view", "--group", olga.Groups[457])
		user := startProxy(t, e, tok.AccessToken)
		out, err := user.Kubectl(ctx, "", "get", "pods", "-o", "name").CombinedOutput()
		if err != nil || !strings.Contains(string(out), "pod/worker") {
			t.Fatalf("olga through her groups: err=%v\n%s", err, out)
		}
		who, err := user.Kubectl(ctx, "", "auth", "whoami", "-o", "jsonpath={.status.userInfo.username} {.status.userInfo.groups}").CombinedOutput()
		if err != nil || !strings.Contains(string(who), oid) || !strings.Contains(string(who), olga.Groups[0]) || !strings.Contains(string(who), olga.Groups[499]) {
			t.Errorf("whoami: err=%v; want the object ID and all 500 groups, got %d bytes", err, len(who))
		}
	})

	t.Run("a service principal (client credentials)", func(t *testing.T) {
		tok, err := sharedIdP.ClientCredentialsToken(ctx, ciBot.ID, ciBot.Secret, oidcprovider.DefaultAudience)
		if err != nil {
			t.Fatal(err)
		}
		sp := oidcprovider.NameUUID("client/" + ciBot.ID)
		clusterID := "/groups/" + e.Group + "/clusters/" + e.Name
		if out, err := e.TetherCmd(ctx, "role", "assignment", "create", "--role", "Cluster User", "--assignee", sp,
			"--assignee-type", "servicePrincipal", "--scope", clusterID).CombinedOutput(); err != nil {
			t.Fatalf("assign: %v\n%s", err, out)
		}
		admin(t, "", "create", "clusterrolebinding", "ci-bot-edit", "--clusterrole", "edit", "--user", sp)
		bot := startProxy(t, e, tok)
		who, err := bot.Kubectl(ctx, "", "auth", "whoami", "-o", "jsonpath={.status.userInfo.username}").CombinedOutput()
		if diff := cmp.Diff(sp, string(who)); err != nil || diff != "" {
			t.Errorf("whoami as the service principal (-want +got):\n%s (err %v)", diff, err)
		}
		if out, err := bot.Kubectl(ctx, "", "create", "configmap", "made-by-ci-bot").CombinedOutput(); err != nil {
			t.Errorf("edit lets the service principal create a configmap: %v\n%s", err, out)
		}
	})

	t.Run("service principal: tether login, get-credentials, kubectl with the exec plugin straight to the hub", func(t *testing.T) {
		home := t.TempDir()
		kc := filepath.Join(t.TempDir(), "kubeconfig")
		tether := func(args ...string) string {
			cmd := e.TetherCmd(ctx, args...)
			cmd.Env = append(cmd.Env, "HOME="+home)
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("tether %s: %v\n%s", strings.Join(args, " "), err, out)
			}
			return string(out)
		}
		secretFile := filepath.Join(t.TempDir(), "secret")
		os.WriteFile(secretFile, []byte(ciBot.Secret+"\n"), 0o600)
		tether("login", "--service-principal", "-u", ciBot.ID, "--password-file", secretFile)
		tether("get-credentials", "-g", e.Group, "-n", e.Name, "-u", ciBot.ID, "-f", kc)
		kubectl := exec.CommandContext(ctx, "kubectl", "--kubeconfig", kc, "auth", "whoami", "-o", "jsonpath={.status.userInfo.username}")
		kubectl.Env = append(os.Environ(), "HOME="+home)
		out, err := kubectl.CombinedOutput()
		if diff := cmp.Diff(oidcprovider.NameUUID("client/"+ciBot.ID), string(out)); err != nil || diff != "" {
			t.Errorf("whoami through the exec plugin (-want +got):\n%s (err %v)", diff, err)
		}
		if info, err := os.Stat(filepath.Join(home, ".kube", "cache", "tether")); err != nil || info.Mode().Perm() != 0o700 {
			t.Errorf("token cache directory: stat err %v; want it to exist with mode 0700", err)
		}
		raw, _ := os.ReadFile(kc)
		if strings.Contains(string(raw), ciBot.Secret) {
			t.Errorf("the kubeconfig holds the secret")
		}
		// tether proxy without --token: the signed-in service principal.
		lp, err := e.StartProxyWith(ctx, t.TempDir(), e.Name, []string{"-u", ciBot.ID}, []string{"HOME=" + home})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { lp.Proc.Stop(syscall.SIGINT, 15*time.Second) })
		who, err := lp.Kubectl(ctx, "", "auth", "whoami", "-o", "jsonpath={.status.userInfo.username}").CombinedOutput()
		if diff := cmp.Diff(oidcprovider.NameUUID("client/"+ciBot.ID), string(who)); err != nil || diff != "" {
			t.Errorf("whoami through tether proxy without --token (-want +got):\n%s (err %v)", diff, err)
		}
		tether("logout")
		kubectl = exec.CommandContext(ctx, "kubectl", "--kubeconfig", kc, "get", "pods")
		kubectl.Env = append(os.Environ(), "HOME="+home)
		if out, err := kubectl.CombinedOutput(); err == nil || !strings.Contains(string(out), "tether login") {
			t.Errorf("after logout: err=%v\n%s\nwant a failure telling to run tether login", err, out)
		}
	})

	t.Run("a token naming system:masters is refused at the hub", func(t *testing.T) {
		tok, err := sharedIdP.UserToken(ctx, mallory.Username, mallory.Password, oidcprovider.DefaultAudience)
		if err != nil {
			t.Fatal(err)
		}
		m := startProxy(t, e, tok.AccessToken)
		out, err := m.Kubectl(ctx, "", "get", "--raw", "/api/v1/namespaces/default/pods").CombinedOutput()
		if err == nil || !strings.Contains(string(out), "system:") {
			t.Errorf("mallory: err=%v\n%s\nwant a refusal naming the system: group", err, out)
		}
	})

	t.Run("cut network: the hub notices and kubectl gets a clear error", func(t *testing.T) {
		// Drop (not reject) the agent's only way out (to the forward proxy).
		host, port, _ := net.SplitHostPort(e.AgentEgress)
		rule := []string{"nft", "insert", "rule", "inet", "tether", "output", "ip", "daddr", host, "tcp", "dport", port, "drop"}
		if out, err := e.NS.Command(ctx, rule[0], rule[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("cut the network: %v\n%s", err, out)
		}
		restored := false
		restore := func() {
			if restored {
				return
			}
			restored = true
			out, _ := e.NS.Command(ctx, "nft", "-a", "list", "chain", "inet", "tether", "output").Output()
			for line := range strings.Lines(string(out)) {
				if strings.Contains(line, "dport "+port+" drop") {
					_, handle, _ := strings.Cut(line, "# handle ")
					e.NS.Command(ctx, "nft", "delete", "rule", "inet", "tether", "output", "handle", strings.TrimSpace(handle)).Run()
				}
			}
		}
		defer restore()
		cut := time.Now()
		if err := e.WaitConnected(ctx, false, 45*time.Second); err != nil {
			t.Fatalf("the hub did not notice the cut within 45 s: %v", err)
		}
		t.Logf("hub noticed the dropped network after %s", time.Since(cut).Round(100*time.Millisecond))
		out, err := lp.Kubectl(ctx, "", "get", "pods").CombinedOutput()
		if err == nil || !strings.Contains(string(out), "ServiceUnavailable") || !strings.Contains(string(out), e.Group+"/"+e.Name) ||
			!strings.Contains(string(out), "last seen") {
			t.Errorf("kubectl while the agent is away: err=%v\n%s\nwant a ServiceUnavailable Status naming the cluster and when it was last seen", err, out)
		}
		restore()
		back := time.Now()
		if err := e.WaitConnected(ctx, true, 90*time.Second); err != nil {
			t.Fatalf("agent did not come back after the network returned: %v\n%s", err, e.Agent.Tail(40))
		}
		t.Logf("agent reconnected %s after the network returned", time.Since(back).Round(100*time.Millisecond))
	})

	t.Run("hub restart mid-watch: the watch ends, the agent reconnects", func(t *testing.T) {
		wctx, wcancel := context.WithTimeout(ctx, 2*time.Minute)
		defer wcancel()
		watch := lp.Kubectl(wctx, "", "get", "pods", "-w", "-o", "name")
		out, _ := watch.StdoutPipe()
		if err := watch.Start(); err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(out)
		if !sc.Scan() {
			t.Fatal("watch printed nothing")
		}
		watchDone := make(chan error, 1)
		go func() {
			io.Copy(io.Discard, out)
			watchDone <- watch.Wait()
		}()
		e.Hub.Stop(syscall.SIGKILL, 15*time.Second)
		select {
		case err := <-watchDone:
			if err == nil {
				t.Error("the watch ended cleanly when the hub died; want an error")
			}
		case <-time.After(60 * time.Second):
			t.Fatal("the watch hung after the hub died")
		}
		restart := time.Now()
		if err := e.StartHub(ctx); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(60 * time.Second)
		for {
			rctx, rcancel := context.WithTimeout(ctx, 10*time.Second)
			_, err := lp.Kubectl(rctx, "", "get", "pods", "-o", "name").Output()
			rcancel()
			if err == nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("kubectl still failing 60 s after the hub restarted: %v\nagent log:\n%s", testenv.ExitDetail(err), e.Agent.Tail(40))
			}
			time.Sleep(100 * time.Millisecond) // polling the reconnect from outside
		}
		t.Logf("kubectl worked again %s after the hub restarted", time.Since(restart).Round(100*time.Millisecond))
	})
}

// portForwardRun starts a port-forward with start (run by run, inside or
// outside the namespace), pushes size bytes through it and back with the
// echo client (run the same way), and returns the seconds it took.
func portForwardRun(t *testing.T, ctx context.Context, self string, size int,
	start func(ctx context.Context, local int) *exec.Cmd,
	run func(ctx context.Context, name string, args ...string) *exec.Cmd) float64 {
	t.Helper()
	pctx, pcancel := context.WithCancel(ctx)
	defer pcancel()
	local := 40000 + rand.IntN(20000)
	pf := start(pctx, local)
	out, _ := pf.StdoutPipe()
	var stderr bytes.Buffer
	pf.Stderr = &stderr
	if err := pf.Start(); err != nil {
		t.Fatal(err)
	}
	defer pf.Wait()
	defer pcancel()
	sc := bufio.NewScanner(out)
	if !sc.Scan() || !strings.HasPrefix(sc.Text(), "Forwarding from") {
		t.Fatalf("port-forward did not start: %q %s", sc.Text(), stderr.String())
	}
	go io.Copy(io.Discard, out)
	client := run(ctx, self)
	client.Env = append(os.Environ(), podprog.EchoClientEnv(fmt.Sprintf("127.0.0.1:%d", local), size)...)
	res, err := client.CombinedOutput()
	if err != nil || !strings.HasPrefix(string(res), "ok ") {
		t.Fatalf("64 MiB through port-forward: %v: %s", err, res)
	}
	secs, _ := strconv.ParseFloat(strings.TrimSpace(strings.TrimPrefix(string(res), "ok ")), 64)
	return secs
}

package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"tether.dev/tether/test/rig"
	"tether.dev/tether/test/testenv"
)

// insideCmd is tether run inside the cluster's network namespace, where the
// operator's kubeconfig reaches the API server and the hub is reachable
// only through the forward proxy.
func insideCmd(ctx context.Context, e *testenv.Env, args ...string) *exec.Cmd {
	cmd := e.NS.Command(ctx, e.Tether, args...)
	apiHost := strings.TrimPrefix(e.Cluster.Server, "https://")
	apiHost = apiHost[:strings.LastIndex(apiHost, ":")]
	cmd.Env = append(os.Environ(), "TETHER_HUB="+e.HubURL, "TETHER_HUB_CA="+e.HubCA, "TETHER_ADMIN_TOKEN_FILE="+e.AdminTokenFile,
		"HTTPS_PROXY=http://"+e.ProxyAddr, "NO_PROXY="+apiHost)
	return cmd
}

// agentFromObjects starts `tether agent` as the Deployment that connect
// applied describes it: its args, its environment (the join token from the
// Secret, the proxy block), its CA ConfigMap as files, and the credentials
// of its ServiceAccount. (The rig's node runs pods as local processes and
// has no tether image.) Only file paths and the health port are rewritten.
func agentFromObjects(t *testing.T, ctx context.Context, e *testenv.Env, ns string) *rig.Process {
	t.Helper()
	kubectl := func(args ...string) []byte {
		t.Helper()
		out, err := e.Cluster.Kubectl(ctx, args...).Output()
		if err != nil {
			t.Fatalf("kubectl %s: %v", strings.Join(args, " "), testenv.ExitDetail(err))
		}
		return out
	}
	var deploy struct {
		Spec struct {
			Template struct {
				Spec struct {
					ServiceAccountName string
					Containers         []struct {
						Args []string
						Env  []struct {
							Name      string
							Value     string
							ValueFrom *struct {
								SecretKeyRef *struct{ Name, Key string }
							}
						}
						VolumeMounts []struct{ Name, MountPath string }
					}
					Volumes []struct {
						Name      string
						ConfigMap *struct{ Name string }
					}
				}
			}
		}
	}
	if err := json.Unmarshal(kubectl("get", "deployment", "-n", ns, "tether-agent", "-o", "json"), &deploy); err != nil {
		t.Fatal(err)
	}
	pod := deploy.Spec.Template.Spec
	if len(pod.Containers) != 1 {
		t.Fatalf("the agent Deployment has %d containers", len(pod.Containers))
	}
	c := pod.Containers[0]
	dir := t.TempDir()
	var env []string
	for _, v := range c.Env {
		switch {
		case v.ValueFrom != nil && v.ValueFrom.SecretKeyRef != nil:
			var sec struct{ Data map[string][]byte }
			out, err := e.Cluster.Kubectl(ctx, "get", "secret", "-n", ns, v.ValueFrom.SecretKeyRef.Name, "-o", "json").Output()
			if err != nil {
				continue // optional: an enrolled agent runs without it
			}
			json.Unmarshal(out, &sec)
			env = append(env, v.Name+"="+string(sec.Data[v.ValueFrom.SecretKeyRef.Key]))
		default:
			env = append(env, v.Name+"="+v.Value)
		}
	}
	args := append([]string(nil), c.Args...)
	for _, m := range c.VolumeMounts {
		for _, vol := range pod.Volumes {
			if vol.Name != m.Name || vol.ConfigMap == nil {
				continue
			}
			var cm struct{ Data map[string]string }
			json.Unmarshal(kubectl("get", "configmap", "-n", ns, vol.ConfigMap.Name, "-o", "json"), &cm)
			local := filepath.Join(dir, m.Name)
			os.MkdirAll(local, 0o700)
			for k, v := range cm.Data {
				os.WriteFile(filepath.Join(local, k), []byte(v), 0o600)
			}
			for i := range args {
				args[i] = strings.ReplaceAll(args[i], m.MountPath, local)
			}
		}
	}
	for i, a := range args {
		// Several agents share the network namespace: free ports.
		for _, f := range []string{"--health-listen", "--health-probe-bind-address", "--metrics-bind-address"} {
			if strings.HasPrefix(a, f+"=") {
				args[i] = f + "=127.0.0.1:0"
			}
		}
	}
	token := strings.TrimSpace(string(kubectl("create", "token", "-n", ns, pod.ServiceAccountName)))
	kc := filepath.Join(dir, "kubeconfig")
	kubeconfig := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: %q, certificate-authority: %q}}]
users: [{name: sa, user: {token: %q}}]
contexts: [{name: c, context: {cluster: c, user: sa}}]
current-context: c
`, e.Cluster.Server, e.Cluster.CAFile, token)
	if err := os.WriteFile(kc, []byte(kubeconfig), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := e.NS.Command(context.Background(), e.Tether, append(args, "--kubeconfig", kc)...)
	if args[0] != "agent" {
		t.Fatalf("the Deployment's args %q do not run tether agent", args)
	}
	cmd.Env = append(os.Environ(), env...)
	p, err := rig.StartProcess("connected-agent", filepath.Join(dir, "agent.log"), cmd)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Stop(syscall.SIGTERM, 15*time.Second) })
	return p
}

// TestClusterConnect is a cluster's whole life from the operator's side:
// connect in one command, status as the agent comes and goes, locations,
// bad input, delete.
func TestClusterConnect(t *testing.T) {
	e := getEnv(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	const group, name, ns = "fleet", "edge-connected", "tether-system"
	tether := func(t *testing.T, args ...string) string { t.Helper(); return adminTether(t, ctx, e, args...) }
	show := func(t *testing.T, query string) string {
		return strings.TrimSpace(tether(t, "cluster", "show", "-g", group, "-n", name, "--query", query, "-o", "tsv"))
	}
	// The proxy is the only way to the hub; the API server is reached
	// directly (the agent never proxies it anyway).
	connectArgs := []string{"cluster", "connect", "-g", group, "-n", name, "--location", "west europe", "--kubeconfig", e.Cluster.Kubeconfig,
		"--proxy-https", "http://" + e.ProxyAddr, "--proxy-skip-range", e.Cluster.Address.String() + ",127.0.0.1", "--timeout", "2m", "-o", "json"}

	var agent *rig.Process
	t.Run("connect installs the agent and waits until it is connected", func(t *testing.T) {
		connect := insideCmd(ctx, e, connectArgs...)
		var stdout, stderr bytes.Buffer
		connect.Stdout, connect.Stderr = &stdout, &stderr
		if err := connect.Start(); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- connect.Wait() }()
		// connect applies the objects, then waits for the agent: run it
		// as they describe it, once the Deployment exists.
		for agent == nil {
			select {
			case err := <-done:
				t.Fatalf("connect ended before the agent ran: %v\n%s", err, stderr.String())
			case <-time.After(200 * time.Millisecond): // polling for the Deployment connect applies
			}
			if e.Cluster.Kubectl(ctx, "get", "deployment", "-n", ns, "tether-agent").Run() == nil {
				agent = agentFromObjects(t, ctx, e, ns)
			}
		}
		if err := <-done; err != nil {
			t.Fatalf("connect: %v\n%s\nagent log:\n%s", err, stderr.String(), agent.Tail(30))
		}
		t.Logf("connect said:\n%s", stderr.String())
		var view struct{ ID, Status, Location, AgentVersion, KubernetesVersion string }
		if err := json.Unmarshal(stdout.Bytes(), &view); err != nil || view.Status != "Connected" || view.Location != "westeurope" {
			t.Errorf("connect printed %s (%v); want a Connected cluster in westeurope", stdout.String(), err)
		}
		for _, want := range []string{"registered", "applied", "connected"} {
			if !strings.Contains(stderr.String(), want) {
				t.Errorf("connect's progress lacks %q:\n%s", want, stderr.String())
			}
		}
	})
	if agent == nil {
		t.FailNow()
	}

	t.Run("show and list report the agent", func(t *testing.T) {
		id := show(t, "id")
		if id != "/groups/"+group+"/clusters/"+name {
			t.Errorf("show --query id = %q", id)
		}
		if got := show(t, "[status, kubernetesVersion, to_string(nodeCount)] | join(' ', @)"); got != "Connected v1.37.2 1" {
			t.Errorf("status, Kubernetes version, nodes = %q; want \"Connected v1.37.2 1\"", got)
		}
		if got := show(t, "agentVersion"); got == "" {
			t.Error("show reports no agent version")
		}
		if out := tether(t, "cluster", "list", "-g", group); !strings.Contains(out, name) || !strings.Contains(out, "Connected") {
			t.Errorf("cluster list -g %s:\n%s", group, out)
		}
	})

	t.Run("re-running connect is safe", func(t *testing.T) {
		out, err := insideCmd(ctx, e, connectArgs...).CombinedOutput()
		if err != nil {
			t.Fatalf("second connect: %v\n%s", err, out)
		}
		if got := show(t, "status"); got != "Connected" {
			t.Errorf("after the second connect, status %q", got)
		}
	})

	t.Run("status: Offline when the agent stops, Connected when it is back", func(t *testing.T) {
		agent.Stop(syscall.SIGKILL, 5*time.Second)
		waitStatus := func(want string, limit time.Duration) {
			t.Helper()
			deadline := time.Now().Add(limit)
			for {
				got := show(t, "status")
				if got == want {
					return
				}
				if time.Now().After(deadline) {
					t.Fatalf("status %q after %s, want %s", got, limit, want)
				}
				time.Sleep(250 * time.Millisecond) // polling the hub's view
			}
		}
		start := time.Now()
		waitStatus("Offline", 30*time.Second)
		t.Logf("Offline %s after the agent was killed (offline window 3 s)", time.Since(start).Round(100*time.Millisecond))
		agent = agentFromObjects(t, ctx, e, ns)
		start = time.Now()
		waitStatus("Connected", 30*time.Second)
		t.Logf("Connected again %s after the agent restarted (state from its Secret)", time.Since(start).Round(100*time.Millisecond))
	})

	t.Run("endpoints and locations", func(t *testing.T) {
		if got := strings.TrimSpace(tether(t, "endpoints", "--location", "East US 2", "-o", "tsv")); got != e.HubAddr {
			t.Errorf("endpoints --location \"East US 2\" = %q, want %s", got, e.HubAddr)
		}
		if out := tether(t, "locations", "list", "-o", "table"); !strings.Contains(out, "eastus2") || !strings.Contains(out, "westeurope") {
			t.Errorf("locations list:\n%s", out)
		}
		out, err := e.TetherCmd(ctx, "endpoints", "--location", "Mars Central").CombinedOutput()
		if err == nil || !strings.Contains(string(out), "eastus2") || !strings.Contains(string(out), "westeurope") {
			t.Errorf("an unknown location: err=%v\n%s\nwant an error listing the valid ones", err, out)
		}
	})

	t.Run("bad input: a clear error, exit 2 for usage", func(t *testing.T) {
		unreachable := filepath.Join(t.TempDir(), "kubeconfig")
		os.WriteFile(unreachable, []byte("apiVersion: v1\nkind: Config\nclusters: [{name: c, cluster: {server: \"https://10.213.255.254:6443\"}}]\nusers: [{name: u, user: {token: x}}]\ncontexts: [{name: c, context: {cluster: c, user: u}}]\ncurrent-context: c\n"), 0o600)
		for _, tc := range []struct {
			name string
			args []string
			code int
			want string
		}{
			{"unknown cluster", []string{"cluster", "show", "-g", group, "-n", "no-such-cluster"}, 1, "no cluster"},
			{"invalid characters in the name", []string{"cluster", "show", "-g", group, "-n", "Edge_1!"}, 2, "name"},
			{"invalid characters on connect", []string{"cluster", "connect", "-g", group, "-n", "Edge_1!", "--kubeconfig", e.Cluster.Kubeconfig}, 2, "name"},
			{"unreachable kubeconfig", []string{"cluster", "connect", "-g", group, "-n", "edge-unreachable", "--kubeconfig", unreachable, "--timeout", "10s"}, 1, "reach the cluster's API server"},
			{"the same name from another agent namespace", append(append([]string(nil), connectArgs...), "--namespace", "tether-other"), 1, "already registered"},
			{"delete without a terminal and without --yes", []string{"cluster", "delete", "-g", group, "-n", name}, 2, "--yes"},
		} {
			cmd := insideCmd(ctx, e, tc.args...)
			out, err := cmd.CombinedOutput()
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() != tc.code || !strings.Contains(string(out), tc.want) {
				t.Errorf("%s: %v\n%s\nwant exit %d and %q", tc.name, err, out, tc.code, tc.want)
			}
			if lines := strings.Count(strings.TrimSpace(string(out)), "\n"); tc.code == 2 && lines > 1 {
				t.Errorf("%s: a usage error of %d lines:\n%s", tc.name, lines+1, out)
			}
		}
	})

	t.Run("delete removes the agent from the cluster and the cluster from the hub", func(t *testing.T) {
		out, err := insideCmd(ctx, e, "cluster", "delete", "-g", group, "-n", name, "--yes", "--kubeconfig", e.Cluster.Kubeconfig).CombinedOutput()
		if err != nil {
			t.Fatalf("delete: %v\n%s", err, out)
		}
		if out, err := e.TetherCmd(ctx, "cluster", "show", "-g", group, "-n", name).CombinedOutput(); err == nil || !strings.Contains(string(out), "no cluster") {
			t.Errorf("after delete, show: err=%v\n%s", err, out)
		}
		if out, err := e.Cluster.Kubectl(ctx, "get", "clusterrolebinding,deployment,serviceaccount", "-A", "-l", "app.kubernetes.io/managed-by=tether", "-o", "name").CombinedOutput(); err != nil || strings.TrimSpace(string(out)) != "" {
			t.Errorf("objects left in the cluster: err=%v\n%s", err, out)
		}
		select {
		case <-agent.Done():
		case <-time.After(30 * time.Second):
			t.Errorf("the deleted cluster's agent still runs:\n%s", agent.Tail(20))
		}
	})

	t.Run("through a proxy that intercepts TLS with its own CA (--proxy-cert)", func(t *testing.T) {
		mitm, err := e.StartInterceptingProxy(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer mitm.Close()
		// The first agent's namespace must be gone before it is made anew.
		deadline := time.Now().Add(60 * time.Second)
		for e.Cluster.Kubectl(ctx, "get", "namespace", ns).Run() == nil {
			if time.Now().After(deadline) {
				t.Fatalf("namespace %s still exists a minute after delete", ns)
			}
			time.Sleep(200 * time.Millisecond) // polling the namespace controller
		}
		const mitmName = "edge-behind-mitm"
		args := []string{"cluster", "connect", "-g", group, "-n", mitmName, "--kubeconfig", e.Cluster.Kubeconfig,
			"--proxy-https", "http://" + mitm.Addr, "--proxy-cert", mitm.CAFile, "--proxy-skip-range", e.Cluster.Address.String(), "--timeout", "2m"}
		connect := insideCmd(ctx, e, args...)
		var stderr bytes.Buffer
		connect.Stderr = &stderr
		if err := connect.Start(); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- connect.Wait() }()
		var a *rig.Process
		for a == nil {
			select {
			case err := <-done:
				t.Fatalf("connect ended before the agent ran: %v\n%s", err, stderr.String())
			case <-time.After(200 * time.Millisecond): // polling for the Deployment connect applies
			}
			if e.Cluster.Kubectl(ctx, "get", "deployment", "-n", ns, "tether-agent").Run() == nil {
				a = agentFromObjects(t, ctx, e, ns)
			}
		}
		if err := <-done; err != nil {
			t.Fatalf("connect through the intercepting proxy: %v\n%s\nagent log:\n%s\nsquid:\n%s", err, stderr.String(), a.Tail(30), mitm.Proc.Tail(20))
		}
		// The tunnel really carries requests through the bumped connection.
		lp, err := e.StartProxyWith(ctx, t.TempDir(), mitmName, []string{"-g", group, "--token", e.SAToken}, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer lp.Proc.Stop(syscall.SIGINT, 15*time.Second)
		if out, err := lp.Kubectl(ctx, "", "get", "serviceaccounts", "-o", "name").CombinedOutput(); err != nil || !strings.Contains(string(out), "serviceaccount/default") {
			t.Errorf("kubectl through the tunnel behind the intercepting proxy: %v\n%s", err, out)
		}
		access, _ := os.ReadFile(filepath.Join(filepath.Dir(mitm.CAFile), "access.log"))
		// Squid logs a request when it ends (the tunnel lives on): the
		// enrollment, logged with its https URL, shows it was decrypted.
		if !strings.Contains(string(access), "POST https://"+e.HubAddr+"/api/v1/agent/enroll") {
			t.Errorf("squid's access log shows no decrypted request (so it did not intercept):\n%s", access)
		}
		if out, err := insideCmd(ctx, e, "cluster", "delete", "-g", group, "-n", mitmName, "--yes", "--kubeconfig", e.Cluster.Kubeconfig).CombinedOutput(); err != nil {
			t.Errorf("delete: %v\n%s", err, out)
		}
	})
}

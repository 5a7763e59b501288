package e2e

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"k8s.io/client-go/rest"

	"tether.dev/tether/internal/agent"
	"tether.dev/tether/internal/store"
	"tether.dev/tether/internal/store/postgres"
	"tether.dev/tether/test/pgserver"
	"tether.dev/tether/test/testenv"
)

// TestReplicas runs the hub as three replicas on a real PostgreSQL behind a
// round-robin TCP load balancer, with the real cluster's agent dialing the
// balancer, and checks that any replica serves any cluster through kills,
// a rolling restart and a database outage.
func TestReplicas(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	pg := pgserver.Start(t)
	dsn := pg.NewDatabase(t)
	e, err := testenv.Start(ctx, testenv.Options{Log: os.Stderr, Group: "scale", Name: "edge-1", Replicas: 3, StoreURL: dsn,
		HubArgs: []string{"--heartbeat-interval", "1s", "--offline-after", "3s", "--replica-lease", "3s", "--drain-delay", "1s", "--drain-grace", "5s"}})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	st, err := postgres.Open(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	id := store.ClusterID(e.Group, e.Name)

	tc, err := e.HubTLS()
	if err != nil {
		t.Fatal(err)
	}
	// One client that reuses connections (as kubectl does), and one that
	// makes a new connection, so lands on the next replica, each time.
	keep := &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{TLSClientConfig: tc}}
	fresh := &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{TLSClientConfig: tc, DisableKeepAlives: true}}
	defer keep.CloseIdleConnections()
	get := func(c *http.Client, base, path string) (int, string, error) {
		req, _ := http.NewRequest("GET", base+"/k8s/"+e.Group+"/"+e.Name+path, nil)
		req.Header.Set("Authorization", "Bearer "+e.SAToken)
		resp, err := c.Do(req)
		if err != nil {
			return 0, "", err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b), nil
	}
	replicaURL := func(i int) string { return "https://" + e.Replicas[i].Addr }
	holder := func() string {
		c, err := st.GetCluster(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		return c.Tunnel.Replica
	}
	// waitAll waits until every replica serves the cluster, and returns how
	// long that took.
	waitAll := func(limit time.Duration) time.Duration {
		t.Helper()
		start := time.Now()
		for i := range e.Replicas {
			for {
				code, body, err := get(fresh, replicaURL(i), "/api/v1/namespaces/default")
				if err == nil && code == http.StatusOK {
					break
				}
				if time.Since(start) > limit {
					t.Fatalf("replica %s does not serve the cluster after %s: %d %s %v", e.Replicas[i].Name, limit, code, body, err)
				}
				time.Sleep(50 * time.Millisecond)
			}
		}
		return time.Since(start)
	}
	waitAll(30 * time.Second)

	// kubectl straight at one address: each run is a new connection.
	kubeconfig := func(base string) string {
		ca, _ := os.ReadFile(e.HubCA)
		cfg := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: %q, certificate-authority-data: %q}}]
users: [{name: u, user: {token: %q}}]
contexts: [{name: x, context: {cluster: c, user: u, namespace: default}}]
current-context: x
`, base+"/k8s/"+e.Group+"/"+e.Name, b64(ca), e.SAToken)
		path := filepath.Join(t.TempDir(), "kubeconfig")
		if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	admin := func(stdin string, args ...string) {
		t.Helper()
		cmd := e.Cluster.Kubectl(ctx, args...)
		cmd.Stdin = strings.NewReader(stdin)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("kubectl (inside) %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	pod := fmt.Sprintf(`{"apiVersion":"v1","kind":"Pod","metadata":{"name":"worker","namespace":"default"},
		"spec":{"nodeName":%q,"containers":[{"name":"ticker","image":"none","command":["/bin/sh","-c","while true; do sleep 1; done"]}]}}`, e.Cluster.NodeName)
	admin(pod, "apply", "-f", "-")
	admin("", "wait", "--for=condition=Ready", "pod/worker", "--timeout=60s")

	t.Run("every replica serves kubectl: get, exec and a watch", func(t *testing.T) {
		for i, r := range e.Replicas {
			kc := kubeconfig(replicaURL(i))
			kubectl := func(args ...string) (string, error) {
				out, err := testenv.Kubectl(ctx, kc, args...).CombinedOutput()
				return string(out), err
			}
			if out, err := kubectl("get", "pods", "-o", "name"); err != nil || !strings.Contains(out, "pod/worker") {
				t.Errorf("get pods through %s: %v\n%s", r.Name, err, out)
			}
			if out, err := kubectl("exec", "worker", "--", "/bin/echo", "exec-via-"+r.Name); err != nil || !strings.Contains(out, "exec-via-"+r.Name) {
				t.Errorf("exec through %s: %v\n%s", r.Name, err, out)
			}
			// A watch sees a namespace created after it started.
			wctx, wcancel := context.WithTimeout(ctx, 30*time.Second)
			watch := testenv.Kubectl(wctx, kc, "get", "namespaces", "--watch", "-o", "name")
			stdout, _ := watch.StdoutPipe()
			if err := watch.Start(); err != nil {
				t.Fatal(err)
			}
			seen := make(chan bool, 1)
			ns := "watched-" + r.Name
			go func() {
				b := make([]byte, 0, 4096)
				buf := make([]byte, 512)
				for {
					n, err := stdout.Read(buf)
					b = append(b, buf[:n]...)
					if strings.Contains(string(b), "namespace/"+ns) {
						seen <- true
						return
					}
					if err != nil {
						seen <- false
						return
					}
				}
			}()
			time.Sleep(time.Second) // let the watch start before the change it must see
			admin("", "create", "namespace", ns)
			if !<-seen {
				t.Errorf("a watch through %s did not see namespace %s", r.Name, ns)
			}
			wcancel()
			watch.Wait()
		}
	})

	t.Run("the replica holding the tunnel is killed", func(t *testing.T) {
		dead := holder()
		i := e.ReplicaIndex(dead)
		if i < 0 {
			t.Fatalf("the cluster's tunnel is held by %q, not a running replica", dead)
		}
		e.Replicas[i].Process.Stop(syscall.SIGKILL, time.Second)
		start := time.Now()
		for j := range e.Replicas {
			if j == i {
				continue
			}
			for {
				code, _, err := get(fresh, replicaURL(j), "/api/v1/namespaces/default")
				if err == nil && code == http.StatusOK {
					break
				}
				if time.Since(start) > 10*time.Second {
					t.Fatalf("replica %s does not reach the cluster 10 s after %s was killed: %d %v", e.Replicas[j].Name, dead, code, err)
				}
				time.Sleep(50 * time.Millisecond)
			}
		}
		t.Logf("reachable through every other replica %s after the holder was killed", time.Since(start).Round(time.Millisecond))
		if h := holder(); h == dead || h == "" {
			t.Errorf("tunnel holder after the kill: %q", h)
		}
		// The dead replica's record expires with its lease.
		deadline := time.Now().Add(15 * time.Second)
		for {
			rs, err := st.ListReplicas(ctx, time.Now())
			if err == nil && !hasReplica(rs, dead) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("replica %s is still listed 15 s after it was killed: %v %v", dead, rs, err)
			}
			time.Sleep(200 * time.Millisecond)
		}
		if err := e.StartReplica(ctx, i); err != nil {
			t.Fatal(err)
		}
		waitAll(30 * time.Second)
	})

	t.Run("rolling restart with requests running", func(t *testing.T) {
		var (
			ok, failed atomic.Int64
			worst      atomic.Int64 // longest request, in nanoseconds
			mu         sync.Mutex
			failures   []string
		)
		stop := make(chan struct{})
		var wg sync.WaitGroup
		for _, c := range []*http.Client{keep, fresh} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					select {
					case <-stop:
						return
					case <-time.After(20 * time.Millisecond):
					}
					start := time.Now()
					code, body, err := get(c, e.HubURL, "/api/v1/namespaces/default")
					took := time.Since(start)
					for {
						w := worst.Load()
						if int64(took) <= w || worst.CompareAndSwap(w, int64(took)) {
							break
						}
					}
					if err == nil && code == http.StatusOK {
						ok.Add(1)
						continue
					}
					failed.Add(1)
					mu.Lock()
					failures = append(failures, fmt.Sprintf("%d %v %.200s", code, err, body))
					mu.Unlock()
				}
			}()
		}
		for i := range e.Replicas {
			if err := e.Replicas[i].Process.Stop(syscall.SIGTERM, 30*time.Second); err != nil {
				t.Errorf("replica %s: %v", e.Replicas[i].Name, err)
			}
			if err := e.StartReplica(ctx, i); err != nil {
				t.Fatal(err)
			}
			time.Sleep(time.Second) // the balancer's checks see it ready
		}
		close(stop)
		wg.Wait()
		t.Logf("rolling restart: %d requests succeeded, %d failed; the slowest took %s", ok.Load(), failed.Load(), time.Duration(worst.Load()).Round(time.Millisecond))
		if failed.Load() > 0 {
			t.Errorf("%d requests failed during the rolling restart, want none:\n%s", failed.Load(), strings.Join(failures, "\n"))
		}
		if ok.Load() < 50 {
			t.Errorf("only %d requests ran during the rolling restart", ok.Load())
		}
		if w := time.Duration(worst.Load()); w > 2*time.Second {
			t.Errorf("a request took %s during the rolling restart: the cluster was unreachable for more than 2 s", w)
		}
	})

	t.Run("PostgreSQL stopped for 30 s", func(t *testing.T) {
		waitAll(30 * time.Second)
		pg.Stop(t)
		stopped := time.Now()
		for time.Since(stopped) < 30*time.Second {
			for i := range e.Replicas {
				code, body, err := get(fresh, replicaURL(i), "/api/v1/namespaces/default")
				if err != nil || code != http.StatusOK {
					t.Fatalf("with the database down, replica %s: %d %v %.300s", e.Replicas[i].Name, code, err, body)
				}
			}
			out, err := e.TetherCmd(ctx, "cluster", "create", "-g", e.Group, "-n", "during-outage").CombinedOutput()
			if err == nil || !strings.Contains(string(out), "store is unavailable") {
				t.Fatalf("cluster create with the database down: err=%v\n%s\nwant a clear failure naming the store", err, out)
			}
			time.Sleep(time.Second)
		}
		tok, _ := http.NewRequest("POST", e.HubURL+"/oidc/token", strings.NewReader("grant_type=client_credentials&client_id=00000000-0000-4000-8000-000000000001&client_secret=tcs_x"))
		tok.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		resp, err := fresh.Do(tok)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(string(body), "temporarily_unavailable") {
			t.Errorf("sign-in with the database down: %d %s, want 503 temporarily_unavailable", resp.StatusCode, body)
		}
		pg.Restart(t)
		deadline := time.Now().Add(30 * time.Second)
		for {
			out, err := e.TetherCmd(ctx, "cluster", "create", "-g", e.Group, "-n", "after-outage").CombinedOutput()
			if err == nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("cluster create 30 s after the database came back: %v\n%s", err, out)
			}
			time.Sleep(500 * time.Millisecond)
		}
		waitAll(10 * time.Second)
		if err := e.WaitConnected(ctx, true, 15*time.Second); err != nil {
			t.Error(err)
		}
	})

	t.Run("a second signal stops a draining replica at once", func(t *testing.T) {
		r := e.Replicas[0]
		syscall.Kill(r.Process.Pid(), syscall.SIGTERM)
		deadline := time.Now().Add(10 * time.Second)
		for !strings.Contains(r.Process.Tail(50), "send the signal again to stop at once") {
			if time.Now().After(deadline) {
				t.Fatalf("replica %s did not start draining:\n%s", r.Current, r.Process.Tail(20))
			}
			time.Sleep(20 * time.Millisecond)
		}
		syscall.Kill(r.Process.Pid(), syscall.SIGTERM)
		// A graceful stop exits 0 after the drain delay; the second signal
		// ends the process by its default action before that.
		if err := r.Process.Err(); err == nil || !strings.Contains(err.Error(), "signal: terminated") {
			t.Errorf("replica %s after a second SIGTERM during its drain: %v, want killed by the signal\n%s", r.Current, err, r.Process.Tail(10))
		}
		if err := e.StartReplica(ctx, 0); err != nil {
			t.Fatal(err)
		}
		waitAll(30 * time.Second)
	})

	t.Run("100 agents over the replicas, each reachable from every replica", func(t *testing.T) {
		const n = 100
		hubURL, _ := url.Parse(e.HubURL)
		var agents sync.WaitGroup
		actx, stopAgents := context.WithCancel(ctx)
		defer func() {
			stopAgents()
			agents.Wait()
		}()
		clusters := make([]string, n)
		for k := range n {
			name := fmt.Sprintf("light-%03d", k)
			clusters[k] = name
			out, err := e.TetherCmd(ctx, "cluster", "create", "-g", "fleet", "-n", name, "-o", "json").Output()
			if err != nil {
				t.Fatalf("cluster create %s: %v", name, testenv.ExitDetail(err))
			}
			var created struct{ Join struct{ JoinToken string } }
			json.Unmarshal(out, &created)
			// Each cluster's "API server" says which cluster it is.
			backend := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				fmt.Fprintf(w, `{"cluster":%q}`, name)
			}))
			defer backend.Close()
			ag, err := agent.New(agent.Config{Hub: hubURL, HubClient: &http.Client{Transport: &http.Transport{TLSClientConfig: tc.Clone()}},
				JoinToken: created.Join.JoinToken, StateDir: t.TempDir(), APIServer: restConfigFor(backend), Version: "v-light",
				MinBackoff: 50 * time.Millisecond, MaxBackoff: time.Second}, slog.New(slog.DiscardHandler))
			if err != nil {
				t.Fatal(err)
			}
			agents.Add(1)
			go func() {
				defer agents.Done()
				ag.Run(actx)
			}()
		}
		held := map[string]int{}
		deadline := time.Now().Add(60 * time.Second)
		for k := 0; k < n; {
			c, err := st.GetCluster(ctx, store.ClusterID("fleet", clusters[k]))
			if err == nil && c.Tunnel.Replica != "" {
				held[c.Tunnel.Replica]++
				k++
				continue
			}
			if time.Now().After(deadline) {
				t.Fatalf("cluster %s has no tunnel 60 s after its agent started: %v", clusters[k], err)
			}
			time.Sleep(100 * time.Millisecond)
		}
		t.Logf("tunnels per replica: %v", held)
		if len(held) < 2 {
			t.Errorf("100 agents through a round-robin balancer landed on %d replica(s), want them spread", len(held))
		}
		for _, name := range clusters {
			for i := range e.Replicas {
				req, _ := http.NewRequest("GET", replicaURL(i)+"/k8s/fleet/"+name+"/version", nil)
				req.Header.Set("Authorization", "Bearer any-token")
				resp, err := keep.Do(req)
				if err != nil {
					t.Fatalf("%s through %s: %v", name, e.Replicas[i].Name, err)
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK || !strings.Contains(string(b), `"cluster":"`+name+`"`) {
					t.Fatalf("%s through %s: %d %s", name, e.Replicas[i].Name, resp.StatusCode, b)
				}
			}
		}
	})

	t.Run("the audit trail written by every replica through all of it is one intact chain", func(t *testing.T) {
		out, err := e.TetherCmd(ctx, "audit", "verify", "-o", "json").Output()
		if err != nil {
			t.Fatalf("tether audit verify: %v\n%s", testenv.ExitDetail(err), out)
		}
		var v struct {
			Events int
			Intact bool
		}
		if err := json.Unmarshal(out, &v); err != nil || !v.Intact || v.Events < 1000 {
			t.Errorf("audit verify: %s (%v); want an intact chain of the thousand-odd requests above", out, err)
		}
		replicas := map[string]bool{}
		evs, err := st.ListAudit(ctx, store.AuditFilter{Limit: store.MaxAuditLimit})
		if err != nil {
			t.Fatal(err)
		}
		for _, ev := range evs {
			replicas[ev.Replica] = true
		}
		if len(replicas) < 3 {
			t.Errorf("events from %d replicas (%v), want every replica's", len(replicas), replicas)
		}
	})
}

func hasReplica(rs []store.Replica, name string) bool {
	for _, r := range rs {
		if r.Name == name {
			return true
		}
	}
	return false
}

func b64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }

// restConfigFor is a client of the test backend.
func restConfigFor(backend *httptest.Server) *rest.Config {
	return &rest.Config{Host: backend.URL,
		TLSClientConfig: rest.TLSClientConfig{CAData: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: backend.Certificate().Raw})}}
}

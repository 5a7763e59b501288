package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"tether.dev/tether/test/rig"
	"tether.dev/tether/test/testenv"
)

// The hostile tests attack the hub, the agent, the local proxy and the
// tunnel as an outsider would, and check for each input a clear refusal
// (status and message), that nothing reached the API server (its audit log,
// rig.Cluster.AuditLog, is the witness: every hostile request carries a
// marker no audit event may contain, after a control request's marker has
// shown up), and that the hub and the agent hold no more file descriptors
// or goroutines afterwards than before.

// saUser is the seed flow's service account, as the API server names it.
const saUser = "system:serviceaccount:default:demo-user"

// newMarker returns a unique lowercase tag for one hostile request; it is
// a valid path segment, header value and object name.
func newMarker(what string) string {
	return fmt.Sprintf("hostile-%s-%016x", what, rand.Uint64())
}

// apiAuditEvent is what the tests read of an audit.k8s.io/v1 Event.
type apiAuditEvent struct {
	Stage            string        `json:"stage"`
	RequestURI       string        `json:"requestURI"`
	Verb             string        `json:"verb"`
	UserAgent        string        `json:"userAgent"`
	User             apiAuditUser  `json:"user"`
	ImpersonatedUser *apiAuditUser `json:"impersonatedUser"`
	SourceIPs        []string      `json:"sourceIPs"`
	ResponseStatus   *struct {
		Code int `json:"code"`
	} `json:"responseStatus"`
}

type apiAuditUser struct {
	Username string              `json:"username"`
	UID      string              `json:"uid"`
	Groups   []string            `json:"groups"`
	Extra    map[string][]string `json:"extra"`
}

// apiAudit reads the API server's audit log from where it ended when the
// test began.
type apiAudit struct {
	path string
	from int64
}

func newAPIAudit(t *testing.T, e *testenv.Env) *apiAudit {
	t.Helper()
	info, err := os.Stat(e.Cluster.AuditLog)
	if err != nil {
		t.Fatalf("the API server's audit log: %v", err)
	}
	return &apiAudit{path: e.Cluster.AuditLog, from: info.Size()}
}

// lines returns the log's lines since the test began that contain s.
func (a *apiAudit) lines(t *testing.T, s string) []string {
	t.Helper()
	f, err := os.Open(a.path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Seek(a.from, io.SeekStart); err != nil {
		t.Fatal(err)
	}
	var found []string
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 4<<20)
	for sc.Scan() {
		if bytes.Contains(sc.Bytes(), []byte(s)) {
			found = append(found, sc.Text())
		}
	}
	return found
}

// completed waits for the event with the answer to the request that
// carries marker (ResponseComplete, or ResponseStarted for a refused
// authentication), and returns it.
func (a *apiAudit) completed(t *testing.T, marker string) apiAuditEvent {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		for _, l := range a.lines(t, marker) {
			var ev apiAuditEvent
			if err := json.Unmarshal([]byte(l), &ev); err != nil {
				t.Fatalf("audit event %s: %v", l, err)
			}
			if ev.ResponseStatus != nil {
				return ev
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the API server's audit log has no finished request with %s after 20 s", marker)
		}
		time.Sleep(50 * time.Millisecond) // polling another process's log
	}
}

// noneReached sends a control request with a marker of its own through the
// gateway, waits until the API server has logged it (so the check below can
// fail), and then checks that no audit event carries any of markers.
func (a *apiAudit) noneReached(t *testing.T, e *testenv.Env, hc *http.Client, markers ...string) {
	t.Helper()
	control := newMarker("control")
	req, _ := http.NewRequest(http.MethodGet, gatewayURL(e)+"/api/v1/namespaces/default/pods?limit=1&"+control+"=1", nil)
	req.Header.Set("Authorization", "Bearer "+e.SAToken)
	req.Header.Set("User-Agent", control)
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatalf("control request: %v", err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("control request: %d", resp.StatusCode)
	}
	a.completed(t, control)
	for _, m := range markers {
		if l := a.lines(t, m); len(l) > 0 {
			t.Errorf("the API server got a request it must not have (%s):\n%s", m, strings.Join(l, "\n"))
		}
	}
}

// gatewayURL is the hub's gateway for the environment's cluster.
func gatewayURL(e *testenv.Env) string { return e.HubURL + "/k8s/" + e.Group + "/" + e.Name }

// rawExchange sends raw bytes over one new TLS connection to the hub
// (HTTP/1.1) and reads every response until the hub closes the connection
// or answers nothing more for a second. Bodies are read whole.
func rawExchange(t *testing.T, e *testenv.Env, raw string) []rawResponse {
	t.Helper()
	tc, err := e.HubTLS()
	if err != nil {
		t.Fatal(err)
	}
	tc.NextProtos = []string{"http/1.1"}
	d := &net.Dialer{Timeout: 10 * time.Second}
	c, err := tls.DialWithDialer(d, "tcp", e.HubAddr, tc)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetWriteDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, raw); err != nil {
		t.Fatalf("write: %v", err)
	}
	var out []rawResponse
	br := bufio.NewReader(c)
	for {
		// The first answer may take as long as the cluster does; later
		// ones, only what the hub has queued already.
		wait := time.Second
		if len(out) == 0 {
			wait = 20 * time.Second
		}
		c.SetReadDeadline(time.Now().Add(wait))
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			return out
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		out = append(out, rawResponse{code: resp.StatusCode, header: resp.Header, body: string(body)})
	}
}

type rawResponse struct {
	code   int
	header http.Header
	body   string
}

// leakCheck records the hub's open file descriptors, and the agent's with
// its goroutines (from its /metrics; the hub does not expose its own), and
// at the end of the test waits up to 20 s for them to come back to the
// baseline. The slack is for connection pools: the agent keeps idle
// connections to the API server (HTTP/2 for each credential mode, HTTP/1.1
// for upgrades) with two goroutines each; a leak per request would exceed
// it, since every test sends more requests through the agent than that.
func leakCheck(t *testing.T, e *testenv.Env) {
	t.Helper()
	type counts struct{ hubFDs, agentFDs, agentGoroutines int }
	measure := func() (counts, error) {
		var c counts
		var err error
		if c.hubFDs, err = openFDs(e.Hub.Pid()); err != nil {
			return c, fmt.Errorf("hub: %w", err)
		}
		if c.agentFDs, err = openFDs(e.Agent.Pid()); err != nil {
			return c, fmt.Errorf("agent: %w", err)
		}
		body, err := agentMetrics(e)
		if err != nil {
			return c, err
		}
		c.agentGoroutines = int(metricValueOf(body, "go_goroutines"))
		if c.agentGoroutines <= 0 {
			return c, fmt.Errorf("the agent's /metrics has no go_goroutines:\n%.500s", body)
		}
		return c, nil
	}
	hub, agent := e.Hub, e.Agent
	before, err := measure()
	if err != nil {
		t.Fatalf("leak baseline: %v", err)
	}
	t.Cleanup(func() {
		if e.Hub != hub || e.Agent != agent {
			t.Logf("the hub or agent was restarted meanwhile; no leak check")
			return
		}
		const hubFDSlack, agentFDSlack, goroutineSlack = 4, 6, 16
		deadline := time.Now().Add(20 * time.Second)
		for {
			after, err := measure()
			if err != nil {
				t.Errorf("leak check: %v", err)
				return
			}
			if after.hubFDs <= before.hubFDs+hubFDSlack && after.agentFDs <= before.agentFDs+agentFDSlack &&
				after.agentGoroutines <= before.agentGoroutines+goroutineSlack {
				t.Logf("leak check: before %+v, after %+v", before, after)
				return
			}
			if time.Now().After(deadline) {
				t.Errorf("leak: before %+v, 20 s after the attacks %+v (slack: hub %d descriptors, agent %d descriptors and %d goroutines)",
					before, after, hubFDSlack, agentFDSlack, goroutineSlack)
				return
			}
			time.Sleep(200 * time.Millisecond) // polling other processes
		}
	})
}

func openFDs(pid int) (int, error) {
	entries, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	return len(entries), err
}

// agentMetrics fetches the agent's /metrics inside the cluster's network
// namespace (it listens on a loopback port there, found from its sockets).
func agentMetrics(e *testenv.Env) (string, error) {
	port, err := listeningPort(e.Agent.Pid())
	if err != nil {
		return "", fmt.Errorf("the agent's health port: %w", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := e.NS.Command(ctx, "curl", "-sS", "--max-time", "5", fmt.Sprintf("http://127.0.0.1:%d/metrics", port)).Output()
	if err != nil {
		return "", fmt.Errorf("agent /metrics: %w", testenv.ExitDetail(err))
	}
	return string(out), nil
}

// listeningPort is the one TCP port process pid listens on.
func listeningPort(pid int) (int, error) {
	inodes := map[string]bool{}
	entries, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return 0, err
	}
	for _, ent := range entries {
		link, err := os.Readlink(filepath.Join(fmt.Sprintf("/proc/%d/fd", pid), ent.Name()))
		if inode, ok := strings.CutPrefix(link, "socket:["); err == nil && ok {
			inodes[strings.TrimSuffix(inode, "]")] = true
		}
	}
	var ports []int
	for _, table := range []string{"tcp", "tcp6"} {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/net/%s", pid, table))
		if err != nil {
			continue
		}
		for line := range strings.Lines(string(b)) {
			f := strings.Fields(line)
			// sl local rem st tx:rx tr:when retrnsmt uid timeout inode
			if len(f) < 10 || f[3] != "0A" || !inodes[f[9]] {
				continue
			}
			_, hexPort, _ := strings.Cut(f[1], ":")
			p, err := strconv.ParseInt(hexPort, 16, 32)
			if err == nil {
				ports = append(ports, int(p))
			}
		}
	}
	slices.Sort(ports)
	ports = slices.Compact(ports)
	if len(ports) != 1 {
		return 0, fmt.Errorf("process %d listens on %v, want one port", pid, ports)
	}
	return ports[0], nil
}

// metricValueOf finds an unlabelled series in a /metrics body; -1 if absent.
func metricValueOf(body, name string) float64 {
	for line := range strings.Lines(body) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), name+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err == nil {
				return f
			}
		}
	}
	return -1
}

// hostileCluster is one more registration of the test cluster with its own
// agent inside, for attacks that need a second cluster ID.
type hostileCluster struct {
	name, id, joinToken string
	agent               *rig.Process
	stateDir            string
}

// startCluster registers the cluster again as name and starts its agent
// (run through wrap, e.g. a umask, when not empty); it waits until the
// hub shows it connected. At the end of the test the agent is stopped and
// the registration deleted.
func startCluster(t *testing.T, ctx context.Context, e *testenv.Env, name string, wrap ...string) *hostileCluster {
	t.Helper()
	out, err := e.TetherCmd(ctx, "cluster", "create", "-g", e.Group, "-n", name, "-o", "json").Output()
	if err != nil {
		t.Fatalf("register %s: %v", name, testenv.ExitDetail(err))
	}
	var created struct {
		Cluster struct{ ID string }
		Join    struct{ JoinToken string }
	}
	if err := json.Unmarshal(out, &created); err != nil || created.Join.JoinToken == "" {
		t.Fatalf("cluster create printed %s (%v)", out, err)
	}
	c := &hostileCluster{name: name, id: created.Cluster.ID, joinToken: created.Join.JoinToken, stateDir: filepath.Join(e.Dir, name)}
	t.Cleanup(func() {
		if c.agent != nil {
			c.agent.Stop(syscall.SIGTERM, 15*time.Second)
		}
		// Already gone when the test deleted it.
		e.TetherCmd(context.Background(), "cluster", "delete", "-g", e.Group, "-n", name, "--yes").Run()
	})
	c.agent = startAgentProcess(t, e, name, c.joinToken, wrap...)
	deadline := time.Now().Add(60 * time.Second)
	for {
		out, err := e.TetherCmd(ctx, "cluster", "show", "-g", e.Group, "-n", name, "--query", "connected", "-o", "tsv").Output()
		if err == nil && strings.TrimSpace(string(out)) == "true" {
			return c
		}
		if time.Now().After(deadline) {
			t.Fatalf("cluster %s not connected after 60 s (%s, %v); agent log:\n%s", name, out, err, c.agent.Tail(30))
		}
		time.Sleep(200 * time.Millisecond) // polling the hub from outside
	}
}

// startAgentProcess starts `tether agent` inside the namespace as
// testenv.StartAgent does, with its command run through wrap (e.g. sh -c
// 'umask 000; exec "$0" "$@"') when given.
func startAgentProcess(t *testing.T, e *testenv.Env, name, joinToken string, wrap ...string) *rig.Process {
	t.Helper()
	args := []string{e.Tether, "agent", "--hub", e.HubURL, "--hub-ca", e.HubCA, "--state-dir", filepath.Join(e.Dir, name),
		"--kubeconfig", e.Cluster.Kubeconfig, "--health-listen", "127.0.0.1:0", "--join-token", joinToken}
	args = slices.Concat(wrap, args)
	cmd := e.NS.Command(context.Background(), args[0], args[1:]...)
	cmd.Env = append(os.Environ(), "HTTPS_PROXY=http://"+e.ProxyAddr, "https_proxy=http://"+e.ProxyAddr, "NO_PROXY=", "no_proxy=")
	p, err := rig.StartProcess(name, filepath.Join(e.Dir, name+".log"), cmd)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Stop(syscall.SIGTERM, 15*time.Second) })
	return p
}

// statusMessage returns the message of a Kubernetes Status body, or "".
func statusMessage(body string) string {
	var st struct{ Kind, Message string }
	if json.Unmarshal([]byte(body), &st) != nil || st.Kind != "Status" {
		return ""
	}
	return st.Message
}

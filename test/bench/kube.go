package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	authnv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilnet "k8s.io/apimachinery/pkg/util/net"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"tether.dev/tether/test/rig"
)

// Kubernetes is issue 8's item 7: a client-go request loop and `kubectl get
// pods -A` against the rig's real API server, directly and through Tether,
// with the same service-account token on every path so only the path
// differs:
//
//	direct:   client ──TLS──► kube-apiserver
//	proxy:    client ──TLS──► tether proxy ──TLS──► hub ══ wss ══ agent ──TLS──► kube-apiserver
//	gateway:  client ──TLS──────────────────────► hub ══ wss ══ agent ──TLS──► kube-apiserver
//
// Everything runs on loopback, so the direct baseline can reach the API
// server; the hub passes the token through (token mode) and the API server
// judges it.
var Kubernetes = Section{Name: "kubernetes", Run: runKubernetes}

const (
	kubeSection = "kubernetes"
	// kubeGroup and kubeName name the registered cluster.
	kubeGroup, kubeName = "bench", "kube"
	// kubeNamespace holds kubePods pods that never run (no scheduler
	// takes them): what the request loop lists and kubectl prints.
	kubeNamespace = "default"
	kubePods      = 5
	kubePodPrefix = "bench-pending-"
	// kubeAccount is the service account whose token every path carries
	// (cluster-admin).
	kubeAccount   = "tether-bench"
	kubePrincipal = "system:serviceaccount:" + kubeNamespace + ":" + kubeAccount
	// kubeWorkers is the request loop's concurrency: goroutines sharing
	// one client (one HTTP/2 connection, as client-go does).
	kubeWorkers = 16
)

// kubeScale is how long and how often each path is measured.
type kubeScale struct {
	// rounds of the request loop, each measuring every path in turn for
	// loop (every other round in reverse), so drift on a shared machine
	// falls on every path alike.
	rounds int
	loop   time.Duration
	// kubectlRuns of `kubectl get pods -A` per path, after one warm-up,
	// interleaved across paths.
	kubectlRuns int
}

func kubeScaleFor(quick bool) kubeScale {
	if quick {
		return kubeScale{rounds: 1, loop: 1500 * time.Millisecond, kubectlRuns: 2}
	}
	return kubeScale{rounds: 2, loop: 8 * time.Second, kubectlRuns: 20}
}

// kubePath is one way to the API server.
type kubePath struct {
	name  string // direct, proxy, gateway
	label string // how figures name it
	// config reaches the API server this way with the service account's
	// token (the proxy's config carries the proxy's local token; the proxy
	// presents the service account's).
	config *rest.Config
	// kubeconfig is the same as a file, for kubectl.
	kubeconfig string
	// pids are Tether's processes on the path: CPU is metered on them.
	pids []int

	// What the request loop measured, over every round.
	load       LoadResult
	cpu        []time.Duration // per pid
	clusterCPU time.Duration   // kube-apiserver's and etcd's
	machineCPU time.Duration   // every CPU's busy time
	busy       float64         // the machine's CPUs' busy share, 0 to 1
	windows    [][2]time.Time  // when the loop ran (for the hub's audit)
	// kubectl's wall times.
	kubectl []time.Duration
}

// kubeStack is the cluster, a hub, the agent and `tether proxy`.
type kubeStack struct {
	dir     string
	cluster *rig.Cluster
	hub     *Hub
	agent   *rig.Process
	proxy   *rig.Process
	token   string
	paths   []*kubePath
	// clusterPids are kube-apiserver's and etcd's.
	clusterPids []int
}

func runKubernetes(ctx context.Context, o Options, r *Report) (err error) {
	began := time.Now()
	dir, err := os.MkdirTemp(o.Dir, "kubernetes-")
	if err != nil {
		return err
	}
	s := &kubeStack{dir: dir}
	defer func() {
		err = errors.Join(err, s.close())
		if rmErr := os.RemoveAll(dir); rmErr != nil {
			err = errors.Join(err, fmt.Errorf("remove %s: %w", dir, rmErr))
		}
	}()
	if err := s.start(ctx, o); err != nil {
		return err
	}
	o.Logf("kubernetes: cluster, hub, agent and tether proxy up after %s", time.Since(began).Round(100*time.Millisecond))

	sc := kubeScaleFor(o.Quick)
	if err := s.measureLoop(ctx, o, sc); err != nil {
		return err
	}
	audited, err := s.checkAudit(ctx)
	if err != nil {
		return err
	}
	if err := s.measureKubectl(ctx, o, sc); err != nil {
		return err
	}
	r.Add(s.figures(audited)...)
	o.Logf("kubernetes: done in %s", time.Since(began).Round(100*time.Millisecond))
	return nil
}

// start brings up the cluster, the hub, the agent, the service account
// and its token, and `tether proxy`, and makes the three paths. On error,
// close stops what was started.
func (s *kubeStack) start(ctx context.Context, o Options) error {
	bins, err := rig.Build(ctx, rig.BuildOptions{Log: o.Log})
	if err != nil {
		return fmt.Errorf("build the rig's binaries: %w", err)
	}
	if s.cluster, err = rig.Start(ctx, rig.Config{Binaries: bins, Dir: filepath.Join(s.dir, "cluster"), Log: o.Log}); err != nil {
		return fmt.Errorf("start the rig cluster: %w", err)
	}
	if s.clusterPids, err = rigPids(s.cluster); err != nil {
		return err
	}
	admin, err := clientcmd.BuildConfigFromFlags("", s.cluster.Kubeconfig)
	if err != nil {
		return fmt.Errorf("read the rig's admin kubeconfig: %w", err)
	}
	if s.token, err = kubeSetUp(ctx, admin); err != nil {
		return err
	}

	if s.hub, err = StartHub(ctx, o.Tether, filepath.Join(s.dir, "hub")); err != nil {
		return err
	}
	join, err := s.hub.CreateCluster(ctx, kubeGroup, kubeName)
	if err != nil {
		return err
	}
	if s.agent, err = StartAgent(o.Tether, s.hub, s.cluster.Kubeconfig, join, filepath.Join(s.dir, "agent")); err != nil {
		return err
	}
	if err := s.hub.WaitConnected(ctx, kubeGroup, kubeName, 30*time.Second); err != nil {
		return fmt.Errorf("%w\nagent log:\n%s", err, s.agent.Tail(20))
	}
	var proxyKC string
	if s.proxy, proxyKC, err = startTetherProxy(ctx, s.hub, s.dir, s.token); err != nil {
		return err
	}

	direct := &kubePath{name: "direct", label: "direct", config: &rest.Config{
		Host:            s.cluster.Server,
		BearerToken:     s.token,
		TLSClientConfig: rest.TLSClientConfig{CAFile: s.cluster.CAFile},
	}}
	gateway := &kubePath{name: "gateway", label: "via gateway", config: &rest.Config{
		Host:            s.hub.URL + "/k8s/" + kubeGroup + "/" + kubeName,
		BearerToken:     s.token,
		TLSClientConfig: rest.TLSClientConfig{CAFile: s.hub.CA},
	}, pids: []int{s.hub.Process.Pid(), s.agent.Pid()}}
	proxy := &kubePath{name: "proxy", label: "via tether proxy", kubeconfig: proxyKC,
		pids: []int{s.hub.Process.Pid(), s.agent.Pid(), s.proxy.Pid()}}
	if proxy.config, err = clientcmd.BuildConfigFromFlags("", proxyKC); err != nil {
		return fmt.Errorf("read the kubeconfig tether proxy wrote: %w", err)
	}
	s.paths = []*kubePath{direct, proxy, gateway}
	for _, p := range []*kubePath{direct, gateway} {
		p.kubeconfig = filepath.Join(s.dir, p.name+".kubeconfig")
		if err := writeKubeconfig(p.kubeconfig, p.config); err != nil {
			return err
		}
	}
	for _, p := range s.paths {
		p.config.UserAgent = "tether-bench/" + p.name
		p.config.QPS = -1 // no client-side rate limit: the path is what is measured
		p.config.Timeout = 30 * time.Second
	}
	// The agent may be connected before its first request goes through.
	deadline := time.Now().Add(30 * time.Second)
	for _, p := range s.paths {
		for {
			err := kubeProbe(ctx, p.config)
			if err == nil {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("no request went through %s within 30 s: %w\nagent log:\n%s", p.label, err, s.agent.Tail(20))
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(50 * time.Millisecond): // polling the agent's start
			}
		}
	}
	return nil
}

// kubeSetUp makes, as the cluster's admin, the pods the loop lists and a
// cluster-admin service account, and returns a token for it.
func kubeSetUp(ctx context.Context, admin *rest.Config) (string, error) {
	cs, closeIdle, err := kubeClient(admin)
	if err != nil {
		return "", err
	}
	defer closeIdle()
	for i := range kubePods {
		pod := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("%s%d", kubePodPrefix, i), Labels: map[string]string{"app": "tether-bench"}},
			Spec: corev1.PodSpec{
				SchedulerName: "tether-bench-unscheduled", // no scheduler: stays Pending, nothing runs
				Containers:    []corev1.Container{{Name: "main", Image: "tether-bench.invalid/never-pulled"}},
			},
		}
		if _, err := cs.CoreV1().Pods(kubeNamespace).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
			return "", fmt.Errorf("create pod %s: %w", pod.Name, err)
		}
	}
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: kubeAccount}}
	if _, err := cs.CoreV1().ServiceAccounts(kubeNamespace).Create(ctx, sa, metav1.CreateOptions{}); err != nil {
		return "", fmt.Errorf("create service account %s: %w", kubeAccount, err)
	}
	binding := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: kubeAccount},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "cluster-admin"},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: kubeAccount, Namespace: kubeNamespace}},
	}
	if _, err := cs.RbacV1().ClusterRoleBindings().Create(ctx, binding, metav1.CreateOptions{}); err != nil {
		return "", fmt.Errorf("bind %s to cluster-admin: %w", kubeAccount, err)
	}
	ttl := int64(time.Hour / time.Second)
	tr, err := cs.CoreV1().ServiceAccounts(kubeNamespace).CreateToken(ctx, kubeAccount,
		&authnv1.TokenRequest{Spec: authnv1.TokenRequestSpec{ExpirationSeconds: &ttl}}, metav1.CreateOptions{})
	if err != nil {
		return "", fmt.Errorf("request a token for %s: %w", kubeAccount, err)
	}
	return tr.Status.Token, nil
}

// startTetherProxy runs `tether proxy --token TOKEN --port 0` for the
// cluster, writing its kubeconfig in dir, and waits until it says ready.
func startTetherProxy(ctx context.Context, h *Hub, dir, token string) (*rig.Process, string, error) {
	kc := filepath.Join(dir, "proxy.kubeconfig")
	logPath := filepath.Join(dir, "proxy.log")
	cmd := exec.Command(h.Tether, "proxy", "-g", kubeGroup, "-n", kubeName, "--port", "0", "--token", token)
	cmd.Env = append(os.Environ(), "TETHER_HUB="+h.URL, "TETHER_HUB_CA="+h.CA, "KUBECONFIG="+kc)
	p, err := rig.StartProcess("tether proxy", logPath, cmd)
	if err != nil {
		return nil, "", err
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		b, _ := os.ReadFile(logPath)
		if strings.Contains(string(b), "\nready:") || strings.HasPrefix(string(b), "ready:") {
			return p, kc, nil
		}
		var why error
		select {
		case <-p.Done():
			why = fmt.Errorf("tether proxy exited: %v", p.Err())
		case <-ctx.Done():
			why = ctx.Err()
		case <-time.After(20 * time.Millisecond):
			if time.Now().After(deadline) {
				why = errors.New("tether proxy did not say ready within 30 s")
			}
		}
		if why != nil {
			p.Stop(syscall.SIGKILL, time.Second)
			return nil, "", fmt.Errorf("%w:\n%s", why, p.Tail(20))
		}
	}
}

// writeKubeconfig writes c (server, CA file, bearer token) as a kubeconfig
// for kubectl.
func writeKubeconfig(path string, c *rest.Config) error {
	kc := clientcmdapi.NewConfig()
	kc.Clusters["bench"] = &clientcmdapi.Cluster{Server: c.Host, CertificateAuthority: c.CAFile}
	kc.AuthInfos["bench"] = &clientcmdapi.AuthInfo{Token: c.BearerToken}
	kc.Contexts["bench"] = &clientcmdapi.Context{Cluster: "bench", AuthInfo: "bench"}
	kc.CurrentContext = "bench"
	if err := clientcmd.WriteToFile(*kc, path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// kubeClient is a clientset for c with its own HTTP client, so that close
// can let go of its connections.
func kubeClient(c *rest.Config) (*kubernetes.Clientset, func(), error) {
	hc, err := rest.HTTPClientFor(c)
	if err != nil {
		return nil, nil, err
	}
	cs, err := kubernetes.NewForConfigAndClient(c, hc)
	if err != nil {
		return nil, nil, err
	}
	return cs, func() { utilnet.CloseIdleConnectionsFor(hc.Transport) }, nil
}

// kubeProbe makes one request of the loop's kind with c.
func kubeProbe(ctx context.Context, c *rest.Config) error {
	cs, closeIdle, err := kubeClient(c)
	if err != nil {
		return err
	}
	defer closeIdle()
	return kubeRequest(ctx, cs)
}

// kubeRequest is the loop's request: list the pods of kubeNamespace.
func kubeRequest(ctx context.Context, cs kubernetes.Interface) error {
	list, err := cs.CoreV1().Pods(kubeNamespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		return err
	}
	if len(list.Items) < kubePods {
		return fmt.Errorf("listed %d pods in %s, want at least %d", len(list.Items), kubeNamespace, kubePods)
	}
	return nil
}

// kubeLoad runs workers goroutines sharing cs that make kubeRequest back to
// back for d (RunLoad).
func kubeLoad(ctx context.Context, cs kubernetes.Interface, workers int, d time.Duration) LoadResult {
	return RunLoad(ctx, workers, d, func(ctx context.Context) error { return kubeRequest(ctx, cs) })
}

// measureLoop runs the request loop on every path, round after round, and
// meters Tether's processes meanwhile.
func (s *kubeStack) measureLoop(ctx context.Context, o Options, sc kubeScale) error {
	for round := range sc.rounds {
		order := slices.Clone(s.paths)
		if round%2 == 1 {
			slices.Reverse(order) // direct, proxy, gateway, then back: a steady drift weighs alike on every path
		}
		for _, p := range order {
			cs, closeIdle, err := kubeClient(p.config)
			if err != nil {
				return fmt.Errorf("client %s: %w", p.label, err)
			}
			meter, err := MeterCPU(append(slices.Clone(p.pids), s.clusterPids...)...)
			if err != nil {
				closeIdle()
				return fmt.Errorf("meter CPU %s: %w", p.label, err)
			}
			busy0, total0, err := procStatCPU()
			if err != nil {
				closeIdle()
				return err
			}
			from := time.Now()
			res := kubeLoad(ctx, cs, kubeWorkers, sc.loop)
			to := time.Now()
			each, _, err := meter.Used()
			closeIdle()
			if err != nil {
				return fmt.Errorf("meter CPU %s: %w", p.label, err)
			}
			busy1, total1, err := procStatCPU()
			if err != nil {
				return err
			}
			if err := ctx.Err(); err != nil {
				return err
			}
			if res.Errors > 0 {
				return fmt.Errorf("client-go %s: %d of %d requests failed, the first: %v",
					p.label, res.Errors, res.Errors+res.Requests, res.FirstErr)
			}
			if res.Requests == 0 {
				return fmt.Errorf("client-go %s: no request completed in %s", p.label, sc.loop)
			}
			p.windows = append(p.windows, [2]time.Time{from, to})
			p.load.Requests += res.Requests
			p.load.Elapsed += res.Elapsed
			p.load.Lat = append(p.load.Lat, res.Lat...)
			if p.cpu == nil {
				p.cpu = make([]time.Duration, len(p.pids))
			}
			for i, d := range each {
				if i < len(p.pids) {
					p.cpu[i] += d
				} else {
					p.clusterCPU += d
				}
			}
			busy := float64(busy1-busy0) / float64(max(total1-total0, 1))
			p.busy += busy / float64(sc.rounds)
			p.machineCPU += time.Duration(busy1-busy0) * time.Second / clockTick
			o.Logf("kubernetes: round %d, client-go %s: %.0f requests/s, p50 %s, p99 %s, CPUs %.0f%% busy",
				round+1, p.label, res.Rate(), res.Lat.Quantile(0.5), res.Lat.Quantile(0.99), 100*busy)
		}
	}
	for _, p := range s.paths {
		slices.Sort(p.load.Lat)
	}
	return nil
}

// checkAudit reads the hub's audit trail for the loop's time windows: no
// request of the cluster while the loop ran direct (so direct did not pass
// the hub), and the gateway's and the proxy's requests there, as the
// service account, in token mode, answered 200 (so they did). It returns
// how many requests the hub audited per path.
func (s *kubeStack) checkAudit(ctx context.Context) (map[string]int, error) {
	audited := map[string]int{}
	for _, p := range s.paths {
		// Each window also holds the loop's warm-up requests.
		want := p.load.Requests + kubeWorkers*len(p.windows)
		if p.name == "direct" {
			want = 0
		}
		// The hub writes its audit in batches: wait until the count is
		// complete, or stops growing (events dropped under load count as
		// missing, not as an error).
		deadline := time.Now().Add(15 * time.Second)
		last := -1
		for {
			n, err := s.auditedRequests(ctx, p.windows, want == 0)
			if err != nil {
				return nil, err
			}
			if n >= want || n == last || time.Now().After(deadline) {
				audited[p.name] = n
				break
			}
			last = n
			select {
			case <-ctx.Done():
				return nil, ctx.Err()
			case <-time.After(500 * time.Millisecond): // the auditor's next batch
			}
		}
		switch n := audited[p.name]; {
		case p.name == "direct" && n > 0:
			return nil, fmt.Errorf("the hub audited %d requests to %s/%s while the loop ran direct: the direct path went through the hub", n, kubeGroup, kubeName)
		case p.name != "direct" && n == 0:
			return nil, fmt.Errorf("the hub audited no request to %s/%s while the loop ran %s: it did not go through the hub", kubeGroup, kubeName, p.label)
		}
	}
	return audited, nil
}

// kubeAuditPage is how many events one `tether audit list` asks for at
// most: the CLI reads at most 4 MiB of an answer, about 6,000 events, so a
// page of 10,000 (what it asks for without --limit) fails on a busy
// cluster.
const kubeAuditPage = 2000

// auditedRequests counts the hub's audit events of requests to the
// cluster within windows (with onlyOne, only whether there is one),
// checking that each was the service account's, in token mode, listing
// pods, answered 200.
func (s *kubeStack) auditedRequests(ctx context.Context, windows [][2]time.Time, onlyOne bool) (int, error) {
	n := 0
	for _, w := range windows {
		c, err := s.countAudited(ctx, w[0], w[1], onlyOne)
		if err != nil {
			return 0, err
		}
		n += c
	}
	return n, nil
}

// countAudited counts the events in [since, until), halving the interval
// until each part fits one page. (The events are listed in the order they
// were written, which is not quite their times' order, so paging by the
// last event's time could skip some.)
func (s *kubeStack) countAudited(ctx context.Context, since, until time.Time, onlyOne bool) (int, error) {
	limit := kubeAuditPage
	if onlyOne {
		limit = 1
	}
	cmd := s.hub.Cmd(ctx, "audit", "list", "-g", kubeGroup, "-n", kubeName, "--type", "request",
		"--since", since.UTC().Format(time.RFC3339Nano), "--until", until.UTC().Format(time.RFC3339Nano),
		"--limit", strconv.Itoa(limit), "-o", "json")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return 0, fmt.Errorf("tether audit list: %v: %s", err, stderr.String())
	}
	var events []struct {
		PrincipalName string
		AuthMode      string
		Status        int
		Resource      string
	}
	if err := json.Unmarshal(out, &events); err != nil {
		return 0, fmt.Errorf("tether audit list printed %.200q: %w", out, err)
	}
	for _, e := range events {
		if e.PrincipalName != kubePrincipal || e.AuthMode != "token" || e.Status != http.StatusOK || e.Resource != "pods" {
			return 0, fmt.Errorf("the hub audited a request to %s/%s unlike the loop's (%s, token mode, pods, 200): %+v",
				kubeGroup, kubeName, kubePrincipal, e)
		}
	}
	if onlyOne || len(events) < limit {
		return len(events), nil
	}
	mid := since.Add(until.Sub(since) / 2)
	if !mid.After(since) {
		return 0, fmt.Errorf("more than %d audit events at %s", limit, since)
	}
	a, err := s.countAudited(ctx, since, mid, false)
	if err != nil {
		return 0, err
	}
	b, err := s.countAudited(ctx, mid, until, false)
	return a + b, err
}

// measureKubectl runs `kubectl get pods -A` on every path: one warm-up
// each (which fills its discovery cache), then sc.kubectlRuns timed runs,
// interleaved across paths.
func (s *kubeStack) measureKubectl(ctx context.Context, o Options, sc kubeScale) error {
	bin, err := rig.FindKubectl("")
	if err != nil {
		return err
	}
	for run := range sc.kubectlRuns + 1 {
		for _, p := range s.paths {
			d, err := s.kubectl(ctx, bin, p)
			if err != nil {
				return err
			}
			if run > 0 {
				p.kubectl = append(p.kubectl, d)
			}
		}
	}
	for _, p := range s.paths {
		slices.Sort(p.kubectl)
		o.Logf("kubernetes: kubectl get pods -A %s: median %s of %d", p.label, Latencies(p.kubectl).Quantile(0.5), len(p.kubectl))
	}
	return nil
}

// kubectl runs `kubectl get pods -A` once through p, with a discovery cache
// of p's own, checks that it listed the pods and returns its wall time.
func (s *kubeStack) kubectl(ctx context.Context, bin string, p *kubePath) (time.Duration, error) {
	cmd := exec.CommandContext(ctx, bin, "get", "pods", "-A", "--cache-dir", filepath.Join(s.dir, "kubectl-cache", p.name))
	cmd.Env = append(os.Environ(), "KUBECONFIG="+p.kubeconfig)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	t0 := time.Now()
	out, err := cmd.Output()
	d := time.Since(t0)
	if err != nil {
		return 0, fmt.Errorf("kubectl get pods -A %s: %v: %s", p.label, err, stderr.String())
	}
	if got := strings.Count(string(out), kubePodPrefix); got != kubePods {
		return 0, fmt.Errorf("kubectl get pods -A %s listed %d of the %d pods:\n%s", p.label, got, kubePods, out)
	}
	return d, nil
}

// figures turns the measurements into the section's figures.
func (s *kubeStack) figures(audited map[string]int) []Figure {
	direct := s.paths[0]
	var figs []Figure
	for _, p := range s.paths[1:] {
		figs = append(figs, Compared(kubeSection, fmt.Sprintf("client-go, %d workers: requests/s %s", kubeWorkers, p.label), "req/s",
			direct.load.Rate(), p.load.Rate()).AtLeast(0.9, true).
			WithNote(fmt.Sprintf("list %d pods, one HTTP/2 connection, no client rate limit; %d rounds of %s per path; CPUs busy %.0f%% direct, %.0f%% %s",
				kubePods, len(p.windows), s.loopPerRound(p), 100*direct.busy, 100*p.busy, p.label)))
	}
	for _, q := range []struct {
		name string
		q    float64
	}{{"p50", 0.5}, {"p99", 0.99}} {
		for _, p := range s.paths[1:] {
			figs = append(figs, Compared(kubeSection, fmt.Sprintf("client-go, %d workers: %s %s", kubeWorkers, q.name, p.label), "µs",
				micros(direct.load.Lat.Quantile(q.q)), micros(p.load.Lat.Quantile(q.q))).
				WithNote("each request's time as client-go sees it, 16 in flight on one connection"))
		}
	}
	for _, p := range s.paths[1:] {
		var parts []string
		var total time.Duration
		for i, d := range p.cpu {
			parts = append(parts, fmt.Sprintf("%s %.0f", []string{"hub", "agent", "proxy"}[i], kubePerRequest(d, p.load.Requests)))
			total += d
		}
		who := "hub + agent"
		if len(p.cpu) == 3 {
			who = "hub + agent + tether proxy"
		}
		figs = append(figs, Plain(kubeSection, fmt.Sprintf("client-go %s: %s CPU per request", p.label, who), "µs",
			kubePerRequest(total, p.load.Requests)).WithNote(strings.Join(parts, ", ")+" µs"))
	}
	for _, p := range s.paths[1:] {
		figs = append(figs, Compared(kubeSection, fmt.Sprintf("client-go %s: machine CPU per request", p.label), "µs",
			kubePerRequest(direct.machineCPU, direct.load.Requests), kubePerRequest(p.machineCPU, p.load.Requests)).
			WithNote(fmt.Sprintf("every CPU's busy time (/proc/stat) per request; of it kube-apiserver + etcd %.0f direct, %.0f %s",
				kubePerRequest(direct.clusterCPU, direct.load.Requests), kubePerRequest(p.clusterCPU, p.load.Requests), p.label)))
	}
	for _, p := range s.paths[1:] {
		made := p.load.Requests + kubeWorkers*len(p.windows)
		figs = append(figs, Compared(kubeSection, fmt.Sprintf("client-go %s: requests in the hub's audit", p.label), "requests",
			float64(made), float64(audited[p.name])).
			WithNote("direct: requests made (warm-up included); the hub audited none while the loop ran direct"))
	}
	for _, p := range s.paths[1:] {
		figs = append(figs, Compared(kubeSection, "kubectl get pods -A: median wall time "+p.label, "ms",
			kubeMillis(Latencies(direct.kubectl).Quantile(0.5)), kubeMillis(Latencies(p.kubectl).Quantile(0.5))).
			AtMost(1.1, true).
			WithNote(fmt.Sprintf("%d runs per path after a warm-up; with discovery cached kubectl makes one request, so the run is mostly kubectl's own start and 1.1x leaves about 5 ms for the hops", len(p.kubectl))))
	}
	return figs
}

func (s *kubeStack) loopPerRound(p *kubePath) time.Duration {
	if len(p.windows) == 0 {
		return 0
	}
	return (p.load.Elapsed / time.Duration(len(p.windows))).Round(100 * time.Millisecond)
}

// rigPids finds the process IDs of c's kube-apiserver and etcd by
// their command lines (the rig keeps them to itself), which name files in
// c's own directory.
func rigPids(c *rig.Cluster) ([]int, error) {
	marks := []string{"--audit-log-path=" + c.AuditLog, "--data-dir=" + filepath.Join(c.Dir, "etcd")}
	pids := make([]int, len(marks))
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		args := strings.Split(string(b), "\x00")
		for i, m := range marks {
			if slices.Contains(args, m) {
				pids[i] = pid
			}
		}
	}
	for i, m := range marks {
		if pids[i] == 0 {
			return nil, fmt.Errorf("no process with %s in its command line", m)
		}
	}
	return pids, nil
}

// procStatCPU reads the time every CPU was busy and the time that passed on
// them all, in clock ticks, from /proc/stat.
func procStatCPU() (busy, total int64, err error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0, err
	}
	line, _, _ := strings.Cut(string(b), "\n")
	fields := strings.Fields(line)
	if len(fields) < 6 || fields[0] != "cpu" {
		return 0, 0, fmt.Errorf("/proc/stat: unexpected first line %q", line)
	}
	for i, f := range fields[1:] {
		v, err := strconv.ParseInt(f, 10, 64)
		if err != nil {
			return 0, 0, fmt.Errorf("/proc/stat: %q: %w", line, err)
		}
		if i >= 8 { // guest times are already in user and nice
			break
		}
		total += v
		if i != 3 && i != 4 { // idle, iowait
			busy += v
		}
	}
	return busy, total, nil
}

// kubePerRequest is d per request in microseconds.
func kubePerRequest(d time.Duration, requests int) float64 {
	if requests == 0 {
		return 0
	}
	return micros(d) / float64(requests)
}

// kubeMillis is d in milliseconds.
func kubeMillis(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// close stops everything start started, in reverse.
func (s *kubeStack) close() error {
	var errs []error
	if s.proxy != nil {
		errs = append(errs, s.proxy.Stop(syscall.SIGTERM, 5*time.Second))
	}
	if s.agent != nil {
		errs = append(errs, s.agent.Stop(syscall.SIGTERM, 10*time.Second))
	}
	if s.hub != nil && s.hub.Process != nil {
		errs = append(errs, s.hub.Stop(10*time.Second))
	}
	if s.cluster != nil {
		errs = append(errs, s.cluster.Stop())
	}
	return errors.Join(errs...)
}

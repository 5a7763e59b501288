// Package testenv brings up a whole Tether installation on one machine with
// real parts only, for the end-to-end tests and the demo:
//
//	outside (host namespace)                 inside (network namespace: every inbound connection dropped)
//	  kubectl ─► tether proxy ─► tether hub ◄── wss ── tether agent ─► kube-apiserver (+ etcd, controller manager,
//	                              (HostIP)                                 scheduler, kubelet-API node)
//
// The cluster's side can dial out to the hub; nothing outside can dial in.
package testenv

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"tether.dev/tether/test/netns"
	"tether.dev/tether/test/rig"
)

// env is one whole installation: the rig cluster and the agent inside a
// network namespace that refuses every inbound connection, the hub and
// kubectl outside.
type Env struct {
	// Dir holds everything the installation writes; removed by Close.
	Dir string
	// Tether is the tether binary under test.
	Tether string
	// NS is the cluster side's network namespace.
	NS *netns.Namespace
	// Cluster is the real Kubernetes cluster, inside NS.
	Cluster *rig.Cluster

	// HubAddr is HostIP:port, where the hub listens.
	HubAddr string
	// ProxyAddr is HostIP:port of the forward proxy (tinyproxy) the agent
	// must use, with Options.ForwardProxy; empty otherwise.
	ProxyAddr string
	// AgentEgress is the one address the agent's traffic leaves the
	// namespace for: ProxyAddr with a forward proxy, else HubAddr.
	AgentEgress string
	Proxy       *rig.Process
	HubURL      string
	// HubCA is the hub's self-signed certificate, for --hub-ca.
	HubCA string
	// AdminTokenFile is the hub's admin token, for --admin-token-file.
	AdminTokenFile string
	Hub            *rig.Process
	Agent          *rig.Process
	// Replicas are the hub's replicas with Options.Replicas (Hub is the
	// first), behind Balancer.
	Replicas []*Replica
	Balancer *Balancer

	// Group and Name name the registered cluster.
	Group, Name string
	// SAToken is the seed flow's service-account token (cluster-admin).
	SAToken string

	log      io.Writer
	hubArgs  []string
	storeURL string
	cleanups []func()
}

// Replica is one hub replica process.
type Replica struct {
	// Name is its first --replica; Addr, HostIP:port, where it listens;
	// Current, the --replica of its current run.
	Name, Addr, Current string
	Process             *rig.Process
	// started counts its starts, to name each run as a new pod would be.
	started int
}

// Options configure Start.
type Options struct {
	// Group and Name name the cluster to register. Empty means "demo" and
	// "edge-1".
	Group, Name string
	// Log receives progress lines ("cluster up", "agent connected"). Nil
	// discards them.
	Log io.Writer
	// ForwardProxy puts a real HTTP forward proxy (tinyproxy) outside
	// between the agent and the hub, the way corporate networks do: the
	// agent gets HTTPS_PROXY, and the namespace's firewall also drops its
	// direct connections to the hub, so only the proxy path works.
	ForwardProxy bool
	// HubArgs are more flags for `tether hub` (e.g. --oidc-issuers FILE).
	HubArgs []string
	// Locations, when set, are the hub's locations (--locations), each
	// served by this one hub; the first is where the cluster is registered.
	Locations []string
	// Replicas, when more than zero, runs the hub as that many replicas
	// sharing the PostgreSQL database at StoreURL (required then), behind
	// a round-robin TCP load balancer (Balancer) whose address is HubAddr.
	Replicas int
	// StoreURL is the replicas' postgres:// URL.
	StoreURL string
}

// Start builds tether, starts the cluster inside a new network namespace,
// the hub outside, registers the cluster, starts its agent inside, waits
// until the agent is connected, and runs the seed flow's service-account
// steps. On error everything started is stopped again.
func Start(ctx context.Context, opts Options) (*Env, error) {
	if opts.Group == "" {
		opts.Group = "demo"
	}
	if opts.Name == "" {
		opts.Name = "edge-1"
	}
	if opts.Log == nil {
		opts.Log = io.Discard
	}
	e, err := start(ctx, opts)
	if err != nil {
		if e != nil {
			e.Close()
		}
		return nil, err
	}
	return e, nil
}

// Close stops every process and removes every file and the namespace.
func (e *Env) Close() {
	for i := len(e.cleanups) - 1; i >= 0; i-- {
		e.cleanups[i]()
	}
	e.cleanups = nil
}

func (e *Env) logf(format string, args ...any) { fmt.Fprintf(e.log, format+"\n", args...) }

func start(ctx context.Context, opts Options) (*Env, error) {
	dir, err := os.MkdirTemp("", "tether-e2e-")
	if err != nil {
		return nil, err
	}
	e := &Env{Dir: dir, Group: opts.Group, Name: opts.Name, log: opts.Log, hubArgs: opts.HubArgs, storeURL: opts.StoreURL}
	e.cleanups = append(e.cleanups, func() { os.RemoveAll(dir) })

	root, err := rig.FindRepoRoot()
	if err != nil {
		return e, err
	}
	e.Tether = filepath.Join(dir, "tether")
	build := exec.CommandContext(ctx, "go", "build", "-o", e.Tether, "./cmd/tether")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		return e, fmt.Errorf("build tether: %v\n%s", err, out)
	}

	bins, err := rig.Build(ctx, rig.BuildOptions{Log: e.log})
	if err != nil {
		return e, err
	}
	e.NS, err = netns.Create(ctx, netns.Config{NamePrefix: "tether-e2e"})
	if err != nil {
		return e, fmt.Errorf("create the cluster's network namespace (needs root, iproute2, nftables): %w", err)
	}
	e.cleanups = append(e.cleanups, func() { e.NS.Close() })
	e.Cluster, err = rig.Start(ctx, rig.Config{
		Binaries: bins,
		Dir:      filepath.Join(dir, "cluster"),
		Command:  e.NS.Command,
		Address:  e.NS.InsideIP(),
		Log:      e.log,
	})
	if err != nil {
		return e, err
	}
	e.cleanups = append(e.cleanups, func() { e.Cluster.Stop() })
	e.logf("cluster up inside network namespace %s: API server %s (refuses every inbound connection)", e.NS.Name(), e.Cluster.Server)

	// The hub, outside, on the host end of the namespace's link.
	port, err := freePort(e.NS.HostIP().String())
	if err != nil {
		return e, err
	}
	e.HubAddr = net.JoinHostPort(e.NS.HostIP().String(), strconv.Itoa(port))
	e.HubURL = "https://" + e.HubAddr
	if len(opts.Locations) > 0 {
		var locs []map[string]any
		for _, name := range opts.Locations {
			locs = append(locs, map[string]any{"name": name, "url": e.HubURL, "endpoints": []string{e.HubAddr}})
		}
		b, _ := json.Marshal(locs)
		path := filepath.Join(dir, "locations.json")
		if err := os.WriteFile(path, b, 0o644); err != nil {
			return e, err
		}
		e.hubArgs = append(e.hubArgs, "--locations", path)
	}
	hubDir := filepath.Join(dir, "hub")
	e.HubCA = filepath.Join(hubDir, "tls.crt")
	e.AdminTokenFile = filepath.Join(hubDir, "admin.token")
	if opts.Replicas > 0 {
		if err := e.startReplicas(ctx, opts.Replicas); err != nil {
			return e, err
		}
	} else {
		if err := e.StartHub(ctx); err != nil {
			return e, err
		}
		e.cleanups = append(e.cleanups, func() { e.Hub.Stop(syscall.SIGTERM, 15*time.Second) })
		e.logf("hub up outside at %s", e.HubURL)
	}
	e.AgentEgress = e.HubAddr
	if opts.ForwardProxy {
		if err := e.startForwardProxy(ctx); err != nil {
			return e, err
		}
		e.cleanups = append(e.cleanups, func() { e.Proxy.Stop(syscall.SIGTERM, 5*time.Second) })
		e.AgentEgress = e.ProxyAddr
		e.logf("forward proxy (tinyproxy) at %s; the cluster may reach the hub only through it", e.ProxyAddr)
	}

	// Register the cluster and start its agent inside the namespace.
	out, err := e.TetherCmd(ctx, "cluster", "create", "-g", e.Group, "-n", e.Name, "-o", "json").Output()
	if err != nil {
		return e, fmt.Errorf("tether cluster create: %w", ExitDetail(err))
	}
	var created struct{ Join struct{ JoinToken string } }
	if err := json.Unmarshal(out, &created); err != nil || created.Join.JoinToken == "" {
		return e, fmt.Errorf("tether cluster create printed %q", out)
	}
	e.logf("registered cluster %s/%s; starting its agent inside with the one-time join token", e.Group, e.Name)
	if err := e.startAgent(created.Join.JoinToken); err != nil {
		return e, err
	}
	e.cleanups = append(e.cleanups, func() { e.Agent.Stop(syscall.SIGTERM, 15*time.Second) })
	if err := e.WaitConnected(ctx, true, 30*time.Second); err != nil {
		return e, fmt.Errorf("%w\nagent log:\n%s", err, e.Agent.Tail(40))
	}

	// The seed flow's service account, made by the cluster's admin inside.
	e.logf("agent enrolled and connected: the cluster dials out, nothing dials in")
	if e.SAToken, err = e.ServiceAccountToken(ctx, "default", "demo-user", "cluster-admin"); err != nil {
		return e, err
	}
	return e, nil
}

// StartHub starts the hub (again) on HubAddr with its data directory and
// waits until it is ready.
func (e *Env) StartHub(ctx context.Context) error {
	args := append([]string{"hub", "--listen", e.HubAddr, "--data-dir", filepath.Join(e.Dir, "hub")}, e.hubArgs...)
	cmd := exec.Command(e.Tether, args...)
	var err error
	if e.Hub, err = rig.StartProcess("hub", filepath.Join(e.Dir, "hub.log"), cmd); err != nil {
		return err
	}
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if err := e.hubReady(); err == nil {
			return nil
		}
		select {
		case <-e.Hub.Done():
			return fmt.Errorf("hub exited: %v\n%s", e.Hub.Err(), e.Hub.Tail(40))
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	return fmt.Errorf("hub not ready after 30 s:\n%s", e.Hub.Tail(40))
}

func (e *Env) hubReady() error { return e.ready(e.HubURL) }

// ready checks base's /readyz.
func (e *Env) ready(base string) error {
	tc, err := e.HubTLS()
	if err != nil {
		return err
	}
	c := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{TLSClientConfig: tc}}
	defer c.CloseIdleConnections()
	resp, err := c.Get(base + "/readyz")
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		return fmt.Errorf("readyz: %d", resp.StatusCode)
	}
	return nil
}

// HubTLS is a client TLS configuration that trusts the hub's certificate.
func (e *Env) HubTLS() (*tls.Config, error) {
	pemBytes, err := os.ReadFile(e.HubCA)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pemBytes)
	return &tls.Config{RootCAs: pool}, nil
}

// startReplicas makes the replicas' shared files (tether hub init), starts
// n replicas on free ports and the balancer in front of them at HubAddr.
func (e *Env) startReplicas(ctx context.Context, n int) error {
	if e.storeURL == "" {
		return errors.New("replicas need Options.StoreURL, a postgres:// URL")
	}
	host := e.NS.HostIP().String()
	init := exec.CommandContext(ctx, e.Tether, "hub", "init", "--data-dir", e.HubDataDir(), "--tls-san", host)
	if out, err := init.CombinedOutput(); err != nil {
		return fmt.Errorf("tether hub init: %v\n%s", err, out)
	}
	var addrs []string
	for i := range n {
		port, err := freePort(host)
		if err != nil {
			return err
		}
		r := &Replica{Name: fmt.Sprintf("hub-%d", i), Addr: net.JoinHostPort(host, strconv.Itoa(port))}
		e.Replicas = append(e.Replicas, r)
		addrs = append(addrs, r.Addr)
	}
	e.cleanups = append(e.cleanups, func() {
		for _, r := range e.Replicas {
			if r.Process != nil {
				r.Process.Stop(syscall.SIGTERM, 15*time.Second)
			}
		}
	})
	for i := range e.Replicas {
		if err := e.StartReplica(ctx, i); err != nil {
			return err
		}
	}
	e.Hub = e.Replicas[0].Process
	tc, err := e.HubTLS()
	if err != nil {
		return err
	}
	l, err := net.Listen("tcp", e.HubAddr) // HubAddr was picked free; the balancer takes it
	if err != nil {
		return err
	}
	l.Close()
	if e.Balancer, err = StartBalancer(e.HubAddr, addrs, tc); err != nil {
		return err
	}
	e.cleanups = append(e.cleanups, e.Balancer.Close)
	e.logf("%d hub replicas up outside behind a round-robin load balancer at %s", n, e.HubURL)
	return nil
}

// StartReplica starts replica i (again, as a new pod would be: a new name)
// and waits until it is ready.
func (e *Env) StartReplica(ctx context.Context, i int) error {
	r := e.Replicas[i]
	name := r.Name
	if r.started > 0 {
		name = fmt.Sprintf("%s-%d", r.Name, r.started)
	}
	r.started++
	r.Current = name
	args := append([]string{"hub", "--listen", r.Addr, "--data-dir", e.HubDataDir(), "--url", e.HubURL,
		"--replica", name, "--peer-url", "https://" + r.Addr}, e.hubArgs...)
	cmd := exec.Command(e.Tether, args...)
	cmd.Env = append(os.Environ(), "TETHER_STORE="+e.storeURL)
	var err error
	if r.Process, err = rig.StartProcess(name, filepath.Join(e.Dir, name+".log"), cmd); err != nil {
		return err
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := e.ready("https://" + r.Addr)
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("replica %s not ready after 30 s: %v\n%s", name, err, r.Process.Tail(40))
		}
		select {
		case <-r.Process.Done():
			return fmt.Errorf("replica %s exited: %v\n%s", name, r.Process.Err(), r.Process.Tail(40))
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func (e *Env) startAgent(joinToken string) error {
	var err error
	e.Agent, err = e.StartAgent("agent", joinToken)
	return err
}

// StartAgent starts a tether agent inside the namespace with state and log
// under the given name (a second registration of the cluster gets its own).
func (e *Env) StartAgent(name, joinToken string) (*rig.Process, error) {
	args := []string{"agent", "--hub", e.HubURL, "--hub-ca", e.HubCA, "--state-dir", filepath.Join(e.Dir, name),
		"--kubeconfig", e.Cluster.Kubeconfig, "--health-listen", "127.0.0.1:0"} // several agents share the namespace
	if joinToken != "" {
		args = append(args, "--join-token", joinToken)
	}
	cmd := e.NS.Command(context.Background(), e.Tether, args...)
	cmd.Env = os.Environ()
	if e.ProxyAddr != "" {
		// NO_PROXY is left empty on purpose: the agent must not send its
		// API-server traffic to the proxy even so.
		cmd.Env = append(cmd.Env, "HTTPS_PROXY=http://"+e.ProxyAddr, "https_proxy=http://"+e.ProxyAddr, "NO_PROXY=", "no_proxy=")
	}
	return rig.StartProcess(name, filepath.Join(e.Dir, name+".log"), cmd)
}

// startForwardProxy runs tinyproxy on the host end of the namespace's link
// and makes the namespace drop direct connections to the hub.
func (e *Env) startForwardProxy(ctx context.Context) error {
	bin, err := exec.LookPath("tinyproxy")
	if err != nil {
		return fmt.Errorf("the forward-proxy tests need tinyproxy (apt-get install tinyproxy; make test does it): %w", err)
	}
	port, err := freePort(e.NS.HostIP().String())
	if err != nil {
		return err
	}
	e.ProxyAddr = net.JoinHostPort(e.NS.HostIP().String(), strconv.Itoa(port))
	conf := filepath.Join(e.Dir, "tinyproxy.conf")
	// No ConnectPort line: CONNECT to any port (the hub's is not 443 here).
	config := fmt.Sprintf("Port %d\nListen %s\nAllow %s\nTimeout 600\nMaxClients 100\nDisableViaHeader Yes\nLogLevel Info\nSyslog Off\n",
		port, e.NS.HostIP(), e.NS.InsideIP())
	if err := os.WriteFile(conf, []byte(config), 0o600); err != nil {
		return err
	}
	if e.Proxy, err = rig.StartProcess("tinyproxy", filepath.Join(e.Dir, "tinyproxy.log"), exec.Command(bin, "-d", "-c", conf)); err != nil {
		return err
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", e.ProxyAddr, time.Second)
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("tinyproxy did not listen on %s: %v\n%s", e.ProxyAddr, err, e.Proxy.Tail(20))
		}
		time.Sleep(50 * time.Millisecond) // polling another process's start
	}
	host, hubPort, _ := net.SplitHostPort(e.HubAddr)
	if out, err := e.NS.Command(ctx, "nft", "insert", "rule", "inet", "tether", "output", "ip", "daddr", host, "tcp", "dport", hubPort, "drop").CombinedOutput(); err != nil {
		return fmt.Errorf("block the direct route to the hub: %v\n%s", err, out)
	}
	return nil
}

// TetherCmd runs the tether CLI outside, as the hub's admin.
func (e *Env) TetherCmd(ctx context.Context, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, e.Tether, args...)
	cmd.Env = append(os.Environ(), "TETHER_HUB="+e.HubURL, "TETHER_HUB_CA="+e.HubCA, "TETHER_ADMIN_TOKEN_FILE="+e.AdminTokenFile)
	return cmd
}

// UserCmd is tether run as a person or program that is not the hub's
// admin: HOME (so ~/.kube/cache/tether) is home, and no admin token.
func (e *Env) UserCmd(ctx context.Context, home string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, e.Tether, args...)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "TETHER_") && !strings.HasPrefix(kv, "HOME=") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, "TETHER_HUB="+e.HubURL, "TETHER_HUB_CA="+e.HubCA, "HOME="+home)
	return cmd
}

// HubDataDir is the hub's --data-dir.
func (e *Env) HubDataDir() string { return filepath.Join(e.Dir, "hub") }

// ClusterView is what `tether cluster show -o json` prints.
type ClusterView struct {
	Connected         bool
	AgentVersion      string
	KubernetesVersion string
	LastSeenAt        time.Time
}

func (e *Env) Show(ctx context.Context) (ClusterView, error) {
	out, err := e.TetherCmd(ctx, "cluster", "show", "-g", e.Group, "-n", e.Name, "-o", "json").Output()
	if err != nil {
		return ClusterView{}, ExitDetail(err)
	}
	var v ClusterView
	err = json.Unmarshal(out, &v)
	return v, err
}

// WaitConnected polls the hub until the cluster's connection state is want.
func (e *Env) WaitConnected(ctx context.Context, want bool, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		v, err := e.Show(ctx)
		if err == nil && v.Connected == want {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("cluster connected=%v not reached within %s (last: %+v, %v)", want, limit, v, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// ServiceAccountToken runs the seed flow inside the cluster: a service
// account, a ClusterRoleBinding to role, a token Secret, and its token.
func (e *Env) ServiceAccountToken(ctx context.Context, ns, name, role string) (string, error) {
	steps := [][]string{
		{"create", "serviceaccount", name, "-n", ns},
		{"create", "clusterrolebinding", name + "-binding", "--clusterrole", role, "--serviceaccount", ns + ":" + name},
	}
	for _, s := range steps {
		if out, err := e.Cluster.Kubectl(ctx, s...).CombinedOutput(); err != nil {
			return "", fmt.Errorf("kubectl %s: %v\n%s", strings.Join(s, " "), err, out)
		}
	}
	secret := fmt.Sprintf(`{"apiVersion":"v1","kind":"Secret","type":"kubernetes.io/service-account-token",
		"metadata":{"name":%q,"namespace":%q,"annotations":{"kubernetes.io/service-account.name":%q}}}`, name+"-secret", ns, name)
	apply := e.Cluster.Kubectl(ctx, "apply", "-f", "-")
	apply.Stdin = strings.NewReader(secret)
	if out, err := apply.CombinedOutput(); err != nil {
		return "", fmt.Errorf("create token secret: %v\n%s", err, out)
	}
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		out, err := e.Cluster.Kubectl(ctx, "get", "secret", name+"-secret", "-n", ns, "-o", "jsonpath={.data.token}").Output()
		if err == nil && len(out) > 0 {
			tok, err := base64.StdEncoding.DecodeString(string(out))
			return string(tok), err
		}
		time.Sleep(100 * time.Millisecond) // polling the token controller
	}
	return "", errors.New("the token controller never filled the service-account token secret")
}

// LocalProxy is a running `tether proxy` and the kubeconfig it wrote.
type LocalProxy struct {
	Proc *rig.Process
	// Kubeconfig is the file the proxy wrote its context to.
	Kubeconfig string
	// Output is what the proxy printed until it was ready.
	Output string
}

// StartProxy runs `tether proxy --token TOKEN` outside, writing its context
// to a kubeconfig file of its own in dir, and waits until it is ready.
func (e *Env) StartProxy(ctx context.Context, dir, token string) (*LocalProxy, error) {
	return e.StartProxyTo(ctx, dir, e.Name, token)
}

// StartProxyTo is StartProxy for the cluster registered as name in Group.
func (e *Env) StartProxyTo(ctx context.Context, dir, name, token string) (*LocalProxy, error) {
	return e.StartProxyWith(ctx, dir, name, []string{"--token", token}, nil)
}

// StartProxyWith runs `tether proxy -g Group -n name --port 0` with more
// arguments and environment (e.g. -u CLIENT_ID and HOME for a signed-in
// service principal).
func (e *Env) StartProxyWith(ctx context.Context, dir, name string, args, env []string) (*LocalProxy, error) {
	kc := filepath.Join(dir, "kubeconfig")
	cmd := exec.Command(e.Tether, append([]string{"proxy", "-g", e.Group, "-n", name, "--port", "0"}, args...)...)
	cmd.Env = append(append(os.Environ(), "TETHER_HUB="+e.HubURL, "TETHER_HUB_CA="+e.HubCA, "KUBECONFIG="+kc), env...)
	pr, pw, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	cmd.Stderr = pw
	p, err := rig.StartProcess("proxy", "", cmd)
	pw.Close() // the child has its own copy
	if err != nil {
		pr.Close()
		return nil, err
	}
	ready := make(chan string, 1)
	go func() { // owns pr; ends when the proxy exits
		defer pr.Close()
		sc := bufio.NewScanner(pr)
		var lines []string
		for sc.Scan() {
			lines = append(lines, sc.Text())
			if strings.HasPrefix(sc.Text(), "ready:") {
				ready <- strings.Join(lines, "\n")
				break
			}
		}
		io.Copy(io.Discard, pr) // keep the proxy's writes from blocking; ends when it exits
	}()
	timeout := time.NewTimer(30 * time.Second)
	defer timeout.Stop()
	select {
	case out := <-ready:
		return &LocalProxy{Proc: p, Kubeconfig: kc, Output: out}, nil
	case <-p.Done():
		return nil, fmt.Errorf("tether proxy exited: %v", p.Err())
	case <-timeout.C:
		p.Stop(syscall.SIGKILL, time.Second)
		return nil, errors.New("tether proxy did not become ready within 30 s")
	case <-ctx.Done():
		p.Stop(syscall.SIGKILL, time.Second)
		return nil, ctx.Err()
	}
}

// Kubectl runs a real kubectl of the given minor version ("" for the one on
// PATH) outside, against the proxy's kubeconfig.
// ReplicaIndex returns the index in Replicas of the replica whose current
// run is named name, or -1.
func (e *Env) ReplicaIndex(name string) int {
	for i, r := range e.Replicas {
		if r.Current == name {
			return i
		}
	}
	return -1
}

// Kubectl runs the default kubectl with the kubeconfig at path.
func Kubectl(ctx context.Context, kubeconfig string, args ...string) *exec.Cmd {
	bin, err := rig.FindKubectl("")
	if err != nil {
		bin = "kubectl"
	}
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append(os.Environ(), "KUBECONFIG="+kubeconfig)
	return cmd
}

func (lp *LocalProxy) Kubectl(ctx context.Context, version string, args ...string) *exec.Cmd {
	bin, err := rig.FindKubectl(version)
	if err != nil {
		bin = "kubectl-" + version + "-is-not-installed"
	}
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append(os.Environ(), "KUBECONFIG="+lp.Kubeconfig)
	return cmd
}

func freePort(host string) (int, error) {
	l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// ExitDetail adds a failed command's stderr to its error.
func ExitDetail(err error) error {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return fmt.Errorf("%w: %s", err, bytes.TrimSpace(ee.Stderr))
	}
	return err
}

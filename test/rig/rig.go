// Package rig runs a real Kubernetes control plane on one machine for
// Tether's tests and demo: etcd, kube-apiserver, kube-controller-manager,
// kube-scheduler and a node that serves the kubelet API, whose pods are local
// processes. Nothing is faked: kubectl talks to a real API server, exec, attach,
// logs and port-forward travel apiserver -> kubelet API -> process.
//
//	kubectl ──► kube-apiserver ──► etcd
//	              ▲   │ kubelet API (TLS, client cert, webhook authz)
//	              │   ▼
//	controller-manager, scheduler    rig-node ──► pods = local processes
//
// Every process is started through Config.Command, so a caller can run the
// whole cluster inside a network namespace that refuses inbound connections.
// The binaries are built from the modules under hack/rig by Build and cached by
// content, so only the first run pays for compiling Kubernetes.
package rig

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// Config describes one rig cluster.
type Config struct {
	// Binaries are the programs to run, from Build. Required.
	Binaries Binaries
	// Dir holds certificates, etcd data, logs and pod directories. Empty
	// means a new temporary directory, removed by Stop.
	Dir string
	// Command makes the command for every process the rig runs, kubectl
	// included; a caller sets it to run the cluster inside a network
	// namespace. Nil means exec.CommandContext.
	Command func(ctx context.Context, name string, args ...string) *exec.Cmd
	// Address is where etcd, the API server and the node listen, and the
	// node's InternalIP. The zero value means 127.0.0.1.
	Address netip.Addr
	// NodeName names the node. Empty means "rig-node".
	NodeName string
	// Kubectl is the kubectl binary used to set up and probe the cluster.
	// Empty means "kubectl" from PATH.
	Kubectl string
	// ReadyTimeout bounds Start's wait for the cluster to become ready.
	// Zero means 3 minutes.
	ReadyTimeout time.Duration
	// Log receives progress lines. Nil discards them.
	Log io.Writer
}

// Cluster is a running rig. Its fields are read-only.
type Cluster struct {
	// Dir is the rig's working directory.
	Dir string
	// Server is the API server's URL, e.g. https://127.0.0.1:45123.
	Server string
	// CAFile is the PEM bundle that signed the API server's certificate.
	CAFile string
	// Kubeconfig is an admin kubeconfig (client certificate in
	// system:masters) for setting the cluster up.
	Kubeconfig string
	// NodeName is the name of the single node.
	NodeName string
	// AuditLog is the API server's audit log: one JSON audit.k8s.io/v1
	// Event per line, every request (authentication failures included) at
	// Metadata level, written as it happens. Tests read it to see what
	// reached the API server and as whom.
	AuditLog string
	// Address is where the cluster listens (Config.Address).
	Address netip.Addr

	cfg      Config
	ownDir   bool
	procs    []*Process
	stopOnce sync.Once
	stopErr  error
}

// Start brings a cluster up and waits until it is ready for work: the API
// server's /readyz is ok, the node is Ready, the aggregated ClusterRoles
// (view, edit, admin) have their rules and the default service account
// exists. On error nothing is left running.
func Start(ctx context.Context, cfg Config) (*Cluster, error) {
	if cfg.Binaries.Kube == "" || cfg.Binaries.Etcd == "" || cfg.Binaries.Node == "" {
		return nil, errors.New("rig: Config.Binaries is empty; call rig.Build first")
	}
	if cfg.Command == nil {
		cfg.Command = exec.CommandContext
	}
	if !cfg.Address.IsValid() {
		cfg.Address = netip.MustParseAddr("127.0.0.1")
	}
	if cfg.NodeName == "" {
		cfg.NodeName = "rig-node"
	}
	if cfg.Kubectl == "" {
		cfg.Kubectl = "kubectl"
	}
	if cfg.ReadyTimeout == 0 {
		cfg.ReadyTimeout = 3 * time.Minute
	}
	if cfg.Log == nil {
		cfg.Log = io.Discard
	}
	c := &Cluster{cfg: cfg, Dir: cfg.Dir, NodeName: cfg.NodeName, Address: cfg.Address}
	if c.Dir == "" {
		var err error
		if c.Dir, err = os.MkdirTemp("", "tether-rig-"); err != nil {
			return nil, fmt.Errorf("rig: create working directory: %w", err)
		}
		c.ownDir = true
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.ReadyTimeout)
	defer cancel()
	if err := c.start(ctx); err != nil {
		return nil, errors.Join(fmt.Errorf("rig: %w", err), c.Stop())
	}
	return c, nil
}

func (c *Cluster) start(ctx context.Context) error {
	began := time.Now()
	for _, d := range []string{"pki", "etcd", "logs", "pods"} {
		if err := os.MkdirAll(filepath.Join(c.Dir, d), 0o700); err != nil {
			return err
		}
	}
	ports, err := freePorts(4)
	if err != nil {
		return err
	}
	etcdPort, peerPort, apiPort, kubeletPort := ports[0], ports[1], ports[2], ports[3]
	addr := c.Address.String()
	hostPort := func(p int) string { return net.JoinHostPort(addr, strconv.Itoa(p)) }
	c.Server = "https://" + hostPort(apiPort)

	pki, err := c.writePKI()
	if err != nil {
		return fmt.Errorf("write certificates: %w", err)
	}
	c.CAFile = pki.ca
	auditPolicy := filepath.Join(c.Dir, "audit-policy.yaml")
	if err := os.WriteFile(auditPolicy, []byte(auditPolicyYAML), 0o600); err != nil {
		return fmt.Errorf("write the audit policy: %w", err)
	}
	c.AuditLog = filepath.Join(c.Dir, "logs", "audit.log")

	etcdURL := "http://" + hostPort(etcdPort)
	peerURL := "http://" + hostPort(peerPort)
	if err := c.run("etcd", c.cfg.Binaries.Etcd,
		"--name=rig",
		"--data-dir="+filepath.Join(c.Dir, "etcd"),
		"--listen-client-urls="+etcdURL,
		"--advertise-client-urls="+etcdURL,
		"--listen-peer-urls="+peerURL,
		"--initial-advertise-peer-urls="+peerURL,
		"--initial-cluster=rig="+peerURL,
		"--unsafe-no-fsync", // a test cluster: durability across power loss buys nothing
		"--log-level=warn",
	); err != nil {
		return err
	}

	if err := c.run("kube-apiserver", c.cfg.Binaries.Kube, "kube-apiserver",
		"--etcd-servers="+etcdURL,
		"--bind-address="+addr,
		"--advertise-address="+addr,
		"--secure-port="+strconv.Itoa(apiPort),
		"--endpoint-reconciler-type=none", // it refuses a loopback advertise address otherwise
		"--tls-cert-file="+pki.apiserverCert,
		"--tls-private-key-file="+pki.apiserverKey,
		"--client-ca-file="+pki.ca,
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file="+pki.saPub,
		"--service-account-signing-key-file="+pki.saKey,
		"--service-cluster-ip-range=10.0.0.0/24",
		"--authorization-mode=Node,RBAC",
		"--kubelet-client-certificate="+pki.kubeletClientCert,
		"--kubelet-client-key="+pki.kubeletClientKey,
		"--kubelet-certificate-authority="+pki.ca,
		"--kubelet-preferred-address-types=InternalIP",
		"--allow-privileged=true",
		"--profiling=false",
		"--audit-policy-file="+auditPolicy,
		"--audit-log-path="+c.AuditLog,
		"--audit-log-mode=blocking", // each event is in the file before the answer leaves
		"--audit-log-maxsize=0",     // one file, never rotated
	); err != nil {
		return err
	}
	if err := c.waitFor(ctx, "the API server to be ready", func(ctx context.Context) (bool, error) {
		out, err := c.Kubectl(ctx, "get", "--raw=/readyz").CombinedOutput()
		return err == nil && strings.TrimSpace(string(out)) == "ok", nil
	}); err != nil {
		return err
	}
	fmt.Fprintf(c.cfg.Log, "api server ready at %s after %s\n", c.Server, time.Since(began).Round(time.Millisecond))

	if out, err := c.Kubectl(ctx, "apply", "-f", c.cfg.Binaries.NodeRBAC).CombinedOutput(); err != nil {
		return fmt.Errorf("apply the node's RBAC %s: %w\n%s", c.cfg.Binaries.NodeRBAC, err, out)
	}
	if err := c.run("kube-controller-manager", c.cfg.Binaries.Kube, "kube-controller-manager",
		"--kubeconfig="+pki.controllerManagerKubeconfig,
		"--service-account-private-key-file="+pki.saKey,
		"--root-ca-file="+pki.ca,
		"--cluster-signing-cert-file="+pki.ca,
		"--cluster-signing-key-file="+pki.caKey,
		"--use-service-account-credentials",
		"--leader-elect=false",
		"--controllers=*",
		"--secure-port=0",
		"--profiling=false",
	); err != nil {
		return err
	}
	if err := c.run("kube-scheduler", c.cfg.Binaries.Kube, "kube-scheduler",
		"--kubeconfig="+pki.schedulerKubeconfig,
		"--leader-elect=false",
		"--secure-port=0",
		"--profiling=false",
	); err != nil {
		return err
	}
	if err := c.run("rig-node", c.cfg.Binaries.Node,
		"--kubeconfig="+pki.nodeKubeconfig,
		"--node-name="+c.NodeName,
		"--node-ip="+addr,
		"--listen-addr="+hostPort(kubeletPort),
		"--tls-cert-file="+pki.nodeServingCert,
		"--tls-private-key-file="+pki.nodeServingKey,
		"--client-ca-file="+pki.ca,
		"--pods-dir="+filepath.Join(c.Dir, "pods"),
	); err != nil {
		return err
	}

	checks := []struct {
		what  string
		args  []string
		ready func(out string) bool
	}{
		{"the node to be Ready", []string{"get", "node", c.NodeName, "-o", `jsonpath={.status.conditions[?(@.type=="Ready")].status}`},
			func(out string) bool { return out == "True" }},
		{"the aggregated ClusterRole view to have rules", []string{"get", "clusterrole", "view", "-o", "jsonpath={.rules[*].verbs}"},
			func(out string) bool { return strings.Contains(out, "list") }},
		{"the default service account", []string{"get", "serviceaccount", "default", "-n", "default", "-o", "name"},
			func(out string) bool { return out == "serviceaccount/default" }},
	}
	for _, check := range checks {
		if err := c.waitFor(ctx, check.what, func(ctx context.Context) (bool, error) {
			out, err := c.Kubectl(ctx, check.args...).Output()
			return err == nil && check.ready(strings.TrimSpace(string(out))), nil
		}); err != nil {
			return err
		}
	}
	fmt.Fprintf(c.cfg.Log, "cluster ready after %s (kubeconfig %s)\n", time.Since(began).Round(time.Millisecond), c.Kubeconfig)
	return nil
}

// auditPolicyYAML logs every request at Metadata level: who, as whom
// (impersonation), what URI, from where, with what answer; no bodies.
const auditPolicyYAML = `apiVersion: audit.k8s.io/v1
kind: Policy
rules:
- level: Metadata
`

// Kubectl returns a kubectl command with the admin kubeconfig, run the way
// every rig process is run (inside the rig's network namespace, if any).
func (c *Cluster) Kubectl(ctx context.Context, args ...string) *exec.Cmd {
	cmd := c.cfg.Command(ctx, c.cfg.Kubectl, append([]string{"--kubeconfig=" + c.Kubeconfig}, args...)...)
	cmd.Env = append(os.Environ(), "KUBECONFIG="+c.Kubeconfig)
	return cmd
}

// run starts one rig process with its output in logs/NAME.log.
func (c *Cluster) run(name, bin string, args ...string) error {
	p, err := StartProcess(name, filepath.Join(c.Dir, "logs", name+".log"), c.cfg.Command(context.Background(), bin, args...))
	if err != nil {
		return err
	}
	c.procs = append(c.procs, p)
	return nil
}

// waitFor polls ready until it returns true, a rig process exits, or ctx ends.
func (c *Cluster) waitFor(ctx context.Context, what string, ready func(context.Context) (bool, error)) error {
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		ok, err := ready(ctx)
		if err != nil {
			return err
		}
		if ok {
			return nil
		}
		for _, p := range c.procs {
			select {
			case <-p.Done():
				return fmt.Errorf("%s exited while waiting for %s: %v\n%s", p.Name, what, p.Err(), p.Tail(30))
			default:
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for %s: %w (logs in %s)", what, ctx.Err(), filepath.Join(c.Dir, "logs"))
		case <-tick.C:
		}
	}
}

// PeakRSS reports each running process's peak resident memory in bytes
// (VmHWM), keyed by process name.
func (c *Cluster) PeakRSS() map[string]int64 {
	peaks := map[string]int64{}
	for _, p := range c.procs {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.Pid()))
		if err != nil {
			continue
		}
		for line := range strings.Lines(string(b)) {
			if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
				kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
				peaks[p.Name] = kb * 1024
			}
		}
	}
	return peaks
}

// Stop ends every rig process, the node first and etcd last (kube-apiserver
// hangs on shutdown when etcd goes first), and removes the working directory
// if Start created it. It is safe to call more than once.
func (c *Cluster) Stop() error {
	c.stopOnce.Do(func() {
		var errs []error
		for i := len(c.procs) - 1; i >= 0; i-- {
			if err := c.procs[i].Stop(syscall.SIGTERM, 15*time.Second); err != nil {
				errs = append(errs, err)
			}
		}
		if c.ownDir {
			if err := os.RemoveAll(c.Dir); err != nil {
				errs = append(errs, fmt.Errorf("remove rig directory: %w", err))
			}
		}
		c.stopErr = errors.Join(errs...)
	})
	return c.stopErr
}

// freePorts returns n distinct TCP ports that were free on loopback a moment
// ago. Another process may take one before the rig binds it; the rig then
// fails to start with the port in its log, and the test is rerun.
func freePorts(n int) ([]int, error) {
	var ports []int
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("find a free port: %w", err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// pkiFiles are the paths writePKI produced.
type pkiFiles struct {
	ca, caKey                           string
	apiserverCert, apiserverKey         string
	kubeletClientCert, kubeletClientKey string
	nodeServingCert, nodeServingKey     string
	saKey, saPub                        string
	controllerManagerKubeconfig         string
	schedulerKubeconfig, nodeKubeconfig string
}

func (c *Cluster) writePKI() (pkiFiles, error) {
	dir := filepath.Join(c.Dir, "pki")
	ca, err := newAuthority(dir, "tether-rig-ca")
	if err != nil {
		return pkiFiles{}, err
	}
	f := pkiFiles{ca: ca.certFile(), caKey: filepath.Join(dir, "ca.key")}
	if err := writeKey(f.caKey, ca.key); err != nil {
		return pkiFiles{}, err
	}
	ip := net.IP(c.Address.AsSlice())
	if f.apiserverCert, f.apiserverKey, err = ca.issue(certRequest{
		file: "apiserver", commonName: "kube-apiserver", server: true,
		dnsNames: []string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local"},
		ips:      []net.IP{ip, net.IPv4(127, 0, 0, 1), net.IPv4(10, 0, 0, 1)},
	}); err != nil {
		return pkiFiles{}, err
	}
	if f.kubeletClientCert, f.kubeletClientKey, err = ca.issue(certRequest{
		file: "apiserver-kubelet-client", commonName: "kube-apiserver-kubelet-client",
		organization: []string{"system:masters"}, client: true,
	}); err != nil {
		return pkiFiles{}, err
	}
	if f.nodeServingCert, f.nodeServingKey, err = ca.issue(certRequest{
		file: "node-serving", commonName: c.NodeName, server: true,
		dnsNames: []string{c.NodeName}, ips: []net.IP{ip},
	}); err != nil {
		return pkiFiles{}, err
	}
	if f.saKey, f.saPub, err = writeServiceAccountKey(dir); err != nil {
		return pkiFiles{}, err
	}
	kubeconfigs := []struct {
		path *string
		file string
		cn   string
		org  []string
	}{
		{&c.Kubeconfig, "admin", "tether-rig-admin", []string{"system:masters"}},
		{&f.controllerManagerKubeconfig, "kube-controller-manager", "system:kube-controller-manager", nil},
		{&f.schedulerKubeconfig, "kube-scheduler", "system:kube-scheduler", nil},
		{&f.nodeKubeconfig, "node", "system:node:" + c.NodeName, []string{"system:nodes"}},
	}
	for _, k := range kubeconfigs {
		certPath, keyPath, err := ca.issue(certRequest{file: k.file, commonName: k.cn, organization: k.org, client: true})
		if err != nil {
			return pkiFiles{}, err
		}
		*k.path = filepath.Join(c.Dir, k.file+".kubeconfig")
		if err := writeKubeconfig(*k.path, c.Server, f.ca, certPath, keyPath); err != nil {
			return pkiFiles{}, err
		}
	}
	return f, nil
}

func writeKubeconfig(path, server, caFile, certFile, keyFile string) error {
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["rig"] = &clientcmdapi.Cluster{Server: server, CertificateAuthority: caFile}
	cfg.AuthInfos["rig"] = &clientcmdapi.AuthInfo{ClientCertificate: certFile, ClientKey: keyFile}
	cfg.Contexts["rig"] = &clientcmdapi.Context{Cluster: "rig", AuthInfo: "rig"}
	cfg.CurrentContext = "rig"
	return clientcmd.WriteToFile(*cfg, path)
}

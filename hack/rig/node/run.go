package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"runtime"
	"strconv"

	"github.com/virtual-kubelet/virtual-kubelet/log"
	"github.com/virtual-kubelet/virtual-kubelet/node"
	"github.com/virtual-kubelet/virtual-kubelet/node/nodeutil"
	"golang.org/x/sync/errgroup"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	corev1listers "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/clientcmd"

	"tether.dev/tether/hack/rig/node/procpods"
)

// kubeletVersion is the version the node reports, that of the rig's control
// plane.
const kubeletVersion = "v1.37.2"

// usageError is a bad command line; the process exits with code 2.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

func exitCode(err error) int {
	if errors.As(err, new(usageError)) {
		return 2
	}
	return 1
}

// options are the command-line flags.
type options struct {
	kubeconfig string
	nodeName   string
	nodeIP     netip.Addr
	listenAddr string
	listenPort int32
	tlsCert    string
	tlsKey     string
	clientCA   string
	podsDir    string
}

func parseFlags(args []string, stderr io.Writer) (options, error) {
	var o options
	var nodeIP string
	fs := flag.NewFlagSet("rig-node", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.kubeconfig, "kubeconfig", "", "kubeconfig with the node's credentials (client certificate CN system:node:NAME, O system:nodes)")
	fs.StringVar(&o.nodeName, "node-name", "", "name of the Node object")
	fs.StringVar(&nodeIP, "node-ip", "", "InternalIP of the node, also the IP of every pod")
	fs.StringVar(&o.listenAddr, "listen-addr", "", "IP:PORT of the kubelet API (TLS)")
	fs.StringVar(&o.tlsCert, "tls-cert-file", "", "serving certificate of the kubelet API (PEM)")
	fs.StringVar(&o.tlsKey, "tls-private-key-file", "", "key of the serving certificate (PEM)")
	fs.StringVar(&o.clientCA, "client-ca-file", "", "CA bundle that signs client certificates accepted by the kubelet API (PEM)")
	fs.StringVar(&o.podsDir, "pods-dir", "", "directory holding one directory per pod")
	if err := fs.Parse(args); err != nil {
		return o, usageError{err}
	}
	if fs.NArg() > 0 {
		return o, usageError{fmt.Errorf("unexpected arguments: %q", fs.Args())}
	}
	for name, v := range map[string]string{
		"kubeconfig": o.kubeconfig, "node-name": o.nodeName, "node-ip": nodeIP,
		"listen-addr": o.listenAddr, "tls-cert-file": o.tlsCert,
		"tls-private-key-file": o.tlsKey, "client-ca-file": o.clientCA, "pods-dir": o.podsDir,
	} {
		if v == "" {
			return o, usageError{fmt.Errorf("flag --%s is required", name)}
		}
	}
	ip, err := netip.ParseAddr(nodeIP)
	if err != nil {
		return o, usageError{fmt.Errorf("--node-ip: %w", err)}
	}
	o.nodeIP = ip.Unmap()
	_, port, err := net.SplitHostPort(o.listenAddr)
	if err != nil {
		return o, usageError{fmt.Errorf("--listen-addr: %w", err)}
	}
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil || p == 0 {
		return o, usageError{fmt.Errorf("--listen-addr: invalid port %q", port)}
	}
	o.listenPort = int32(p)
	return o, nil
}

// run starts the node and returns when ctx is done or a part fails.
func run(ctx context.Context, args []string, stderr io.Writer) error {
	o, err := parseFlags(args, stderr)
	if err != nil {
		return err
	}
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))

	restCfg, err := clientcmd.BuildConfigFromFlags("", o.kubeconfig)
	if err != nil {
		return fmt.Errorf("load kubeconfig: %w", err)
	}
	restCfg.UserAgent = "rig-node/" + kubeletVersion
	restCfg.QPS, restCfg.Burst = 50, 100
	client, err := kubernetes.NewForConfig(restCfg)
	if err != nil {
		return fmt.Errorf("create client: %w", err)
	}
	auth, err := newAuthFilter(client, o.nodeName, o.clientCA, logger)
	if err != nil {
		return err
	}

	var (
		provider *procpods.Provider
		pods     corev1listers.PodLister
	)
	newProvider := func(pc nodeutil.ProviderConfig) (nodeutil.Provider, node.NodeProvider, error) {
		pods = pc.Pods
		p, err := procpods.New(procpods.Config{
			NodeName:   o.nodeName,
			NodeIP:     o.nodeIP,
			PodsDir:    o.podsDir,
			ConfigMaps: pc.ConfigMaps,
			Secrets:    pc.Secrets,
			RemovePod:  removePod(client),
		}, logger.With("component", "pods"))
		provider = p
		return p, nil, err
	}
	vk, err := nodeutil.NewNode(o.nodeName, newProvider,
		nodeutil.WithClient(client),
		func(cfg *nodeutil.NodeConfig) error {
			cfg.NodeSpec = nodeSpec(o)
			cfg.NumWorkers = 4
			// The provider resolves env references itself: virtual-kubelet's
			// resolution fails on status.podIP.
			cfg.SkipDownwardAPIResolution = true
			// The HTTP server is ours (see server.go), not virtual-kubelet's:
			// with no handler it starts none. (A nil TLS config would do
			// the same but log a misleading warning.)
			cfg.HTTPListenAddr = o.listenAddr
			cfg.Handler = nil
			cfg.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12}
			return nil
		},
	)
	if err != nil {
		return fmt.Errorf("create node: %w", err)
	}
	srv, err := newServer(serverConfig{
		addr:     o.listenAddr,
		certFile: o.tlsCert,
		keyFile:  o.tlsKey,
		handler:  auth.wrap(podRoutes(provider, pods)),
	}, logger)
	if err != nil {
		return err
	}

	ctx = log.WithLogger(ctx, vkLogger(logger.With("component", "virtual-kubelet")))
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { return provider.Run(ctx) })
	g.Go(func() error { return srv.run(ctx) })
	g.Go(func() error {
		err := vk.Run(ctx)
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("node controller stopped: %w", err)
	})
	g.Go(func() error {
		if err := vk.WaitReady(ctx, 0); err != nil {
			return nil // vk.Run reports why
		}
		logger.Info("node ready", "node", o.nodeName, "node_ip", o.nodeIP, "listen_addr", o.listenAddr)
		return nil
	})
	err = g.Wait()
	provider.Close()
	return err
}

// removePod deletes a pod object whose processes exited, with grace period
// 0, so that deletions do not wait for virtual-kubelet's grace period.
func removePod(client kubernetes.Interface) func(ctx context.Context, namespace, name string, uid types.UID) error {
	return func(ctx context.Context, namespace, name string, uid types.UID) error {
		opts := metav1.DeleteOptions{
			GracePeriodSeconds: new(int64),
			Preconditions:      &metav1.Preconditions{UID: &uid},
		}
		err := client.CoreV1().Pods(namespace).Delete(ctx, name, opts)
		if apierrors.IsNotFound(err) || apierrors.IsConflict(err) {
			return nil
		}
		return err
	}
}

// nodeSpec is the Node the rig registers. It has no kubernetes.io/role
// label (NodeRestriction refuses it) and does not declare WebSocket
// streaming, so the apiserver talks SPDY to it.
func nodeSpec(o options) corev1.Node {
	now := metav1.Now()
	resources := corev1.ResourceList{
		corev1.ResourceCPU:    resource.MustParse("8"),
		corev1.ResourceMemory: resource.MustParse("16Gi"),
		corev1.ResourcePods:   resource.MustParse("110"),
	}
	cond := func(t corev1.NodeConditionType, s corev1.ConditionStatus, reason, msg string) corev1.NodeCondition {
		return corev1.NodeCondition{Type: t, Status: s, Reason: reason, Message: msg, LastHeartbeatTime: now, LastTransitionTime: now}
	}
	return corev1.Node{
		ObjectMeta: metav1.ObjectMeta{
			Name: o.nodeName,
			Labels: map[string]string{
				"type":                   "virtual-kubelet",
				"kubernetes.io/hostname": o.nodeName,
				"kubernetes.io/os":       runtime.GOOS,
				"kubernetes.io/arch":     runtime.GOARCH,
			},
		},
		Status: corev1.NodeStatus{
			Phase:       corev1.NodeRunning,
			Capacity:    resources,
			Allocatable: resources.DeepCopy(),
			Conditions: []corev1.NodeCondition{
				cond(corev1.NodeReady, corev1.ConditionTrue, "KubeletReady", "kubelet is posting ready status"),
				cond(corev1.NodeMemoryPressure, corev1.ConditionFalse, "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
				cond(corev1.NodeDiskPressure, corev1.ConditionFalse, "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
				cond(corev1.NodePIDPressure, corev1.ConditionFalse, "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
			},
			Addresses: []corev1.NodeAddress{
				{Type: corev1.NodeInternalIP, Address: o.nodeIP.String()},
				{Type: corev1.NodeHostName, Address: o.nodeName},
			},
			DaemonEndpoints: corev1.NodeDaemonEndpoints{
				KubeletEndpoint: corev1.DaemonEndpoint{Port: o.listenPort},
			},
			NodeInfo: corev1.NodeSystemInfo{
				KubeletVersion:          kubeletVersion,
				OperatingSystem:         runtime.GOOS,
				Architecture:            runtime.GOARCH,
				ContainerRuntimeVersion: "process://" + kubeletVersion,
				BootID:                  bootID(),
			},
		},
	}
}

func bootID() string {
	b, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		return ""
	}
	return string(b[:max(len(b)-1, 0)])
}

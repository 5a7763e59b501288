// Package procpods runs Kubernetes pods as local processes, for the test
// rig's node. It implements virtual-kubelet's provider interfaces: the pod
// lifecycle (create, update, delete, status with asynchronous notifications)
// and the streaming calls of the kubelet API (logs, exec, attach,
// port-forward).
//
// Every container of a pod is one process started from its command and args
// (the image is ignored; with no command, args[0] is the command; a bare
// name is looked up in the container's PATH), in its own process group (its
// own session with a pseudo-terminal when tty: true). Pods share the host's
// network; their IP is the node IP. Files:
//
//	PodsDir/<namespace>/<pod>/              pod directory, removed with the pod
//	PodsDir/<namespace>/<pod>/<container>/  working directory and HOME
//	PodsDir/<namespace>/<pod>/.logs/<container>/<run>.log
//
// The environment is PATH, HOME, HOSTNAME (the pod name), TERM for a TTY,
// then envFrom and env as the kubelet resolves them (see containerEnv);
// nothing is inherited from the node.
//
// Init containers run one after the other before the containers. Restart
// policies are honoured with the kubelet's back-off: the first restart is
// immediate, then RestartBackoff doubling up to MaxRestartBackoff. Exec'd
// commands join the container's process group, so they die with it. Logs
// are kept in the CRI format ("<RFC3339Nano> <stream> <F|P> <text>"), one
// file per run of a container, the current and the previous run; they are
// not rotated. Deleting a pod sends SIGTERM to its process groups, SIGKILL
// after the grace period, then removes the pod object from the API (grace
// period 0) and the pod directory.
//
// Not supported: images, volumes (all processes see the host's files),
// workingDir, security contexts, resource limits, probes (a running
// container is ready), service environment variables, ephemeral and sidecar
// containers, usage statistics.
package procpods

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/virtual-kubelet/virtual-kubelet/errdefs"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	corev1listers "k8s.io/client-go/listers/core/v1"
	"k8s.io/utils/clock"
)

// Config configures a Provider.
type Config struct {
	// NodeName is the name of the node the pods run on. Required.
	NodeName string
	// NodeIP is reported as host and pod IP of every pod, and is the
	// fallback address of port-forward when 127.0.0.1 refuses. Required.
	NodeIP netip.Addr
	// PodsDir holds one directory per pod. Required; created if missing.
	PodsDir string
	// RemovePod deletes a pod object from the API with grace period 0 and the
	// given UID as precondition. It is called once the processes of a pod
	// whose deletion the API requested have exited. Nil means pods are only
	// forgotten locally, and virtual-kubelet removes them after their grace
	// period.
	RemovePod func(ctx context.Context, namespace, name string, uid types.UID) error
	// ConfigMaps and Secrets resolve the env and envFrom references of
	// containers (virtual-kubelet's own resolution must be off: it does not
	// know the pod IP). Nil means references fail unless optional.
	ConfigMaps corev1listers.ConfigMapLister
	Secrets    corev1listers.SecretLister
	// RestartBackoff is the delay before the second restart of a crashing
	// container; it doubles with each further restart. The first restart is
	// immediate, and the delay resets once a container ran for twice
	// MaxRestartBackoff. Zero means 10s.
	RestartBackoff time.Duration
	// MaxRestartBackoff caps the restart delay. Zero means 30s; it is at
	// least RestartBackoff.
	MaxRestartBackoff time.Duration
	// MaxGracePeriod bounds the time between SIGTERM and SIGKILL when a pod
	// is deleted, whatever its terminationGracePeriodSeconds. Zero means 30s.
	MaxGracePeriod time.Duration
	// ShutdownGracePeriod is the time between SIGTERM and SIGKILL for the
	// pods still running when the provider closes. Zero means 2s.
	ShutdownGracePeriod time.Duration
	// DrainTimeout bounds how long the output of an exited process is
	// still read, for pipes held open by processes that escaped its process
	// group. Zero means 2s.
	DrainTimeout time.Duration
	// DialTimeout bounds the connection to a pod's port for port-forward.
	// Zero means 5s.
	DialTimeout time.Duration
	// ConfigRetry is the delay before trying again to start a container
	// whose environment could not be resolved. Zero means 2s.
	ConfigRetry time.Duration
	// Clock is used for restart backoff and grace periods. Nil means the
	// real clock.
	Clock clock.Clock
}

// Provider runs pods as local processes. Create it with New, start its
// notifier with Run, and stop it (killing every process) with Close.
type Provider struct {
	cfg   Config
	log   *slog.Logger
	clock clock.Clock
	env   envSource

	wake chan struct{} // size 1: dirty has entries or notify was set
	stop chan struct{} // closed by Close
	wg   sync.WaitGroup

	// mu guards the fields below. Lock order: pod.mu before Provider.mu.
	mu     sync.Mutex
	closed bool
	pods   map[string]*pod
	notify func(*corev1.Pod)
	dirty  map[string]*corev1.Pod // latest undelivered status of each pod
}

// New validates cfg and returns a Provider. It does no I/O.
func New(cfg Config, logger *slog.Logger) (*Provider, error) {
	if cfg.NodeName == "" {
		return nil, errors.New("procpods: node name is required")
	}
	if !cfg.NodeIP.IsValid() {
		return nil, errors.New("procpods: node IP is required")
	}
	if cfg.PodsDir == "" {
		return nil, errors.New("procpods: pods directory is required")
	}
	abs, err := filepath.Abs(cfg.PodsDir)
	if err != nil {
		return nil, fmt.Errorf("procpods: pods directory: %w", err)
	}
	cfg.PodsDir = abs
	if cfg.RestartBackoff <= 0 {
		cfg.RestartBackoff = 10 * time.Second
	}
	if cfg.MaxRestartBackoff <= 0 {
		cfg.MaxRestartBackoff = 30 * time.Second
	}
	cfg.MaxRestartBackoff = max(cfg.MaxRestartBackoff, cfg.RestartBackoff)
	if cfg.MaxGracePeriod <= 0 {
		cfg.MaxGracePeriod = 30 * time.Second
	}
	if cfg.ShutdownGracePeriod <= 0 {
		cfg.ShutdownGracePeriod = 2 * time.Second
	}
	if cfg.DrainTimeout <= 0 {
		cfg.DrainTimeout = 2 * time.Second
	}
	if cfg.ConfigRetry <= 0 {
		cfg.ConfigRetry = 2 * time.Second
	}
	if cfg.DialTimeout <= 0 {
		cfg.DialTimeout = 5 * time.Second
	}
	clk := cfg.Clock
	if clk == nil {
		clk = clock.RealClock{}
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Provider{
		cfg:   cfg,
		log:   logger,
		clock: clk,
		env:   envSource{nodeIP: cfg.NodeIP, configMaps: cfg.ConfigMaps, secrets: cfg.Secrets},
		wake:  make(chan struct{}, 1),
		stop:  make(chan struct{}),
		pods:  make(map[string]*pod),
		dirty: make(map[string]*corev1.Pod),
	}, nil
}

// Run delivers status notifications until ctx is done, then closes the
// provider. It returns when every goroutine of the provider has exited.
func (p *Provider) Run(ctx context.Context) error {
	for {
		select {
		case <-ctx.Done():
			p.Close()
			return nil
		case <-p.stop:
			p.wg.Wait()
			return nil
		case <-p.wake:
		}
		p.mu.Lock()
		fn := p.notify
		var batch map[string]*corev1.Pod
		if fn != nil && len(p.dirty) > 0 {
			batch = p.dirty
			p.dirty = make(map[string]*corev1.Pod)
		}
		p.mu.Unlock()
		for _, pod := range batch {
			fn(pod)
		}
	}
}

// Close kills every pod's processes (SIGTERM, then SIGKILL after
// ShutdownGracePeriod) without removing pod objects, and waits for every
// goroutine of the provider. It is idempotent.
func (p *Provider) Close() {
	p.mu.Lock()
	var pods []*pod
	if !p.closed {
		p.closed = true
		close(p.stop)
		for _, pd := range p.pods {
			pods = append(pods, pd)
		}
	}
	p.mu.Unlock()

	var wg sync.WaitGroup
	for _, pd := range pods {
		if pd.beginTermination(false) {
			wg.Go(func() { p.terminate(pd, p.cfg.ShutdownGracePeriod) })
		}
	}
	wg.Wait()
	p.wg.Wait()
}

func (p *Provider) isClosed() bool {
	select {
	case <-p.stop:
		return true
	default:
		return false
	}
}

// spawn runs fn in a goroutine that Close waits for. It returns false, and
// does not run fn, once the provider is closed.
func (p *Provider) spawn(fn func()) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return false
	}
	p.wg.Go(fn)
	return true
}

// NotifyPods registers the callback that receives pod status changes.
func (p *Provider) NotifyPods(_ context.Context, fn func(*corev1.Pod)) {
	p.mu.Lock()
	p.notify = fn
	p.mu.Unlock()
	p.signal()
}

func (p *Provider) signal() {
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// publishLocked queues the pod's current status for the notifier. pd.mu must
// be held.
func (p *Provider) publishLocked(pd *pod) {
	snap := pd.snapshotLocked(p.cfg.NodeIP)
	p.mu.Lock()
	p.dirty[pd.key] = snap
	p.mu.Unlock()
	p.signal()
}

func podKey(namespace, name string) string { return namespace + "/" + name }

func (p *Provider) lookup(namespace, name string) (*pod, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	pd, ok := p.pods[podKey(namespace, name)]
	if !ok {
		return nil, errdefs.NotFoundf("pod %s/%s is not known to node %s", namespace, name, p.cfg.NodeName)
	}
	return pd, nil
}

// CreatePod starts the pod's containers. It returns once the pod is
// registered; the processes start in the background.
func (p *Provider) CreatePod(_ context.Context, in *corev1.Pod) error {
	obj := in.DeepCopy()
	key := podKey(obj.Namespace, obj.Name)
	dir := filepath.Join(p.cfg.PodsDir, obj.Namespace, obj.Name)
	pd, err := newPod(key, dir, obj, p.clock.Now())
	if err != nil {
		return errdefs.AsInvalidInput(err)
	}

	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return errors.New("node is shutting down")
	}
	if old, ok := p.pods[key]; ok {
		p.mu.Unlock()
		if old.uid() == obj.UID {
			return nil
		}
		return fmt.Errorf("pod %s: a previous pod of that name is still terminating", key)
	}
	p.pods[key] = pd
	p.mu.Unlock()

	// abandon drops a pod whose supervisor never started; closing stopped
	// releases a termination that Close may have begun meanwhile.
	abandon := func() {
		close(pd.stopped)
		p.forget(pd)
	}
	if err := pd.prepareDirs(); err != nil {
		abandon()
		return fmt.Errorf("pod %s: %w", key, err)
	}
	pd.mu.Lock()
	p.publishLocked(pd)
	pd.mu.Unlock()
	if !p.spawn(func() { p.supervise(pd) }) {
		abandon()
		return errors.New("node is shutting down")
	}
	p.log.Info("pod created", "pod", key, "uid", obj.UID)
	return nil
}

// UpdatePod records the pod's new metadata. Containers are not restarted:
// the only container field that may change is the image, which is ignored.
func (p *Provider) UpdatePod(_ context.Context, in *corev1.Pod) error {
	pd, err := p.lookup(in.Namespace, in.Name)
	if err != nil {
		return err
	}
	pd.mu.Lock()
	defer pd.mu.Unlock()
	if pd.obj.UID != in.UID {
		return fmt.Errorf("pod %s: a previous pod of that name is still terminating", pd.key)
	}
	status := pd.obj.Status
	pd.obj = in.DeepCopy()
	pd.obj.Status = status
	p.publishLocked(pd)
	return nil
}

// DeletePod starts stopping the pod's processes and returns at once. Once
// they exited, the terminal status is published, the pod object is removed
// from the API (if it is being deleted there) and the pod is forgotten.
func (p *Provider) DeletePod(_ context.Context, in *corev1.Pod) error {
	pd, err := p.lookup(in.Namespace, in.Name)
	if err != nil {
		return err
	}
	if pd.uid() != in.UID {
		return errdefs.NotFoundf("pod %s with UID %s is not known to node %s", pd.key, in.UID, p.cfg.NodeName)
	}
	if !pd.beginTermination(true) {
		return nil
	}
	grace := gracePeriod(in, p.cfg.MaxGracePeriod)
	if !p.spawn(func() { p.terminate(pd, grace) }) {
		// The provider is closing and left this pod to us.
		p.terminate(pd, min(grace, p.cfg.ShutdownGracePeriod))
		return nil
	}
	p.log.Info("pod deleting", "pod", pd.key, "grace_period", grace)
	return nil
}

// gracePeriod is the time between SIGTERM and SIGKILL for a pod deletion.
func gracePeriod(pod *corev1.Pod, limit time.Duration) time.Duration {
	secs := int64(corev1.DefaultTerminationGracePeriodSeconds)
	switch {
	case pod.DeletionGracePeriodSeconds != nil:
		secs = *pod.DeletionGracePeriodSeconds
	case pod.Spec.TerminationGracePeriodSeconds != nil:
		secs = *pod.Spec.TerminationGracePeriodSeconds
	}
	return min(max(time.Duration(secs)*time.Second, 0), limit)
}

// terminate stops the pod's processes: SIGTERM, SIGKILL after grace, then
// publishes the terminal status and, for deletions requested by the API,
// removes the pod object and forgets the pod.
func (p *Provider) terminate(pd *pod, grace time.Duration) {
	pd.signalAll(sigTerm)
	timer := p.clock.NewTimer(grace)
	select {
	case <-pd.stopped:
		timer.Stop()
	case <-timer.C():
		pd.signalAll(sigKill)
		<-pd.stopped
	}

	pd.mu.Lock()
	pd.finishLocked(p.clock.Now())
	remove := pd.deleted && !p.isClosed()
	p.publishLocked(pd)
	obj := pd.obj
	pd.mu.Unlock()
	if !remove {
		return
	}
	if p.cfg.RemovePod != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err := p.cfg.RemovePod(ctx, obj.Namespace, obj.Name, obj.UID)
		cancel()
		if err != nil {
			p.log.Warn("pod object not removed", "pod", pd.key, "err", err)
		}
	}
	p.forget(pd)
	p.log.Info("pod deleted", "pod", pd.key)
}

// forget drops the pod from the provider and removes its directory.
func (p *Provider) forget(pd *pod) {
	p.mu.Lock()
	if p.pods[pd.key] == pd {
		delete(p.pods, pd.key)
	}
	p.mu.Unlock()
	if err := os.RemoveAll(pd.dir); err != nil {
		p.log.Warn("pod directory not removed", "pod", pd.key, "err", err)
	}
}

// GetPod returns the pod as the provider runs it, with its current status.
func (p *Provider) GetPod(_ context.Context, namespace, name string) (*corev1.Pod, error) {
	pd, err := p.lookup(namespace, name)
	if err != nil {
		return nil, err
	}
	pd.mu.Lock()
	defer pd.mu.Unlock()
	return pd.snapshotLocked(p.cfg.NodeIP), nil
}

// GetPodStatus returns the pod's current status.
func (p *Provider) GetPodStatus(ctx context.Context, namespace, name string) (*corev1.PodStatus, error) {
	pod, err := p.GetPod(ctx, namespace, name)
	if err != nil {
		return nil, err
	}
	return &pod.Status, nil
}

// GetPods returns every pod the provider runs.
func (p *Provider) GetPods(context.Context) ([]*corev1.Pod, error) {
	p.mu.Lock()
	pods := make([]*pod, 0, len(p.pods))
	for _, pd := range p.pods {
		pods = append(pods, pd)
	}
	p.mu.Unlock()
	out := make([]*corev1.Pod, 0, len(pods))
	for _, pd := range pods {
		pd.mu.Lock()
		out = append(out, pd.snapshotLocked(p.cfg.NodeIP))
		pd.mu.Unlock()
	}
	return out, nil
}

package procpods

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

const (
	sigTerm = syscall.SIGTERM
	sigKill = syscall.SIGKILL
)

// pod is one pod run by the provider.
type pod struct {
	key     string
	dir     string
	kill    chan struct{} // closed when termination begins
	stopped chan struct{} // closed when no container process runs any more and none will start

	mu         sync.Mutex // guards the fields below and those of the containers
	obj        *corev1.Pod
	base       corev1.PodStatus // what the API set that the provider keeps: QoS class, foreign conditions
	startTime  metav1.Time
	inits      []*container
	containers []*container
	initDone   bool // every init container succeeded
	initFailed bool // an init container failed and will not be restarted
	// terminating is set when termination begins: no process starts after it.
	terminating bool
	deleted     bool             // termination was requested by the API, which waits for the object's removal
	finished    bool             // every process exited after termination
	sessions    map[int]struct{} // process groups of TTY exec sessions, which have their own session
	conds       map[corev1.PodConditionType]corev1.PodCondition
}

// container is one container of a pod; its mutable fields are guarded by
// the pod's mu.
type container struct {
	spec   corev1.Container
	init   bool
	dir    string // working directory and HOME
	logDir string

	state     corev1.ContainerState
	lastState corev1.ContainerState
	restarts  int32
	runs      int // processes started so far
	id        string
	cur       *run // current or last run
	prev      *run // the run before cur
	backoff   time.Duration
	lastStart time.Time
}

// podConditions are the conditions the provider sets; others set by the API
// (DisruptionTarget, ...) are kept as they were, and so is PodScheduled when
// the scheduler set it.
var podConditions = []corev1.PodConditionType{
	corev1.PodScheduled,
	corev1.PodReadyToStartContainers,
	corev1.PodInitialized,
	corev1.ContainersReady,
	corev1.PodReady,
}

func newPod(key, dir string, obj *corev1.Pod, now time.Time) (*pod, error) {
	if len(obj.Spec.Containers) == 0 {
		return nil, errors.New("pod has no containers")
	}
	pd := &pod{
		key:       key,
		dir:       dir,
		kill:      make(chan struct{}),
		stopped:   make(chan struct{}),
		obj:       obj,
		startTime: metav1.NewTime(now),
		sessions:  make(map[int]struct{}),
		conds:     make(map[corev1.PodConditionType]corev1.PodCondition),
		initDone:  len(obj.Spec.InitContainers) == 0,
	}
	pd.base.QOSClass = obj.Status.QOSClass
	for _, c := range obj.Status.Conditions {
		if !isOwnCondition(c.Type) {
			pd.base.Conditions = append(pd.base.Conditions, c)
		}
	}
	if obj.Status.StartTime != nil {
		pd.startTime = *obj.Status.StartTime
	}
	obj.Status = corev1.PodStatus{}

	add := func(spec corev1.Container, init bool, reason string) *container {
		c := &container{
			spec:   spec,
			init:   init,
			dir:    filepath.Join(dir, spec.Name),
			logDir: filepath.Join(dir, ".logs", spec.Name),
			state:  corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: reason}},
		}
		return c
	}
	for i, spec := range obj.Spec.InitContainers {
		reason := "PodInitializing"
		if i == 0 {
			reason = "ContainerCreating"
		}
		pd.inits = append(pd.inits, add(spec, true, reason))
	}
	for _, spec := range obj.Spec.Containers {
		reason := "ContainerCreating"
		if !pd.initDone {
			reason = "PodInitializing"
		}
		pd.containers = append(pd.containers, add(spec, false, reason))
	}
	return pd, nil
}

func isOwnCondition(t corev1.PodConditionType) bool {
	return t != corev1.PodScheduled && slices.Contains(podConditions, t)
}

func (pd *pod) uid() types.UID {
	pd.mu.Lock()
	defer pd.mu.Unlock()
	return pd.obj.UID
}

// prepareDirs creates the pod's directories afresh.
func (pd *pod) prepareDirs() error {
	if err := os.RemoveAll(pd.dir); err != nil {
		return fmt.Errorf("remove stale pod directory: %w", err)
	}
	for _, c := range pd.all() {
		for _, d := range []string{c.dir, c.logDir} {
			if err := os.MkdirAll(d, 0o755); err != nil {
				return fmt.Errorf("create container directory: %w", err)
			}
		}
	}
	return nil
}

// all returns the init containers then the containers. The slice is fixed
// at creation, so it needs no lock.
func (pd *pod) all() []*container {
	return append(append([]*container(nil), pd.inits...), pd.containers...)
}

// container returns the named container. The set is fixed at creation.
func (pd *pod) container(name string) *container {
	for _, c := range pd.all() {
		if c.spec.Name == name {
			return c
		}
	}
	return nil
}

// beginTermination marks the pod terminating and reports whether this call
// did; deleted says the API asked for it.
func (pd *pod) beginTermination(deleted bool) bool {
	pd.mu.Lock()
	defer pd.mu.Unlock()
	if pd.terminating {
		return false
	}
	pd.terminating = true
	pd.deleted = deleted
	close(pd.kill)
	return true
}

// signalAll sends sig to every process group of the pod.
func (pd *pod) signalAll(sig syscall.Signal) {
	pd.mu.Lock()
	var groups []int
	for _, c := range pd.all() {
		if c.cur != nil && !c.cur.hasExited() {
			groups = append(groups, c.cur.pgid)
		}
	}
	for g := range pd.sessions {
		groups = append(groups, g)
	}
	pd.mu.Unlock()
	for _, g := range groups {
		_ = syscall.Kill(-g, sig) // ESRCH: already gone
	}
}

// finishLocked gives every container a terminated state once termination
// stopped all processes.
func (pd *pod) finishLocked(now time.Time) {
	pd.finished = true
	for _, c := range pd.all() {
		if c.state.Terminated != nil {
			continue
		}
		if c.lastState.Terminated != nil {
			c.state = corev1.ContainerState{Terminated: c.lastState.Terminated.DeepCopy()}
			continue
		}
		c.state = corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{
			ExitCode:   137,
			Reason:     "ContainerStatusUnknown",
			Message:    "The container was not running when the pod was terminated",
			FinishedAt: metav1.NewTime(now),
		}}
	}
}

// supervise runs the init containers one after the other, then every
// container, and returns when no process runs and none will start.
func (p *Provider) supervise(pd *pod) {
	defer close(pd.stopped)
	for _, c := range pd.inits {
		if !p.runContainer(pd, c) {
			return
		}
	}
	pd.mu.Lock()
	if pd.terminating {
		pd.mu.Unlock()
		return
	}
	if !pd.initDone {
		pd.initDone = true
		for _, c := range pd.containers {
			c.state = corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "ContainerCreating"}}
		}
		p.publishLocked(pd)
	}
	pd.mu.Unlock()

	var wg sync.WaitGroup
	for _, c := range pd.containers {
		wg.Go(func() { p.runContainer(pd, c) })
	}
	wg.Wait()
}

// runContainer runs the container, restarting it as the restart policy
// says, until it is done or the pod terminates. It reports whether the
// container's last run succeeded and it will not run again.
func (p *Provider) runContainer(pd *pod, c *container) bool {
	for {
		pd.mu.Lock()
		if pd.terminating {
			pd.mu.Unlock()
			return false
		}
		env, err := p.env.containerEnv(pd.obj, &c.spec, c.dir)
		if err != nil {
			c.state = corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{
				Reason:  "CreateContainerConfigError",
				Message: err.Error(),
			}}
			p.publishLocked(pd)
			pd.mu.Unlock()
			if !p.sleep(p.cfg.ConfigRetry, pd.kill) {
				return false
			}
			continue
		}
		r := p.startLocked(pd, c, env)
		p.publishLocked(pd)
		pd.mu.Unlock()

		var exit exitInfo
		if r != nil {
			exit = r.wait(p.clock, p.cfg.DrainTimeout)
		}

		pd.mu.Lock()
		now := p.clock.Now()
		if r != nil {
			c.state = corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{
				ExitCode:    exit.code,
				Signal:      exit.signal,
				Reason:      exitReason(exit.code),
				StartedAt:   c.state.Running.StartedAt,
				FinishedAt:  metav1.NewTime(now),
				ContainerID: c.id,
			}}
			p.log.Info("container exited", "pod", pd.key, "container", c.spec.Name, "exit_code", exit.code)
		}
		code := c.state.Terminated.ExitCode
		if pd.terminating {
			p.publishLocked(pd)
			pd.mu.Unlock()
			return false
		}
		if !shouldRestart(pd.obj.Spec.RestartPolicy, c.init, code) {
			if c.init && code != 0 {
				pd.initFailed = true
			}
			p.publishLocked(pd)
			pd.mu.Unlock()
			return code == 0
		}
		var delay time.Duration
		delay, c.backoff = nextBackoff(c.backoff, now.Sub(c.lastStart), p.cfg.RestartBackoff, p.cfg.MaxRestartBackoff)
		if delay > 0 {
			c.lastState = c.state
			c.state = corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{
				Reason:  "CrashLoopBackOff",
				Message: fmt.Sprintf("back-off %s restarting failed container=%s pod=%s", delay, c.spec.Name, pd.obj.Name),
			}}
		}
		p.publishLocked(pd)
		pd.mu.Unlock()

		if delay > 0 && !p.sleep(delay, pd.kill) {
			return false
		}
	}
}

// sleep waits for d and reports true, or reports false once stop is closed.
func (p *Provider) sleep(d time.Duration, stop <-chan struct{}) bool {
	timer := p.clock.NewTimer(d)
	select {
	case <-timer.C():
		return true
	case <-stop:
		timer.Stop()
		return false
	}
}

// startLocked starts the container's next run and sets its state; it
// returns nil if the process could not start (the state then says why).
// pd.mu must be held, so that termination sees every started process.
func (p *Provider) startLocked(pd *pod, c *container, env []string) *run {
	now := p.clock.Now()
	if c.runs > 0 {
		c.restarts++
		if c.state.Terminated != nil {
			c.lastState = c.state
		}
	}
	c.runs++
	c.lastStart = now

	r, err := p.startRun(c, env)
	if err != nil {
		p.log.Warn("container not started", "pod", pd.key, "container", c.spec.Name, "err", err)
		c.state = corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{
			ExitCode:   128,
			Reason:     "StartError",
			Message:    err.Error(),
			StartedAt:  metav1.NewTime(now),
			FinishedAt: metav1.NewTime(now),
		}}
		return nil
	}
	c.prev, c.cur = c.cur, r
	c.id = fmt.Sprintf("proc://%d", r.pgid)
	c.state = corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: metav1.NewTime(now)}}
	p.log.Info("container started", "pod", pd.key, "container", c.spec.Name, "pid", r.pgid)
	return r
}

func (p *Provider) startRun(c *container, env []string) (*run, error) {
	argv := append(append([]string(nil), c.spec.Command...), c.spec.Args...)
	if len(argv) == 0 {
		return nil, errors.New("container has neither command nor args: the image is ignored on this node")
	}
	path, err := lookPath(argv[0], env, c.dir)
	if err != nil {
		return nil, err
	}
	logPath := filepath.Join(c.logDir, fmt.Sprintf("%d.log", c.runs-1))
	if c.runs > 2 {
		_ = os.Remove(filepath.Join(c.logDir, fmt.Sprintf("%d.log", c.runs-3)))
	}
	lf, err := createLog(logPath, p.clock)
	if err != nil {
		return nil, err
	}
	r, err := startProcess(procSpec{
		path:  path,
		argv:  argv,
		dir:   c.dir,
		env:   env,
		tty:   c.spec.TTY,
		stdin: c.spec.Stdin,
	}, lf)
	if err != nil {
		lf.close()
		return nil, err
	}
	return r, nil
}

func exitReason(code int32) string {
	if code == 0 {
		return "Completed"
	}
	return "Error"
}

// shouldRestart applies the pod's restart policy to a container that exited
// with code. Init containers run until they succeed.
func shouldRestart(policy corev1.RestartPolicy, init bool, code int32) bool {
	switch {
	case init:
		return code != 0 && policy != corev1.RestartPolicyNever
	case policy == corev1.RestartPolicyNever:
		return false
	case policy == corev1.RestartPolicyOnFailure:
		return code != 0
	default:
		return true
	}
}

// nextBackoff returns the delay before restarting a container that ran for
// ranFor, and the delay for the restart after that. The first restart is
// immediate, the second waits base, then the delay doubles up to limit; it
// starts over once a run lasted twice the limit.
func nextBackoff(cur, ranFor, base, limit time.Duration) (delay, next time.Duration) {
	if ranFor >= 2*limit {
		cur = 0
	}
	if cur == 0 {
		return 0, base
	}
	return cur, min(2*cur, limit)
}

// snapshotLocked returns a copy of the pod with its current status.
func (pd *pod) snapshotLocked(nodeIP netip.Addr) *corev1.Pod {
	out := pd.obj.DeepCopy()
	ip := nodeIP.String()
	st := pd.base.DeepCopy()
	st.Phase = pd.phaseLocked()
	st.HostIP = ip
	st.HostIPs = []corev1.HostIP{{IP: ip}}
	st.PodIP = ip
	st.PodIPs = []corev1.PodIP{{IP: ip}}
	start := pd.startTime
	st.StartTime = &start
	st.ObservedGeneration = pd.obj.Generation
	for _, c := range pd.inits {
		st.InitContainerStatuses = append(st.InitContainerStatuses, c.statusLocked())
	}
	for _, c := range pd.containers {
		st.ContainerStatuses = append(st.ContainerStatuses, c.statusLocked())
	}
	st.Conditions = append(st.Conditions, pd.conditionsLocked(st)...)
	out.Status = *st
	return out
}

func (c *container) statusLocked() corev1.ContainerStatus {
	running := c.state.Running != nil
	return corev1.ContainerStatus{
		Name:                 c.spec.Name,
		State:                *c.state.DeepCopy(),
		LastTerminationState: *c.lastState.DeepCopy(),
		Ready:                running && !c.init,
		RestartCount:         c.restarts,
		Image:                c.spec.Image,
		ContainerID:          c.id,
		Started:              &running,
	}
}

// phaseLocked follows the kubelet's rules for the pod phase.
func (pd *pod) phaseLocked() corev1.PodPhase {
	switch {
	case pd.initFailed:
		return corev1.PodFailed
	case !pd.initDone && pd.finished:
		return corev1.PodFailed
	case !pd.initDone:
		return corev1.PodPending
	}
	var running, waiting, stopped, succeeded int
	for _, c := range pd.containers {
		switch {
		case c.state.Running != nil:
			running++
		case c.state.Terminated != nil:
			stopped++
			if c.state.Terminated.ExitCode == 0 {
				succeeded++
			}
		case c.lastState.Terminated != nil:
			stopped++
		default:
			waiting++
		}
	}
	policy := pd.obj.Spec.RestartPolicy
	switch {
	case pd.finished && stopped == succeeded:
		return corev1.PodSucceeded
	case pd.finished:
		return corev1.PodFailed
	case waiting > 0:
		return corev1.PodPending
	case running > 0:
		return corev1.PodRunning
	case policy == corev1.RestartPolicyAlways:
		return corev1.PodRunning
	case stopped == succeeded:
		return corev1.PodSucceeded
	case policy == corev1.RestartPolicyNever:
		return corev1.PodFailed
	default:
		return corev1.PodRunning
	}
}

// conditionsLocked returns the provider's conditions for status st, keeping
// each condition's transition time while its status stays the same.
func (pd *pod) conditionsLocked(st *corev1.PodStatus) []corev1.PodCondition {
	allReady := !pd.finished
	for _, cs := range st.ContainerStatuses {
		allReady = allReady && cs.Ready
	}
	podReady := allReady
	for _, gate := range pd.obj.Spec.ReadinessGates {
		found := false
		for _, c := range pd.base.Conditions {
			found = found || (c.Type == gate.ConditionType && c.Status == corev1.ConditionTrue)
		}
		podReady = podReady && found
	}
	terminal := st.Phase == corev1.PodSucceeded || st.Phase == corev1.PodFailed
	want := map[corev1.PodConditionType]bool{
		corev1.PodScheduled:              true,
		corev1.PodReadyToStartContainers: !pd.finished,
		corev1.PodInitialized:            pd.initDone,
		corev1.ContainersReady:           allReady,
		corev1.PodReady:                  podReady,
	}
	var out []corev1.PodCondition
	for _, t := range podConditions {
		if t == corev1.PodScheduled && slices.ContainsFunc(pd.base.Conditions, func(c corev1.PodCondition) bool { return c.Type == t }) {
			continue // set by the scheduler
		}
		status := corev1.ConditionFalse
		if want[t] {
			status = corev1.ConditionTrue
		}
		c, ok := pd.conds[t]
		if !ok || c.Status != status {
			c = corev1.PodCondition{
				Type:               t,
				Status:             status,
				LastTransitionTime: metav1.Now(),
				ObservedGeneration: pd.obj.Generation,
			}
			if status == corev1.ConditionFalse && (t == corev1.ContainersReady || t == corev1.PodReady) {
				c.Reason = "ContainersNotReady"
				if terminal {
					c.Reason = "PodCompleted"
				}
			}
			pd.conds[t] = c
		}
		out = append(out, c)
	}
	return out
}

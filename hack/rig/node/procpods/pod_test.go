package procpods

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/virtual-kubelet/virtual-kubelet/node/api"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
)

func TestPodRunsAndReportsStatus(t *testing.T) {
	p, rec := newTestProvider(t, nil)
	createPod(t, p, testPod("web", corev1.RestartPolicyAlways,
		shContainer("app", "echo started; exec sleep 100"),
		shContainer("side", "exec sleep 100"),
	))
	pod := rec.waitRunning(t, "web")

	type containerSummary struct {
		Name     string
		Ready    bool
		Started  bool
		Restarts int32
		Running  bool
	}
	type summary struct {
		Phase      corev1.PodPhase
		PodIP      string
		HostIP     string
		Conditions map[corev1.PodConditionType]corev1.ConditionStatus
		Containers []containerSummary
	}
	got := summary{
		Phase:      pod.Status.Phase,
		PodIP:      pod.Status.PodIP,
		HostIP:     pod.Status.HostIP,
		Conditions: map[corev1.PodConditionType]corev1.ConditionStatus{},
	}
	for _, c := range pod.Status.Conditions {
		got.Conditions[c.Type] = c.Status
	}
	for _, cs := range pod.Status.ContainerStatuses {
		got.Containers = append(got.Containers, containerSummary{
			Name: cs.Name, Ready: cs.Ready, Started: cs.Started != nil && *cs.Started,
			Restarts: cs.RestartCount, Running: cs.State.Running != nil,
		})
	}
	want := summary{
		Phase:  corev1.PodRunning,
		PodIP:  "127.0.0.1",
		HostIP: "127.0.0.1",
		Conditions: map[corev1.PodConditionType]corev1.ConditionStatus{
			corev1.PodScheduled:              corev1.ConditionTrue,
			corev1.PodReadyToStartContainers: corev1.ConditionTrue,
			corev1.PodInitialized:            corev1.ConditionTrue,
			corev1.ContainersReady:           corev1.ConditionTrue,
			corev1.PodReady:                  corev1.ConditionTrue,
		},
		Containers: []containerSummary{
			{Name: "app", Ready: true, Started: true, Running: true},
			{Name: "side", Ready: true, Started: true, Running: true},
		},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("status (-want +got):\n%s", diff)
	}

	got2, err := p.GetPod(context.Background(), testNamespace, "web")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(corev1.PodRunning, got2.Status.Phase); diff != "" {
		t.Errorf("GetPod phase (-want +got):\n%s", diff)
	}
	for _, dir := range []string{"app", "side"} {
		if fi, err := os.Stat(filepath.Join(p.cfg.PodsDir, testNamespace, "web", dir)); err != nil || !fi.IsDir() {
			t.Errorf("container directory %s: %v", dir, err)
		}
	}
}

func TestRestartPolicy(t *testing.T) {
	type summary struct {
		Phase          corev1.PodPhase
		AtLeast2       bool // restarted at least twice
		ExitCode       int32
		CrashLoopState bool // waiting in back-off, or already restarted
	}
	tests := []struct {
		name   string
		policy corev1.RestartPolicy
		exit   int
		want   summary
	}{
		{name: "never, success", policy: corev1.RestartPolicyNever, exit: 0, want: summary{Phase: corev1.PodSucceeded}},
		{name: "never, failure", policy: corev1.RestartPolicyNever, exit: 3, want: summary{Phase: corev1.PodFailed, ExitCode: 3}},
		{name: "on failure, success", policy: corev1.RestartPolicyOnFailure, exit: 0, want: summary{Phase: corev1.PodSucceeded}},
		{name: "on failure, failure", policy: corev1.RestartPolicyOnFailure, exit: 3, want: summary{Phase: corev1.PodRunning, AtLeast2: true, ExitCode: 3}},
		{name: "always, success", policy: corev1.RestartPolicyAlways, exit: 0, want: summary{Phase: corev1.PodRunning, AtLeast2: true}},
		{name: "always, failure", policy: corev1.RestartPolicyAlways, exit: 4, want: summary{Phase: corev1.PodRunning, AtLeast2: true, ExitCode: 4}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, rec := newTestProvider(t, nil)
			createPod(t, p, testPod("job", tc.policy, shContainer("main", "exit "+strconv.Itoa(tc.exit))))
			summarize := func(pod *corev1.Pod) summary {
				cs := pod.Status.ContainerStatuses[0]
				s := summary{Phase: pod.Status.Phase, AtLeast2: cs.RestartCount >= 2}
				switch {
				case cs.State.Terminated != nil:
					s.ExitCode = cs.State.Terminated.ExitCode
				case cs.LastTerminationState.Terminated != nil:
					s.ExitCode = cs.LastTerminationState.Terminated.ExitCode
				}
				return s
			}
			pod, _ := rec.wait("job", func(pod *corev1.Pod) bool { return summarize(pod) == tc.want })
			if diff := cmp.Diff(tc.want, summarize(pod)); diff != "" {
				t.Errorf("status (-want +got):\n%s", diff)
			}
		})
	}
}

func TestInitContainersRunFirst(t *testing.T) {
	p, rec := newTestProvider(t, nil)
	pod := testPod("init", corev1.RestartPolicyNever, shContainer("main", "cat ../setup/done"))
	pod.Spec.InitContainers = []corev1.Container{shContainer("setup", "echo prepared > done")}
	createPod(t, p, pod)
	got, ok := rec.wait("init", func(p *corev1.Pod) bool { return p.Status.Phase == corev1.PodSucceeded })
	if !ok {
		t.Fatalf("pod did not succeed: %+v", statusOf(got))
	}
	rc, err := p.GetContainerLogs(context.Background(), testNamespace, "init", "main", api.ContainerLogOpts{})
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	if diff := cmp.Diff("prepared\n", readAll(t, rc)); diff != "" {
		t.Errorf("main's log (-want +got):\n%s", diff)
	}
}

func TestDeleteKillsProcessGroup(t *testing.T) {
	tests := []struct {
		name     string
		script   string
		wantExit int32
	}{
		{name: "exits on SIGTERM", script: "sleep 1000 & echo $! > child.pid; wait", wantExit: 128 + 15},
		{name: "ignores SIGTERM, killed after the grace period", script: "trap '' TERM; sleep 1000 & echo $! > child.pid; wait", wantExit: 128 + 9},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			removed := make(chan types.UID, 1)
			p, rec := newTestProvider(t, func(cfg *Config) {
				cfg.RemovePod = func(_ context.Context, namespace, name string, uid types.UID) error {
					removed <- uid
					return nil
				}
			})
			pod := testPod("victim", corev1.RestartPolicyAlways, shContainer("main", tc.script))
			createPod(t, p, pod)
			rec.waitRunning(t, "victim")
			dir := filepath.Join(p.cfg.PodsDir, testNamespace, "victim")
			child, err := strconv.Atoi(strings.TrimSpace(waitFile(t, filepath.Join(dir, "main", "child.pid"))))
			if err != nil {
				t.Fatal(err)
			}

			deleting := pod.DeepCopy()
			grace := int64(1)
			deleting.DeletionGracePeriodSeconds = &grace
			if err := p.DeletePod(context.Background(), deleting); err != nil {
				t.Fatalf("DeletePod: %v", err)
			}
			type result struct {
				RemovedUID types.UID
				ExitCode   int32
				Phase      corev1.PodPhase
				ChildGone  bool
				DirGone    bool
				Forgotten  bool // GetPod no longer finds it
			}
			var got result
			select {
			case got.RemovedUID = <-removed:
			case <-time.After(waitTimeout):
				t.Fatal("pod object not removed")
			}
			final, _ := rec.wait("victim", func(p *corev1.Pod) bool { return p.Status.Phase == corev1.PodFailed })
			if term := final.Status.ContainerStatuses[0].State.Terminated; term != nil {
				got.ExitCode = term.ExitCode
			}
			got.Phase = final.Status.Phase
			got.ChildGone = pollUntil(func() bool { return processGone(child) })
			// RemovePod is called just before the pod is forgotten.
			got.DirGone = pollUntil(func() bool {
				_, err := os.Stat(dir)
				return os.IsNotExist(err)
			})
			got.Forgotten = pollUntil(func() bool {
				_, err := p.GetPod(context.Background(), testNamespace, "victim")
				return err != nil
			})
			want := result{RemovedUID: pod.UID, ExitCode: tc.wantExit, Phase: corev1.PodFailed, ChildGone: true, DirGone: true, Forgotten: true}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("after delete (-want +got):\n%s", diff)
			}
		})
	}
}

func TestCloseKillsEverything(t *testing.T) {
	p, rec := newTestProvider(t, nil)
	createPod(t, p, testPod("stubborn", corev1.RestartPolicyAlways, shContainer("main", "trap '' TERM; echo $$ > pid; exec sleep 1000")))
	rec.waitRunning(t, "stubborn")
	pid, err := strconv.Atoi(strings.TrimSpace(waitFile(t, filepath.Join(p.cfg.PodsDir, testNamespace, "stubborn", "main", "pid"))))
	if err != nil {
		t.Fatal(err)
	}
	p.Close()
	if !pollUntil(func() bool { return processGone(pid) }) {
		t.Errorf("process %d still runs after Close", pid)
	}
	if err := p.CreatePod(context.Background(), testPod("late", corev1.RestartPolicyAlways, shContainer("main", "true"))); err == nil {
		t.Error("CreatePod after Close succeeded")
	}
}

func TestStartErrorReported(t *testing.T) {
	p, rec := newTestProvider(t, nil)
	createPod(t, p, testPod("broken", corev1.RestartPolicyNever, corev1.Container{Name: "main", Image: "none", Command: []string{"/nonexistent/binary"}}))
	pod, ok := rec.wait("broken", func(p *corev1.Pod) bool { return p.Status.Phase == corev1.PodFailed })
	if !ok {
		t.Fatalf("pod not failed: %+v", statusOf(pod))
	}
	term := pod.Status.ContainerStatuses[0].State.Terminated
	got := struct {
		Reason   string
		ExitCode int32
	}{term.Reason, term.ExitCode}
	want := struct {
		Reason   string
		ExitCode int32
	}{"StartError", 128}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("terminated state (-want +got):\n%s", diff)
	}
}

func TestNextBackoff(t *testing.T) {
	const base, limit = 10 * time.Second, 40 * time.Second
	tests := []struct {
		name      string
		cur       time.Duration
		ranFor    time.Duration
		wantDelay time.Duration
		wantNext  time.Duration
	}{
		{name: "first crash restarts at once", cur: 0, ranFor: time.Second, wantDelay: 0, wantNext: base},
		{name: "second crash waits base", cur: base, ranFor: time.Second, wantDelay: base, wantNext: 2 * base},
		{name: "doubles", cur: 2 * base, ranFor: time.Second, wantDelay: 2 * base, wantNext: limit},
		{name: "capped", cur: limit, ranFor: time.Second, wantDelay: limit, wantNext: limit},
		{name: "stable run resets", cur: limit, ranFor: 2 * limit, wantDelay: 0, wantNext: base},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			delay, next := nextBackoff(tc.cur, tc.ranFor, base, limit)
			if diff := cmp.Diff([]time.Duration{tc.wantDelay, tc.wantNext}, []time.Duration{delay, next}); diff != "" {
				t.Errorf("(delay, next) (-want +got):\n%s", diff)
			}
		})
	}
}

func TestShouldRestart(t *testing.T) {
	tests := []struct {
		name   string
		policy corev1.RestartPolicy
		init   bool
		code   int32
		want   bool
	}{
		{name: "always after success", policy: corev1.RestartPolicyAlways, code: 0, want: true},
		{name: "always after failure", policy: corev1.RestartPolicyAlways, code: 1, want: true},
		{name: "on failure after success", policy: corev1.RestartPolicyOnFailure, code: 0, want: false},
		{name: "on failure after failure", policy: corev1.RestartPolicyOnFailure, code: 1, want: true},
		{name: "never after failure", policy: corev1.RestartPolicyNever, code: 1, want: false},
		{name: "init after success", policy: corev1.RestartPolicyAlways, init: true, code: 0, want: false},
		{name: "init after failure", policy: corev1.RestartPolicyAlways, init: true, code: 1, want: true},
		{name: "init after failure, never", policy: corev1.RestartPolicyNever, init: true, code: 1, want: false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if diff := cmp.Diff(tc.want, shouldRestart(tc.policy, tc.init, tc.code)); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func TestGracePeriod(t *testing.T) {
	secs := func(n int64) *int64 { return &n }
	tests := []struct {
		name     string
		deletion *int64
		spec     *int64
		want     time.Duration
	}{
		{name: "default", want: 30 * time.Second},
		{name: "from spec", spec: secs(3), want: 3 * time.Second},
		{name: "deletion overrides spec", deletion: secs(1), spec: secs(3), want: time.Second},
		{name: "bounded", spec: secs(600), want: time.Minute},
		{name: "zero", deletion: secs(0), want: 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			pod := &corev1.Pod{}
			pod.DeletionGracePeriodSeconds = tc.deletion
			pod.Spec.TerminationGracePeriodSeconds = tc.spec
			if diff := cmp.Diff(tc.want, gracePeriod(pod, time.Minute)); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

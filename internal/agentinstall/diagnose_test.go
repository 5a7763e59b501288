package agentinstall

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestDiagnose(t *testing.T) {
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	pod := func(name string, created time.Time, status corev1.PodStatus) corev1.Pod {
		return corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, CreationTimestamp: metav1.NewTime(created)}, Status: status}
	}
	container := func(state corev1.ContainerState, last *corev1.ContainerStateTerminated, restarts int32) corev1.PodStatus {
		return corev1.PodStatus{Phase: corev1.PodPending, ContainerStatuses: []corev1.ContainerStatus{{
			Name: ContainerName, Image: "ghcr.io/tether-dev/tether:v9", State: state,
			LastTerminationState: corev1.ContainerState{Terminated: last}, RestartCount: restarts,
		}}}
	}
	waiting := func(reason, msg string) corev1.ContainerState {
		return corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: reason, Message: msg}}
	}
	running := corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}
	deploy := func(conds ...appsv1.DeploymentCondition) *appsv1.Deployment {
		return &appsv1.Deployment{Status: appsv1.DeploymentStatus{Conditions: conds}}
	}
	deleting := pod("old", t0.Add(time.Hour), container(running, nil, 0))
	deleting.DeletionTimestamp = &metav1.Time{Time: t0}

	tests := []struct {
		name   string
		deploy *appsv1.Deployment
		pods   []corev1.Pod
		want   string
	}{
		{"running", deploy(), []corev1.Pod{pod("a", t0, container(running, nil, 0))}, ""},
		{"no pod", deploy(), nil, "the agent's Deployment has no pod yet"},
		{"only a terminating pod", deploy(), []corev1.Pod{deleting}, "the agent's Deployment has no pod yet"},
		{"pod forbidden", deploy(appsv1.DeploymentCondition{Type: appsv1.DeploymentReplicaFailure, Status: corev1.ConditionTrue,
			Message: `pods "tether-agent-x" is forbidden: violates PodSecurity "restricted:latest"`}), nil,
			`the agent's pod cannot be created: pods "tether-agent-x" is forbidden: violates PodSecurity "restricted:latest"`},
		{"not progressing", deploy(appsv1.DeploymentCondition{Type: appsv1.DeploymentProgressing, Status: corev1.ConditionFalse,
			Message: `ReplicaSet "x" has timed out progressing.`}), nil,
			`the agent's Deployment is not progressing: ReplicaSet "x" has timed out progressing.`},
		{"unschedulable", deploy(), []corev1.Pod{pod("a", t0, corev1.PodStatus{Phase: corev1.PodPending, Conditions: []corev1.PodCondition{{
			Type: corev1.PodScheduled, Status: corev1.ConditionFalse, Reason: "Unschedulable",
			Message: "0/1 nodes are available: 1 node(s) had untolerated taint {x: y}.",
		}}})}, "the agent's pod a cannot be scheduled: Unschedulable: 0/1 nodes are available: 1 node(s) had untolerated taint {x: y}."},
		{"image pull", deploy(), []corev1.Pod{pod("a", t0, container(waiting("ImagePullBackOff", `Back-off pulling image "ghcr.io/tether-dev/tether:v9"`), nil, 0))},
			`the agent's image ghcr.io/tether-dev/tether:v9 cannot be pulled: ImagePullBackOff: Back-off pulling image "ghcr.io/tether-dev/tether:v9"`},
		{"crash loop", deploy(), []corev1.Pod{pod("a", t0, container(waiting("CrashLoopBackOff", "back-off 40s"),
			&corev1.ContainerStateTerminated{ExitCode: 1, Reason: "Error",
				Message: "{\"level\":\"INFO\",\"msg\":\"starting\"}\ntether: the hub refused this agent: join token already used\n"}, 3))},
			"the agent is crash looping (3 restarts); it last exited with code 1 (Error): tether: the hub refused this agent: join token already used"},
		{"crash loop without a last state", deploy(), []corev1.Pod{pod("a", t0, container(waiting("CrashLoopBackOff", ""), nil, 0))},
			"the agent is crash looping (0 restarts); it has not run yet"},
		{"config error", deploy(), []corev1.Pod{pod("a", t0, container(waiting("CreateContainerConfigError", `configmap "tether-agent-ca" not found`), nil, 0))},
			`the agent's container cannot start: CreateContainerConfigError: configmap "tether-agent-ca" not found`},
		{"creating", deploy(), []corev1.Pod{pod("a", t0, container(waiting("ContainerCreating", ""), nil, 0))},
			"the agent's pod a is starting (ContainerCreating)"},
		{"terminated", deploy(), []corev1.Pod{pod("a", t0, container(corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 137, Signal: 9}}, nil, 0))},
			"the agent stopped; it was last killed by signal 9"},
		{"evicted", deploy(), []corev1.Pod{pod("a", t0, corev1.PodStatus{Phase: corev1.PodFailed, Reason: "Evicted", Message: "The node was low on resource: memory."})},
			"the agent's pod a failed: Evicted: The node was low on resource: memory."},
		{"no status yet", deploy(), []corev1.Pod{pod("a", t0, corev1.PodStatus{Phase: corev1.PodPending})}, "the agent's pod a is Pending"},
		{"newest pod counts", deploy(), []corev1.Pod{
			pod("old", t0, container(running, nil, 0)),
			pod("new", t0.Add(time.Minute), container(waiting("ErrImagePull", "not found"), nil, 0)),
		}, "the agent's image ghcr.io/tether-dev/tether:v9 cannot be pulled: ErrImagePull: not found"},
		{"terminating pods do not count", deploy(), []corev1.Pod{deleting, pod("a", t0, container(running, nil, 0))}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, diagnose(tt.deploy, tt.pods)); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func TestOneLine(t *testing.T) {
	long := make([]byte, 500)
	for i := range long {
		long[i] = 'x'
	}
	tests := []struct {
		name, in, want string
	}{
		{"empty", "", ""},
		{"last line", "a\nb\n\n", "b"},
		{"trimmed", "  a  ", "a"},
		{"long", string(long), string(long[:400]) + "..."},
		{"cut in a rune", string(long[:399]) + "é", string(long[:399]) + "..."},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, oneLine(tt.in)); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

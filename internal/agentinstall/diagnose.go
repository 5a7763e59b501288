package agentinstall

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// Diagnose says in one line why the agent in namespace is not running: its
// Deployment is missing, its pod cannot be created or scheduled (the
// scheduler's message), its image cannot be pulled, its container cannot
// start or keeps crashing (with the last lines the agent wrote). It returns
// "" when the agent's container runs; whether its tunnel is up is the hub's
// to say.
func Diagnose(ctx context.Context, cfg *rest.Config, namespace string) string {
	if namespace == "" {
		namespace = DefaultNamespace
	}
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return fmt.Sprintf("cannot reach the cluster: %v", err)
	}
	dep, err := client.AppsV1().Deployments(namespace).Get(ctx, Name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return fmt.Sprintf("the agent's Deployment %s/%s does not exist", namespace, Name)
	}
	if err != nil {
		return fmt.Sprintf("cannot read the agent's Deployment %s/%s: %v", namespace, Name, err)
	}
	sel, err := metav1.LabelSelectorAsSelector(dep.Spec.Selector)
	if err != nil {
		return fmt.Sprintf("the agent's Deployment %s/%s has a bad selector: %v", namespace, Name, err)
	}
	pods, err := client.CoreV1().Pods(namespace).List(ctx, metav1.ListOptions{LabelSelector: sel.String()})
	if err != nil {
		return fmt.Sprintf("cannot list the agent's pods in %s: %v", namespace, err)
	}
	return diagnose(dep, pods.Items)
}

// diagnose explains, from the Deployment and its pods, why the agent does
// not run; "" when it does.
func diagnose(dep *appsv1.Deployment, pods []corev1.Pod) string {
	var live []corev1.Pod
	for _, p := range pods {
		if p.DeletionTimestamp == nil {
			live = append(live, p)
		}
	}
	if len(live) == 0 {
		for _, c := range dep.Status.Conditions {
			if c.Type == appsv1.DeploymentReplicaFailure && c.Status == corev1.ConditionTrue {
				return "the agent's pod cannot be created: " + oneLine(c.Message)
			}
		}
		for _, c := range dep.Status.Conditions {
			if c.Type == appsv1.DeploymentProgressing && c.Status == corev1.ConditionFalse {
				return "the agent's Deployment is not progressing: " + oneLine(c.Message)
			}
		}
		return "the agent's Deployment has no pod yet"
	}
	// The newest pod is the one that matters (Recreate: there is one).
	p := slices.MaxFunc(live, func(a, b corev1.Pod) int {
		return cmp.Or(a.CreationTimestamp.Compare(b.CreationTimestamp.Time), cmp.Compare(a.Name, b.Name))
	})
	if p.Status.Phase == corev1.PodFailed {
		return fmt.Sprintf("the agent's pod %s failed: %s", p.Name, reasonMessage(p.Status.Reason, p.Status.Message))
	}
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodScheduled && c.Status == corev1.ConditionFalse {
			return fmt.Sprintf("the agent's pod %s cannot be scheduled: %s", p.Name, reasonMessage(c.Reason, c.Message))
		}
	}
	for _, cs := range p.Status.ContainerStatuses {
		if cs.Name != ContainerName {
			continue
		}
		switch {
		case cs.State.Running != nil:
			return ""
		case cs.State.Waiting != nil:
			w := cs.State.Waiting
			switch w.Reason {
			case "ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull":
				return fmt.Sprintf("the agent's image %s cannot be pulled: %s", cs.Image, reasonMessage(w.Reason, w.Message))
			case "CrashLoopBackOff":
				return fmt.Sprintf("the agent is crash looping (%d restarts); %s", cs.RestartCount, exited(cs.LastTerminationState.Terminated))
			case "", "ContainerCreating", "PodInitializing":
				return fmt.Sprintf("the agent's pod %s is starting (%s)", p.Name, cmp.Or(w.Reason, "waiting"))
			default:
				return fmt.Sprintf("the agent's container cannot start: %s", reasonMessage(w.Reason, w.Message))
			}
		case cs.State.Terminated != nil:
			return "the agent stopped; " + exited(cs.State.Terminated)
		}
	}
	return fmt.Sprintf("the agent's pod %s is %s", p.Name, reasonMessage(string(p.Status.Phase), p.Status.Message))
}

// exited describes how a container run ended.
func exited(t *corev1.ContainerStateTerminated) string {
	if t == nil {
		return "it has not run yet"
	}
	s := fmt.Sprintf("it last exited with code %d", t.ExitCode)
	if t.Signal != 0 {
		s = fmt.Sprintf("it was last killed by signal %d", t.Signal)
	}
	if t.Reason != "" {
		s += " (" + t.Reason + ")"
	}
	if msg := oneLine(t.Message); msg != "" {
		s += ": " + msg
	}
	return s
}

func reasonMessage(reason, message string) string {
	switch msg := oneLine(message); {
	case reason == "":
		return msg
	case msg == "":
		return reason
	default:
		return reason + ": " + msg
	}
}

// oneLine keeps the last non-empty line of s (a termination message is the
// end of the agent's log, whose last line is its final error), at most 400
// bytes of it.
func oneLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	line := strings.TrimSpace(lines[len(lines)-1])
	if len(line) > 400 {
		line = strings.ToValidUTF8(line[:400], "") + "..."
	}
	return line
}

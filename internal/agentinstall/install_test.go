package agentinstall

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"tether.dev/tether/internal/access"
	"tether.dev/tether/internal/agent"
	"tether.dev/tether/test/rig"
)

// TestInstall applies the objects to a real cluster, checks what the
// agent's service account may do, diagnoses its pod and removes it all.
func TestInstall(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 25*time.Minute)
	defer cancel()
	bins, err := rig.Build(ctx, rig.BuildOptions{Log: t.Output()})
	if err != nil {
		t.Fatal(err)
	}
	cluster, err := rig.Start(ctx, rig.Config{Binaries: bins})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cluster.Stop() })
	admin, err := clientcmd.BuildConfigFromFlags("", cluster.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	kubectl := func(t *testing.T, args ...string) (string, error) {
		t.Helper()
		out, err := cluster.Kubectl(ctx, args...).CombinedOutput()
		return strings.TrimSpace(string(out)), err
	}
	must := func(t *testing.T, args ...string) string {
		t.Helper()
		out, err := kubectl(t, args...)
		if err != nil {
			t.Fatalf("kubectl %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return out
	}

	// The namespace enforces the restricted Pod Security Standard, so the
	// API server refuses the agent's pod unless it meets it. Apply then
	// takes the namespace over, keeping the label.
	must(t, "create", "namespace", DefaultNamespace)
	must(t, "label", "namespace", DefaultNamespace, "pod-security.kubernetes.io/enforce=restricted")
	if out, err := kubectl(t, "run", "not-restricted", "-n", DefaultNamespace, "--image=x", "--dry-run=server"); err == nil || !strings.Contains(out, "violates PodSecurity") {
		t.Fatalf("the namespace does not enforce the restricted standard: %v\n%s", err, out)
	}

	opts := Options{
		HubURL:    "https://hub.invalid:8443",
		HubCA:     testCA(t, "hub"),
		JoinToken: "tjt_install_test",
		ClusterID: "/groups/test/clusters/rig",
		Mode:      ModeKubernetesRBAC,
	}
	objs, err := Objects(opts)
	if err != nil {
		t.Fatal(err)
	}
	var progress []string
	if err := Apply(ctx, admin, objs, func(s string) { progress = append(progress, s) }); err != nil {
		t.Fatal(err)
	}
	wantProgress := []string{
		"applied Namespace tether-system",
		"applied ServiceAccount tether-system/tether-agent",
		"applied ClusterRole tether-agent",
		"applied ClusterRoleBinding tether-agent",
		"applied Role tether-system/tether-agent",
		"applied RoleBinding tether-system/tether-agent",
		"applied ConfigMap tether-system/tether-agent-ca",
		"applied Secret tether-system/tether-agent-join-token",
		"applied Deployment tether-system/tether-agent",
	}
	if diff := cmp.Diff(wantProgress, progress); diff != "" {
		t.Errorf("progress (-want +got):\n%s", diff)
	}
	if got := must(t, "get", "namespace", DefaultNamespace, "-o", `jsonpath={.metadata.labels.pod-security\.kubernetes\.io/enforce}`); got != "restricted" {
		t.Errorf("the namespace lost its pod-security label: %q", got)
	}

	dyn, err := dynamic.NewForConfig(admin)
	if err != nil {
		t.Fatal(err)
	}
	t.Run("apply again changes nothing", func(t *testing.T) {
		before := versions(t, ctx, dyn, objs)
		if err := Apply(ctx, admin, objs, nil); err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(before, versions(t, ctx, dyn, objs)); diff != "" {
			t.Errorf("resource versions (Deployment: generation) (-before +after):\n%s", diff)
		}
	})

	sa := "system:serviceaccount:" + DefaultNamespace + ":" + Name
	canI := func(t *testing.T, want bool, args ...string) {
		t.Helper()
		// Stdout only: kubectl warns on stderr about cluster-scoped resources.
		b, err := cluster.Kubectl(ctx, append([]string{"auth", "can-i", "--as=" + sa}, args...)...).Output()
		out := strings.TrimSpace(string(b))
		var exit *exec.ExitError
		if err != nil && (!errors.As(err, &exit) || exit.ExitCode() != 1) {
			t.Fatalf("kubectl auth can-i %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		if got := out == "yes"; got != want {
			t.Errorf("can-i %s: %s, want %v", strings.Join(args, " "), out, want)
		}
	}
	both := [][]string{
		{"impersonate", "users"},
		{"impersonate", "groups"},
		{"list", "nodes"},
		{"get", "secret/" + StateSecretName, "-n", DefaultNamespace},
		{"update", "secret/" + StateSecretName, "-n", DefaultNamespace},
		{"create", "secrets", "-n", DefaultNamespace},
	}
	never := [][]string{
		{"get", "secret/" + JoinTokenSecretName, "-n", DefaultNamespace},
		{"list", "secrets", "-n", DefaultNamespace},
		{"get", "secrets", "-n", "kube-system"},
		{"create", "secrets", "-n", "default"},
		{"delete", "secret/" + StateSecretName, "-n", DefaultNamespace},
		{"delete", "pods", "-n", DefaultNamespace},
		{"create", "pods", "-A"},
		{"impersonate", "serviceaccounts"},
		{"impersonate", "userextras/scopes"},
		{"get", "nodes"},
		{"bind", "clusterroles/tether-agent"},
		{"escalate", "clusterroles"},
	}
	hubRBACOnly := [][]string{
		{"watch", "namespaces"},
		{"create", "clusterrolebindings"},
		{"delete", "rolebindings", "-n", "default"},
		{"bind", "clusterroles/view"},
		{"bind", "clusterroles/cluster-admin"},
	}
	agentClient := serviceAccountClient(t, must, cluster)
	t.Run("kubernetes-rbac permissions", func(t *testing.T) {
		for _, args := range both {
			canI(t, true, args...)
		}
		for _, args := range append(never, hubRBACOnly...) {
			canI(t, false, args...)
		}
		if err := agent.CheckPermissions(ctx, agentClient, false); err != nil {
			t.Errorf("the agent's own check: %v", err)
		}
		// The agent creates its state Secret, then reads and updates it.
		must(t, "create", "secret", "generic", agent.DefaultStateSecretName, "-n", DefaultNamespace, "--from-literal=k=v", "--as="+sa)
		state := must(t, "get", "secret", agent.DefaultStateSecretName, "-n", DefaultNamespace, "-o", "json", "--as="+sa)
		replace := cluster.Kubectl(ctx, "replace", "-f", "-", "--as="+sa) // PUT: update, not patch
		replace.Stdin = strings.NewReader(strings.Replace(state, `"data": {`, `"data": {"k2": "djI=",`, 1))
		if out, err := replace.CombinedOutput(); err != nil {
			t.Errorf("update the state Secret as the agent: %v\n%s", err, out)
		}
		var missing *agent.MissingPermissionsError
		if err := agent.CheckPermissions(ctx, agentClient, true); !errors.As(err, &missing) {
			t.Errorf("the agent's check for hub-RBAC mode: got %v, want missing permissions", err)
		}
	})

	t.Run("hub-rbac permissions", func(t *testing.T) {
		hub := opts
		hub.Mode = ModeHubRBAC
		hubObjs, err := Objects(hub)
		if err != nil {
			t.Fatal(err)
		}
		if err := Apply(ctx, admin, hubObjs, nil); err != nil {
			t.Fatal(err)
		}
		for _, args := range append(both, hubRBACOnly...) {
			canI(t, true, args...)
		}
		for _, args := range never {
			canI(t, false, args...)
		}
		canI(t, false, "bind", "clusterroles/system:node")
		if err := agent.CheckPermissions(ctx, agentClient, true); err != nil {
			t.Errorf("the agent's own check: %v", err)
		}
	})

	t.Run("diagnose", func(t *testing.T) {
		// The rig's node runs pods as local processes and ignores images:
		// the pod is admitted (it meets the restricted standard) and
		// scheduled, but "agent" is no program on the node.
		var got string
		poll(t, ctx, "a diagnosis of the agent's failed start", func() bool {
			got = Diagnose(ctx, admin, DefaultNamespace)
			return strings.Contains(got, "crash looping")
		})
		t.Logf("diagnosis: %s", got)
		if !strings.Contains(got, `"agent"`) {
			t.Errorf("the diagnosis %q does not name the command that failed", got)
		}
		if got := Diagnose(ctx, admin, "elsewhere"); got != "the agent's Deployment elsewhere/tether-agent does not exist" {
			t.Errorf("diagnosis without a Deployment: %q", got)
		}
	})

	t.Run("remove", func(t *testing.T) {
		// A binding the agent would keep in hub-RBAC mode, and one of
		// someone else's.
		must(t, "create", "clusterrolebinding", access.BindingNamePrefix+"view", "--clusterrole=view", "--group=tether:cluster:view")
		must(t, "label", "clusterrolebinding", access.BindingNamePrefix+"view", access.ManagedByLabel+"="+access.ManagedByValue, access.ComponentLabel+"="+access.ComponentValue)
		must(t, "create", "rolebinding", access.BindingNamePrefix+"edit", "-n", "default", "--clusterrole=edit", "--group=tether:namespace:default:edit")
		must(t, "label", "rolebinding", access.BindingNamePrefix+"edit", "-n", "default", access.ManagedByLabel+"="+access.ManagedByValue, access.ComponentLabel+"="+access.ComponentValue)
		must(t, "create", "clusterrolebinding", "someone-else", "--clusterrole=view", "--group=others")

		for range 2 {
			if err := Remove(ctx, admin, DefaultNamespace); err != nil {
				t.Fatal(err)
			}
		}
		poll(t, ctx, "the namespace to be gone", func() bool {
			_, err := kubectl(t, "get", "namespace", DefaultNamespace)
			return err != nil
		})
		for _, sel := range []string{"app.kubernetes.io/name=" + Name, access.BindingSelector} {
			if got := must(t, "get", "namespaces,clusterroles,clusterrolebindings,rolebindings,roles,deployments,secrets,configmaps,serviceaccounts,pods",
				"-A", "-l", sel, "-o", "name"); got != "" {
				t.Errorf("left behind with %s:\n%s", sel, got)
			}
		}
		must(t, "get", "clusterrolebinding", "someone-else")
		if out, err := kubectl(t, "get", "secret", StateSecretName, "-n", DefaultNamespace); err == nil {
			t.Errorf("the state Secret is left:\n%s", out)
		}
		if err := Remove(ctx, admin, DefaultNamespace); err != nil {
			t.Errorf("remove once more: %v", err)
		}
	})
}

// versions returns each object's resourceVersion, and the Deployment's
// generation (its status changes as its pod comes and goes).
func versions(t *testing.T, ctx context.Context, client dynamic.Interface, objs []*unstructured.Unstructured) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, obj := range objs {
		gvk := obj.GroupVersionKind()
		// The kinds Objects makes are plural by the rule: lower case plus s.
		gvr := schema.GroupVersionResource{Group: gvk.Group, Version: gvk.Version, Resource: strings.ToLower(gvk.Kind) + "s"}
		var r dynamic.ResourceInterface = client.Resource(gvr)
		if ns := obj.GetNamespace(); ns != "" {
			r = client.Resource(gvr).Namespace(ns)
		}
		got, err := r.Get(ctx, obj.GetName(), metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		key := gvk.Kind + " " + obj.GetName()
		if gvk.Kind == "Deployment" {
			out[key] = fmt.Sprint("generation ", got.GetGeneration())
			continue
		}
		out[key] = got.GetResourceVersion()
	}
	return out
}

// serviceAccountClient is a client with a token of the agent's service
// account.
func serviceAccountClient(t *testing.T, kubectl func(*testing.T, ...string) string, cluster *rig.Cluster) kubernetes.Interface {
	t.Helper()
	token := kubectl(t, "create", "token", Name, "-n", DefaultNamespace, "--duration=1h")
	c, err := kubernetes.NewForConfig(&rest.Config{Host: cluster.Server, BearerToken: token, TLSClientConfig: rest.TLSClientConfig{CAFile: cluster.CAFile}})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// poll calls done every 200 ms until it is true, failing the test when ctx
// ends or a minute has passed.
func poll(t *testing.T, ctx context.Context, what string, done func() bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for !done() {
		select {
		case <-ctx.Done():
			t.Fatalf("waiting for %s: %v", what, ctx.Err())
		case <-tick.C:
		}
	}
}

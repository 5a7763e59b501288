package agent

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	gocmp "github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"tether.dev/tether/internal/access"
	"tether.dev/tether/test/rig"
)

// rbacCluster is a real cluster with deploy/agent-rbac.yaml applied.
type rbacCluster struct {
	*rig.Cluster
	admin kubernetes.Interface // system:masters
	// agent is the tether-system/tether-agent service account: what the
	// manifest grants, and nothing more.
	agent *rest.Config
}

// startRBACCluster starts one cluster for the test, stopped at its end. The
// package's TestMain (goleak) cannot stop a cluster shared across tests, so
// each test that needs one (TestBindingReconciler, TestAgentInCluster)
// starts its own and keeps its cases as subtests.
func startRBACCluster(t *testing.T, ctx context.Context) *rbacCluster {
	t.Helper()
	bins, err := rig.Build(ctx, rig.BuildOptions{Log: t.Output()})
	if err != nil {
		t.Fatal(err)
	}
	began := time.Now()
	cluster, err := rig.Start(ctx, rig.Config{Binaries: bins})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cluster.Stop() })
	t.Logf("cluster ready in %s", time.Since(began).Round(time.Millisecond))

	adminCfg, err := clientcmd.BuildConfigFromFlags("", cluster.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	admin, err := kubernetes.NewForConfig(adminCfg)
	if err != nil {
		t.Fatal(err)
	}
	root, err := rig.FindRepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	c := &rbacCluster{Cluster: cluster, admin: admin}
	c.kubectl(t, ctx, "", "apply", "-f", filepath.Join(root, "deploy", "agent-rbac.yaml"))
	c.agent = c.serviceAccountConfig(t, ctx, "tether-agent")
	return c
}

// kubectl runs kubectl as the cluster admin and returns its output.
func (c *rbacCluster) kubectl(t *testing.T, ctx context.Context, stdin string, args ...string) string {
	t.Helper()
	cmd := c.Kubectl(ctx, args...)
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("kubectl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// serviceAccountConfig mints a token for tether-system/name.
func (c *rbacCluster) serviceAccountConfig(t *testing.T, ctx context.Context, name string) *rest.Config {
	t.Helper()
	token := strings.TrimSpace(c.kubectl(t, ctx, "", "create", "token", name, "-n", "tether-system", "--duration=1h"))
	return &rest.Config{Host: c.Server, BearerToken: token, TLSClientConfig: rest.TLSClientConfig{CAFile: c.CAFile}}
}

// binding is a binding as compared by the tests.
type binding struct {
	Kind, Namespace, Name, ClusterRole string
	Subjects                           []rbacv1.Subject
	Labels                             map[string]string
}

func sortBindings(bs []binding) []binding {
	slices.SortFunc(bs, func(a, b binding) int {
		return cmp.Or(cmp.Compare(a.Kind, b.Kind), cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Name, b.Name))
	})
	return bs
}

// managedBindings lists, as the admin, every binding with our labels.
func (c *rbacCluster) managedBindings(ctx context.Context) ([]binding, error) {
	sel := metav1.ListOptions{LabelSelector: access.BindingSelector}
	crbs, err := c.admin.RbacV1().ClusterRoleBindings().List(ctx, sel)
	if err != nil {
		return nil, err
	}
	rbs, err := c.admin.RbacV1().RoleBindings("").List(ctx, sel)
	if err != nil {
		return nil, err
	}
	var bs []binding
	for _, b := range crbs.Items {
		if b.RoleRef.Kind != "ClusterRole" || b.RoleRef.APIGroup != rbacv1.GroupName {
			return nil, fmt.Errorf("%s: roleRef %+v", b.Name, b.RoleRef)
		}
		bs = append(bs, binding{access.KindClusterRoleBinding, "", b.Name, b.RoleRef.Name, b.Subjects, b.Labels})
	}
	for _, b := range rbs.Items {
		if b.RoleRef.Kind != "ClusterRole" || b.RoleRef.APIGroup != rbacv1.GroupName {
			return nil, fmt.Errorf("%s/%s: roleRef %+v", b.Namespace, b.Name, b.RoleRef)
		}
		bs = append(bs, binding{access.KindRoleBinding, b.Namespace, b.Name, b.RoleRef.Name, b.Subjects, b.Labels})
	}
	return sortBindings(bs), nil
}

// wantBindings is access.ClusterBindings and access.NamespaceBindings for
// every live namespace, less the bindings whose names are taken (skip).
func (c *rbacCluster) wantBindings(ctx context.Context, skip ...string) ([]binding, error) {
	nss, err := c.admin.CoreV1().Namespaces().List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, err
	}
	all := access.ClusterBindings()
	for _, ns := range nss.Items {
		if ns.Status.Phase != corev1.NamespaceTerminating {
			all = append(all, access.NamespaceBindings(ns.Name)...)
		}
	}
	var bs []binding
	for _, b := range all {
		if slices.Contains(skip, qualified(b.Namespace, b.Name)) {
			continue
		}
		bs = append(bs, binding{b.Kind, b.Namespace, b.Name, b.ClusterRole,
			[]rbacv1.Subject{{Kind: "Group", APIGroup: "rbac.authorization.k8s.io", Name: b.Group}}, b.Labels})
	}
	return sortBindings(bs), nil
}

// waitForBindings polls until the managed bindings are the wanted ones.
func (c *rbacCluster) waitForBindings(t *testing.T, ctx context.Context, skip ...string) time.Duration {
	t.Helper()
	began := time.Now()
	deadline := time.Now().Add(30 * time.Second)
	for {
		want, err := c.wantBindings(ctx, skip...)
		if err != nil {
			t.Fatal(err)
		}
		got, err := c.managedBindings(ctx)
		if err != nil {
			t.Fatal(err)
		}
		diff := gocmp.Diff(want, got)
		if diff == "" {
			return time.Since(began)
		}
		if time.Now().After(deadline) {
			t.Fatalf("managed bindings after 30s (-want +got):\n%s", diff)
		}
		select {
		case <-ctx.Done():
			t.Fatal(ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

var managedLabels = map[string]string{access.ManagedByLabel: access.ManagedByValue, access.ComponentLabel: access.ComponentValue}

func groupSubject(name string) []rbacv1.Subject {
	return []rbacv1.Subject{{Kind: "Group", APIGroup: rbacv1.GroupName, Name: name}}
}

func clusterRoleRef(name string) rbacv1.RoleRef {
	return rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: name}
}

func TestBindingReconciler(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	c := startRBACCluster(t, ctx)
	crbs := c.admin.RbacV1().ClusterRoleBindings()
	rbs := func(ns string) interface {
		Create(context.Context, *rbacv1.RoleBinding, metav1.CreateOptions) (*rbacv1.RoleBinding, error)
		Get(context.Context, string, metav1.GetOptions) (*rbacv1.RoleBinding, error)
		Update(context.Context, *rbacv1.RoleBinding, metav1.UpdateOptions) (*rbacv1.RoleBinding, error)
		Delete(context.Context, string, metav1.DeleteOptions) error
	} {
		return c.admin.RbacV1().RoleBindings(ns)
	}
	must := func(_ any, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	for _, ns := range []string{"web", "taken"} {
		c.kubectl(t, ctx, "", "create", "namespace", ns)
	}

	// Before the reconciler starts: bindings it must delete, repair and
	// leave alone.
	meta := func(name string, labels map[string]string) metav1.ObjectMeta {
		return metav1.ObjectMeta{Name: name, Labels: labels}
	}
	must(crbs.Create(ctx, &rbacv1.ClusterRoleBinding{ObjectMeta: meta("tether-hub-rbac-stale", managedLabels),
		RoleRef: clusterRoleRef("view"), Subjects: groupSubject("tether:cluster:view")}, metav1.CreateOptions{}))
	must(crbs.Create(ctx, &rbacv1.ClusterRoleBinding{ObjectMeta: meta("tether-hub-rbac-edit", managedLabels),
		RoleRef: clusterRoleRef("cluster-admin"), Subjects: groupSubject("someone-else")}, metav1.CreateOptions{}))
	must(rbs("web").Create(ctx, &rbacv1.RoleBinding{ObjectMeta: meta("tether-hub-rbac-legacy", managedLabels),
		RoleRef: clusterRoleRef("edit"), Subjects: groupSubject("tether:namespace:web:edit")}, metav1.CreateOptions{}))
	// Never to be touched: no labels, one label only, a name we want.
	unmanaged := map[string]types.UID{}
	for _, b := range []*rbacv1.ClusterRoleBinding{
		{ObjectMeta: meta("tether-hub-rbac-view-manual", nil), RoleRef: clusterRoleRef("view"), Subjects: groupSubject("ops")},
		{ObjectMeta: meta("tether-hub-rbac-half", map[string]string{access.ManagedByLabel: access.ManagedByValue}),
			RoleRef: clusterRoleRef("view"), Subjects: groupSubject("ops")},
	} {
		got, err := crbs.Create(ctx, b, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		unmanaged[got.Name] = got.UID
	}
	for _, b := range []*rbacv1.RoleBinding{
		{ObjectMeta: metav1.ObjectMeta{Name: "tether-hub-rbac-viewer", Namespace: "web"}, RoleRef: clusterRoleRef("view"), Subjects: groupSubject("ops")},
		{ObjectMeta: metav1.ObjectMeta{Name: "tether-hub-rbac-view", Namespace: "taken"}, RoleRef: clusterRoleRef("admin"), Subjects: groupSubject("ops")},
	} {
		got, err := rbs(b.Namespace).Create(ctx, b, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		unmanaged[b.Namespace+"/"+got.Name] = got.UID
	}
	const taken = "taken/tether-hub-rbac-view" // held by the unmanaged binding

	rec, err := NewBindingReconciler(BindingReconcilerConfig{APIServer: c.agent}, slog.New(slog.NewTextHandler(t.Output(), nil)))
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stopRun := context.WithCancel(ctx)
	done := make(chan error, 1)
	began := time.Now()
	go func() { done <- rec.Run(runCtx) }()
	var stopOnce sync.Once
	stop := func(t *testing.T) {
		t.Helper()
		stopOnce.Do(func() {
			stopRun()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Run: %v", err)
				}
			case <-time.After(30 * time.Second):
				t.Fatal("Run did not return 30s after its context was cancelled")
			}
		})
	}
	t.Cleanup(func() { stop(t) })

	t.Run("initial reconcile creates exactly the desired bindings", func(t *testing.T) {
		c.waitForBindings(t, ctx, taken)
		t.Logf("initial reconcile took %s", time.Since(began).Round(time.Millisecond))
	})

	t.Run("a new namespace gets its role bindings", func(t *testing.T) {
		c.kubectl(t, ctx, "", "create", "namespace", "later")
		t.Logf("new namespace reconciled in %s", c.waitForBindings(t, ctx, taken).Round(time.Millisecond))
	})

	t.Run("drift is repaired", func(t *testing.T) {
		// A roleRef cannot change in place. So: take our labels off (the
		// binding is no longer ours, and is left alone), replace it with one
		// bound to cluster-admin, then label that as ours. Between the
		// delete and the create the reconciler may put its own back (the
		// name is free and the binding desired): then delete that and try
		// again.
		c.kubectl(t, ctx, "", "label", "clusterrolebinding", "tether-hub-rbac-view", access.ManagedByLabel+"-", access.ComponentLabel+"-")
		var drifted *rbacv1.ClusterRoleBinding
		for attempt := 1; ; attempt++ {
			if err := crbs.Delete(ctx, "tether-hub-rbac-view", metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
				t.Fatal(err)
			}
			var err error
			drifted, err = crbs.Create(ctx, &rbacv1.ClusterRoleBinding{ObjectMeta: meta("tether-hub-rbac-view", nil),
				RoleRef: clusterRoleRef("cluster-admin"), Subjects: groupSubject("tether:cluster:view")}, metav1.CreateOptions{})
			if err == nil {
				break
			}
			if !apierrors.IsAlreadyExists(err) || attempt == 20 {
				t.Fatalf("attempt %d: %v", attempt, err)
			}
		}
		c.kubectl(t, ctx, "", "label", "clusterrolebinding", "tether-hub-rbac-view",
			access.ManagedByLabel+"="+access.ManagedByValue, access.ComponentLabel+"="+access.ComponentValue)
		edit, err := rbs("web").Get(ctx, "tether-hub-rbac-edit", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		edit.Subjects = append(edit.Subjects, groupSubject("intruders")...)
		must(rbs("web").Update(ctx, edit, metav1.UpdateOptions{}))
		view, err := rbs("default").Get(ctx, "tether-hub-rbac-view", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		view.Labels["extra"] = "label"
		must(rbs("default").Update(ctx, view, metav1.UpdateOptions{}))
		if err := rbs("web").Delete(ctx, "tether-hub-rbac-admin", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		must(crbs.Create(ctx, &rbacv1.ClusterRoleBinding{ObjectMeta: meta("tether-hub-rbac-surprise", managedLabels),
			RoleRef: clusterRoleRef("cluster-admin"), Subjects: groupSubject("tether:cluster:view")}, metav1.CreateOptions{}))

		t.Logf("drift repaired in %s", c.waitForBindings(t, ctx, taken).Round(time.Millisecond))
		got, err := crbs.Get(ctx, "tether-hub-rbac-view", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if got.UID == drifted.UID {
			t.Errorf("tether-hub-rbac-view was not recreated (uid %s)", got.UID)
		}
	})

	t.Run("the bindings give the groups their meaning", func(t *testing.T) {
		tests := []struct {
			name      string
			group     string
			namespace string
			args      []string
			want      string
		}{
			{name: "cluster view lists pods", group: "tether:cluster:view", namespace: "default", args: []string{"list", "pods"}, want: "yes"},
			{name: "cluster view gets no secrets", group: "tether:cluster:view", namespace: "default", args: []string{"get", "secrets"}, want: "no"},
			{name: "cluster view cannot exec", group: "tether:cluster:view", namespace: "default", args: []string{"create", "pods", "--subresource=exec"}, want: "no"},
			{name: "namespace edit execs in its namespace", group: "tether:namespace:web:edit", namespace: "web", args: []string{"create", "pods", "--subresource=exec"}, want: "yes"},
			{name: "namespace edit cannot exec elsewhere", group: "tether:namespace:web:edit", namespace: "default", args: []string{"create", "pods", "--subresource=exec"}, want: "no"},
			{name: "a new namespace's view lists pods", group: "tether:namespace:later:view", namespace: "later", args: []string{"list", "pods"}, want: "yes"},
			{name: "the taken name grants its role nothing", group: "tether:namespace:taken:view", namespace: "taken", args: []string{"list", "pods"}, want: "no"},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				args := append([]string{"auth", "can-i"}, tt.args...)
				args = append(args, "-n", tt.namespace, "--as", "3f2a5b1c-0000-4000-8000-000000000001", "--as-group", tt.group)
				out, err := c.Kubectl(ctx, args...).Output()
				var exit *exec.ExitError
				if err != nil && !errors.As(err, &exit) { // "no" exits 1
					t.Fatal(err)
				}
				if got := strings.TrimSpace(string(out)); got != tt.want {
					t.Errorf("kubectl %s: %q, want %q", strings.Join(args, " "), got, tt.want)
				}
			})
		}
	})

	t.Run("Remove deletes only managed bindings", func(t *testing.T) {
		stop(t)
		if err := rec.Remove(ctx); err != nil {
			t.Fatal(err)
		}
		got, err := c.managedBindings(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 0 {
			t.Errorf("managed bindings left: %+v", got)
		}
	})

	t.Run("unmanaged bindings are untouched", func(t *testing.T) {
		got := map[string]types.UID{}
		all, err := crbs.List(ctx, metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for _, b := range all.Items {
			if _, ok := unmanaged[b.Name]; ok {
				got[b.Name] = b.UID
			}
		}
		for _, ns := range []string{"web", "taken"} {
			all, err := c.admin.RbacV1().RoleBindings(ns).List(ctx, metav1.ListOptions{})
			if err != nil {
				t.Fatal(err)
			}
			for _, b := range all.Items {
				if _, ok := unmanaged[ns+"/"+b.Name]; ok {
					got[ns+"/"+b.Name] = b.UID
				}
			}
		}
		if diff := gocmp.Diff(unmanaged, got); diff != "" {
			t.Errorf("unmanaged bindings (-want +got):\n%s", diff)
		}
		taken, err := rbs("taken").Get(ctx, "tether-hub-rbac-view", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if taken.Labels != nil || taken.RoleRef.Name != "admin" {
			t.Errorf("the binding holding a managed name changed: labels %v, role %s", taken.Labels, taken.RoleRef.Name)
		}
	})

	t.Run("CheckPermissions", func(t *testing.T) {
		c.kubectl(t, ctx, "", "create", "serviceaccount", "nobody", "-n", "tether-system")
		nobody := c.serviceAccountConfig(t, ctx, "nobody")
		allMissing := []string{
			"impersonate users", "impersonate groups",
			"get namespaces", "list namespaces", "watch namespaces",
			"get clusterrolebindings.rbac.authorization.k8s.io", "list clusterrolebindings.rbac.authorization.k8s.io",
			"watch clusterrolebindings.rbac.authorization.k8s.io", "create clusterrolebindings.rbac.authorization.k8s.io",
			"update clusterrolebindings.rbac.authorization.k8s.io", "delete clusterrolebindings.rbac.authorization.k8s.io",
			"get rolebindings.rbac.authorization.k8s.io", "list rolebindings.rbac.authorization.k8s.io",
			"watch rolebindings.rbac.authorization.k8s.io", "create rolebindings.rbac.authorization.k8s.io",
			"update rolebindings.rbac.authorization.k8s.io", "delete rolebindings.rbac.authorization.k8s.io",
			"bind clusterroles.rbac.authorization.k8s.io/view", "bind clusterroles.rbac.authorization.k8s.io/edit",
			"bind clusterroles.rbac.authorization.k8s.io/admin", "bind clusterroles.rbac.authorization.k8s.io/cluster-admin",
		}
		tests := []struct {
			name        string
			cfg         *rest.Config
			hubRBAC     bool
			wantMissing []string
		}{
			{name: "the manifest's service account, hub RBAC", cfg: c.agent, hubRBAC: true},
			{name: "the manifest's service account, Kubernetes RBAC", cfg: c.agent, hubRBAC: false},
			{name: "a service account bound to nothing, hub RBAC", cfg: nobody, hubRBAC: true, wantMissing: allMissing},
			{name: "a service account bound to nothing, Kubernetes RBAC", cfg: nobody, hubRBAC: false,
				wantMissing: []string{"impersonate users", "impersonate groups"}},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				client, err := kubernetes.NewForConfig(tt.cfg)
				if err != nil {
					t.Fatal(err)
				}
				err = CheckPermissions(ctx, client, tt.hubRBAC)
				var missing *MissingPermissionsError
				if err != nil && !errors.As(err, &missing) {
					t.Fatal(err)
				}
				var got []string
				if missing != nil {
					got = missing.Missing
					if !strings.Contains(err.Error(), "deploy/agent-rbac.yaml") || !strings.Contains(err.Error(), strings.Join(got, ", ")) {
						t.Errorf("error does not list what is missing and what to apply: %v", err)
					}
				}
				if diff := gocmp.Diff(tt.wantMissing, got); diff != "" {
					t.Errorf("missing permissions (-want +got):\n%s", diff)
				}
			})
		}
	})
}

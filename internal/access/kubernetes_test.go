package access_test

import (
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"

	"tether.dev/tether/internal/access"
)

func TestKubernetesGroups(t *testing.T) {
	// alice in 500 directory groups, devs among them.
	in500 := access.Principal{ID: alice, Type: access.PrincipalUser, Groups: slices.Insert(manyGroups(499), 250, devs)}
	if n := len(slices.Compact(slices.Sorted(slices.Values(in500.Groups)))); n != 500 {
		t.Fatalf("alice is in %d distinct groups, want 500", n)
	}
	tests := []struct {
		name        string
		principal   access.Principal
		cluster     string
		assignments []access.Assignment
		want        []string
	}{
		{"viewer and cluster user at cluster", aliceP, cluster, []access.Assignment{
			user(alice, "cluster-user", cluster),
			user(alice, "kubernetes-viewer", cluster),
		}, []string{"tether:cluster:view"}},
		{"writer at namespace", aliceP, cluster, []access.Assignment{
			user(alice, "cluster-user", cluster),
			user(alice, "kubernetes-writer", namespace),
		}, []string{"tether:namespace:shop:edit"}},
		{"admin at namespace is namespace admin", aliceP, cluster, []access.Assignment{
			user(alice, "kubernetes-admin", namespace),
		}, []string{"tether:namespace:shop:admin"}},
		{"admin at cluster", aliceP, cluster, []access.Assignment{
			user(alice, "kubernetes-admin", cluster),
		}, []string{"tether:cluster:admin"}},
		{"group-scope inheritance via a group", aliceP, cluster, []access.Assignment{
			group(devs, "cluster-user", "/groups/prod"),
			group(devs, "kubernetes-cluster-admin", "/groups/prod"),
		}, []string{"tether:cluster:cluster-admin"}},
		{"root scope", bobP, cluster, []access.Assignment{
			sp(bob, "kubernetes-viewer", "/"),
		}, []string{"tether:cluster:view"}},
		{"500 directory groups, one assigned", in500, cluster, []access.Assignment{
			group(devs, "cluster-user", cluster),
			group(devs, "kubernetes-writer", cluster),
			group(ops, "kubernetes-cluster-admin", cluster),
		}, []string{"tether:cluster:edit"}},
		{"every role, sorted, duplicates once", aliceP, cluster, []access.Assignment{
			user(alice, "kubernetes-viewer", cluster),
			group(devs, "kubernetes-viewer", "/groups/prod"),
			user(alice, "kubernetes-writer", "/"),
			user(alice, "kubernetes-admin", "/groups/prod/clusters/web/namespaces/b"),
			user(alice, "kubernetes-viewer", "/groups/prod/clusters/web/namespaces/a"),
			group(devs, "kubernetes-viewer", "/groups/prod/clusters/web/namespaces/a"),
			user(alice, "kubernetes-cluster-admin", cluster),
			user(alice, "kubernetes-admin", cluster),
			user(alice, "owner", "/"),
		}, []string{
			"tether:cluster:admin", "tether:cluster:cluster-admin", "tether:cluster:edit", "tether:cluster:view",
			"tether:namespace:a:view", "tether:namespace:b:admin",
		}},
		{"hub roles and cluster user give no group", aliceP, cluster, []access.Assignment{
			user(alice, "cluster-user", cluster),
			user(alice, "owner", "/"),
			group(devs, "contributor", cluster),
			user(alice, "reader", cluster),
		}, nil},
		{"namespace of another cluster", aliceP, cluster, []access.Assignment{
			user(alice, "kubernetes-admin", "/groups/prod/clusters/api/namespaces/shop"),
		}, nil},
		{"another cluster and another group", aliceP, cluster, []access.Assignment{
			user(alice, "kubernetes-admin", "/groups/prod/clusters/api"),
			user(alice, "kubernetes-admin", "/groups/dev"),
		}, nil},
		{"someone else's and another group's", aliceP, cluster, []access.Assignment{
			user(bob, "kubernetes-admin", cluster),
			group(ops, "kubernetes-admin", cluster),
		}, nil},
		{"invalid cluster admin at namespace grants nothing", aliceP, cluster, []access.Assignment{
			user(alice, "kubernetes-cluster-admin", namespace),
		}, nil},
		{"system: directory groups are never passed on", access.Principal{ID: alice, Type: access.PrincipalUser, Groups: []string{"system:masters", "tether:cluster:cluster-admin", devs}}, cluster, []access.Assignment{
			group("system:masters", "kubernetes-cluster-admin", cluster),
			group(devs, "kubernetes-viewer", cluster),
		}, []string{"tether:cluster:view"}},
		{"invalid cluster ID", aliceP, "/groups/prod", []access.Assignment{
			user(alice, "kubernetes-viewer", "/"),
		}, nil},
		{"invalid principal", access.Principal{ID: alice, Type: access.PrincipalGroup}, cluster, []access.Assignment{
			user(alice, "kubernetes-viewer", cluster),
		}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := access.KubernetesGroups(tt.principal, tt.cluster, tt.assignments)
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("KubernetesGroups(%s) (-want +got):\n%s", tt.cluster, diff)
			}
		})
	}
}

// TestGroupsHaveBindings checks that every group KubernetesGroups can return
// is the subject of exactly one binding the agent keeps, so no group is
// meaningless and none is bound twice.
func TestGroupsHaveBindings(t *testing.T) {
	var all []access.Assignment
	for _, r := range access.RoleDefinitions() {
		for _, scope := range []string{"/", "/groups/prod", cluster, namespace, "/groups/prod/clusters/web/namespaces/kube-system"} {
			all = append(all, user(alice, r.ID, scope))
		}
	}
	groups := access.KubernetesGroups(aliceP, cluster, all)
	bindings := append(access.ClusterBindings(), access.NamespaceBindings("shop")...)
	bindings = append(bindings, access.NamespaceBindings("kube-system")...)
	bound := map[string]int{}
	for _, b := range bindings {
		bound[b.Group]++
	}
	got := map[string]int{}
	for _, g := range groups {
		got[g] = bound[g]
	}
	want := map[string]int{
		"tether:cluster:view": 1, "tether:cluster:edit": 1, "tether:cluster:admin": 1, "tether:cluster:cluster-admin": 1,
		"tether:namespace:shop:view": 1, "tether:namespace:shop:edit": 1, "tether:namespace:shop:admin": 1,
		"tether:namespace:kube-system:view": 1, "tether:namespace:kube-system:edit": 1, "tether:namespace:kube-system:admin": 1,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("bindings per group (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(len(bindings), len(groups)); diff != "" {
		t.Errorf("bindings without a group (-want +got):\n%s", diff)
	}
}

var managed = map[string]string{"app.kubernetes.io/managed-by": "tether", "app.kubernetes.io/component": "hub-rbac"}

func TestClusterBindings(t *testing.T) {
	want := []access.Binding{
		{Kind: "ClusterRoleBinding", Name: "tether-hub-rbac-admin", ClusterRole: "admin", Group: "tether:cluster:admin", Labels: managed},
		{Kind: "ClusterRoleBinding", Name: "tether-hub-rbac-cluster-admin", ClusterRole: "cluster-admin", Group: "tether:cluster:cluster-admin", Labels: managed},
		{Kind: "ClusterRoleBinding", Name: "tether-hub-rbac-edit", ClusterRole: "edit", Group: "tether:cluster:edit", Labels: managed},
		{Kind: "ClusterRoleBinding", Name: "tether-hub-rbac-view", ClusterRole: "view", Group: "tether:cluster:view", Labels: managed},
	}
	first := access.ClusterBindings()
	first[0].Labels["app.kubernetes.io/managed-by"] = "someone-else"
	if diff := cmp.Diff(want, access.ClusterBindings()); diff != "" {
		t.Errorf("ClusterBindings() (-want +got):\n%s", diff)
	}
}

func TestNamespaceBindings(t *testing.T) {
	tests := []struct {
		name string
		ns   string
		want []access.Binding
	}{
		{"shop", "shop", []access.Binding{
			{Kind: "RoleBinding", Name: "tether-hub-rbac-admin", Namespace: "shop", ClusterRole: "admin", Group: "tether:namespace:shop:admin", Labels: managed},
			{Kind: "RoleBinding", Name: "tether-hub-rbac-edit", Namespace: "shop", ClusterRole: "edit", Group: "tether:namespace:shop:edit", Labels: managed},
			{Kind: "RoleBinding", Name: "tether-hub-rbac-view", Namespace: "shop", ClusterRole: "view", Group: "tether:namespace:shop:view", Labels: managed},
		}},
		{"kube-system", "kube-system", []access.Binding{
			{Kind: "RoleBinding", Name: "tether-hub-rbac-admin", Namespace: "kube-system", ClusterRole: "admin", Group: "tether:namespace:kube-system:admin", Labels: managed},
			{Kind: "RoleBinding", Name: "tether-hub-rbac-edit", Namespace: "kube-system", ClusterRole: "edit", Group: "tether:namespace:kube-system:edit", Labels: managed},
			{Kind: "RoleBinding", Name: "tether-hub-rbac-view", Namespace: "kube-system", ClusterRole: "view", Group: "tether:namespace:kube-system:view", Labels: managed},
		}},
		{"empty", "", nil},
		{"uppercase", "Shop", nil},
		{"colon would split the group name", "a:b", nil},
		{"64 characters", name64, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, access.NamespaceBindings(tt.ns)); diff != "" {
				t.Errorf("NamespaceBindings(%q) (-want +got):\n%s", tt.ns, diff)
			}
		})
	}
}

func TestBindingConstants(t *testing.T) {
	got := []string{access.BindingSelector, access.BindingNamePrefix, access.ClusterGroupPrefix, access.NamespaceGroupPrefix}
	want := []string{"app.kubernetes.io/managed-by=tether,app.kubernetes.io/component=hub-rbac", "tether-hub-rbac-", "tether:cluster:", "tether:namespace:"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("constants (-want +got):\n%s", diff)
	}
}

func TestIsReservedGroup(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want bool
	}{
		{"system:masters", "system:masters", true},
		{"system:authenticated", "system:authenticated", true},
		{"uppercase System", "System:masters", true},
		{"a role group", "tether:cluster:cluster-admin", true},
		{"a namespace role group", "tether:namespace:shop:admin", true},
		{"uppercase Tether", "TETHER:cluster:view", true},
		{"object ID", devs, false},
		{"plain name", "developers", false},
		{"system without colon", "systemd", false},
		{"system: not at the start", "x-system:masters", false},
		{"empty", "", false},
		{"prefix cut short", "system", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, access.IsReservedGroup(tt.in)); diff != "" {
				t.Errorf("IsReservedGroup(%q) (-want +got):\n%s", tt.in, diff)
			}
		})
	}
}

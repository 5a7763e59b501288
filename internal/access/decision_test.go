package access_test

import (
	"fmt"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"tether.dev/tether/internal/access"
)

var (
	aliceP = access.Principal{ID: alice, Type: access.PrincipalUser, Groups: []string{devs}}
	bobP   = access.Principal{ID: bob, Type: access.PrincipalServicePrincipal}
)

var allowed = access.Decision{Allowed: true}

// connectDenied is the denial Connect gives id for cluster.
func connectDenied(id, cluster string) access.Decision {
	return access.Decision{Message: "principal " + id + " may not connect to cluster " + cluster +
		`: it needs the "Cluster User" role (or Contributor/Owner) at that cluster or its group; ask an Owner to run: ` +
		`tether role assignment create --role "Cluster User" --assignee ` + id + " --scope " + cluster}
}

func TestConnect(t *testing.T) {
	tests := []struct {
		name        string
		principal   access.Principal
		cluster     string
		assignments []access.Assignment
		want        access.Decision
	}{
		{"direct at cluster", aliceP, cluster, []access.Assignment{user(alice, "cluster-user", cluster)}, allowed},
		{"service principal at cluster", bobP, cluster, []access.Assignment{sp(bob, "cluster-user", cluster)}, allowed},
		{"via group at cluster", aliceP, cluster, []access.Assignment{group(devs, "cluster-user", cluster)}, allowed},
		{"via group at the cluster's group", aliceP, cluster, []access.Assignment{group(devs, "cluster-user", "/groups/prod")}, allowed},
		{"direct at the cluster's group", aliceP, cluster, []access.Assignment{user(alice, "cluster-user", "/groups/prod")}, allowed},
		{"at root", aliceP, cluster, []access.Assignment{user(alice, "cluster-user", "/")}, allowed},
		{"contributor", aliceP, cluster, []access.Assignment{user(alice, "contributor", "/groups/prod")}, allowed},
		{"owner", aliceP, cluster, []access.Assignment{group(devs, "owner", cluster)}, allowed},
		{"one of many", aliceP, cluster, []access.Assignment{
			user(bob, "cluster-user", cluster),
			user(alice, "kubernetes-viewer", cluster),
			group(ops, "cluster-user", cluster),
			group(devs, "cluster-user", "/groups/prod"),
		}, allowed},
		{"user and service principal type are both the object ID", aliceP, cluster, []access.Assignment{sp(alice, "cluster-user", cluster)}, allowed},

		{"no assignments, the exact message", aliceP, cluster, nil, access.Decision{Message: "principal 3f2a0c4e-8b1d-4e5f-9a6b-7c8d9e0f1a2b may not connect to cluster /groups/prod/clusters/web: " +
			`it needs the "Cluster User" role (or Contributor/Owner) at that cluster or its group; ` +
			`ask an Owner to run: tether role assignment create --role "Cluster User" --assignee 3f2a0c4e-8b1d-4e5f-9a6b-7c8d9e0f1a2b --scope /groups/prod/clusters/web`}},
		{"wrong cluster", aliceP, cluster, []access.Assignment{user(alice, "cluster-user", "/groups/prod/clusters/api")}, connectDenied(alice, cluster)},
		{"same cluster name, other group", aliceP, cluster, []access.Assignment{user(alice, "cluster-user", "/groups/dev/clusters/web")}, connectDenied(alice, cluster)},
		{"other group", aliceP, cluster, []access.Assignment{group(devs, "cluster-user", "/groups/dev")}, connectDenied(alice, cluster)},
		{"someone else's assignment", aliceP, cluster, []access.Assignment{user(bob, "cluster-user", cluster)}, connectDenied(alice, cluster)},
		{"a group alice is not in", aliceP, cluster, []access.Assignment{group(ops, "cluster-user", cluster)}, connectDenied(alice, cluster)},
		{"a user assignment to alice's group", aliceP, cluster, []access.Assignment{user(devs, "cluster-user", cluster)}, connectDenied(alice, cluster)},
		{"a group assignment to alice's own ID", aliceP, cluster, []access.Assignment{group(alice, "cluster-user", cluster)}, connectDenied(alice, cluster)},
		{"namespace-scope viewer does not grant connect", aliceP, cluster, []access.Assignment{user(alice, "kubernetes-viewer", namespace)}, connectDenied(alice, cluster)},
		{"cluster-scope cluster admin does not grant connect", aliceP, cluster, []access.Assignment{user(alice, "kubernetes-cluster-admin", cluster)}, connectDenied(alice, cluster)},
		{"reader does not grant connect", aliceP, cluster, []access.Assignment{user(alice, "reader", "/")}, connectDenied(alice, cluster)},
		{"invalid cluster user at namespace scope grants nothing", aliceP, cluster, []access.Assignment{user(alice, "cluster-user", namespace)}, connectDenied(alice, cluster)},
		{"invalid scope grants nothing", aliceP, cluster, []access.Assignment{user(alice, "cluster-user", cluster+"/")}, connectDenied(alice, cluster)},
		{"unknown role grants nothing", aliceP, cluster, []access.Assignment{user(alice, "Cluster User", cluster)}, connectDenied(alice, cluster)},
		{"unknown principal type grants nothing", aliceP, cluster, []access.Assignment{{PrincipalID: alice, PrincipalType: "User", RoleID: "cluster-user", Scope: cluster}}, connectDenied(alice, cluster)},
		{"a system: group name grants nothing",
			access.Principal{ID: alice, Type: access.PrincipalUser, Groups: []string{"system:masters"}}, cluster,
			[]access.Assignment{group("system:masters", "cluster-user", cluster)}, connectDenied(alice, cluster)},

		{"namespace is not a cluster ID", aliceP, namespace, []access.Assignment{user(alice, "cluster-user", cluster)}, access.Decision{
			Message: `invalid cluster ID "/groups/prod/clusters/web/namespaces/shop": want /groups/{group}/clusters/{cluster}`}},
		{"malformed cluster ID", aliceP, "/groups/prod/clusters/WEB", []access.Assignment{user(alice, "cluster-user", "/")}, access.Decision{
			Message: `invalid scope "/groups/prod/clusters/WEB": cluster name "WEB": use lowercase letters, digits and '-', starting and ending with a letter or digit`}},
		{"principal without an object ID", access.Principal{ID: "alice", Type: access.PrincipalUser}, cluster, []access.Assignment{user(alice, "cluster-user", "/")}, access.Decision{
			Message: `principal: invalid object ID "alice": want an object ID, a UUID such as 3f2a0c4e-8b1d-4e5f-9a6b-7c8d9e0f1a2b (look it up with "... show --query id -o tsv")`}},
		{"a group cannot connect", access.Principal{ID: devs, Type: access.PrincipalGroup}, cluster, []access.Assignment{group(devs, "cluster-user", cluster)}, access.Decision{
			Message: `principal 9d1c2b3a-4f5e-4d6c-8b7a-6f5e4d3c2b1a: type "group" cannot sign in: want user or servicePrincipal`}},
		{"principal without a type", access.Principal{ID: alice}, cluster, []access.Assignment{user(alice, "cluster-user", cluster)}, access.Decision{
			Message: `principal 3f2a0c4e-8b1d-4e5f-9a6b-7c8d9e0f1a2b: type "" cannot sign in: want user or servicePrincipal`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := access.Connect(tt.principal, tt.cluster, tt.assignments)
			if diff := cmp.Diff(tt.want, got, cmpopts.IgnoreFields(access.Decision{}, "Grant")); diff != "" {
				t.Errorf("Connect(%s) (-want +got):\n%s", tt.cluster, diff)
			}
		})
	}
}

// authorizeDenied is the denial Authorize gives id for action at scope,
// when role (or the alternatives) would allow it if assigned at suggest.
func authorizeDenied(id string, action access.Action, scope, role, alternatives, suggest string) access.Decision {
	return access.Decision{Message: "principal " + id + " may not do " + string(action) + " at " + scope +
		`: it needs the "` + role + `" role` + alternatives + ` at that scope or one containing it; ask an Owner to run: ` +
		`tether role assignment create --role "` + role + `" --assignee ` + id + " --scope " + suggest}
}

func TestAuthorize(t *testing.T) {
	tests := []struct {
		name        string
		scope       string
		action      access.Action
		assignments []access.Assignment
		want        access.Decision
	}{
		{"reader reads a cluster in its group", cluster, "clusters/read", []access.Assignment{user(alice, "reader", "/groups/prod")}, allowed},
		{"reader reads assignments via group", namespace, "assignments/read", []access.Assignment{group(devs, "reader", cluster)}, allowed},
		{"cluster user reads its cluster", cluster, "clusters/read", []access.Assignment{user(alice, "cluster-user", cluster)}, allowed},
		{"contributor writes clusters in its group", "/groups/prod", "clusters/write", []access.Assignment{user(alice, "contributor", "/groups/prod")}, allowed},
		{"contributor deletes a cluster", cluster, "clusters/delete", []access.Assignment{user(alice, "contributor", "/")}, allowed},
		{"owner assigns at a namespace of its cluster", namespace, "assignments/write", []access.Assignment{group(devs, "owner", cluster)}, allowed},
		{"root owner manages principals", "/", "principals/write", []access.Assignment{user(alice, "owner", "/")}, allowed},

		{"reader cannot write clusters", cluster, "clusters/write", []access.Assignment{user(alice, "reader", "/")},
			authorizeDenied(alice, "clusters/write", cluster, "Contributor", " (or Owner)", cluster)},
		{"contributor cannot write assignments", "/groups/prod", "assignments/write", []access.Assignment{user(alice, "contributor", "/groups/prod")},
			authorizeDenied(alice, "assignments/write", "/groups/prod", "Owner", "", "/groups/prod")},
		{"group owner cannot manage principals", "/", "principals/write", []access.Assignment{user(alice, "owner", "/groups/prod")},
			authorizeDenied(alice, "principals/write", "/", "Owner", "", "/")},
		{"owner of one cluster is not owner of its group", "/groups/prod", "clusters/write", []access.Assignment{user(alice, "owner", cluster)},
			authorizeDenied(alice, "clusters/write", "/groups/prod", "Contributor", " (or Owner)", "/groups/prod")},
		{"kubernetes roles grant nothing on the hub", cluster, "clusters/read", []access.Assignment{user(alice, "kubernetes-cluster-admin", "/")},
			authorizeDenied(alice, "clusters/read", cluster, "Reader", " (or Cluster User/Contributor/Owner)", cluster)},
		{"connect is suggested as cluster user", cluster, "clusters/connect", nil,
			authorizeDenied(alice, "clusters/connect", cluster, "Cluster User", " (or Contributor/Owner)", cluster)},
		{"the suggestion at a namespace is its cluster", namespace, "assignments/read", nil,
			authorizeDenied(alice, "assignments/read", namespace, "Reader", " (or Contributor/Owner)", cluster)},
		{"other group's reader", "/groups/prod", "clusters/read", []access.Assignment{group(ops, "reader", "/")},
			authorizeDenied(alice, "clusters/read", "/groups/prod", "Reader", " (or Cluster User/Contributor/Owner)", "/groups/prod")},

		{"unknown action", cluster, "clusters/*", []access.Assignment{user(alice, "owner", "/")}, access.Decision{Message: `unknown action "clusters/*"`}},
		{"invalid scope", "/groups/prod/", "clusters/read", []access.Assignment{user(alice, "owner", "/")}, access.Decision{Message: `invalid scope "/groups/prod/": remove the trailing slash`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := access.Authorize(aliceP, tt.scope, tt.action, tt.assignments)
			if diff := cmp.Diff(tt.want, got, cmpopts.IgnoreFields(access.Decision{}, "Grant")); diff != "" {
				t.Errorf("Authorize(%s, %s) (-want +got):\n%s", tt.scope, tt.action, diff)
			}
		})
	}
}

// manyGroups returns n distinct group object IDs.
func manyGroups(n int) []string {
	var gs []string
	for i := range n {
		gs = append(gs, fmt.Sprintf("%08x", i)+ops[8:])
	}
	return gs
}

// TestDecisionGrant checks that an allowed decision names the role and
// scope that allowed it, for the audit trail, and a denial names none.
func TestDecisionGrant(t *testing.T) {
	cluster := "/groups/prod/clusters/web"
	tests := []struct {
		name        string
		assignments []access.Assignment
		want        string
	}{
		{"direct at the cluster", []access.Assignment{user(alice, "cluster-user", cluster)}, `"Cluster User" at /groups/prod/clusters/web`},
		{"through a group at the group", []access.Assignment{group(devs, "contributor", "/groups/prod")}, `"Contributor" at /groups/prod`},
		{"owner at the root", []access.Assignment{user(alice, "owner", "/")}, `"Owner" at /`},
		{"denied: no grant", []access.Assignment{user(alice, "reader", "/")}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := access.Connect(aliceP, cluster, tt.assignments)
			if d.Grant != tt.want || d.Allowed != (tt.want != "") {
				t.Errorf("Connect = %+v, want allowed %v with grant %q", d, tt.want != "", tt.want)
			}
		})
	}
}

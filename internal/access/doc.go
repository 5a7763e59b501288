// Package access is Tether's authorization: scopes, the built-in role
// definitions, role assignments, and the decisions made from them. It is pure
// logic: callers hand in the principal and the assignments as values and get
// a decision back; nothing here reads a store, a clock or the network.
//
// # Scopes and assignments
//
// A scope is a path (see ParseScope):
//
//	/                                          the whole hub
//	/groups/{group}                            a group of clusters
//	/groups/{group}/clusters/{cluster}         one cluster (its ID, as the hub prints it)
//	/groups/{group}/clusters/{cluster}/namespaces/{namespace}
//
// The root scope "/" is Tether's (Arc's nearest is a subscription): it is
// where the hub's first Owner is assigned, and where principals/* actions
// are checked, since principals belong to no group.
//
// An Assignment binds a principal (a user, a service principal, or a group
// whose members it then counts for) to a Role at a scope, and applies to
// everything below that scope. Assignments that do not pass Validate grant
// nothing.
//
// # Decisions
//
// Connect decides whether a caller may reach a cluster at all; it is checked
// in both authorization modes. Authorize decides the hub's own API
// (clusters, assignments, principals).
//
// In Kubernetes-RBAC mode Connect is the hub's only check: the agent then
// impersonates the caller's object ID and directory groups, and the API
// server decides with the bindings made in the cluster to them (as in
// "kubectl create clusterrolebinding --user=OBJECT_ID").
//
// # Hub-RBAC mode
//
// In hub-RBAC mode the hub's assignments decide what the caller may do inside
// the cluster, but the hub does not inspect Kubernetes requests. It turns the
// caller's Kubernetes-role assignments for the cluster into impersonated
// groups (KubernetesGroups), and the agent keeps, in the cluster, the bindings
// that give each of those groups the meaning of its role (ClusterBindings,
// and NamespaceBindings for every namespace):
//
//	hub, on every request                          cluster (kept by the agent, labelled,
//	                                               drift repaired; same for every role
//	assignments that apply to 3f2a...:             and every namespace)
//	  Cluster User      @ /groups/g/clusters/c
//	  Kubernetes Viewer @ /groups/g/clusters/c     ClusterRoleBinding tether-hub-rbac-view
//	  Kubernetes Writer @ .../namespaces/web         group tether:cluster:view -> ClusterRole view
//	        |                                      RoleBinding web/tether-hub-rbac-edit
//	        | Connect: allowed                       group tether:namespace:web:edit -> ClusterRole edit
//	        | KubernetesGroups                                  ^
//	        v                                                   | the API server's RBAC
//	request == tunnel ==> agent ==> kube-apiserver -------------+ matches the groups
//	  Impersonate-User:  3f2a...
//	  Impersonate-Group: tether:cluster:view
//	  Impersonate-Group: tether:namespace:web:edit
//
// Why this design:
//
//   - Kubernetes itself enforces every request, subresources included: exec,
//     attach and port-forward are "create" on pod subresources whatever the
//     HTTP method, ephemeral containers an update of one, none of which view
//     grants, and nodes/proxy is granted by cluster-admin alone. The hub
//     parses no Kubernetes URL and cannot get one wrong.
//   - Revocation is immediate: the groups are computed on every request, so
//     the request after an assignment is removed simply lacks the group.
//   - No per-user objects live in the cluster and nothing about assignments
//     reaches the agent: the bindings are a fixed set per cluster and per
//     namespace, which the agent repairs when they drift.
//   - There is no group limit: only role-derived groups are impersonated, at
//     most four for the cluster and three per namespace assigned, however
//     many directory groups the caller is in.
//
// The impersonated user stays the caller's object ID, so the cluster's audit
// log names the caller, and bindings made in the cluster to that ID still
// apply (as in Arc, where Kubernetes RBAC stays on beside Azure RBAC); the
// API server adds system:authenticated itself.
//
// The role groups begin with "tether:" and never with "system:". A directory
// group with either prefix must never be impersonated (see IsReservedGroup),
// or a directory could name itself into a hub-RBAC role.
//
// Kubernetes roles grant nothing on the hub and hub roles grant nothing in
// the cluster, as in Arc: an Owner who wants to use kubectl assigns
// themselves a Kubernetes role too.
package access

package access

import "slices"

// Group names that carry a Kubernetes role in hub-RBAC mode:
//
//	tether:cluster:{view|edit|admin|cluster-admin}    at the cluster, its group or the root
//	tether:namespace:{namespace}:{view|edit|admin}    at one namespace of the cluster
const (
	ClusterGroupPrefix   = "tether:cluster:"
	NamespaceGroupPrefix = "tether:namespace:"
)

// Labels on every binding the agent keeps for hub-RBAC mode; the agent finds
// its bindings with BindingSelector and repairs or deletes what drifted.
const (
	ManagedByLabel  = "app.kubernetes.io/managed-by"
	ManagedByValue  = "tether"
	ComponentLabel  = "app.kubernetes.io/component"
	ComponentValue  = "hub-rbac"
	BindingSelector = ManagedByLabel + "=" + ManagedByValue + "," + ComponentLabel + "=" + ComponentValue
)

// BindingNamePrefix begins the name of every binding the agent keeps for
// hub-RBAC mode; the ClusterRole's name follows.
const BindingNamePrefix = "tether-hub-rbac-"

// Binding kinds (rbac.authorization.k8s.io/v1).
const (
	KindClusterRoleBinding = "ClusterRoleBinding"
	KindRoleBinding        = "RoleBinding"
)

// Binding is a ClusterRoleBinding or RoleBinding that gives one role group
// its meaning: it binds the ClusterRole to the group (a subject of kind
// Group, API group rbac.authorization.k8s.io).
type Binding struct {
	// Kind is KindClusterRoleBinding or KindRoleBinding.
	Kind string
	// Name is BindingNamePrefix followed by the ClusterRole's name.
	Name string
	// Namespace is the RoleBinding's namespace; empty for a
	// ClusterRoleBinding.
	Namespace string
	// ClusterRole is the role bound: "view", "edit", "admin" or
	// "cluster-admin".
	ClusterRole string
	// Group is the subject, a name KubernetesGroups returns.
	Group string
	// Labels are ManagedByLabel and ComponentLabel with their values; each
	// Binding has its own map.
	Labels map[string]string
}

// KubernetesGroups returns the groups a hub-RBAC-mode request from p to the
// cluster clusterID impersonates, in place of p's directory groups: one per
// Kubernetes role that an assignment applying to p (directly or through a
// group) grants at the cluster, its group or the root
// (ClusterGroupPrefix+ClusterRole), and one per Kubernetes role granted at a
// namespace of this cluster (NamespaceGroupPrefix+namespace+":"+ClusterRole).
// The result is sorted and without duplicates; nil if there is none, or if p
// or clusterID is invalid.
//
// Only role groups are returned, never p's directory groups and never a name
// beginning with "system:", so a principal in any number of directory groups
// yields at most four groups plus three per namespace assigned. Hub roles and
// Cluster User add none: call Connect first to decide whether p may reach the
// cluster at all.
func KubernetesGroups(p Principal, clusterID string, assignments []Assignment) []string {
	cluster, err := parseClusterID(clusterID)
	if err != nil || p.validate() != nil {
		return nil
	}
	var groups []string
	for _, g := range applicable(p, assignments, RoleDefinitions()) {
		switch {
		case g.role.ClusterRole == "":
		case Contains(g.scope, cluster):
			groups = append(groups, clusterGroup(g.role.ClusterRole))
		case g.scope.Level() == LevelNamespace && g.scope.Parent() == cluster:
			groups = append(groups, namespaceGroup(g.scope.Namespace(), g.role.ClusterRole))
		}
	}
	slices.Sort(groups)
	return slices.Compact(groups)
}

func clusterGroup(clusterRole string) string { return ClusterGroupPrefix + clusterRole }

func namespaceGroup(ns, clusterRole string) string {
	return NamespaceGroupPrefix + ns + ":" + clusterRole
}

// ClusterBindings returns the ClusterRoleBindings the agent keeps in a
// hub-RBAC-mode cluster, one per Kubernetes role, sorted by name:
// tether-hub-rbac-{admin,cluster-admin,edit,view}, each binding the
// ClusterRole of that name to the group tether:cluster:{role}.
func ClusterBindings() []Binding {
	var bs []Binding
	for _, cr := range []string{ClusterRoleAdmin, ClusterRoleClusterAdmin, ClusterRoleEdit, ClusterRoleView} {
		bs = append(bs, Binding{
			Kind:        KindClusterRoleBinding,
			Name:        BindingNamePrefix + cr,
			ClusterRole: cr,
			Group:       clusterGroup(cr),
			Labels:      bindingLabels(),
		})
	}
	return bs
}

// NamespaceBindings returns the RoleBindings the agent keeps in namespace ns
// of a hub-RBAC-mode cluster, in every namespace whether or not anyone is
// assigned there, sorted by name: tether-hub-rbac-{admin,edit,view}, each
// binding the ClusterRole of that name to the group
// tether:namespace:{ns}:{role}. Kubernetes' admin bound in a namespace is
// namespace admin; cluster-admin is never bound per namespace. It returns nil
// if ns is not a valid namespace name (the agent passes names it read from
// the API server, which are).
func NamespaceBindings(ns string) []Binding {
	if validateName("namespace", ns) != nil {
		return nil
	}
	var bs []Binding
	for _, cr := range []string{ClusterRoleAdmin, ClusterRoleEdit, ClusterRoleView} {
		bs = append(bs, Binding{
			Kind:        KindRoleBinding,
			Name:        BindingNamePrefix + cr,
			Namespace:   ns,
			ClusterRole: cr,
			Group:       namespaceGroup(ns, cr),
			Labels:      bindingLabels(),
		})
	}
	return bs
}

func bindingLabels() map[string]string {
	return map[string]string{ManagedByLabel: ManagedByValue, ComponentLabel: ComponentValue}
}

// IsReservedGroup reports whether a group name begins, in any ASCII case,
// with "system:" (Kubernetes' own users and groups) or "tether:" (the role
// groups of hub-RBAC mode). Such a name from a directory or a token must
// never be impersonated: it would grant what the API server or the hub means
// by it, not what the directory does.
func IsReservedGroup(name string) bool {
	return hasPrefixFoldASCII(name, "system:") || hasPrefixFoldASCII(name, "tether:")
}

func hasPrefixFoldASCII(s, prefix string) bool {
	return len(s) >= len(prefix) && equalFoldASCII(s[:len(prefix)], prefix)
}

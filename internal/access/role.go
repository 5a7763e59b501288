package access

import (
	"errors"
	"fmt"
	"slices"
)

// ErrRoleNotFound is matched (errors.Is) by LookupRole's error for a name
// that is no built-in role.
var ErrRoleNotFound = errors.New("role not found")

// Action is something a principal does on the hub's own API. Roles grant
// actions at a scope.
type Action string

// The hub's actions. Reading one's own principal needs none.
const (
	ActionClustersRead     Action = "clusters/read"     // show and list clusters
	ActionClustersWrite    Action = "clusters/write"    // register and change clusters, issue join tokens
	ActionClustersDelete   Action = "clusters/delete"   // delete clusters
	ActionClustersConnect  Action = "clusters/connect"  // reach a cluster's API server (Arc: listClusterUserCredential/action)
	ActionAssignmentsRead  Action = "assignments/read"  // show and list role assignments
	ActionAssignmentsWrite Action = "assignments/write" // create and delete role assignments
	ActionPrincipalsRead   Action = "principals/read"   // show and list users, service principals and groups
	ActionPrincipalsWrite  Action = "principals/write"  // manage users, service principals, groups and secrets
	ActionAuditRead        Action = "audit/read"        // read the audit trail
)

// Actions returns every hub action, in the order of the constants above.
func Actions() []Action {
	return []Action{
		ActionClustersRead, ActionClustersWrite, ActionClustersDelete, ActionClustersConnect,
		ActionAssignmentsRead, ActionAssignmentsWrite,
		ActionPrincipalsRead, ActionPrincipalsWrite,
		ActionAuditRead,
	}
}

// Kubernetes' user-facing ClusterRoles, which the Kubernetes roles mean.
const (
	ClusterRoleView         = "view"
	ClusterRoleEdit         = "edit"
	ClusterRoleAdmin        = "admin"
	ClusterRoleClusterAdmin = "cluster-admin"
)

// IDs of the built-in roles. An Assignment's RoleID is one of these.
const (
	RoleReader                 = "reader"
	RoleClusterUser            = "cluster-user"
	RoleKubernetesViewer       = "kubernetes-viewer"
	RoleKubernetesWriter       = "kubernetes-writer"
	RoleKubernetesAdmin        = "kubernetes-admin"
	RoleKubernetesClusterAdmin = "kubernetes-cluster-admin"
	RoleContributor            = "contributor"
	RoleOwner                  = "owner"
)

// Role is a built-in role definition. A role either grants hub Actions or
// means one of Kubernetes' ClusterRoles inside a cluster, never both.
type Role struct {
	// ID is the stable identifier that assignments store, e.g. "cluster-user".
	ID string
	// Name is the display name, e.g. "Cluster User".
	Name string
	// ArcName is the name of the matching Azure Arc built-in role, so a user
	// coming from Arc finds their way; LookupRole accepts it too.
	ArcName string
	// Description says what the role allows, in one sentence.
	Description string
	// Actions are the hub actions the role grants; empty for the Kubernetes
	// roles.
	Actions []Action
	// ClusterRole is the Kubernetes ClusterRole whose meaning the role has
	// inside a cluster in hub-RBAC mode: "view", "edit", "admin" or
	// "cluster-admin"; empty for hub roles.
	ClusterRole string
	// Levels are the scope levels at which the role may be assigned.
	Levels []Level
}

// Allows reports whether the role grants action a.
func (r Role) Allows(a Action) bool { return slices.Contains(r.Actions, a) }

// AssignableAt reports whether the role may be assigned at level l.
func (r Role) AssignableAt(l Level) bool { return slices.Contains(r.Levels, l) }

// RoleDefinitions returns the built-in roles, roughly from least to most
// privileged: Reader, Cluster User, the four Kubernetes roles, Contributor,
// Owner. Denial messages suggest the first role in this order that would
// allow what was denied. Every call returns fresh values.
func RoleDefinitions() []Role {
	hubLevels := func() []Level { return []Level{LevelRoot, LevelGroup, LevelCluster} }
	allLevels := func() []Level { return []Level{LevelRoot, LevelGroup, LevelCluster, LevelNamespace} }
	return []Role{{
		ID:          RoleReader,
		Name:        "Reader",
		ArcName:     "Reader",
		Description: "View clusters, role assignments, principals and the audit trail.",
		Actions:     []Action{ActionClustersRead, ActionAssignmentsRead, ActionPrincipalsRead, ActionAuditRead},
		Levels:      hubLevels(),
	}, {
		ID:          RoleClusterUser,
		Name:        "Cluster User",
		ArcName:     "Azure Arc Enabled Kubernetes Cluster User Role",
		Description: "Connect to clusters (required to reach a cluster at all, in both authorization modes).",
		Actions:     []Action{ActionClustersRead, ActionClustersConnect},
		Levels:      hubLevels(),
	}, {
		ID:          RoleKubernetesViewer,
		Name:        "Kubernetes Viewer",
		ArcName:     "Azure Arc Kubernetes Viewer",
		Description: "Read most objects in the cluster or namespace, not Secrets (Kubernetes' view).",
		ClusterRole: ClusterRoleView,
		Levels:      allLevels(),
	}, {
		ID:          RoleKubernetesWriter,
		Name:        "Kubernetes Writer",
		ArcName:     "Azure Arc Kubernetes Writer",
		Description: "Read and write most objects, exec and port-forward, not Roles or RoleBindings (Kubernetes' edit).",
		ClusterRole: ClusterRoleEdit,
		Levels:      allLevels(),
	}, {
		ID:          RoleKubernetesAdmin,
		Name:        "Kubernetes Admin",
		ArcName:     "Azure Arc Kubernetes Admin",
		Description: "Manage everything in a namespace, Roles and RoleBindings included; at cluster scope, in every namespace (Kubernetes' admin).",
		ClusterRole: ClusterRoleAdmin,
		Levels:      allLevels(),
	}, {
		ID:          RoleKubernetesClusterAdmin,
		Name:        "Kubernetes Cluster Admin",
		ArcName:     "Azure Arc Kubernetes Cluster Admin",
		Description: "Do anything in the cluster (Kubernetes' cluster-admin); not assignable at namespace scope.",
		ClusterRole: ClusterRoleClusterAdmin,
		Levels:      hubLevels(),
	}, {
		ID:          RoleContributor,
		Name:        "Contributor",
		ArcName:     "Contributor",
		Description: "Manage and connect to clusters; view role assignments, principals and the audit trail, not change them.",
		Actions: []Action{
			ActionClustersRead, ActionClustersWrite, ActionClustersDelete, ActionClustersConnect,
			ActionAssignmentsRead, ActionPrincipalsRead, ActionAuditRead,
		},
		Levels: hubLevels(),
	}, {
		ID:          RoleOwner,
		Name:        "Owner",
		ArcName:     "Owner",
		Description: "Everything on the hub, role assignments and principals included.",
		Actions:     Actions(),
		Levels:      hubLevels(),
	}}
}

// LookupRole finds a built-in role by its ID, display name or Arc name,
// ignoring ASCII case: "cluster-user", "Cluster User" and "Azure Arc Enabled
// Kubernetes Cluster User Role" are one role. The error matches
// ErrRoleNotFound.
func LookupRole(nameOrID string) (Role, error) {
	for _, r := range RoleDefinitions() {
		if equalFoldASCII(nameOrID, r.ID) || equalFoldASCII(nameOrID, r.Name) || equalFoldASCII(nameOrID, r.ArcName) {
			return r, nil
		}
	}
	return Role{}, fmt.Errorf("role %s: %w; run \"tether role definition list\" to see the roles, and give an ID such as cluster-user or a name such as \"Kubernetes Viewer\"", clip(nameOrID), ErrRoleNotFound)
}

// roleByID finds a built-in role by its exact ID.
func roleByID(roles []Role, id string) (Role, bool) {
	i := slices.IndexFunc(roles, func(r Role) bool { return r.ID == id })
	if i < 0 {
		return Role{}, false
	}
	return roles[i], true
}

// equalFoldASCII is strings.EqualFold for ASCII letters only, so that no
// Unicode look-alike (the Kelvin sign for K) names a role.
func equalFoldASCII(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		if lowerASCII(a[i]) != lowerASCII(b[i]) {
			return false
		}
	}
	return true
}

func lowerASCII(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

// clip quotes s for an error message, cut to a readable length, with
// everything but printable ASCII escaped so that look-alikes show.
func clip(s string) string {
	const maxLen = 64
	if len(s) > maxLen {
		return fmt.Sprintf("%+q...", s[:maxLen])
	}
	return fmt.Sprintf("%+q", s)
}

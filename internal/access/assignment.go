package access

import "fmt"

// PrincipalType is the kind of principal an assignment names.
type PrincipalType string

// Principal types.
const (
	PrincipalUser             PrincipalType = "user"
	PrincipalServicePrincipal PrincipalType = "servicePrincipal"
	// PrincipalGroup: the assignment counts for every member of the group.
	// A group never signs in, so no caller is of this type.
	PrincipalGroup PrincipalType = "group"
)

// Assignment binds a principal to a built-in role at a scope. It applies at
// that scope and everything below it.
type Assignment struct {
	// ID identifies the assignment; whoever stores it chooses it. Validate
	// does not look at it.
	ID string
	// PrincipalID is the object ID of the user, service principal or group
	// (see ValidateObjectID).
	PrincipalID string
	// PrincipalType says which of the three PrincipalID names. A user or
	// service principal assignment applies to the caller with that object ID;
	// a group assignment to every caller whose Groups hold that ID.
	PrincipalType PrincipalType
	// RoleID is a built-in role's ID (Role.ID), e.g. "cluster-user".
	RoleID string
	// Scope is a scope path (see ParseScope).
	Scope string
}

// Validate checks an assignment before it is stored: a valid object ID and
// principal type, a built-in role ID, a valid scope, and a role that may be
// assigned at that scope's level (the Kubernetes roles everywhere except
// Cluster Admin, which is never namespace-scoped; Cluster User and the hub
// roles never at namespace scope). The error matches ErrInvalid and says what
// to do instead.
func (a Assignment) Validate() error {
	_, _, err := a.check(RoleDefinitions())
	return err
}

// check validates a against roles and returns its role and scope.
func (a Assignment) check(roles []Role) (Role, Scope, error) {
	if err := ValidateObjectID(a.PrincipalID); err != nil {
		return Role{}, Scope{}, fmt.Errorf("role assignment: assignee: %w", err)
	}
	switch a.PrincipalType {
	case PrincipalUser, PrincipalServicePrincipal, PrincipalGroup:
	default:
		return Role{}, Scope{}, invalid("role assignment: invalid principal type %s: want %s, %s or %s",
			clip(string(a.PrincipalType)), PrincipalUser, PrincipalServicePrincipal, PrincipalGroup)
	}
	role, ok := roleByID(roles, a.RoleID)
	if !ok {
		if r, err := LookupRole(a.RoleID); err == nil {
			return Role{}, Scope{}, invalid("role assignment: role %q is a name, not an ID: store the ID %q", a.RoleID, r.ID)
		}
		return Role{}, Scope{}, invalid("role assignment: unknown role ID %s; run \"tether role definition list\" to see the roles", clip(a.RoleID))
	}
	scope, err := ParseScope(a.Scope)
	if err != nil {
		return Role{}, Scope{}, fmt.Errorf("role assignment: %w", err)
	}
	if err := checkAssignable(role, scope); err != nil {
		return Role{}, Scope{}, err
	}
	return role, scope, nil
}

// checkAssignable reports, with advice, why role may not be assigned at
// scope.
func checkAssignable(role Role, scope Scope) error {
	if role.AssignableAt(scope.Level()) {
		return nil
	}
	up := assignableScope(role, scope)
	switch {
	case role.ID == RoleKubernetesClusterAdmin && scope.Level() == LevelNamespace:
		return invalid("role %q cannot be assigned at namespace scope %s: it gives the whole cluster; "+
			"assign %q there for namespace admin, or %q at the cluster %s",
			role.Name, scope, "Kubernetes Admin", role.Name, up)
	case role.ID == RoleClusterUser && scope.Level() == LevelNamespace:
		return invalid("role %q cannot be assigned at namespace scope %s: connecting is granted per cluster; "+
			"assign it at the cluster %s, and limit what the principal may do there with %q, %q or %q at the namespace",
			role.Name, scope, up, "Kubernetes Viewer", "Kubernetes Writer", "Kubernetes Admin")
	case role.ClusterRole == "" && scope.Level() == LevelNamespace:
		return invalid("role %q cannot be assigned at namespace scope %s: hub roles apply to clusters and groups; assign it at the cluster %s or its group",
			role.Name, scope, up)
	}
	return invalid("role %q cannot be assigned at %s scope %s; assign it at %s", role.Name, scope.Level(), scope, up)
}

// assignableScope returns the innermost scope at or above scope where role
// may be assigned, or the zero Scope if there is none.
func assignableScope(role Role, scope Scope) Scope {
	for !scope.IsZero() && !role.AssignableAt(scope.Level()) {
		scope = scope.Parent()
	}
	return scope
}

// ValidateObjectID checks a principal's object ID: a UUID in its canonical
// lowercase form (8-4-4-4-12 hexadecimal digits), not the nil UUID. Object
// IDs are compared byte for byte, so the form matters. The error matches
// ErrInvalid.
func ValidateObjectID(id string) error {
	const hint = "want an object ID, a UUID such as 3f2a0c4e-8b1d-4e5f-9a6b-7c8d9e0f1a2b (look it up with \"... show --query id -o tsv\")"
	if len(id) != 36 {
		return invalid("invalid object ID %s: %s", clip(id), hint)
	}
	zero := true
	for i := 0; i < len(id); i++ {
		c := id[i]
		switch {
		case i == 8 || i == 13 || i == 18 || i == 23:
			if c != '-' {
				return invalid("invalid object ID %s: %s", clip(id), hint)
			}
		case '0' <= c && c <= '9' || 'a' <= c && c <= 'f':
			zero = zero && c == '0'
		case 'A' <= c && c <= 'F':
			return invalid("invalid object ID %s: write it in lowercase", clip(id))
		default:
			return invalid("invalid object ID %s: %s", clip(id), hint)
		}
	}
	if zero {
		return invalid("invalid object ID %s: the nil UUID names no principal", clip(id))
	}
	return nil
}

package store

import (
	"fmt"
	"time"

	"tether.dev/tether/internal/access"
)

// RoleAssignment is a stored access.Assignment. The principal it names may
// be one of the embedded directory or of another OIDC issuer: the store does
// not require it to exist, but deleting an embedded principal deletes its
// assignments.
type RoleAssignment struct {
	// Assignment is what the assignment grants. Its ID is a UUID (see
	// ValidateUUID) chosen by the caller.
	access.Assignment
	CreatedAt time.Time
}

// Validate checks an assignment for CreateRoleAssignment: a UUID for its ID,
// an access.Assignment that passes its Validate, and a creation time. The
// error matches ErrInvalid, and access.ErrInvalid when access refused it.
func (a RoleAssignment) Validate() error {
	if err := ValidateUUID(a.ID); err != nil {
		return fmt.Errorf("role assignment ID: %w", err)
	}
	if err := a.Assignment.Validate(); err != nil {
		return &accessError{err: err}
	}
	if a.CreatedAt.IsZero() {
		return invalid("role assignment %s: creation time is required", a.ID)
	}
	return nil
}

// AssignmentFilter selects role assignments for ListRoleAssignments. The
// zero value selects all; set fields narrow the selection, and all must
// match.
type AssignmentFilter struct {
	// Scope, when set, selects the assignments at that scope (a scope path,
	// see access.ParseScope). Above and Below widen it; they need Scope.
	Scope string
	// Above adds the assignments at the scopes that contain Scope, up to
	// the root: with it the selection is every assignment that applies at
	// Scope (as "az role assignment list --include-inherited").
	Above bool
	// Below adds the assignments at the scopes inside Scope: for a cluster,
	// those at its namespaces. With Above too, a cluster's selection is
	// every assignment that could apply anywhere in it:
	//
	//	/
	//	/groups/{g}
	//	/groups/{g}/clusters/{c}
	//	/groups/{g}/clusters/{c}/namespaces/*
	Below bool
	// PrincipalIDs, when not empty, selects the assignments to one of these
	// object IDs: a caller's own and those of its groups (GroupsOf). Every
	// entry must be an object ID; duplicates are allowed.
	PrincipalIDs []string
}

// Validate checks a filter for ListRoleAssignments: a valid scope if any,
// Above and Below only with a scope, and object IDs.
func (f AssignmentFilter) Validate() error {
	if f.Scope == "" && (f.Above || f.Below) {
		return invalid("role assignment filter: above and below need a scope")
	}
	if f.Scope != "" {
		if _, err := access.ParseScope(f.Scope); err != nil {
			return fmt.Errorf("role assignment filter: %w", &accessError{err: err})
		}
	}
	for _, id := range f.PrincipalIDs {
		if err := ValidateObjectID(id); err != nil {
			return fmt.Errorf("role assignment filter: principal: %w", err)
		}
	}
	return nil
}

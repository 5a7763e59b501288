package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"tether.dev/tether/internal/access"
	"tether.dev/tether/internal/store"
)

// assignmentColumns are the columns scanAssignment reads, in its order.
const assignmentColumns = `id, principal_id, principal_type, role_id, scope, created_at`

// scanAssignment reads one row of assignmentColumns.
func scanAssignment(row interface{ Scan(...any) error }) (store.RoleAssignment, error) {
	var (
		a       store.RoleAssignment
		typ     string
		created sql.NullInt64
	)
	if err := row.Scan(&a.ID, &a.PrincipalID, &typ, &a.RoleID, &a.Scope, &created); err != nil {
		return store.RoleAssignment{}, err
	}
	a.PrincipalType = access.PrincipalType(typ)
	a.CreatedAt = goTime(created)
	return a, nil
}

// CreateRoleAssignment implements store.Store.
func (s *Store) CreateRoleAssignment(ctx context.Context, a store.RoleAssignment) error {
	if err := a.Validate(); err != nil {
		return fmt.Errorf("create role assignment: %w", err)
	}
	err := s.write(ctx, func(tx *sql.Tx) error {
		typ, err := principalType(ctx, tx, a.PrincipalID)
		switch {
		case errors.Is(err, store.ErrNotFound):
			// A principal of another issuer: taken as given.
		case err != nil:
			return err
		case typ != a.PrincipalType:
			return fmt.Errorf("principal %s is a %s, not a %s: %w", a.PrincipalID, typ, a.PrincipalType, store.ErrInvalid)
		}
		err = insertOne(ctx, tx, `
			INSERT INTO role_assignments (id, principal_id, principal_type, role_id, scope, created_at)
			VALUES (?, ?, ?, ?, ?, ?)
			ON CONFLICT DO NOTHING`,
			a.ID, a.PrincipalID, string(a.PrincipalType), a.RoleID, a.Scope, dbTime(a.CreatedAt))
		if errors.Is(err, store.ErrConflict) {
			return assignmentConflict(ctx, tx, a)
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("create role assignment %s: %w", a.ID, err)
	}
	return nil
}

// assignmentConflict says what makes a, whose insertion did nothing, a
// duplicate; the error matches store.ErrConflict.
func assignmentConflict(ctx context.Context, tx *sql.Tx, a store.RoleAssignment) error {
	var sameID bool
	if err := tx.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM role_assignments WHERE id = ?)`, a.ID).Scan(&sameID); err != nil {
		return err
	}
	if sameID {
		return fmt.Errorf("ID: %w", store.ErrConflict)
	}
	return fmt.Errorf("principal %s already has role %s at %s: %w", a.PrincipalID, a.RoleID, a.Scope, store.ErrConflict)
}

// GetRoleAssignment implements store.Store.
func (s *Store) GetRoleAssignment(ctx context.Context, id string) (store.RoleAssignment, error) {
	if err := store.ValidateUUID(id); err != nil {
		return store.RoleAssignment{}, fmt.Errorf("get role assignment: %w", err)
	}
	a, err := scanAssignment(s.db.QueryRowContext(ctx,
		`SELECT `+assignmentColumns+` FROM role_assignments WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		err = store.ErrNotFound
	}
	if err != nil {
		return store.RoleAssignment{}, fmt.Errorf("get role assignment %s: %w", id, err)
	}
	return a, nil
}

// ListRoleAssignments implements store.Store. Scopes are selected with the
// index on scope: by equality for the scope and its ancestors, and by a
// byte-wise range for its descendants, which all begin with the scope and a
// slash.
func (s *Store) ListRoleAssignments(ctx context.Context, f store.AssignmentFilter) ([]store.RoleAssignment, error) {
	if err := f.Validate(); err != nil {
		return nil, fmt.Errorf("list role assignments: %w", err)
	}
	var (
		where []string
		args  []any
	)
	if cond, condArgs := scopeCondition(f); cond != "" {
		where = append(where, cond)
		args = append(args, condArgs...)
	}
	if len(f.PrincipalIDs) > 0 {
		ids, err := json.Marshal(f.PrincipalIDs)
		if err != nil {
			return nil, fmt.Errorf("list role assignments: %w", err)
		}
		// One parameter however many IDs: no limit on bound variables.
		where = append(where, `principal_id IN (SELECT value FROM json_each(?))`)
		args = append(args, string(ids))
	}
	query := `SELECT ` + assignmentColumns + ` FROM role_assignments`
	if len(where) > 0 {
		query += ` WHERE ` + strings.Join(where, ` AND `)
	}
	query += ` ORDER BY scope, principal_id, role_id, id`

	rows, err := s.db.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("list role assignments: %w", err)
	}
	defer rows.Close()
	var as []store.RoleAssignment
	for rows.Next() {
		a, err := scanAssignment(rows)
		if err != nil {
			return nil, fmt.Errorf("list role assignments: %w", err)
		}
		as = append(as, a)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list role assignments: %w", err)
	}
	return as, nil
}

// scopeCondition returns the WHERE condition that selects f's scopes, and
// its arguments; "" when every scope is selected. f is valid.
func scopeCondition(f store.AssignmentFilter) (string, []any) {
	if f.Scope == "" {
		return "", nil
	}
	scope, _ := access.ParseScope(f.Scope) // validated by f.Validate
	if f.Below && scope.Level() == access.LevelRoot {
		return "", nil // everything is at or below the root
	}
	exact := []any{scope.String()}
	if f.Above {
		for up := scope.Parent(); !up.IsZero(); up = up.Parent() {
			exact = append(exact, up.String())
		}
	}
	cond := `scope IN (?` + strings.Repeat(`, ?`, len(exact)-1) + `)`
	if !f.Below {
		return cond, exact
	}
	// '0' follows '/' in ASCII: [scope + "/", scope + "0") holds exactly
	// the strings that begin with scope + "/".
	prefix := scope.String()
	return `(` + cond + ` OR (scope >= ? AND scope < ?))`, append(exact, prefix+"/", prefix+"0")
}

// DeleteRoleAssignment implements store.Store.
func (s *Store) DeleteRoleAssignment(ctx context.Context, id string) error {
	if err := store.ValidateUUID(id); err != nil {
		return fmt.Errorf("delete role assignment: %w", err)
	}
	err := s.write(ctx, func(tx *sql.Tx) error {
		return execOne(ctx, tx, `DELETE FROM role_assignments WHERE id = ?`, id)
	})
	if err != nil {
		return fmt.Errorf("delete role assignment %s: %w", id, err)
	}
	return nil
}

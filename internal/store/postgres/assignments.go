package postgres

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"tether.dev/tether/internal/access"
	"tether.dev/tether/internal/store"
)

// assignmentColumns are the columns scanAssignment reads, in its order.
const assignmentColumns = `id, principal_id, principal_type, role_id, scope, created_at`

// scanAssignment reads one row of assignmentColumns.
func scanAssignment(row pgx.Row) (store.RoleAssignment, error) {
	var (
		a       store.RoleAssignment
		typ     string
		created pgtype.Timestamptz
	)
	if err := row.Scan(&a.ID, &a.PrincipalID, &typ, &a.RoleID, &a.Scope, &created); err != nil {
		return store.RoleAssignment{}, err
	}
	a.PrincipalType = access.PrincipalType(typ)
	a.CreatedAt = goTime(created)
	return a, nil
}

// CreateRoleAssignment implements store.Store. INSERT ... ON CONFLICT DO
// NOTHING takes both unique constraints as arbiters: of concurrent
// creations that conflict, exactly one inserts.
func (s *Store) CreateRoleAssignment(ctx context.Context, a store.RoleAssignment) error {
	if err := a.Validate(); err != nil {
		return fmt.Errorf("create role assignment: %w", err)
	}
	err := s.write(ctx, func(tx pgx.Tx) error {
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
			VALUES ($1, $2, $3, $4, $5, $6)
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
func assignmentConflict(ctx context.Context, q querier, a store.RoleAssignment) error {
	var sameID bool
	if err := q.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM role_assignments WHERE id = $1)`, a.ID).Scan(&sameID); err != nil {
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
	var a store.RoleAssignment
	err := s.read(ctx, func(q querier) error {
		var err error
		a, err = scanAssignment(q.QueryRow(ctx, `SELECT `+assignmentColumns+` FROM role_assignments WHERE id = $1`, id))
		if errors.Is(err, pgx.ErrNoRows) {
			return store.ErrNotFound
		}
		return err
	})
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
	// param adds v to args and returns its placeholder.
	param := func(v any) string {
		args = append(args, v)
		return "$" + strconv.Itoa(len(args))
	}
	if cond := scopeCondition(f, param); cond != "" {
		where = append(where, cond)
	}
	if len(f.PrincipalIDs) > 0 {
		// One parameter however many IDs.
		where = append(where, `principal_id = ANY (`+param(f.PrincipalIDs)+`::text[])`)
	}
	query := `SELECT ` + assignmentColumns + ` FROM role_assignments`
	if len(where) > 0 {
		query += ` WHERE ` + strings.Join(where, ` AND `)
	}
	query += ` ORDER BY scope, principal_id, role_id, id`

	var as []store.RoleAssignment
	err := s.read(ctx, func(q querier) error {
		rows, err := q.Query(ctx, query, args...)
		if err != nil {
			return err
		}
		as, err = collect(rows, scanAssignment)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("list role assignments: %w", err)
	}
	return as, nil
}

// scopeCondition returns the WHERE condition that selects f's scopes, with
// its arguments added through param; "" when every scope is selected. f is
// valid.
func scopeCondition(f store.AssignmentFilter, param func(any) string) string {
	if f.Scope == "" {
		return ""
	}
	scope, _ := access.ParseScope(f.Scope) // validated by f.Validate
	if f.Below && scope.Level() == access.LevelRoot {
		return "" // everything is at or below the root
	}
	exact := []string{scope.String()}
	if f.Above {
		for up := scope.Parent(); !up.IsZero(); up = up.Parent() {
			exact = append(exact, up.String())
		}
	}
	cond := `scope = ANY (` + param(exact) + `::text[])`
	if !f.Below {
		return cond
	}
	// '0' follows '/' in ASCII: [scope + "/", scope + "0") holds exactly
	// the strings that begin with scope + "/", in the "C" collation.
	prefix := scope.String()
	return `(` + cond + ` OR (scope >= ` + param(prefix+"/") + ` AND scope < ` + param(prefix+"0") + `))`
}

// DeleteRoleAssignment implements store.Store.
func (s *Store) DeleteRoleAssignment(ctx context.Context, id string) error {
	if err := store.ValidateUUID(id); err != nil {
		return fmt.Errorf("delete role assignment: %w", err)
	}
	err := s.read(ctx, func(q querier) error {
		return execOne(ctx, q, `DELETE FROM role_assignments WHERE id = $1`, id)
	})
	if err != nil {
		return fmt.Errorf("delete role assignment %s: %w", id, err)
	}
	return nil
}

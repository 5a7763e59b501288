package sqlite

import (
	"context"
	"database/sql"
	"fmt"

	"tether.dev/tether/internal/access"
	"tether.dev/tether/internal/store"
)

// groupsOfQuery selects the IDs of the groups that contain the principal
// given as its parameter, directly or through nested groups. UNION, not
// UNION ALL, visits each group once, so the walk ends even on a cycle the
// store never makes.
const groupsOfQuery = `
	WITH RECURSIVE up (id) AS (
		SELECT group_id FROM memberships WHERE member_id = ?
		UNION
		SELECT m.group_id FROM memberships m JOIN up ON m.member_id = up.id
	)
	SELECT id FROM up`

// AddMember implements store.Store. The write transaction makes the cycle
// check and the insertion one change.
func (s *Store) AddMember(ctx context.Context, groupID, memberID string) error {
	if err := store.ValidateObjectID(groupID); err != nil {
		return fmt.Errorf("add member: group: %w", err)
	}
	if err := store.ValidateObjectID(memberID); err != nil {
		return fmt.Errorf("add member: %w", err)
	}
	err := s.write(ctx, func(tx *sql.Tx) error {
		if err := wantType(ctx, tx, groupID, access.PrincipalGroup); err != nil {
			return err
		}
		memberType, err := principalType(ctx, tx, memberID)
		if err != nil {
			return err
		}
		if memberType == access.PrincipalGroup {
			// A cycle would close if the group is the member or lies in it.
			var cycle bool
			err := tx.QueryRowContext(ctx, `SELECT ? = ? OR ? IN (`+groupsOfQuery+`)`,
				groupID, memberID, memberID, groupID).Scan(&cycle)
			if err != nil {
				return err
			}
			if cycle {
				return fmt.Errorf("group %s contains group %s: %w", memberID, groupID, store.ErrCycle)
			}
		}
		err = insertOne(ctx, tx, `
			INSERT INTO memberships (group_id, member_id) VALUES (?, ?)
			ON CONFLICT DO NOTHING`,
			groupID, memberID)
		if err != nil {
			return fmt.Errorf("already a member: %w", err)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("add member %s to group %s: %w", memberID, groupID, err)
	}
	return nil
}

// RemoveMember implements store.Store.
func (s *Store) RemoveMember(ctx context.Context, groupID, memberID string) error {
	if err := store.ValidateObjectID(groupID); err != nil {
		return fmt.Errorf("remove member: group: %w", err)
	}
	if err := store.ValidateObjectID(memberID); err != nil {
		return fmt.Errorf("remove member: %w", err)
	}
	err := s.write(ctx, func(tx *sql.Tx) error {
		return execOne(ctx, tx, `DELETE FROM memberships WHERE group_id = ? AND member_id = ?`, groupID, memberID)
	})
	if err != nil {
		return fmt.Errorf("remove member %s from group %s: %w", memberID, groupID, err)
	}
	return nil
}

// ListMembers implements store.Store. One query reads the group and its
// members, so the answer is consistent.
func (s *Store) ListMembers(ctx context.Context, groupID string) ([]store.Principal, error) {
	if err := store.ValidateObjectID(groupID); err != nil {
		return nil, fmt.Errorf("list members: group: %w", err)
	}
	// A group without members is one row whose member columns are NULL.
	rows, err := s.db.QueryContext(ctx, `
		SELECT `+principalColumns+`, g.type
		FROM principals g
			LEFT JOIN memberships m ON m.group_id = g.id
			LEFT JOIN principals p ON p.id = m.member_id
		WHERE g.id = ?
		ORDER BY `+principalOrder,
		groupID)
	if err != nil {
		return nil, fmt.Errorf("list members of group %s: %w", groupID, err)
	}
	defer rows.Close()
	var (
		found   bool
		typ     string
		members []store.Principal
	)
	for rows.Next() {
		p, err := scanPrincipal(rows, &typ)
		if err != nil {
			return nil, fmt.Errorf("list members of group %s: %w", groupID, err)
		}
		found = true
		if p.ID != "" {
			members = append(members, p)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list members of group %s: %w", groupID, err)
	}
	switch {
	case !found:
		return nil, fmt.Errorf("list members: group %s: %w", groupID, store.ErrNotFound)
	case access.PrincipalType(typ) != access.PrincipalGroup:
		return nil, fmt.Errorf("list members: principal %s is a %s, not a %s: %w",
			groupID, typ, access.PrincipalGroup, store.ErrInvalid)
	}
	return members, nil
}

// GroupsOf implements store.Store: one recursive query.
func (s *Store) GroupsOf(ctx context.Context, principalID string) ([]string, error) {
	if err := store.ValidateObjectID(principalID); err != nil {
		return nil, fmt.Errorf("groups of principal: %w", err)
	}
	rows, err := s.db.QueryContext(ctx, groupsOfQuery+` ORDER BY id`, principalID)
	if err != nil {
		return nil, fmt.Errorf("groups of principal %s: %w", principalID, err)
	}
	defer rows.Close()
	var groups []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, fmt.Errorf("groups of principal %s: %w", principalID, err)
		}
		groups = append(groups, id)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("groups of principal %s: %w", principalID, err)
	}
	return groups, nil
}

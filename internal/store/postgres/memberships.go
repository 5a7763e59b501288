package postgres

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"tether.dev/tether/internal/access"
	"tether.dev/tether/internal/store"
)

// membershipLock is the key of the transaction-level advisory lock that
// serializes AddMember's cycle check and insertion across replicas: two
// additions that each close half of a cycle cannot both pass their check.
// The key is "tether" in ASCII, then 2.
const membershipLock int64 = 0x74_65_74_68_65_72_00_02

// groupsOfQuery selects the IDs of the groups that contain the principal
// given as its parameter, directly or through nested groups. UNION, not
// UNION ALL, visits each group once, so the walk ends even on a cycle the
// store never makes.
const groupsOfQuery = `
	WITH RECURSIVE up (id) AS (
		SELECT group_id FROM memberships WHERE member_id = $1
		UNION
		SELECT m.group_id FROM memberships m JOIN up ON m.member_id = up.id
	)
	SELECT id FROM up`

// AddMember implements store.Store. Additions take membershipLock before
// they read, one at a time; at READ COMMITTED each statement after the
// lock sees every addition committed before it, so the cycle check and
// the insertion are one change. Removals and deletions need no lock: they
// cannot close a cycle.
func (s *Store) AddMember(ctx context.Context, groupID, memberID string) error {
	if err := store.ValidateObjectID(groupID); err != nil {
		return fmt.Errorf("add member: group: %w", err)
	}
	if err := store.ValidateObjectID(memberID); err != nil {
		return fmt.Errorf("add member: %w", err)
	}
	err := s.write(ctx, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, membershipLock); err != nil {
			return err
		}
		if err := wantType(ctx, tx, groupID, access.PrincipalGroup); err != nil {
			return err
		}
		memberType, err := principalType(ctx, tx, memberID)
		if err != nil {
			return err
		}
		if memberType == access.PrincipalGroup {
			// A cycle would close if the group is the member or lies in it.
			cycle := groupID == memberID
			if !cycle {
				err := tx.QueryRow(ctx, `SELECT EXISTS (`+groupsOfQuery+` WHERE id = $2)`, groupID, memberID).Scan(&cycle)
				if err != nil {
					return err
				}
			}
			if cycle {
				return fmt.Errorf("group %s contains group %s: %w", memberID, groupID, store.ErrCycle)
			}
		}
		err = insertOne(ctx, tx, `
			INSERT INTO memberships (group_id, member_id) VALUES ($1, $2)
			ON CONFLICT DO NOTHING`,
			groupID, memberID)
		switch {
		case isViolation(err, foreignKeyViolation): // deleted meanwhile
			return fmt.Errorf("principal: %w", store.ErrNotFound)
		case err != nil:
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
	err := s.read(ctx, func(q querier) error {
		return execOne(ctx, q, `DELETE FROM memberships WHERE group_id = $1 AND member_id = $2`, groupID, memberID)
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
	var (
		found   bool
		typ     string
		members []store.Principal
	)
	err := s.read(ctx, func(q querier) error {
		// A group without members is one row whose member columns are NULL.
		rows, err := q.Query(ctx, `
			SELECT `+principalColumns+`, g.type
			FROM principals g
				LEFT JOIN memberships m ON m.group_id = g.id
				LEFT JOIN principals p ON p.id = m.member_id
			WHERE g.id = $1
			ORDER BY `+principalOrder,
			groupID)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			p, err := scanPrincipal(rows, &typ)
			if err != nil {
				return err
			}
			found = true
			if p.ID != "" {
				members = append(members, p)
			}
		}
		return rows.Err()
	})
	switch {
	case err != nil:
		return nil, fmt.Errorf("list members of group %s: %w", groupID, err)
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
	var groups []string
	err := s.read(ctx, func(q querier) error {
		var err error
		groups, err = queryStrings(ctx, q, groupsOfQuery+` ORDER BY id`, principalID)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("groups of principal %s: %w", principalID, err)
	}
	return groups, nil
}

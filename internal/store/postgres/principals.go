package postgres

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"tether.dev/tether/internal/access"
	"tether.dev/tether/internal/store"
)

// principalColumns are the columns scanPrincipal reads, in its order, from
// the principals table named p. They leave out the password hash.
const principalColumns = `p.id, p.type, p.display_name, p.login_name, p.client_id, p.created_at`

// principalOrder is the listing order of principals named p.
const principalOrder = `p.display_name, p.id`

// scanPrincipal reads principalColumns, then the columns extra points to.
// A principal missing from an outer join, all NULLs, reads as the zero
// Principal.
func scanPrincipal(row pgx.Row, extra ...any) (store.Principal, error) {
	var (
		id, typ, name, login, client pgtype.Text
		created                      pgtype.Timestamptz
	)
	dest := append([]any{&id, &typ, &name, &login, &client, &created}, extra...)
	if err := row.Scan(dest...); err != nil {
		return store.Principal{}, err
	}
	return store.Principal{
		ID:          id.String,
		Type:        access.PrincipalType(typ.String),
		DisplayName: name.String,
		LoginName:   login.String,
		ClientID:    client.String,
		CreatedAt:   goTime(created),
	}, nil
}

// principalType returns the type of the principal with the given ID, or
// store.ErrNotFound.
func principalType(ctx context.Context, q querier, id string) (access.PrincipalType, error) {
	var typ string
	err := q.QueryRow(ctx, `SELECT type FROM principals WHERE id = $1`, id).Scan(&typ)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", fmt.Errorf("principal %s: %w", id, store.ErrNotFound)
	}
	return access.PrincipalType(typ), err
}

// wantType returns nil if the principal with the given ID exists and has
// type want, store.ErrNotFound if it does not exist, and store.ErrInvalid
// if it has another type.
func wantType(ctx context.Context, q querier, id string, want access.PrincipalType) error {
	got, err := principalType(ctx, q, id)
	if err != nil {
		return err
	}
	if got != want {
		return fmt.Errorf("principal %s is a %s, not a %s: %w", id, got, want, store.ErrInvalid)
	}
	return nil
}

// nullText stores the empty string as NULL.
func nullText(s string) pgtype.Text { return pgtype.Text{String: s, Valid: s != ""} }

// nullBlob stores an empty slice as NULL, and reads NULL back as nil.
func nullBlob(b []byte) []byte {
	if len(b) == 0 {
		return nil
	}
	return b
}

// CreatePrincipal implements store.Store. INSERT ... ON CONFLICT DO
// NOTHING takes every unique constraint as its arbiter, and waits for a
// concurrent insertion of the same value to commit or roll back: of
// concurrent creations that conflict, exactly one inserts.
func (s *Store) CreatePrincipal(ctx context.Context, p store.Principal) error {
	if err := p.Validate(); err != nil {
		return fmt.Errorf("create principal: %w", err)
	}
	var loginKey pgtype.Text
	if p.LoginName != "" {
		loginKey = nullText(store.FoldLoginName(p.LoginName))
	}
	err := s.write(ctx, func(tx pgx.Tx) error {
		err := insertOne(ctx, tx, `
			INSERT INTO principals (id, type, display_name, login_name, login_key, password_hash, client_id, created_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
			ON CONFLICT DO NOTHING`,
			p.ID, string(p.Type), p.DisplayName, nullText(p.LoginName), loginKey,
			nullBlob(p.PasswordHash), nullText(p.ClientID), dbTime(p.CreatedAt))
		if errors.Is(err, store.ErrConflict) {
			return principalConflict(ctx, tx, p, loginKey)
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("create %s %s: %w", p.Type, p.ID, err)
	}
	return nil
}

// principalConflict says which unique value of p, whose insertion did
// nothing, is taken; the error matches store.ErrConflict.
func principalConflict(ctx context.Context, q querier, p store.Principal, loginKey pgtype.Text) error {
	var id, login, client bool
	err := q.QueryRow(ctx, `
		SELECT
			EXISTS (SELECT 1 FROM principals WHERE id = $1),
			EXISTS (SELECT 1 FROM principals WHERE login_key = $2),
			EXISTS (SELECT 1 FROM principals WHERE client_id = $3)`,
		p.ID, loginKey, nullText(p.ClientID)).Scan(&id, &login, &client)
	switch {
	case err != nil:
		return err
	case id:
		return fmt.Errorf("object ID: %w", store.ErrConflict)
	case login:
		return fmt.Errorf("login name %q is taken: %w", p.LoginName, store.ErrConflict)
	case client:
		return fmt.Errorf("client ID %s is taken: %w", p.ClientID, store.ErrConflict)
	}
	return fmt.Errorf("a unique value is taken: %w", store.ErrConflict)
}

// getPrincipal returns the principal that where, a condition on p with
// one parameter, selects, or store.ErrNotFound; with the password hash if
// withHash.
func (s *Store) getPrincipal(ctx context.Context, where, arg string, withHash bool) (store.Principal, error) {
	query := `SELECT ` + principalColumns
	if withHash {
		query += `, p.password_hash`
	}
	query += ` FROM principals p WHERE ` + where
	var p store.Principal
	err := s.read(ctx, func(q querier) error {
		var (
			hash  []byte
			extra []any
			err   error
		)
		if withHash {
			extra = append(extra, &hash)
		}
		p, err = scanPrincipal(q.QueryRow(ctx, query, arg), extra...)
		if errors.Is(err, pgx.ErrNoRows) {
			return store.ErrNotFound
		}
		p.PasswordHash = nullBlob(hash)
		return err
	})
	return p, err
}

// GetPrincipal implements store.Store.
func (s *Store) GetPrincipal(ctx context.Context, id string) (store.Principal, error) {
	if err := store.ValidateObjectID(id); err != nil {
		return store.Principal{}, fmt.Errorf("get principal: %w", err)
	}
	p, err := s.getPrincipal(ctx, `p.id = $1`, id, false)
	if err != nil {
		return store.Principal{}, fmt.Errorf("get principal %s: %w", id, err)
	}
	return p, nil
}

// GetUserByLogin implements store.Store.
func (s *Store) GetUserByLogin(ctx context.Context, loginName string) (store.Principal, error) {
	if err := store.ValidateLoginName(loginName); err != nil {
		return store.Principal{}, fmt.Errorf("get user: %w", err)
	}
	p, err := s.getPrincipal(ctx, `p.login_key = $1`, store.FoldLoginName(loginName), true)
	if err != nil {
		return store.Principal{}, fmt.Errorf("get user %q: %w", loginName, err)
	}
	return p, nil
}

// GetServicePrincipalByClientID implements store.Store.
func (s *Store) GetServicePrincipalByClientID(ctx context.Context, clientID string) (store.Principal, error) {
	if err := store.ValidateUUID(clientID); err != nil {
		return store.Principal{}, fmt.Errorf("get service principal: client ID: %w", err)
	}
	p, err := s.getPrincipal(ctx, `p.client_id = $1`, clientID, false)
	if err != nil {
		return store.Principal{}, fmt.Errorf("get service principal with client ID %s: %w", clientID, err)
	}
	return p, nil
}

// ListPrincipals implements store.Store.
func (s *Store) ListPrincipals(ctx context.Context, f store.PrincipalFilter) ([]store.Principal, error) {
	if err := f.Validate(); err != nil {
		return nil, fmt.Errorf("list principals: %w", err)
	}
	query := `SELECT ` + principalColumns + ` FROM principals p`
	var args []any
	if f.Type != "" {
		query += ` WHERE p.type = $1`
		args = append(args, string(f.Type))
	}
	query += ` ORDER BY ` + principalOrder
	var ps []store.Principal
	err := s.read(ctx, func(q querier) error {
		rows, err := q.Query(ctx, query, args...)
		if err != nil {
			return err
		}
		ps, err = collect(rows, func(row pgx.Row) (store.Principal, error) { return scanPrincipal(row) })
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("list principals: %w", err)
	}
	return ps, nil
}

// SetDisplayName implements store.Store.
func (s *Store) SetDisplayName(ctx context.Context, id, displayName string) error {
	if err := store.ValidateObjectID(id); err != nil {
		return fmt.Errorf("set display name: %w", err)
	}
	if err := store.ValidateDisplayName(displayName); err != nil {
		return fmt.Errorf("set display name of principal %s: %w", id, err)
	}
	err := s.read(ctx, func(q querier) error {
		return execOne(ctx, q, `UPDATE principals SET display_name = $2 WHERE id = $1`, id, displayName)
	})
	if err != nil {
		return fmt.Errorf("set display name of principal %s: %w", id, err)
	}
	return nil
}

// SetPasswordHash implements store.Store.
func (s *Store) SetPasswordHash(ctx context.Context, id string, hash []byte) error {
	if err := store.ValidateObjectID(id); err != nil {
		return fmt.Errorf("set password: %w", err)
	}
	if err := store.ValidatePasswordHash(hash); err != nil {
		return fmt.Errorf("set password of user %s: %w", id, err)
	}
	err := s.write(ctx, func(tx pgx.Tx) error {
		// FOR UPDATE holds the row, so the type read is the one updated.
		var typ string
		err := tx.QueryRow(ctx, `SELECT type FROM principals WHERE id = $1 FOR UPDATE`, id).Scan(&typ)
		switch {
		case errors.Is(err, pgx.ErrNoRows):
			return fmt.Errorf("principal %s: %w", id, store.ErrNotFound)
		case err != nil:
			return err
		case access.PrincipalType(typ) != access.PrincipalUser:
			return fmt.Errorf("principal %s is a %s, not a %s: %w", id, typ, access.PrincipalUser, store.ErrInvalid)
		}
		return execOne(ctx, tx, `UPDATE principals SET password_hash = $2 WHERE id = $1`, id, nullBlob(hash))
	})
	if err != nil {
		return fmt.Errorf("set password: %w", err)
	}
	return nil
}

// DeletePrincipal implements store.Store. The foreign keys' ON DELETE
// CASCADE remove memberships and client secrets; role assignments have no
// foreign key, since they may name principals of other issuers, and are
// deleted here.
func (s *Store) DeletePrincipal(ctx context.Context, id string) error {
	if err := store.ValidateObjectID(id); err != nil {
		return fmt.Errorf("delete principal: %w", err)
	}
	err := s.write(ctx, func(tx pgx.Tx) error {
		// Deleting the principal first makes an unknown ID fail before it
		// touches the assignments of a principal of another issuer.
		if err := execOne(ctx, tx, `DELETE FROM principals WHERE id = $1`, id); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `DELETE FROM role_assignments WHERE principal_id = $1`, id)
		return err
	})
	if err != nil {
		return fmt.Errorf("delete principal %s: %w", id, err)
	}
	return nil
}

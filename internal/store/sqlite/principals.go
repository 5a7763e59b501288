package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

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
func scanPrincipal(row interface{ Scan(...any) error }, extra ...any) (store.Principal, error) {
	var (
		id, typ, name, login, client sql.NullString
		created                      sql.NullInt64
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

// queryer is a *sql.DB or a *sql.Tx.
type queryer interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// principalType returns the type of the principal with the given ID, or
// store.ErrNotFound.
func principalType(ctx context.Context, q queryer, id string) (access.PrincipalType, error) {
	var typ string
	err := q.QueryRowContext(ctx, `SELECT type FROM principals WHERE id = ?`, id).Scan(&typ)
	if errors.Is(err, sql.ErrNoRows) {
		return "", fmt.Errorf("principal %s: %w", id, store.ErrNotFound)
	}
	return access.PrincipalType(typ), err
}

// wantType returns nil if the principal with the given ID exists and has
// type want, store.ErrNotFound if it does not exist, and store.ErrInvalid
// if it has another type.
func wantType(ctx context.Context, q queryer, id string, want access.PrincipalType) error {
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
func nullText(s string) sql.NullString { return sql.NullString{String: s, Valid: s != ""} }

// nullBlob stores an empty slice as NULL.
func nullBlob(b []byte) []byte {
	if len(b) == 0 {
		return nil
	}
	return b
}

// CreatePrincipal implements store.Store.
func (s *Store) CreatePrincipal(ctx context.Context, p store.Principal) error {
	if err := p.Validate(); err != nil {
		return fmt.Errorf("create principal: %w", err)
	}
	var loginKey sql.NullString
	if p.LoginName != "" {
		loginKey = nullText(store.FoldLoginName(p.LoginName))
	}
	err := s.write(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `
			INSERT INTO principals (id, type, display_name, login_name, login_key, password_hash, client_id, created_at)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?)
			ON CONFLICT DO NOTHING`,
			p.ID, string(p.Type), p.DisplayName, nullText(p.LoginName), loginKey,
			nullBlob(p.PasswordHash), nullText(p.ClientID), dbTime(p.CreatedAt))
		if err != nil {
			return err
		}
		n, err := res.RowsAffected()
		if err != nil {
			return err
		}
		if n == 0 {
			return principalConflict(ctx, tx, p, loginKey)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("create %s %s: %w", p.Type, p.ID, err)
	}
	return nil
}

// principalConflict says which unique value of p, whose insertion did
// nothing, is taken; the error matches store.ErrConflict.
func principalConflict(ctx context.Context, tx *sql.Tx, p store.Principal, loginKey sql.NullString) error {
	var id, login, client bool
	err := tx.QueryRowContext(ctx, `
		SELECT
			EXISTS (SELECT 1 FROM principals WHERE id = ?),
			EXISTS (SELECT 1 FROM principals WHERE login_key = ?),
			EXISTS (SELECT 1 FROM principals WHERE client_id = ?)`,
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

// GetPrincipal implements store.Store.
func (s *Store) GetPrincipal(ctx context.Context, id string) (store.Principal, error) {
	if err := store.ValidateObjectID(id); err != nil {
		return store.Principal{}, fmt.Errorf("get principal: %w", err)
	}
	p, err := scanPrincipal(s.db.QueryRowContext(ctx,
		`SELECT `+principalColumns+` FROM principals p WHERE p.id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		err = store.ErrNotFound
	}
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
	var hash []byte
	row := s.db.QueryRowContext(ctx,
		`SELECT `+principalColumns+`, p.password_hash FROM principals p WHERE p.login_key = ?`,
		store.FoldLoginName(loginName))
	p, err := scanPrincipal(row, &hash)
	if errors.Is(err, sql.ErrNoRows) {
		err = store.ErrNotFound
	}
	if err != nil {
		return store.Principal{}, fmt.Errorf("get user %q: %w", loginName, err)
	}
	p.PasswordHash = nullBlob(hash)
	return p, nil
}

// GetServicePrincipalByClientID implements store.Store.
func (s *Store) GetServicePrincipalByClientID(ctx context.Context, clientID string) (store.Principal, error) {
	if err := store.ValidateUUID(clientID); err != nil {
		return store.Principal{}, fmt.Errorf("get service principal: client ID: %w", err)
	}
	p, err := scanPrincipal(s.db.QueryRowContext(ctx,
		`SELECT `+principalColumns+` FROM principals p WHERE p.client_id = ?`, clientID))
	if errors.Is(err, sql.ErrNoRows) {
		err = store.ErrNotFound
	}
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
		query += ` WHERE p.type = ?`
		args = append(args, string(f.Type))
	}
	query += ` ORDER BY ` + principalOrder
	ps, err := queryPrincipals(ctx, s.db, query, args...)
	if err != nil {
		return nil, fmt.Errorf("list principals: %w", err)
	}
	return ps, nil
}

// queryPrincipals runs a query that selects principalColumns.
func queryPrincipals(ctx context.Context, db *sql.DB, query string, args ...any) ([]store.Principal, error) {
	rows, err := db.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var ps []store.Principal
	for rows.Next() {
		p, err := scanPrincipal(rows)
		if err != nil {
			return nil, err
		}
		ps = append(ps, p)
	}
	return ps, rows.Err()
}

// SetDisplayName implements store.Store.
func (s *Store) SetDisplayName(ctx context.Context, id, displayName string) error {
	if err := store.ValidateObjectID(id); err != nil {
		return fmt.Errorf("set display name: %w", err)
	}
	if err := store.ValidateDisplayName(displayName); err != nil {
		return fmt.Errorf("set display name of principal %s: %w", id, err)
	}
	err := s.write(ctx, func(tx *sql.Tx) error {
		return execOne(ctx, tx, `UPDATE principals SET display_name = ? WHERE id = ?`, displayName, id)
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
	err := s.write(ctx, func(tx *sql.Tx) error {
		if err := wantType(ctx, tx, id, access.PrincipalUser); err != nil {
			return err
		}
		return execOne(ctx, tx, `UPDATE principals SET password_hash = ? WHERE id = ?`, nullBlob(hash), id)
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
	err := s.write(ctx, func(tx *sql.Tx) error {
		// Deleting the principal first makes an unknown ID fail before it
		// touches the assignments of a principal of another issuer.
		if err := execOne(ctx, tx, `DELETE FROM principals WHERE id = ?`, id); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, `DELETE FROM role_assignments WHERE principal_id = ?`, id)
		return err
	})
	if err != nil {
		return fmt.Errorf("delete principal %s: %w", id, err)
	}
	return nil
}

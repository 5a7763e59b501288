package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"tether.dev/tether/internal/access"
	"tether.dev/tether/internal/store"
)

// CreateClientSecret implements store.Store.
func (s *Store) CreateClientSecret(ctx context.Context, sec store.ClientSecret) error {
	if err := sec.Validate(); err != nil {
		return fmt.Errorf("create client secret: %w", err)
	}
	err := s.write(ctx, func(tx pgx.Tx) error {
		if err := wantType(ctx, tx, sec.PrincipalID, access.PrincipalServicePrincipal); err != nil {
			return err
		}
		err := insertOne(ctx, tx, `
			INSERT INTO client_secrets (id, principal_id, hash, description, created_at, expires_at)
			VALUES ($1, $2, $3, $4, $5, $6)
			ON CONFLICT DO NOTHING`,
			sec.ID, sec.PrincipalID, sec.Hash[:], sec.Description, dbTime(sec.CreatedAt), dbTime(sec.ExpiresAt))
		if isViolation(err, foreignKeyViolation) { // the principal was deleted meanwhile
			return fmt.Errorf("principal %s: %w", sec.PrincipalID, store.ErrNotFound)
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("create client secret %s: %w", sec.ID, err)
	}
	return nil
}

// ListClientSecrets implements store.Store. One query reads the principal
// and its secrets, so the answer is consistent.
func (s *Store) ListClientSecrets(ctx context.Context, principalID string) ([]store.ClientSecret, error) {
	if err := store.ValidateObjectID(principalID); err != nil {
		return nil, fmt.Errorf("list client secrets: %w", err)
	}
	var (
		found bool
		typ   string
		secs  []store.ClientSecret
	)
	err := s.read(ctx, func(q querier) error {
		rows, err := q.Query(ctx, `
			SELECT p.type, c.id, c.description, c.created_at, c.expires_at
			FROM principals p LEFT JOIN client_secrets c ON c.principal_id = p.id
			WHERE p.id = $1
			ORDER BY c.created_at, c.id`,
			principalID)
		if err != nil {
			return err
		}
		var (
			id, desc         pgtype.Text
			created, expires pgtype.Timestamptz
		)
		_, err = pgx.ForEachRow(rows, []any{&typ, &id, &desc, &created, &expires}, func() error {
			found = true
			if id.Valid {
				secs = append(secs, store.ClientSecret{
					ID:          id.String,
					PrincipalID: principalID,
					Description: desc.String,
					CreatedAt:   goTime(created),
					ExpiresAt:   goTime(expires),
				})
			}
			return nil
		})
		return err
	})
	switch {
	case err != nil:
		return nil, fmt.Errorf("list client secrets: %w", err)
	case !found:
		return nil, fmt.Errorf("list client secrets: principal %s: %w", principalID, store.ErrNotFound)
	case access.PrincipalType(typ) != access.PrincipalServicePrincipal:
		return nil, fmt.Errorf("list client secrets: principal %s is a %s, not a %s: %w",
			principalID, typ, access.PrincipalServicePrincipal, store.ErrInvalid)
	}
	return secs, nil
}

// DeleteClientSecret implements store.Store.
func (s *Store) DeleteClientSecret(ctx context.Context, principalID, secretID string) error {
	if err := store.ValidateObjectID(principalID); err != nil {
		return fmt.Errorf("delete client secret: %w", err)
	}
	if err := store.ValidateUUID(secretID); err != nil {
		return fmt.Errorf("delete client secret: %w", err)
	}
	err := s.read(ctx, func(q querier) error {
		return execOne(ctx, q, `DELETE FROM client_secrets WHERE id = $1 AND principal_id = $2`, secretID, principalID)
	})
	if err != nil {
		return fmt.Errorf("delete client secret %s of service principal %s: %w", secretID, principalID, err)
	}
	return nil
}

// FindClientSecrets implements store.Store. One query reads the principal
// and its secrets, so the answer is consistent.
func (s *Store) FindClientSecrets(ctx context.Context, clientID string, now time.Time) (store.Principal, []store.ClientSecret, error) {
	if err := store.ValidateUUID(clientID); err != nil {
		return store.Principal{}, nil, fmt.Errorf("find client secrets: client ID: %w", err)
	}
	if err := requireNow(now); err != nil {
		return store.Principal{}, nil, fmt.Errorf("find client secrets: %w", err)
	}
	var (
		sp   store.Principal
		secs []store.ClientSecret
	)
	err := s.read(ctx, func(q querier) error {
		rows, err := q.Query(ctx, `
			SELECT `+principalColumns+`, c.id, c.hash, c.description, c.created_at, c.expires_at
			FROM principals p LEFT JOIN client_secrets c ON c.principal_id = p.id AND c.expires_at > $2
			WHERE p.client_id = $1
			ORDER BY c.created_at, c.id`,
			clientID, dbTime(now))
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var (
				id, desc         pgtype.Text
				hash             []byte
				created, expires pgtype.Timestamptz
			)
			sp, err = scanPrincipal(rows, &id, &hash, &desc, &created, &expires)
			if err != nil {
				return err
			}
			if !id.Valid {
				continue
			}
			sec := store.ClientSecret{
				ID:          id.String,
				PrincipalID: sp.ID,
				Description: desc.String,
				CreatedAt:   goTime(created),
				ExpiresAt:   goTime(expires),
			}
			if copy(sec.Hash[:], hash) != len(sec.Hash) {
				return fmt.Errorf("secret %s: stored hash has %d bytes", sec.ID, len(hash))
			}
			secs = append(secs, sec)
		}
		return rows.Err()
	})
	if err != nil {
		return store.Principal{}, nil, fmt.Errorf("find client secrets: %w", err)
	}
	if sp.ID == "" {
		return store.Principal{}, nil, fmt.Errorf("find client secrets: client ID %s: %w", clientID, store.ErrNotFound)
	}
	return sp, secs, nil
}

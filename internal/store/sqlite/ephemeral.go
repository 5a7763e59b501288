package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"tether.dev/tether/internal/store"
)

// ephemeralColumns are the columns scanEphemeral reads, in its order.
const ephemeralColumns = `kind, key, value, version, expires_at`

// scanEphemeral reads one row of ephemeralColumns.
func scanEphemeral(row interface{ Scan(...any) error }) (store.Ephemeral, error) {
	var (
		e       store.Ephemeral
		expires sql.NullInt64
	)
	if err := row.Scan(&e.Kind, &e.Key, &e.Value, &e.Version, &expires); err != nil {
		return store.Ephemeral{}, err
	}
	e.ExpiresAt = goTime(expires)
	return e, nil
}

// PutEphemeral implements store.Store. The upsert replaces only an expired
// record, so of concurrent puts the first to commit wins.
func (s *Store) PutEphemeral(ctx context.Context, e store.Ephemeral, now time.Time) error {
	if err := e.Validate(); err != nil {
		return fmt.Errorf("put ephemeral record: %w", err)
	}
	if err := requireNow(now); err != nil {
		return fmt.Errorf("put ephemeral record %s/%s: %w", e.Kind, e.Key, err)
	}
	err := s.write(ctx, func(tx *sql.Tx) error {
		return insertOne(ctx, tx, `
			INSERT INTO ephemeral (kind, key, value, version, expires_at)
			VALUES (?, ?, ?, 1, ?)
			ON CONFLICT (kind, key) DO UPDATE
				SET value = excluded.value, version = 1, expires_at = excluded.expires_at
				WHERE ephemeral.expires_at <= ?`,
			e.Kind, e.Key, blob(e.Value), dbTime(e.ExpiresAt), dbTime(now))
	})
	if err != nil {
		return fmt.Errorf("put ephemeral record %s/%s: %w", e.Kind, e.Key, err)
	}
	return nil
}

// GetEphemeral implements store.Store.
func (s *Store) GetEphemeral(ctx context.Context, kind, key string, now time.Time) (store.Ephemeral, error) {
	if err := validateEphemeralKey(kind, key); err != nil {
		return store.Ephemeral{}, fmt.Errorf("get ephemeral record: %w", err)
	}
	if err := requireNow(now); err != nil {
		return store.Ephemeral{}, fmt.Errorf("get ephemeral record %s/%s: %w", kind, key, err)
	}
	e, err := scanEphemeral(s.db.QueryRowContext(ctx, `
		SELECT `+ephemeralColumns+` FROM ephemeral
		WHERE kind = ? AND key = ? AND expires_at > ?`,
		kind, key, dbTime(now)))
	if errors.Is(err, sql.ErrNoRows) {
		err = store.ErrNotFound
	}
	if err != nil {
		return store.Ephemeral{}, fmt.Errorf("get ephemeral record %s/%s: %w", kind, key, err)
	}
	return e, nil
}

// UpdateEphemeral implements store.Store.
func (s *Store) UpdateEphemeral(ctx context.Context, e store.Ephemeral, now time.Time) (store.Ephemeral, error) {
	if err := e.Validate(); err != nil {
		return store.Ephemeral{}, fmt.Errorf("update ephemeral record: %w", err)
	}
	if err := requireNow(now); err != nil {
		return store.Ephemeral{}, fmt.Errorf("update ephemeral record %s/%s: %w", e.Kind, e.Key, err)
	}
	at := dbTime(now)
	var updated store.Ephemeral
	err := s.write(ctx, func(tx *sql.Tx) error {
		var err error
		updated, err = scanEphemeral(tx.QueryRowContext(ctx, `
			UPDATE ephemeral SET value = ?, expires_at = ?, version = version + 1
			WHERE kind = ? AND key = ? AND expires_at > ? AND version = ?
			RETURNING `+ephemeralColumns,
			blob(e.Value), dbTime(e.ExpiresAt), e.Kind, e.Key, at, e.Version))
		if !errors.Is(err, sql.ErrNoRows) {
			return err
		}
		// Nothing matched: is the record gone, or changed since e was read?
		var version int64
		err = tx.QueryRowContext(ctx, `
			SELECT version FROM ephemeral WHERE kind = ? AND key = ? AND expires_at > ?`,
			e.Kind, e.Key, at).Scan(&version)
		switch {
		case errors.Is(err, sql.ErrNoRows):
			return store.ErrNotFound
		case err != nil:
			return err
		}
		return fmt.Errorf("version is %d, not %d: %w", version, e.Version, store.ErrConflict)
	})
	if err != nil {
		return store.Ephemeral{}, fmt.Errorf("update ephemeral record %s/%s: %w", e.Kind, e.Key, err)
	}
	return updated, nil
}

// TakeEphemeral implements store.Store. Deleting claims the record, so at
// most one caller gets it.
func (s *Store) TakeEphemeral(ctx context.Context, kind, key string, now time.Time) (store.Ephemeral, error) {
	if err := validateEphemeralKey(kind, key); err != nil {
		return store.Ephemeral{}, fmt.Errorf("take ephemeral record: %w", err)
	}
	if err := requireNow(now); err != nil {
		return store.Ephemeral{}, fmt.Errorf("take ephemeral record %s/%s: %w", kind, key, err)
	}
	var (
		taken store.Ephemeral
		found bool
	)
	err := s.write(ctx, func(tx *sql.Tx) error {
		var err error
		taken, err = scanEphemeral(tx.QueryRowContext(ctx, `
			DELETE FROM ephemeral WHERE kind = ? AND key = ?
			RETURNING `+ephemeralColumns,
			kind, key))
		if errors.Is(err, sql.ErrNoRows) {
			return nil
		}
		// An expired record is deleted all the same: commit, and report it
		// absent.
		found = err == nil && taken.ExpiresAt.After(now)
		return err
	})
	if err == nil && !found {
		err = store.ErrNotFound
	}
	if err != nil {
		return store.Ephemeral{}, fmt.Errorf("take ephemeral record %s/%s: %w", kind, key, err)
	}
	return taken, nil
}

// DeleteEphemeral implements store.Store.
func (s *Store) DeleteEphemeral(ctx context.Context, kind, key string) error {
	if err := validateEphemeralKey(kind, key); err != nil {
		return fmt.Errorf("delete ephemeral record: %w", err)
	}
	err := s.write(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `DELETE FROM ephemeral WHERE kind = ? AND key = ?`, kind, key)
		return err
	})
	if err != nil {
		return fmt.Errorf("delete ephemeral record %s/%s: %w", kind, key, err)
	}
	return nil
}

// CountEphemeral implements store.Store.
func (s *Store) CountEphemeral(ctx context.Context, kind string, now time.Time) (int, error) {
	if err := validateEphemeralKey(kind, "-"); err != nil {
		return 0, fmt.Errorf("count ephemeral records: %w", err)
	}
	if err := requireNow(now); err != nil {
		return 0, fmt.Errorf("count ephemeral records %s: %w", kind, err)
	}
	var n int
	err := s.db.QueryRowContext(ctx, `
		SELECT count(*) FROM ephemeral WHERE kind = ? AND expires_at > ?`,
		kind, dbTime(now)).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("count ephemeral records %s: %w", kind, err)
	}
	return n, nil
}

// PurgeEphemeral implements store.Store.
func (s *Store) PurgeEphemeral(ctx context.Context, now time.Time) (int, error) {
	if err := requireNow(now); err != nil {
		return 0, fmt.Errorf("purge ephemeral records: %w", err)
	}
	var n int64
	err := s.write(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM ephemeral WHERE expires_at <= ?`, dbTime(now))
		if err != nil {
			return err
		}
		n, err = res.RowsAffected()
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("purge ephemeral records: %w", err)
	}
	return int(n), nil
}

// validateEphemeralKey checks a kind and key as Ephemeral.Validate does.
func validateEphemeralKey(kind, key string) error {
	// The expiry only satisfies Validate's other check.
	return store.Ephemeral{Kind: kind, Key: key, ExpiresAt: time.Unix(0, 0)}.Validate()
}

// blob returns v for a BLOB NOT NULL column: the driver stores a nil slice
// as NULL.
func blob(v []byte) []byte {
	if v == nil {
		return []byte{}
	}
	return v
}

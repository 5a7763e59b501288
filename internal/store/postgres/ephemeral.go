package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"tether.dev/tether/internal/store"
)

// ephemeralColumns are the columns scanEphemeral reads, in its order.
const ephemeralColumns = `kind, key, value, version, expires_at`

// scanEphemeral reads one row of ephemeralColumns, then the columns extra
// points to.
func scanEphemeral(row pgx.Row, extra ...any) (store.Ephemeral, error) {
	var (
		e       store.Ephemeral
		expires pgtype.Timestamptz
	)
	dest := append([]any{&e.Kind, &e.Key, &e.Value, &e.Version, &expires}, extra...)
	if err := row.Scan(dest...); err != nil {
		return store.Ephemeral{}, err
	}
	e.ExpiresAt = goTime(expires)
	return e, nil
}

// blob returns v for a bytea NOT NULL column: pgx sends a nil slice as
// NULL.
func blob(v []byte) []byte {
	if v == nil {
		return []byte{}
	}
	return v
}

// PutEphemeral implements store.Store. The upsert replaces only an expired
// record. A concurrent put of the same kind and key waits for the row (or
// for the insertion in progress), then re-checks the condition on the
// committed record, which is unexpired: of concurrent puts exactly one
// writes.
func (s *Store) PutEphemeral(ctx context.Context, e store.Ephemeral, now time.Time) error {
	if err := e.Validate(); err != nil {
		return fmt.Errorf("put ephemeral record: %w", err)
	}
	if err := requireNow(now); err != nil {
		return fmt.Errorf("put ephemeral record %s/%s: %w", e.Kind, e.Key, err)
	}
	err := s.read(ctx, func(q querier) error {
		return insertOne(ctx, q, `
			INSERT INTO ephemeral (kind, key, value, version, expires_at)
			VALUES ($1, $2, $3, 1, $4)
			ON CONFLICT (kind, key) DO UPDATE
				SET value = excluded.value, version = 1, expires_at = excluded.expires_at
				WHERE ephemeral.expires_at <= $5`,
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
	var e store.Ephemeral
	err := s.read(ctx, func(q querier) error {
		var err error
		e, err = scanEphemeral(q.QueryRow(ctx, `
			SELECT `+ephemeralColumns+` FROM ephemeral
			WHERE kind = $1 AND key = $2 AND expires_at > $3`,
			kind, key, dbTime(now)))
		if errors.Is(err, pgx.ErrNoRows) {
			return store.ErrNotFound
		}
		return err
	})
	if err != nil {
		return store.Ephemeral{}, fmt.Errorf("get ephemeral record %s/%s: %w", kind, key, err)
	}
	return e, nil
}

// UpdateEphemeral implements store.Store. The UPDATE compares and swaps: a
// concurrent update of the record waits for the row, then re-checks the
// version on the committed record, which has moved on, so of concurrent
// updates from one version exactly one succeeds.
func (s *Store) UpdateEphemeral(ctx context.Context, e store.Ephemeral, now time.Time) (store.Ephemeral, error) {
	if err := e.Validate(); err != nil {
		return store.Ephemeral{}, fmt.Errorf("update ephemeral record: %w", err)
	}
	if err := requireNow(now); err != nil {
		return store.Ephemeral{}, fmt.Errorf("update ephemeral record %s/%s: %w", e.Kind, e.Key, err)
	}
	at := dbTime(now)
	var updated store.Ephemeral
	err := s.write(ctx, func(tx pgx.Tx) error {
		var err error
		updated, err = scanEphemeral(tx.QueryRow(ctx, `
			UPDATE ephemeral SET value = $3, expires_at = $4, version = version + 1
			WHERE kind = $1 AND key = $2 AND expires_at > $5 AND version = $6
			RETURNING `+ephemeralColumns,
			e.Kind, e.Key, blob(e.Value), dbTime(e.ExpiresAt), at, e.Version))
		if !errors.Is(err, pgx.ErrNoRows) {
			return err
		}
		// Nothing matched: is the record gone, or changed since e was read?
		var version int64
		err = tx.QueryRow(ctx, `
			SELECT version FROM ephemeral WHERE kind = $1 AND key = $2 AND expires_at > $3`,
			e.Kind, e.Key, at).Scan(&version)
		switch {
		case errors.Is(err, pgx.ErrNoRows):
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

// TakeEphemeral implements store.Store. Deleting claims the record: a
// concurrent take waits for the row and then finds it gone, so at most one
// caller gets it.
func (s *Store) TakeEphemeral(ctx context.Context, kind, key string, now time.Time) (store.Ephemeral, error) {
	if err := validateEphemeralKey(kind, key); err != nil {
		return store.Ephemeral{}, fmt.Errorf("take ephemeral record: %w", err)
	}
	if err := requireNow(now); err != nil {
		return store.Ephemeral{}, fmt.Errorf("take ephemeral record %s/%s: %w", kind, key, err)
	}
	var taken store.Ephemeral
	err := s.read(ctx, func(q querier) error {
		// An expired record is deleted all the same, and reported absent.
		var unexpired bool
		var err error
		taken, err = scanEphemeral(q.QueryRow(ctx, `
			DELETE FROM ephemeral WHERE kind = $1 AND key = $2
			RETURNING `+ephemeralColumns+`, expires_at > $3`,
			kind, key, dbTime(now)), &unexpired)
		if errors.Is(err, pgx.ErrNoRows) || err == nil && !unexpired {
			return store.ErrNotFound
		}
		return err
	})
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
	err := s.read(ctx, func(q querier) error {
		_, err := q.Exec(ctx, `DELETE FROM ephemeral WHERE kind = $1 AND key = $2`, kind, key)
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
	err := s.read(ctx, func(q querier) error {
		return q.QueryRow(ctx, `
			SELECT count(*) FROM ephemeral WHERE kind = $1 AND expires_at > $2`,
			kind, dbTime(now)).Scan(&n)
	})
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
	err := s.read(ctx, func(q querier) error {
		tag, err := q.Exec(ctx, `DELETE FROM ephemeral WHERE expires_at <= $1`, dbTime(now))
		n = tag.RowsAffected()
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

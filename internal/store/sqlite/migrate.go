package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"tether.dev/tether/internal/store/migration"
)

// migrate applies the migrations that the database lacks, in order, each in
// its own transaction with its record in schema_migrations. It fails if the
// database has a migration that ms lacks (written by a newer binary) or
// recorded under another name.
func (s *Store) migrate(ctx context.Context, ms []migration.Migration) error {
	err := s.write(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
			version    INTEGER NOT NULL PRIMARY KEY,
			name       TEXT    NOT NULL,
			applied_at INTEGER NOT NULL
		) STRICT`)
		return err
	})
	if err != nil {
		return fmt.Errorf("create schema_migrations: %w", err)
	}
	var newest int
	err = s.db.QueryRowContext(ctx, `SELECT COALESCE(MAX(version), 0) FROM schema_migrations`).Scan(&newest)
	if err != nil {
		return fmt.Errorf("read schema version: %w", err)
	}
	if newest > len(ms) {
		return fmt.Errorf("database schema version %d is newer than this binary's %d", newest, len(ms))
	}
	for _, m := range ms {
		if err := s.write(ctx, func(tx *sql.Tx) error { return applyMigration(ctx, tx, m) }); err != nil {
			return fmt.Errorf("migration %s: %w", m.Name, err)
		}
	}
	return nil
}

// applyMigration applies m in tx unless schema_migrations records it.
func applyMigration(ctx context.Context, tx *sql.Tx, m migration.Migration) error {
	var name string
	err := tx.QueryRowContext(ctx, `SELECT name FROM schema_migrations WHERE version = ?`, m.Version).Scan(&name)
	switch {
	case err == nil && name == m.Name:
		return nil
	case err == nil:
		return fmt.Errorf("database recorded version %d as %s", m.Version, name)
	case !errors.Is(err, sql.ErrNoRows):
		return err
	}
	if _, err := tx.ExecContext(ctx, m.SQL); err != nil {
		return err
	}
	// The wall clock only labels the record; nothing depends on it.
	_, err = tx.ExecContext(ctx, `INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)`,
		m.Version, m.Name, time.Now().UnixMicro())
	return err
}

package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"strconv"
	"strings"
	"time"
)

// A migration is one embedded SQL file, applied once, in a transaction.
type migration struct {
	version int    // from the file name's number, 1, 2, ...
	name    string // the file name, recorded with the version
	sql     string
}

// loadMigrations reads the migrations in fsys's top directory. Every entry
// must be a file named NNNN_words.sql, and the numbers must run 1, 2, ...
// without gaps or repeats.
func loadMigrations(fsys fs.FS) ([]migration, error) {
	entries, err := fs.ReadDir(fsys, ".")
	if err != nil {
		return nil, fmt.Errorf("read migrations: %w", err)
	}
	ms := make([]migration, 0, len(entries))
	for _, e := range entries {
		name := e.Name()
		prefix, _, _ := strings.Cut(name, "_")
		version, err := strconv.Atoi(prefix)
		if e.IsDir() || len(prefix) != 4 || err != nil || !strings.HasSuffix(name, ".sql") {
			return nil, fmt.Errorf("migration %s: want a file named NNNN_name.sql", name)
		}
		b, err := fs.ReadFile(fsys, name)
		if err != nil {
			return nil, fmt.Errorf("read migration: %w", err)
		}
		ms = append(ms, migration{version: version, name: name, sql: string(b)})
	}
	slices.SortFunc(ms, func(a, b migration) int { return a.version - b.version })
	for i, m := range ms {
		if m.version != i+1 {
			return nil, fmt.Errorf("migration %s: want number %04d", m.name, i+1)
		}
	}
	return ms, nil
}

// migrate applies the migrations that the database lacks, in order, each in
// its own transaction with its record in schema_migrations. It fails if the
// database has a migration that ms lacks (written by a newer binary) or
// recorded under another name.
func (s *Store) migrate(ctx context.Context, ms []migration) error {
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
			return fmt.Errorf("migration %s: %w", m.name, err)
		}
	}
	return nil
}

// applyMigration applies m in tx unless schema_migrations records it.
func applyMigration(ctx context.Context, tx *sql.Tx, m migration) error {
	var name string
	err := tx.QueryRowContext(ctx, `SELECT name FROM schema_migrations WHERE version = ?`, m.version).Scan(&name)
	switch {
	case err == nil && name == m.name:
		return nil
	case err == nil:
		return fmt.Errorf("database recorded version %d as %s", m.version, name)
	case !errors.Is(err, sql.ErrNoRows):
		return err
	}
	if _, err := tx.ExecContext(ctx, m.sql); err != nil {
		return err
	}
	// The wall clock only labels the record; nothing depends on it.
	_, err = tx.ExecContext(ctx, `INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)`,
		m.version, m.name, time.Now().UnixMicro())
	return err
}

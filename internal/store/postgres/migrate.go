package postgres

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"tether.dev/tether/internal/store/migration"
)

// migrationLock is the key of the session-level advisory lock under which
// Open migrates: replicas that open the database at once take turns, and
// each after the first finds the schema up to date. The key is "tether" in
// ASCII, then 1.
const migrationLock int64 = 0x74_65_74_68_65_72_00_01

// migrate applies the migrations that the database lacks, in order, each in
// its own transaction with its record in schema_migrations, on a
// connection of its own that holds migrationLock throughout. It fails if
// the database has a migration that ms lacks (written by a newer binary) or
// recorded under another name.
func migrate(ctx context.Context, cfg *pgx.ConnConfig, ms []migration.Migration) (err error) {
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return err
	}
	// Closing the session releases the lock, whatever happened.
	defer func() {
		closeCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), closeTimeout)
		defer cancel()
		err = errors.Join(err, conn.Close(closeCtx))
	}()

	if _, err := conn.Exec(ctx, `SELECT pg_advisory_lock($1)`, migrationLock); err != nil {
		return fmt.Errorf("take the migration lock: %w", err)
	}
	_, err = conn.Exec(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version    integer     NOT NULL PRIMARY KEY,
		name       text        NOT NULL,
		applied_at timestamptz NOT NULL DEFAULT now()
	)`)
	if err != nil {
		return fmt.Errorf("create schema_migrations: %w", err)
	}
	var newest int
	err = conn.QueryRow(ctx, `SELECT COALESCE(max(version), 0) FROM schema_migrations`).Scan(&newest)
	if err != nil {
		return fmt.Errorf("read schema version: %w", err)
	}
	if newest > len(ms) {
		return fmt.Errorf("database schema version %d is newer than this binary's %d: upgrade the binary", newest, len(ms))
	}
	for _, m := range ms {
		if err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error { return applyMigration(ctx, tx, m) }); err != nil {
			return fmt.Errorf("migration %s: %w", m.Name, err)
		}
	}
	return nil
}

// applyMigration applies m in tx unless schema_migrations records it.
func applyMigration(ctx context.Context, tx pgx.Tx, m migration.Migration) error {
	var name string
	err := tx.QueryRow(ctx, `SELECT name FROM schema_migrations WHERE version = $1`, m.Version).Scan(&name)
	switch {
	case err == nil && name == m.Name:
		return nil
	case err == nil:
		return fmt.Errorf("database recorded version %d as %s", m.Version, name)
	case !errors.Is(err, pgx.ErrNoRows):
		return err
	}
	// Without arguments, Exec uses the simple protocol, which runs a file
	// of several statements.
	if _, err := tx.Exec(ctx, m.SQL); err != nil {
		return err
	}
	_, err = tx.Exec(ctx, `INSERT INTO schema_migrations (version, name) VALUES ($1, $2)`, m.Version, m.Name)
	return err
}

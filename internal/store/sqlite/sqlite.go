// Package sqlite implements store.Store on SQLite, through the pure-Go
// driver modernc.org/sqlite: the hub's embedded default, for one replica.
//
// The database is one file (with its -wal and -shm companions) in WAL mode,
// with foreign keys enforced and a busy timeout for writers through other
// handles (another Store or process). Open creates it with mode 0600 (its
// missing parent directories 0700) and applies the embedded migrations that
// it lacks. Within a Store, write transactions run one at a time; reads run
// concurrently beside them.
//
// Store implements store.Watcher within its process: a watch sees the
// changes made through the same Store, not those of other handles on the
// file.
//
// Times are stored as INTEGER microseconds since the Unix epoch (UTC), NULL
// for the zero time.
package sqlite

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"time"

	_ "modernc.org/sqlite" // registers the "sqlite" database/sql driver

	"tether.dev/tether/internal/store"
	"tether.dev/tether/internal/store/migration"
)

const (
	// busyTimeout is how long a write waits for a writer in another process.
	busyTimeout = 10 * time.Second
	// maxOpenConns bounds the pool: readers run concurrently in WAL mode,
	// and each connection holds its own page cache.
	maxOpenConns = 8
)

//go:embed migrations/*.sql
var embeddedMigrations embed.FS

// Store is a store.Store backed by a SQLite database file.
type Store struct {
	db *sql.DB
	// writeSlot admits one write transaction at a time; capacity one, held
	// while the transaction runs. SQLite has a single writer anyway: waiting
	// here is prompt and honours ctx, where its busy handler sleeps and
	// retries.
	writeSlot chan struct{}

	// closed is closed by the first Close; it ends the watches.
	closed    chan struct{}
	closeOnce sync.Once
	// mu guards watchers, the subscribers of WatchClusters.
	mu       sync.Mutex
	watchers map[*watcher]struct{}
}

var (
	_ store.Store   = (*Store)(nil)
	_ store.Watcher = (*Store)(nil)
)

// Open opens the database at path, creating it (mode 0600, missing parent
// directories 0700) if it does not exist, and applies the migrations it
// lacks. Opening an up-to-date database changes nothing. It fails if the
// database was migrated by a newer binary.
func Open(ctx context.Context, path string) (*Store, error) {
	migrations, err := fs.Sub(embeddedMigrations, "migrations")
	if err != nil {
		return nil, fmt.Errorf("open sqlite store: %w", err)
	}
	return open(ctx, path, migrations)
}

// open is Open with the migrations taken from fsys, whose top directory
// holds files named like 0001_init.sql.
func open(ctx context.Context, path string, fsys fs.FS) (*Store, error) {
	ms, err := migration.Load(fsys)
	if err != nil {
		return nil, fmt.Errorf("open sqlite store: %w", err)
	}
	if path == "" {
		return nil, errors.New("open sqlite store: empty path")
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("open sqlite store: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(abs), 0o700); err != nil {
		return nil, fmt.Errorf("open sqlite store: %w", err)
	}
	// SQLite would create the file with the umask's mode; create it first so
	// it is 0600. SQLite gives the -wal and -shm files the same mode.
	f, err := os.OpenFile(abs, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open sqlite store: %w", err)
	}
	if err := f.Close(); err != nil {
		return nil, fmt.Errorf("open sqlite store: %w", err)
	}

	db, err := sql.Open("sqlite", dsn(abs))
	if err != nil {
		return nil, fmt.Errorf("open sqlite store %s: %w", abs, err)
	}
	db.SetMaxOpenConns(maxOpenConns)
	db.SetMaxIdleConns(maxOpenConns)
	s := &Store{
		db:        db,
		writeSlot: make(chan struct{}, 1),
		closed:    make(chan struct{}),
		watchers:  make(map[*watcher]struct{}),
	}
	if err := s.init(ctx, ms); err != nil {
		return nil, errors.Join(fmt.Errorf("open sqlite store %s: %w", abs, err), db.Close())
	}
	return s, nil
}

// init checks the connection settings and migrates the schema.
func (s *Store) init(ctx context.Context, ms []migration.Migration) error {
	if err := s.checkPragmas(ctx); err != nil {
		return err
	}
	return s.migrate(ctx, ms)
}

// dsn returns the driver's data source name for the database file at the
// absolute path abs. Every pooled connection runs its pragmas; _txlock makes
// every transaction BEGIN IMMEDIATE, so a transaction takes the write lock
// (waiting up to the busy timeout) before it reads.
func dsn(abs string) string {
	q := url.Values{}
	q.Add("_pragma", fmt.Sprintf("busy_timeout(%d)", busyTimeout.Milliseconds()))
	q.Add("_pragma", "journal_mode(WAL)")
	q.Add("_pragma", "foreign_keys(1)")
	q.Set("_txlock", "immediate")
	u := url.URL{Scheme: "file", Path: abs, RawQuery: q.Encode()}
	return u.String()
}

// checkPragmas verifies that the connection settings took effect.
func (s *Store) checkPragmas(ctx context.Context) error {
	var mode string
	if err := s.db.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode); err != nil {
		return fmt.Errorf("read journal mode: %w", err)
	}
	if mode != "wal" {
		return fmt.Errorf("journal mode is %q, want wal", mode)
	}
	var fk int
	if err := s.db.QueryRowContext(ctx, "PRAGMA foreign_keys").Scan(&fk); err != nil {
		return fmt.Errorf("read foreign keys setting: %w", err)
	}
	if fk != 1 {
		return errors.New("foreign keys are not enforced")
	}
	var busy int64
	if err := s.db.QueryRowContext(ctx, "PRAGMA busy_timeout").Scan(&busy); err != nil {
		return fmt.Errorf("read busy timeout: %w", err)
	}
	if busy != busyTimeout.Milliseconds() {
		return fmt.Errorf("busy timeout is %d ms, want %d", busy, busyTimeout.Milliseconds())
	}
	return nil
}

// Close ends the watches and closes the database. It is idempotent.
func (s *Store) Close() error {
	s.closeOnce.Do(func() { close(s.closed) })
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("close sqlite store: %w", err)
	}
	return nil
}

// write runs fn in a write transaction, one at a time, and commits if fn
// returns nil.
func (s *Store) write(ctx context.Context, fn func(tx *sql.Tx) error) error {
	return s.writeChanged(ctx, func(tx *sql.Tx) ([]string, error) { return nil, fn(tx) })
}

// writeChanged is write for a change that the watches see: fn returns the
// IDs of the clusters it changed (see store.Watcher), and once the
// transaction has committed they go to every watch, before the next write
// transaction begins, so that watches see changes in commit order.
func (s *Store) writeChanged(ctx context.Context, fn func(tx *sql.Tx) ([]string, error)) error {
	select {
	case s.writeSlot <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-s.writeSlot }()

	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	changed, err := fn(tx)
	if err != nil {
		_ = tx.Rollback() // fn's error is the one that matters
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	s.publish(changed)
	return nil
}

// dbTime converts t for storage: microseconds since the epoch, or NULL for
// the zero time.
func dbTime(t time.Time) sql.NullInt64 {
	if t.IsZero() {
		return sql.NullInt64{}
	}
	return sql.NullInt64{Int64: t.UnixMicro(), Valid: true}
}

// goTime is the inverse of dbTime; it returns UTC times.
func goTime(n sql.NullInt64) time.Time {
	if !n.Valid {
		return time.Time{}
	}
	return time.UnixMicro(n.Int64).UTC()
}

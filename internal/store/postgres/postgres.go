// Package postgres implements store.Store on PostgreSQL, through pgx: the
// store that several hub replicas share.
//
//	hub replica ──pool (≤ pool_max_conns)──┐
//	hub replica ──pool──────────────────────┼──► PostgreSQL
//	   └─ WatchClusters: one connection ────┘    LISTEN tether_clusters
//
// Open connects with a pool and applies the embedded migrations that the
// database lacks, under a session-level advisory lock, so that replicas
// starting together migrate once. Every method runs at READ COMMITTED; the
// guarantees that the Store interface documents under concurrency come from
// conditional statements (INSERT ... ON CONFLICT, UPDATE ... WHERE) that
// the server serializes on the row, and, for AddMember's cycle check and
// AppendAudit's chain, from transaction-level advisory locks that
// serialize membership additions and audit appends.
//
// Store implements store.Watcher across processes: a trigger on clusters
// sends NOTIFY tether_clusters with the cluster's ID when its tunnel holder
// or agent key is written, or when it is deleted; the server delivers the
// notifications when the transaction commits, in commit order.
//
// Connection failures (the server down, restarting or unreachable) wrap
// store.ErrUnavailable. The text columns that identify, compare or sort
// use the "C" collation, so they compare byte-wise, as Go does, whatever
// the database's default. Times are timestamptz, which keeps microseconds;
// NULL is the zero time.
package postgres

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"

	"tether.dev/tether/internal/store"
	"tether.dev/tether/internal/store/migration"
)

const (
	// connectTimeout bounds each connection attempt, unless the DSN sets
	// connect_timeout: with the server down, calls fail this fast at worst.
	connectTimeout = 5 * time.Second
	// defaultMaxConns is the pool size unless the DSN sets pool_max_conns:
	// room for a replica's concurrent requests, small enough that several
	// replicas stay well under the server's max_connections (100 by
	// default).
	defaultMaxConns = 10
	// keepAliveIdle, keepAliveInterval and keepAliveCount make the kernel
	// probe idle TCP connections, so that a watch whose server vanished
	// without closing them learns it in about half a minute.
	keepAliveIdle     = 15 * time.Second
	keepAliveInterval = 5 * time.Second
	keepAliveCount    = 3
	// closeTimeout bounds the goodbye on a connection that is closed.
	closeTimeout = 5 * time.Second
)

//go:embed migrations/*.sql
var embeddedMigrations embed.FS

// errClosed is what calls return once the store is closed.
var errClosed = errors.New("store is closed")

// Store is a store.Store backed by a PostgreSQL database.
type Store struct {
	pool *pgxpool.Pool
	// connConfig configures the connections outside the pool: the watches'.
	connConfig *pgx.ConnConfig

	// done is closed by the first Close; it ends the watches.
	done chan struct{}

	mu sync.Mutex // guards closed and the Add calls of watches
	// closed is set by the first Close; no watch starts after.
	closed bool
	// watches counts the running WatchClusters calls; Close waits for
	// them.
	watches sync.WaitGroup
}

var (
	_ store.Store   = (*Store)(nil)
	_ store.Watcher = (*Store)(nil)
)

// Open connects to the database that dsn names (a postgres:// URL or
// key=value pairs, as libpq takes them; pool_max_conns sets the pool size,
// 10 by default) and applies the migrations it lacks. Opening an up-to-date
// database changes nothing. It fails if the database was migrated by a
// newer binary. An error that wraps store.ErrUnavailable says the server
// could not be reached.
func Open(ctx context.Context, dsn string) (*Store, error) {
	migrations, err := fs.Sub(embeddedMigrations, "migrations")
	if err != nil {
		return nil, fmt.Errorf("open postgres store: %w", err)
	}
	return open(ctx, dsn, migrations)
}

// open is Open with the migrations taken from fsys, whose top directory
// holds files named like 0001_init.sql.
func open(ctx context.Context, dsn string, fsys fs.FS) (*Store, error) {
	ms, err := migration.Load(fsys)
	if err != nil {
		return nil, fmt.Errorf("open postgres store: %w", err)
	}
	cfg, err := poolConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("open postgres store: %w", err)
	}
	where := fmt.Sprintf("database %s on %s", cfg.ConnConfig.Database, cfg.ConnConfig.Host)
	if err := migrate(ctx, cfg.ConnConfig.Copy(), ms); err != nil {
		if connectionFailed(ctx, err) {
			err = fmt.Errorf("%w: %w", store.ErrUnavailable, err)
		}
		return nil, fmt.Errorf("open postgres store %s: %w", where, err)
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("open postgres store %s: %w", where, err)
	}
	return &Store{pool: pool, connConfig: cfg.ConnConfig.Copy(), done: make(chan struct{})}, nil
}

// poolConfig parses dsn and sets the defaults it leaves open.
func poolConfig(dsn string) (*pgxpool.Config, error) {
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		// The error quotes the DSN, password masked.
		return nil, err
	}
	if !strings.Contains(dsn, "pool_max_conns") {
		cfg.MaxConns = defaultMaxConns
	}
	cc := cfg.ConnConfig
	if cc.ConnectTimeout <= 0 {
		cc.ConnectTimeout = connectTimeout
	}
	dialer := &net.Dialer{
		Timeout: cc.ConnectTimeout,
		KeepAliveConfig: net.KeepAliveConfig{
			Enable:   true,
			Idle:     keepAliveIdle,
			Interval: keepAliveInterval,
			Count:    keepAliveCount,
		},
	}
	cc.DialFunc = dialer.DialContext
	// The methods' guarantees under concurrency are READ COMMITTED's,
	// whatever the server's default.
	cc.RuntimeParams["default_transaction_isolation"] = "read committed"
	return cfg, nil
}

// Close ends the watches, waits for them to return, and closes the pool.
// It is idempotent. It must not be called from a watch's callback.
func (s *Store) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	close(s.done)
	s.mu.Unlock()
	s.watches.Wait()
	s.pool.Close()
	return nil
}

// querier is what the methods query through: the pool, or a transaction.
type querier interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// read runs fn with the pool, for reads and single statements (which are
// their own transactions).
func (s *Store) read(ctx context.Context, fn func(q querier) error) error {
	return s.check(ctx, fn(s.pool))
}

// write runs fn in a transaction and commits if fn returns nil.
func (s *Store) write(ctx context.Context, fn func(tx pgx.Tx) error) error {
	return s.check(ctx, pgx.BeginFunc(ctx, s.pool, fn))
}

// check passes err on, wrapping store.ErrUnavailable if it is a failure of
// the connection rather than of the statement. Unless the call merely ran
// out of time, it also empties the pool: its other connections most likely
// failed too (the server went away), and the next calls should not try
// them first.
func (s *Store) check(ctx context.Context, err error) error {
	switch {
	case err == nil:
		return nil
	case s.isClosed():
		return fmt.Errorf("%w: %w", errClosed, err)
	case !connectionFailed(ctx, err):
		return err
	}
	if ctx.Err() == nil {
		s.pool.Reset()
	}
	return fmt.Errorf("%w: %w", store.ErrUnavailable, err)
}

// isClosed reports whether Close was called.
func (s *Store) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// connectionFailed reports whether err is a failure to reach the server
// (see isUnavailable) rather than the caller giving up.
func connectionFailed(ctx context.Context, err error) bool {
	if errors.Is(err, store.ErrUnavailable) {
		return false // wrapped already
	}
	if errors.Is(err, context.Canceled) && ctx.Err() != nil {
		return false // the caller gave up; the server said nothing
	}
	return isUnavailable(err)
}

// isUnavailable reports whether err is a failure to reach the server.
func isUnavailable(err error) bool {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		// The server's answer, during connect or later.
		switch {
		case strings.HasPrefix(pgErr.Code, "08"): // connection_exception
			return true
		case pgErr.Code == "57P01", // admin_shutdown
			pgErr.Code == "57P02", // crash_shutdown
			pgErr.Code == "57P03", // cannot_connect_now: starting up, shutting down
			pgErr.Code == "53300": // too_many_connections
			return true
		}
		return false // a statement error, or refused credentials
	}
	var connectErr *pgconn.ConnectError
	var netErr net.Error
	switch {
	case errors.As(err, &connectErr),
		pgconn.Timeout(err),
		errors.Is(err, pgconn.ErrConnClosed),
		errors.As(err, &netErr),
		errors.Is(err, io.EOF),
		errors.Is(err, io.ErrUnexpectedEOF),
		errors.Is(err, syscall.ECONNREFUSED),
		errors.Is(err, syscall.ECONNRESET),
		errors.Is(err, syscall.EPIPE):
		return true
	}
	return false
}

// dbTime converts t for storage: a timestamptz of whole microseconds, or
// NULL for the zero time.
func dbTime(t time.Time) pgtype.Timestamptz {
	if t.IsZero() {
		return pgtype.Timestamptz{}
	}
	return pgtype.Timestamptz{Time: t.Truncate(time.Microsecond), Valid: true}
}

// goTime is the inverse of dbTime; it returns UTC times.
func goTime(t pgtype.Timestamptz) time.Time {
	if !t.Valid {
		return time.Time{}
	}
	return t.Time.UTC()
}

// requireNow checks the caller's clock reading that a method compares
// expiries with.
func requireNow(now time.Time) error {
	if now.IsZero() {
		return fmt.Errorf("time is required: %w", store.ErrInvalid)
	}
	return nil
}

// execOne runs a statement that must touch a row, else it returns
// store.ErrNotFound.
func execOne(ctx context.Context, q querier, query string, args ...any) error {
	tag, err := q.Exec(ctx, query, args...)
	if err != nil {
		return err
	}
	if tag.RowsAffected() == 0 {
		return store.ErrNotFound
	}
	return nil
}

// insertOne runs an INSERT ... ON CONFLICT DO NOTHING that must insert a
// row, else it returns store.ErrConflict.
func insertOne(ctx context.Context, q querier, query string, args ...any) error {
	err := execOne(ctx, q, query, args...)
	if errors.Is(err, store.ErrNotFound) {
		return store.ErrConflict
	}
	return err
}

// collect reads rows with scan, and closes them. It returns nil when there
// are none.
func collect[T any](rows pgx.Rows, scan func(row pgx.Row) (T, error)) ([]T, error) {
	ts, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (T, error) { return scan(row) })
	if err != nil || len(ts) == 0 {
		return nil, err
	}
	return ts, nil
}

// queryStrings runs a query whose rows are one string each, and returns
// them in its order; nil when there are none.
func queryStrings(ctx context.Context, q querier, query string, args ...any) ([]string, error) {
	rows, err := q.Query(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	return collect(rows, func(row pgx.Row) (string, error) {
		var s string
		err := row.Scan(&s)
		return s, err
	})
}

// isViolation reports whether err is the server's report of a violated
// constraint of the given SQLSTATE, such as foreignKeyViolation.
func isViolation(err error, code string) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == code
}

// SQLSTATEs of constraint violations that methods map to store errors.
const (
	foreignKeyViolation = "23503"
	uniqueViolation     = "23505"
)

package pgserver_test

import (
	"context"
	"errors"
	"os"
	"os/user"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"go.uber.org/goleak"

	"tether.dev/tether/test/pgserver"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// connect connects to dsn; the connection is closed when the test ends.
func connect(t *testing.T, dsn string) *pgx.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatalf("connect to %s: %v", dsn, err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

// queryString returns the one text value that query selects.
func queryString(t *testing.T, conn *pgx.Conn, query string) string {
	t.Helper()
	var s string
	if err := conn.QueryRow(t.Context(), query).Scan(&s); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return s
}

func TestServer(t *testing.T) {
	s := pgserver.Start(t)

	// Each database is new and empty, and is the one its DSN names.
	a, b := s.NewDatabase(t), s.NewDatabase(t)
	if a == b {
		t.Fatalf("NewDatabase returned %s twice", a)
	}
	connA := connect(t, a)
	if _, err := connA.Exec(t.Context(), `CREATE TABLE kept (v text); INSERT INTO kept VALUES ('before')`); err != nil {
		t.Fatalf("write: %v", err)
	}
	connB := connect(t, b)
	if got := queryString(t, connB, `SELECT count(*)::text FROM pg_tables WHERE schemaname = 'public'`); got != "0" {
		t.Errorf("the second database has %s tables, want 0", got)
	}
	if got, want := queryString(t, connB, `SELECT current_database()`), b[strings.LastIndex(b, "/")+1:strings.Index(b, "?")]; got != want {
		t.Errorf("current_database() = %q, want %q", got, want)
	}
	// Byte-wise defaults, so that tests see what production's COLLATE "C"
	// columns do, and UTF-8.
	if got := queryString(t, connB, `SELECT datcollate || ' ' || pg_encoding_to_char(encoding) FROM pg_database WHERE datname = current_database()`); got != "C UTF8" {
		t.Errorf("collation and encoding = %q, want %q", got, "C UTF8")
	}
	if got := queryString(t, connB, `SELECT current_setting('fsync')`); got != "off" {
		t.Errorf("fsync = %s, want off", got)
	}

	// Stopped, the server refuses connections; restarted, it has its data
	// on the same address.
	s.Stop(t)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if conn, err := pgx.Connect(ctx, a); err == nil {
		conn.Close(ctx)
		t.Fatal("connected to a stopped server")
	}
	if err := connA.Ping(ctx); err == nil {
		t.Error("a connection survived the fast shutdown")
	}
	s.Stop(t) // stopping again does nothing
	s.Restart(t)
	if got := queryString(t, connect(t, a), `SELECT v FROM kept`); got != "before" {
		t.Errorf("after restart, kept = %q, want %q", got, "before")
	}
	s.Restart(t) // restarting a running server stops it first
	if got := queryString(t, connect(t, a), `SELECT v FROM kept`); got != "before" {
		t.Errorf("after the second restart, kept = %q, want %q", got, "before")
	}
}

// TestRunsAsPostgres checks that under root, which postgres refuses, the
// server runs as the postgres user, and otherwise as the current user.
func TestRunsAsPostgres(t *testing.T) {
	s := pgserver.Start(t)
	conn := connect(t, s.DSN("postgres"))
	want := os.Geteuid()
	if want == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			t.Fatal(err)
		}
		if want, err = strconv.Atoi(u.Uid); err != nil {
			t.Fatal(err)
		}
	}
	// The backend serving conn, and the data directory.
	for _, path := range []string{
		"/proc/" + queryString(t, conn, `SELECT pg_backend_pid()::text`),
		queryString(t, conn, `SELECT current_setting('data_directory')`),
	} {
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if got := int(fi.Sys().(*syscall.Stat_t).Uid); got != want {
			t.Errorf("%s is owned by uid %d, want %d", path, got, want)
		}
	}
}

func TestClose(t *testing.T) {
	s, err := pgserver.Launch(t.Context())
	if err != nil {
		t.Fatalf("Launch: %v", err)
	}
	dsn := s.DSN("postgres")
	conn := connect(t, dsn)
	dir := queryString(t, conn, `SELECT current_setting('data_directory')`)
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("data directory after Close: %v, want it gone", err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if conn, err := pgx.Connect(ctx, dsn); err == nil {
		conn.Close(ctx)
		t.Error("connected to a closed server")
	}
}

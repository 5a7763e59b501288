package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"io/fs"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"testing/fstest"

	"github.com/google/go-cmp/cmp"
)

// appliedMigration is a row of schema_migrations.
type appliedMigration struct {
	Version   int
	Name      string
	AppliedAt int64
}

func appliedMigrations(t *testing.T, s *Store) []appliedMigration {
	t.Helper()
	rows, err := s.db.QueryContext(t.Context(), `SELECT version, name, applied_at FROM schema_migrations ORDER BY version`)
	if err != nil {
		t.Fatalf("query schema_migrations: %v", err)
	}
	defer rows.Close()
	var ms []appliedMigration
	for rows.Next() {
		var m appliedMigration
		if err := rows.Scan(&m.Version, &m.Name, &m.AppliedAt); err != nil {
			t.Fatalf("scan schema_migrations: %v", err)
		}
		ms = append(ms, m)
	}
	if err := rows.Err(); err != nil {
		t.Fatalf("query schema_migrations: %v", err)
	}
	return ms
}

// tableExists reports whether the database has the table.
func tableExists(t *testing.T, s *Store, name string) bool {
	t.Helper()
	var n int
	err := s.db.QueryRowContext(t.Context(), `SELECT count(*) FROM sqlite_schema WHERE type = 'table' AND name = ?`, name).Scan(&n)
	if err != nil {
		t.Fatalf("query sqlite_schema: %v", err)
	}
	return n == 1
}

func TestMigrationsApplyOnce(t *testing.T) {
	path := filepath.Join(t.TempDir(), "hub.db")
	s, err := Open(t.Context(), path)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	first := appliedMigrations(t, s)
	sub, err := fs.Sub(embeddedMigrations, "migrations")
	if err != nil {
		t.Fatal(err)
	}
	embedded, err := loadMigrations(sub)
	if err != nil {
		t.Fatalf("loadMigrations: %v", err)
	}
	var names []string
	for _, m := range first {
		names = append(names, m.Name)
	}
	var wantNames []string
	for _, m := range embedded {
		wantNames = append(wantNames, m.name)
	}
	if diff := cmp.Diff(wantNames, names); diff != "" {
		t.Errorf("applied migrations (-want +got):\n%s", diff)
	}
	if !tableExists(t, s, "clusters") || !tableExists(t, s, "join_tokens") {
		t.Errorf("tables missing after Open")
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}

	s, err = Open(t.Context(), path)
	if err != nil {
		t.Fatalf("second Open: %v", err)
	}
	defer s.Close()
	if diff := cmp.Diff(first, appliedMigrations(t, s)); diff != "" {
		t.Errorf("second Open changed schema_migrations (-want +got):\n%s", diff)
	}
}

func TestMigrateInOrderEachInATransaction(t *testing.T) {
	path := filepath.Join(t.TempDir(), "hub.db")
	// Applied in order: the third and the last need earlier tables.
	good := fstest.MapFS{}
	for i, sql := range []string{
		"CREATE TABLE t1 (x INTEGER);",
		"CREATE TABLE t2 (x INTEGER); CREATE INDEX t2_x ON t2 (x);",
		"ALTER TABLE t1 ADD COLUMN y TEXT;",
		"CREATE TABLE t4 (x INTEGER);",
		"CREATE TABLE t5 (x INTEGER);",
		"CREATE TABLE t6 (x INTEGER);",
		"CREATE TABLE t7 (x INTEGER);",
		"CREATE TABLE t8 (x INTEGER);",
		"CREATE TABLE t9 (x INTEGER);",
		"INSERT INTO t9 (x) VALUES (1);",
	} {
		good[fmt.Sprintf("%04d_step.sql", i+1)] = &fstest.MapFile{Data: []byte(sql)}
	}
	s, err := open(t.Context(), path, good)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	if n := len(appliedMigrations(t, s)); n != 10 {
		t.Errorf("%d migrations applied, want 10", n)
	}
	s.Close()

	// A failing migration leaves no trace, and those before it stay.
	bad := fstest.MapFS{}
	for name, f := range good {
		bad[name] = f
	}
	bad["0011_bad.sql"] = &fstest.MapFile{Data: []byte("CREATE TABLE t11 (x INTEGER); INSERT INTO missing VALUES (1);")}
	if s, err := open(t.Context(), path, bad); err == nil {
		s.Close()
		t.Fatal("open with a failing migration succeeded")
	}

	s, err = open(t.Context(), path, good)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	defer s.Close()
	if n := len(appliedMigrations(t, s)); n != 10 {
		t.Errorf("%d migrations recorded after the failure, want 10", n)
	}
	if tableExists(t, s, "t11") {
		t.Error("the failed migration's table exists")
	}
}

func TestOpenRefusesForeignSchema(t *testing.T) {
	tests := []struct {
		name   string
		before fstest.MapFS
		after  fstest.MapFS
		want   string
	}{
		{
			name:   "newer schema",
			before: fstest.MapFS{"0001_a.sql": {Data: []byte("SELECT 1;")}, "0002_b.sql": {Data: []byte("SELECT 1;")}},
			after:  fstest.MapFS{"0001_a.sql": {Data: []byte("SELECT 1;")}},
			want:   "newer",
		},
		{
			name:   "renamed migration",
			before: fstest.MapFS{"0001_a.sql": {Data: []byte("SELECT 1;")}},
			after:  fstest.MapFS{"0001_b.sql": {Data: []byte("SELECT 1;")}},
			want:   "recorded version 1 as 0001_a.sql",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "hub.db")
			s, err := open(t.Context(), path, tt.before)
			if err != nil {
				t.Fatalf("open: %v", err)
			}
			s.Close()
			s, err = open(t.Context(), path, tt.after)
			if err == nil {
				s.Close()
				t.Fatal("open succeeded, want an error")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("open error = %v, want it to mention %q", err, tt.want)
			}
		})
	}
}

func TestLoadMigrationsErrors(t *testing.T) {
	sql := &fstest.MapFile{Data: []byte("SELECT 1;")}
	tests := []struct {
		name string
		fsys fstest.MapFS
	}{
		{"gap", fstest.MapFS{"0001_a.sql": sql, "0003_c.sql": sql}},
		{"repeat", fstest.MapFS{"0001_a.sql": sql, "0001_b.sql": sql}},
		{"starts at zero", fstest.MapFS{"0000_a.sql": sql}},
		{"short number", fstest.MapFS{"1_a.sql": sql}},
		{"no name", fstest.MapFS{"0001.sql": sql}},
		{"not sql", fstest.MapFS{"0001_a.txt": sql}},
		{"directory", fstest.MapFS{"0001_a.sql/x": sql}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if ms, err := loadMigrations(tt.fsys); err == nil {
				t.Errorf("loadMigrations = %v, want an error", ms)
			}
		})
	}
}

// TestConnectionSettings checks the pragmas on several pooled connections
// at once, since each connection sets its own.
func TestConnectionSettings(t *testing.T) {
	s, err := Open(t.Context(), filepath.Join(t.TempDir(), "hub.db"))
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	defer s.Close()

	type settings struct {
		JournalMode string
		ForeignKeys int
		BusyTimeout int64
	}
	want := settings{JournalMode: "wal", ForeignKeys: 1, BusyTimeout: busyTimeout.Milliseconds()}
	const n = 3
	got := make([]settings, n) // got[i] is written by goroutine i only
	errs := make([]error, n)
	var wg sync.WaitGroup
	ready := make(chan struct{}, n) // one per goroutine, so none blocks
	release := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			// Holding the connection until all have one forces n of them.
			conn, err := s.db.Conn(t.Context())
			if err != nil {
				errs[i] = err
				ready <- struct{}{}
				return
			}
			defer conn.Close()
			ready <- struct{}{}
			<-release
			errs[i] = readSettings(t.Context(), conn, &got[i].JournalMode, &got[i].ForeignKeys, &got[i].BusyTimeout)
		})
	}
	for range n {
		<-ready
	}
	close(release)
	wg.Wait()
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("connection %d: %v", i, errs[i])
		}
		if diff := cmp.Diff(want, got[i]); diff != "" {
			t.Errorf("connection %d settings (-want +got):\n%s", i, diff)
		}
	}
}

func readSettings(ctx context.Context, conn *sql.Conn, mode *string, fk *int, busy *int64) error {
	if err := conn.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(mode); err != nil {
		return err
	}
	if err := conn.QueryRowContext(ctx, "PRAGMA foreign_keys").Scan(fk); err != nil {
		return err
	}
	return conn.QueryRowContext(ctx, "PRAGMA busy_timeout").Scan(busy)
}

package postgres_test

import (
	"context"
	"errors"
	"io/fs"
	"strings"
	"sync"
	"testing"
	"testing/fstest"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5"

	"tether.dev/tether/internal/audit"
	"tether.dev/tether/internal/store"
	"tether.dev/tether/internal/store/postgres"
)

// migrations are the embedded migrations, as appliedMigrations lists them.
var migrations = []string{"1 0001_init.sql", "2 0002_audit.sql"}

// connect opens a plain connection to dsn, closed when the test ends.
func connect(t *testing.T, dsn string) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(t.Context(), dsn)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

// appliedMigrations returns what schema_migrations records, "VERSION NAME"
// in the order of the versions.
func appliedMigrations(t *testing.T, conn *pgx.Conn) []string {
	t.Helper()
	rows, err := conn.Query(t.Context(), `SELECT version || ' ' || name FROM schema_migrations ORDER BY version`)
	if err != nil {
		t.Fatalf("read schema_migrations: %v", err)
	}
	applied, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatalf("read schema_migrations: %v", err)
	}
	return applied
}

// TestOpenConcurrently opens one fresh database from several "replicas"
// at once: the advisory lock makes them migrate one at a time, so every
// Open succeeds and each migration is applied once.
func TestOpenConcurrently(t *testing.T) {
	const n = 8
	dsn := server.NewDatabase(t)
	stores := make([]*postgres.Store, n) // stores[i] and errs[i] are written by goroutine i only
	errs := make([]error, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			<-start
			stores[i], errs[i] = postgres.Open(t.Context(), dsn)
		})
	}
	close(start)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("Open %d: %v", i, err)
			continue
		}
		if err := stores[i].Close(); err != nil {
			t.Errorf("Close %d: %v", i, err)
		}
	}
	if diff := cmp.Diff(migrations, appliedMigrations(t, connect(t, dsn))); diff != "" {
		t.Errorf("applied migrations (-want +got):\n%s", diff)
	}

	// Opening the migrated database again changes nothing.
	conn := connect(t, dsn)
	var before time.Time
	if err := conn.QueryRow(t.Context(), `SELECT max(applied_at) FROM schema_migrations`).Scan(&before); err != nil {
		t.Fatal(err)
	}
	openStore(t, dsn)
	var after time.Time
	if err := conn.QueryRow(t.Context(), `SELECT max(applied_at) FROM schema_migrations`).Scan(&after); err != nil {
		t.Fatal(err)
	}
	if !after.Equal(before) {
		t.Errorf("reopening applied migrations again: applied_at %v, then %v", before, after)
	}
}

// TestOpenRefusesForeignSchema checks that Open refuses a database that a
// newer binary migrated, or that recorded a version under another name,
// and leaves it as it was.
func TestOpenRefusesForeignSchema(t *testing.T) {
	tests := []struct {
		name    string
		tamper  string // SQL run on a migrated database
		wantErr string
	}{
		{
			name:    "newer version",
			tamper:  `INSERT INTO schema_migrations (version, name) VALUES (99, '0099_future.sql')`,
			wantErr: "database schema version 99 is newer than this binary's 2",
		},
		{
			name:    "version under another name",
			tamper:  `UPDATE schema_migrations SET name = '0001_other.sql' WHERE version = 1`,
			wantErr: "database recorded version 1 as 0001_other.sql",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dsn := server.NewDatabase(t)
			s, err := postgres.Open(t.Context(), dsn)
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			if err := s.Close(); err != nil {
				t.Fatalf("Close: %v", err)
			}
			conn := connect(t, dsn)
			if _, err := conn.Exec(t.Context(), tt.tamper); err != nil {
				t.Fatalf("tamper: %v", err)
			}
			want := appliedMigrations(t, conn)

			s, err = postgres.Open(t.Context(), dsn)
			if err == nil {
				s.Close()
				t.Fatal("Open succeeded")
			}
			if !strings.Contains(err.Error(), tt.wantErr) || errors.Is(err, store.ErrUnavailable) {
				t.Errorf("Open = %v, want an error saying %q", err, tt.wantErr)
			}
			if diff := cmp.Diff(want, appliedMigrations(t, conn)); diff != "" {
				t.Errorf("schema_migrations after the refusal (-want +got):\n%s", diff)
			}
		})
	}
}

// TestMigrateInOrderEachInATransaction applies migrations of its own: they
// run in order, and one that fails leaves the earlier ones applied and
// nothing of itself.
func TestMigrateInOrderEachInATransaction(t *testing.T) {
	dsn := server.NewDatabase(t)
	fsys := fstest.MapFS{
		"0001_create.sql": {Data: []byte(`CREATE TABLE a (v text NOT NULL);`)},
		"0002_fill.sql":   {Data: []byte(`INSERT INTO a VALUES ('one'); INSERT INTO a VALUES ('two');`)},
		"0003_broken.sql": {Data: []byte(`CREATE TABLE b (v text); INSERT INTO a VALUES ('three'); SELECT no_such_column FROM a;`)},
	}
	s, err := postgres.OpenWithMigrations(t.Context(), dsn, fsys)
	if err == nil {
		s.Close()
		t.Fatal("Open with a failing migration succeeded")
	}
	if !strings.Contains(err.Error(), "migration 0003_broken.sql") {
		t.Errorf("Open = %v, want an error naming 0003_broken.sql", err)
	}
	conn := connect(t, dsn)
	if diff := cmp.Diff([]string{"1 0001_create.sql", "2 0002_fill.sql"}, appliedMigrations(t, conn)); diff != "" {
		t.Errorf("applied migrations (-want +got):\n%s", diff)
	}
	rows, err := conn.Query(t.Context(), `SELECT v FROM a ORDER BY v`)
	if err != nil {
		t.Fatal(err)
	}
	values, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"one", "two"}, values); diff != "" {
		t.Errorf("rows of a (-want +got):\n%s", diff)
	}
	var b *string
	if err := conn.QueryRow(t.Context(), `SELECT to_regclass('b')::text`).Scan(&b); err != nil {
		t.Fatal(err)
	}
	if b != nil {
		t.Errorf("table b of the failed migration exists")
	}
}

// TestMigrateFrom0001 upgrades a database that a binary with only the first
// migration created and filled: the audit trail's table is added, and the
// data kept.
func TestMigrateFrom0001(t *testing.T) {
	ctx := t.Context()
	init, err := fs.ReadFile(postgres.EmbeddedMigrations, "migrations/0001_init.sql")
	if err != nil {
		t.Fatal(err)
	}
	dsn := server.NewDatabase(t)
	old, err := postgres.OpenWithMigrations(ctx, dsn, fstest.MapFS{"0001_init.sql": {Data: init}})
	if err != nil {
		t.Fatalf("open with 0001 only: %v", err)
	}
	t0 := time.Date(2025, time.March, 1, 12, 0, 0, 0, time.UTC)
	want, err := old.CreateCluster(ctx, store.Cluster{Group: "prod", Name: "web", CreatedAt: t0})
	if err != nil {
		t.Fatalf("CreateCluster: %v", err)
	}
	if err := old.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}

	s := openStore(t, dsn)
	if diff := cmp.Diff(migrations, appliedMigrations(t, connect(t, dsn))); diff != "" {
		t.Errorf("applied migrations (-want +got):\n%s", diff)
	}
	got, err := s.GetCluster(ctx, want.ID)
	if err != nil {
		t.Fatalf("GetCluster after upgrade: %v", err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("cluster after upgrade (-want +got):\n%s", diff)
	}
	if _, err := s.AppendAudit(ctx, []audit.Event{{Time: t0, Type: audit.TypeRequest, Decision: audit.DecisionAllow, Cluster: want.ID}}); err != nil {
		t.Fatalf("AppendAudit after upgrade: %v", err)
	}
	if events, err := s.ListAudit(ctx, store.AuditFilter{Cluster: want.ID}); err != nil || audit.Verify(events, nil) != nil || len(events) != 1 {
		t.Errorf("ListAudit after upgrade = %d events, %v; want 1 that verifies", len(events), err)
	}
}

func TestLoadMigrationsErrors(t *testing.T) {
	sql := &fstest.MapFile{Data: []byte(`SELECT 1;`)}
	tests := []struct {
		name    string
		fsys    fstest.MapFS
		wantErr string
	}{
		{"no number", fstest.MapFS{"init.sql": sql}, "want a file named NNNN_name.sql"},
		{"short number", fstest.MapFS{"001_init.sql": sql}, "want a file named NNNN_name.sql"},
		{"not SQL", fstest.MapFS{"0001_init.txt": sql}, "want a file named NNNN_name.sql"},
		{"a directory", fstest.MapFS{"0001_init.sql/x": sql}, "want a file named NNNN_name.sql"},
		{"gap", fstest.MapFS{"0001_init.sql": sql, "0003_next.sql": sql}, "want number 0002"},
		{"repeat", fstest.MapFS{"0001_init.sql": sql, "0001_again.sql": sql}, "want number 0002"},
		{"not from 1", fstest.MapFS{"0002_init.sql": sql}, "want number 0001"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Refused before connecting: the DSN names no server.
			s, err := postgres.OpenWithMigrations(t.Context(), "postgres://nobody@127.0.0.1:1/none", tt.fsys)
			if err == nil {
				s.Close()
				t.Fatal("Open succeeded")
			}
			if !strings.Contains(err.Error(), tt.wantErr) || errors.Is(err, store.ErrUnavailable) {
				t.Errorf("Open = %v, want an error saying %q", err, tt.wantErr)
			}
		})
	}
}

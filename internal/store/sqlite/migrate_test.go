package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"io/fs"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/fstest"
	"time"

	"github.com/google/go-cmp/cmp"

	"tether.dev/tether/internal/access"
	"tether.dev/tether/internal/audit"
	"tether.dev/tether/internal/store"
	"tether.dev/tether/internal/store/migration"
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
	embedded, err := migration.Load(sub)
	if err != nil {
		t.Fatalf("loadMigrations: %v", err)
	}
	var names []string
	for _, m := range first {
		names = append(names, m.Name)
	}
	var wantNames []string
	for _, m := range embedded {
		wantNames = append(wantNames, m.Name)
	}
	if diff := cmp.Diff(wantNames, names); diff != "" {
		t.Errorf("applied migrations (-want +got):\n%s", diff)
	}
	for _, table := range []string{"clusters", "join_tokens", "principals", "client_secrets", "memberships", "role_assignments", "replicas", "ephemeral"} {
		if !tableExists(t, s, table) {
			t.Errorf("table %s missing after Open", table)
		}
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
			if ms, err := migration.Load(tt.fsys); err == nil {
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

// schemaObjects returns the database's tables, indexes and triggers with
// their SQL, in name order.
func schemaObjects(t *testing.T, s *Store) []string {
	t.Helper()
	rows, err := s.db.QueryContext(t.Context(), `
		SELECT type || ' ' || name || ': ' || COALESCE(sql, '')
		FROM sqlite_schema
		WHERE name NOT LIKE 'sqlite_%' AND name <> 'schema_migrations'
		ORDER BY name`)
	if err != nil {
		t.Fatalf("query sqlite_schema: %v", err)
	}
	defer rows.Close()
	var objs []string
	for rows.Next() {
		var o string
		if err := rows.Scan(&o); err != nil {
			t.Fatalf("scan sqlite_schema: %v", err)
		}
		objs = append(objs, o)
	}
	if err := rows.Err(); err != nil {
		t.Fatalf("query sqlite_schema: %v", err)
	}
	return objs
}

// TestMigrateFrom0001 upgrades a database that a binary with only the first
// migration created and filled: the later ones apply on top, keep the data,
// and leave the schema a new database gets; opening again changes nothing.
func TestMigrateFrom0001(t *testing.T) {
	ctx := t.Context()
	init, err := fs.ReadFile(embeddedMigrations, "migrations/0001_init.sql")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "hub.db")
	t0 := time.Date(2025, time.March, 1, 12, 0, 0, 0, time.UTC)

	old, err := open(ctx, path, fstest.MapFS{"0001_init.sql": {Data: init}})
	if err != nil {
		t.Fatalf("open with 0001 only: %v", err)
	}
	// The row as that binary wrote it: this one's CreateCluster reads
	// columns of later migrations.
	web := store.Cluster{ID: store.ClusterID("prod", "web"), Group: "prod", Name: "web", Location: "eastus2", Mode: store.ModeHubRBAC, CreatedAt: t0}
	_, err = old.db.ExecContext(ctx, `INSERT INTO clusters (id, group_name, name, location, mode, created_at) VALUES (?, ?, ?, ?, ?, ?)`,
		web.ID, web.Group, web.Name, web.Location, string(web.Mode), t0.UnixMicro())
	if err != nil {
		t.Fatalf("insert cluster: %v", err)
	}
	hash := store.TokenHash{1}
	if err := old.CreateJoinToken(ctx, store.JoinToken{Hash: hash, ClusterID: web.ID, CreatedAt: t0, ExpiresAt: t0.Add(time.Hour)}); err != nil {
		t.Fatalf("CreateJoinToken: %v", err)
	}
	before := appliedMigrations(t, old)
	if err := old.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}

	s, err := Open(ctx, path)
	if err != nil {
		t.Fatalf("Open over 0001: %v", err)
	}
	// s is reopened below: close whichever is open at the end.
	t.Cleanup(func() { s.Close() })
	applied := appliedMigrations(t, s)
	var names []string
	for _, m := range applied {
		names = append(names, m.Name)
	}
	if diff := cmp.Diff([]string{"0001_init.sql", "0002_directory.sql", "0003_agent_status.sql", "0004_replicas_ephemeral.sql", "0005_audit.sql"}, names); diff != "" {
		t.Errorf("applied migrations (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(before, applied[:1]); diff != "" {
		t.Errorf("the record of 0001 changed (-want +got):\n%s", diff)
	}

	// The data of 0001 is intact, and the token still enrolls.
	got, err := s.GetCluster(ctx, web.ID)
	if err != nil {
		t.Fatalf("GetCluster after upgrade: %v", err)
	}
	if diff := cmp.Diff(web, got); diff != "" {
		t.Errorf("cluster after upgrade (-want +got):\n%s", diff)
	}
	if _, err := s.RedeemJoinToken(ctx, hash, t0.Add(time.Minute), []byte("key")); err != nil {
		t.Errorf("RedeemJoinToken after upgrade: %v", err)
	}
	// The tables of 0002 work.
	user := store.Principal{ID: "3f2a0c4e-8b1d-4e5f-9a6b-7c8d9e0f1a2b", Type: access.PrincipalUser, DisplayName: "Alice", LoginName: "alice@example.com", CreatedAt: t0}
	if err := s.CreatePrincipal(ctx, user); err != nil {
		t.Fatalf("CreatePrincipal after upgrade: %v", err)
	}
	a := store.RoleAssignment{
		Assignment: access.Assignment{ID: "5b8e1f2a-0c3d-4e5f-8a9b-0c1d2e3f4a5b", PrincipalID: user.ID, PrincipalType: access.PrincipalUser, RoleID: access.RoleClusterUser, Scope: web.ID},
		CreatedAt:  t0,
	}
	if err := s.CreateRoleAssignment(ctx, a); err != nil {
		t.Fatalf("CreateRoleAssignment after upgrade: %v", err)
	}

	// The columns of 0003 work.
	st := store.AgentStatus{AgentVersion: "v0.2.0", NodeCount: -1, LastError: "nodes: forbidden", ReportedAt: t0.Add(time.Minute)}
	if err := s.RecordAgentStatus(ctx, web.ID, st); err != nil {
		t.Fatalf("RecordAgentStatus after upgrade: %v", err)
	}
	if got, err := s.GetCluster(ctx, web.ID); err != nil || got.Agent.Status != st {
		t.Errorf("agent status after upgrade = %+v, %v; want %+v", got.Agent.Status, err, st)
	}

	// The tables of 0004 work, beside the tunnel columns of 0001.
	if _, err := s.RenewReplica(ctx, store.Replica{Name: "hub-0", URL: "https://hub-0:8443", ExpiresAt: t0.Add(time.Minute)}, t0); err != nil {
		t.Fatalf("RenewReplica after upgrade: %v", err)
	}
	if err := s.SetTunnel(ctx, web.ID, store.Tunnel{Replica: "hub-0", ConnectedAt: t0}); err != nil {
		t.Fatalf("SetTunnel after upgrade: %v", err)
	}
	if ids, err := s.ExpireReplicas(ctx, t0.Add(time.Minute)); err != nil || !slices.Equal(ids, []string{"hub-0"}) {
		t.Errorf("ExpireReplicas after upgrade = %v, %v; want [hub-0]", ids, err)
	}
	if err := s.PutEphemeral(ctx, store.Ephemeral{Kind: "device-code", Key: "k", Value: []byte("v"), ExpiresAt: t0.Add(time.Minute)}, t0); err != nil {
		t.Errorf("PutEphemeral after upgrade: %v", err)
	}

	// The table of 0005 works.
	if _, err := s.AppendAudit(ctx, []audit.Event{{Time: t0, Type: audit.TypeRequest, Decision: audit.DecisionAllow, Cluster: web.ID}}); err != nil {
		t.Errorf("AppendAudit after upgrade: %v", err)
	}
	if events, err := s.ListAudit(ctx, store.AuditFilter{Cluster: web.ID}); err != nil || audit.Verify(events, nil) != nil || len(events) != 1 {
		t.Errorf("ListAudit after upgrade = %d events, %v; want 1 that verifies", len(events), err)
	}

	// The upgraded schema is a new database's.
	fresh, err := Open(ctx, filepath.Join(t.TempDir(), "fresh.db"))
	if err != nil {
		t.Fatalf("Open a new database: %v", err)
	}
	defer fresh.Close()
	upgraded := schemaObjects(t, s)
	if diff := cmp.Diff(schemaObjects(t, fresh), upgraded); diff != "" {
		t.Errorf("upgraded schema differs from a new database's (-new +upgraded):\n%s", diff)
	}

	// Opening again is a no-op.
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	s, err = Open(ctx, path)
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	if diff := cmp.Diff(applied, appliedMigrations(t, s)); diff != "" {
		t.Errorf("reopening changed schema_migrations (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(upgraded, schemaObjects(t, s)); diff != "" {
		t.Errorf("reopening changed the schema (-want +got):\n%s", diff)
	}
	if _, err := s.GetRoleAssignment(ctx, a.ID); err != nil {
		t.Errorf("GetRoleAssignment after reopening: %v", err)
	}
}

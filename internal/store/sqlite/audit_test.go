package sqlite_test

import (
	"context"
	"database/sql"
	"path/filepath"
	"testing"

	"tether.dev/tether/internal/store"
	"tether.dev/tether/internal/store/storetest"
)

// TestAuditTamper changes the audit trail behind the store's back, as
// someone with access to the database file could: Verify over what
// ListAudit returns finds where.
func TestAuditTamper(t *testing.T) {
	cases := storetest.AuditTamperCases(`event_time + 1`, `zeroblob(32)`)
	storetest.RunAuditTamper(t, cases, func(t *testing.T) (store.Store, func(context.Context, string) error) {
		path := filepath.Join(t.TempDir(), "hub.db")
		s := openAt(t, path)
		// Another handle on the file; one connection, for the temporary
		// table.
		db, err := sql.Open("sqlite", path)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		conn, err := db.Conn(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		return s, func(ctx context.Context, stmt string) error {
			_, err := conn.ExecContext(ctx, stmt)
			return err
		}
	})
}

// TestAppendAuditTwoHandles appends through two Stores on one file at
// once: only SQLite's write lock, which the transaction takes before it
// reads the chain's last event, orders them.
func TestAppendAuditTwoHandles(t *testing.T) {
	path := filepath.Join(t.TempDir(), "hub.db")
	storetest.RunConcurrentAppends(t, []store.Store{openAt(t, path), openAt(t, path)}, 8, 20)
}

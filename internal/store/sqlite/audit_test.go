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
	cases := []storetest.Tamper{
		{
			Name: "edit a field",
			SQL:  []string{`UPDATE audit_events SET verb = 'delete' WHERE seq = 3`},
			Want: []string{"at event 3:", "(edited)"},
		},
		{
			Name: "edit a count",
			SQL:  []string{`UPDATE audit_events SET bytes_out = 0 WHERE seq = 3`},
			Want: []string{"at event 3:", "(edited)"},
		},
		{
			Name: "edit the time by a microsecond",
			SQL:  []string{`UPDATE audit_events SET event_time = event_time + 1 WHERE seq = 3`},
			Want: []string{"at event 3:", "(edited)"},
		},
		{
			Name: "edit the hash",
			SQL:  []string{`UPDATE audit_events SET hash = zeroblob(32) WHERE seq = 3`},
			Want: []string{"at event 3:", "(edited)"},
		},
		{
			Name: "delete an event",
			SQL:  []string{`DELETE FROM audit_events WHERE seq = 3`},
			Want: []string{"event 4 follows event 2: 1 event(s) missing"},
		},
		{
			Name: "delete the first event",
			SQL:  []string{`DELETE FROM audit_events WHERE seq = 1`},
			Want: []string{"at event 2:", "does not follow the event before it"},
		},
		{
			Name: "delete an event and renumber the later ones",
			SQL: []string{
				`DELETE FROM audit_events WHERE seq = 3`,
				`UPDATE audit_events SET seq = seq + 1000 WHERE seq > 3`,
				`UPDATE audit_events SET seq = seq - 1001 WHERE seq > 1000`,
			},
			Want: []string{"at event 3:", "does not follow the event before it"},
		},
		{
			Name: "delete an event, renumber, and link the next to the one before",
			SQL: []string{
				`DELETE FROM audit_events WHERE seq = 3`,
				`UPDATE audit_events SET seq = seq + 1000 WHERE seq > 3`,
				`UPDATE audit_events SET seq = seq - 1001 WHERE seq > 1000`,
				`UPDATE audit_events SET prev_hash = (SELECT hash FROM audit_events WHERE seq = 2) WHERE seq = 3`,
			},
			Want: []string{"at event 3:", "(edited)"},
		},
		{
			Name: "swap two events",
			SQL: []string{
				`UPDATE audit_events SET seq = seq + 1000 WHERE seq IN (2, 3)`,
				`UPDATE audit_events SET seq = 1005 - seq WHERE seq > 1000`,
			},
			Want: []string{"at event 2:", "does not follow the event before it"},
		},
		{
			Name: "append a copy linked to the last event",
			SQL: []string{
				`CREATE TEMP TABLE forged AS SELECT * FROM audit_events WHERE seq = 2`,
				`UPDATE forged SET seq = 6, prev_hash = (SELECT hash FROM audit_events WHERE seq = 5)`,
				`INSERT INTO audit_events SELECT * FROM forged`,
			},
			Want: []string{"at event 6:", "(edited)"},
		},
	}
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

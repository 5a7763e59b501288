package sqlite_test

import (
	"database/sql"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"tether.dev/tether/internal/audit"
	"tether.dev/tether/internal/store"
	"tether.dev/tether/internal/store/sqlite"
)

// auditEvents returns n valid audit events, a second apart.
func auditEvents(n int) []audit.Event {
	t0 := time.Date(2025, time.March, 1, 12, 0, 0, 0, time.UTC)
	events := make([]audit.Event, n)
	for i := range events {
		events[i] = audit.Event{
			Time:     t0.Add(time.Duration(i) * time.Second),
			Type:     audit.TypeRequest,
			Decision: audit.DecisionAllow,
			Verb:     "get",
			Resource: "pods",
			Status:   200,
			BytesOut: 1234,
		}
	}
	return events
}

// TestAuditTamper changes the audit trail behind the store's back, as
// someone with access to the database file could: Verify over what
// ListAudit returns finds where.
func TestAuditTamper(t *testing.T) {
	tests := []struct {
		name   string
		tamper []string // statements run on the database
		want   []string // what Verify's error says
	}{
		{
			name:   "edit a field",
			tamper: []string{`UPDATE audit_events SET verb = 'delete' WHERE seq = 3`},
			want:   []string{"at event 3:", "(edited)"},
		},
		{
			name:   "edit a count",
			tamper: []string{`UPDATE audit_events SET bytes_out = 0 WHERE seq = 3`},
			want:   []string{"at event 3:", "(edited)"},
		},
		{
			name:   "edit the time by a microsecond",
			tamper: []string{`UPDATE audit_events SET event_time = event_time + 1 WHERE seq = 3`},
			want:   []string{"at event 3:", "(edited)"},
		},
		{
			name:   "edit the hash",
			tamper: []string{`UPDATE audit_events SET hash = zeroblob(32) WHERE seq = 3`},
			want:   []string{"at event 3:", "(edited)"},
		},
		{
			name:   "delete an event",
			tamper: []string{`DELETE FROM audit_events WHERE seq = 3`},
			want:   []string{"event 4 follows event 2: 1 event(s) missing"},
		},
		{
			name:   "delete the first event",
			tamper: []string{`DELETE FROM audit_events WHERE seq = 1`},
			want:   []string{"at event 2:", "does not follow the event before it"},
		},
		{
			name: "delete an event and renumber the later ones",
			tamper: []string{
				`DELETE FROM audit_events WHERE seq = 3`,
				`UPDATE audit_events SET seq = seq + 1000 WHERE seq > 3`,
				`UPDATE audit_events SET seq = seq - 1001 WHERE seq > 1000`,
			},
			want: []string{"at event 3:", "does not follow the event before it"},
		},
		{
			name: "delete an event, renumber, and link the next to the one before",
			tamper: []string{
				`DELETE FROM audit_events WHERE seq = 3`,
				`UPDATE audit_events SET seq = seq + 1000 WHERE seq > 3`,
				`UPDATE audit_events SET seq = seq - 1001 WHERE seq > 1000`,
				`UPDATE audit_events SET prev_hash = (SELECT hash FROM audit_events WHERE seq = 2) WHERE seq = 3`,
			},
			want: []string{"at event 3:", "(edited)"},
		},
		{
			name: "swap two events",
			tamper: []string{
				`UPDATE audit_events SET seq = seq + 1000 WHERE seq IN (2, 3)`,
				`UPDATE audit_events SET seq = 1005 - seq WHERE seq > 1000`,
			},
			want: []string{"at event 2:", "does not follow the event before it"},
		},
		{
			name: "append a copy linked to the last event",
			tamper: []string{
				`CREATE TEMP TABLE forged AS SELECT * FROM audit_events WHERE seq = 2`,
				`UPDATE forged SET seq = 6, prev_hash = (SELECT hash FROM audit_events WHERE seq = 5)`,
				`INSERT INTO audit_events SELECT * FROM forged`,
			},
			want: []string{"at event 6:", "(edited)"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := t.Context()
			path := filepath.Join(t.TempDir(), "hub.db")
			s := openAt(t, path)
			if _, err := s.AppendAudit(ctx, auditEvents(5)); err != nil {
				t.Fatalf("AppendAudit: %v", err)
			}
			events, err := s.ListAudit(ctx, store.AuditFilter{})
			if err != nil {
				t.Fatalf("ListAudit: %v", err)
			}
			if err := audit.Verify(events, nil); err != nil {
				t.Fatalf("Verify before tampering: %v", err)
			}

			// Another handle on the file; one connection, for the
			// temporary table.
			db, err := sql.Open("sqlite", path)
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			conn, err := db.Conn(ctx)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			for _, stmt := range tt.tamper {
				if _, err := conn.ExecContext(ctx, stmt); err != nil {
					t.Fatalf("%s: %v", stmt, err)
				}
			}

			events, err = s.ListAudit(ctx, store.AuditFilter{})
			if err != nil {
				t.Fatalf("ListAudit after tampering: %v", err)
			}
			err = audit.Verify(events, nil)
			if !errors.Is(err, audit.ErrBroken) {
				t.Fatalf("Verify after tampering = %v, want %v", err, audit.ErrBroken)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Verify after tampering = %q, want it to say %q", err, w)
				}
			}
		})
	}
}

// TestAppendAuditTwoHandles appends through two Stores on one file at
// once: only SQLite's write lock, which the transaction takes before it
// reads the chain's last event, orders them.
func TestAppendAuditTwoHandles(t *testing.T) {
	const (
		writers = 8
		appends = 20
	)
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "hub.db")
	handles := []*sqlite.Store{openAt(t, path), openAt(t, path)}

	errs := make([]error, writers) // errs[i] is written by writer i only
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range writers {
		wg.Go(func() {
			s := handles[i%len(handles)]
			<-start
			for n := range appends {
				if _, err := s.AppendAudit(ctx, auditEvents(1)); err != nil {
					errs[i] = fmt.Errorf("append %d: %w", n, err)
					return
				}
			}
		})
	}
	close(start)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("writer %d: %v", i, err)
		}
	}

	for h, s := range handles {
		events, err := s.ListAudit(ctx, store.AuditFilter{})
		if err != nil {
			t.Fatalf("ListAudit: %v", err)
		}
		if len(events) != writers*appends {
			t.Errorf("handle %d: %d events, want %d", h, len(events), writers*appends)
		}
		if err := audit.Verify(events, nil); err != nil {
			t.Errorf("handle %d: Verify: %v", h, err)
		}
	}
}
